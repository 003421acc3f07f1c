"""The rounds table folds a federated server's round phases (shared/wire/federated.py)."""

from __future__ import annotations

from shared.wire.federated import ClientRound, RoundPhase, client_round, rounds_table


def test_a_round_run_again_after_a_restart_keeps_its_last_figures():
    phases = [
        RoundPhase(phase="fit", round=3, at=1.0, clients=[ClientRound(client="a", examples=5)]),
        # the server restarted during round 3 and ran it again
        RoundPhase(phase="fit", round=3, at=2.0, clients=[ClientRound(client="a", examples=9)]),
        RoundPhase(phase="evaluate", round=3, at=3.0, clients=[ClientRound(client="a", loss=2)]),
    ]
    (row,) = rounds_table(phases)
    assert (row.round, row.at, row.clients["a"].examples, row.clients["a"].loss) == (3, 3.0, 9, 2)


def test_rows_come_oldest_first_and_each_phase_round_trips_through_redis_fields():
    phases = [RoundPhase(phase="server", round=n, at=float(n), loss=n / 10) for n in (2, 1)]
    assert [row.round for row in rounds_table(phases)] == [1, 2]
    encoded = {key.encode(): value.encode() for key, value in phases[0].encode().items()}
    assert RoundPhase.decode(encoded) == phases[0]


def test_a_client_is_named_by_its_flower_metrics():
    assert client_round({"client": "site-a"}, 12, 0.3) == ClientRound(
        client="site-a", examples=12, loss=0.3
    )
    assert client_round({}, 0).client == "?"
