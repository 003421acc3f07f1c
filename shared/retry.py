"""The one retry policy for calls to the backing services (Kafka, Redis, InfluxDB,
Elasticsearch), and the outages it reports.

Policy (tenacity): a call that fails with a transient error (`is_transient`: a connection
refused or reset, a timeout, a broker without leader or coordinator...) is tried again after
a capped exponential backoff with jitter (0.5 s, doubling, at most BACKOFF_CAP_S, plus up to
1 s of jitter, so that the services of a pipeline do not all knock at once). Each attempt is
bounded (`attempt_timeout`): some clients hang instead of failing on a dead server (aiokafka
#1101), and a hung attempt is a failed one.

How long: inside a running service (`retry_until_stopped`, set by shared.runtime) for as long
as the backing service is away, until the service is asked to stop; an outage of any length
is ridden out, and reported in the heartbeat meanwhile. Anywhere else (one-shot commands,
tests) a call gives up after GIVE_UP_S with a ServiceUnavailableError naming the service.
A permanent error (refused authorization, a record too large, a fenced producer, a bug) is
never retried: it is raised at once.

Outages: the first failure of a backing service logs one warning, its return one info line
with the outage's duration; the attempts in between are silent. `OUTAGES.report()` is what the
heartbeat's `outages` field shows while one lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from aiokafka import errors as kafka_errors
from elastic_transport import ConnectionError as EsConnectionError
from elastic_transport import ConnectionTimeout as EsConnectionTimeout
from redis import exceptions as redis_errors
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from shared.clients.influx import InfluxDBWriteError
from shared.errors import ServiceUnavailableError, StreamerError

log = logging.getLogger("streamer.outage")

T = TypeVar("T")

KAFKA, REDIS, INFLUXDB, ELASTICSEARCH = "Kafka", "Redis", "InfluxDB", "Elasticsearch"

BACKOFF_INITIAL_S = 0.5
BACKOFF_CAP_S = 15.0
JITTER_S = 1.0
#: Outside a running service, a call gives up after this long.
GIVE_UP_S = 60.0
#: The default bound of one attempt.
ATTEMPT_TIMEOUT_S = 30.0

#: Kafka errors that no retry can fix: the configuration, the data or the fencing is wrong.
PERMANENT_KAFKA_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.ProducerFenced,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.InvalidReplicationFactorError,
    kafka_errors.PolicyViolationError,
    kafka_errors.UnsupportedVersionError,
    kafka_errors.IncompatibleBrokerVersion,
    kafka_errors.UnrecognizedBrokerVersion,
    kafka_errors.UnsupportedCodecError,
    kafka_errors.KafkaConfigurationError,
    kafka_errors.IllegalArgumentError,
    kafka_errors.IllegalStateError,
)


def is_transient(error: BaseException) -> bool:
    """Whether trying again later may succeed: the backing service is away or busy.

    Kafka: every error but the permanent ones above. A broker restart surfaces as a zoo of
    them (connection errors, timeouts, no coordinator, unknown producer id, invalid epoch,
    concurrent transactions...), and the callers that hold state recreate their clients
    between attempts. Redis: connection and timeout errors (not a wrong command). InfluxDB and
    Elasticsearch speak HTTP: connection errors and timeouts.
    """
    if isinstance(error, ServiceUnavailableError | TimeoutError | ConnectionError):
        return True
    if isinstance(error, kafka_errors.KafkaError):
        return not isinstance(error, PERMANENT_KAFKA_ERRORS)
    if isinstance(error, redis_errors.RedisError):
        return isinstance(error, redis_errors.ConnectionError | redis_errors.TimeoutError)
    if isinstance(error, aiohttp.ClientError):
        return isinstance(error, aiohttp.ClientConnectionError | aiohttp.ServerTimeoutError)
    if isinstance(error, InfluxDBWriteError):
        return error.status >= 500 or error.status in (408, 429)
    return isinstance(error, OSError | EsConnectionError | EsConnectionTimeout)


# ---- outages ---------------------------------------------------------------------------------


@dataclass
class _Failure:
    service: str
    what: str
    since: float  # epoch s
    error: str


@dataclass
class Outage:
    """One backing service away: since when, and (once it answers again) until when."""

    service: str
    started: float  # epoch s
    ended: float | None = None

    @property
    def seconds(self) -> float:
        return round((self.ended or time.time()) - self.started, 3)


@dataclass
class Outages:
    """The backing services this process cannot reach now: each failing call site (`site`,
    from `new_site()`) with the service it needs and what it tried. A service's outage starts
    with its first failing site and ends when its last one succeeded; both ends are logged
    once."""

    _failing: dict[int, _Failure] = field(default_factory=dict)
    _current: dict[str, Outage] = field(default_factory=dict)
    history: list[Outage] = field(default_factory=list)

    def failed(self, service: str, site: int, what: str, error: BaseException | str) -> None:
        text = _describe(error)
        known = self._failing.get(site)
        if known is not None and known.service == service:
            known.error = text
            return
        if known is not None:  # the same call now fails on another service
            self._leave(site, recovered=True)
        self._failing[site] = _Failure(service, what, time.time(), text)
        if service not in self._current:
            outage = self._current[service] = Outage(service, time.time())
            log.warning(
                f"{service} unavailable ({what}): {text}; retrying with backoff until it answers",
                extra={"backing": service, "what": what, "error": text},
            )
            self.history = [*self.history[-99:], outage]

    def succeeded(self, site: int) -> None:
        self._leave(site, recovered=True)

    def abandoned(self, site: int) -> None:
        """The site stopped trying (its service is stopping, or the error was permanent)."""
        self._leave(site, recovered=False)

    def _leave(self, site: int, recovered: bool) -> None:
        failure = self._failing.pop(site, None)
        if failure is None:
            return
        service = failure.service
        if any(other.service == service for other in self._failing.values()):
            return
        outage = self._current.pop(service, None)
        if outage is None:
            return
        outage.ended = time.time()
        if recovered:
            log.info(
                f"{service} answers again after {outage.seconds:.1f} s",
                extra={"backing": service, "outage_s": outage.seconds},
            )

    def report(self) -> dict[str, str]:
        """Backing service -> what fails, since when (the heartbeat's `outages`)."""
        report = {}
        for failure in sorted(self._failing.values(), key=lambda failure: -failure.since):
            since = datetime.fromtimestamp(failure.since, UTC).isoformat(timespec="seconds")
            report[failure.service] = f"{failure.what}: failing since {since}: {failure.error}"
        return report

    def ongoing(self) -> list[str]:
        return sorted(self._current)


def backing_of(error: BaseException) -> str:
    """The backing service an error comes from, for calls that use several."""
    if isinstance(error, ServiceUnavailableError):
        return error.service
    if isinstance(error, kafka_errors.KafkaError):
        return KAFKA
    if isinstance(error, redis_errors.RedisError):
        return REDIS
    if isinstance(error, EsConnectionError | EsConnectionTimeout):
        return ELASTICSEARCH
    if isinstance(error, aiohttp.ClientError | InfluxDBWriteError):
        return INFLUXDB
    return "a backing service"


#: This process's outages (one process runs one service).
OUTAGES = Outages()


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error) or "no answer"
    return f"{type(error).__name__}: {text}"[:300]


