"""The benchmarks run on the fraud example repository (examples/fraud): LABELSTORE_REPO points
there, for this process and the ones it starts, unless it is set already."""

from __future__ import annotations

import os
from pathlib import Path

from labelstore.repository import current, load_demo

EXAMPLE_ROOT = Path(__file__).resolve().parent.parent / "examples" / "fraud"
os.environ.setdefault("LABELSTORE_REPO", str(EXAMPLE_ROOT))
EXAMPLE = current(os.environ["LABELSTORE_REPO"])
generate = load_demo(EXAMPLE).generate
