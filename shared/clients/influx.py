"""Time-series storage behind a small interface, so the unmaintained aioinflux can be swapped.

Services depend on `TimeSeriesStore` only: write encoded line-protocol points, run InfluxQL
queries, get rows back as dicts. `AioinfluxStore` implements it on the InfluxDB 1.x HTTP API.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from shared.config.settings import ConnectionSettings
from shared.errors import ServiceUnavailableError

with warnings.catch_warnings():
    # aioinflux warns at import when pandas is absent; we never use its dataframe mode.
    warnings.simplefilter("ignore", UserWarning)
    from aioinflux import InfluxDBClient
    from aioinflux.client import InfluxDBError as InfluxDBError  # for the services
    from aioinflux.client import InfluxDBWriteError as InfluxDBWriteError  # for shared.retry


#: Bytes of line protocol per write request (aiohttp warns from 1 MiB on).
WRITE_BYTES = 512 * 1024


class TimeSeriesStore(Protocol):
    """What services need from a time-series database."""

    async def check(self) -> None: ...
    async def ensure_database(self) -> None: ...
    async def write_lines(self, lines: Sequence[str]) -> None: ...
    async def query(self, influxql: str) -> list[dict[str, Any]]: ...
    async def close(self) -> None: ...


class AioinfluxStore:
    """InfluxDB 1.x through aioinflux. Create it inside a running event loop."""

    def __init__(self, settings: ConnectionSettings, database: str | None = None):
        url = urlsplit(settings.influx_url)
        self.url = settings.influx_url
        self.database = database or settings.influx_db
        password = settings.influx_password.get_secret_value() if settings.influx_password else None
        self._client = InfluxDBClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or 8086,
            ssl=url.scheme == "https",
            db=self.database,
            username=settings.influx_user,
            password=password,
            timeout=30,
        )

    async def check(self) -> None:
        try:
            await self._client.ping()
        except (OSError, InfluxDBError) as error:
            raise ServiceUnavailableError("InfluxDB", self.url, error) from error

    async def ensure_database(self) -> None:
        """Create the database if needed. A user without admin rights (InfluxDB with auth, as
        in Compose, where the database is made at first start for the services' user) cannot
        create one: then the database must exist and be readable by this user."""
        try:
            await self._client.create_database(db=self.database)
        except InfluxDBError as error:
            if "requires admin privilege" not in str(error):
                raise
            try:
                await self.query("SHOW MEASUREMENTS LIMIT 1")
            except InfluxDBError as denied:
                raise InfluxDBError(
                    f"database {self.database!r} at {self.url}: this user may not create it "
                    f"and cannot read it ({denied}); create it and GRANT ALL to the user"
                ) from denied

    async def write_lines(self, lines: Sequence[str]) -> None:
        """Write encoded points (nanosecond timestamps), in requests of at most WRITE_BYTES:
        aiohttp sends a larger bytes body in one go on the event loop (and warns so)."""
        chunk: list[str] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > WRITE_BYTES:
                await self._client.write("\n".join(chunk).encode())
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            await self._client.write("\n".join(chunk).encode())

    async def query(self, influxql: str) -> list[dict[str, Any]]:
        """Run InfluxQL; return the rows of every series, each with its tags merged in."""
        result = await self._client.query(influxql, db=self.database)
        rows: list[dict[str, Any]] = []
        for statement in result.get("results", []):
            if "error" in statement:
                raise InfluxDBError(statement["error"])
            for series in statement.get("series", []):
                tags = series.get("tags", {})
                for values in series.get("values", []):
                    rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return rows

    async def close(self) -> None:
        await self._client.close()
