"""SIGTERM stops a worker and the materializer within the configured time, even with every broker gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from labelstore.events.admin import ensure_topics
from labelstore.events.publisher import Publisher
from labelstore.localkafka import LocalKafkaCluster
from labelstore.settings import LocalKafkaSettings, WarehouseSettings
from labelstore.shutdown import EXIT_STOP_TIMED_OUT
from tests.conftest import settings_for
from tests.fraud_example import generate
from tests.processors.worker_process import WorkerProcess, label_versions, wait_for, with_processor

STOP_WITHIN_S = 5.0


@pytest.mark.fault
def test_sigterm_with_the_brokers_gone_stops_within_the_timeout(tmp_path):
    cluster = LocalKafkaCluster(LocalKafkaSettings(), nodes=1, data_dir=tmp_path / "kafka").start()
    settings = with_processor(settings_for(cluster.bootstrap_servers), tmp_path / "data",
                              shutdown_timeout_s=STOP_WITHIN_S)
    settings = settings.model_copy(update={"warehouse": WarehouseSettings(
        path=tmp_path / "warehouse", shutdown_timeout_s=STOP_WITHIN_S, flush_interval_s=0.5)})
    ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    environment = {**os.environ, **settings.to_environment()}
    with (tmp_path / "materializer.log").open("wb") as log:
        materializer = subprocess.Popen([sys.executable, "-m", "labelstore", "materialize"], env=environment,
                                        stdout=log, stderr=log)
    try:
        with Publisher(settings) as publisher:
            publisher.publish_many(list(generate(50, 0, seed=4)))
        wait_for(lambda: label_versions(settings), timeout=120, worker=worker)
        wait_for(lambda: any((tmp_path / "warehouse").glob("_commits/*.json")), timeout=60)
        cluster.stop()
        time.sleep(2)  # the clients notice the brokers are gone
        started = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        materializer.send_signal(signal.SIGTERM)
        worker_code = worker.process.wait(STOP_WITHIN_S + 25)
        materializer_code = materializer.wait(STOP_WITHIN_S + 25)
        elapsed = time.monotonic() - started
    finally:
        for process in (worker.process, materializer):
            if process.poll() is None:
                process.kill()
        cluster.stop()
    assert elapsed < STOP_WITHIN_S + 25
    # Either a clean stop or the deadline's exit code; never a hang.
    assert worker_code in (0, EXIT_STOP_TIMED_OUT), (tmp_path / "worker.log").read_text()[-2000:]
    assert materializer_code in (0, 1, EXIT_STOP_TIMED_OUT), (tmp_path / "materializer.log").read_text()[-2000:]
