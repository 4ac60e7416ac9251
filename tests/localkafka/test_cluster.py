"""The local broker: its configuration, its refusals, and a three-node cluster that loses a node."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from labelstore.localkafka import LocalKafkaCluster, MissingToolError
from labelstore.localkafka.cluster import Node, server_properties
from labelstore.localkafka.runtime import require_tool
from labelstore.settings import LocalKafkaSettings


def nodes(count: int) -> list[Node]:
    return [Node(i + 1, 9000 + i, 9100 + i, Path(f"/data/node-{i + 1}")) for i in range(count)]


def parse(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_single_node_properties():
    (node,) = nodes(1)
    properties = parse(server_properties(node, [node]))
    assert properties["process.roles"] == "broker,controller"
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:9000,CONTROLLER://127.0.0.1:9100"
    assert properties["controller.quorum.bootstrap.servers"] == "127.0.0.1:9100"
    assert properties["offsets.topic.replication.factor"] == "1"
    assert properties["auto.create.topics.enable"] == "false"
    assert "controller.quorum.voters" not in properties


def test_three_node_properties():
    three = nodes(3)
    properties = parse(server_properties(three[1], three))
    assert properties["node.id"] == "2"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:9100,2@127.0.0.1:9101,3@127.0.0.1:9102"
    assert properties["default.replication.factor"] == "3"
    assert properties["min.insync.replicas"] == "2"
    assert properties["transaction.state.log.min.isr"] == "2"


def test_missing_java_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingToolError, match=r"^Java 17\+ is needed .* apt-get install -y openjdk-17-jre-headless\)$"):
        require_tool("java")
    with pytest.raises(MissingToolError, match="apt-get install -y maven"):
        require_tool("mvn")


@pytest.mark.fault
def test_three_node_cluster_keeps_accepting_writes_with_one_node_down(tmp_path):
    with LocalKafkaCluster(LocalKafkaSettings(), nodes=3, data_dir=tmp_path) as cluster:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        admin.create_topics([NewTopic("replicated", 3, 3)])["replicated"].result(30)
        producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all", "enable.idempotence": True})

        def produce(count: int) -> int:
            delivered = []
            for i in range(count):
                producer.produce("replicated", key=str(i).encode(), value=b"x",
                                 on_delivery=lambda err, msg: delivered.append(err is None))
            producer.flush(60)
            return sum(delivered)

        assert produce(1_000) == 1_000
        cluster.stop_node(2)
        assert produce(1_000) == 1_000  # 2 of 3 replicas in sync: min.insync.replicas holds
        cluster.start_node(2)
        assert len(admin.list_topics(timeout=10).brokers) == 3


@pytest.mark.fault
@pytest.mark.parametrize("count", [1, 3])
def test_down_then_up_at_once_on_the_same_ports(tmp_path, count):
    """A stopped broker's connections linger in TIME_WAIT on its port; starting again must work."""
    cluster = LocalKafkaCluster(LocalKafkaSettings(), nodes=count, data_dir=tmp_path).start()
    ports = [node.port for node in cluster.nodes]
    # A client still connected when the brokers stop: they close first, so TIME_WAIT is on their side.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    assert len(admin.list_topics(timeout=30).brokers) == count
    cluster.stop()
    del admin
    again = LocalKafkaCluster(LocalKafkaSettings(), nodes=count, data_dir=tmp_path)
    assert [node.port for node in again.nodes] == ports  # the same ports, as `labelstore kafka up` reuses them
    again.start()
    try:
        assert len(AdminClient({"bootstrap.servers": again.bootstrap_servers}).list_topics(timeout=30).brokers) == count
    finally:
        again.stop()
