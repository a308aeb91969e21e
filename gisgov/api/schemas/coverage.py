"""Answers of the service-circle routes (``/api/coverage/…``). Area and gap answers are GeoJSON
(:class:`gisgov.api.schemas.geojson.FeatureCollection`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gisgov.api.schemas._base import Answer, example


class CoverageCatalog(Answer):
    """生活圈目录 circles, walking profiles, budgets, service categories and requirement sets."""

    model_config = example(
        {
            "circles": [{"code": "c15", "name_zh": "15分钟生活圈", "minutes": 15}],
            "profiles": [{"code": "standard", "name_zh": "一般步行"}],
            "budgets": [{"profile": "standard", "circle": "c15", "distance_m": 1000}],
            "categories": [{"code": "weisheng", "name_zh": "卫生服务", "name_en": "health", "select": []}],
            "standards": [],
            "distance_cap_m": 1500,
        }
    )

    circles: list[dict[str, Any]] = Field(description="生活圈 the circles (5/10/15 minutes)")
    profiles: list[dict[str, Any]] = Field(description="步行方式 walking profiles (standard, elderly)")
    budgets: list[dict[str, Any]] = Field(description="距离预算 walking distance per profile and circle")
    categories: list[dict[str, Any]] = Field(description="服务类别 service categories and the facilities they select")
    standards: list[dict[str, Any]] = Field(description="配置标准 requirement sets (complete circles)")
    distance_cap_m: int | float | None = Field(description="距离上限（米）distances beyond this are not computed")


class CoverageRow(Answer):
    """一行覆盖率 coverage of one category (or requirement set) for one profile and circle."""

    item_kind: str = Field(description="类别 category | complete (requirement set)")
    item: str = Field(description="代码 category or requirement-set code")
    name_zh: str | None = Field(description="中文名 name in Chinese")
    name_en: str | None = Field(description="英文名 name in English")
    profile: str = Field(description="步行方式 walking profile")
    circle: str = Field(description="生活圈 circle")
    budget_m: int | float | None = Field(description="距离预算（米）walking distance of the circle")
    buildings: int = Field(description="楼栋数 buildings in the unit")
    buildings_in: int = Field(description="圈内楼栋 buildings within the circle")
    households: float = Field(description="户数 households in the unit")
    households_in: float = Field(description="圈内户数 households within the circle")
    residents: int = Field(description="人数 residents in the unit")
    residents_in: int = Field(description="圈内人数 residents within the circle")
    share_buildings: float | None = Field(description="楼栋覆盖率 share of buildings within (0–1)")
    share_households: float | None = Field(description="户数覆盖率 share of households within (0–1)")
    share_residents: float | None = Field(description="人数覆盖率 share of residents within (0–1)")
    facilities: int | None = Field(
        None, description="设施数 facilities of this category in the data (whole city; category rows only)"
    )
    no_facility: bool = Field(
        False,
        description="无此类设施数据 no facility of this category in the data: the 0 % is missing data, not a gap "
        "(a complete-circle row: one of its categories has none)",
    )
    no_facility_categories: list[str] | None = Field(
        None, description="无设施数据的类别 required categories with no facility in the data (complete rows)"
    )


class CoverageSummary(Answer):
    """覆盖率汇总 coverage of one unit for every category, profile and circle."""

    model_config = example(
        {
            "level": "community",
            "code": "340102001001",
            "method": "network",
            "stored": True,
            "rows": [],
            "special_groups": [],
            "network": {"buildings": 120, "snapped": 118},
        }
    )

    level: str = Field(description="层级 street | community | grid | compound")
    code: str = Field(description="编码 the unit's code")
    method: str = Field(description="距离算法 network (walking graph) or euclidean")
    stored: bool = Field(description="已保存 distances read from the stored run (else computed in memory)")
    rows: list[CoverageRow] = Field(description="覆盖率行 one row per item, profile and circle")
    special_groups: list[dict[str, Any]] = Field(
        description="特殊人群 special groups beyond their circle (small cells shown as '<k' for some roles)"
    )
    network: Any = Field(description="路网吸附 how buildings and facilities snapped to the walking graph")


class Site(Answer):
    """一个建议选址 one suggested site."""

    rank: int = Field(description="名次 rank (1 = best)")
    kind: str = Field(description="候选类型 building | node | point")
    id: int = Field(description="候选编号 id of the candidate (building id, node id or point index)")
    lon: float = Field(description="经度 longitude (WGS84)")
    lat: float = Field(description="纬度 latitude (WGS84)")
    households_gained: float = Field(description="新增覆盖户数 households newly covered")
    buildings_gained: int = Field(description="新增覆盖楼栋 buildings newly covered")
    community: str | None = Field(None, description="所在社区编码 code of the community the site falls in")
    community_name: str | None = Field(None, description="所在社区 name of the community the site falls in")


class SiteResult(Answer):
    """选址结果 best new sites (MCLP) or fewest sites (LSCP)."""

    model_config = example(
        {
            "category": "weisheng",
            "name_zh": "卫生服务",
            "name_en": "health",
            "circle": "c15",
            "profile": "standard",
            "budget_m": 1000,
            "problem": "mclp",
            "k": 3,
            "solver": "greedy",
            "optimal": False,
            "level": None,
            "code": None,
            "candidates": 120,
            "sites": [],
            "demand_buildings": 120,
            "demand_households": 1500.0,
            "covered_buildings": 100,
            "covered_households": 1300.0,
            "uncoverable_buildings": 0,
            "seconds": 0.2,
            "method": "network",
        }
    )

    category: str = Field(description="服务类别 service category")
    name_zh: str | None = Field(description="中文名 category name in Chinese")
    name_en: str | None = Field(description="英文名 category name in English")
    circle: str = Field(description="生活圈 circle")
    profile: str = Field(description="步行方式 walking profile")
    budget_m: int | float | None = Field(description="距离预算（米）walking distance")
    problem: str = Field(description="问题 mclp (k best sites) or lscp (fewest sites)")
    k: int | None = Field(description="站点数 number of sites asked for (null: fewest)")
    solver: str = Field(description="求解方法 the solver used")
    optimal: bool | None = Field(description="最优 whether the answer is proven optimal")
    level: str | None = Field(description="层级 level of the unit analysed (null: the caller's area)")
    code: str | None = Field(description="编码 code of the unit analysed")
    candidates: int = Field(description="候选数 number of candidate sites")
    sites: list[Site] = Field(description="建议选址 the sites, best first")
    demand_buildings: Any = Field(description="需求楼栋 buildings to cover")
    demand_households: Any = Field(description="需求户数 households to cover")
    covered_buildings: Any = Field(description="覆盖楼栋 buildings covered with the sites")
    covered_households: Any = Field(description="覆盖户数 households covered with the sites")
    uncoverable_buildings: Any = Field(description="无法覆盖楼栋 buildings no site can cover")
    off_network_candidates: int = Field(
        0, description="路网外候选点 candidates left out: farther than network.max_access_m from a walkable street"
    )
    warnings: list[str] = Field(default_factory=list, description="提示 bilingual warnings, each naming its rule")
    seconds: Any = Field(description="耗时（秒）time taken")
    method: str = Field(description="距离算法 network or euclidean")


class WhatIfFigure(Answer):
    """假设前后 coverage before and after the edit for one profile and circle."""

    profile: str = Field(description="步行方式 walking profile")
    circle: str = Field(description="生活圈 circle")
    budget_m: float = Field(description="距离预算（米）walking distance")
    buildings_before: int = Field(description="之前圈内楼栋 buildings within before")
    buildings_after: int = Field(description="之后圈内楼栋 buildings within after")
    households_before: float = Field(description="之前圈内户数 households within before")
    households_after: float = Field(description="之后圈内户数 households within after")


class WhatIfResult(Answer):
    """假设分析 the change one facility edit makes (and, with commit, the stored update)."""

    model_config = example(
        {
            "op": "add",
            "category": "weisheng",
            "name_zh": "卫生服务",
            "name_en": "health",
            "facility_id": None,
            "changed_buildings": 12,
            "changed_in_area": 12,
            "compute_ms": 35.2,
            "figures": [],
            "committed": False,
            "method": "network",
            "level": None,
            "code": None,
            "total_ms": 40.1,
        }
    )

    op: str = Field(description="操作 add | move | remove")
    category: str = Field(description="服务类别 service category")
    name_zh: str | None = Field(description="中文名 category name in Chinese")
    name_en: str | None = Field(description="英文名 category name in English")
    facility_id: int | None = Field(description="设施编号 the facility (the new one's id after a committed add)")
    changed_buildings: int = Field(description="距离变化楼栋 buildings of the caller's area whose distance changed")
    changed_in_area: int = Field(description="单元内变化楼栋 of those, buildings in the unit asked for")
    compute_ms: float = Field(description="计算耗时（毫秒）time to compute the change")
    figures: list[WhatIfFigure] = Field(description="前后对比 coverage before and after per profile and circle")
    committed: bool = Field(description="已写入 whether the edit was written")
    method: str = Field(description="距离算法 network or euclidean")
    level: str | None = Field(description="层级 level of the unit asked for")
    code: str | None = Field(description="编码 code of the unit asked for")
    total_ms: float = Field(description="总耗时（毫秒）total time")
    access_m: float | None = Field(
        None, description="接入距离（米）straight leg from the new position to the walking network (add / move)"
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="提示 bilingual warnings (long access leg, leg across water), each naming its rule",
    )
    run_id: int | None = Field(None, description="计算批次 the coverage run written (commit only)")
    categories_updated: list[str] | None = Field(None, description="更新的类别 categories recomputed (commit only)")
    buildings_updated: int | None = Field(
        None, description="更新楼栋 buildings whose stored distance changed (commit; null for area-bound callers)"
    )


class CommunityFigure(Answer):
    """一个社区的覆盖 coverage of one community for one category, circle and profile."""

    code: str = Field(description="社区编码 community code")
    name: str = Field(description="社区名称 community name")
    street_name: str = Field(description="街道名称 street name")
    buildings: int = Field(description="楼栋数 buildings")
    buildings_in: int = Field(description="圈内楼栋 buildings within the circle")
    households: float = Field(description="户数 households")
    households_in: float = Field(description="圈内户数 households within the circle")
    households_beyond: float = Field(description="圈外户数 households beyond the circle")
    residents: int = Field(description="人数 residents")
    residents_in: int = Field(description="圈内人数 residents within the circle")
    share_households: float | None = Field(description="户数覆盖率 share of households within (0–1)")
    share_residents: float | None = Field(description="人数覆盖率 share of residents within (0–1)")
    gaps: int = Field(description="盲区数 gap areas holding buildings of the community")


class CommunityFigures(Answer):
    """各社区覆盖 coverage per community of the caller's area."""

    model_config = example(
        {
            "category": "weisheng",
            "name_zh": "卫生服务",
            "name_en": "health",
            "circle": "c15",
            "profile": "standard",
            "budget_m": 1000,
            "method": "network",
            "rows": [],
        }
    )

    category: str = Field(description="服务类别 service category")
    name_zh: str | None = Field(description="中文名 category name in Chinese")
    name_en: str | None = Field(description="英文名 category name in English")
    circle: str = Field(description="生活圈 circle")
    profile: str = Field(description="步行方式 walking profile")
    budget_m: float = Field(description="距离预算（米）walking distance of the circle")
    method: str = Field(description="距离算法 network or euclidean")
    rows: list[CommunityFigure] = Field(description="各社区 one row per community, by code")


class ComputeOut(Answer):
    """计算结果 a stored coverage run."""

    model_config = example(
        {
            "run_id": 3,
            "method": "network",
            "buildings": 120,
            "facilities": 40,
            "categories": 9,
            "rows_written": 1080,
            "seconds": {"total": 2.1},
            "snap": {},
            "components": [],
        }
    )

    run_id: int = Field(description="计算批次 id of the run")
    method: str = Field(description="距离算法 network or euclidean")
    buildings: int = Field(description="楼栋数 buildings")
    facilities: int = Field(description="设施数 facilities")
    categories: int = Field(description="类别数 categories computed")
    rows_written: int = Field(description="写入行数 distance rows written")
    seconds: dict[str, Any] = Field(description="耗时（秒）time per step")
    snap: dict[str, Any] = Field(description="吸附摘要 how buildings and facilities snapped to the graph")
    components: list[dict[str, Any]] = Field(description="连通分量 components of the walking graph")
