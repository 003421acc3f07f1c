"""Producer pacing as pure logic: block cutting, groups, block schedule and timestamp gaps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.producer.pacing import (
    TimestampPacer,
    block_wait,
    blocks,
    blocks_by_group,
    first_field,
    parse_timestamp_ms,
    record_limit,
)
from services.producer.source import Line


def lines_of(*values: str) -> list[Line]:
    return [Line(number, value.encode()) for number, value in enumerate(values, start=1)]


def utc_ms(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp() * 1000


def numbers(cut: list[list[Line]]) -> list[list[int]]:
    return [[line.number for line in block] for block in cut]


def test_blocks_have_records_per_block_lines_and_the_last_partial_block_is_kept():
    cut = list(blocks(lines_of(*"abcdefg"), 3))
    assert numbers(cut) == [[1, 2, 3], [4, 5, 6], [7]]


def test_blocks_of_an_empty_source_are_none():
    assert list(blocks([], 3)) == []


def test_a_block_never_mixes_groups_and_the_line_that_changes_group_opens_the_next():
    values = ["1,a", "1,b", "1,c", "2,d", "2,e", "3,f", "3,g", "3,h", "3,i", "4,j"]
    cut = list(blocks_by_group(lines_of(*values), 3, first_field(",")))
    assert numbers(cut) == [[1, 2, 3], [4, 5], [6, 7, 8], [9], [10]]
    for block in cut:
        assert len({line.value.split(b",")[0] for line in block}) == 1
    assert [line for block in cut for line in block] == lines_of(*values)  # nothing lost


def test_the_last_group_is_sent_even_when_the_file_ends_inside_it():
    cut = list(blocks_by_group(lines_of("7 x", "7 y", "8 z"), 5, first_field(" ")))
    assert numbers(cut) == [[1, 2], [3]]


def test_a_full_block_followed_by_a_new_group_gives_no_empty_block():
    cut = list(blocks_by_group(lines_of("a,1", "a,2", "b,3"), 2, first_field(",")))
    assert numbers(cut) == [[1, 2], [3]]


def test_first_field_splits_on_the_record_separator_and_ignores_padding():
    assert first_field(",")(b" 12 ,3,4") == b"12"
    assert first_field(" ")(b"  1 1 -0.0007 ") == b"1"
    assert first_field(";")(b"nosep") == b"nosep"


def test_blocks_follow_a_schedule_from_the_previous_start_not_sleep_after_send():
    """A block that takes 0.1 s to send still leaves the next one 0.5 s after its start."""
    now, starts = 0.0, []
    previous = None
    for _ in range(4):
        now += block_wait(previous, 0.5, now)
        previous = now
        starts.append(now)
        now += 0.1  # sending the block
    assert starts == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_block_wait_is_never_negative_and_an_overrun_block_is_followed_at_once():
    assert block_wait(None, 10.0, 123.0) == 0.0
    assert block_wait(10.0, 0.5, 10.2) == pytest.approx(0.3)
    assert block_wait(10.0, 0.5, 12.0) == 0.0
    assert block_wait(10.0, 0.0, 10.0) == 0.0


def test_timestamp_gaps_are_the_original_gaps_plus_epsilonne_over_scale():
    pacer = TimestampPacer(epsilonne=100.0, scale=2.0)
    assert [pacer.gap_ms(t) for t in (1_000.0, 2_000.0, 4_000.0)] == [0.0, 550.0, 1_050.0]


def test_timestamp_gaps_are_never_negative_and_the_first_record_goes_at_once():
    pacer = TimestampPacer(epsilonne=-500.0, scale=1.0)
    assert pacer.gap_ms(5_000.0) == 0.0  # first: immediately
    assert pacer.gap_ms(4_000.0) == 0.0  # earlier than the previous one
    assert pacer.gap_ms(4_100.0) == 0.0  # 100 ms gap - 500 ms epsilonne
    assert pacer.gap_ms(5_100.0) == 500.0  # measured from the previous record (4,100)


def test_a_record_without_timestamp_goes_at_once_and_keeps_the_previous_time():
    pacer = TimestampPacer()
    assert [pacer.gap_ms(t) for t in (1_000.0, None, 3_000.0)] == [0.0, 0.0, 2_000.0]


def test_timestamp_due_times_accumulate_on_a_schedule():
    pacer = TimestampPacer(scale=10.0)
    due = [pacer.due_ms(t) for t in (0.0, 1_000.0, 1_000.0, None, 5_000.0)]
    assert due == [0.0, 100.0, 100.0, 100.0, 500.0]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (b"1700000000123", 1_700_000_000_123.0),
        (b" 1500.5 ", 1_500.5),
        (b"2024-03-01T12:00:01Z", datetime(2024, 3, 1, 12, 0, 1, tzinfo=UTC).timestamp() * 1000),
        (
            b'"2024-03-01 12:00:01.250"',
            datetime(2024, 3, 1, 12, 0, 1, 250_000, UTC).timestamp() * 1e3,
        ),
        (
            b"2024-03-01T13:00:01+01:00",
            datetime(2024, 3, 1, 12, 0, 1, tzinfo=UTC).timestamp() * 1e3,
        ),
        (b"01-Mar-2024 12:00:01", None),
        (b"nan", None),
        (b"", None),
    ],
)
def test_timestamps_are_epoch_ms_or_iso_8601(field, expected):
    assert parse_timestamp_ms(field) == expected


def test_max_blocks_caps_the_unblocked_modes_at_the_same_number_of_records():
    assert record_limit(-1, 50) is None
    assert record_limit(0, 50) == 0
    assert record_limit(3, 50) == 150
