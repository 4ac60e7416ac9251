"""A label repository: the folder a team owns (and keeps in git) that holds one domain.

    labelstore.yaml                 project name and settings (Kafka, topics, warehouse, catalog, processor)
    schemas/<entity_type>/*.avsc    event payload schemas; schemas/history/ the released event schemas
    entities/<entity_type>.yaml     the fold declaration: state fields and per-event operations
    rules/*.sql | rules/*.yaml      label rules

The library knows no domain: everything domain-specific is read from here. Commands find the
repository the way git finds ``.git``: ``--repo DIR`` or ``LABELSTORE_REPO``, else the current
folder and its parents.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections import defaultdict
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml

from labelstore.errors import ConfigurationError

if TYPE_CHECKING:
    from labelstore.declarations import EntityDeclaration
    from labelstore.events.typed import EventTypes
    from labelstore.rules.model import LabelRule
    from labelstore.schemas.catalog import SchemaSet
    from labelstore.schemas.codec import AvroCodec

CONFIG_FILE = "labelstore.yaml"
REPO_VARIABLE = "LABELSTORE_REPO"
SCHEMAS, ENTITIES, RULES = "schemas", "entities", "rules"
RULE_SUFFIXES = (".yaml", ".yml", ".sql")


class NoRepositoryError(ConfigurationError):
    """No label repository where one was looked for."""


def find_root(start: Path | None = None) -> Path | None:
    """The nearest folder, from ``start`` upward, that holds a ``labelstore.yaml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return None


def locate(explicit: str | Path | None = None) -> Path | None:
    """The repository's root: ``explicit``, else ``LABELSTORE_REPO``, else found from the current folder."""
    chosen = explicit or os.environ.get(REPO_VARIABLE)
    if chosen:
        root = Path(chosen).expanduser().resolve()
        if not (root / CONFIG_FILE).is_file():
            raise NoRepositoryError(f"{root} is not a label repository (no {CONFIG_FILE} there); "
                                    "create one with `labelstore init DIR`")
        return root
    return find_root()


def require_root(explicit: str | Path | None = None) -> Path:
    root = locate(explicit)
    if root is None:
        raise NoRepositoryError(
            f"no label repository here: no {CONFIG_FILE} in {Path.cwd()} or its parents. "
            "Create one with `labelstore init DIR [--example fraud]`, or point to one with "
            f"--repo DIR or {REPO_VARIABLE}=DIR")
    return root


def read_config(root: Path) -> dict[str, Any]:
    """``labelstore.yaml`` as a mapping; an empty file is an empty mapping."""
    path = root / CONFIG_FILE
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, Mapping):
        raise ConfigurationError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
    return dict(loaded)


class Repository:
    """One repository's definitions, each loaded (and checked) on first use."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.config = read_config(self.root)

    def __repr__(self) -> str:
        return f"Repository({str(self.root)!r})"

    @property
    def project(self) -> str:
        return str(self.config.get("project") or self.root.name)

    @property
    def schemas_dir(self) -> Path:
        return self.root / SCHEMAS

    @property
    def history_dir(self) -> Path:
        from labelstore.schemas.catalog import HISTORY_FOLDER

        return self.schemas_dir / HISTORY_FOLDER

    @property
    def entities_dir(self) -> Path:
        return self.root / ENTITIES

    @property
    def rules_dir(self) -> Path:
        return self.root / RULES

    @cached_property
    def schema_set(self) -> SchemaSet:
        from labelstore.schemas.catalog import load_schema_set

        return load_schema_set(self.schemas_dir)

    @cached_property
    def declarations(self) -> dict[str, EntityDeclaration]:
        from labelstore.declarations import load_declarations

        return load_declarations(self.entities_dir, self.schema_set)

    @cached_property
    def rules(self) -> list[LabelRule]:
        """Every rule file's rule, validated against its entity's declaration."""
        from labelstore.rules.files import read_rule_file

        return [read_rule_file(path, self.declarations) for path in self.rule_files()]

    @cached_property
    def codec(self) -> AvroCodec:
        from labelstore.schemas.codec import AvroCodec

        return AvroCodec(self.schema_set)

    @property
    def event_types(self) -> EventTypes:
        # The same models the processor and the archive validate with (built once per codec).
        from labelstore.intake import event_types_of

        return event_types_of(self.codec)

    @property
    def entity_types(self) -> list[str]:
        return sorted(self.declarations)

    def rule_files(self) -> list[Path]:
        if not self.rules_dir.is_dir():
            return []
        return sorted(p for p in self.rules_dir.iterdir() if p.suffix in RULE_SUFFIXES and p.is_file())

    def initial_rules(self) -> list[LabelRule]:
        """Each label's first version: what runs until an activation says otherwise."""
        by_label: dict[str, list[LabelRule]] = defaultdict(list)
        for rule in self.rules:
            by_label[rule.name].append(rule)
        return [min(versions, key=lambda rule: rule.version) for _, versions in sorted(by_label.items())]


@functools.lru_cache(maxsize=8)
def _open(root: Path) -> Repository:
    return Repository(root)


def current(explicit: str | Path | None = None) -> Repository:
    """The repository commands and library calls use when none is passed (loaded once per root)."""
    return _open(require_root(explicit))


DEMO_FILE = "demo.py"


def load_demo(repository: Repository) -> ModuleType:
    """The repository's demo hooks (``demo.py``: ``demo_events``, ``demo_stories``, ``DEMO_LABEL``)."""
    path = repository.root / DEMO_FILE
    if not path.is_file():
        raise ConfigurationError(f"{repository.root} has no {DEMO_FILE}: `labelstore demo` needs one "
                                 "(see the fraud example: `labelstore init DIR --example fraud`)")
    spec = importlib.util.spec_from_file_location(f"labelstore_demo_{repository.project}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [name for name in ("demo_events", "demo_stories", "DEMO_LABEL") if not hasattr(module, name)]
    if missing:
        raise ConfigurationError(f"{path}: defines no {', '.join(missing)}")
    return module


class RepositoryWatch:
    """Notices that a repository changed on disk (``apply`` released a schema, a declaration was
    edited) and loads it again, so a running worker reads a new event type or field instead of
    dead-lettering it. Asked only when a record does not decode or fold: a few ``stat`` calls."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self._signature = self._sign()

    def refreshed(self) -> Repository | None:
        """The repository loaded again if it changed since the last look, else None."""
        signature = self._sign()
        if signature == self._signature:
            return None
        self._signature = signature
        self.repository = Repository(self.repository.root)
        return self.repository

    def _sign(self) -> tuple:
        folders = (self.repository.history_dir, self.repository.schemas_dir, self.repository.entities_dir)
        stamps = []
        for folder in folders:
            try:
                stamps += sorted((entry.name, entry.stat().st_mtime_ns) for entry in os.scandir(folder))
            except FileNotFoundError:
                stamps.append((str(folder), None))
        return tuple(stamps)
