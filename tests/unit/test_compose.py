"""The Compose deployment, proven without a Docker engine: the file is valid against the
Compose Specification's schema once `make up` has written compose/.env; every secret comes from
that file; every variable a service reads is set; the Dockerfile builds from files that exist
and passes hadolint; the topology (healthchecks, dependencies, volumes, ports) is as promised.
Each container's command is run for real in tests/integration/test_compose_commands.py."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from scripts.compose_env import SECRETS, parse, profiles_for, update, write_env_file
from shared.config import ConnectionSettings
from tests.compose_file import (
    COMPOSE_DIR,
    DOCKERFILE,
    REPO,
    STREAMER_SERVICES,
    MissingVariable,
    compose,
    dockerfile_instructions,
    exec_form,
    final_stage,
    raw_compose,
    variables,
)

SCHEMA = REPO / "tests" / "fixtures" / "compose" / "compose-spec.json"
#: What `make up` passes to scripts/compose_env.py besides the generated secrets.
MAKE_UP_SETTINGS = {"USECASES": "kdd-cup-99,kdd-cup-99_23class", "STREAMER_DATA_DIR": "/srv/data"}
BACKING = {"kafka", "redis", "influxdb", "elasticsearch", "kibana"}
ONE_SHOT = {"elasticsearch-setup", "kibana-setup"}
#: Services of a Compose profile, started only when the use cases need them.
PROFILED = {"federate": "federated"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """compose/.env as `make up` writes it on a first run."""
    path = tmp_path_factory.mktemp("compose") / ".env"
    write_env_file(path, MAKE_UP_SETTINGS)
    return parse(path.read_text())


@pytest.fixture(scope="module")
def services(env: dict[str, str]) -> dict[str, Any]:
    return compose(env)["services"]


def streamer_environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in service["environment"].items()}


# --- the file as Docker reads it ----------------------------------------------------------------


def test_the_file_is_valid_against_the_compose_specification(env: dict[str, str]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    for document in (raw_compose(), compose(env)):  # as written, and once interpolated
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file(env: dict[str, str]) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    broken = compose(env)
    broken["services"]["launcher"]["depends_on"]["kafka"]["condition"] = "service_ready"
    broken["services"]["api"]["healthcheck"]["interval"] = 10
    assert len(list(validator.iter_errors(broken))) == 2


def test_make_up_provides_every_required_variable_and_nothing_has_a_default_secret() -> None:
    required = {
        name: message
        for name, message in variables((COMPOSE_DIR / "docker-compose.yml").read_text()).items()
        if message is not None
    }
    assert set(required) == set(SECRETS) | set(MAKE_UP_SETTINGS), required
    with pytest.raises(MissingVariable, match="REDIS_PASSWORD: run make up"):
        compose({})  # without compose/.env, Compose refuses to start and says why


def test_every_secret_in_the_file_comes_from_the_env_file() -> None:
    secret_like = re.compile(r"PASSWORD|SECRET|TOKEN|ENCRYPTIONKEY|CLUSTER_ID")
    for name, service in raw_compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secret_like.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (name, key, value)


def test_every_published_port_listens_on_loopback_only(services: dict[str, Any]) -> None:
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert set(published) == {"kafka", "redis", "influxdb", "elasticsearch", "kibana", "api"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), (name, port)


# --- the topology ------------------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck_and_is_waited_for_healthy(
    services: dict[str, Any],
) -> None:
    assert set(services) == BACKING | ONE_SHOT | set(STREAMER_SERVICES) | set(PROFILED)
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no" and "healthcheck" not in service, name
        else:
            assert service["healthcheck"]["test"], name
        for dependency, condition in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert condition["condition"] == expected, (name, dependency)


def test_our_services_run_their_subcommand_and_check_it_by_heartbeat(
    services: dict[str, Any], env: dict[str, str]
) -> None:
    for name, subcommand in STREAMER_SERVICES.items():
        service = services[name]
        assert service["image"] == "streamer:local", name
        assert service["build"] == {
            "context": "..",
            "dockerfile": "compose/Dockerfile",
            "args": {"EXTRAS": ""},  # the plain image unless STREAMER_EXTRAS says otherwise
        }, name
        assert service["command"][0] == subcommand, name
        assert env["USECASES"] in service["command"], name  # the use cases, as one argument
        assert service["healthcheck"]["test"] == ["CMD", "streamer", subcommand, "--check"]
        assert service["init"] is True, name  # tini reaps children, forwards SIGTERM


def test_the_pipeline_starts_after_what_it_needs(services: dict[str, Any]) -> None:
    needs = {
        "launcher": {"kafka", "redis", "influxdb"},
        "trainer": {"redis", "influxdb"},
        "evaluator": {"kafka", "redis", "influxdb", "elasticsearch-setup"},
        "producer": {"kafka", "redis", "launcher"},
        "api": {"redis", "influxdb", "elasticsearch-setup"},
        "elasticsearch-setup": {"elasticsearch"},
        "kibana": {"elasticsearch-setup"},
        "kibana-setup": {"kibana"},
    }
    for name, dependencies in needs.items():
        assert set(services[name]["depends_on"]) == dependencies, name


def test_the_producer_is_not_restarted_after_replaying_its_files(
    services: dict[str, Any],
) -> None:
    assert services["producer"]["restart"] == "on-failure"
    for name in ("launcher", "trainer", "evaluator", "api"):
        assert services[name]["restart"] == "unless-stopped", name


def test_named_volumes_are_declared_and_state_lives_in_them(env: dict[str, str]) -> None:
    document = compose(env)
    declared = set(document["volumes"])
    used = set()
    for name, service in document["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                used.add(source)
                assert source in declared, (name, volume)
    assert used == declared
    state = {"kafka": "kafka-data", "redis": "redis-data", "influxdb": "influxdb-data"}
    for name, volume in {**state, "elasticsearch": "es-data", "evaluator": "streamer-logs"}.items():
        assert any(v.startswith(f"{volume}:") for v in document["services"][name]["volumes"])


def test_use_cases_and_data_are_mounted_read_only_never_baked(services: dict[str, Any]) -> None:
    for name in STREAMER_SERVICES:
        volumes = services[name]["volumes"]
        assert "../usecases:/app/usecases:ro" in volumes, name
        assert f"{MAKE_UP_SETTINGS['STREAMER_DATA_DIR']}:/data:ro" in volumes, name
        assert (COMPOSE_DIR / "../usecases").resolve() == REPO / "usecases"


def test_a_federated_server_in_the_use_cases_starts_the_federate_service(
    services: dict[str, Any],
) -> None:
    """Its sites' trainers reach it at the 127.0.0.1 address of their federated.props: it
    shares the trainer's network namespace; make up enables its profile only when needed."""
    federate = services["federate"]
    assert federate["profiles"] == [PROFILED["federate"]]
    assert federate["network_mode"] == "service:trainer"
    usecases = MAKE_UP_SETTINGS["USECASES"]
    assert federate["command"] == ["federate", "server", usecases]
    assert federate["healthcheck"]["test"] == [
        "CMD", "streamer", "federate", "server", "--check", usecases
    ]  # fmt: skip
    assert federate["depends_on"]["trainer"] == {"condition": "service_healthy"}
    shipped = REPO / "usecases"
    federation = "fed-regression-server,fed-regression-site-a,fed-regression-site-b"
    assert profiles_for(federation, shipped) == "federated"
    assert profiles_for("fed-regression-site-a,kdd-cup-99", shipped) == ""  # no server
    assert profiles_for(usecases, shipped) == ""


