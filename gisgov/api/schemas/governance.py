"""Answers of the staff 网格员 (一格三员) and compound 小区 APIs (``/api/staff…``, ``/api/compounds…``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gisgov.api.schemas.answer import Answer, examples
from gisgov.api.schemas.geojson import FeatureCollection

_GRID: dict[str, Any] = {
    "code": "110101001001001",
    "name": "第一网格",
    "community_code": "110101001001",
    "community_name": "示例社区",
    "households": 412,
    "staff": 3,
    "roles": {"网格长": 1, "专职网格员": 1, "兼职网格员": 1},
    "gaps": [],
    "caseload": 412.0,
    "caseload_over": False,
    "ok": True,
}
_STAFF: dict[str, Any] = {
    "id": 12,
    "grid_code": "110101001001001",
    "role": "专职网格员",
    "role_en": "full-time grid worker",
    "name": "王*",
    "phone_masked": "138****5678",
    "updated_at": "2026-05-01T09:30:00+08:00",
    "updated_by": "staff1",
}
_COMPOUND: dict[str, Any] = {
    "code": "1101010010010001",
    "community_code": "110101001001",
    "name": "幸福小区",
    "year_built": 1998,
    "property_mode": "物业公司",
    "has_party_org": True,
    "has_service_point": False,
    "version": 3,
    "updated_at": "2026-05-01T09:30:00+08:00",
    "updated_by": "staff1",
    "is_old": True,
    "breaches": ["service_point"],
    "breach_labels": ["未设党群服务点 no service point"],
}


class StaffOverview(Answer):
    """网格员配备 staff per grid of the area: counts by role, gaps, caseload (people by role)."""

    model_config = examples(
        {
            "area": "110101001001",
            "names_shown": False,
            "summary": {
                "grids": 1,
                "staff": 3,
                "grids_ok": 1,
                "no_leader": [],
                "no_full_time": [],
                "caseload_over": [],
                "max_caseload": 412.0,
                "ceiling": 500.0,
            },
            "grids": [_GRID],
            "rules": {"gaps": {"no_leader": "缺网格长 no grid leader"}, "caseload_over": "…"},
        }
    )

    area: str = Field(description="区域编码 the area listed (code prefix)")
    names_shown: bool = Field(description="是否显示姓名 names and masked phones shown (roles with read_personal)")
    summary: dict[str, Any] = Field(description="汇总 totals: grids, staff, gaps, caseloads, ceiling")
    grids: list[dict[str, Any]] = Field(
        description="各网格 per grid: counts by role, gaps, households, caseload; ``people`` with names"
    )
    rules: dict[str, Any] = Field(description="规则说明 what a gap and an overload mean")


class StaffGaps(FeatureCollection):
    """网格员缺口地图 grids with a gap or an overload, as points or polygons (WGS84)."""

    summary: dict[str, Any] = Field(description="汇总 totals, as in GET /api/staff")


class StaffMember(Answer):
    """网格员 one staff member (masked phone)."""

    model_config = examples(_STAFF | {"changed": ["phone"]})

    id: int = Field(description="编号 staff id")
    grid_code: str = Field(description="网格编码 grid")
    role: str = Field(description="角色 role (网格长 / 专职网格员 / 兼职网格员 / …)")
    role_en: str | None = Field(None, description="角色英文 role in English")
    name: str = Field(description="姓名 name")
    phone_masked: str | None = Field(None, description="手机号（脱敏）masked phone")
    updated_at: str | None = Field(None, description="更新时间 updated (ISO 8601)")
    updated_by: str | None = Field(None, description="更新人 updated by")
    changed: list[str] | None = Field(None, description="修改的字段 fields changed (edit only)")


class StaffRemoved(Answer):
    """已移除 a staff member was removed."""

    model_config = examples({"id": 12, "grid_code": "110101001001001", "role": "兼职网格员", "removed": True})

    id: int = Field(description="编号 staff id")
    grid_code: str = Field(description="网格编码 grid")
    role: str = Field(description="角色 role")
    removed: bool = Field(description="已移除 removed")


class StaffImport(Answer):
    """导入结果 what the import wrote (or would write, with dry_run)."""

    model_config = examples(
        {
            "mode": "replace",
            "dry_run": True,
            "rows": 3,
            "grids": 1,
            "removed": 0,
            "written": 0,
            "grids_after": [_GRID],
            "gaps_after": [],
        }
    )

    mode: str = Field(description="方式 replace or append")
    dry_run: bool = Field(description="仅检查 check only (nothing written)")
    rows: int = Field(description="行数 rows read")
    grids: int = Field(description="涉及网格 grids touched")
    removed: int = Field(description="移除人数 staff removed (replace)")
    written: int = Field(description="写入行数 rows written")
    grids_after: list[dict[str, Any]] = Field(description="导入后的网格 the grids touched, after the import")
    gaps_after: list[str] = Field(description="仍有缺口的网格 grids still with a gap")


class CompoundRulesAnswer(Answer):
    """小区治理规则 the configured compound rules and thresholds."""

    model_config = examples(
        {
            "large_households": 300,
            "old_before_year": 2000,
            "managed_modes": ["物业公司"],
            "rules": [{"code": "service_point", "enabled": True, "label": "未设党群服务点 no service point"}],
        }
    )

    large_households: int = Field(description="大型小区户数 households from which a compound is large")
    old_before_year: int = Field(description="老旧小区年份 compounds built before this year are old")
    managed_modes: list[str] = Field(description="物业模式 property modes that count as managed")
    rules: list[dict[str, Any]] = Field(description="规则 rules (code, enabled, label)")


class CompoundCheck(Answer):
    """小区规则检查 breaches and per-community figures of the area's compounds."""

    model_config = examples(
        {
            "area": "110101001001",
            "rules": {"large_households": 300, "old_before_year": 2000, "managed_modes": [], "rules": []},
            "breaches": [],
            "communities": [{"code": "110101001001", "name": "示例社区", "compounds": 12, "old_ratio": 0.25}],
            "totals": {"compounds": 12, "breaches": 0},
        }
    )

    area: str = Field(description="区域编码 the area checked")
    rules: dict[str, Any] = Field(description="规则 the rules applied")
    breaches: list[dict[str, Any]] = Field(description="违规小区 compounds breaking a rule (rules, labels)")
    communities: list[dict[str, Any]] = Field(
        description="各社区 per community: compounds, large, old ratio, property-mode shares, breaches"
    )
    totals: dict[str, Any] = Field(description="合计 totals")


