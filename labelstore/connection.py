"""Where the Kafka cluster is: the configured servers, else the local broker `labelstore kafka up` started."""

from __future__ import annotations

from labelstore.errors import ConfigurationError
from labelstore.settings import Settings


def bootstrap_servers(settings: Settings) -> str:
    if settings.kafka.bootstrap_servers:
        return settings.kafka.bootstrap_servers
    from labelstore.localkafka.discovery import local_bootstrap

    local = local_bootstrap(settings)
    if local is None:
        raise ConfigurationError(
            "no Kafka cluster configured: run `labelstore kafka up` for a local broker, "
            "or set LABELSTORE_KAFKA__BOOTSTRAP_SERVERS=host:port"
        )
    return local
