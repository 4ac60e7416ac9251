"""`labelstore kafka`: a real local Apache Kafka for development, demos and tests."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

kafka_app = typer.Typer(help="Run a local Apache Kafka (KRaft) on 127.0.0.1.", no_args_is_help=True)
console = Console()
DEFAULT_PORT = 9092


@kafka_app.command("up")
def up(
    nodes: int = typer.Option(1, help="1, or 3 for replication factor 3 and min.insync.replicas=2."),
    port: int = typer.Option(None, help=f"Port of the first broker (default {DEFAULT_PORT} if free)."),
) -> None:
    """Start a local cluster that keeps running after this command returns."""
    with reported_errors():
        settings = Settings()
        cluster = _running(settings)
        if cluster is not None:
            console.print(f"already running: [bold]{cluster.bootstrap_servers}[/]")
            return
        cluster = _start(settings, nodes, port)
        console.print(f"Kafka {settings.local_kafka.version} up ({nodes} node(s)): [bold]{cluster.bootstrap_servers}[/]")


@kafka_app.command("down")
def down() -> None:
    """Stop the local cluster."""
    with reported_errors():
        cluster = _running(Settings())
        if cluster is None:
            console.print("no local cluster is running")
            return
        cluster.stop()
        console.print("stopped")


@kafka_app.command("status")
def status() -> None:
    """Show the local cluster's nodes."""
    with reported_errors():
        cluster = _running(Settings())
        if cluster is None:
            console.print("no local cluster is running")
            raise typer.Exit(1)
        table = Table("node", "pid", "port", "alive", title=cluster.bootstrap_servers)
        for index, node in enumerate(cluster.nodes):
            pid = cluster.pids.get(index)
            table.add_row(str(node.node_id), str(pid or "-"), str(node.port), "yes" if cluster.is_node_alive(index) else "[red]no")
        console.print(table)


@kafka_app.command("fetch")
def fetch() -> None:
    """Only fetch Kafka's jars (through Maven) into the cache."""
    from labelstore.localkafka import ensure_kafka_libs

    with reported_errors():
        console.print(f"Kafka jars in {ensure_kafka_libs(Settings().local_kafka)}")


def ensure_broker(settings: Settings) -> str:
    """The configured cluster, or the running local one, or a local one started now."""
    if settings.kafka.bootstrap_servers:
        return settings.kafka.bootstrap_servers
    cluster = _running(settings) or _start(settings, 1, None)
    return cluster.bootstrap_servers


def _running(settings: Settings):
    from labelstore.localkafka import LocalKafkaCluster

    return LocalKafkaCluster.attach(settings.local_kafka, settings.local_kafka.state_dir)


def _start(settings: Settings, nodes: int, port: int | None):
    from labelstore.localkafka import LocalKafkaCluster
    from labelstore.localkafka.cluster import port_is_free

    if port is None and port_is_free(DEFAULT_PORT):
        port = DEFAULT_PORT
    with console.status("starting Kafka (the first run fetches its jars through Maven)"):
        return LocalKafkaCluster(settings.local_kafka, nodes=nodes, data_dir=settings.local_kafka.state_dir, port=port).start()
