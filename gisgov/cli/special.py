"""`gisgov special needs | beyond | summary | overdue | visit`: special-group services from the command line.

Every command acts AS an account (``--as USERNAME``, like `gisgov events`): its role decides what it
may see (named lists need read_personal + read_special_groups; the summary is suppressed for
aggregate-only roles) and its scope which residents exist (row-level security). Named lists are
audited ``read_personal``, visits ``event_report``, with ``via: cli:<OS user>``.

The coverage catalog is the service-circle catalog (``GISGOV_LAYERS_DIR``); distances come from the
coverage engine's walking graph, built in this process.

Exit codes (:mod:`gisgov.cli.common`): 0 done, 1 refused for the role or conflict, 2 bad input,
3 database unavailable, 4 not found.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from gisgov.cli import common
from gisgov.cli.common import AS_HELP, acting
from gisgov.cli.events import _audit_refusal
from gisgov.errors import GisgovError

if TYPE_CHECKING:
    from gisgov.coverage.service import CoverageService

app = common.group("特殊人群服务 Special-group services: beyond the circle of the needed service, 走访 visits.")


def _svc() -> CoverageService:
    from gisgov.coverage.service import default_service

    return default_service()


def _echo(obj: object) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=1, default=str))


@app.command("needs")
def needs_cmd(as_user: str = typer.Option(..., "--as", help=AS_HELP)) -> None:
    """需求配置 The configured needs, circle, profile, budget and visit rules (JSON)."""
    from gisgov.services import store

    with acting(as_user) as (conn, _p, _):
        try:
            svc = _svc()
            _echo(store.config_for(conn, svc).public(svc.catalog()))
        except GisgovError as exc:
            raise common.error(exc) from exc


@app.command("beyond")
def beyond_cmd(
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    code: str = typer.Option(None, help="街道/社区/网格编码 area inside the account's own"),
    group: str = typer.Option(None, help="人群 group code (dujulaoren, canji, kunjingertong, …)"),
    limit: int = typer.Option(500),
    offset: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """服务圈外 Members living beyond the circle of the service they need most (masked names; audited)."""
    from rich.table import Table

    from gisgov.cli.users import cli_actor
    from gisgov.security import audit
    from gisgov.services import store

    with acting(as_user) as (conn, p, eng):
        try:
            out = store.beyond_list(conn, _svc(), p, code=code, group=group, limit=limit, offset=offset)
        except GisgovError as exc:
            _audit_refusal(eng, "read_personal", p, "special_beyond", exc, {"code": code})
            raise common.error(exc) from exc
        audit.record(
            conn,
            "read_personal",
            actor=p,
            object=f"special_beyond:{out['area'] or 'all'}",
            detail={"count": len(out["items"]), "via": cli_actor()},
        )
    if as_json:
        _echo(out)
        return
    t = Table(
        title=f"服务圈外 beyond {out['circle']} ({out['profile']}, {out['budget_m']:.0f} m): {out['total']} "
        f"of {out['members']} members"
    )
    for col in ("人群 group", "姓名 name", "楼栋 building", "门牌 door", "网格 grid", "距离 m", "最近 nearest"):
        t.add_column(col)
    for r in out["items"]:
        t.add_row(
            r["group"],
            r["name"] or "",
            r["building"],
            r["door_no"] or "",
            r["grid"] or "—",
            "—" if r["distance_m"] is None else f"{r['distance_m']:.0f}",
            (r["nearest"] or {}).get("name") or "—",
        )
    common.console().print(t)


@app.command("summary")
def summary_cmd(
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """汇总 Per community and grid: members, beyond the circle, overdue visits (suppressed for aggregate roles)."""
    from rich.table import Table

    from gisgov.config import Settings
    from gisgov.services import store

    with acting(as_user) as (conn, p, _):
        try:
            out = store.summary(conn, _svc(), p, k=Settings().small_cell_k)
        except GisgovError as exc:
            raise common.error(exc) from exc
    if as_json:
        _echo(out)
        return
    t = Table(title=f"特殊人群服务 special-group services ({out['circle']}, {out['profile']}, {out['budget_m']:.0f} m)")
    for col in ("单元 unit", "人群 group", "人数 members", "圈外 beyond", "走访超期 overdue"):
        t.add_column(col)
    for u in out["units"]:
        for g in u["groups"]:
            t.add_row(
                f"{u['level']} {u['code']}",
                g["group_name"],
                str(g["members"]),
                "—" if g["beyond"] is None else str(g["beyond"]),
                "—" if g["overdue"] is None else str(g["overdue"]),
            )
    common.console().print(t)


@app.command("overdue")
def overdue_cmd(
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    code: str = typer.Option(None, help="街道/社区/网格编码 area inside the account's own"),
    group: str = typer.Option(None, help="人群 group code with a visit rule"),
    limit: int = typer.Option(500),
    offset: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """走访超期 Members overdue for a visit (never visited first; masked names; audited)."""
    from rich.table import Table

    from gisgov.cli.users import cli_actor
    from gisgov.security import audit
    from gisgov.services import store

    with acting(as_user) as (conn, p, eng):
        try:
            out = store.overdue_list(
                conn, p, store.config_for(conn, _svc()), code=code, group=group, limit=limit, offset=offset
            )
        except GisgovError as exc:
            _audit_refusal(eng, "read_personal", p, "special_overdue", exc, {"code": code})
            raise common.error(exc) from exc
        audit.record(
            conn,
            "read_personal",
            actor=p,
            object=f"special_overdue:{out['area'] or 'all'}",
            detail={"count": len(out["items"]), "via": cli_actor()},
        )
    if as_json:
        _echo(out)
        return
    t = Table(title=f"走访超期 overdue visits: {out['total']}")
    for col in ("#", "姓名 name", "楼栋 building", "门牌 door", "规则 rule", "上次 last visit", "超期天数 days over"):
        t.add_column(col)
    for r in out["items"]:
        t.add_row(
            str(r["resident_id"]),
            r["name"] or "",
            r["building"],
            r["door_no"] or "",
            f"{r['rule_group']} {r['interval_days']} d",
            (r["last_visit"] or "从未 never")[:10],
            "—" if r["days_overdue"] is None else str(r["days_overdue"]),
        )
    common.console().print(t)


@app.command("visit")
def visit_cmd(
    resident_id: int = typer.Argument(..., help="居民编号 resident id (from the lists)"),
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    note: str = typer.Option(None, help="走访说明 note (no names or numbers)"),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """登记走访 Record a visit: a 特殊人群走访 event at the resident's building (audited event_report)."""
    from gisgov.cli.users import cli_actor
    from gisgov.security import audit
    from gisgov.services import store

    with acting(as_user) as (conn, p, eng):
        try:
            cfg = store.config_for(conn, _svc())
            out = store.record_visit(conn, p, resident_id, cfg, note=note)
        except GisgovError as exc:
            _audit_refusal(eng, "event_report", p, f"resident:{resident_id}", exc, {"visit": resident_id})
            raise common.error(exc) from exc
        audit.record(
            conn,
            "event_report",
            actor=p,
            object=f"event:{out['event_id']}",
            detail={"visit": resident_id, "category": cfg.visit_category, "via": cli_actor()},
        )
    if as_json:
        _echo(out)
        return
    common.console().print(
        f"已登记走访 visit recorded: event #{out['event_id']} · resident {out['resident_id']} · "
        f"{out['visited_at'][:16]}",
        highlight=False,
    )


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="special")
