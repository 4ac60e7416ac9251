"""The wheel as a user gets it: one top-level module, its data inside, and a repository that works.

The wheel is built from this checkout and installed without dependencies into a fresh virtual
environment outside the repository; the dependencies come from the test environment's
site-packages through a path file (paths listed there are not scanned for further path files, so
this checkout's editable install stays out). Then, in an empty folder: `labelstore init --example
fraud`, `apply` against the session broker, a worker, an event, and its latest label over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

from labelstore.localkafka.cluster import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(folder), str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(folder.glob("labelstore-*.whl"))


@pytest.fixture(scope="module")
def environment(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its python."""
    target = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        check=True, capture_output=True, text=True).stdout.strip())
    (site_packages / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return python


def test_the_wheel_installs_one_top_level_module_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"labelstore"}
    for data in ("labelstore/schemas/envelope.avsc", "labelstore/localkafka/pom.xml",
                 "labelstore/catalog/migrations/script.py.mako", "labelstore/examples/fraud/labelstore.yaml",
                 "labelstore/examples/fraud/entities/order.yaml", "labelstore/examples/fraud/demo.py"):
        assert data in names
    assert not [n for n in names if "/warehouse/" in n or "/.labelstore/" in n or "__pycache__" in n]


def test_a_new_user_inits_applies_and_reads_a_latest_label(environment, kafka_cluster, tmp_path):
    python = environment
    labelstore = [str(python), "-m", "labelstore"]
    run_env = {name: value for name, value in os.environ.items() if not name.startswith("LABELSTORE_")}
    work = tmp_path / "user"
    work.mkdir()

    def run(*args: str) -> str:
        result = subprocess.run([*labelstore, *args], cwd=work, env=run_env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    where = subprocess.run([str(python), "-c", "import labelstore; print(labelstore.__file__)"], cwd=work,
                           env=run_env, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in where and "site-packages" in where
    # The distribution in this environment's own site-packages, scripts (../bin) aside (the test environment's,
    # reachable through the path file, holds the checkout's editable install).
    top_level = subprocess.run([str(python), "-c", "import importlib.metadata as m, sysconfig; "
                                "[d] = m.distributions(name='labelstore', path=[sysconfig.get_paths()['purelib']]); "
                                "print(sorted({f.parts[0] for f in d.files if not f.parts[0].endswith('.dist-info') and f.parts[0] != '..'}))"],
                               env=run_env, capture_output=True, text=True, check=True).stdout
    assert top_level.strip() == "['labelstore']"
    assert "no label repository here" in subprocess.run([*labelstore, "plan"], cwd=work, env=run_env,
                                                        capture_output=True, text=True).stderr

    run("init", "my-labels", "--example", "fraud")
    repo = work / "my-labels"
    config = yaml.safe_load((repo / "labelstore.yaml").read_text())
    config["kafka"]["bootstrap_servers"] = kafka_cluster.bootstrap_servers
    config["topics"]["prefix"] = f"wheel{time.time_ns() % 10**9}."
    port = free_port()
    config["processor"] = {**config.get("processor", {}), "web_port": port, "session_timeout_s": 6.0}
    (repo / "labelstore.yaml").write_text(yaml.safe_dump(config))
    assert "+ add" in run("--repo", "my-labels", "plan")
    run("--repo", "my-labels", "apply")

    worker_env = {**run_env, "LABELSTORE_REPO": str(repo)}
    worker = subprocess.Popen([*labelstore, "process"], cwd=work, env=worker_env,
                              stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT)
    try:
        script = f"""
import time
from datetime import UTC, datetime
from labelstore.events.publisher import Publisher
from labelstore.processors.client import LatestLabelsClient, ProcessorNotReadyError
from labelstore.settings import Settings

settings = Settings()
with Publisher(settings, source="checkout") as publisher:
    publisher.publish("OrderClassified", entity_id="order-1", event_time=datetime.now(UTC),
                      payload={{"classification": "FRAUD", "model_score": 0.97, "model_version": "v1"}}).result(60)
client = LatestLabelsClient("http://127.0.0.1:{port}")
last_error = None
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        value = client.value("order", "order-1", "fraud")
    except (OSError, ProcessorNotReadyError) as exc:
        value, last_error = None, exc
    if value is not None:
        print("label:", value)
        break
    time.sleep(0.5)
else:
    print("no label; last error:", repr(last_error))
"""
        result = subprocess.run([str(python), "-c", script], cwd=repo, env=run_env, capture_output=True,
                                text=True, timeout=300)
        assert "label: positive" in result.stdout, (result.stdout, result.stderr,
                                                    (tmp_path / "worker.log").read_text()[-3000:])
    finally:
        worker.terminate()
        worker.wait(60)
