"""Run one processor worker in this process until it is stopped (SIGTERM/SIGINT)."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys

import faust

from labelstore.settings import Settings
from labelstore.shutdown import arm_stop_deadline
from labelstore.processors.app import create_app
from labelstore.processors.health import log_consumer_state, watch_progress
from labelstore.processors.web import register_health_pages

EXIT_CRASHED = 70  # the worker could not go on: a supervisor restarts it
QUIET_LOGGERS = ("faust", "mode", "aiokafka", "kafka", "asyncio", "aiohttp", "rocksdict")


def run_worker(settings: Settings, log_level: str = "info") -> None:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Faust leaves its loggers at DEBUG; each debug call on the hot path still builds a record.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # A worker that seems stuck explains itself: SIGQUIT prints every thread's stack to its log
    # (even when the event loop is blocked); SIGUSR1 prints the asyncio tasks (mode's handler);
    # SIGUSR2 its consumer's state. A stall it notices itself does all of it, then exits.
    faulthandler.register(signal.SIGQUIT, all_threads=True)
    bound_fetch_wait(settings.processor.fetch_max_wait_ms)
    _ensure_output_topics(settings)
    app = create_app(settings, on_crash=_exit_for_restart)
    register_health_pages(app, watch_progress(app, settings))
    worker = _BoundedStopWorker(app, stop_within_s=settings.processor.shutdown_timeout_s, loglevel="WARNING",
                                quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:  # noqa: BLE001 - a crash of any of Faust's services ends up here
        logging.getLogger("labelstore.processor").exception("the worker crashed")
        code = EXIT_CRASHED
    else:
        code = 0
    # Faust's consumer runs on a thread that is not a daemon. When one of the worker's services
    # crashed (aiokafka's fetcher, after the process had been stopped past its session timeout),
    # the main thread returned and that thread ran on: the process stayed up, serving nothing,
    # for good. Ending it here turns every crash into an exit a supervisor sees.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _BoundedStopWorker(faust.Worker):
    """Faust's worker, whose stop after a signal ends within ``stop_within_s`` (see ``labelstore.shutdown``)."""

    def __init__(self, *args, stop_within_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._stop_within_s = stop_within_s
        self._deadline = None

    def _on_sigusr2(self) -> None:
        # mode would start pdb here: on a worker without a terminal, a hang. The consumer's
        # partitions, flow, recovery and intakes go to the log instead.
        log_consumer_state(self.app, "on SIGUSR2")

    def _schedule_shutdown(self, signal) -> None:  # mode's hook for SIGTERM and SIGINT
        if self._deadline is None:
            self._deadline = arm_stop_deadline(self._stop_within_s, "the processor worker")
        super()._schedule_shutdown(signal)


def _ensure_output_topics(settings: Settings) -> None:
    """The outputs are produced by the worker's own producer (``processors.outputs``), which does
    not declare topics as Faust's did: create the missing ones, check the others."""
    from labelstore.events.admin import TopicSpec, ensure_topics, topic_specs

    topics, kafka = settings.topics, settings.kafka
    names = {topics.label_versions_topic, topics.label_latest_topic, topics.dead_letter_topic}
    # The state tables' changelogs too, before Faust subscribes: a changelog Faust creates itself
    # can be missing from the consumer's first metadata ("Ignoring missing topic"); its partitions
    # are then never assigned and the worker waits for their recovery forever (seen on a fresh broker).
    changelogs = [TopicSpec(f"{topics.prefix}{settings.processor.app_id}-{entity_type}-state-changelog",
                            kafka.partitions, kafka.replication_factor,
                            {"cleanup.policy": "compact", "min.insync.replicas": str(kafka.min_insync_replicas)})
                  for entity_type in settings.repository.entity_types]
    ensure_topics(settings, [spec for spec in topic_specs(settings) if spec.name in names] + changelogs)


def _exit_for_restart(reason: BaseException) -> None:
    # A worker that cannot process must not sit idle: exit so a supervisor restarts it. Outputs
    # are acknowledged before state is stored, so this loses nothing (as after a SIGKILL).
    logging.getLogger("labelstore.processor").critical("exiting: %r", reason)
    os._exit(EXIT_CRASHED)


def bound_fetch_wait(milliseconds: int) -> None:
    """Faust's aiokafka driver hard-codes fetch_max_wait_ms=1500; on a quiet partition every fetch
    can then hold events back for up to 1.5 s. Bound it at consumer creation, in this process."""
    import aiokafka

    original = aiokafka.AIOKafkaConsumer.__init__
    if getattr(original, "_labelstore_bounded", False):
        return

    def init(self, *topics, **kwargs):
        kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", milliseconds), milliseconds)
        original(self, *topics, **kwargs)

    init._labelstore_bounded = True
    aiokafka.AIOKafkaConsumer.__init__ = init


if __name__ == "__main__":
    run_worker(Settings(), os.environ.get("LABELSTORE_WORKER_LOG_LEVEL", "info"))
