"""The producer service: replay each use case's data file into all of its input topics.

One task per use case. Every data file is opened before anything connects, so a bad path
fails at once; a use case continues after the last line its topics hold (from the first with
`from_start`); SIGTERM/SIGINT stop the reading, let the block in flight be committed and flush
the producer; each use case logs one summary line, whatever happened.

A broker that goes away (shared/retry.py) does not end the replay: the transaction in flight
is abandoned with its producer, and once the broker answers a new producer (the same
transactional id: it settles the abandoned transaction) continues after the last line the
topics hold, exactly as a restarted `streamer produce` would; no line is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from services.producer.labels import LabelSplitter, ProducerLabels
from services.producer.pacing import first_field
from services.producer.position import PositionError, check_resumed_line, resume_point
from services.producer.progress import ProgressBoard, Tracker
from services.producer.replay import (
    FAST_BATCH_BYTES,
    Plan,
    ProducerError,
    ProducerStats,
    Replay,
)
from services.producer.source import Line, LineSource, source_name
from services.producer.tails import committed_tails
from shared.clients.kafka import ensure_topics, make_producer, start_transactional
from shared.config import ProducerType, UseCase
from shared.config.live import LiveConfig
from shared.config.models import StreamingConfig
from shared.errors import ServiceUnavailableError, StreamerError
from shared.records import record_class_for
from shared.retry import KAFKA, retry_until_stopped, retrying
from shared.runtime import heartbeating, stop_on_signals

log = logging.getLogger("producer")

CLOSE_TIMEOUT_S = 15.0
FINISHED = frozenset({"end of file", "maxBlocks reached", "stopped"})

__all__ = [
    "Plan",
    "ProducerError",
    "ProducerStats",
    "prepare",
    "prepare_all",
    "produce_all",
    "resume",
    "run",
]


def prepare(usecase: UseCase) -> Plan:
    """Open the use case's data file (and find its record class when the mode needs a column);
    raise ProducerError naming the use case and the path."""
    config = usecase.streaming
    if config.datafile is None:
        raise ProducerError(f"{usecase.name}: no datafile in {usecase.folder / 'streaming.props'}")
    try:
        source = LineSource(config.datafile, skip_header=config.contains_header)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ProducerError(
            f"{usecase.name}: cannot read datafile {config.datafile}: {reason}"
        ) from error
    column = None
    if config.producer_type in (ProducerType.BLOCKBYGROUP, ProducerType.TIMESTAMP):
        try:
            column = first_field(record_class_for(usecase).separator)
        except StreamerError as error:  # e.g. the use case's own records.py failed to load
            source.close()
            raise ProducerError(
                f"{usecase.name}: cannot load the record class of problem.type="
                f"{config.problem_type}: {error}"
            ) from error
    topics = tuple(dict.fromkeys(config.main_topics))
    plan = Plan(usecase, source, source_name(config.datafile), column, topics)
    try:
        plan.labels = held_labels(plan)
    except ProducerError:
        source.close()
        raise
    return plan


def held_labels(plan: Plan) -> ProducerLabels | None:
    """label.delay: what holds the labels back (none held yet); None without it."""
    usecase, config = plan.usecase, plan.config
    if config.label_delay is None or config.label_topic is None:
        return None
    try:
        splitter = LabelSplitter(record_class_for(usecase))
    except (StreamerError, ValueError) as error:
        raise ProducerError(
            f"{usecase.name}: label.delay={config.label_delay}: cannot take the labels out of "
            f"the lines of problem.type={config.problem_type}: {error}"
        ) from error
    return ProducerLabels(config.label_topic, config.label_delay, splitter, plan.name)


def prepare_all(usecases: Sequence[UseCase]) -> list[Plan]:
    """Prepare every use case, reporting the problems of all of them at once."""
    plans: list[Plan] = []
    problems: list[str] = []
    for usecase in usecases:
        try:
            plans.append(prepare(usecase))
        except StreamerError as error:
            problems.append(str(error))
    if problems:
        for plan in plans:
            plan.source.close()
        raise ProducerError("\n".join(problems))
    return plans


def producer_options(config: StreamingConfig) -> dict[str, Any]:
    """aiokafka settings from streaming.props tuning keys, with FAST's larger batches."""
    options: dict[str, Any] = {}
    if config.linger_ms is not None:
        options["linger_ms"] = config.linger_ms
    if config.batch_size is not None:
        options["max_batch_size"] = config.batch_size
    elif config.producer_type is ProducerType.FAST:
        options["max_batch_size"] = FAST_BATCH_BYTES
    return options


