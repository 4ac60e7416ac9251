"""Chaos harness: the whole label store under random faults, then checked against a clean re-fold.

    python bench/chaos.py --short                      # CI: a few minutes, every fault kind once
    python bench/chaos.py --duration 1800 --seed 7     # by hand: 30 minutes of faults
    python bench/chaos.py --short --guarantee exactly_once --keep /tmp/chaos-eos

A three-node local cluster (replication 3, min.insync.replicas 2), three processor workers, the
materializer, and a publisher at a steady rate over many entities (the fraud example's
lifecycles). Faults drawn from --seed are applied one after the other until --duration is up:
a worker SIGKILLed and restarted; a worker SIGSTOPped past its session timeout and woken up after
its partitions moved; a broker killed and restarted; a rolling restart of all three brokers;
the materializer killed and restarted; a fourth worker added and later stopped. A partition whose
committed offset does not reach, within --stall-after, the end it had then is a stall: the owners
are dumped (py-spy, asyncio tasks, every thread; see chaos_watch.py). Restarting a stuck worker is
the worker's own job (its watchdog exits it; the harness revives workers that exit, as a
supervisor would): a worker recovering a long changelog is slow, not stuck, and killing it there
(--restart-stalled) restarts its recovery and, through the rebalance, everyone else's.

After a quiet period: group lag 0 on every partition; labels.versions deduplicated by version_id
equals an uninterrupted re-fold of the same log (lost, extra, different; duplicates counted and,
under exactly_once, required to be 0); labels.latest and the latest-label endpoint hold every
entity's last version; the archive holds every event (partition, offset) once and every version
record; `labelstore check` passes. Staleness is the time from an event's log-append to the
log-append of the first record of a version it caused (labels.versions is created with
LogAppendTime for this). The exit status is 1 if any check fails. The run's folder (logs, dumps,
faults.jsonl, lag.log, results.json) is kept with --keep, and always after a failure or a stall.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

import example  # noqa: F401  (the fraud example repository)
from chaos_checks import (archive_findings, compare_versions, emitted_versions, endpoint_mismatches,
                          labelstore_check, last_versions, latest_topic_mismatches, staleness)
from chaos_faults import KINDS, Injector, schedule
from chaos_fleet import Fleet, Materializer, SteadyPublisher, reap
from chaos_watch import GroupLag, LagWatch
from labelstore.events.admin import end_offsets, ensure_topics, topic_specs
from labelstore.localkafka import LocalKafkaCluster
from labelstore.processors.refold import uninterrupted_versions
from labelstore.settings import (KafkaSettings, LocalKafkaSettings, ProcessorSettings, RulesSettings, Settings,
                                 TopicSettings, WarehouseSettings)

console = Console()
EVENTS_PER_LIFECYCLE = 2.5  # the fraud example's average, measured


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of faults (default: 1800; --short: every kind once)")
    parser.add_argument("--seed", type=int, default=17, help="draws the faults, their targets and timings")
    parser.add_argument("--short", action="store_true", help="CI mode: a few minutes, at least one fault of each kind")
    parser.add_argument("--guarantee", choices=["at_least_once", "exactly_once"], default="at_least_once")
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--rate", type=int, default=None, help="events per second (default: 100 short, 200 long)")
    parser.add_argument("--session-timeout", type=float, default=6.0, help="the workers' group session timeout, s")
    parser.add_argument("--stall-after", type=float, default=60.0,
                        help="seconds a lagging partition's committed offset may stay put before it is a stall")
    parser.add_argument("--restart-stalled", action="store_true",
                        help="also kill and restart the owners of a stalled partition (off: a 30-minute run "
                             "where the harness did this ended in a storm of restarts and recoveries)")
    parser.add_argument("--worker-stall-timeout", type=float, default=30.0,
                        help="the workers' own stall timeout, s: below --stall-after, so a worker that stops "
                             "moving exits by itself (and is restarted) before the harness calls it a stall")
    parser.add_argument("--quiet-timeout", type=float, default=240.0, help="longest wait for lag 0 after the faults, s")
    parser.add_argument("--endpoint-sample", type=int, default=None,
                        help="entities asked of the endpoint, at most (default: 2,000 short, 20,000 long)")
    args = parser.parse_args(argv)
    # Short: the faults run until each kind has happened once, which takes longer than this anyway.
    args.duration = args.duration if args.duration is not None else (30.0 if args.short else 1800.0)
    args.endpoint_sample = args.endpoint_sample or (2_000 if args.short else 20_000)
    args.rate = args.rate or (100 if args.short else 200)
    return args


def chaos_settings(bootstrap: str, run_dir: Path, args: argparse.Namespace) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, replication_factor=3, min_insync_replicas=2),
        topics=TopicSettings(prefix="chaos."),
        processor=ProcessorSettings(data_dir=run_dir / "processor", session_timeout_s=args.session_timeout,
                                    stall_timeout_s=args.worker_stall_timeout,
                                    processing_guarantee=args.guarantee),
        warehouse=WarehouseSettings(path=run_dir / "warehouse", flush_interval_s=1.0),
        rules=RulesSettings(catalog_url=f"sqlite:///{run_dir / 'catalog.sqlite'}"),
    )


def create_topics(settings: Settings) -> None:
    """The library's topics, labels.versions stamped by the broker: staleness is then measured
    between two log-append times of the same clock."""
    specs = [spec if spec.name != settings.topics.label_versions_topic
             else spec.__class__(spec.name, spec.partitions, spec.replication_factor,
                                 {**spec.config, "message.timestamp.type": "LogAppendTime"})
             for spec in topic_specs(settings)]
    ensure_topics(settings, specs)


class ChaosRun:
    def __init__(self, args: argparse.Namespace, run_dir: Path) -> None:
        self.args = args
        self.run_dir = run_dir
        self.logs = run_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.results: dict = {"seed": args.seed, "guarantee": args.guarantee, "short": args.short,
                              "duration_s": args.duration, "rate": args.rate, "run_dir": str(run_dir)}
        self.started = time.monotonic()
        self.faults_from_ms = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        console.print(f"[dim]{self.elapsed():7.1f} s[/] {text}")

    def run(self) -> dict:
        cluster = LocalKafkaCluster(LocalKafkaSettings(), nodes=3, data_dir=self.run_dir / "kafka")
        fleet = materializer = publisher = watch = None
        try:
            cluster.start()
            settings = chaos_settings(cluster.bootstrap_servers, self.run_dir, self.args)
            create_topics(settings)
            self.say(f"cluster up at {cluster.bootstrap_servers}")
            fleet, materializer = Fleet(settings, self.logs, 3), Materializer(settings, self.logs)
            fleet.start()
            materializer.start()
            watch = LagWatch(settings, fleet, self.run_dir, stall_after_s=self.args.stall_after,
                             restart_stalled=self.args.restart_stalled)
            watch.start()
            publisher = SteadyPublisher(settings, self._events(), self.args.rate)
            publisher.start()
            if not watch.wait_for_progress(180):
                self.say("[red]the workers did not commit on every partition within 180 s[/]")
            self.say(f"workers processing; lag {watch.total_lag}")
            watch.armed = True
            self.faults_from_ms = int(time.time() * 1000)  # staleness counts from here, not the start-up backlog
            self._faults(cluster, fleet, materializer, watch)
            publisher.stop()
            self.results["publisher"] = asdict(publisher.stats)
            self.say(f"faults over; {publisher.stats.published:,} events published; waiting for lag 0")
            self._quiet(fleet, materializer, watch)
            self._verify(settings, fleet, materializer, watch)
        finally:
            for part in (publisher, watch):
                if part is not None and part.is_alive():
                    part.stop()
            for part in (fleet, materializer):
                if part is not None:
                    part.stop()
            cluster.stop()
        self.results["took_s"] = round(self.elapsed(), 1)
        return self.results

    def _events(self):
        lifecycles = int(self.args.rate * (self.args.duration + 300) * 1.5 / EVENTS_PER_LIFECYCLE)
        return example.generate(lifecycles - lifecycles // 5, lifecycles // 5, seed=self.args.seed)

    def _faults(self, cluster: LocalKafkaCluster, fleet: Fleet, materializer: Materializer, watch: LagWatch) -> None:
        injector = Injector(cluster, fleet, materializer, self.run_dir / "faults.jsonl")
        kinds_left = set(KINDS) if self.args.short else set()
        revived: list[str] = []
        phase_end = time.monotonic() + self.args.duration
        for fault in schedule(self.args.seed, short=self.args.short, session_timeout_s=self.args.session_timeout):
            if time.monotonic() >= phase_end and not kinds_left:
                break
            gap_end = time.monotonic() + fault.gap_s
            while time.monotonic() < gap_end:
                revived += fleet.revive_exited()
                if not materializer.alive():
                    revived.append("materializer")
                    materializer.start()
                time.sleep(0.5)
            self.say(f"fault {fault.kind} (target {fault.target}, hold {fault.hold_s} s); lag {watch.total_lag}")
            record = injector.apply(fault, self.elapsed())
            self.say(f"  done in {record['took_s']} s: {record['note']}")
            kinds_left.discard(fault.kind)
        self.results["faults"] = dict(Counter(record["kind"] for record in injector.applied))
        self.results["revived_after_exit"] = revived

    def _quiet(self, fleet: Fleet, materializer: Materializer, watch: LagWatch) -> None:
        started = time.monotonic()
        reached = watch.wait_for_zero(self.args.quiet_timeout)
        self.results["revived_after_exit"] += fleet.revive_exited()
        self.results["lag_zero_after_s"] = round(time.monotonic() - started, 1) if reached else None
        if not reached:  # the watch's figure may be old: ask once more
            try:
                watch.latest = GroupLag(watch.settings).sample()
            except (KafkaException, TimeoutError):
                pass
        self.results["lag_at_end"] = watch.total_lag
        self.results["lag_by_partition"] = {f"{t}[{p}]": end - committed for (t, p), (committed, end) in watch.latest.items()
                                            if end != committed}
        self.results["max_lag"] = watch.max_lag
        self.say(f"lag {watch.total_lag} after {time.monotonic() - started:.0f} s of quiet")

    def _verify(self, settings: Settings, fleet: Fleet, materializer: Materializer, watch: LagWatch) -> None:
        expected = uninterrupted_versions(settings)
        emitted = emitted_versions(settings)
        versions = compare_versions(expected, emitted)
        self.results["versions"] = asdict(versions)
        self.say(f"versions: {versions.expected:,} expected, {versions.records:,} records, lost {versions.lost}, "
                 f"extra {versions.extra}, different {versions.different}, duplicates {versions.duplicates}")
        last = last_versions(expected)
        wrong, examples = latest_topic_mismatches(settings, last)
        self.results["latest_topic"] = {"keys": len(last), "wrong": wrong, "examples": examples}
        urls = [worker.url for worker in fleet.workers if worker.alive()]
        checked, wrong, examples = endpoint_mismatches(urls, last, sample=self.args.endpoint_sample, seed=self.args.seed)
        self.results["endpoint"] = {"checked": checked, "wrong": wrong, "examples": examples}
        self.say(f"labels.latest wrong keys {self.results['latest_topic']['wrong']}; endpoint {wrong} of {checked} wrong")
        watch.stop()
        self.results["stalls"] = [asdict(stall) for stall in watch.stalls]
        self.results["lag_sample_errors"] = watch.sample_errors
        fleet.stop()
        self._archive(settings, materializer, emitted)
        self.results["staleness"] = asdict(staleness(emitted, since_ms=self.faults_from_ms))
        self.results["events"] = sum(sum(ps.values()) for ps in self._event_ends(settings).values())

    def _archive(self, settings: Settings, materializer: Materializer, emitted: list) -> None:
        # The running materializer stops; a last one archives to the topics' ends and exits, as
        # `--until-caught-up` does (it also restarts from the committed offsets once more).
        materializer.stop()
        with (self.logs / "materializer.log").open("ab") as log:
            done = subprocess.run([sys.executable, "-m", "labelstore", "materialize", "--until-caught-up"],
                                  env={**os.environ, **settings.to_environment()}, stdout=log,
                                  stderr=log, timeout=600)
        self.results["archive"] = archive_findings(settings, emitted, self._event_ends(settings)) | {
            "caught_up_exit": done.returncode}
        self.results["check_passed"] = labelstore_check(settings, self.logs / "check.log")
        self.say(f"archive {self.results['archive']}; labelstore check passed: {self.results['check_passed']}")

    @staticmethod
    def _event_ends(settings: Settings) -> dict[str, dict[int, int]]:
        partitions = list(range(settings.kafka.partitions))
        return end_offsets(settings, {settings.topics.events_topic(e): partitions for e in settings.repository.entity_types})


def failures(results: dict) -> list[str]:
    found = []
    versions = results.get("versions")
    if versions is None:
        return ["the run did not reach its checks"]
    for kind in ("lost", "extra", "different"):
        if versions[kind]:
            found.append(f"{versions[kind]} {kind} label versions")
    if results["guarantee"] == "exactly_once" and versions["duplicates"]:
        found.append(f"{versions['duplicates']} duplicate label versions under exactly_once")
    if results["lag_at_end"] != 0:
        found.append(f"lag {results['lag_at_end']} at the end: {results['lag_by_partition']}")
    if results["latest_topic"]["wrong"]:
        found.append(f"labels.latest: {results['latest_topic']['wrong']} keys wrong")
    if results["endpoint"]["wrong"]:
        found.append(f"endpoint: {results['endpoint']['wrong']} entities wrong")
    archive = results["archive"]
    if any(archive[k] for k in ("events_missing", "events_duplicated", "events_unknown_partitions", "versions_differing")):
        found.append(f"archive incomplete: {archive}")
    if not results["check_passed"]:
        found.append("labelstore check failed")
    return found


def print_table(results: dict) -> None:
    table = Table("", "", title=f"chaos run: seed {results['seed']}, {results['guarantee']}, "
                                f"{results['duration_s']:.0f} s of faults, {results['rate']} events/s")
    for kind in KINDS:
        table.add_row(f"faults: {kind}", str(results.get("faults", {}).get(kind, 0)))
    versions = results.get("versions") or {}
    staleness_ = results.get("staleness") or {}
    rows = [
        ("events in the log", f"{results.get('events', 0):,}"),
        ("publish failures", str(results.get("publisher", {}).get("failed", "?"))),
        ("label versions (re-fold)", f"{versions.get('expected', 0):,}"),
        ("label version records", f"{versions.get('records', 0):,}"),
        ("lost / extra / different", f"{versions.get('lost')} / {versions.get('extra')} / {versions.get('different')}"),
        ("duplicates (by version_id)", str(versions.get("duplicates"))),
        ("labels.latest keys wrong", str(results.get("latest_topic", {}).get("wrong"))),
        ("endpoint entities wrong", f"{results.get('endpoint', {}).get('wrong')} of {results.get('endpoint', {}).get('checked')}"),
        ("archive", str(results.get("archive"))),
        ("labelstore check", "passed" if results.get("check_passed") else "FAILED"),
        ("lag at the end / max during run", f"{results.get('lag_at_end')} / {results.get('max_lag')}"),
        ("lag 0 after the faults in", f"{results.get('lag_zero_after_s')} s"),
        ("stalls (dumped)", str(len(results.get("stalls", [])))),
        ("workers that exited by themselves", str(len(results.get("revived_after_exit", [])))),
        ("staleness worst (from the first fault)", f"{staleness_.get('worst_ms', 0) / 1000:.1f} s ({staleness_.get('worst_version')})"),
        ("staleness p50 / p99", f"{staleness_.get('p50_ms', 0) / 1000:.2f} s / {staleness_.get('p99_ms', 0) / 1000:.2f} s"),
        ("run took", f"{results.get('took_s')} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for stall in results.get("stalls", []):
        console.print(f"[red]stall[/] at {stall['at_s']} s: {stall['partitions']} owners {stall['owners']}; "
                      f"dumps {stall['dumps']}; restarted {stall['restarted']}")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so that every process this run started is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    run_dir = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="labelstore-chaos-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    chaos = ChaosRun(args, run_dir)
    try:
        results = chaos.run()
    except BaseException:
        console.print(f"[red]the run broke off[/]; its logs are in {run_dir}")
        raise
    finally:
        if leftovers := reap(run_dir):
            console.print(f"killed processes the run left behind: {leftovers}")
    results["failures"] = found = failures(results)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print_table(results)
    for failure in found:
        console.print(f"[red]FAILED[/] {failure}")
    if args.keep or found or results.get("stalls"):
        console.print(f"logs, dumps and results.json kept in {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
