"""`gisgov serve` (the web app) and `gisgov assets` (vendor the front-end assets)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import typer

from gisgov.cli import common

if TYPE_CHECKING:
    from gisgov.config import Settings

console = common.LazyConsole()


def prepare() -> str:
    """Database up, schema migrated, front-end assets installed. Returns the database URL."""
    from gisgov.config import get_settings
    from gisgov.db import migrate
    from gisgov.maps.assets import ensure_assets

    s = get_settings()
    url = common.database_url(migrated=False)  # one line, no traceback, if the server cannot start
    migrate.upgrade(url)
    if ensure_assets(s.web_dir):
        console.print("[green]✓[/] 前端资源已安装 web assets installed (npm ci)")
    return url


# Idle keep-alive connections are kept this long (uvicorn's default is 5 s): a client reusing a connection
# the server has just closed gets a read error, which under load happened at the 5 s boundary.
KEEP_ALIVE_S = 30


def run_server(host: str, port: int, settings: Settings | None = None, workers: int | None = None) -> None:
    """Serve the app with uvicorn until interrupted (the caller brought the database up and migrated it).

    ``workers`` > 1 (default ``GISGOV_WORKERS``) runs that many worker processes sharing the port, each
    with its own pool (:mod:`gisgov.api.asgi`); they read their settings from the ``GISGOV_*``
    environment, so host, port and demo mode are handed to them there."""
    import uvicorn

    from gisgov.api.app import create_app
    from gisgov.config import get_settings
    from gisgov.maps.assets import ensure_assets

    s = settings or get_settings()
    # the port and host served are the ones the same-site check and printed links must use
    s = s.model_copy(update={"host": host, "port": port})
    workers = workers or s.workers
    ensure_assets(s.web_dir)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown}:{port}"
    console.print(f"[bold green]登录 Sign in[/]     {base}/login   (先登录 sign in first; every page needs an account)")
    console.print(f"[bold green]地图 Map[/]       {base}/map")
    console.print(f"[bold green]驾驶舱 Dashboard[/] {base}/dashboard")
    console.print(f"[bold]审计 Audit (admin)[/] {base}/admin/audit")
    console.print(f"[bold]接口文档 API docs[/] {base}/docs")
    console.print(f"[bold]健康检查 Health[/]   {base}/health")
    console.print("按 Ctrl+C 停止 press Ctrl+C to stop")
    if workers <= 1:
        uvicorn.run(create_app(s), host=host, port=port, log_level="info", timeout_keep_alive=KEEP_ALIVE_S)
        return
    import os

    from gisgov.db.approle import app_database_url

    app_database_url(s)  # the app role's login, granted once here rather than by N workers at once
    os.environ.update(
        {
            "GISGOV_HOST": host,
            "GISGOV_PORT": str(port),
            "GISGOV_DEMO": "true" if s.demo else "false",
            "GISGOV_WORKERS": str(workers),
            "GISGOV_HOME": str(s.home_abs),
        }
    )
    per = s.pool_size + s.pool_overflow
    console.print(f"工作进程 workers: {workers} (每个最多 up to {per} + 6 database connections each)")
    from uvicorn.supervisors import Multiprocess

    from gisgov.api.listener import NoDelayConfig

    config = NoDelayConfig(
        "gisgov.api.asgi:create",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl+C stops the workers and returns
        Multiprocess(config, sockets=[config.bind_socket()]).run()


def account_problems(url: str) -> list[str]:
    """Why the (non-demo) server must not start with the accounts in the database at ``url``:
    enabled demo accounts (public passwords) or no enabled admin. Empty when it may start."""
    from sqlalchemy import pool, text

    from gisgov.db.engine import make_engine
    from gisgov.security.accounts import demo_accounts_enabled

    eng = make_engine(url, poolclass=pool.NullPool)
    try:
        with eng.connect() as conn:
            demo = demo_accounts_enabled(conn)
            admins = conn.execute(
                text("SELECT count(*) FROM app_user WHERE role = 'admin' AND NOT disabled AND NOT is_demo")
            ).scalar_one()
    finally:
        eng.dispose()
    problems = []
    if demo:
        problems.append(
            f"存在启用的演示账号（密码公开）enabled demo accounts with public passwords exist: {', '.join(demo)}. "
            "Change their passwords with `gisgov user passwd USERNAME` or disable them with "
            "`gisgov user disable USERNAME` (or run the demo with `gisgov demo`)."
        )
    if not admins:
        problems.append(
            "没有启用的管理员账号 no enabled admin account: create one with "
            "`gisgov user add USERNAME --role admin` (then sign in at /login)."
        )
    return problems


WORKERS_OPT = typer.Option(
    None,
    "--workers",
    "-w",
    min=1,
    max=64,
    help="Worker processes (default GISGOV_WORKERS = 1); each has its own connection pool.",
)


def serve(
    host: str = typer.Option(None, help="Bind address (default GISGOV_HOST = 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default GISGOV_PORT = 8000)."),
    workers: int = WORKERS_OPT,
) -> None:
    """服务 Serve the web app: database up, schema migrated, assets checked, then the map and API.
    Refuses to start while demo accounts are enabled or no admin account exists (exit 1)."""
    from gisgov.config import get_settings

    s = get_settings()
    url = prepare()
    problems = account_problems(url)
    if problems:
        for p in problems:
            console.print(f"[red]拒绝启动 refusing to serve:[/] {p}", highlight=False)
        raise typer.Exit(common.EXIT_REJECTED)
    run_server(host or s.host, port or s.port, s.model_copy(update={"demo": False}), workers=workers)


def assets(
    check: bool = typer.Option(False, "--check", help="Only report whether the assets are current (exit 1 if not)."),
) -> None:
    """前端资源 Install the vendored JS/CSS (npm ci from web/package-lock.json); idempotent."""
    from gisgov.config import get_settings
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
