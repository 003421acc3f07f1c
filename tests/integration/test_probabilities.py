"""Class probabilities end to end, on the real services (producer, launcher, trainer, evaluator
as processes; the API in-process): a binary synthetic stream (River's Agrawal) whose outputs
carry the class probabilities (`output.probabilities`), and the evaluator's cumulative ROC AUC
and log-loss equal scikit-learn's over the outputs read back from outputTopic (ROC AUC within
what its score bins can move it, computed from the same scores); its reliability
tables equal scikit-learn's calibration_curve (probability of "1") and a hand computation of the
top-label table over the same outputs. The same on a multi-class KDD slice (one-vs-rest ROC
AUC, log-loss, the top-label table)."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import httpx
import numpy as np
import pytest
from river.datasets import synth
from sklearn.calibration import calibration_curve
from sklearn.metrics import log_loss, roc_auc_score

from tests.integration.pipeline_helpers import (
    collect_outputs,
    make_kdd_usecase,
    run_producer,
    service,
    service_env,
    wait_for,
)
from tests.integration.test_api import running_api
from tests.integration.test_challengers import PACED, kdd_rows
from tests.integration.test_drift import wait_until_serving

ROWS = 4_000
FEATURES = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan"]
METRICS = "Accuracy,ROCAUCMetric,LogLossMetric,CalibrationMetric,BinaryCalibrationMetric"
#: ROC AUC counts scores in bins of 1/1000 of log-odds, so two different scores closer than
#: that may count as a tie (shared/metrics/probabilistic.py); scores clipped like its bins.
LOGIT_BIN = 1e-3
SCORE_CLIP = 1e-12
N_BINS = 10
#: KDD rows where normal traffic gives way to a smurf attack (test_challengers.py).
KDD_FIRST_ROW, KDD_ROWS = 6_500, 3_000


def write_agrawal(path: Path) -> None:
    """ROWS rows of Agrawal's function 2 (labels 0 and 1), header first."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*FEATURES, "label"])
        for x, y in synth.Agrawal(classification_function=2, seed=7).take(ROWS):
            writer.writerow([*(x[name] for name in FEATURES), y])


def make_usecase(root: Path, name: str, datafile: Path) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "streaming.props").write_text(
        f"mainTopic={name}\noutputTopic={name}.outputs\nproblem.type=Generic\n"
        f"datafile={datafile}\ncontainsHeader=true\nproducerType=BLOCK\nrecordsPerBlock=200\n"
        "producerTimeInterval=200\nreadingTimeInterval=200\nvisualization=true\n"
        "output.probabilities=1\n"
    )
    (folder / "algs.props").write_text(
        f"algorithm=HoeffdingTreeClassifier\ntraining.interval=-1\nevaluation.metrics={METRICS}\n"
    )
    return folder


def is_one(target: object) -> int:
    """The binary outcome: the target is the class "1" (the CSV's label, read back as text or
    as a number)."""
    return int(float(str(target)) == 1.0)


def probability_of_one(output: dict) -> float:
    """The published probability of "1"; a class left out of a binary output's top has the
    rest of the mass (0 when the model gave it no probability: nothing omitted)."""
    published = output["probabilities"]
    top = {str(int(float(label))): p for label, p in published["top"].items()}
    if "1" in top:
        return top["1"]
    return 1.0 - sum(top.values()) if published.get("omitted") else 0.0


def auc_binning_bound(truth: list[int], score: list[float]) -> float:
    """How far the binned ROC AUC can be from the exact one: the (positive, negative) pairs
    of different scores closer than a bin in log-odds, halved (a tie counts half a pair where
    the exact rank counts 0 or 1), over all (positive, negative) pairs."""
    scores = np.array(score)
    clipped = np.clip(scores, SCORE_CLIP, 1 - SCORE_CLIP)
    logits = np.log(clipped / (1 - clipped))
    positive = np.array(truth) == 1
    raw_p, raw_n = scores[positive], scores[~positive]
    close = np.abs(logits[positive][:, None] - logits[~positive][None, :]) < LOGIT_BIN
    undecided = np.count_nonzero(close & (raw_p[:, None] != raw_n[None, :]))
    return 0.5 * undecided / (len(raw_p) * len(raw_n)) + 1e-12


def completed(output: dict, label: str) -> float:
    """The probability of `label` an output stands for: listed, else an equal share of the
    rest of the mass among the classes left out (0 when none was)."""
    published = output["probabilities"]
    top, omitted = published["top"], published.get("omitted", 0)
    if label in top:
        return top[label]
    return max(0.0, 1.0 - sum(top.values())) / omitted if omitted else 0.0


