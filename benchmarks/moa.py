"""MOA through capymoa vs River on KDD: prequential accuracy and records/s, one JSON report.

    python -m benchmarks.moa [--rows N] [--batch 1000] [--data-dir DIR]

Each run predicts every record and then learns it (test-then-train) on the same rows of the
KDD 10% file (all 494,021 by default), so records/s counts one prediction plus one learning:
- moa_own_loop: MOA's own evaluation loop in Java (capymoa's prequential_evaluation on an ARFF
  file of the rows, nominal values and labels listed in order of first appearance, as our
  schema indexes them): the accuracy reference; moa_own_loop_sorted_header: the same with the
  values listed sorted (MOA's trees break ties by index, so the order moves accuracy a little);
- capymoa_python_loop: Python drives capymoa record by record (capymoa's instances);
- streamer_per_record: our MOAAlgorithm, predict_one then learn_one per record (dicts in);
- streamer_predict_learn_many: our MOAAlgorithm, predict_learn_many per batch of --batch
  records: the same test-then-train, one JVM call per batch;
- streamer_split_<size>: predict_many then learn_many per batch of <size> (--batch, and 100),
  as the launcher and the trainer split the work: each batch is predicted by the model of the
  batches before it, so the first batch has no prediction and a change (a new attack burst)
  is learned up to a batch late: the accuracy lost is the architecture's, not MOA's;
- river: River's HoeffdingTreeClassifier(grace_period=200, max_depth=20), its plain loop;
- pickle: the final tree (of predict_learn_many) pickled, then loaded in a fresh process (a
  new JVM): size, dump and load times, and whether it predicts the same on every row.
Timed with time.perf_counter around the loop only (rows parsed beforehand); the JVM's JIT
warms up inside each run, as it would in a service.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from shared.algorithms.registry import build
from shared.records import KDDClassificationRecord

REPO = Path(__file__).resolve().parents[1]
KDD_FILE = Path("kdd-cup-99") / "kddcup.data_10_percent.gz"
KDD_CLASSES = 23
Rows = list[tuple[dict[str, Any], str]]
PER_RECORD = "predict_one, learn_one"
PREDICT_LEARN = "predict_learn_many"
SPLIT = "predict_many, learn_many"


def kdd_rows(data_dir: Path, limit: int | None = None) -> Rows:
    """(values, label) of the first `limit` KDD lines, parsed as the launcher parses them."""
    rows: Rows = []
    with gzip.open(data_dir / KDD_FILE, "rt") as lines:
        for line in lines:
            if limit is not None and len(rows) >= limit:
                break
            record = KDDClassificationRecord.parse(line)
            rows.append((record.values, record.targets[0]))
    return rows


def _arff_value(value: Any) -> str:
    text = str(value)
    return f"'{text}'" if any(c in text for c in " ,'{}%") else text


def write_arff(rows: Rows, path: Path, order: str = "appearance") -> Path:
    """The rows as an ARFF file, as one gives them to MOA: types from the first row's values,
    every nominal value and label listed up front in order of first `appearance` (the indexes
    MOAAlgorithm gives them) or `sorted`, the class last."""
    first = rows[0][0]
    names = list(first)

    def listed(values: Iterator[str]) -> list[str]:
        return sorted(set(values)) if order == "sorted" else list(dict.fromkeys(values))

    nominal = {
        name: listed(x[name] for x, _ in rows) for name in names if isinstance(first[name], str)
    }

    def kind(values: list[str] | None) -> str:
        return "{" + ",".join(map(_arff_value, values)) + "}" if values else "numeric"

    with path.open("w") as out:
        out.write("@relation kdd\n\n")
        for name in names:
            out.write(f"@attribute {name} {kind(nominal.get(name))}\n")
        out.write(f"@attribute class {kind(listed(y for _, y in rows))}\n\n@data\n")
        for x, y in rows:
            out.write(",".join(_arff_value(x[name]) for name in names) + f",{_arff_value(y)}\n")
    return path


def moa_own_loop(arff: Path, rows: int, learner: str = "HoeffdingTree", **params: Any) -> dict:
    """MOA's own test-then-train loop (Java's EfficientEvaluationLoops) on the ARFF file."""
    from shared.algorithms.moa import java_helper

    java_helper()  # the JVM, started as our algorithms start it
    from capymoa import classifier
    from capymoa.evaluation import prequential_evaluation
    from capymoa.stream import ARFFStream

    stream = ARFFStream(str(arff))
    model = getattr(classifier, learner)(schema=stream.get_schema(), **params)
    start = time.perf_counter()
    results = prequential_evaluation(stream, model, max_instances=rows, optimise=True)
    seconds = time.perf_counter() - start
    return _report(results.cumulative.accuracy() / 100, rows, seconds)


def capymoa_python_loop(arff: Path, rows: int, learner: str = "HoeffdingTree") -> dict:
    """Python drives capymoa record by record: stream.next_instance, predict, train."""
    from capymoa import classifier
    from capymoa.stream import ARFFStream

    stream = ARFFStream(str(arff))
    model = getattr(classifier, learner)(schema=stream.get_schema())
    correct = seen = 0
    start = time.perf_counter()
    while stream.has_more_instances() and seen < rows:
        instance = stream.next_instance()
        correct += model.predict(instance) == instance.y_index
        model.train(instance)
        seen += 1
    return _report(correct / seen, seen, time.perf_counter() - start)


def batches(rows: Rows, size: int) -> Iterator[tuple[list[dict[str, Any]], list[str]]]:
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        yield [x for x, _ in chunk], [y for _, y in chunk]


def streamer_prequential(
    rows: Rows, mode: str, batch: int = 1, name: str = "moa.HoeffdingTree"
) -> tuple[dict, Any]:
    """Our algorithm, test-then-train (MODES); returns its report and the trained algorithm."""
    algorithm = build(name, {}, None, classes_number=KDD_CLASSES)
    correct = 0
    start = time.perf_counter()
    if mode == PER_RECORD:
        for x, y in rows:
            correct += algorithm.predict_one(x) == y
            algorithm.learn_one(x, y)
    for xs, ys in batches(rows, batch) if mode != PER_RECORD else ():
        if mode == PREDICT_LEARN:
            predictions = algorithm.predict_learn_many(xs, ys)
        else:
            predictions = algorithm.predict_many(xs)
            algorithm.learn_many(xs, ys)
        correct += sum(p == y for p, y in zip(predictions, ys, strict=True))
    return _report(correct / len(rows), len(rows), time.perf_counter() - start), algorithm


def river_loop(rows: Rows) -> dict:
    from river import tree

    model = tree.HoeffdingTreeClassifier(grace_period=200, max_depth=20)
    correct = 0
    start = time.perf_counter()
    for x, y in rows:
        # River types x as an invariant dict[Hashable, Any]: a dict[str, ...] is one
        correct += model.predict_one(x) == y  # type: ignore[arg-type]
        model.learn_one(x, y)
    return _report(correct / len(rows), len(rows), time.perf_counter() - start)


LOAD_SCRIPT = """
import json, pickle, sys, time
start = time.perf_counter()
from shared.algorithms.moa import java_helper
java_helper()
jvm = time.perf_counter() - start
with open(sys.argv[1], "rb") as f:
    payload = f.read()
