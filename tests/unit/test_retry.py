"""The one retry policy (shared/retry.py): what is retried, for how long, and how an outage is
reported: one line when it starts, one when it ends, and in the heartbeat meanwhile."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import errors as kafka_errors
from redis import exceptions as redis_errors

from shared import retry
from shared.retry import KAFKA, REDIS, OutageError, Outages, is_transient, retrying


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(retry, "BACKOFF_INITIAL_S", 0.01)
    monkeypatch.setattr(retry, "BACKOFF_CAP_S", 0.02)
    monkeypatch.setattr(retry, "JITTER_S", 0.0)


class Flaky:
    """Fails `failures` times with `error`, then answers `value`; records each attempt."""

    def __init__(self, failures: int, error: BaseException, value: str = "ok"):
        self.failures, self.error, self.value = failures, error, value
        self.attempts = 0

    async def __call__(self) -> str:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        return self.value


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        kafka_errors.KafkaConnectionError("down"),
        kafka_errors.KafkaTimeoutError(),
        kafka_errors.NodeNotReadyError(),
        kafka_errors.UnknownProducerId(),  # a transaction cut by a broker restart
        kafka_errors.ConcurrentTransactions(),
        redis_errors.ConnectionError("reset"),
        redis_errors.TimeoutError(),
    ],
)
def test_outage_errors_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.ProducerFenced(),
        kafka_errors.TopicAuthorizationFailedError(),
        kafka_errors.MessageSizeTooLargeError(),
        redis_errors.ResponseError("WRONGTYPE"),
        ValueError("a bug"),
        KeyError("a bug"),
    ],
)
def test_errors_no_retry_can_fix_are_not(error):
    assert not is_transient(error)


async def test_a_call_is_retried_until_it_answers_and_the_outage_logged_once_each_way(caplog):
    caplog.set_level(logging.INFO, "streamer.outage")
    outages = Outages()
    call = Flaky(4, ConnectionRefusedError(111, "refused"))
    assert await retrying(REDIS, "reading progress", call, outages=outages) == "ok"
    assert call.attempts == 5
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("Redis unavailable (reading progress): ConnectionRefusedError")
    assert lines[1].startswith("Redis answers again after ")
    assert outages.report() == {} and outages.ongoing() == []
    assert [outage.service for outage in outages.history] == [REDIS]


async def test_a_permanent_error_is_raised_at_once():
    call = Flaky(1, kafka_errors.ProducerFenced())
    with pytest.raises(kafka_errors.ProducerFenced):
        await retrying(KAFKA, "committing", call, outages=Outages())
    assert call.attempts == 1


async def test_outside_a_service_a_call_gives_up_naming_the_backing_service(monkeypatch):
    monkeypatch.setattr(retry, "GIVE_UP_S", 0.1)
    outages = Outages()
    with pytest.raises(OutageError, match=r"Kafka did not answer \(starting the consumer; gave"):
        call = Flaky(10**6, TimeoutError())
        await retrying(KAFKA, "starting the consumer", call, outages=outages)
    assert outages.report() == {}  # given up: no longer reported


async def test_inside_a_service_it_retries_past_the_give_up_time_until_stopped(monkeypatch):
    monkeypatch.setattr(retry, "GIVE_UP_S", 0.05)
    outages = Outages()
    stop = asyncio.Event()
    call = Flaky(10**6, redis_errors.ConnectionError("reset"))
    with retry.retry_until_stopped(stop):
        task = asyncio.create_task(retrying(REDIS, "beating", call, outages=outages))
    await asyncio.sleep(0.3)  # pacing is the point: six times GIVE_UP_S pass, and it goes on
    assert not task.done()
    assert set(outages.report()) == {REDIS}
    assert outages.report()[REDIS].startswith("beating: failing since ")
    stop.set()
    with pytest.raises(OutageError, match="the service is stopping"):
        await asyncio.wait_for(task, 2)


async def test_a_hanging_attempt_is_bounded_and_tried_again():
    attempts = 0

    async def hangs_once() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await asyncio.sleep(3600)  # aiokafka #1101: a send that never returns
        return "sent"

    outages = Outages()
    assert await retrying(KAFKA, "sending", hangs_once, attempt_timeout=0.05, outages=outages)
    assert attempts == 2


async def test_before_retry_gets_each_failure_to_reset_a_client():
    seen: list[BaseException] = []

    async def reset(error: BaseException) -> None:
        seen.append(error)

    call = Flaky(2, kafka_errors.KafkaConnectionError("down"))
    await retrying(KAFKA, "delivering", call, before_retry=reset, outages=Outages())
    assert [type(error) for error in seen] == [kafka_errors.KafkaConnectionError] * 2


async def test_an_outage_ends_when_the_last_failing_caller_succeeds(caplog):
    caplog.set_level(logging.INFO, "streamer.outage")
    outages = Outages()
    first, second = retry.Watch(KAFKA, "fetching", outages), retry.Watch(KAFKA, "sending", outages)
    first.failed(ConnectionResetError())
    second.failed(ConnectionResetError())
    first.succeeded()
    assert outages.ongoing() == [KAFKA]
    second.succeeded()
    assert outages.ongoing() == []
    assert [r.getMessage().split(" ")[1] for r in caplog.records] == ["unavailable", "answers"]


def test_the_kafka_clients_repeated_complaints_pass_once_a_minute():
    """While a broker is away, aiokafka logs each failed reconnect several times a second."""
    from shared.logs import ClientRepeats

    repeats = ClientRepeats(every_s=60)

    def record(name: str, msg: str, arg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (arg,), None)

    template = "Unable connect to node with id 1: %s"
    passed = [repeats.filter(record("aiokafka", template, f"try {n}")) for n in range(50)]
    assert passed == [True] + [False] * 49
    assert repeats.filter(record("aiokafka.conn", template, "another logger"))
    assert all(repeats.filter(record("launcher", template, "ours")) for _ in range(3))
