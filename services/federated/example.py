"""The shipped federated example's data: `python -m services.federated.example [DATA_DIR]`
writes `federated-regression/site-{a,b,c}.csv` and `holdout.csv` under DATA_DIR (default:
STREAMER_DATA_DIR, else ./data). `make data` runs it; nothing of it is committed.

Three sites measure a machine's power draw from four sensors, each in its own regime (non-IID):
at site a only load and speed vary (temperature and humidity sit at their nominal values), at
site b speed and temperature, at site c temperature and humidity. The power is the same linear
function everywhere, so a model trained at one site alone cannot learn the effect of a sensor
that never varied there, while the federation of the three can. `holdout.csv` mixes the three
regimes evenly: the stream the server scores each round's model on, and the tests too.
"""

from __future__ import annotations

import csv
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

# The standard library only: `make data` runs this with any python3, before any install.
FOLDER = "federated-regression"
SENSORS = ("load", "speed", "temperature", "humidity")
NOMINAL = (50.0, 30.0, 20.0, 60.0)
SPREAD = (10.0, 5.0, 4.0, 10.0)
#: Effect of one standard deviation of each sensor on the power, and the power at nominal.
EFFECT = (3.0, -2.0, 1.5, 1.0)
BASE_POWER = 10.0
NOISE = 0.3
VARYING = {"a": (0, 1), "b": (1, 2), "c": (2, 3)}
SITE_RECORDS = 20_000
HOLDOUT_PER_SITE = 2_000

Row = list[float]


def draw(site: str, rng: random.Random) -> Row:
    """One sensor reading of `site`'s regime and its power (the last value)."""
    x = [
        rng.gauss(NOMINAL[j], SPREAD[j]) if j in VARYING[site] else NOMINAL[j]
        for j in range(len(SENSORS))
    ]
    power = sum(e * (v - n) / s for e, v, n, s in zip(EFFECT, x, NOMINAL, SPREAD, strict=True))
    return [*x, power + BASE_POWER + rng.gauss(0.0, NOISE)]


def holdout(rng: random.Random, per_site: int = HOLDOUT_PER_SITE) -> Iterator[Row]:
    """Rows of the three regimes, interleaved."""
    for _ in range(per_site):
        for site in VARYING:
            yield draw(site, rng)


def write(path: Path, rows: Iterator[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow([*SENSORS, "target"])
        out.writerows([f"{value:.4f}" for value in row] for row in rows)


def generate(data_dir: Path, site_records: int = SITE_RECORDS, seed: int = 12) -> Path:
    rng = random.Random(seed)
    folder = data_dir / FOLDER
    for site in VARYING:
        write(folder / f"site-{site}.csv", (draw(site, rng) for _ in range(site_records)))
    write(folder / "holdout.csv", holdout(rng))
    return folder


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("STREAMER_DATA_DIR", "data"))
    print(f"wrote {generate(target)}")
