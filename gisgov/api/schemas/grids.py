"""Answers of ``/api/grids`` (checks, feasibility, proposals, repairs, plan versions, edit sessions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from gisgov.api.schemas.answer import Answer, examples
from gisgov.api.schemas.geojson import FeatureCollection

_GEOM: dict[str, Any] = {
    "type": "Polygon",
    "coordinates": [[[116.39, 39.90], [116.40, 39.90], [116.40, 39.91], [116.39, 39.90]]],
}
_GRID: dict[str, Any] = {
    "code": "110101001001001",
    "name": None,
    "households": 412,
    "people": 905,
    "buildings": 14,
    "area_m2": 61230.5,
    "polsby_popper": 0.61,
    "reock": 0.48,
    "barrier_crossings": 0,
    "exception": None,
    "status": "ok",
}
_BREAK: dict[str, Any] = {
    "rule": "count_range",
    "grid": "110101001001002",
    "message": "网格户数超出范围 grid 110101001001002: 612 households, more than 500",
    "geometry": None,
    "data": {"households": 612},
}
_SUMMARY: dict[str, Any] = {
    "grids": 3,
    "within_bounds": 2,
    "households": 1340,
    "people": 2950,
    "mean_polsby_popper": 0.58,
    "mean_reock": 0.45,
}
_RULES: dict[str, Any] = {"name": "default", "min_households": 300, "max_households": 500, "max_people": 1000}
_REPORT: dict[str, Any] = {
    "community": "110101001001",
    "rules": _RULES,
    "ok": False,
    "breaks_count": 1,
    "grids": [_GRID],
    "breaks": [_BREAK],
    "summary": _SUMMARY,
}


class GridStats(Answer):
    """一个网格的统计 one grid's figures and status against the rules."""

    model_config = examples(_GRID)

    code: str = Field(description="网格编码 grid code")
    name: str | None = Field(None, description="网格名称 grid name")
    households: int = Field(description="户数 households")
    people: int = Field(description="人数 people")
    buildings: int | None = Field(None, description="楼栋数 buildings")
    groups: dict[str, int] | None = Field(
        None, description="特殊人群人数 special-group members by group (only for roles that may read special groups)"
    )
    area_m2: float | None = Field(None, description="面积（平方米）area (m²)")
    polsby_popper: float | None = Field(None, description="紧凑度 Polsby–Popper compactness (0–1)")
    reock: float | None = Field(None, description="紧凑度 Reock compactness (0–1)")
    barrier_crossings: int | None = Field(None, description="跨越障碍次数 crossings of barriers (rivers, rail, roads)")
    exception: Any = Field(None, description="例外说明 recorded exception to the bounds (as given), or null")
    status: str = Field(description="状态 ok / under / over (households or people against the bounds)")


class RuleBreak(Answer):
    """一处违规 one rule break, located."""

    model_config = examples(_BREAK)

    rule: str = Field(description="规则 rule broken (count_range, split_compound, gap, overlap, …)")
    grid: str | None = Field(None, description="网格编码 grid concerned, if one")
    message: str = Field(description="说明 message (中文 English)")
    geometry: dict[str, Any] | None = Field(None, description="位置 where (GeoJSON geometry, lon/lat) or null")
    data: dict[str, Any] | None = Field(None, description="数据 figures of the break")


class PlanSummary(Answer):
    """方案汇总 summary of a plan."""

    model_config = examples(_SUMMARY)

    grids: int = Field(description="网格数 grids")
    within_bounds: int = Field(description="符合户数/人数范围的网格数 grids within the bounds")
    households: int | None = Field(None, description="户数 households in the community")
    people: int | None = Field(None, description="人数 people in the community")
    mean_polsby_popper: float | None = Field(None, description="平均紧凑度 mean Polsby–Popper")
    mean_reock: float | None = Field(None, description="平均紧凑度 mean Reock")


class PlanReport(Answer):
    """校验报告 a plan's check: figures per grid, every rule break located."""

    model_config = examples(_REPORT)

    community: str = Field(description="社区编码 community code")
    rules: dict[str, Any] = Field(description="适用规则 the rules applied (bounds, tolerance)")
    ok: bool = Field(description="是否符合全部规则 the plan obeys every hard rule")
    breaks_count: int = Field(description="违规数 number of hard rule breaks")
    grids: list[GridStats] = Field(description="各网格 the grids")
    breaks: list[RuleBreak] = Field(description="违规列表 the rule breaks")
    summary: PlanSummary = Field(description="汇总 summary")


