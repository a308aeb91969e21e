"""Answers of the special-group services 特殊人群服务 API (``/api/special…``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gisgov.api.schemas.answer import Answer, examples

_PERSON: dict[str, Any] = {
    "resident_id": 1201,
    "name": "张*",
    "gender": "女",
    "id_masked": "**************1234",
    "phone_masked": "138****5678",
    "building": "1101010010010001",
    "building_name": "1号楼",
    "door_no": "2-301",
    "compound": "1101010010010",
    "compound_name": "幸福小区",
    "grid": "110101001001001",
    "grid_name": "第一网格",
    "community": "110101001001",
    "community_name": "示例社区",
}


class SpecialNeeds(Answer):
    """服务需求配置 the configured needs (group → services), circle, profile, budget and visit rules."""

    model_config = examples(
        {
            "circle": "15min",
            "profile": "walk",
            "visit_category": "special_visit",
            "needs": [
                {
                    "group": "elderly_alone",
                    "name_zh": "独居老人",
                    "name_en": "elderly living alone",
                    "services": [
                        {
                            "code": "clinic",
                            "name_zh": "卫生服务站",
                            "name_en": "clinic",
                            "select": [{"category": "health", "kinds": ["clinic"]}],
                        }
                    ],
                }
            ],
            "visits": [{"group": "elderly_alone", "days": 30}],
            "budget_m": 1000.0,
            "minutes": 15,
        }
    )

    circle: str = Field(description="生活圈 service circle (e.g. 15min)")
    profile: str = Field(description="出行方式 travel profile (walk, …)")
    visit_category: str = Field(description="走访事件类别 event category of a visit")
    needs: list[dict[str, Any]] = Field(description="需求 per group: the services it needs")
    visits: list[dict[str, Any]] = Field(description="走访周期 visit interval (days) per group")
    budget_m: float | None = Field(None, description="距离预算（米）distance budget of the circle (m)")
    minutes: float | None = Field(None, description="时间（分钟）minutes of the circle")


class _Page(Answer):
    area: str = Field(description="区域编码 the area listed")
    total: int = Field(description="总数 members matching")
    limit: int = Field(description="每页条数 page size")
    offset: int = Field(description="起始位置 offset")
    items: list[dict[str, Any]] = Field(
        description="成员（脱敏）members, masked: name, ID, phone, building, door, grid, group, distance or last visit"
    )


class BeyondList(_Page):
    """服务圈外 members whose most-needed service lies beyond the circle (masked)."""

    model_config = examples(
        {
            "area": "110101001001",
            "circle": "15min",
            "profile": "walk",
            "budget_m": 1000.0,
            "method": "network",
            "total": 1,
            "members": 1,
            "limit": 500,
            "offset": 0,
            "items": [_PERSON | {"group": "elderly_alone", "service": "clinic", "distance_m": 1830.0}],
        }
    )

    circle: str | None = Field(None, description="生活圈 service circle")
    profile: str | None = Field(None, description="出行方式 travel profile")
    budget_m: float | None = Field(None, description="距离预算（米）distance budget (m)")
    method: str | None = Field(None, description="计算方法 how distances were measured")
    members: int | None = Field(None, description="人次 member–group pairs beyond the circle")


class OverdueList(_Page):
    """走访超期 members overdue for a visit (never visited first), masked."""

    model_config = examples(
        {
            "area": "110101001001",
            "now": "2026-05-01T09:30:00+08:00",
            "total": 1,
            "limit": 500,
            "offset": 0,
            "items": [_PERSON | {"group": "elderly_alone", "last_visit": None, "days_overdue": None}],
        }
    )

    now: str = Field(description="计算时间 as of (ISO 8601)")


class SpecialSummary(Answer):
    """特殊人群服务汇总 per unit and group: members, beyond the circle, overdue (small cells suppressed)."""

    model_config = examples(
        {
            "area": "110101001",
            "circle": "15min",
            "profile": "walk",
            "budget_m": 1000.0,
            "method": "network",
            "now": "2026-05-01T09:30:00+08:00",
            "units": [
                {
                    "level": "community",
                    "code": "110101001001",
                    "name": "示例社区",
                    "groups": [{"group": "elderly_alone", "members": "≥5", "beyond": "<5", "overdue": "<5"}],
                }
            ],
            "suppression": {"k": 5, "below": "<5", "complement": "≥5", "note": "…"},
        }
    )

    area: str = Field(description="区域编码 your area")
    circle: str | None = Field(None, description="生活圈 service circle")
    profile: str | None = Field(None, description="出行方式 travel profile")
    budget_m: float | None = Field(None, description="距离预算（米）distance budget (m)")
    method: str | None = Field(None, description="计算方法 how distances were measured")
    now: str = Field(description="计算时间 as of (ISO 8601)")
    units: list[dict[str, Any]] = Field(
        description="各单元 per community and grid: per group members, beyond, overdue (numbers or '<k' / '≥k')"
    )
    suppression: dict[str, Any] | None = Field(
        None, description="小数抑制 how small cells are shown (null for roles that read special groups)"
    )


class VisitRecorded(Answer):
    """已登记走访 the visit was recorded as an event."""

    model_config = examples(
        {
            "event_id": 43,
            "resident_id": 1201,
            "building": "1101010010010001",
            "groups": ["elderly_alone"],
            "visited_at": "2026-05-01T09:30:00+08:00",
            "event_status": "reported",
            "grid": "110101001001001",
            "community": "110101001001",
        }
    )

    event_id: int = Field(description="事件编号 the visit's event")
    resident_id: int = Field(description="居民编号 resident visited")
    building: str | None = Field(None, description="楼栋编码 building")
    groups: list[str] = Field(description="人群 the resident's groups")
    visited_at: str = Field(description="走访时间 when (ISO 8601)")
    event_status: str = Field(description="事件状态 the event's state")
    grid: str | None = Field(None, description="网格编码 grid")
    community: str | None = Field(None, description="社区编码 community")