def transactional_id(usecase: str, source: str, topics: Sequence[str]) -> str:
    """One per use case, source and topics: a restarted producer fences its predecessor, and
    nothing else (two deployments of a use case with other topics on one cluster do not fence
    each other)."""
    return f"streamer-producer:{usecase}:{source}:{','.join(sorted(topics))}"


async def resume(plan: Plan, producer: AIOKafkaProducer, from_start: bool = False) -> None:
    """Continue after the last line the topics hold: pass over the lines already sent, after
    checking that the file still has that line, unchanged. Call once the producer is started
    (registering its transactional id settles what the topics hold)."""
    usecase, datafile = plan.usecase.name, plan.config.datafile
    again = "`streamer produce --from-start` replays it from the first line"
    if plan.labels is not None:
        plan.labels = held_labels(plan)  # afresh: held again below from what the topics hold
    if from_start:
        log.info(f"{usecase}: replaying {datafile} from the first line (--from-start)")
        return
    partitions = {topic: sorted(await producer.partitions_for(topic)) for topic in plan.topics}
    try:
        tails = await committed_tails(
            plan.usecase.bootstrap_servers, partitions, plan.name.encode()
        )
        position = resume_point(tails, partitions)
    except PositionError as error:
        raise ProducerError(
            f"{usecase}: cannot tell how far {datafile} was replayed: {error}. {again} "
            "(lines the topics hold are sent again)"
        ) from error
    if position.line == 0:
        return
    if plan.labels is not None:
        found = await _hold_unlabelled(plan, producer, position.line)
    else:
        found = plan.source.skip_through(position.line)
    problem = check_resumed_line(position, found)
    if problem:
        raise ProducerError(
            f"{usecase}: {datafile} changed since it was replayed: {problem}. {again} "
            "(lines the topics hold are sent again)"
        )
    plan.resume = position
    log.info(
        f"{usecase}: continuing after line {position.line} of {datafile}, the last line "
        f"{', '.join(plan.topics)} hold",
        extra={"usecase": usecase, "line": position.line},
    )


async def _hold_unlabelled(plan: Plan, producer: AIOKafkaProducer, through: int) -> Line | None:
    """Pass over the lines sent up to line `through`, holding again the labels of those after
    the last label labelTopic holds (their records went, their labels had not yet); return
    the line at `through` as it was sent (without its label), for check_resumed_line."""
    labels = plan.labels
    assert labels is not None
    topic = labels.topic
    partitions = {topic: sorted(await producer.partitions_for(topic))}
    bootstrap = plan.usecase.bootstrap_servers
    try:
        tails = await committed_tails(bootstrap, partitions, plan.name.encode())
    except PositionError as error:
        raise ProducerError(
            f"{plan.usecase.name}: cannot tell which labels were sent: {error}"
        ) from error
    labelled_through = max((tail.line for tail in tails[topic]), default=0)
    now = time.monotonic()
    for line in plan.source:
        if line.number > labelled_through:
            line = labels.hold(line, now)
        if line.number >= through:
            if line.number <= labelled_through:
                line = Line(line.number, labels.splitter.split(line.value)[0])
            return line
    return None


