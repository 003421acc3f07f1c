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


def test_one_list_of_use_cases_serves_every_container_of_a_federation(data_dir):
    """Compose passes every container the same list: the pipeline's services skip the
    federated server, `federate server` runs only it."""
    from services.cli import _for_service
    from shared.config import ConnectionSettings, load_usecase

    settings = ConnectionSettings(data_dir=data_dir, usecases_dir=REPO / "usecases")
    names = ["fed-regression-server", "fed-regression-site-a", "fed-regression-site-b"]
    loaded = [load_usecase(name, settings) for name in names]
    for service in ("producer", "launcher", "trainer", "evaluator"):
        assert [u.name for u in _for_service(loaded, service)] == names[1:], service
    assert [u.name for u in _for_service(loaded, "federate")] == names[:1]
    env = {"STREAMER_DATA_DIR": str(data_dir), "STREAMER_USECASES_DIR": str(REPO / "usecases")}
    alone = runner.invoke(app, ["launch", "fed-regression-server"], env=env)
    assert alone.exit_code == 2
    said = " ".join(alone.stderr.split())  # rich folds long lines
    assert "launcher: fed-regression-server: none is a use case that is not a federated" in said
    none = runner.invoke(app, ["federate", "server", "fed-regression-site-a"], env=env)
    assert none.exit_code == 2 and "none is a federated server" in " ".join(none.stderr.split())
