import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from services.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_help_lists_a_subcommand_per_service():
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0
    for command in ("produce", "launch", "train", "evaluate", "api", "config"):
        assert f" {command} " in result.stdout


def test_config_validate_prints_the_resolved_configuration(data_dir):
    result = runner.invoke(
        app,
        ["config", "validate", str(REPO / "usecases" / "kdd-cup-99")],
        env={"STREAMER_DATA_DIR": str(data_dir), "STREAMER_KAFKA_BOOTSTRAP": "k:1"},
    )
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.stdout)
    assert resolved["usecase"] == "kdd-cup-99"
    assert resolved["connections"]["kafka_bootstrap"] == "k:1"
    assert resolved["algs.props"]["algorithm"] == "HoeffdingTreeClassifier"


def test_config_validate_exits_2_with_every_error(tmp_path):
    (tmp_path / "streaming.props").write_text("mainTopic=t\nrecordsPerBlock=-3\n")
    (tmp_path / "algs.props").write_text("algorithm=X\n")
    result = runner.invoke(app, ["config", "validate", str(tmp_path)])
    assert result.exit_code == 2
    assert f"error: {tmp_path}/streaming.props: outputTopic: required key is missing" in (
        result.stderr
    )
    assert "streaming.props:2: recordsPerBlock: Input should be greater than or equal to 1" in (
        result.stderr
    )


def test_a_comma_separated_list_names_several_use_cases(data_dir):
    """Compose passes the use cases as one argument: `kdd-cup-99,kdd-cup-99_23class`."""
    result = runner.invoke(
        app,
        ["config", "validate", "kdd-cup-99,kdd-cup-99_23class"],
        env={"STREAMER_DATA_DIR": str(data_dir), "STREAMER_USECASES_DIR": str(REPO / "usecases")},
    )
    assert result.exit_code == 0, result.output
    decoder, text, names = json.JSONDecoder(), result.stdout.strip(), []
    while text:
        document, end = decoder.raw_decode(text)
        names.append(document["usecase"])
        text = text[end:].strip()
    assert names == ["kdd-cup-99", "kdd-cup-99_23class"]


def test_a_service_without_use_case_says_so():
    for command in ("produce", "launch", "train", "evaluate"):
        result = runner.invoke(app, [command, " , "])
        assert result.exit_code == 2, command
        assert "name at least one use case" in result.stderr, command
