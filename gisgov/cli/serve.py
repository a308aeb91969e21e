"""`gisgov serve` (the web app) and `gisgov assets` (vendor the front-end assets)."""

from __future__ import annotations

import typer
from rich.console import Console

from gisgov.config import get_settings

console = Console()


def prepare() -> str:
    """Database up, schema migrated, front-end assets installed. Returns the database URL."""
    from gisgov.db import migrate
    from gisgov.db.engine import database_url
    from gisgov.maps.assets import ensure_assets

    s = get_settings()
    url = database_url(s, start=True)
    migrate.upgrade(url)
    if ensure_assets(s.web_dir):
        console.print("[green]✓[/] 前端资源已安装 web assets installed (npm ci)")
    return url


def run_server(host: str, port: int) -> None:
    """Serve the app with uvicorn until interrupted (the caller brought the database up)."""
    import uvicorn

    from gisgov.api.app import create_app
    from gisgov.maps.assets import ensure_assets

    s = get_settings()
    ensure_assets(s.web_dir)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown}:{port}"
    console.print(f"[bold green]地图 Map[/]       {base}/map")
    console.print(f"[bold green]驾驶舱 Dashboard[/] {base}/dashboard")
    console.print(f"[bold]接口文档 API docs[/] {base}/docs")
    console.print(f"[bold]健康检查 Health[/]   {base}/health")
    console.print("按 Ctrl+C 停止 press Ctrl+C to stop")
    uvicorn.run(create_app(s), host=host, port=port, log_level="info")


def serve(
    host: str = typer.Option(None, help="Bind address (default GISGOV_HOST = 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default GISGOV_PORT = 8000)."),
) -> None:
    """服务 Serve the web app: database up, schema migrated, assets checked, then the map and API."""
    s = get_settings()
    prepare()
    run_server(host or s.host, port or s.port)


def assets(
    check: bool = typer.Option(False, "--check", help="Only report whether the assets are current (exit 1 if not)."),
) -> None:
    """前端资源 Install the vendored JS/CSS (npm ci from web/package-lock.json); idempotent."""
    from gisgov.maps.assets import assets_current, ensure_assets, missing_assets, node_modules

    web = get_settings().web_dir
    if check:
        ok = assets_current(web)
        console.print("[green]current[/]" if ok else f"[yellow]not current[/] missing: {missing_assets(web)}")
        raise typer.Exit(0 if ok else 1)
    ran = ensure_assets(web)
    console.print(("[green]已安装 installed[/]" if ran else "已是最新 already current") + f": {node_modules(web)}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("assets")(assets)
