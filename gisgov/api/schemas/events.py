"""Answers of the events 事件 API (``/api/events…``) and of event photos."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gisgov.api.schemas.answer import Answer, examples
from gisgov.api.schemas.geojson import FeatureCollection

_EVENT: dict[str, Any] = {
    "id": 42,
    "lon": 116.3975,
    "lat": 39.9087,
    "category": "environment",
    "category_label": "环境卫生 environment",
    "description": "垃圾堆放 rubbish left by the gate",
    "status": "reported",
    "status_label": "已上报 reported",
    "department": None,
    "department_label": None,
    "escalated_to": None,
    "grid_code": "110101001001001",
    "community_code": "110101001001",
    "street_code": "110101001",
    "reported_at": "2026-05-01T09:30:00+08:00",
    "deadline": "2026-05-02T09:30:00+08:00",
    "updated_at": "2026-05-01T09:30:00+08:00",
    "version": 1,
    "synthetic": False,
    "overdue": False,
    "reporter": "网格员 王*",
    "reporter_role": "grid_worker",
    "next": ["accepted", "rejected"],
}
_HISTORY: dict[str, Any] = {
    "at": "2026-05-01T09:30:00+08:00",
    "actor": "worker1",
    "actor_role": "grid_worker",
    "from_status": None,
    "to_status": "reported",
    "note": None,
    "department": None,
    "department_label": None,
}


class EventHistory(Answer):
    """流转记录一条 one step of an event's history."""

    model_config = examples(_HISTORY)

    at: str = Field(description="时间 when (ISO 8601)")
    actor: str | None = Field(None, description="操作账号 account that acted")
    actor_role: str | None = Field(None, description="操作角色 its role")
    from_status: str | None = Field(None, description="原状态 state left (null when reported)")
    to_status: str = Field(description="新状态 state entered")
    note: str | None = Field(None, description="说明 note")
    department: str | None = Field(None, description="处置部门 department code")
    department_label: str | None = Field(None, description="部门名称 department label")


class Event(Answer):
    """事件 one event (history with the detail; ``from`` after a transition)."""

    model_config = examples(_EVENT | {"history": [_HISTORY]})

    id: int = Field(description="事件编号 event id")
    lon: float = Field(description="经度 longitude (CGCS2000 ≈ WGS84)")
    lat: float = Field(description="纬度 latitude")
    category: str = Field(description="类别代码 category code")
    category_label: str | None = Field(None, description="类别名称 category label")
    description: str = Field(description="描述 description")
    status: str = Field(description="状态 state (GET /api/events/catalog: states)")
    status_label: str | None = Field(None, description="状态名称 state label")
    department: str | None = Field(None, description="处置部门 department code")
    department_label: str | None = Field(None, description="部门名称 department label")
    escalated_to: str | None = Field(None, description="上报层级 escalated to (community / street)")
    grid_code: str | None = Field(None, description="网格编码 grid")
    community_code: str | None = Field(None, description="社区编码 community")
    street_code: str | None = Field(None, description="街道编码 street")
    reported_at: str | None = Field(None, description="上报时间 reported (ISO 8601)")
    accepted_at: str | None = Field(None, description="受理时间 accepted")
    dispatched_at: str | None = Field(None, description="派发时间 dispatched")
    handled_at: str | None = Field(None, description="处置时间 handled")
    feedback_at: str | None = Field(None, description="反馈时间 feedback")
    closed_at: str | None = Field(None, description="办结时间 closed")
    rejected_at: str | None = Field(None, description="驳回时间 rejected")
    escalated_at: str | None = Field(None, description="上报上级时间 escalated")
    deadline: str | None = Field(None, description="办理期限 deadline")
    updated_at: str | None = Field(None, description="更新时间 updated")
    version: int = Field(description="版本 version (send it back with a transition)")
    synthetic: bool | None = Field(None, description="合成数据 synthetic (demo) event")
    overdue: bool | None = Field(None, description="超期 open and past the deadline")
    reporter: str | None = Field(None, description="上报人 reporter (roles that read personal data only)")
    reporter_role: str | None = Field(None, description="上报人角色 reporter's role")
    next: list[str] = Field(default_factory=list, description="可流转状态 states your role may move it to")
    history: list[EventHistory] | None = Field(None, description="流转记录 history (detail only)")
    from_: str | None = Field(None, alias="from", description="原状态 the state left (after a transition)")


class EventPage(Answer):
    """事件列表 one page of events in scope."""

    model_config = examples({"total": 1, "limit": 100, "offset": 0, "items": [_EVENT]})

    total: int = Field(description="总数 events matching")
    limit: int = Field(description="每页条数 page size")
    offset: int = Field(description="起始位置 offset")
    items: list[Event] = Field(description="事件 the events")


