"""Household estimates for buildings without a count: footprint area × floors ÷ dwelling size.

Estimated counts carry ``building.households_estimated = true`` (shown in exports and maps); a
count from the source file or from an imported roster is never flagged, and a roster always
replaces an estimate (:func:`roster_wins`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from gisgov.ingest.settings import IngestSettings, get_ingest_settings


def estimate_households(area_m2, floors, *, dwelling_m2: float, default_floors: int = 1) -> np.ndarray:
    """Households = round(area × floors ÷ dwelling_m2); unknown floors → ``default_floors``."""
    area = np.asarray(area_m2, dtype=float)
    fl = np.asarray(floors, dtype=float)
    fl = np.where(np.isnan(fl) | (fl <= 0), default_floors, fl)
    return np.rint(np.maximum(area, 0) * fl / dwelling_m2).astype(np.int64)


def apply_estimates(
    conn: Connection,
    codes: list[str] | None = None,
    settings: IngestSettings | None = None,
    floors_override: dict[str, float] | None = None,
) -> int:
    """Estimate households for buildings (all, or ``codes``) that have a footprint and no count."""
    s = settings or get_ingest_settings()
    where = "households IS NULL AND geom IS NOT NULL"
    params: dict = {}
    if codes is not None:
        where += " AND code = ANY(:codes)"
        params["codes"] = list(codes)
    rows = conn.execute(text(f"SELECT code, gisgov_area_m2(geom), floors FROM building WHERE {where}"), params).all()
    if not rows:
        return 0
    bcodes = [r[0] for r in rows]
    floors = [r[2] if r[2] is not None else (floors_override or {}).get(r[0], np.nan) for r in rows]
    est = estimate_households(
        [r[1] for r in rows], np.array(floors, dtype=float), dwelling_m2=s.dwelling_m2, default_floors=s.default_floors
    )
    conn.execute(
        text("""
        UPDATE building b SET households = e.n, households_estimated = true
        FROM unnest(CAST(:codes AS text[]), CAST(:n AS integer[])) AS e(code, n)
        WHERE b.code = e.code"""),
        {"codes": bcodes, "n": [int(x) for x in est]},
    )
    return len(bcodes)


# ---------------------------------------------------------------- which OSM buildings house households
#: land use whose generic buildings (``building=yes``) house no households
NON_RESIDENTIAL_LANDUSE = frozenset(
    {
        "industrial",
        "commercial",
        "retail",
        "military",
        "railway",
        "port",
        "quarry",
        "landfill",
        "garages",
        "depot",
        "religious",
        "education",
        "institutional",
        "farmyard",
        "greenhouse_horticulture",
        "cemetery",
    }
)
#: ``building=*`` values that house no households (explicit tags always win over land use)
NON_RESIDENTIAL_BUILDINGS = frozenset(
    {
        "industrial",
        "factory",
        "manufacture",
        "warehouse",
        "storage_tank",
        "silo",
        "retail",
        "commercial",
        "supermarket",
        "kiosk",
        "office",
        "government",
        "civic",
        "public",
        "school",
        "kindergarten",
        "college",
        "university",
        "hospital",
        "clinic",
        "church",
        "chapel",
        "cathedral",
        "mosque",
        "temple",
        "shrine",
        "religious",
        "train_station",
        "transportation",
        "garage",
        "garages",
        "parking",
        "carport",
        "hangar",
        "shed",
        "hut",
        "cabin",
        "barn",
        "cowshed",
        "stable",
        "sty",
        "farm_auxiliary",
        "greenhouse",
        "service",
        "stadium",
        "sports_hall",
        "sports_centre",
        "grandstand",
        "hotel",
        "toilets",
        "fire_station",
        "roof",
        "power",
        "substation",
        "transformer_tower",
        "construction",
        "ruins",
        "bunker",
        "pavilion",
        "gatehouse",
        "guardhouse",
        "bridge",
        "water_tower",
    }
)
#: tags on the building itself that mark it as a workplace / service, not a dwelling
NON_RESIDENTIAL_KEYS = ("shop", "amenity", "office", "craft", "industrial", "healthcare", "tourism", "man_made")
#: names of dwellings (宿舍 dormitory, 家属院/家属楼 staff housing, 公寓 flats, 住宅, 小区 …): win over the list below
RESIDENTIAL_NAME = re.compile(r"宿舍|家属院|家属楼|家属区|公寓|住宅|小区|花园|新村|新苑|嘉园|家园|民居|住房")
#: names of workplaces and services (工厂 factory, 仓库 warehouse, 公司 company, 学校 school, 医院 hospital …)
NON_RESIDENTIAL_NAME = re.compile(
    r"厂|车间|仓库|仓储|物流|公司|集团|工业|产业园|学校|小学|中学|大学|学院|幼儿园|"
    r"医院|卫生院|诊所|卫生服务|超市|商场|商城|市场|购物|百货|银行|酒店|宾馆|饭店|车站|加油站|派出所|政府|"
    r"委员会|办事处|服务中心|写字楼|办公|寺|庙|教堂|体育馆|体育场|图书馆|博物馆|影院|剧院|变电站|停车"
)
#: reasons a building gets no household estimate (load report ``stats.households_excluded``)
EXCLUDE_REASONS = {
    "building_tag": "建筑类型非住宅 building=* is not a dwelling (factory, warehouse, school, shop …)",
    "poi_tag": "建筑带商业/服务标签 the building carries shop/amenity/office/craft tags",
    "name": "名称显示非住宅 its name names a workplace or service (厂, 仓库, 公司, 学校, 医院, 超市, 商场 …)",
    "landuse": "位于工业/商业等用地内 a generic building inside industrial/commercial/retail/military … land use",
    "small": "面积过小（棚屋、岗亭）too small for a dwelling (shed, kiosk)",
}


def residential_mask(
    kinds: Sequence[str | None],
    names: Sequence[str | None],
    area_m2: Iterable[float],
    landuse: Sequence[str | None] | np.ndarray,
    tags: Sequence[dict[str, Any] | None],
    *,
    residential_kinds: Iterable[str],
    residential_tags: Iterable[str] = (),
    all_residential: bool = False,
    min_area_m2: float = 20.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Which buildings get a household estimate, and why each other one does not.

    Per building: its ``building=*`` value (``kinds``), name, footprint area (m²), the land use it
    lies in (None: none), and its other OSM tags. Returns (residential mask, reason per building:
    '' for residential, else a key of :data:`EXCLUDE_REASONS`).

    Rules, in order: ``all_residential`` → all residential. A ``building=*`` value in
    ``residential_tags`` (the user's override) → residential. An explicit dwelling value
    (``residential_kinds`` other than ``yes``: apartments, dormitory …) → residential, even inside
    industrial land (factory dormitories). A value outside ``residential_kinds`` or in
    :data:`NON_RESIDENTIAL_BUILDINGS` → ``building_tag``. A generic building (``building=yes``): a
    dwelling name → residential; else shop/amenity/… tags → ``poi_tag``; a workplace name → ``name``;
    inside non-residential land use → ``landuse``; smaller than ``min_area_m2`` → ``small``.
    """
    area = np.asarray(list(area_m2), dtype=float)
    n = len(area)
    override = {str(k).strip().lower() for k in residential_tags}
    res_kinds = {str(k).strip().lower() for k in residential_kinds}
    dwelling = res_kinds - NON_RESIDENTIAL_BUILDINGS - {"yes"}
    reasons = np.full(n, "", dtype=object)
    if all_residential:
        return np.ones(n, dtype=bool), reasons
    for i in range(n):
        kind = (kinds[i] or "yes").strip().lower()
        if kind in override:
            continue
        if kind != "yes" or "yes" not in res_kinds:
            if kind not in dwelling:
                reasons[i] = "building_tag"
            continue
        name = (names[i] or "").strip()
        if name and RESIDENTIAL_NAME.search(name):
            continue
        t = tags[i] or {}
        if any(t.get(k) not in (None, "", "no") for k in NON_RESIDENTIAL_KEYS):
            reasons[i] = "poi_tag"
        elif name and NON_RESIDENTIAL_NAME.search(name):
            reasons[i] = "name"
        elif landuse[i] is not None and str(landuse[i]).strip().lower() in NON_RESIDENTIAL_LANDUSE:
            reasons[i] = "landuse"
        elif np.isfinite(area[i]) and area[i] < min_area_m2:
            reasons[i] = "small"
    return reasons == "", reasons


def roster_wins(conn: Connection, building_codes: list[str]) -> int:
    """Replace estimated (or missing) household counts with the roster's household count."""
    if not building_codes:
        return 0
    r = conn.execute(
        text("""
        UPDATE building b SET households = s.n, households_estimated = false
        FROM (SELECT building_code, count(*) AS n FROM household
              WHERE building_code = ANY(:codes) GROUP BY building_code) s
        WHERE b.code = s.building_code AND (b.households IS NULL OR b.households_estimated)"""),
        {"codes": list(building_codes)},
    )
    return r.rowcount
