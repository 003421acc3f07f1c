"""Writing evaluation documents to Elasticsearch without ever blocking or crashing the caller.

`ensure_templates` installs one composable index template per index declared in
`shared.sinks.documents.INDICES` (explicit mapping, `dynamic: false`, 1 shard, 0 replicas), so
the indices are created with our mapping whoever writes first. `ElasticSink` validates each
document when it is added, buffers it under its deterministic `_id` and bulk-indexes in the
background: a replay overwrites instead of duplicating, an outage is retried with exponential
backoff while the buffer keeps the newest `max_documents` (the oldest are dropped and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from elastic_transport import ApiError as TransportApiError
from elastic_transport import TransportError
from elasticsearch import AsyncElasticsearch

from shared.clients.elastic import connect_elasticsearch
from shared.config.settings import ConnectionSettings
from shared.retry import ELASTICSEARCH, OUTAGES, new_site
from shared.sinks.documents import INDICES, IndexSpec, spec_for, validate_document

__all__ = [
    "DEFAULT_PREFIX",
    "INDICES",
    "ElasticSink",
    "SinkStats",
    "ensure_templates",
    "index_name",
    "index_template",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "streamer-"
#: Above the 0 of hand-made templates and the 100 of Elastic's built-in `logs-*-*`/`metrics-*-*`,
#: so that ours wins for `streamer-*` indices instead of failing on an equal-priority overlap.
TEMPLATE_PRIORITY = 200
#: Bump when a mapping changes (existing indices keep theirs until re-created or re-indexed).
TEMPLATE_VERSION = 2
#: Per-item or per-request statuses that mean "try again later", not "this document is wrong".
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def check_prefix(prefix: str) -> str:
    """Index names must be lowercase and cannot start with `_`, `-` or `+`."""
    if not _PREFIX.match(prefix):
        raise ValueError(
            f"index prefix {prefix!r}: use lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return prefix


def index_name(prefix: str, name: str) -> str:
    """The real index of a declared one: `index_name("streamer-", "metrics")`."""
    spec_for(name)
    return f"{prefix}{name}"


def index_template(prefix: str, spec: IndexSpec) -> dict[str, Any]:
    """The composable index template of one index (keyword arguments of put_index_template)."""
    return {
        "name": f"{prefix}{spec.name}",
        "index_patterns": [f"{prefix}{spec.name}*"],
        "priority": TEMPLATE_PRIORITY,
        "version": TEMPLATE_VERSION,
        "meta": {"managed_by": "streamer", "description": spec.doc},
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": spec.mappings(),
        },
    }


async def ensure_templates(client: AsyncElasticsearch, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Create or overwrite our index templates (idempotent: the same call twice changes
    nothing). Returns the template names. Indices created before get the fields declared
    since (adding a field is always allowed); a field whose type changed keeps its old type
    there, with a warning, until the index is re-created."""
    check_prefix(prefix)
    names = []
    for spec in INDICES.values():
        template = index_template(prefix, spec)
        await client.indices.put_index_template(**template)
        names.append(template["name"])
        try:
            await client.indices.put_mapping(
                index=f"{prefix}{spec.name}*",
                allow_no_indices=True,
                **spec.mappings(),
            )
        except TransportApiError as error:
            if error.meta.status in RETRY_STATUSES:
                raise
            log.warning(
                f"existing {prefix}{spec.name} indices keep their older mapping: {error}",
                extra={"status": error.meta.status},
            )
    return names


@dataclass(frozen=True)
class SinkStats:
    """Counters for health endpoints and logs."""

    indexed: int
    failed: int
    dropped: int
    pending: int
    consecutive_failures: int
    last_error: str | None

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0


_Key = tuple[str, str]  # (index short name, _id)