class CheckAnswer(PlanReport):
    """校验结果 a check; ``plan`` names the stored version checked (null for a plan sent in the body)."""

    model_config = examples(_REPORT | {"plan": {"version": 3, "status": "active"}})

    plan: dict[str, Any] | None = Field(None, description="所校验的版本 stored version and status checked, or null")


class Finding(Answer):
    """可行性发现 a reason no plan (or only some plans) can obey the rules."""

    rule: str | None = Field(None, description="规则 rule (stranded, bottleneck, unit_over_max, …)")
    message: str = Field(description="说明 message")
    units: list[str] = Field(default_factory=list, description="涉及单元 units concerned (at most 200)")
    geometry: dict[str, Any] | None = Field(None, description="位置 where (GeoJSON geometry) or null")
    data: dict[str, Any] | None = Field(None, description="数据 figures")


class FeasibilityAnswer(Answer):
    """可行性 whether any plan can obey the rules, how many grids, what prevents it."""

    model_config = examples(
        {
            "community": "110101001001",
            "feasible": True,
            "k_min": 3,
            "k_max": 4,
            "households": 1340,
            "people": 2950,
            "units": 42,
            "findings": [],
            "summary": "可行 feasible so far: 1340 households, 2950 people → 3–4 grids",
            "rules": _RULES,
        }
    )

    community: str = Field(description="社区编码 community code")
    feasible: bool = Field(description="是否可行 a plan obeying the rules may exist")
    k_min: int = Field(description="最少网格数 fewest grids")
    k_max: int = Field(description="最多网格数 most grids")
    households: int = Field(description="户数 households")
    people: int = Field(description="人数 people")
    units: int = Field(description="划分单元数 units (compounds and loose buildings)")
    findings: list[Finding] = Field(description="发现 what prevents a plan")
    summary: str = Field(description="结论 one-line verdict (中文 English)")
    notes: list[str] = Field(
        default_factory=list,
        description="说明 notes, e.g. people estimated as households × household size and the grid capacity it implies",
    )
    unchecked: list[str] = Field(
        default_factory=list,
        description="未判定单元 units the bounded search could not decide (neither stranded nor fine)",
    )
    rules: dict[str, Any] = Field(description="适用规则 the rules applied")


class _Budget(Answer):
    time_limit_s: float | None = Field(None, description="实际允许的求解时间（秒） solver time actually allowed (s)")
    time_limit_requested_s: float | None = Field(
        None, description="请求的求解时间（超过上限时）time asked for, when above GISGOV_SOLVER_MAX_S"
    )
    version: int | None = Field(None, description="保存的草稿版本 draft version saved (with save)")
    parent_version: int | None = Field(
        None, description="起始的启用版本 the active version the work started from (with save)"
    )
    geojson: FeatureCollection | None = Field(None, description="网格 GeoJSON of the grids drawn (lon/lat)")
    report: PlanReport | None = Field(None, description="校验报告 check of the plan drawn")


class ProposeAnswer(_Budget):
    """划分结果 a drafted plan (or why none could be drafted)."""

    model_config = examples(
        {
            "community": "110101001001",
            "status": "ok",
            "method": "exact-cpsat",
            "optimal": True,
            "solver_status": "OPTIMAL",
            "gap": 0.0,
            "seconds": 1.8,
            "units": 42,
            "findings": [],
            "notes": [],
            "codes": ["110101001001001", "110101001001002", "110101001001003"],
            "report": _REPORT,
            "geojson": {"type": "FeatureCollection", "features": []},
            "time_limit_s": 10.0,
        }
    )

    community: str = Field(description="社区编码 community code")
    status: str = Field(
        description="结果 ok / closest (closest plan) / infeasible / rule_breaks (the validator found a break in "
        "the draft; see findings)"
    )
    solver_mode: str | None = Field(
        None, description="求解方式 how the exact solver ran: deterministic (seeded, repeatable) or parallel"
    )
    closeness: dict[str, Any] | None = Field(
        None,
        description="接近程度 a closest plan's measure: breaks (the validator's count), excess (households/people "
        "beyond the bounds), boundary_m",
    )
    method: str | None = Field(None, description="方法 exact-cpsat or heuristic")
    optimal: bool = Field(False, description="是否最优 proven optimal")
    solver_status: str | None = Field(None, description="求解器状态 solver status")
    gap: float | None = Field(None, description="最优差距 optimality gap")
    seconds: float = Field(description="用时（秒）seconds spent")
    units: int = Field(0, description="划分单元数 units")
    findings: list[Finding] = Field(default_factory=list, description="发现 why no plan obeys the rules")
    notes: list[str] = Field(default_factory=list, description="备注 notes")
    codes: list[str] | None = Field(None, description="网格编码 codes of the grids drawn")