def hand_table(confidences: list[float], outcomes: list[int]) -> list[dict]:
    """The reliability table by hand: uniform bins (lower, upper] (the first includes 0),
    per non-empty bin its count, mean probability and observed frequency."""
    edges = [i / N_BINS for i in range(N_BINS + 1)]
    rows: dict[int, list[tuple[float, int]]] = {}
    for confidence, outcome in zip(confidences, outcomes, strict=True):
        number = next(i for i in range(N_BINS) if confidence <= edges[i + 1] + 1e-15)
        rows.setdefault(number, []).append((confidence, outcome))
    return [
        {
            "bin": number,
            "count": len(members),
            "confidence": sum(c for c, _ in members) / len(members),
            "frequency": sum(o for _, o in members) / len(members),
        }
        for number, members in sorted(rows.items())
    ]


async def wait_for_tables(
    client: httpx.AsyncClient, name: str, pairs: int, wanted: int
) -> dict[str, dict]:
    """The `wanted` cumulative reliability tables once they cover `pairs` records."""

    async def covering() -> dict[str, dict] | None:
        response = await client.get(f"/usecases/{name}/reliability?view=cumulative")
        assert response.status_code == 200, response.text
        tables = {table["metric"]: table for table in response.json()["tables"]}
        counts = [sum(b["count"] for b in table["bins"]) for table in tables.values()]
        return tables if len(tables) == wanted and min(counts) >= pairs else None

    return await wait_for(covering, f"{wanted} reliability tables covering {pairs} records", 90)


async def run_pipeline(
    folder: Path, expected: set[str], tables_wanted: int, *, tmp_path, kafka_bootstrap, connections
) -> tuple[list[dict], dict[str, dict], dict[str, float | None]]:
    """Launcher, trainer and evaluator as processes, the producer's replay; the outputs read
    back from outputTopic to its end, those with probabilities, the evaluator's cumulative
    reliability tables (by metric) once they cover them, and its cumulative metrics."""
    name = folder.name
    env, log = service_env(name), tmp_path / "services.log"
    settings = connections.model_copy(update={"influx_db": name, "usecases_dir": tmp_path})
    with (
        service("launch", folder, env, log),
        service("train", folder, env, log),
        service("evaluate", folder, env, log, cwd=tmp_path),
    ):
        await wait_until_serving(log, [name])
        await asyncio.to_thread(run_producer, folder, env, log)
        outputs = await collect_outputs(kafka_bootstrap, f"{name}.outputs", expected, 120)
        ids = {output["record_id"] for output in outputs}
        assert ids == expected and len(outputs) == len(expected), log.read_text()[-3000:]
        scored = [o for o in outputs if o["probabilities"] is not None and o["targets"]]
        async with running_api(settings, name, heartbeat=False) as (_, client):
            tables = await wait_for_tables(client, name, len(scored), tables_wanted)
            answer = (await client.get(f"/usecases/{name}/metrics?view=cumulative")).json()
    metrics = {value["metric"]: value["value"] for value in answer["latest"]}
    return scored, tables, metrics


async def test_roc_auc_log_loss_and_reliability_equal_scikit_learns_over_the_outputs(
    tmp_path, kafka_bootstrap, connections, unique
):
    datafile = tmp_path / "agrawal.csv"
    write_agrawal(datafile)
    folder = make_usecase(tmp_path, unique, datafile)
    expected = {f"agrawal:{line}" for line in range(2, ROWS + 2)}  # line 1: the header
    scored, tables, metrics = await run_pipeline(
        folder,
        expected,
        2,
        tmp_path=tmp_path,
        kafka_bootstrap=kafka_bootstrap,
        connections=connections,
    )
    assert len(scored) > ROWS // 2, len(scored)  # the first ones: before any version
    # output.probabilities=1: the top class listed, the other omitted (its probability, the
    # rest of the mass, is exact with one class left out), or one class before the model saw
    # the other
    classes = {len(o["probabilities"]["top"]) + o["probabilities"]["omitted"] for o in scored}
    assert classes <= {1, 2} and 2 in classes, classes

    truth = [is_one(o["targets"][0]) for o in scored]
    score = [probability_of_one(o) for o in scored]
    assert 0 < sum(truth) < len(truth) and len(set(score)) > 20  # two classes, varied scores
    auc = roc_auc_score(truth, score)
    gap = abs(metrics["roc_auc"] - auc)
    bound = auc_binning_bound(truth, score)
    assert gap <= bound, (metrics, auc, bound)
    assert 0.6 < auc < 1  # the tree does learn something on this stream
    wanted_loss = log_loss(truth, score, labels=[0, 1])
    assert metrics["log_loss"] == pytest.approx(wanted_loss, rel=1e-9), (metrics, wanted_loss)

    # the probability of "1": scikit-learn's calibration curve, bin for bin
    binary = tables["binary_calibration_error"]["bins"]
    frequency, mean_probability = calibration_curve(truth, score, n_bins=N_BINS)
    assert [b["frequency"] for b in binary] == pytest.approx(frequency.tolist(), abs=1e-12)
    assert [b["confidence"] for b in binary] == pytest.approx(mean_probability.tolist(), rel=1e-9)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, N_BINS + 1)[1:-1], score), minlength=10)
    assert [b["count"] for b in binary] == [int(c) for c in counts if c]
    assert [b["bin"] for b in binary] == [i for i, c in enumerate(counts) if c]

    ece = sum(b["count"] * abs(b["frequency"] - b["confidence"]) for b in binary) / len(scored)
    assert metrics["binary_calibration_error"] == pytest.approx(ece, rel=1e-9, abs=1e-12)
    check_top_label_table(scored, [o["targets"][0] for o in scored], tables, metrics)