class CompoundBreaches(FeatureCollection):
    """违规小区地图 compounds breaking a rule (polygons, WGS84)."""

    totals: dict[str, Any] = Field(description="合计 totals, as in GET /api/compounds/check")


class Compound(Answer):
    """小区治理属性 one compound's governance attributes (``changed`` after an edit)."""

    model_config = examples(_COMPOUND)

    code: str = Field(description="小区编码 compound code")
    community_code: str | None = Field(None, description="社区编码 community")
    name: str | None = Field(None, description="名称 name")
    year_built: int | None = Field(None, description="建成年份 year built")
    property_mode: str | None = Field(None, description="物业模式 property mode")
    has_party_org: bool | None = Field(None, description="已成立党组织 has a party organisation")
    has_service_point: bool | None = Field(None, description="已设党群服务点 has a service point")
    version: int = Field(description="版本 version (send it back with an edit)")
    updated_at: str | None = Field(None, description="更新时间 updated (ISO 8601)")
    updated_by: str | None = Field(None, description="更新人 updated by")
    is_old: bool | None = Field(None, description="老旧小区 old compound")
    breaches: list[str] = Field(default_factory=list, description="违反的规则 rules broken")
    breach_labels: list[str] = Field(default_factory=list, description="规则名称 their labels")
    changed: list[str] | None = Field(None, description="修改的字段 fields changed (edit only)")