class EventCatalog(Answer):
    """事件目录 categories, departments, states, transitions and what your role may do."""

    model_config = examples(
        {
            "categories": [{"code": "environment", "label": "环境卫生 environment", "sla_hours": 24}],
            "departments": [{"code": "grid", "label": "网格内 in the grid"}],
            "states": [{"code": "reported", "label": "已上报 reported", "terminal": False}],
            "transitions": [{"from": "reported", "to": "accepted", "roles": ["community_staff"]}],
            "reporters": ["grid_worker"],
            "role": "grid_worker",
            "role_label": "网格员 grid worker",
            "can_report": True,
            "can_list": True,
        }
    )

    categories: list[dict[str, Any]] = Field(description="类别 categories (code, label, deadline hours, …)")
    departments: list[dict[str, Any]] = Field(description="部门 departments (code, label)")
    states: list[dict[str, Any]] = Field(description="状态 states (code, label, terminal)")
    transitions: list[dict[str, Any]] = Field(description="流转 allowed transitions (from, to, roles)")
    reporters: list[str] = Field(description="可上报角色 roles that may report")
    role: str = Field(description="你的角色 your role")
    role_label: str = Field(description="角色名称 your role's label")
    can_report: bool = Field(description="可上报 you may report events")
    can_list: bool = Field(description="可查看列表 you may list events (personal data)")


class EventStats(Answer):
    """事件统计 counts for the caller's area, a community or a grid."""

    model_config = examples(
        {
            "community": None,
            "grid": None,
            "total": 12,
            "open": 3,
            "overdue": 1,
            "closed": 9,
            "closed_in_grid": 6,
            "share_closed_in_grid": 0.6667,
            "median_hours_to_close": 20.5,
            "closed_late": 1,
            "escalated": 2,
            "by_category": [{"category": "environment", "label": "环境卫生 environment", "n": 5}],
            "by_status": [{"status": "reported", "label": "已上报 reported", "n": 2}],
            "overdue_list": [],
            "trend": [{"month": "2026-05", "reported": 12, "closed": 9}],
            "grids": [],
        }
    )

    community: str | None = Field(None, description="社区编码 community asked for")
    grid: str | None = Field(None, description="网格编码 grid asked for")
    total: int = Field(description="事件数 events")
    open: int = Field(description="未结 open")
    overdue: int = Field(description="超期 open past the deadline")
    closed: int = Field(description="办结 closed")
    closed_in_grid: int | None = Field(None, description="网格内办结 closed within the grid")
    share_closed_in_grid: float | None = Field(None, description="网格内办结率 share closed within the grid")
    median_hours_to_close: float | None = Field(None, description="办结时长中位数（小时）median hours to close")
    closed_late: int | None = Field(None, description="超期办结 closed after the deadline")
    escalated: int | None = Field(None, description="上报上级 escalated")
    by_category: list[dict[str, Any]] = Field(default_factory=list, description="按类别 by category")
    by_status: list[dict[str, Any]] = Field(default_factory=list, description="按状态 by state")
    overdue_list: list[dict[str, Any]] = Field(default_factory=list, description="超期事件 overdue events (≤ 200)")
    trend: list[dict[str, Any]] = Field(default_factory=list, description="月度趋势 reported and closed per month")
    grids: list[dict[str, Any]] = Field(default_factory=list, description="按网格 the same figures per grid")


class OpenEvents(FeatureCollection):
    """未结事件 open events clustered by grid: a point per grid with counts only."""

    total_open: int = Field(description="未结事件总数 open events")
    total_overdue: int = Field(description="超期事件总数 overdue events")


class Photo(Answer):
    """事件照片 one photo of an event (metadata removed)."""

    model_config = examples(
        {
            "id": 7,
            "event": 42,
            "media_type": "image/jpeg",
            "bytes": 183204,
            "width": 1600,
            "height": 1200,
            "uploaded_at": "2026-05-01T09:31:00+08:00",
            "url": "/api/events/photos/7",
            "duplicate": False,
        }
    )

    id: int = Field(description="照片编号 photo id")
    event: int = Field(description="事件编号 event id")
    media_type: str = Field(description="类型 image/jpeg or image/png")
    bytes: int = Field(description="大小（字节）size in bytes")
    width: int | None = Field(None, description="宽 width (px)")
    height: int | None = Field(None, description="高 height (px)")
    uploaded_at: str = Field(description="上传时间 uploaded (ISO 8601)")
    url: str = Field(description="地址 where to fetch the image")
    duplicate: bool | None = Field(None, description="重复 the same photo was already attached (upload only)")
