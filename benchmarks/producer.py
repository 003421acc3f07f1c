"""Benchmark: the producer alone, FAST mode, the whole KDD Cup 99 10% file into fresh topics.

Run with services started and STREAMER_* set (`eval "$(bash scripts/services.sh env)"`):
`python -m benchmarks.producer [--runs 3] [--partitions 1 3] [--datafile PATH]` (default: the
KDD file under STREAMER_DATA_DIR). Each run replays the file into a
new topic; the report gives records/s per run and their median per partition count, as JSON
(last line). The machine's load average is in the report: on a shared machine it matters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import uuid
from pathlib import Path

from services.producer.service import prepare, produce_all
from shared.config import ConnectionSettings, load_usecase

KDD = Path("kdd-cup-99") / "kddcup.data_10_percent.gz"


def usecase_folder(root: Path, datafile: Path, partitions: int) -> Path:
    name = f"bench{uuid.uuid4().hex[:10]}"
    folder = root / name
    folder.mkdir()
    (folder / "streaming.props").write_text(
        f"mainTopic={name}\noutputTopic={name}.outputs\nproblem.type=KDDClassification\n"
        f"datafile={datafile}\nproducerType=FAST\ntopic.partitions={partitions}\n"
    )
    (folder / "algs.props").write_text("algorithm=HoeffdingTreeClassifier\n")
    return folder


async def one_run(root: Path, datafile: Path, partitions: int) -> dict:
    usecase = load_usecase(usecase_folder(root, datafile, partitions), ConnectionSettings())
    [stats] = await produce_all([prepare(usecase)], stop=asyncio.Event(), progress=False)
    return {
        "records": stats.records_sent,
        "seconds": round(stats.elapsed_s, 2),
        "records_per_s": round(stats.records_per_s, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--datafile", type=Path, default=ConnectionSettings().data_dir / KDD)
    args = parser.parse_args()
    datafile = args.datafile.resolve()
    report: dict = {"benchmark": "producer FAST, kdd-cup-99 10%", "file": str(datafile)}
    with tempfile.TemporaryDirectory() as root:
        for partitions in args.partitions:
            runs = [await one_run(Path(root), datafile, partitions) for _ in range(args.runs)]
            report[f"partitions_{partitions}"] = {
                "median_records_per_s": statistics.median(r["records_per_s"] for r in runs),
                "runs": runs,
            }
    report["load_average"] = [round(load, 2) for load in os.getloadavg()]
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
