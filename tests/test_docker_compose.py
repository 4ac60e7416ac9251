"""docker-compose.yml stays a valid description of labelstore's services.

Where the Docker CLI with Compose is installed, `docker compose config` must accept the file; the
structural checks run everywhere."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def test_services_are_described():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["processor"]["command"] == ["process"]
    assert services["materializer"]["command"] == ["materialize"]
    assert services["apply"]["command"] == ["apply"]
    assert "/healthz" in " ".join(services["processor"]["healthcheck"]["test"])
    assert services["processor"]["restart"] == "on-failure"  # a stalled worker exits to be restarted
    for name in ("processor", "materializer", "apply", "labelstore"):  # one label repository, mounted
        assert services[name]["environment"]["LABELSTORE_REPO"] == "/repo"
        assert any(volume.endswith(":/repo") for volume in services[name]["volumes"])


def test_docker_compose_accepts_the_file():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the Docker CLI with the Compose plugin is not installed here")
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_prometheus_scrapes_every_worker_and_the_materializer_and_grafana_has_the_dashboard():
    from labelstore.settings import ProcessorSettings, WarehouseSettings

    root = COMPOSE.parent
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    mounted = {}
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source, target, *_ = volume.split(":")
            if source.startswith("./"):
                assert (root / source).exists(), f"{name} mounts {source}, which is not in the repository"
                mounted[target] = root / source
    prometheus = yaml.safe_load(mounted["/etc/prometheus/prometheus.yml"].read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    processor = jobs["labelstore-processor"]["dns_sd_configs"][0]
    assert processor["names"] == ["processor"] and processor["port"] == ProcessorSettings().web_port
    assert jobs["labelstore-materializer"]["static_configs"][0]["targets"] == [
        f"materializer:{WarehouseSettings().metrics_port}"]
    assert services["materializer"]["environment"]["LABELSTORE_WAREHOUSE__METRICS_HOST"] == "0.0.0.0"

    provisioning = mounted["/etc/grafana/provisioning"]
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "labelstore.yml").read_text())["providers"][0]
    dashboards = list(mounted[provider["options"]["path"]].glob("*.json"))
    assert dashboards
    for path in dashboards:
        uids = {target["datasource"]["uid"] for panel in json.loads(path.read_text())["panels"]
                for target in panel.get("targets", ())}
        assert uids == {source["uid"]}