class RepairAnswer(_Budget):
    """修复结果 a repaired plan: buildings moved, breaks before and after."""

    model_config = examples(
        {
            "community": "110101001001",
            "method": "exact",
            "optimal": True,
            "buildings_moved": 2,
            "moved": ["11010100100100001"],
            "grids_before": 2,
            "grids_after": 2,
            "grids_added": [],
            "grids_removed": [],
            "notes": [],
            "breaks_before": 1,
            "breaks_after": 0,
            "seconds": 0.7,
            "report": _REPORT | {"ok": True, "breaks_count": 0, "breaks": []},
            "from_version": 3,
            "time_limit_s": 5.0,
        }
    )

    community: str = Field(description="社区编码 community code")
    method: str | None = Field(None, description="方法 method used")
    optimal: bool | None = Field(None, description="是否最优 proven optimal")
    buildings_moved: int = Field(description="移动楼栋数 buildings moved")
    moved: list[str] = Field(description="移动的楼栋 codes of the buildings moved")
    grids_before: int | None = Field(None, description="修复前网格数 grids before")
    grids_after: int | None = Field(
        None, description="修复后网格数 grids after (changed when the count cannot meet the bounds)"
    )
    grids_added: list[str] = Field(default_factory=list, description="新增网格 grids added (a grid split in two)")
    grids_removed: list[str] = Field(
        default_factory=list, description="撤销网格 grids removed (merged into a neighbour)"
    )
    solver_mode: str | None = Field(None, description="求解方式 deterministic (seeded) or parallel")
    notes: list[str] = Field(default_factory=list, description="说明 notes (中文 English)")
    breaks_before: int = Field(description="修复前违规数 hard breaks before")
    breaks_after: int = Field(description="修复后违规数 hard breaks after")
    seconds: float = Field(description="用时（秒）seconds spent")
    from_version: int | None = Field(None, description="修复的版本 version repaired")


class PlanVersion(Answer):
    """方案版本 one stored version of a community's plan."""

    model_config = examples(
        {
            "version": 3,
            "status": "active",
            "parent_version": 2,
            "author": "planner",
            "created": "2026-05-01T09:30:00+08:00",
            "activated": "2026-05-02T10:00:00+08:00",
            "note": "proposed (exact-cpsat)",
            "method": "exact-cpsat",
            "stats": {"summary": _SUMMARY},
            "grids": 3,
        }
    )

    version: int = Field(description="版本号 version")
    status: str = Field(description="状态 draft / active / archived")
    parent_version: int | None = Field(None, description="起始版本 the active version this draft was made from")
    author: str | None = Field(None, description="作者 author")
    created: datetime | None = Field(None, description="创建时间 created")
    activated: datetime | None = Field(None, description="启用时间 activated")
    note: str | None = Field(None, description="说明 note")
    method: str | None = Field(None, description="方法 method")
    stats: dict[str, Any] | None = Field(None, description="统计 statistics stored with the version")
    grids: int = Field(description="网格数 grids")
    within_bounds: float | None = Field(
        None, description="达标比例 share (0–1) of grids within both bounds (households and people), or null"
    )
    households_range: list[int] | None = Field(
        None, description="户数范围 [fewest, most] households of one grid, or null"
    )


class StoredPlanAnswer(FeatureCollection):
    """方案 a stored plan as GeoJSON (grids with their figures), its row, rule breaks and summary."""

    plan: dict[str, Any] = Field(description="版本信息 the version's row (version, status, author, created, …)")
    breaks: list[RuleBreak] = Field(description="违规列表 the rule breaks")
    summary: PlanSummary = Field(description="汇总 summary")