async def produce_usecase(
    plan: Plan,
    stop: asyncio.Event,
    tracker: Tracker,
    redis: Redis | None = None,
    from_start: bool = False,
) -> ProducerStats:
    """Connect, create the topics, find where to continue, replay, through broker outages;
    always logs one summary line, whatever happened."""
    usecase, config = plan.usecase, plan.config
    bootstrap = usecase.bootstrap_servers
    stats = ProducerStats(usecase.name, plan.name, config.producer_type.value, plan.topics)
    started = time.monotonic()
    attempts = 0

    async def replay() -> None:
        nonlocal attempts, started
        attempts += 1
        if attempts > 1:  # after an outage: from where the topics end, as a restart would
            plan.source.close()
            plan.source = LineSource(plan.source.path, skip_header=config.contains_header)
        producer = make_producer(
            bootstrap,
            transactional_id=transactional_id(usecase.name, plan.name, plan.topics),
            **producer_options(config),
        )
        try:
            await start_transactional(producer, bootstrap)
            # --from-start holds until this run committed a block: then its topics end with it
            await resume(plan, producer, from_start and stats.records_sent == 0)
            if attempts == 1:
                stats.resumed_after = plan.resume.line
                log.info(
                    f"{usecase.name}: replaying {config.datafile} into {', '.join(plan.topics)}",
                    extra={
                        "usecase": usecase.name,
                        "mode": stats.mode,
                        "topics": list(plan.topics),
                    },
                )
                started = time.monotonic()
            live = LiveConfig(usecase) if redis is not None else None
            await Replay(plan, producer, stop, stats, tracker, live=live, redis=redis).run()
        finally:
            await _close(producer, usecase.name)

    try:
        try:
            topics = plan.topics + ((plan.labels.topic,) if plan.labels is not None else ())
            await ensure_topics(bootstrap, topics, partitions=usecase.topic_partitions)
            await retrying(KAFKA, f"replaying {plan.name}", replay, attempt_timeout=None)
        except ServiceUnavailableError as error:
            raise ProducerError(f"{usecase.name}: {error}") from error
        finally:
            stats.elapsed_s = time.monotonic() - started
    except asyncio.CancelledError:
        stats.outcome = "cancelled"
        raise
    except BaseException:
        stats.outcome = "failed"
        raise
    finally:
        stats.blank_lines = plan.source.blank_lines
        stats.invalid_utf8 = plan.source.invalid_utf8
        plan.source.close()
        level = logging.INFO if stats.outcome in FINISHED else logging.WARNING
        log.log(level, stats.summary(), extra=stats.fields())
    return stats


async def _close(producer: AIOKafkaProducer, name: str) -> None:
    """Flush and stop the producer, bounded: a dead broker must not hang the shutdown."""
    try:
        await asyncio.wait_for(producer.stop(), CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.error(f"{name}: the Kafka producer did not stop within {CLOSE_TIMEOUT_S:g} s")


async def produce_all(
    plans: Sequence[Plan],
    stop: asyncio.Event | None = None,
    progress: bool | None = None,
    redis: Redis | None = None,
    from_start: bool = False,
) -> list[ProducerStats]:
    """Replay every plan in parallel, each after the last line its topics hold (`from_start`:
    from the first line). Without a `stop` event given, SIGTERM and SIGINT set one. With
    `redis`, run-time pacing overrides are followed (shared/config/live.py).

    The first failure cancels the other use cases (each still flushes and logs its summary)
    and is raised as one ProducerError listing every failure.
    """
    own_signals = stop is None
    stop = stop or asyncio.Event()
    signals = stop_on_signals(stop) if own_signals else contextlib.nullcontext(stop)
    try:
        with signals, retry_until_stopped(stop), ProgressBoard(progress) as board:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(
                        produce_usecase(
                            plan, stop, board.track(plan.usecase.name), redis, from_start
                        )
                    )
                    for plan in plans
                ]
        return [task.result() for task in tasks]
    except ExceptionGroup as failures:
        errors = failures.exceptions
        if all(isinstance(error, StreamerError) for error in errors):
            combined = ProducerError("\n".join(str(error) for error in errors))
            combined.exit_code = max(getattr(error, "exit_code", 1) for error in errors)
            raise combined from errors[0]
        raise
    finally:
        for plan in plans:  # a task cancelled before it ran never closed its file
            plan.source.close()


async def run(
    usecases: Sequence[UseCase], progress: bool | None = None, from_start: bool = False
) -> list[ProducerStats]:
    """`streamer produce`: check every data file first (no Kafka yet), then replay them all,
    each after the last line its topics hold (`from_start`: from the first line)."""
    plans = prepare_all(usecases)
    async with heartbeating("producer", usecases) as heartbeat:
        return await produce_all(
            plans, progress=progress, redis=heartbeat.redis, from_start=from_start
        )
