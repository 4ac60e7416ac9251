"""docker-compose.yml stays a valid description of labelstore's services.

Where the Docker CLI with Compose is installed, `docker compose config` must accept the file; the
structural checks run everywhere."""

from __future__ import annotations

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
