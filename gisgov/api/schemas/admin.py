"""Answers of the administration API (``/api/audit``, ``/api/users``).

These models are closed (members not declared are dropped): an account row never carries a password
hash, an audit row only what the log shows.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class AuditRow(BaseModel):
    """审计日志一行 one audit log row."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 981,
                    "at": "2026-05-01T09:30:00+08:00",
                    "actor": "admin",
                    "actor_role": "admin",
                    "action": "plan_activate",
                    "action_label": "启用方案 activate a plan",
                    "object": "110101001001/v4",
                    "result": "ok",
                    "client_addr": "10.0.0.8",
                    "detail": {"force": False, "rebase": False},
                }
            ]
        }
    )

    id: int = Field(description="编号 row id")
    at: str = Field(description="时间 when (ISO 8601)")
    actor: str | None = Field(description="操作者 account, or cli:<OS user>")
    actor_role: str | None = Field(description="角色 the actor's role")
    action: str = Field(description="动作 action code")
    action_label: str = Field(description="动作名称 action label")
    object: str | None = Field(description="对象 object acted on")
    result: str = Field(description="结果 ok / denied / failed / error")
    client_addr: str | None = Field(description="来源地址 client address")
    detail: dict | list | None = Field(description="详情 details (never personal data in clear)")  # type: ignore[type-arg]


class AuditPage(BaseModel):
    """审计日志一页 one page of the audit log, newest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [], "limit": 50, "offset": 0, "next_offset": None}]}
    )

    items: list[AuditRow] = Field(description="日志行 the rows")
    limit: int = Field(description="每页条数 page size")
    offset: int = Field(description="起始位置 offset")
    next_offset: int | None = Field(description="下一页起始 offset of the next page, null on the last")


class UserRow(BaseModel):
    """账号 one account: role, scope and state (never a password hash)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "username": "worker1",
                    "display_name": "网格员 王*",
                    "role": "grid_worker",
                    "role_label": "网格员 grid worker",
                    "scope": "110101001001001",
                    "disabled": False,
                    "is_demo": False,
                    "locked": False,
                    "last_login": "2026-05-01T09:30:00+08:00",
                    "created": "2026-04-01T08:00:00+08:00",
                }
            ]
        }
    )

    username: str = Field(description="账号 user name")
    display_name: str = Field(description="显示名 display name")
    role: str = Field(description="角色 role code")
    role_label: str = Field(description="角色名称 role label")
    scope: str = Field(description="管辖范围 area code the account sees")
    disabled: bool = Field(description="已停用 disabled")
    is_demo: bool = Field(description="演示账号 demo account")
    locked: bool = Field(description="已锁定 locked after failed sign-ins")
    last_login: datetime | None = Field(description="最近登录 last sign-in")
    created: datetime = Field(description="创建时间 created")
