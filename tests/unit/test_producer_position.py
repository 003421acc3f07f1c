"""Where a restarted producer continues: record ids, tail windows, the round-robin, and the
checks that refuse to continue topics that disagree or a file that changed."""

from __future__ import annotations

import pytest

from services.producer.position import (
    FIRST_TAIL_WINDOW,
    FROM_START,
    PositionError,
    Resume,
    Tail,
    check_resumed_line,
    line_of,
    next_partition,
    resume_point,
    tail_windows,
)
from services.producer.source import Line


@pytest.mark.parametrize(
    ("record_id", "line"),
    [
        (b"kdd:17", 17),
        (b"a:b:3", None),  # source "a:b" is not "kdd"
        (b"kdd:", None),
        (b"kdd:x1", None),
        (b"kdd:-1", None),
        (b"other:5", None),
        (b"kdd", None),
        (None, None),
    ],
)
def test_line_of_reads_only_this_sources_record_ids(record_id, line):
    assert line_of(record_id, b"kdd") == line


def test_a_source_name_with_colons_keeps_its_record_ids():
    assert line_of(b"a:b:3", b"a:b") == 3


def test_tail_windows_grow_backwards_from_the_end_and_stop_at_the_beginning():
    windows = list(tail_windows(100, 100 + 2 * FIRST_TAIL_WINDOW + 8 * FIRST_TAIL_WINDOW))
    end = 100 + 10 * FIRST_TAIL_WINDOW
    assert windows == [
        (end - FIRST_TAIL_WINDOW, end),
        (end - 9 * FIRST_TAIL_WINDOW, end - FIRST_TAIL_WINDOW),
        (100, end - 9 * FIRST_TAIL_WINDOW),
    ]
    assert list(tail_windows(5, 5)) == []  # an empty partition
    assert list(tail_windows(0, 3)) == [(0, 3)]


@pytest.mark.parametrize(
    ("partitions", "last", "following"),
    [([0], 0, 0), ([0, 1, 2], 0, 1), ([2, 0, 1], 2, 0), ([0, 1, 2], 7, 0)],
)
def test_next_partition_continues_the_round_robin(partitions, last, following):
    assert next_partition(partitions, last) == following


def tail(topic: str, partition: int, line: int, offset: int = 0) -> Tail:
    return Tail(topic, partition, offset, line, b"line %d" % line)


def test_the_highest_committed_line_of_all_partitions_is_where_a_replay_continues():
    tails = {
        "a": [tail("a", 0, 30), tail("a", 1, 40), tail("a", 2, 20)],
        "b": [tail("b", 0, 40), tail("b", 1, 10)],
    }
    resume = resume_point(tails, {"a": [0, 1, 2], "b": [0, 1]})
    assert resume.line == 40
    assert resume.last is not None and resume.last.value == b"line 40"
    assert dict(resume.next_partition) == {"a": 2, "b": 1}


def test_topics_without_a_record_of_the_source_start_from_the_first_line():
    assert resume_point({"a": [], "b": []}, {"a": [0], "b": [0, 1]}) == FROM_START


def test_topics_that_end_at_different_lines_are_refused_naming_each():
    tails = {"a": [tail("a", 0, 40)], "b": []}
    with pytest.raises(
        PositionError, match=r"^the topics do not end .*\(a up to line 40, b up to line 0\)$"
    ):
        resume_point(tails, {"a": [0], "b": [0]})


def test_a_file_that_still_has_the_last_sent_line_can_be_continued():
    resume = Resume(40, tail("a", 1, 40, offset=77))
    assert check_resumed_line(resume, Line(40, b"line 40")) is None
    assert check_resumed_line(FROM_START, None) is None


def test_a_shorter_or_changed_file_is_named_with_the_record_that_holds_the_line():
    resume = Resume(40, tail("a", 1, 40, offset=77))
    assert check_resumed_line(resume, None) == (
        "the file has no line 40, the last line a (partition 1, offset 77) holds"
    )
    changed = "line 40 differs from the line a (partition 1, offset 77) holds for it"
    assert check_resumed_line(resume, Line(40, b"line 40 edited")) == changed
    assert check_resumed_line(resume, Line(41, b"line 41")) == changed  # 40 is blank now