# ---- the policy ------------------------------------------------------------------------------

_stop: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar(
    "streamer_retry_stop", default=None
)


@contextlib.contextmanager
def retry_until_stopped(stop: asyncio.Event) -> Iterator[None]:
    """Inside: retries (in this task and the tasks it creates) last until `stop` is set."""
    token = _stop.set(stop)
    try:
        yield
    finally:
        _stop.reset(token)


class OutageError(ServiceUnavailableError):
    """A call to a backing service gave up: the service is stopping while it is still away,
    or (outside a running service) it stayed away for GIVE_UP_S."""

    def __init__(self, service: str, what: str, cause: BaseException, stopping: bool):
        self.service = service
        self.address = what
        why = "the service is stopping" if stopping else f"gave up after {GIVE_UP_S:g} s"
        message = f"{service} did not answer ({what}; {why}): {_describe(cause)}"
        StreamerError.__init__(self, message)


_sites = itertools.count(1)


def new_site() -> int:
    """An id for a call site that reports its failures to Outages itself."""
    return next(_sites)


async def retrying(
    service: str | None,
    what: str,
    call: Callable[[], Awaitable[T]],
    *,
    attempt_timeout: float | None = ATTEMPT_TIMEOUT_S,
    before_retry: Callable[[BaseException], Awaitable[None]] | None = None,
    outages: Outages = OUTAGES,
) -> T:
    """`await call()` until it succeeds, through transient failures (module docstring).

    `service`: the backing service it needs (KAFKA, REDIS, ...), for the outage report (None:
    the one each error comes from, for a call that needs several); `what`: what the call
    does, in a few words. `before_retry(error)` runs before each new attempt: the place to
    drop a client left in an unknown state (a transaction cut short)."""
    stop = _stop.get()
    site = next(_sites)
    give_up = stop_after_delay(GIVE_UP_S) if stop is None else _when_set(stop)
    policy = AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(
            multiplier=BACKOFF_INITIAL_S, max=BACKOFF_CAP_S, jitter=JITTER_S
        ),
        stop=give_up,
        sleep=_sleeper(stop),
        before_sleep=_report(outages, service, site, what),
        reraise=True,
    )
    last: BaseException | None = None
    try:
        async for attempt in policy:
            if last is not None:  # outside the attempt: these end the retries
                if stop is not None and stop.is_set():
                    raise OutageError(
                        service or backing_of(last), what, last, stopping=True
                    ) from last
                if before_retry is not None:
                    await before_retry(last)
            with attempt:
                try:
                    async with asyncio.timeout(attempt_timeout):
                        result = await call()
                except Exception as error:
                    last = error
                    raise
    except Exception as error:
        outages.abandoned(site)
        if last is not None and error is last and is_transient(error):
            raise OutageError(
                service or backing_of(error), what, error, stopping=stop is not None
            ) from error
        raise
    outages.succeeded(site)
    return result


def _when_set(stop: asyncio.Event) -> Callable[[RetryCallState], bool]:
    return lambda _state: stop.is_set()


def _sleeper(stop: asyncio.Event | None) -> Callable[[float], Awaitable[None]]:
    """The backoff's sleep, cut short when the service is asked to stop."""

    async def sleep(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    return sleep


def _report(
    outages: Outages, service: str | None, site: int, what: str
) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if error is not None:
            outages.failed(service or backing_of(error), site, what, error)

    return before_sleep


class Watch:
    """The outage bookkeeping of a call site that is not retried but simply done again later
    (a periodic beat, a best-effort look-up that the next loop turn repeats)."""

    def __init__(self, service: str, what: str, outages: Outages = OUTAGES):
        self.service, self.what, self.outages = service, what, outages
        self.site = next(_sites)

    def failed(self, error: BaseException) -> None:
        self.outages.failed(self.service, self.site, self.what, error)

    def succeeded(self) -> None:
        self.outages.succeeded(self.site)

    async def attempt(self, call: Callable[[], Awaitable[T]], default: Any = None) -> T | Any:
        """`await call()`; on a transient error, note the outage and return `default`."""
        try:
            result = await call()
        except Exception as error:
            if not is_transient(error):
                raise
            self.failed(error)
            return default
        self.succeeded()
        return result
