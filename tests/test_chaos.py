"""The chaos harness's short mode: every kind of fault at least once, then nothing lost, nothing extra.

Runs ``bench/chaos.py --short`` as an operator would (its own three-node cluster, workers,
materializer and publisher) and reads the run's results.json. LABELSTORE_CHAOS_SEED and
LABELSTORE_CHAOS_GUARANTEE choose another seed or exactly_once (which then also requires 0
duplicates); the run's folder (logs, dumps, results.json) is LABELSTORE_CHAOS_DIR, else under
pytest's tmp_path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
FAULT_KINDS = {"worker_kill", "worker_pause", "broker_kill", "rolling_restart", "materializer_kill", "worker_added"}

pytestmark = [pytest.mark.fault, pytest.mark.chaos, pytest.mark.timeout(1200)]


def reap(run_dir: Path) -> list[int]:
    spec = importlib.util.spec_from_file_location("chaos_fleet", BENCH / "chaos_fleet.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.reap(run_dir)


def run_short_chaos(run_dir: Path, seed: str, guarantee: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(BENCH / "chaos.py"), "--short", "--seed", seed, "--guarantee", guarantee,
               "--keep", str(run_dir)]
    process = subprocess.Popen(command, cwd=BENCH, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=1000)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the harness stops what it started, then exits
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        reap(run_dir)
    return subprocess.CompletedProcess(command, process.returncode, output)


def test_short_chaos_run_loses_nothing(tmp_path):
    seed = os.environ.get("LABELSTORE_CHAOS_SEED", "17")
    guarantee = os.environ.get("LABELSTORE_CHAOS_GUARANTEE", "at_least_once")
    # pytest keeps only its last few temporary folders, and other sessions may run meanwhile.
    run_dir = Path(os.environ.get("LABELSTORE_CHAOS_DIR", tmp_path / "chaos"))
    done = run_short_chaos(run_dir, seed, guarantee)
    print(done.stdout[-6000:])
    results_file = run_dir / "results.json"
    assert results_file.exists(), f"the harness broke off (exit {done.returncode}):\n{done.stdout[-4000:]}"
    results = json.loads(results_file.read_text())

    assert set(results["faults"]) == FAULT_KINDS and all(results["faults"].values())
    versions = results["versions"]
    assert versions["expected"] > 0
    assert (versions["lost"], versions["extra"], versions["different"]) == (0, 0, 0), versions["examples"]
    if guarantee == "exactly_once":
        assert versions["duplicates"] == 0
    assert results["lag_at_end"] == 0, results["lag_by_partition"]
    assert results["latest_topic"]["wrong"] == 0, results["latest_topic"]["examples"]
    assert results["endpoint"]["checked"] > 0 and results["endpoint"]["wrong"] == 0, results["endpoint"]["examples"]
    archive = results["archive"]
    assert archive["events_missing"] == archive["events_duplicated"] == archive["versions_differing"] == 0, archive
    assert archive["events_unknown_partitions"] == 0
    assert results["check_passed"], (run_dir / "logs" / "check.log").read_text()
    assert done.returncode == 0, results["failures"]
