"""Apache Kafka's jars, fetched once by Maven into a cache folder that later runs reuse."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from importlib.resources import files
from pathlib import Path

from labelstore.localkafka.exceptions import LocalKafkaError, MissingToolError
from labelstore.settings import LocalKafkaSettings

COMPLETE_MARKER = ".complete"
INSTALL_HINTS = {
    "java": "Java 17+ is needed to run the local Kafka broker: install a JDK "
            "(Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)",
    "mvn": "Maven is needed to fetch the local Kafka broker's jars: install it "
           "(Debian/Ubuntu: apt-get install -y maven)",
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(INSTALL_HINTS[name])
    return path


def libs_dir(settings: LocalKafkaSettings) -> Path:
    return settings.cache_dir / f"kafka-{settings.version}" / "libs"


def ensure_kafka_libs(settings: LocalKafkaSettings) -> Path:
    """The folder of Kafka's jars, fetched with Maven the first time."""
    pom = files("labelstore.localkafka").joinpath("pom.xml").read_text()
    return fetch_maven_libs(pom.replace("@KAFKA_VERSION@", settings.version), libs_dir(settings),
                            expect="kafka_2.13-*.jar", what=f"Apache Kafka {settings.version}")


def fetch_maven_libs(pom: str, target: Path, *, expect: str, what: str) -> Path:
    """``target``, holding the runtime jars of the dependencies ``pom`` lists (one of them named like
    ``expect``), copied there by Maven the first time."""
    if (target / COMPLETE_MARKER).exists():
        return target
    mvn = require_tool("mvn")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Fetch into a temporary folder and rename: an interrupted fetch never looks complete.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        scratch_path = Path(scratch)
        (scratch_path / "pom.xml").write_text(pom)
        fetched = scratch_path / "libs"
        command = [mvn, "-q", "-B", "-f", str(scratch_path / "pom.xml"), "dependency:copy-dependencies",
                   f"-DoutputDirectory={fetched}", "-DincludeScope=runtime"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not any(fetched.glob(expect)):
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise LocalKafkaError(f"Maven could not fetch {what}:\n{tail}")
        (fetched / COMPLETE_MARKER).write_text(what)
        shutil.rmtree(target, ignore_errors=True)
        fetched.rename(target)
    return target
