"""`gisgov audit`: query the append-only audit log (newest first), as a table or JSON.

Reading the log is itself audited (action ``audit_read``, actor ``cli:<OS user>``), after the query,
so the row does not appear in its own result.
"""

from __future__ import annotations

import json
from datetime import datetime

import typer

from gisgov.cli.common import EXIT_USAGE, console, fail
from gisgov.cli.users import cli_actor, owner_transaction

RESULTS = ("ok", "denied", "failed", "error")


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date or date-time; without a zone it is the machine's local time."""
    if value is None or value == "":
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise fail(
            f"{option} 时间格式无效 invalid time {value!r}: use ISO 8601, e.g. 2024-05-01 or 2024-05-01T08:30+08:00",
            EXIT_USAGE,
        ) from None
    return t if t.tzinfo else t.astimezone()


def audit(
    since: str = typer.Option(
        None, "--since", help="起始时间 From (ISO 8601, inclusive), e.g. 2024-05-01T08:00+08:00."
    ),
    until: str = typer.Option(None, "--until", help="截止时间 Until (ISO 8601, exclusive)."),
    actor: str = typer.Option(None, "--actor", help="操作人 Only this actor (user name, or cli:<OS user>)."),
    action: str = typer.Option(
        None,
        "--action",
        help="动作 Only this action, e.g. login, export, import, plan_activate, user_admin (an unknown one lists all).",
    ),
    result: str = typer.Option(None, "--result", help="结果 Only this result: " + ", ".join(RESULTS)),
    limit: int = typer.Option(50, "--limit", min=1, max=10000, help="最多条数 At most this many rows (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="输出 JSON (one array) instead of a table."),
) -> None:
    """审计日志 Query the audit log: who did what, when, to which object, with what result."""
    from gisgov.security import audit as audit_log

    t0, t1 = parse_time(since, "--since"), parse_time(until, "--until")
    if action is not None and action not in audit_log.ACTIONS:
        raise fail(f"未知动作 unknown action {action!r}; one of: {', '.join(audit_log.ACTIONS)}", EXIT_USAGE)
    if result is not None and result not in RESULTS:
        raise fail(f"未知结果 unknown result {result!r}; one of: {', '.join(RESULTS)}", EXIT_USAGE)
    filters = {"since": since, "until": until, "actor": actor, "action": action, "result": result, "limit": limit}
    with owner_transaction() as conn:
        rows = audit_log.query(conn, since=t0, until=t1, actor=actor, action=action, result=result, limit=limit)
        audit_log.record(
            conn,
            "audit_read",
            actor=cli_actor(),
            object="audit_log",
            detail={"via": "cli", "rows": len(rows), **{k: v for k, v in filters.items() if v is not None}},
        )
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, default=str, indent=1))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"审计日志 Audit log ({len(rows)}, 最新在前 newest first)")
    table.add_column("时间 time", no_wrap=True)
    table.add_column("操作人 actor", overflow="fold")
    table.add_column("动作 action", overflow="fold")
    table.add_column("对象 object", overflow="fold")
    table.add_column("结果 result", overflow="fold")
    table.add_column("地址 client", overflow="fold")
    table.add_column("详情 detail", overflow="fold", ratio=2)
    style = {"ok": "green", "denied": "red", "failed": "yellow", "error": "red"}
    for r in rows:
        at = datetime.fromisoformat(r["at"]).astimezone()
        table.add_row(
            at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(r["actor"] or "—") + (f"\n[dim]{escape(r['actor_role'])}[/]" if r["actor_role"] else ""),
            f"{r['action']}\n[dim]{audit_log.ACTIONS.get(r['action'], '').split(' ')[0]}[/]",
            escape(r["object"] or ""),
            f"[{style.get(r['result'], 'white')}]{r['result']}[/]",
            escape(r["client_addr"] or ""),
            escape(json.dumps(r["detail"], ensure_ascii=False)) if r["detail"] else "",
        )
    console().print(table)


def register(root: typer.Typer) -> None:
    root.command("audit")(audit)
