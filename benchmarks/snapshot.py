"""Benchmark: inference snapshots of the kdd-cup-99 use case's tree against the full model.

The shipped algorithm (usecases/kdd-cup-99/algs.props: HoeffdingTreeClassifier, grace_period
200, max_depth 20) learns the whole KDD Cup 99 10% file; at 50k, 100k, 250k rows and at the end
it measures, for the snapshot and for the full RiverAlgorithm: the build time, the sealed size
(`zlib.compress(pickle.dumps(model, protocol=5), 1)`, as shared.modelstore.seal), the load
time (decompress + unpickle, as unseal) p50/p99 over 50 loads, and predict_one /
predict_proba_one per record on every 50th row of the file (also checked identical).
Goals for the final tree: load p99 <= 5 ms and <= 100 KB sealed.

No services needed: `.venv/bin/python -m benchmarks.snapshot` (about 2 minutes). Prints the JSON
report as the last line and writes it under .run/bench/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import statistics
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.algorithms.registry import build
from shared.algorithms.snapshot import inference_snapshot
from shared.config.props import read_props
from shared.records import KDDClassificationRecord

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = (50_000, 100_000, 250_000)
LOADS = 50


def data_dir() -> Path:
    """STREAMER_DATA_DIR, else ../shared/data, else ./data (as the tests' data_dir fixture)."""
    configured = os.environ.get("STREAMER_DATA_DIR")
    if configured:
        return Path(configured)
    shared = REPO.parent / "shared" / "data"
    return shared if shared.is_dir() else REPO / "data"


def shipped_algorithm() -> Any:
    props = read_props(REPO / "usecases" / "kdd-cup-99" / "algs.props")
    params = {
        key.removeprefix("algorithm."): entry.value
        for key, entry in props.items()
        if key.startswith("algorithm.")
    }
    return build(props["algorithm"].value, params, None)


def sealed(model: Any) -> bytes:
    return zlib.compress(pickle.dumps(model, protocol=5), 1)


def load_ms(blob: bytes) -> dict[str, float]:
    times = []
    for _ in range(LOADS):
        started = time.perf_counter()
        pickle.loads(zlib.decompress(blob))
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50": round(statistics.median(times), 3),
        "p99": round(statistics.quantiles(times, n=100, method="inclusive")[98], 3),
        "max": round(times[-1], 3),
    }


def per_record_us(predict: Callable[[Any], Any], xs: list[dict]) -> float:
    """Best of three passes (the machine is shared), in microseconds per record."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for x in xs:
            predict(x)
        best = min(best, time.perf_counter() - started)
    return round(best / len(xs) * 1e6, 2)


def _same_proba(ours: dict[Any, float] | None, river: dict[Any, float]) -> bool:
    """Same classes in the same order with the same floats (None is never River's dict)."""
    return ours is not None and list(ours.items()) == list(river.items())


def measure(algorithm: Any, probes: list[dict]) -> dict[str, Any]:
    builds = []
    for _ in range(5):
        started = time.perf_counter()
        snapshot = inference_snapshot(algorithm)
        builds.append((time.perf_counter() - started) * 1000)
    if snapshot is None:
        raise SystemExit("no snapshot of the shipped algorithm: nothing to measure")
    model = algorithm.model
    identical = all(
        snapshot.predict_one(x) == model.predict_one(x)
        and _same_proba(snapshot.predict_proba_one(x), model.predict_proba_one(x))
        for x in probes
    )
    full_started = time.perf_counter()
    full_blob = sealed(algorithm)
    full_seal_ms = (time.perf_counter() - full_started) * 1000
    snap_started = time.perf_counter()
    snap_blob = sealed(snapshot)
    snap_seal_ms = (time.perf_counter() - snap_started) * 1000
    return {
        "records_learned": algorithm.n_learned,
        "tree": snapshot.describe()["snapshot"],
        "identical_predictions": identical,
        "build_ms": {"first": round(builds[0], 2), "median": round(statistics.median(builds), 2)},
        "sealed_bytes": {"snapshot": len(snap_blob), "full": len(full_blob)},
        "seal_ms": {"snapshot": round(snap_seal_ms, 2), "full": round(full_seal_ms, 2)},
        "load_ms": {"snapshot": load_ms(snap_blob), "full": load_ms(full_blob)},
        "predict_one_us": {
            "snapshot": per_record_us(snapshot.predict_one, probes),
            "river": per_record_us(model.predict_one, probes),
        },
        "predict_proba_one_us": {
            "snapshot": per_record_us(snapshot.predict_proba_one, probes),
            "river": per_record_us(model.predict_proba_one, probes),
        },
    }


def main(probe_every: int) -> dict[str, Any]:
    source = data_dir() / "kdd-cup-99" / "kddcup.data_10_percent.gz"
    with gzip.open(source, "rt") as handle:
        rows = [KDDClassificationRecord.parse(line) for line in handle if line.strip()]
    probes = [record.values for record in rows[::probe_every]]
    algorithm = shipped_algorithm()
    load_before = os.getloadavg()
    points = []
    learn_s = 0.0
    for checkpoint in (*CHECKPOINTS, len(rows)):
        started = time.perf_counter()
        for record in rows[algorithm.n_learned : checkpoint]:
            algorithm.learn_one(record.values, record.targets[0])
        learn_s += time.perf_counter() - started
        points.append(measure(algorithm, probes))
    final = points[-1]
    report = {
        "benchmark": "inference snapshot of the kdd-cup-99 tree",
        "algorithm": algorithm.describe(),
        "rows": len(rows),
        "probes": len(probes),
        "learn_s": round(learn_s, 1),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "goals_met": {
            "load_p99_le_5ms": final["load_ms"]["snapshot"]["p99"] <= 5,
            "sealed_le_100KB": final["sealed_bytes"]["snapshot"] <= 100_000,
        },
        "points": points,
    }
    out_dir = REPO / ".run" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"snapshot-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--probe-every", type=int, default=50, help="predict every Nth row of the file"
    )
    print(json.dumps(main(parser.parse_args().probe_every)))
