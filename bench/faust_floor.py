"""The ceiling Faust puts on the processor: an agent that takes the order events the way the
processor does (its transport, its intake, its micro-batches) and acknowledges them, doing nothing
else (no decoding, state, rules or outputs).

Started by ``processor_throughput.py --floor``; configured by environment variables:
BOOTSTRAP_SERVERS, EVENTS_TOPIC, EXPECTED (events), RESULT (a file: events/s once all arrived),
DATA_DIR. The rate counts from the first event taken to the last.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import faust

import example  # noqa: F401  (the fraud example repository)
from labelstore.processors.batches import MessageBatches
from labelstore.processors.outputs import RAW
from labelstore.processors.transport import App
from labelstore.processors.worker import bound_fetch_wait
from labelstore.settings import ProcessorSettings

settings = ProcessorSettings()
bound_fetch_wait(settings.fetch_max_wait_ms)
app = App(f"floor-{os.environ['EVENTS_TOPIC']}", broker=f"kafka://{os.environ['BOOTSTRAP_SERVERS']}",
                datadir=os.environ["DATA_DIR"], autodiscover=False, consumer_auto_offset_reset="earliest",
                web_enabled=False, topic_allow_declare=False)
events_topic = app.topic(os.environ["EVENTS_TOPIC"], **RAW)
intake = app.intake(os.environ["EVENTS_TOPIC"])


@app.agent(events_topic)
async def take_and_acknowledge(stream: faust.StreamT) -> None:
    expected, taken, first, first_batch = int(os.environ["EXPECTED"]), 0, None, 0
    batches = MessageBatches(app, intake, settings.batch_size, settings.batch_within_s)
    while True:
        events = await batches.take()
        if not events:
            continue
        if first is None:
            first, first_batch = time.perf_counter(), len(events)
        taken += len(events)
        batches.ack(events)
        if taken >= expected:
            Path(os.environ["RESULT"]).write_text(str((taken - first_batch) / (time.perf_counter() - first)))


if __name__ == "__main__":
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