class ElasticSink:
    """Buffered, idempotent bulk writer; see the module docstring.

    `add()` is synchronous and cheap (validation + buffering; call it from the event loop's
    thread); `start()` runs a background task that flushes every `flush_interval` seconds or
    as soon as `batch_size` documents wait; `close()` makes a last attempt (bounded by
    `close_timeout`) and closes the client. Errors from Elasticsearch are logged and counted,
    never raised to the caller. Memory: at most `max_documents` buffered plus one batch in
    flight.
    """

    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_documents: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        close_timeout: float = 10.0,
    ) -> None:
        if max_documents < 1 or batch_size < 1:
            raise ValueError("max_documents and batch_size must be at least 1")
        if initial_backoff <= 0 or max_backoff < initial_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")
        self.prefix = check_prefix(prefix)
        self.max_documents = max_documents
        self.batch_size = min(batch_size, max_documents)
        self.flush_interval = flush_interval
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.close_timeout = close_timeout
        self._client = client
        self._buffer: OrderedDict[_Key, dict[str, Any]] = OrderedDict()
        self._in_flight = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._templates_ready = False
        self._retry_at = 0.0
        self._last_drop_warning = -float("inf")
        self._indexed = 0
        self._failed = 0
        self._dropped = 0
        self._consecutive_failures = 0
        self._last_error: str | None = None
        self._site = new_site()

    @classmethod
    def connect(cls, settings: ConnectionSettings, **options: Any) -> ElasticSink:
        """A sink with its own client on `STREAMER_ES_URL` (closed by `close()`)."""
        return cls(connect_elasticsearch(settings), **options)

    @property
    def stats(self) -> SinkStats:
        return SinkStats(
            indexed=self._indexed,
            failed=self._failed,
            dropped=self._dropped,
            pending=len(self._buffer) + self._in_flight,
            consecutive_failures=self._consecutive_failures,
            last_error=self._last_error,
        )

    def pending_documents(self) -> list[tuple[str, str]]:
        """(index, _id) of the buffered documents, oldest first (diagnostics and tests)."""
        return list(self._buffer)

    def index(self, name: str) -> str:
        """The real name of a declared index under this sink's prefix."""
        return index_name(self.prefix, name)

    def add(self, index_name: str, doc_id: str | None, document: Mapping[str, Any]) -> str:
        """Validate `document` and queue it under its deterministic `_id`; returns the id.

        `doc_id` may be None (derived from the declared id fields); when given it must equal
        the derived one, so that a replay always lands on the same document. A document still
        waiting under the same id is replaced by this newer version. Raises ValueError for a
        document that does not match its declaration (a bug in the caller).
        """
        spec = spec_for(index_name)
        source = validate_document(index_name, document)
        expected = spec.document_id(source)
        if doc_id is not None and doc_id != expected:
            raise ValueError(
                f"{index_name}: _id {doc_id!r} differs from {expected!r} built from "
                f"{', '.join(spec.id_fields)}"
            )
        if self._closed:
            self._dropped += 1
            log.warning("document added after close(): dropped", extra={"index": index_name})
            return expected
        key = (index_name, expected)
        self._buffer[key] = source
        self._buffer.move_to_end(key)
        self._trim()
        if len(self._buffer) >= self.batch_size and not self._backing_off():
            self._wake.set()
        return expected

    async def flush(self, *, force: bool = False) -> bool:
        """Bulk-index what is buffered; True when nothing is left. While backing off after a
        failure this returns False at once unless `force` (the background task and `close()`
        decide when to retry). Never raises for Elasticsearch errors."""
        async with self._lock:
            if not self._buffer:
                return True
            if self._backing_off() and not force:
                return False
            budget = len(self._buffer)  # not the documents added meanwhile: no endless flush
            while self._buffer and budget > 0:
                chunk = self._take(min(self.batch_size, budget))
                budget -= len(chunk)
                try:
                    sent = await self._send(chunk)
                except asyncio.CancelledError:  # close() timed out: keep them, count them
                    self._requeue(chunk)
                    raise
                except Exception:  # a bug here must not reach the caller either
                    log.exception("elasticsearch sink: unexpected error while flushing")
                    sent = self._retry_later(chunk, "unexpected error (see the log)")
                finally:
                    self._in_flight = 0
                if not sent:
                    return False
            return not self._buffer

    async def drain(self, within_s: float) -> bool:
        """Wait until what was added so far is written, at most `within_s`; True when it
        is. Callers that checkpoint their progress call it first, so that a crash right after
        the checkpoint loses no document. Returns False at once while backing off after a
        failure; a flush slower than `within_s` counts as a failure (so the next calls do not
        wait again before the backoff is over). Never raises for Elasticsearch errors."""
        try:
            async with asyncio.timeout(within_s):
                return await self.flush()
        except TimeoutError:
            self._note_failure(f"a flush took more than {within_s:g} s")
            return False

    async def start(self) -> None:
        """Start flushing in the background (idempotent)."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name=f"elastic-sink-{self.prefix}")

    async def close(self) -> None:
        """Stop the background task, try a last flush (at most `close_timeout` s, ignoring the
        backoff), count what is still unsent as dropped, close the client. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            async with asyncio.timeout(self.close_timeout):
                await self.flush(force=True)
        except TimeoutError:
            log.warning("last flush timed out", extra={"timeout_s": self.close_timeout})
        finally:
            lost = len(self._buffer)
            if lost:
                self._dropped += lost
                self._buffer.clear()
                log.warning(
                    f"{lost} documents could not be written before shutdown",
                    extra={"dropped": lost, "last_error": self._last_error},
                )
            await self._client.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_wait()):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # never let the background task die unnoticed
                log.exception("elasticsearch sink: flush failed")

    def _next_wait(self) -> float:
        """Seconds until the next attempt: the backoff after a failure, else the interval."""
        if self._backing_off():
            return max(self._retry_at - time.monotonic(), 0.0)
        return self.flush_interval

    def _backing_off(self) -> bool:
        return self._consecutive_failures > 0 and time.monotonic() < self._retry_at

    def _take(self, count: int) -> list[tuple[_Key, dict[str, Any]]]:
        chunk = [self._buffer.popitem(last=False) for _ in range(count)]
        self._in_flight = len(chunk)
        return chunk

    def _requeue(self, chunk: list[tuple[_Key, dict[str, Any]]]) -> None:
        """Put unsent documents back in front (they are the oldest), unless a newer version of
        the same document was added meanwhile, then enforce the bound."""
        self._in_flight = 0
        for key, source in reversed(chunk):
            if key not in self._buffer:
                self._buffer[key] = source
                self._buffer.move_to_end(key, last=False)
        self._trim()

    def _trim(self) -> None:
        """Drop the oldest documents beyond `max_documents` (counted, warned at most every 10 s).
        A batch in flight is not counted: if it fails it comes back as the oldest and goes
        first."""
        excess = len(self._buffer) - self.max_documents
        dropped = 0
        while excess > 0 and self._buffer:
            self._buffer.popitem(last=False)
            excess -= 1
            dropped += 1
        if dropped:
            self._dropped += dropped
            now = time.monotonic()
            if now - self._last_drop_warning >= 10.0:
                self._last_drop_warning = now
                log.warning(
                    "elasticsearch sink buffer full: dropping the oldest documents",
                    extra={
                        "dropped_total": self._dropped,
                        "max_documents": self.max_documents,
                        "last_error": self._last_error,
                    },
                )

    async def _send(self, chunk: list[tuple[_Key, dict[str, Any]]]) -> bool:
        """One bulk request; False (documents re-queued, backoff scheduled) when it must be
        retried later."""
        if not self._templates_ready and not await self._install_templates(chunk):
            return False
        operations: list[dict[str, Any]] = []
        for (name, doc_id), source in chunk:
            operations.append({"index": {"_index": self.index(name), "_id": doc_id}})
            operations.append(source)
        try:
            response = await self._client.bulk(
                operations=operations, filter_path="errors,items.*.status,items.*.error"
            )
        except TransportApiError as error:
            if error.meta.status in RETRY_STATUSES:
                return self._retry_later(chunk, f"HTTP {error.meta.status}: {error.message}")
            self._failed += len(chunk)  # the request itself is wrong: retrying cannot help
            log.error(
                f"elasticsearch rejected a bulk request of {len(chunk)} documents: {error}",
                extra={"status": error.meta.status, "failed_total": self._failed},
            )
            return True
        except (TransportError, OSError) as error:
            self._templates_ready = False  # the cluster may come back empty
            return self._retry_later(chunk, f"{type(error).__name__}: {error}")
        return self._settle(chunk, response.body)

    async def _install_templates(self, chunk: list[tuple[_Key, dict[str, Any]]]) -> bool:
        """Templates first, else the first write would create indices with dynamic mappings."""
        try:
            await ensure_templates(self._client, self.prefix)
        except TransportApiError as error:
            if error.meta.status not in RETRY_STATUSES:  # e.g. 403: fix the user's privileges
                log.error(
                    f"cannot install the index templates ({error}); nothing is written "
                    "until they exist",
                    extra={"status": error.meta.status},
                )
            return self._retry_later(chunk, f"templates: HTTP {error.meta.status}")
        except (TransportError, OSError) as error:
            return self._retry_later(chunk, f"{type(error).__name__}: {error}")
        self._templates_ready = True
        return True

    def _retry_later(self, chunk: list[tuple[_Key, dict[str, Any]]], reason: str) -> bool:
        self._requeue(chunk)
        self._note_failure(reason)
        return False

    def _settle(self, chunk: list[tuple[_Key, dict[str, Any]]], body: dict[str, Any]) -> bool:
        """Count the items of a bulk response; re-queue the ones refused for load."""
        if not body.get("errors"):
            self._indexed += len(chunk)
            self._note_success()
            return True
        retry: list[tuple[_Key, dict[str, Any]]] = []
        rejected: list[str] = []
        for entry, item in zip(chunk, body.get("items", []), strict=True):
            result = next(iter(item.values()))
            status = result.get("status", 0)
            if 200 <= status < 300:
                self._indexed += 1
            elif status in RETRY_STATUSES:
                retry.append(entry)
            else:
                self._failed += 1
                (name, doc_id), _ = entry
                rejected.append(f"{name}/{doc_id}: {status} {result.get('error')}")
        if rejected:
            log.error(
                f"elasticsearch rejected {len(rejected)} documents; first: {rejected[0]}",
                extra={"rejected": len(rejected), "failed_total": self._failed},
            )
        if retry:
            return self._retry_later(retry, f"{len(retry)} documents refused for load")
        self._note_success()
        return True

    def _note_failure(self, reason: str) -> None:
        """Schedule the next attempt (the sink never blocks its caller, so it schedules
        instead of sleeping through shared/retry.py) and report the outage there: the
        heartbeat shows it; the first failure in a row is logged, later ones at debug."""
        self._consecutive_failures += 1
        self._last_error = reason
        delay = min(self.max_backoff, self.initial_backoff * 2 ** (self._consecutive_failures - 1))
        self._retry_at = time.monotonic() + delay
        OUTAGES.failed(ELASTICSEARCH, self._site, "indexing documents", reason)
        log.log(
            logging.WARNING if self._consecutive_failures == 1 else logging.DEBUG,
            f"elasticsearch unavailable, retrying in {delay:.1f} s: {reason}",
            extra={
                "attempt": self._consecutive_failures,
                "pending": len(self._buffer),
                "retry_in_s": delay,
            },
        )

    def _note_success(self) -> None:
        OUTAGES.succeeded(self._site)
        if self._consecutive_failures:
            log.info(
                "elasticsearch is reachable again",
                extra={"failed_attempts": self._consecutive_failures, "dropped": self._dropped},
            )
        self._consecutive_failures = 0
        self._last_error = None
        self._retry_at = 0.0