class ActivateAnswer(Answer):
    """启用结果 the plan is active: codes renumbered, buildings and staff carried over."""

    model_config = examples(
        {
            "community": "110101001001",
            "version": 4,
            "previous": 3,
            "parent_version": 3,
            "rebased": None,
            "codes": {"110101001001002": "110101001001001"},
            "buildings": 120,
            "staff_moved": 9,
            "ok": True,
            "breaks_count": 0,
            "legacy_archived_as": None,
        }
    )

    community: str = Field(description="社区编码 community code")
    version: int = Field(description="启用的版本 version activated")
    previous: int | None = Field(None, description="此前启用的版本 previously active version")
    parent_version: int | None = Field(None, description="起始版本 the plan's parent version")
    rebased: dict[str, Any] | None = Field(
        None, description="改基 with rebase: the parent version replaced (from) and the active version it became (to)"
    )
    codes: dict[str, Any] = Field(description="编码重排 grid codes renumbered (draft code → active code)")
    buildings: int | None = Field(None, description="楼栋数 buildings assigned")
    staff_moved: int | None = Field(None, description="网格员迁移 staff carried over")
    ok: bool = Field(description="是否符合规则 the plan obeys every hard rule")
    breaks_count: int = Field(description="违规数 hard rule breaks")
    legacy_archived_as: int | None = Field(
        None, description="旧网格归档版本 version the grids made outside plans became"
    )


class CodeRow(Answer):
    """编码表一行 one row of the code table."""

    model_config = examples(
        {
            "code": "110101001001001",
            "name": "第一网格",
            "level": "grid",
            "buildings": 14,
            "households": 412,
            "area_m2": 61230.5,
            "community": "110101001001",
            "version": 3,
            "status": "active",
        }
    )

    code: str = Field(description="网格编码 grid code")
    name: str | None = Field(None, description="名称 name")
    level: str | None = Field(None, description="层级 level")
    buildings: int = Field(description="楼栋数 buildings")
    households: int = Field(description="户数 households")
    area_m2: float | None = Field(None, description="面积（平方米）area (m²)")
    community: str = Field(description="社区编码 community code")
    version: int = Field(description="版本 plan version")
    status: str = Field(description="版本状态 plan status")


class DiffAnswer(Answer):
    """版本对比 what changed from version ``from`` to ``to``."""

    model_config = examples(
        {
            "community": "110101001001",
            "from": 3,
            "to": 4,
            "buildings_moved": 1,
            "moved": [
                {"building": "1101010010010001", "from": "110101001001002", "to": "110101001001001", "households": 30}
            ],
            "grids": [{"code": "110101001001001", "before": {"households": 400}, "after": {"households": 430}}],
        }
    )

    community: str = Field(description="社区编码 community code")
    from_: int = Field(alias="from", description="原版本 version a")
    to: int = Field(description="新版本 version b")
    buildings_moved: int = Field(description="移动楼栋数 buildings in another grid")
    moved: list[dict[str, Any]] = Field(description="移动的楼栋 building, from, to, households")
    grids: list[dict[str, Any]] = Field(description="各网格前后 each grid code's figures before and after")


class SessionOpened(Answer):
    """编辑会话 an edit session was opened (or resumed)."""

    model_config = examples(
        {
            "session": "b1946ac92492d2347c6235b4d2611184",
            "community": "110101001001",
            "grids": ["110101001001001", "110101001001002"],
            "revision": 0,
            "base_version": 3,
            "idle_hours": 8,
        }
    )

    session: str = Field(description="会话编号 session id")
    community: str = Field(description="社区编码 community code")
    grids: list[str] = Field(description="网格编码 grid codes")
    revision: int = Field(description="修订号 revision (moves so far)")
    base_version: int | None = Field(None, description="起始版本 the version the session started from")
    idle_hours: float = Field(description="闲置过期时长（小时）hours untouched before the session expires")
    resumed: str | None = Field(None, description="续接的会话 id of the session resumed (closed)")


class MoveAnswer(Answer):
    """移动结果 the move and the two grids re-checked."""

    model_config = examples(
        {
            "moved": {"building": "1101010010010001", "compound": None, "to": "110101001001001", "atoms": 1},
            "grids": [_GRID],
            "ms": 3.2,
            "revision": 5,
        }
    )

    moved: dict[str, Any] = Field(description="移动 what moved (building or compound, to, atoms)")
    grids: list[dict[str, Any]] = Field(description="重新校验的网格 the grids re-checked (figures, breaks)")
    ms: float | None = Field(None, description="用时（毫秒）milliseconds")
    revision: int = Field(description="新修订号 the session's new revision")