def test_launchers_can_be_scaled_out(services: dict[str, Any]) -> None:
    launcher = services["launcher"]
    assert "container_name" not in launcher and "ports" not in launcher
    assert int(launcher["environment"]["STREAMER_TOPIC_PARTITIONS"]) >= 3


# --- what the services read is what the file sets -------------------------------------------


def setting_variables() -> set[str]:
    return {f"STREAMER_{name.upper()}" for name in ConnectionSettings.model_fields}


def test_every_connection_setting_is_set_for_every_service(services: dict[str, Any]) -> None:
    """Each default points at a loopback port of `make services`: none may be left to it."""
    for name in STREAMER_SERVICES:
        missing = setting_variables() - set(services[name]["environment"])
        assert not missing, (name, missing)
    assert services["api"]["environment"]["STREAMER_API_TOKEN"]


def test_every_variable_the_code_reads_is_known_here() -> None:
    """A new STREAMER_* variable in the code must be set by the Compose file (or added here)."""
    read_by_api = {"STREAMER_API_TOKEN"}
    mentioned = set()
    for folder in ("services", "shared"):
        for path in (REPO / folder).rglob("*.py"):
            mentioned |= set(re.findall(r"\bSTREAMER_[A-Z_]*[A-Z]\b", path.read_text()))
    assert mentioned <= setting_variables() | read_by_api, mentioned - setting_variables()


