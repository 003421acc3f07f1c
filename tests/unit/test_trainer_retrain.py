"""What a retrain learns from (services/trainer/retrain.py): where a fresh model starts after
a located change, the minimum number of records, several requests read at once."""

from __future__ import annotations

from services.trainer.retrain import located_change, since_change_starts
from shared.wire.store import RetrainRequest


def test_a_fresh_model_starts_at_the_change_when_enough_records_follow_it():
    since = {"in/0": 1_000, "in/1": 2_000}
    ends = {"in/0": 1_600, "in/1": 2_500}
    assert since_change_starts(since, ends, min_records=200) == since


def test_too_few_records_after_the_change_start_that_many_earlier_from_every_partition():
    since = {"in/0": 1_000, "in/1": 2_000}
    ends = {"in/0": 1_030, "in/1": 2_020}  # 50 follow: 150 missing, 75 from each partition
    assert since_change_starts(since, ends, min_records=200) == {"in/0": 925, "in/1": 1_925}


def test_never_before_the_first_offset():
    assert since_change_starts({"in/0": 10}, {"in/0": 20}, min_records=200) == {"in/0": 0}


def test_a_partition_the_change_does_not_name_starts_at_its_end_and_one_ahead_stays_ahead():
    """`in/1` had no output scored before the change: nothing of it is known to be of the old
    concept, its new records are learnt as they come. A change located beyond what the
    launchers reported (a race between their progress and the evaluator) stays there."""
    since = {"in/0": 500, "in/2": 900}
    ends = {"in/0": 800, "in/1": 300, "in/2": 850}
    assert since_change_starts(since, ends, min_records=100) == {
        "in/0": 500,
        "in/1": 300,
        "in/2": 900,
    }


def test_the_newest_located_change_wins_and_api_requests_locate_none():
    api = RetrainRequest(reason="api request", by="api")
    first = RetrainRequest(reason="alert: accuracy", by="evaluator", since={"in/0": 10})
    second = RetrainRequest(reason="alert: accuracy", by="evaluator", since={"in/0": 40})
    assert located_change([first, second, api]) == {"in/0": 40}
    assert located_change([api]) is None
    assert located_change([]) is None


def test_a_request_carries_its_change_through_the_stream_fields():
    request = RetrainRequest(
        reason="alert: accuracy", by="evaluator", since={"in/0": 10}, change_evaluation=3
    )
    fields = {key.encode(): value.encode() for key, value in request.encode().items()}
    assert fields[b"since"] == b'{"in/0": 10}'
    assert RetrainRequest.decode(fields) == request
    assert b"since" not in {k.encode() for k in RetrainRequest(reason="r").encode()}
