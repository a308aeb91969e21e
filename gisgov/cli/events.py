"""`gisgov events list | report | transition | stats`: the event loop from the command line.

Every command acts AS an account (``--as USERNAME``): its role decides which moves are allowed and its
scope which events exist (the commands connect as the app role, so row-level security applies exactly
as in the web app). Reports and transitions are audited with that account as the actor and
``via: cli:<OS user>`` in the detail; refusals too.

Exit codes (:mod:`gisgov.cli.common`): 0 done, 1 refused for the role (403) or conflict: wrong state or
stale version (409), 2 bad input (422), 3 database unavailable, 4 not found (event or account).
"""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Any

import typer

from gisgov.cli import common
from gisgov.cli.common import AS_HELP, acting
from gisgov.errors import GisgovError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from gisgov.security.roles import Principal

app = common.group("事件 Events: report, list, move through the loop 上报→受理→派遣→处置→反馈→办结, statistics.")


def _audit_refusal(
    eng: Engine, action: str, p: Principal, obj: str | None, exc: GisgovError, detail: dict[str, Any]
) -> None:
    from gisgov.cli.users import cli_actor
    from gisgov.security import audit

    if exc.status_code in (403, 404, 409):
        audit.record(
            eng,
            action,
            actor=p,
            object=obj,
            result="denied",
            detail=detail | {"via": cli_actor(), "reason": str(exc)[:300]},
        )


def _print_event(ev: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(ev, ensure_ascii=False, indent=1))
        return
    from rich.markup import escape

    c = common.console()
    c.print(
        f"事件 event #{ev['id']}  [bold]{ev['status_label']}[/] ({ev['status']})  版本 version {ev['version']}",
        highlight=False,
    )
    c.print(
        f"  {escape(ev['category_label'] or '')} · 网格 grid {ev['grid_code'] or '—'} · 社区 community "
        f"{ev['community_code'] or '—'} · 期限 deadline {ev['deadline']}{'  [red]超期 overdue[/]' if ev['overdue'] else ''}",
        highlight=False,
    )
    c.print(f"  {escape(ev['description'])}", highlight=False)
    if ev.get("next"):
        c.print("  下一步 next: " + ", ".join(ev["next"]), highlight=False)
    for h in ev.get("history", []):
        c.print(
            f"  {h['at'][:19]}  {h['actor'] or '—'} ({h['actor_role'] or '—'})  {h['from_status'] or '—'} → "
            f"{h['to_status']}{'  ' + escape(h['note']) if h['note'] else ''}",
            highlight=False,
        )