def test_addresses_and_credentials_match_the_backing_services(
    services: dict[str, Any], env: dict[str, str]
) -> None:
    ours = streamer_environment(services["launcher"])
    kafka = services["kafka"]["environment"]
    assert ours["STREAMER_KAFKA_BOOTSTRAP"] in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")[0]
    assert ours["STREAMER_REDIS_URL"] == "redis://redis:6379/0"
    assert ours["STREAMER_REDIS_PASSWORD"] == services["redis"]["environment"]["REDIS_PASSWORD"]
    influx = services["influxdb"]["environment"]
    assert ours["STREAMER_INFLUX_URL"] == "http://influxdb:8086"
    assert (ours["STREAMER_INFLUX_USER"], ours["STREAMER_INFLUX_DB"]) == (
        influx["INFLUXDB_USER"],
        influx["INFLUXDB_DB"],
    )
    assert ours["STREAMER_INFLUX_PASSWORD"] == influx["INFLUXDB_USER_PASSWORD"]
    assert influx["INFLUXDB_USER"] != influx["INFLUXDB_ADMIN_USER"]  # the services are no admin
    assert ours["STREAMER_ES_URL"] == "http://elasticsearch:9200"
    setup = services["elasticsearch-setup"]["environment"]
    assert ours["STREAMER_ES_PASSWORD"] == setup["STREAMER_ES_PASSWORD"]
    script = (COMPOSE_DIR / "elasticsearch" / "setup.sh").read_text()
    assert f"/_security/user/{ours['STREAMER_ES_USER']}" in script
    assert '"names": ["streamer-*"]' in script  # the services' role: their indices only
    assert ours["STREAMER_MODEL_SECRET"] == env["STREAMER_MODEL_SECRET"]


def test_kibana_connects_as_its_system_user_never_as_elastic(services: dict[str, Any]) -> None:
    kibana = services["kibana"]["environment"]
    assert kibana["ELASTICSEARCH_USERNAME"] == "kibana_system"
    assert (
        kibana["ELASTICSEARCH_PASSWORD"]
        == services["elasticsearch-setup"]["environment"]["KIBANA_SYSTEM_PASSWORD"]
    )
    assert len(kibana["XPACK_ENCRYPTEDSAVEDOBJECTS_ENCRYPTIONKEY"]) >= 32
    elasticsearch = services["elasticsearch"]["environment"]
    assert elasticsearch["xpack.security.enabled"] == "true"


def test_kafka_advertises_an_internal_and_a_host_listener(services: dict[str, Any]) -> None:
    kafka = services["kafka"]["environment"]
    listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) == set(protocols) == {"INTERNAL", "CONTROLLER", "HOST"}
    assert advertised["INTERNAL"] == f"kafka{listeners['INTERNAL']}"
    host_port = services["kafka"]["ports"][0].split(":")[1]
    assert advertised["HOST"] == f"127.0.0.1:{host_port}"
    assert services["kafka"]["ports"][0].endswith(listeners["HOST"])
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER" not in advertised
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@kafka{listeners['CONTROLLER']}"


# --- the image ---------------------------------------------------------------------------------


