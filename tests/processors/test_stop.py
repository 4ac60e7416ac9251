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
from labelstore.localkafka.cluster import free_port
from labelstore.settings import LocalKafkaSettings, WarehouseSettings
from labelstore.shutdown import EXIT_STOP_TIMED_OUT
from labelstore.warehouse import Warehouse
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
        path=tmp_path / "warehouse", shutdown_timeout_s=STOP_WITHIN_S, flush_interval_s=0.5, metrics_port=free_port())})
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
        wait_for(lambda: Warehouse(tmp_path / "warehouse").last_commit() is not None, timeout=60)
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


CRASHING_FETCHER = """
import aiokafka.consumer.fetcher as fetcher
import runpy

original, calls = fetcher.Fetcher.fetched_records, [0]

async def fetched_records(self, *args, **kwargs):
    # What aiokafka's fetcher did after the process had been stopped past its session timeout.
    calls[0] += 1
    if calls[0] > 20:
        raise KeyError("a partition's records, gone")
    return await original(self, *args, **kwargs)

fetcher.Fetcher.fetched_records = fetched_records

import asyncio
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

async def on_thread_stop(self):  # a consumer thread that does not stop, as after the pause
    await asyncio.sleep(3600)

AIOKafkaConsumerThread.on_thread_stop = on_thread_stop
runpy.run_module("labelstore.processors.worker", run_name="__main__")
"""


@pytest.mark.fault
def test_a_crash_of_a_faust_service_ends_the_process(settings, tmp_path):
    settings = with_processor(settings, tmp_path / "data")
    ensure_topics(settings)
    environment = {**os.environ, **settings.to_environment()}
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-c", CRASHING_FETCHER], env=environment, stdout=log, stderr=log)
    try:
        code = worker.wait(120)  # before the fix it never ended: Faust's consumer thread kept it up
    finally:
        if worker.poll() is None:
            worker.kill()
    log_text = (tmp_path / "worker.log").read_text()
    assert code != 0, log_text[-3000:]
    assert "We experienced a crash" in log_text
