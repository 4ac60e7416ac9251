"""A real Apache Kafka cluster (KRaft, 1 or 3 nodes) on 127.0.0.1, run from Maven-fetched jars.

Each node is one JVM acting as broker and controller. One node uses a standalone quorum; three
nodes use a static quorum of all three, replication factor 3 and ``min.insync.replicas=2``, so the
fault tests can stop one node and keep writing. A state file in the data folder lets a later
process (``labelstore kafka status/down``) find a cluster started detached.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from labelstore.localkafka.exceptions import LocalKafkaError
from labelstore.localkafka.runtime import ensure_kafka_libs, require_tool
from labelstore.settings import LocalKafkaSettings

STATE_FILE = "cluster.json"
LAYOUT_FILE = "nodes.json"  # kept across stops: a restarted cluster reuses its ports and its data


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int
    controller_port: int
    directory: Path

    @property
    def properties_file(self) -> Path:
        return self.directory / "server.properties"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a broker could listen on the port. SO_REUSEADDR as Kafka's own sockets have it: the
    connections of a broker that just stopped sit in TIME_WAIT on its port for about a minute,
    which would make a plain bind fail although nothing listens there."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def server_properties(node: Node, nodes: list[Node]) -> str:
    replicas = min(len(nodes), 3)
    lines = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": node.directory / "data",
        "num.partitions": 6,
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": 0,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min(replicas, 2),
        "default.replication.factor": replicas,
        "min.insync.replicas": min(replicas, 2),
    }
    if len(nodes) == 1:
        lines["controller.quorum.bootstrap.servers"] = f"127.0.0.1:{node.controller_port}"
    else:
        lines["controller.quorum.voters"] = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    return "".join(f"{key}={value}\n" for key, value in lines.items())


class LocalKafkaCluster:
    def __init__(self, settings: LocalKafkaSettings, *, nodes: int = 1, data_dir: Path, port: int | None = None) -> None:
        if nodes not in (1, 3):
            raise LocalKafkaError(f"a local cluster has 1 or 3 nodes, not {nodes}")
        self.settings = settings
        self.data_dir = Path(data_dir).resolve()
        self.nodes = self._previous_layout(nodes) or [
            Node(i + 1, port if (i == 0 and port) else free_port(), free_port(), self.data_dir / f"node-{i + 1}")
            for i in range(nodes)
        ]
        self.pids: dict[int, int] = {}
        self._processes: dict[int, subprocess.Popen] = {}

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    def __enter__(self) -> LocalKafkaCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> LocalKafkaCluster:
        libs = ensure_kafka_libs(self.settings)
        java = require_tool("java")
        for node in self.nodes:
            if not port_is_free(node.port):
                raise LocalKafkaError(f"port {node.port} on 127.0.0.1 is taken: choose another with --port")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        for node in self.nodes:
            self._format(java, libs, node, cluster_id)
        for index in range(len(self.nodes)):
            self._launch(java, libs, index)
        self._write_state()
        self.wait_until_ready(timeout)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        for index in range(len(self.nodes)):
            self._signal(index, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for index in range(len(self.nodes)):
            if not self._wait_exit(index, max(0.0, deadline - time.monotonic())):
                self._signal(index, signal.SIGKILL)
                self._wait_exit(index, 10.0)
        self.pids.clear()
        self.state_file.unlink(missing_ok=True)

    def stop_node(self, index: int, *, kill: bool = False, timeout: float = 30.0) -> None:
        """Stop one node (0-based), with SIGKILL if ``kill``; its data stays for ``start_node``."""
        self._signal(index, signal.SIGKILL if kill else signal.SIGTERM)
        if not self._wait_exit(index, timeout):
            self._signal(index, signal.SIGKILL)
            self._wait_exit(index, 10.0)
        self.pids.pop(index, None)
        self._write_state()

    def start_node(self, index: int, timeout: float = 90.0) -> None:
        self._launch(require_tool("java"), ensure_kafka_libs(self.settings), index)
        self._write_state()
        self.wait_until_ready(timeout)

    def is_running(self) -> bool:
        return bool(self.pids) and all(self.is_node_alive(index) for index in self.pids)

    def is_node_alive(self, index: int) -> bool:
        process = self._processes.get(index)
        if process is not None:
            return process.poll() is None
        return index in self.pids and _alive(self.pids[index])

    def wait_until_ready(self, timeout: float) -> None:
        """Until every running node answers a metadata request as a broker of the cluster."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})  # no connect-refused noise
        deadline = time.monotonic() + timeout
        while True:
            for index in self.pids:
                if not self.is_node_alive(index):
                    raise LocalKafkaError(f"node {index + 1} exited during start-up:\n{self.log_tail(index)}")
            try:
                if len(admin.list_topics(timeout=2).brokers) >= len(self.pids):
                    return
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise LocalKafkaError(f"Kafka did not answer within {timeout:.0f} s:\n{self.log_tail(0)}")
            time.sleep(0.2)

    def log_tail(self, index: int, lines: int = 20) -> str:
        path = self.nodes[index].directory / "server.log"
        text = path.read_text(errors="replace") if path.exists() else "(no server.log yet)"
        return "\n".join(text.splitlines()[-lines:])

    @classmethod
    def attach(cls, settings: LocalKafkaSettings, data_dir: Path) -> LocalKafkaCluster | None:
        """The cluster a previous process started in ``data_dir``, if it is still running."""
        state_file = Path(data_dir).resolve() / STATE_FILE
        if not state_file.exists():
            return None
        state = json.loads(state_file.read_text())
        cluster = cls.__new__(cls)
        cluster.settings, cluster.data_dir, cluster._processes = settings, state_file.parent, {}
        cluster.nodes = [Node(n["node_id"], n["port"], n["controller_port"], Path(n["directory"])) for n in state["nodes"]]
        cluster.pids = {int(index): pid for index, pid in state["pids"].items()}
        return cluster if any(_alive(pid) for pid in cluster.pids.values()) else None

    def _previous_layout(self, count: int) -> list[Node] | None:
        """The ports of an earlier cluster in this folder: its metadata log names them."""
        path = self.data_dir / LAYOUT_FILE
        if not path.exists():
            return None
        nodes = [Node(n["node_id"], n["port"], n["controller_port"], Path(n["directory"])) for n in json.loads(path.read_text())]
        return nodes if len(nodes) == count else None

    def _format(self, java: str, libs: Path, node: Node, cluster_id: str) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        node.properties_file.write_text(server_properties(node, self.nodes))
        log_config = files("labelstore.localkafka").joinpath("log4j2.properties").read_text()
        (node.directory / "log4j2.properties").write_text(log_config.replace("@LOG_FILE@", str(node.directory / "server.log")))
        if (node.directory / "data" / "meta.properties").exists():
            return  # formatted before: keep the data
        quorum = ["--standalone"] if len(self.nodes) == 1 else []
        command = [java, "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format", *quorum,
                   f"--cluster-id={cluster_id}", "-c", str(node.properties_file)]  # ids may start with "-"
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise LocalKafkaError(f"formatting node {node.node_id} failed:\n{(done.stdout + done.stderr)[-2000:]}")

    def _launch(self, java: str, libs: Path, index: int) -> None:
        node = self.nodes[index]
        output = (node.directory / "stdout.log").open("ab")
        # The JVM options of Kafka's own start script: G1 aiming at short pauses (a broker's
        # collection pauses every client's produce and fetch), the heap sized once.
        command = [java, f"-Xmx{self.settings.heap}", f"-Xms{self.settings.heap}", "-XX:+UseG1GC",
                   "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
                   "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
                   f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}",
                   "-cp", f"{libs}/*", "kafka.Kafka", str(node.properties_file)]
        # A new session: the broker outlives a detached `labelstore kafka up` and ignores its Ctrl-C.
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        output.close()
        self._processes[index], self.pids[index] = process, process.pid

    def _signal(self, index: int, signum: int) -> None:
        if self.is_node_alive(index):
            os.kill(self.pids[index], signum)

    def _wait_exit(self, index: int, timeout: float) -> bool:
        pid = self.pids.get(index)
        if pid is None:
            return True
        process = self._processes.get(index)
        if process is not None:
            try:
                process.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while self.is_node_alive(index):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _write_state(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        nodes = [{"node_id": n.node_id, "port": n.port, "controller_port": n.controller_port,
                  "directory": str(n.directory)} for n in self.nodes]
        (self.data_dir / LAYOUT_FILE).write_text(json.dumps(nodes, indent=2))
        state = {
            "version": self.settings.version,
            "bootstrap_servers": self.bootstrap_servers,
            "nodes": nodes,
            "pids": {str(index): pid for index, pid in self.pids.items()},
        }
        self.state_file.write_text(json.dumps(state, indent=2))


def _alive(pid: int) -> bool:
    """For a process this one did not start (a detached cluster found by ``attach``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
