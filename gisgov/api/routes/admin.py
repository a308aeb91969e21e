"""Administration: the audit log page ``/admin/audit`` 审计日志, ``GET /api/audit`` and ``GET /api/users``.

All three need an admin (``read_audit`` / ``manage_users``; other roles get 403). Every read of the
audit log through the API is itself audited (action ``audit_read``, with the filters used), in the
same transaction as the read; an unknown query parameter of ``/api/audit`` answers 422 (a misspelt
filter never widens the result). The page is ``web/admin/index.html`` + ``admin.js`` + ``admin.css``
(no inline script); the action filter's options are filled in on the server.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection

from gisgov.api.deps import DB, client_addr, require
from gisgov.api.pages import LeafletPage
from gisgov.api.params import strict_query
from gisgov.api.schemas.admin import AuditPage, UserRow
from gisgov.errors import InvalidInput
from gisgov.security import accounts
from gisgov.security import audit as audit_log
from gisgov.security.roles import ROLE_LABELS, Perm, Principal, Role

router = APIRouter(tags=["admin 管理"])
PAGE = LeafletPage("admin", "审计日志 audit log")
MAX_PAGE = 500

Result = Literal["ok", "denied", "failed", "error"]


def _action_options() -> str:
    return "\n".join(
        f'<option value="{html.escape(k)}">{html.escape(v)}</option>' for k, v in audit_log.ACTIONS.items()
    )


@router.get(
    "/admin/audit",
    response_class=HTMLResponse,
    summary="审计日志页面 Audit log page (admin): filter by time, actor, action, result",
    responses={200: {"description": "页面 the HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
)
def audit_page(request: Request, p: Principal = Depends(require(Perm.read_audit))) -> HTMLResponse:
    settings = request.app.state.settings
    page = PAGE.render(settings.web_dir, basemap_url=None, basemap_attribution="")
    return HTMLResponse(page.replace("{{action_options}}", _action_options()))


@router.get(
    "/api/audit",
    response_model=AuditPage,
    summary="审计日志 Audit log rows, newest first, filtered and paged (admin; the read is audited)",
    responses={403: {"description": "not an admin"}},
    dependencies=[Depends(strict_query)],
)
def audit_rows(
    request: Request,
    since: datetime | None = Query(None, description="From (ISO 8601, inclusive)."),
    until: datetime | None = Query(None, description="Until (ISO 8601, exclusive)."),
    actor: str | None = Query(None, max_length=80, description="Only this actor (user name or cli:<OS user>)."),
    action: str | None = Query(
        None,
        max_length=40,
        description="Only this action ('' = any): " + ", ".join(audit_log.ACTIONS),
        json_schema_extra={"enum": ["", *audit_log.ACTIONS]},
    ),
    result: Result | None = Query(None, description="Only this result."),
    limit: int = Query(50, ge=1, le=MAX_PAGE),
    offset: int = Query(0, ge=0, le=10_000_000),
    p: Principal = Depends(require(Perm.read_audit)),
    conn: Connection = DB,
) -> dict:
    actor = actor or None
    action = action or None
    if action is not None and action not in audit_log.ACTIONS:
        raise InvalidInput(f"未知动作 unknown action {action!r}; one of: {', '.join(audit_log.ACTIONS)}")
    rows = audit_log.query(
        conn, since=since, until=until, actor=actor, action=action, result=result, limit=limit + 1, offset=offset
    )
    more = len(rows) > limit
    rows = rows[:limit]
    filters = {
        "since": since,
        "until": until,
        "actor": actor,
        "action": action,
        "result": result,
        "limit": limit,
        "offset": offset,
    }
    audit_log.record(
        conn,
        "audit_read",
        actor=p,
        object="audit_log",
        client=client_addr(request),
        detail={"via": "api", "rows": len(rows), **{k: v for k, v in filters.items() if v is not None}},
    )
    items = [r | {"action_label": audit_log.ACTIONS.get(r["action"], r["action"])} for r in rows]
    return {"items": items, "limit": limit, "offset": offset, "next_offset": offset + limit if more else None}


@router.get(
    "/api/users",
    response_model=list[UserRow],
    summary="账号列表 Accounts (admin): role, scope, state; never password hashes",
    responses={403: {"description": "not an admin"}},
)
def users(request: Request, p: Principal = Depends(require(Perm.manage_users)), conn: Connection = DB) -> list[dict]:
    now = datetime.now().astimezone()
    out = []
    for u in accounts.list_users(conn):
        role = Role(u["role"])
        out.append(
            {
                "username": u["username"],
                "display_name": u["display_name"],
                "role": role.value,
                "role_label": ROLE_LABELS[role],
                "scope": u["scope_code"],
                "disabled": u["disabled"],
                "is_demo": u["is_demo"],
                "locked": bool(u["locked_until"] and u["locked_until"] > now),
                "last_login": u["last_login"],
                "created": u["created"],
            }
        )
    audit_log.record(
        conn,
        "user_admin",
        actor=p,
        object="app_user",
        client=client_addr(request),
        detail={"op": "list", "via": "api", "count": len(out)},
    )
    return out


def setup(app: FastAPI) -> None:
    """Serve ``web/admin`` (the page's own JS/CSS) at /static/admin."""
    PAGE.mount(app)
