"""Compose imports the dashboard by itself: a one-shot setup container after Kibana is healthy,
with the files it needs mounted, Kibana and Elasticsearch at the version we test against."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "compose"


def services() -> dict:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]


def test_the_setup_container_runs_the_import_script_once_kibana_is_healthy():
    setup = services()["kibana-setup"]
    assert setup["entrypoint"] == ["sh", "/kibana/setup.sh"]
    assert setup["depends_on"]["kibana"]["condition"] == "service_healthy"
    assert setup["restart"] == "no"
    host, container = setup["volumes"][0].split(":")[:2]
    assert container == "/kibana"
    mounted = (COMPOSE / host).resolve()
    assert (mounted / "setup.sh").is_file() and (mounted / "dashboard.ndjson").is_file()


def test_kibana_waits_for_its_user_and_reports_when_it_serves():
    kibana = services()["kibana"]
    condition = kibana["depends_on"]["elasticsearch-setup"]["condition"]
    assert condition == "service_completed_successfully"  # kibana_system has its password
    assert "http://localhost:5601" in " ".join(kibana["healthcheck"]["test"])
    assert kibana["ports"] == ["127.0.0.1:${KIBANA_HOST_PORT:-5601}:5601"]


def test_the_import_signs_in_because_security_is_on():
    setup = services()["kibana-setup"]["environment"]
    assert setup["KIBANA_USER"] == "elastic"
    assert setup["KIBANA_PASSWORD"].startswith("${ELASTIC_PASSWORD:?")


def test_kibana_and_elasticsearch_match_the_version_the_tests_run():
    script = (COMPOSE.parent / "scripts" / "services.sh").read_text()
    tested = re.search(r"STREAMER_ES_VERSION:-([0-9.]+)", script).group(1)
    for name in ("elasticsearch", "kibana"):
        assert services()[name]["image"].endswith(f":{tested}"), name