@app.command("report")
def report_cmd(
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    lon: float = typer.Option(..., help="经度 longitude (WGS84/CGCS2000 degrees)"),
    lat: float = typer.Option(..., help="纬度 latitude"),
    category: str = typer.Option(..., help="类别 category code (shirong, maodun, anquan, minsheng, teshu, sheshi …)"),
    description: str = typer.Option(..., help="描述 description"),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """上报 Report an event at a point (grid, community and street found from the point)."""
    from gisgov.cli.users import cli_actor
    from gisgov.events import store
    from gisgov.security import audit

    with acting(as_user) as (conn, p, eng):
        try:
            ev = store.report(conn, p, lon=lon, lat=lat, category=category, description=description)
        except GisgovError as exc:
            _audit_refusal(eng, "event_report", p, None, exc, {"category": category})
            raise common.error(exc) from exc
        audit.record(
            conn,
            "event_report",
            actor=p,
            object=f"event:{ev['id']}",
            detail={"category": ev["category"], "grid": ev["grid_code"], "via": cli_actor()},
        )
    _print_event(ev, as_json)


@app.command("transition")
def transition_cmd(
    event_id: int = typer.Argument(..., help="事件编号 event id"),
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    to: str = typer.Option(
        ...,
        "--to",
        help="目标状态 target state (accepted, dispatched, handled, feedback, closed, "
        "rejected, escalated_community, escalated_street)",
    ),
    version: int = typer.Option(..., help="版本 the version you last saw (events list/show)"),
    note: str = typer.Option(None, help="说明 note (required to reject or escalate)"),
    department: str = typer.Option(None, help="处置部门 department code (required to dispatch)"),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """流转 Move an event to its next state (role, scope and version checked; audited)."""
    from gisgov.cli.users import cli_actor
    from gisgov.events import store
    from gisgov.security import audit

    obj = f"event:{event_id}"
    with acting(as_user) as (conn, p, eng):
        try:
            ev = store.transition(conn, p, event_id, to, version, note=note, department=department)
        except GisgovError as exc:
            _audit_refusal(eng, "event_transition", p, obj, exc, {"to": to, "version": version})
            raise common.error(exc) from exc
        audit.record(
            conn,
            "event_transition",
            actor=p,
            object=obj,
            detail={"from": ev["from"], "to": ev["status"], "version": ev["version"], "via": cli_actor()},
        )
    _print_event(ev, as_json)


@app.command("show")
def show_cmd(
    event_id: int = typer.Argument(...),
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """查看 One event with its history."""
    from gisgov.events import store

    with acting(as_user) as (conn, p, _):
        try:
            ev = store.get(conn, p, event_id)
        except GisgovError as exc:
            raise common.error(exc) from exc
    _print_event(ev, as_json)


@app.command("list")
def list_cmd(
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    status: list[str] = typer.Option(None, help="状态 state (repeatable)"),
    category: str = typer.Option(None),
    grid: str = typer.Option(None),
    community: str = typer.Option(None),
    overdue: bool = typer.Option(None, "--overdue/--not-overdue", help="只看超期 only overdue (or only not overdue)"),
    date_from: str = typer.Option(None, "--from", help="上报日期起 YYYY-MM-DD"),
    date_to: str = typer.Option(None, "--to", help="上报日期止 YYYY-MM-DD (inclusive)"),
    limit: int = typer.Option(50),
    offset: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """列表 Events in the account's scope, newest first."""
    from rich.table import Table

    from gisgov.errors import InvalidInput
    from gisgov.events import store
    from gisgov.security.roles import Perm

    with acting(as_user) as (conn, p, _):
        try:
            if not p.can(Perm.read_personal):
                from gisgov.errors import Forbidden

                raise Forbidden(
                    f"无权限 not allowed for role {p.role.value} ({p.label}): event lists need "
                    "read_personal; use `gisgov events stats`"
                )
            try:
                d_from = date.fromisoformat(date_from) if date_from else None
                d_to = date.fromisoformat(date_to) if date_to else None
            except ValueError as exc:
                raise InvalidInput(f"日期格式应为 YYYY-MM-DD dates are YYYY-MM-DD: {exc}") from exc
            res = store.list_events(
                conn,
                p,
                status=status or None,
                category=category,
                grid=grid,
                community=community,
                overdue=overdue,
                date_from=d_from,
                date_to=d_to,
                limit=limit,
                offset=offset,
            )
        except GisgovError as exc:
            raise common.error(exc) from exc
    if as_json:
        typer.echo(json.dumps(res, ensure_ascii=False, indent=1))
        return
    t = Table(title=f"事件 events: {res['total']} (showing {len(res['items'])} from {offset})")
    for col in ("#", "状态 state", "类别 category", "网格 grid", "上报 reported", "期限 deadline", "v"):
        t.add_column(col)
    for e in res["items"]:
        t.add_row(
            str(e["id"]),
            e["status_label"] + (" ⚠" if e["overdue"] else ""),
            e["category_label"] or e["category"],
            e["grid_code"] or "—",
            e["reported_at"][:16],
            e["deadline"][:16],
            str(e["version"]),
        )
    common.console().print(t)


@app.command("stats")
def stats_cmd(
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    community: str = typer.Option(None),
    grid: str = typer.Option(None),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """统计 Counts by category, share closed within the grid, median time to close, overdue, monthly trend."""
    from rich.table import Table

    from gisgov.events import stats as ev_stats

    with acting(as_user) as (conn, _p, _):
        s = ev_stats.event_stats(conn, community=community, grid=grid)
    if as_json:
        typer.echo(json.dumps(s, ensure_ascii=False, indent=1))
        return
    c = common.console()
    share = "—" if s["share_closed_in_grid"] is None else f"{s['share_closed_in_grid']:.1%}"
    med = "—" if s["median_hours_to_close"] is None else f"{s['median_hours_to_close']:.1f} h"
    c.print(
        f"事件 events {s['total']} · 未结 open {s['open']} · 超期 overdue {s['overdue']} · 办结 closed {s['closed']} · "
        f"网格内办结 closed within the grid {share} · 办结时长中位数 median time to close {med}",
        highlight=False,
    )
    t = Table(title="按类别 by category")
    t.add_column("类别 category")
    t.add_column("n", justify="right")
    for x in s["by_category"]:
        t.add_row(x["label"] or x["category"], str(x["n"]))
    c.print(t)
    t = Table(title="月度趋势 monthly trend")
    for col in ("月 month", "上报 reported", "办结 closed"):
        t.add_column(col)
    for x in s["trend"]:
        t.add_row(x["month"], str(x["reported"]), str(x["closed"]))
    c.print(t)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="events")