class SessionReport(PlanReport):
    """会话校验 the session's plan fully checked."""

    model_config = examples(
        _REPORT | {"session": {"id": "b1946ac92492d2347c6235b4d2611184", "revision": 5, "base_version": 3}}
    )

    session: dict[str, Any] = Field(description="会话 id, revision, base_version")


class SessionSaved(Answer):
    """已保存草稿 the session's plan stored as a draft version."""

    model_config = examples({"version": 5, "parent_version": 3, "revision": 5, "conflict": None})

    version: int = Field(description="草稿版本 draft version stored")
    parent_version: int | None = Field(None, description="起始版本 parent (active) version")
    revision: int = Field(description="会话修订号 session revision saved")
    conflict: dict[str, Any] | None = Field(None, description="冲突 always null here (conflicts answer 409)")
    rebased: dict[str, Any] | None = Field(None, description="改基 from/to versions when saved with rebase")


class SessionLayers(Answer):
    """编辑图层 an edit session's grids, compounds and buildings (counts only)."""

    model_config = examples(
        {
            "session": "b1946ac92492d2347c6235b4d2611184",
            "revision": 0,
            "base_version": 3,
            "community": {"code": "110101001001", "name": "示例社区"},
            "rules": _RULES,
            "boundary": _GEOM,
            "grids": [_GRID | {"label": [116.395, 39.905], "breaks": [], "cannot_leave": []}],
            "compounds": {"type": "FeatureCollection", "features": []},
            "buildings": {"type": "FeatureCollection", "features": []},
        }
    )

    session: str = Field(description="会话编号 session id")
    revision: int = Field(description="修订号 revision")
    base_version: int | None = Field(None, description="起始版本 the version the session started from")
    community: dict[str, Any] = Field(description="社区 code and name")
    rules: dict[str, Any] = Field(description="规则 name and bounds")
    boundary: dict[str, Any] | None = Field(None, description="社区边界 community boundary (GeoJSON geometry)")
    grids: list[dict[str, Any]] = Field(description="网格 grids: figures, polygon, label point, breaks")
    compounds: FeatureCollection = Field(description="小区 compounds (counts, grids they lie in)")
    buildings: FeatureCollection = Field(description="楼栋 buildings (counts, grid)")


class EditAnswer(Answer):
    """编辑结果 a boundary edit (draw, reshape, split, merge, delete, paint, restore) and the grids it touched."""

    model_config = examples(
        {
            "op": "draw",
            "grids": [_GRID | {"geometry": _GEOM, "breaks": [], "cannot_leave": []}],
            "added": ["110101001001004"],
            "removed": [],
            "codes": ["110101001001001", "110101001001002", "110101001001003", "110101001001004"],
            "moved": {"buildings": 3, "households": 96, "people": 210},
            "changed": {"1101010010010001": "110101001001004"},
            "split_compounds": [],
            "undo": {
                "op": "restore",
                "revision": 6,
                "state": {
                    "codes": ["110101001001001", "110101001001002", "110101001001003"],
                    "assignments": {"1101010010010001": "110101001001002"},
                },
            },
            "revision": 6,
            "ms": 41.5,
        }
    )

    op: str = Field(description="操作 the edit done")
    grids: list[dict[str, Any]] = Field(
        description="重新校验的网格 every grid touched (same rows as a move: code, households, people, status, "
        "polsby_popper, reock, geometry, breaks, cannot_leave)"
    )
    added: list[str] = Field(description="新增网格 grid codes added")
    removed: list[str] = Field(description="删除网格 grid codes removed")
    codes: list[str] = Field(description="全部网格编码 every grid code of the session, in order, after the edit")
    moved: dict[str, int] = Field(description="移动 buildings, households and people that changed grid")
    changed: dict[str, str | None] = Field(description="改变的楼栋 building code → its new grid (only those changed)")
    split_compounds: list[str] = Field(description="被分割的小区 compounds whose buildings now lie in several grids")
    undo: dict[str, Any] = Field(
        description="撤销 a body for this endpoint (op restore) that reverses the edit exactly"
    )
    revision: int = Field(description="新修订号 the session's new revision")
    ms: float | None = Field(None, description="用时（毫秒）server milliseconds")


class PlanDeleted(Answer):
    """已删除草稿 a draft version was deleted."""

    model_config = examples({"community": "110101001001", "version": 5, "deleted": True})

    community: str = Field(description="社区编码 community code")
    version: int = Field(description="删除的版本 version deleted")
    deleted: bool = Field(description="已删除 true")
