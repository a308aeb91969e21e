"""The append-only audit log (``audit_log``, migration 0005).

Written for sign-in (success and failure), sign-out, every read of personal data, every export,
import, edit, plan activation and account changes. A successful change writes its row on the same
connection, so the row commits with the change or not at all; refusals, failures and reads write
theirs in a transaction of their own (given an Engine), so a request that fails afterwards still
leaves its trace. Nothing is written twice. The app role may INSERT and SELECT; UPDATE/DELETE/TRUNCATE are refused by grants and
by a trigger.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from gisgov.security.roles import Principal

ACTIONS = {
    "login": "登录 sign-in",
    "logout": "退出 sign-out",
    "token": "令牌 API token",
    "read_personal": "查阅个人信息 read personal data",
    "unmask": "查看完整证件号/电话 unmask",
    "export": "导出 export",
    "import": "导入 import",
    "import_retry": "重试导入 import retried",
    "plan_edit": "网格编辑 grid plan edit",
    "plan_save": "保存方案 save plan",
    "plan_activate": "启用方案 activate plan",
    "plan_delete": "删除草稿 delete draft plan",
    "analysis": "分析 analysis",
    "facility_edit": "设施变更 facility change",
    "user_admin": "账号管理 account change",
    "audit_read": "查阅审计 read audit",
    "event_report": "事件上报 event report",
    "event_photo": "事件照片 event photo",
    "event_transition": "事件流转 event transition",
    "staff_edit": "网格员变更 grid staff change",
    "compound_edit": "小区属性变更 compound attribute change",
}

_INSERT = text(
    "INSERT INTO audit_log (actor, actor_role, action, object, result, client_addr, detail) "
    "VALUES (:actor, :role, :action, :object, :result, :client, CAST(:detail AS jsonb))"
)


def record(
    target: Engine | Connection,
    action: str,
    *,
    actor: Principal | str | None,
    object: str | None = None,
    result: str = "ok",
    client: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit row. With an Engine the row is committed in its own transaction."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    who: str | None
    role: str | None
    if isinstance(actor, Principal):
        who, role = actor.username, actor.role.value
    else:
        who, role = actor, None
    params = dict(
        actor=who,
        role=role,
        action=action,
        object=object,
        result=result,
        client=client,
        detail=json.dumps(detail, ensure_ascii=False, default=str) if detail else None,
    )
    if isinstance(target, Connection):
        target.execute(_INSERT, params)
    else:
        with target.begin() as conn:
            conn.execute(_INSERT, params)


def query(
    conn: Connection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    result: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Audit rows, newest first, filtered."""
    rows = (
        conn.execute(
            text(
                "SELECT id, at, actor, actor_role, action, object, result, client_addr, detail FROM audit_log "
                "WHERE (CAST(:since AS timestamptz) IS NULL OR at >= :since) "
                "AND (CAST(:until AS timestamptz) IS NULL OR at < :until) "
                "AND (CAST(:actor AS text) IS NULL OR actor = :actor) "
                "AND (CAST(:action AS text) IS NULL OR action = :action) "
                "AND (CAST(:result AS text) IS NULL OR result = :result) "
                "ORDER BY at DESC, id DESC LIMIT :limit OFFSET :offset"
            ),
            dict(since=since, until=until, actor=actor, action=action, result=result, limit=limit, offset=offset),
        )
        .mappings()
        .all()
    )
    return [dict(r) | {"at": r["at"].isoformat()} for r in rows]
