"""Find the local broker `labelstore kafka up` left running, so other commands can use it."""

from __future__ import annotations

from labelstore.settings import Settings


def local_bootstrap(settings: Settings) -> str | None:
    from labelstore.localkafka.cluster import LocalKafkaCluster

    cluster = LocalKafkaCluster.attach(settings.local_kafka, settings.local_kafka.state_dir)
    return cluster.bootstrap_servers if cluster is not None else None
