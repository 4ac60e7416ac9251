"""`labelstore ui`: the label explorer in the browser, served by this process (read-only)."""

from __future__ import annotations

import webbrowser

import typer
from rich.console import Console

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

console = Console()


def ui(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on. The explorer has no login: keep it on "
                             "the loopback address unless something in front of it checks who asks."),
    port: int = typer.Option(6070, min=1, max=65535, help="Port to listen on."),
    open_browser: bool = typer.Option(False, "--open/--no-open", help="Open the explorer in a browser."),
) -> None:
    """Explore entities, label versions, rule diffs, label drift and the pipeline's lag in a browser."""
    from labelstore.ui.app import serve

    def ready(address: str) -> None:
        console.print(f"label explorer on [bold]{address}[/] (warehouse {settings.warehouse.path}); Ctrl-C stops it",
                      highlight=False)
        if open_browser:
            webbrowser.open(address)

    with reported_errors():
        settings = Settings()
        settings.repository  # noqa: B018  (no repository: say so now, not at the first request)
        try:
            serve(settings, host=host, port=port, ready=ready)
        except OSError as exc:
            raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                                     param_hint="--host/--port") from None
