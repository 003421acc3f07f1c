"""The service process's garbage-collector settings (shared/runtime.py), in a fresh process:
the settings are process-wide and would leak into other tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_tuned_service_process_freezes_what_it_loaded_and_collects_young_objects_less_often():
    script = (
        "import gc, json\n"
        "from shared.runtime import GC_YOUNG_THRESHOLD, tune_garbage_collector\n"
        "before = gc.get_threshold()\n"
        "tune_garbage_collector()\n"
        "print(json.dumps({'before': before, 'after': gc.get_threshold(),"
        " 'frozen': gc.get_freeze_count(), 'young': GC_YOUNG_THRESHOLD}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    seen = json.loads(completed.stdout)
    assert seen["before"] == [700, 10, 10]  # CPython's defaults
    assert seen["after"] == [seen["young"], 10, 10]
    assert seen["frozen"] > 10_000  # the imported modules' objects, never scanned again
