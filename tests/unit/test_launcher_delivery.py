"""A batch's input offsets commit only once its records are stored: the wait for them."""

from __future__ import annotations

import asyncio

import pytest

from services.launcher import delivery
from services.launcher.delivery import RecordsPending, records_stored


async def test_nothing_to_wait_for_or_records_already_stored():
    await records_stored(None)
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    await records_stored(done)


async def test_records_slower_than_the_bound_leave_nothing_committed_and_go_on(monkeypatch):
    monkeypatch.setattr(delivery, "RECORDS_WAIT_S", 0.05)
    slow = asyncio.get_running_loop().create_future()
    with pytest.raises(RecordsPending, match=r"not stored within 0\.05 s"):
        await records_stored(slow)
    assert not slow.cancelled()  # the records are still being written: waited for next
    slow.set_result(None)
    await records_stored(slow)


async def test_records_that_failed_fail_the_delivery_with_their_own_error():
    failed = asyncio.get_running_loop().create_future()
    failed.set_exception(PermissionError("InfluxDB refused the write"))
    with pytest.raises(PermissionError, match="refused"):
        await records_stored(failed)
