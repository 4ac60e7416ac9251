"""`labelstore init / plan / apply / codegen`: create, preview, register and type a label repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from labelstore.cli._common import reported_errors
from labelstore.errors import ConfigurationError
from labelstore.settings import Settings

console = Console()
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STYLE = {"add": "[green]+ add", "change": "[yellow]~ change", "keep": "[dim]  keep"}
EMPTY_CONFIG = """\
# A label repository: labelstore reads everything domain-specific from this folder.
# Every setting can be overridden by an environment variable: LABELSTORE_<GROUP>__<NAME>.
project: {project}

kafka:
  # bootstrap_servers: broker-1:9092,broker-2:9092   # unset: the local broker of `labelstore kafka up`
  partitions: 6
  replication_factor: 1

topics:
  prefix: ""
  entity_topics: {{}}         # an entity type's events go to <entity_type>.events unless named here

warehouse:
  path: warehouse           # relative paths are relative to this folder

rules:
  catalog_url: sqlite:///.labelstore/catalog.sqlite
"""
EMPTY_FOLDERS = {
    "schemas": "Event payload schemas: schemas/<entity_type>/<namespace>.<EventType>.avsc, records marked\n"
               '"labelstore.role": "event". schemas/history/ holds the released ones (written by apply).\n',
    "entities": "Fold declarations: entities/<entity_type>.yaml (state fields, per-event operations).\n",
    "rules": "Label rules: rules/<label>.v<N>.sql or .yaml (a SQL expression over the entity's state fields).\n",
}


def examples_dir() -> Path:
    """The example repositories: shipped inside the package, or beside it in a source checkout."""
    return EXAMPLES if EXAMPLES.is_dir() else Path(__file__).resolve().parents[2] / "examples"


def init(
    directory: Path = typer.Argument(..., help="The folder to create (or an empty one to fill)."),
    example: str = typer.Option(None, "--example", help="Start from an example repository: fraud."),
) -> None:
    """Create a label repository: empty, or a copy of an example."""
    from labelstore.repository import CONFIG_FILE

    with reported_errors():
        if (directory / CONFIG_FILE).exists():
            raise ConfigurationError(f"{directory} is a label repository already ({CONFIG_FILE} exists)")
        if directory.exists() and any(directory.iterdir()):
            raise ConfigurationError(f"{directory} exists and is not empty; choose a new folder")
        if example:
            source = examples_dir() / example
            if not (source / CONFIG_FILE).is_file():
                known = sorted(p.name for p in examples_dir().iterdir() if (p / CONFIG_FILE).is_file())
                raise ConfigurationError(f"no example {example!r}; examples: {', '.join(known)}")
            shutil.copytree(source, directory, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".labelstore", "warehouse", "__init__.py"))
        else:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / CONFIG_FILE).write_text(EMPTY_CONFIG.format(project=directory.resolve().name))
            for folder, readme in EMPTY_FOLDERS.items():
                (directory / folder).mkdir()
                (directory / folder / "README").write_text(readme)
            (directory / ".gitignore").write_text(".labelstore/\nwarehouse/\n")
        console.print(f"created the label repository [bold]{directory}[/]"
                      + (f" from the {example} example" if example else "")
                      + f"\nnext: cd {directory} && labelstore plan")


def plan() -> None:
    """Show what `apply` would change: entity and event types, fields, topics, schema releases, rules."""
    with reported_errors():
        settings = Settings()
        result = _print_plan(settings)
        if not result.ok:
            raise typer.Exit(1)


def apply(
    author: str = typer.Option("labelstore apply", "--author", help="Recorded with the new rule versions."),
) -> None:
    """Validate the repository, create missing topics, record released schemas, register new rule versions."""
    from labelstore.plan import apply_plan

    with reported_errors():
        settings = Settings()
        result = _print_plan(settings)
        if not result.ok:
            raise typer.Exit(1)
        done = apply_plan(result, settings, author=author)
        console.print(f"[green]applied[/]: {len(done)} change(s)" if done else "nothing to change")


def codegen(
    output: Path = typer.Option(None, "--output", "-o", help="Default: <repository>/<project>_events.py"),
) -> None:
    """Write typed event classes (pydantic) generated from the repository's schemas, for IDEs."""
    from labelstore.events.codegen import render_module

    with reported_errors():
        repository = Settings().repository
        output = output or repository.root / f"{repository.project.replace('-', '_')}_events.py"
        output.write_text(render_module(repository.schema_set))
        console.print(f"wrote {output} ({len(repository.schema_set.current)} event types)")


def _print_plan(settings: Settings):
    from labelstore.plan import make_plan

    repository = settings.repository
    result = make_plan(repository, settings)
    table = Table("", "kind", "name", "detail", title=f"plan for {repository.project} ({repository.root})")
    for change in result.changes:
        table.add_row(STYLE[change.action], change.kind, change.name, change.detail)
    console.print(table)
    for problem in result.problems:
        console.print(f"[red]refused:[/] {problem}", highlight=False)
    if result.ok:
        console.print(f"{len(result.pending)} change(s) to apply" if result.pending else "up to date")
    return result