start = time.perf_counter()
algorithm = pickle.loads(payload)
load = time.perf_counter() - start
with open(sys.argv[2], "rb") as f:
    xs = pickle.load(f)
predictions = algorithm.predict_many(xs)
print(json.dumps({"jvm_start_s": jvm, "load_s": load, "predictions": predictions}))
"""


def pickle_round_trip(algorithm: Any, xs: Sequence[dict[str, Any]]) -> dict:
    """Dump here, load in a fresh interpreter (its own JVM), compare its predictions."""
    start = time.perf_counter()
    payload = pickle.dumps(algorithm)
    dump_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        model, records = Path(folder) / "model.pkl", Path(folder) / "xs.pkl"
        model.write_bytes(payload)
        records.write_bytes(pickle.dumps(list(xs)))
        result = subprocess.run(
            [sys.executable, "-c", LOAD_SCRIPT, str(model), str(records)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    loaded = json.loads(result.stdout.splitlines()[-1])
    same = loaded.pop("predictions") == algorithm.predict_many(xs)
    return {
        "size_bytes": len(payload),
        "dump_s": round(dump_s, 4),
        "load_s": round(loaded["load_s"], 4),
        "jvm_start_s": round(loaded["jvm_start_s"], 3),
        "identical_predictions": same,
    }


def _report(accuracy: float, rows: int, seconds: float) -> dict:
    return {
        "accuracy": round(accuracy, 5),
        "rows": rows,
        "seconds": round(seconds, 3),
        "records_per_s": round(rows / seconds),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="first N rows (default: all)")
    parser.add_argument("--batch", type=int, default=1000, help="records per batch")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("STREAMER_DATA_DIR", REPO.parent / "shared" / "data")),
    )
    args = parser.parse_args(argv)
    rows = kdd_rows(args.data_dir, args.rows)
    report: dict[str, Any] = {"rows": len(rows), "batch": args.batch}
    with tempfile.TemporaryDirectory() as folder:
        arff = write_arff(rows, Path(folder) / "kdd.arff")
        report["moa_own_loop"] = moa_own_loop(arff, len(rows))
        report["capymoa_python_loop"] = capymoa_python_loop(arff, len(rows))
        arff = write_arff(rows, Path(folder) / "kdd-sorted.arff", order="sorted")
        report["moa_own_loop_sorted_header"] = moa_own_loop(arff, len(rows))
    report["streamer_per_record"], _ = streamer_prequential(rows, PER_RECORD)
    report["streamer_predict_learn_many"], algorithm = streamer_prequential(
        rows, PREDICT_LEARN, args.batch
    )
    for size in sorted({args.batch, 100}):
        report[f"streamer_split_{size}"], _ = streamer_prequential(rows, SPLIT, size)
    report["river"] = river_loop(rows)
    report["pickle"] = pickle_round_trip(algorithm, [x for x, _ in rows])
    river, moa = report["river"], report["moa_own_loop"]
    for key in [key for key in report if key.startswith("streamer_")]:
        run = report[key]
        run["speed_vs_river"] = round(run["records_per_s"] / river["records_per_s"], 2)
        run["accuracy_minus_moa_points"] = round(100 * (run["accuracy"] - moa["accuracy"]), 3)
    report["load_average"] = [round(load, 2) for load in os.getloadavg()]
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
