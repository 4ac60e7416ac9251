"""A real local Apache Kafka, fetched through Maven and run on 127.0.0.1: no Docker, no mocks."""

from labelstore.localkafka.cluster import LocalKafkaCluster
from labelstore.localkafka.exceptions import LocalKafkaError, MissingToolError
from labelstore.localkafka.runtime import ensure_kafka_libs

__all__ = ["LocalKafkaCluster", "LocalKafkaError", "MissingToolError", "ensure_kafka_libs"]