def dockerignored(relative: str) -> bool:
    """Docker's .dockerignore: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in (REPO / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        parts = Path(relative).parts
        if any(fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts))) or any(
            fnmatch(part, pattern) for part in parts
        ):
            ignored = not negated
    return ignored


def test_every_file_the_dockerfile_copies_exists_in_the_build_context() -> None:
    context = (COMPOSE_DIR / raw_compose()["services"]["launcher"]["build"]["context"]).resolve()
    copies = [args for keyword, args in dockerfile_instructions() if keyword == "COPY"]
    assert copies
    for arguments in copies:
        words = [word for word in arguments.split() if not word.startswith("--")]
        if "--from=" in arguments:
            continue  # from an earlier stage, not from the context
        for source in words[:-1]:
            assert (context / source).exists(), source
            assert not dockerignored(source), f"{source} is excluded by .dockerignore"


def test_the_build_context_leaves_out_data_secrets_and_local_state() -> None:
    for path in (
        "data/kdd-cup-99/x.gz",
        "compose/.env",
        ".run/model-secret",
        ".venv/bin/python",
        "tests/unit/test_cli.py",
        "usecases/kdd-cup-99/streaming.props",
        ".git/HEAD",
    ):
        assert dockerignored(path), path
    assert not dockerignored("shared/heartbeat.py")
    assert dockerignored("shared/__pycache__/heartbeat.cpython-311.pyc")


def test_the_image_is_multi_stage_slim_and_runs_as_a_non_root_user() -> None:
    pairs = dockerfile_instructions()
    assert sum(keyword == "FROM" for keyword, _ in pairs) >= 2
    arguments = dict(arg.split("=", 1) for keyword, arg in pairs if keyword == "ARG" and "=" in arg)
    assert "-slim" in arguments["PYTHON_IMAGE"]
    runtime = final_stage(pairs)
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert exec_form(dict(runtime)["ENTRYPOINT"]) == ["streamer"]
    assert not any(keyword in ("ADD",) for keyword, _ in pairs)  # COPY only: nothing fetched
    copied = " ".join(args for keyword, args in runtime if keyword == "COPY")
    assert "--from=build" in copied and "usecases" not in copied and "data" not in copied


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint missing: it is a dev dependency (pip install -e '.[dev]')")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- compose/.env ------------------------------------------------------------------------------


def test_the_env_file_is_private_and_keeps_its_secrets_across_runs(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    generated = write_env_file(path, {"USECASES": "a"})
    assert generated == list(SECRETS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = parse(path.read_text())
    assert write_env_file(path, {"USECASES": "a,b"}) == []
    second = parse(path.read_text())
    assert second == {**first, "USECASES": "a,b"}
    assert len(set(first[name] for name in SECRETS)) == len(SECRETS)  # all different
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", first["KAFKA_CLUSTER_ID"])


def test_the_env_file_keeps_what_the_user_wrote_and_fills_only_the_gaps() -> None:
    text = "# mine\nREDIS_PASSWORD=chosen-by-me\nAPI_PORT=8080\nELASTIC_PASSWORD=\n"
    new_text, generated = update(text, {"USECASES": "x"})
    values = parse(new_text)
    assert new_text.startswith("# mine\n")
    assert values["REDIS_PASSWORD"] == "chosen-by-me" and values["API_PORT"] == "8080"
    assert "ELASTIC_PASSWORD" in generated and values["ELASTIC_PASSWORD"]
    assert "REDIS_PASSWORD" not in generated
    with pytest.raises(ValueError, match="USECASES"):
        update("", {"USECASES": "a b; rm -rf /"})


def test_streamer_extras_selects_the_moa_image_variant(env: dict[str, str]) -> None:
    """The Compose file passes STREAMER_EXTRAS to the Dockerfile's EXTRAS (default: none)."""
    services = compose({**env, "STREAMER_EXTRAS": "moa"})["services"]
    for name in STREAMER_SERVICES:
        assert services[name]["build"]["args"] == {"EXTRAS": "moa"}, name
    declared = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "ARG"]
    assert 'EXTRAS=""' in declared and declared.count("EXTRAS") == 2  # and in both stages
    assert "STREAMER_EXTRAS" in (REPO / "docs" / "deployment.md").read_text()