async def test_multiclass_roc_auc_log_loss_and_reliability_over_kdd_outputs(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    """KDD rows where normal traffic gives way to a smurf attack (and two neptune records):
    three target classes, outputs listing the most probable of the classes the model
    knows. The reference completes each output as the wire format says (a class left out
    shares the rest of the mass with the other omitted ones)."""
    datafile = tmp_path / "kdd.csv"
    datafile.write_text("".join(kdd_rows(data_dir, KDD_FIRST_ROW, KDD_ROWS)))
    folder = make_kdd_usecase(tmp_path, unique, datafile, extra=PACED + "output.probabilities=1\n")
    (folder / "algs.props").write_text(
        "algorithm=HoeffdingTreeClassifier\ntraining.interval=-1\n"
        "evaluation.metrics=ROCAUCMetric,LogLossMetric,CalibrationMetric\n"
    )
    expected = {f"kdd:{line}" for line in range(1, KDD_ROWS + 1)}
    scored, tables, metrics = await run_pipeline(
        folder,
        expected,
        1,
        tmp_path=tmp_path,
        kafka_bootstrap=kafka_bootstrap,
        connections=connections,
    )
    assert len(scored) > KDD_ROWS // 2, len(scored)
    targets = [o["targets"][0] for o in scored]
    classes = sorted(set(targets))
    assert classes == ["neptune", "normal", "smurf"], classes
    assert any(o["probabilities"]["omitted"] > 1 for o in scored)  # completion is at work

    aucs, bounds = [], []
    for label in classes:
        truth = [int(target == label) for target in targets]
        score = [completed(o, label) for o in scored]
        aucs.append(roc_auc_score(truth, score))
        bounds.append(auc_binning_bound(truth, score))
    wanted_auc = sum(aucs) / len(aucs)  # scikit-learn's one-vs-rest macro average
    assert abs(metrics["roc_auc"] - wanted_auc) <= sum(bounds) / len(bounds), (metrics, aucs)
    # log-loss: -ln p(target), as scikit-learn's on [p(target), the rest]
    p_target = [completed(o, target) for o, target in zip(scored, targets, strict=True)]
    matrix = [[p, 1 - p] for p in p_target]
    wanted_loss = log_loss([0] * len(p_target), matrix, labels=[0, 1])
    assert metrics["log_loss"] == pytest.approx(wanted_loss, rel=1e-9), (metrics, wanted_loss)
    check_top_label_table(scored, targets, tables, metrics)


def check_top_label_table(
    scored: list[dict], targets: list[str], tables: dict[str, dict], metrics: dict
) -> None:
    """The top-label table by hand: the most probable class's probability, and whether that
    class is the target (the first listed on a tie, as the outputs list them); and the
    expected calibration error, the bins' count-weighted gap."""
    confidences, outcomes = [], []
    for output, target in zip(scored, targets, strict=True):
        top = output["probabilities"]["top"]
        best = max(top, key=lambda label: top[label])  # the first of equal maxima
        confidences.append(top[best])
        outcomes.append(int(same_label(best, target)))
    by_hand = hand_table(confidences, outcomes)
    table = tables["calibration_error"]["bins"]
    assert [(b["bin"], b["count"]) for b in table] == [(r["bin"], r["count"]) for r in by_hand]
    for ours, hand in zip(table, by_hand, strict=True):
        assert ours["confidence"] == pytest.approx(hand["confidence"], rel=1e-9), (ours, hand)
        assert ours["frequency"] == pytest.approx(hand["frequency"], abs=1e-12), (ours, hand)
        assert ours["lower"] == pytest.approx(ours["bin"] / N_BINS)
    ece = sum(r["count"] * abs(r["frequency"] - r["confidence"]) for r in by_hand) / len(scored)
    assert metrics["calibration_error"] == pytest.approx(ece, rel=1e-9, abs=1e-12)


def same_label(label: object, target: object) -> bool:
    """Labels as the outputs carry them: numbers compare as numbers ("1" and 1.0), other
    texts as texts."""
    try:
        return float(str(label)) == float(str(target))
    except ValueError:
        return str(label).strip() == str(target).strip()
