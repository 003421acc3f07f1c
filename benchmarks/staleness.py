"""What staleness costs, measured on River alone: the KDD 10% file through River's own
test-then-train loop, with learning delayed by D records (record i is predicted by a tree that
learnt records 0..i-D-1), for several D. No project code in the loop; the records are parsed
beforehand. Prints one JSON report.

    python -m benchmarks.staleness            # D = 0, 50, 200, 1000, 2000
    python -m benchmarks.staleness --rows 100000 --delays 0 100
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from collections import deque

from river import metrics, tree

from shared.config import ConnectionSettings
from shared.records import KDDClassificationRecord


def delayed_loop(data: list[tuple[dict, str]], delay: int) -> dict[str, float]:
    model = tree.HoeffdingTreeClassifier(grace_period=200, max_depth=20)
    accuracy, macro_f1 = metrics.Accuracy(), metrics.MacroF1()
    waiting: deque[tuple[dict, str]] = deque()
    started = time.perf_counter()
    for x, y in data:
        prediction = model.predict_one(x)
        accuracy.update(y, prediction)
        macro_f1.update(y, prediction)
        waiting.append((x, y))
        while len(waiting) > delay:
            model.learn_one(*waiting.popleft())
    return {
        "delay": delay,
        "accuracy": round(accuracy.get(), 5),
        "macro_f1": round(macro_f1.get(), 5),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows")
    parser.add_argument("--delays", type=int, nargs="+", default=[0, 50, 200, 1000, 2000])
    args = parser.parse_args()
    path = ConnectionSettings().data_dir / "kdd-cup-99" / "kddcup.data_10_percent.gz"
    with gzip.open(path, "rt") as handle:
        lines = [line for line in handle if line.strip()][: args.rows]
    data = []
    for line in lines:
        record = KDDClassificationRecord.parse(line)
        data.append((record.values, record.targets[0]))
    results = [delayed_loop(data, delay) for delay in args.delays]
    print(json.dumps({"benchmark": "staleness on KDD 10%", "rows": len(data), "results": results}))


if __name__ == "__main__":
    main()
