"""`make up` chooses its mode as promised, with a stand-in `docker` command on PATH that
records how it is called (no Docker engine runs here): Compose when `docker info` answers,
with compose/.env written first; local mode otherwise; a clear error without a use case.
What the Compose file and the containers do is tested in test_compose*.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from scripts.compose_env import SECRETS, parse

REPO = Path(__file__).resolve().parents[2]
DOCKER = """#!/bin/sh
printf '%s\\n' "$*" >> "$DOCKER_LOG"
case "$1" in
  info) exit "${DOCKER_INFO_STATUS:-0}" ;;
esac
exit 0
"""


@pytest.fixture
def docker(tmp_path: Path) -> Path:
    """A `docker` that answers (or not, with DOCKER_INFO_STATUS=1) and logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(DOCKER)
    (bin_dir / "docker").chmod(0o755)
    # present (placeholder) data files: `make data` then downloads nothing
    data = tmp_path / "data" / "kdd-cup-99"
    data.mkdir(parents=True)
    for name in ("kddcup.data_10_percent.gz", "multiclass_classification_kdd_cup_99.csv"):
        (data / name).write_text("placeholder\n")
    return tmp_path


def make(tmp: Path, *args: str, docker_answers: bool = True) -> subprocess.CompletedProcess[str]:
    outer = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")  # when the tests run under `make test`
    env = {
        **{key: value for key, value in os.environ.items() if key not in outer},
        "PATH": f"{tmp / 'bin'}:{os.environ['PATH']}",
        "DOCKER_LOG": str(tmp / "docker.log"),
        "DOCKER_INFO_STATUS": "0" if docker_answers else "1",
    }
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            *args,
            f"COMPOSE_ENV={tmp / '.env'}",
            f"DATA_DIR={tmp / 'data'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def docker_calls(tmp: Path) -> list[str]:
    log = tmp / "docker.log"
    return log.read_text().splitlines() if log.exists() else []


def test_with_a_docker_engine_up_writes_the_env_file_then_starts_compose(docker: Path) -> None:
    result = make(docker, "up", "USECASE=kdd-cup-99,kdd-cup-99_23class")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "make up: Docker Compose mode" in result.stdout
    assert "http://127.0.0.1:8000/dashboard" in result.stdout
    assert "http://127.0.0.1:5601" in result.stdout
    compose = f"compose -f compose/docker-compose.yml --env-file {docker / '.env'}"
    assert f"{compose} up --detach --build --wait" in docker_calls(docker)
    written = parse((docker / ".env").read_text())
    assert written["USECASES"] == "kdd-cup-99,kdd-cup-99_23class"
    assert written["STREAMER_DATA_DIR"] == str(docker / "data")
    assert all(written[name] for name in SECRETS)

    again = make(docker, "up", "USECASE=kdd-cup-99")
    assert again.returncode == 0, again.stderr
    rewritten = parse((docker / ".env").read_text())
    assert rewritten == {**written, "USECASES": "kdd-cup-99"}  # secrets kept

    for target, expected in (("logs", "logs --follow --tail=100"), ("ps", "ps")):
        assert make(docker, target).returncode == 0
        assert f"{compose} {expected}" in docker_calls(docker)


def test_without_a_docker_engine_up_runs_local_processes(docker: Path) -> None:
    # -n: print what would run; the mode decision itself runs (its line calls $(MAKE))
    result = make(docker, "-n", "up", "USECASE=kdd-cup-99", docker_answers=False)
    assert result.returncode == 0, result.stderr
    assert "make up: local mode" in result.stdout
    assert "streamer run kdd-cup-99 --port 8000 --log-file .run/pipeline.log" in result.stdout
    assert "bash scripts/services.sh up" in result.stdout
    assert docker_calls(docker) == ["info"]
    assert not (docker / ".env").exists()


def test_up_says_which_use_case_is_missing_or_unknown(docker: Path) -> None:
    missing = make(docker, "up")
    assert missing.returncode != 0
    assert "error: say which use case: make up USECASE=kdd-cup-99" in missing.stderr
    unknown = make(docker, "up", "USECASE=kdd-cup-99,nope")
    assert unknown.returncode != 0
    assert "error: no use case 'nope' (no folder usecases/nope)" in unknown.stderr
    assert docker_calls(docker) == []


def test_help_lists_every_target_the_readme_promises() -> None:
    result = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, timeout=30)
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    wanted = {"up", "down", "logs", "ps", "test", "bench", "data", "services", "services-down"}
    assert wanted <= listed, wanted - listed
