"""`gisgov demo`: the main job. Database up, schema migrated, sample city loaded (once),
analyses computed, web app served with its URL printed."""

from __future__ import annotations

import typer
from rich.console import Console
from sqlalchemy import text

from gisgov.config import get_settings
from gisgov.db import migrate
from gisgov.db.engine import database_url, make_engine
from gisgov.plugins import optional_modules

console = Console()


def _dataset(url: str) -> dict | None:
    eng = make_engine(url)
    try:
        with eng.connect() as c:
            return c.execute(text("SELECT value FROM gisgov_meta WHERE key = 'dataset'")).scalar()
    finally:
        eng.dispose()


def demo(
    host: str = typer.Option(None, help="Bind address (default GISGOV_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default GISGOV_PORT, 8000)."),
    reload_sample: bool = typer.Option(False, "--reload-sample", help="Regenerate and reload the sample city."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the web app at the end."),
) -> None:
    """演示 Set up the database, load the synthetic sample city, compute analyses and serve the map."""
    s = get_settings()
    console.rule("[bold]gisgov 基层网格化治理[/]")
    url = database_url(s, start=True)
    console.print("[green]✓[/] 数据库 database up")
    migrate.upgrade(url)
    console.print(f"[green]✓[/] 数据库结构 schema at {migrate.current(url)}")

    ds = _dataset(url)
    if ds is None or reload_sample:
        from gisgov.sample.service import build_and_load

        build_and_load(url, replace=True, console=console)
        ds = _dataset(url)
    else:
        console.print(f"[green]✓[/] 已加载 dataset present: {ds.get('name')} (synthetic={ds.get('synthetic')})")

    for step in _analysis_steps():
        step(url, console)

    if serve:
        from gisgov.cli.serve import run_server

        run_server(host or s.host, port or s.port)


def _analysis_steps():
    """Analyses the demo computes, each ``demo_step(url, console)`` in a capability's service module.
    Grids first, so coverage figures are also computed per grid."""
    names = ("gisgov.gridding.service", "gisgov.coverage.service")
    return [m.demo_step for m in optional_modules(names) if hasattr(m, "demo_step")]


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
