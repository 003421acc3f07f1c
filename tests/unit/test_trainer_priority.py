"""A trainer off the prediction path (every use case learns in its launcher) runs at the lowest
CPU priority; one that feeds predicting launchers keeps the normal one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.trainer import OFF_PATH_NICENESS, off_prediction_path
from shared.config import ConnectionSettings, UseCase, load_usecase

REPO = Path(__file__).resolve().parents[2]
STREAMING = "mainTopic=in\noutputTopic=out\nproblem.type=Generic\n"


def usecase(root: Path, name: str, streaming: str = "") -> UseCase:
    folder = root / name
    folder.mkdir()
    (folder / "streaming.props").write_text(STREAMING + streaming)
    (folder / "algs.props").write_text("algorithm=HoeffdingTreeClassifier\n")
    return load_usecase(name, ConnectionSettings(usecases_dir=root, data_dir=root / "data"))


def test_only_a_trainer_whose_every_use_case_learns_in_its_launcher_is_off_the_path(tmp_path):
    learning = usecase(tmp_path, "learning", "launcher.learn=true\n")
    also_learning = usecase(tmp_path, "also", "launcher.learn=true\n")
    predicting = usecase(tmp_path, "predicting")
    assert off_prediction_path([learning, also_learning])
    assert not off_prediction_path([predicting])
    assert not off_prediction_path([learning, predicting])
    assert not off_prediction_path([])


def test_yielding_the_cpu_sets_the_lowest_priority_of_the_process_and_its_later_threads():
    # in a child process: a niceness is never raised back without privilege
    before = os.getpriority(os.PRIO_PROCESS, 0)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from concurrent.futures import ThreadPoolExecutor; "
            "from services.trainer import yield_cpu; yield_cpu(); yield_cpu(); "
            "worker = ThreadPoolExecutor(1).submit("
            "lambda: os.getpriority(os.PRIO_PROCESS, 0)).result(); "
            "print(os.getpriority(os.PRIO_PROCESS, 0), worker)",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    # the process's thread and a thread started after it (a trainer's workers, MOA's JVM)
    assert child.stdout.split() == [str(OFF_PATH_NICENESS)] * 2
    assert os.getpriority(os.PRIO_PROCESS, 0) == before
