"""`gisgov demo`: the main job. Database up, schema migrated, sample city loaded (once),
analyses computed, demo accounts (one per role, created once, public passwords) printed, web app
served in demo mode with its sign-in URL printed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from gisgov.cli import common
from gisgov.security.roles import ROLE_LABELS, Role

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Connection

console = common.LazyConsole()


def _dataset(url: str) -> dict[str, Any] | None:
    from sqlalchemy import text

    from gisgov.db.engine import make_engine

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
    workers: int = typer.Option(
        None, "--workers", "-w", min=1, max=64, help="Worker processes (default GISGOV_WORKERS = 1)."
    ),
) -> None:
    """演示 Set up the database, load the synthetic sample city, compute analyses and serve the map."""
    from gisgov.config import get_settings
    from gisgov.db import migrate

    s = get_settings()
    console.rule("[bold]gisgov 基层网格化治理[/]")
    url = common.database_url(migrated=False)  # one line, no traceback, if the server cannot start
    console.print("[green]✓[/] 数据库 database up")
    migrate.upgrade(url)
    console.print(f"[green]✓[/] 数据库结构 schema at {migrate.current(url)}")

    ds = _dataset(url)
    if ds is None or reload_sample:
        from gisgov.sample.service import build_and_load

        build_and_load(url, replace=True, console=console.get())
        ds = _dataset(url)
    else:
        console.print(f"[green]✓[/] 已加载 dataset present: {ds.get('name')} (synthetic={ds.get('synthetic')})")

    for step in _analysis_steps():
        step(url, console.get())

    accounts = ensure_demo_accounts(url)
    print_demo_accounts(accounts)

    if serve:
        from gisgov.cli.serve import run_server

        run_server(host or s.host, port or s.port, s.model_copy(update={"demo": True}), workers=workers)


# One account per role, bound to nodes of the sample city. The passwords are PUBLIC (printed and
# documented): `gisgov serve` refuses to start while any of these accounts is enabled.
DEMO_ACCOUNTS: tuple[tuple[str, Role, str, str, str], ...] = (
    # username, role, node ('city' | 'street' | 'community' | 'grid'), password, display name
    ("demo_admin", Role.admin, "city", "Demo-admin-2024", "演示管理员"),
    ("demo_leader", Role.street_leader, "street", "Demo-leader-2024", "演示街道领导"),
    ("demo_planner", Role.planner, "street", "Demo-planner-2024", "演示规划人员"),
    ("demo_staff", Role.community_staff, "community", "Demo-staff-2024", "演示社区工作者"),
    ("demo_grid", Role.grid_worker, "grid", "Demo-grid-2024", "演示网格员"),
    ("demo_viewer", Role.viewer, "street", "Demo-viewer-2024", "演示只读"),
)


@dataclass
class DemoAccount:
    username: str
    password: str | None  # None once changed with `gisgov user passwd` (no longer a demo account)
    role: Role
    scope_code: str
    scope_name: str
    disabled: bool


def demo_nodes(conn: Connection) -> dict[str, tuple[str, str] | None]:
    """(code, name) of the nodes the demo accounts are bound to: the first street, its first community
    that has an active grid plan (else its first community), and the first grid of that plan."""
    from sqlalchemy import text

    street = conn.execute(text("SELECT code, name FROM street ORDER BY code LIMIT 1")).first()
    nodes: dict[str, tuple[str, str] | None] = {
        "city": ("", "全市 whole city"),
        "street": None,
        "community": None,
        "grid": None,
    }
    if street is None:
        return nodes
    nodes["street"] = (street.code, street.name)
    community = conn.execute(
        text(
            "SELECT c.code, c.name FROM community c WHERE c.street_code = :s "
            "ORDER BY EXISTS (SELECT 1 FROM grid_plan p WHERE p.community_code = c.code AND p.status = 'active') DESC, "
            "c.code LIMIT 1"
        ),
        {"s": street.code},
    ).first()
    if community is None:
        return nodes
    nodes["community"] = (community.code, community.name)
    grid = conn.execute(
        text(
            "SELECT g.code, coalesce(g.name, g.code) AS name FROM grid g JOIN grid_plan p ON p.id = g.plan_id "
            "WHERE p.community_code = :c AND p.status = 'active' ORDER BY g.code LIMIT 1"
        ),
        {"c": community.code},
    ).first()
    if grid is not None:
        nodes["grid"] = (grid.code, grid.name)
    return nodes


def ensure_demo_accounts(url: str) -> list[DemoAccount]:
    """Create the demo accounts that do not exist yet (once: existing ones are left as they are, even
    if disabled or re-passworded). Returns every demo account present, with its password while it is
    still a demo account."""
    from sqlalchemy import pool, text

    from gisgov.cli.users import cli_actor, scope_names
    from gisgov.db.engine import make_engine
    from gisgov.security import accounts as acc
    from gisgov.security import audit

    eng = make_engine(url, poolclass=pool.NullPool)
    made = []
    try:
        with eng.begin() as conn:
            nodes = demo_nodes(conn)
            existing = {
                r.username: r
                for r in conn.execute(
                    text("SELECT username, role, scope_code, is_demo, disabled FROM app_user WHERE username = ANY(:u)"),
                    {"u": [a[0] for a in DEMO_ACCOUNTS]},
                )
            }
            out = []
            for username, role, node, password, display in DEMO_ACCOUNTS:
                row = existing.get(username)
                if row is None:
                    where = nodes.get(node)
                    if where is None:
                        console.print(f"[yellow]未建演示账号 demo account {username} skipped: no {node} in the data[/]")
                        continue
                    acc.add_user(conn, username, password, role, where[0], display_name=display, is_demo=True)
                    made.append(username)
                    row_role, code, is_demo, disabled = role, where[0], True, False
                else:
                    row_role, code, is_demo, disabled = Role(row.role), row.scope_code, row.is_demo, row.disabled
                out.append(DemoAccount(username, password if is_demo else None, row_role, code, "", disabled))
            if made:
                audit.record(
                    conn,
                    "user_admin",
                    actor=cli_actor(),
                    object="app_user",
                    detail={"op": "demo_accounts", "created": made},
                )
            names = scope_names(conn, [a.scope_code for a in out])
            for a in out:
                a.scope_name = names.get(a.scope_code, a.scope_code)
    finally:
        eng.dispose()
    if made:
        console.print(f"[green]✓[/] 演示账号已创建 demo accounts created: {', '.join(made)}")
    return out


def print_demo_accounts(demo_accounts: list[DemoAccount]) -> None:
    from rich.table import Table

    table = Table(title="演示账号 Demo accounts (密码公开，仅供演示 public passwords, demo only)")
    table.add_column("用户 user", no_wrap=True)
    table.add_column("密码 password", no_wrap=True)
    table.add_column("角色 role")
    table.add_column("范围 scope")
    for a in demo_accounts:
        if a.disabled:
            pw = "[dim]已停用 disabled[/]"
        elif a.password is None:
            pw = "[dim]已改密码 changed[/]"
        else:
            pw = a.password
        scope = f"{a.scope_name} {a.scope_code}".strip() if a.scope_code else a.scope_name
        table.add_row(a.username, pw, f"{ROLE_LABELS[a.role]} {a.role.value}", scope)
    console.print(table)
    console.print(
        "[yellow]演示账号密码公开：正式使用前请用 `gisgov user passwd` 修改或 `gisgov user disable` 停用，"
        "并用 `gisgov user add USERNAME --role admin` 建立自己的管理员。[/]\n"
        "[yellow]Demo passwords are public: before real use change them (`gisgov user passwd`) or disable them "
        "(`gisgov user disable`), and add your own admin (`gisgov user add USERNAME --role admin`).[/]",
        highlight=False,
    )


def _analysis_steps() -> list[Callable[[str, Console], object]]:
    """Analyses the demo computes, each ``demo_step(url, console)`` in a capability's service module.
    Grids first, so coverage figures are also computed per grid; events and staff/compound samples need grids."""
    from gisgov.plugins import optional_modules

    names = ("gisgov.cli.grid_demo", "gisgov.coverage.service", "gisgov.sample.events", "gisgov.sample.governance")
    return [m.demo_step for m in optional_modules(names) if hasattr(m, "demo_step")]


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
