"""What every command shares: labelstore errors end as one red line and exit code 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from labelstore.errors import LabelstoreError

error_console = Console(stderr=True)


@contextmanager
def reported_errors() -> Iterator[None]:
    try:
        yield
    except LabelstoreError as exc:
        error_console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
