"""The library knows no domain: the example's names appear only in examples, docs and tests.

The names come from the example repository itself (its event types, payload fields, enum symbols
and state fields), so a new example name is covered without touching this test. The example's own
name (`--example fraud`) is the one word of it the library may say.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fraud"
LIBRARY = ["labelstore", "events", "schemas", "processors", "materializers", "offline"]
# Words of the example that are also ordinary words of the library (a rule's "version", a field's "type").
ORDINARY = {"reports", "version", "note", "kind", "title", "language", "reason", "source", "tag", "team", "decision"}


def example_names() -> set[str]:
    names: set[str] = {"false-negative", "false-positive", "OrderClassified", "ReviewerVerdict", "NOT_FRAUD"}
    for path in (EXAMPLE / "schemas").glob("*/*.avsc"):
        if path.parent.name == "history":  # released schemas carry the library's envelope too
            continue
        schema = json.loads(path.read_text())
        names.add(schema["name"])
        for field in schema.get("fields", []):
            names.add(field["name"])
            for branch in field["type"] if isinstance(field["type"], list) else [field["type"]]:
                if isinstance(branch, dict) and branch.get("type") == "enum":
                    names.update(branch["symbols"])
    for path in (EXAMPLE / "entities").glob("*.yaml"):
        names.update(yaml.safe_load(path.read_text())["fields"])
    return {name for name in names if len(name) > 4 and name not in ORDINARY}


def library_files() -> list[Path]:
    files = []
    for folder in LIBRARY:
        files += [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files


def test_the_example_names_are_many_enough_to_mean_something():
    names = example_names()
    assert {"OrderClassified", "ReviewerVerdict", "NOT_FRAUD", "false-negative", "classification"} <= names
    assert len(names) > 30


def test_no_example_name_in_the_library():
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, example_names()))) + r")\b")
    found = []
    for path in library_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            match = pattern.search(line)
            if match:
                found.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)!r} in {line.strip()[:100]}")
    assert not found, "the library names the example's domain:\n" + "\n".join(found)
