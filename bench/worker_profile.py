"""Where a running worker's CPU goes: py-spy samples (only threads holding the GIL), each sample
charged to the innermost frame that belongs to a known part of the worker.

Used by ``processor_throughput.py --profile-seconds N``; py-spy comes with the bench extra.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

# (part, the packages or files of its frames), innermost match wins. py-spy names a frame
# "function (path/relative/to/sys.path/entry.py:line)".
PARTS = (
    ("shared core: decode, check, fold, rules, versions",
     ("(processors/core.py", "(labelstore/", "(schemas/", "(events/", "(pydantic", "(duckdb", "(pyarrow",
      "(fastavro", "(uuid.py")),
    ("outputs and changelog (librdkafka producer)", ("(processors/outputs.py", "(confluent_kafka")),
    ("agent loop (batches, records)", ("(processors/app.py", "(processors/batches.py", "(orjson")),
    ("Faust, mode and aiokafka (consumer, streams, tables, commits)", ("(faust/", "(mode/", "(aiokafka/")),
)
OTHER = "event loop and the rest"


def py_spy() -> str | None:
    found = Path(sys.executable).parent / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def profile(pid: int, seconds: float, keep: Path | None = None) -> Counter:
    """Samples per part of the worker over ``seconds``; ``keep``: also copy py-spy's raw samples there."""
    executable = py_spy()
    if executable is None:
        raise RuntimeError("py-spy is not installed (pip install -e '.[bench]')")
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "samples.txt"
        subprocess.run([executable, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                        "--format", "raw", "--output", str(raw), "--gil", "--nonblocking"],
                       check=True, capture_output=True)
        if keep is not None:
            shutil.copy(raw, keep)
        return charge(raw.read_text())


def charge(samples: str) -> Counter:
    """Parts and their sample counts, from py-spy's raw format (``frame;frame;... count``)."""
    parts: Counter = Counter()
    for line in samples.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        parts[_part_of(stack.split(";"))] += int(count)
    return parts


def _part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for part, fragments in PARTS:
            if any(fragment in frame for fragment in fragments):
                return part
    return OTHER
