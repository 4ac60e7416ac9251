"""A throwaway Apache Iceberg REST catalog server for tests (the warehouse's REST catalog path).

Iceberg's own reference server, ``org.apache.iceberg.rest.RESTCatalogServer``: a JDBC catalog on
SQLite behind the REST protocol. Iceberg publishes it in the ``test-fixtures`` jar of
``iceberg-open-api`` (the self-contained runtime jar is not published), so Maven fetches that jar
and the server's classpath once into the cache folder that holds the local Kafka broker's jars.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from labelstore.localkafka.cluster import free_port
from labelstore.localkafka.runtime import fetch_maven_libs, require_tool
from labelstore.settings import LocalKafkaSettings

# The newest iceberg-open-api served (1.12.0 is not); the server's classpath is its test-fixtures
# dependencies, at the versions Iceberg's build of that release names.
ICEBERG_VERSION = "1.11.0"
JETTY_VERSION = "12.1.8"
HADOOP_VERSION = "3.4.3"
# Hadoop's Configuration and local file system are all the server uses of Hadoop: leave out the
# rest of hadoop-common's dependencies, as Iceberg's build does.
HADOOP_EXCLUSIONS = ["org.slf4j:*", "ch.qos.reload4j:*", "org.apache.avro:avro", "com.google.guava:*",
                     "com.google.protobuf:*", "org.apache.curator:*", "org.apache.zookeeper:*", "org.apache.kerby:*",
                     "org.apache.hadoop.thirdparty:hadoop-shaded-protobuf_3_7", "org.eclipse.jetty:*",
                     "com.google.re2j:re2j", "com.google.code.gson:gson", "com.jcraft:jsch",
                     "com.google.code.findbugs:jsr305", "io.dropwizard.metrics:metrics-core", "dnsjava:dnsjava",
                     "org.xerial.snappy:snappy-java", "commons-cli:commons-cli", "com.github.pjfanning:jersey-json"]
DEPENDENCIES = [
    ("org.apache.iceberg:iceberg-open-api", ICEBERG_VERSION, "test-fixtures"),
    ("org.apache.iceberg:iceberg-core", ICEBERG_VERSION, None),
    ("org.apache.iceberg:iceberg-core", ICEBERG_VERSION, "tests"),  # the REST adapter and servlet
    ("org.eclipse.jetty.ee10:jetty-ee10-servlet", JETTY_VERSION, None),
    ("org.eclipse.jetty.compression:jetty-compression-server", JETTY_VERSION, None),
    ("org.eclipse.jetty.compression:jetty-compression-gzip", JETTY_VERSION, None),
    ("org.slf4j:slf4j-simple", "2.0.17", None),
    ("org.xerial:sqlite-jdbc", "3.53.0.0", None),
    ("org.apache.hadoop:hadoop-common", HADOOP_VERSION, None),
]
MAIN_CLASS = "org.apache.iceberg.rest.RESTCatalogServer"


def _pom() -> str:
    def dependency(name: str, version: str, classifier: str | None) -> str:
        group, artifact = name.split(":")
        extra = f"<classifier>{classifier}</classifier>" if classifier else ""
        if artifact == "hadoop-common":
            excluded = "".join(f"<exclusion><groupId>{g}</groupId><artifactId>{a}</artifactId></exclusion>"
                               for g, a in (e.split(":") for e in HADOOP_EXCLUSIONS))
            extra += f"<exclusions>{excluded}</exclusions>"
        return (f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
                f"<version>{version}</version>{extra}</dependency>")

    listed = "\n    ".join(dependency(*d) for d in DEPENDENCIES)
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>labelstore.local</groupId>
  <artifactId>iceberg-rest-catalog</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    {listed}
  </dependencies>
</project>
"""


def ensure_server_libs(cache_dir: Path | None = None) -> Path:
    cache_dir = cache_dir or LocalKafkaSettings().cache_dir
    return fetch_maven_libs(_pom(), cache_dir / f"iceberg-rest-{ICEBERG_VERSION}" / "libs",
                            expect=f"iceberg-open-api-{ICEBERG_VERSION}-test-fixtures.jar",
                            what=f"Apache Iceberg's REST catalog server {ICEBERG_VERSION}")


class IcebergRestServer:
    """The server on a free port (it listens on every interface; tests call 127.0.0.1), its
    catalog database and default warehouse in a temporary folder."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="labelstore-iceberg-rest-"))
        self.port = free_port()
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def start(self, timeout: float = 60) -> IcebergRestServer:
        libs = ensure_server_libs()
        # The server takes its catalog's properties from CATALOG_* variables: only these.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
        env.update(CATALOG_REST_PORT=str(self.port), CATALOG_URI=f"jdbc:sqlite:file:{self.directory / 'catalog.db'}",
                   CATALOG_WAREHOUSE=(self.directory / "warehouse").as_uri())
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [require_tool("java"), "-Xmx256m", "-XX:+UseSerialGC", "-cp", f"{libs}/*", MAIN_CLASS],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.directory)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop(keep_log=True)
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"the Iceberg REST catalog server did not answer on {self.url}:\n{tail}")
            time.sleep(0.2)
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v1/config", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, *, keep_log: bool = False) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if not keep_log:
            shutil.rmtree(self.directory, ignore_errors=True)
