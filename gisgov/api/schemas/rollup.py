"""Answers of the province roll-up 省级汇总 (``/api/rollup/…``): the cities' exported aggregates as the
province holds them. A figure is a count, or a suppression label as the aggregate-only roles see it
(``"<5"``, ``"≥5"``); a sum over a suppressed figure is a lower bound ``"≥N"``. Nothing personal."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gisgov.api.schemas._base import Answer, example
from gisgov.api.schemas.geojson import FeatureCollection

Figure = int | str | None
_FIGURES = (
    "指标 named counts: households, residents, buildings, compounds, old_compounds, grids, age.<band>, "
    "special.people, special.group.<code>, staff.total, staff.role.<role>, coverage.…; a value is a count, "
    'a suppression label ("<5" / "≥5") or, for a sum over a suppressed figure, a lower bound "≥N"'
)
_SHARES = (
    "比例 shares recomputed from the (summed) numerators and denominators (never averaged): old_compound_share, "
    "elderly_share, special_per_1000, coverage.<category>.share, coverage.complete.share; null when undefined"
)
_FIGS_EXAMPLE = {"households": 812, "residents": 2090, "special.people": 41, "special.group.lonely_elderly": "<5"}
_SHARES_EXAMPLE = {"old_compound_share": 0.25, "elderly_share": 0.2311, "special_per_1000": 19.62}


class RollupCity(Answer):
    """一个市（区）的汇总行 one city's row: its export's figures, the export time and whether it is stale."""

    city_code: str = Field(description="城市代码 the city (district) code the export was made under")
    name: str = Field(description="名称 the city's name")
    dataset: str | None = Field(None, description="数据集 the exporting city's dataset name")
    exported_at: str = Field(description="导出时间 export time (ISO 8601, with zone): the roll-up's version")
    loaded_at: str = Field(description="载入时间 when the province loaded it (ISO 8601)")
    age_hours: float = Field(description="导出距今小时数 hours since the export")
    stale: bool = Field(description="是否过期 true when the export is older than stale_hours")
    checksum: str | None = Field(None, description="校验和 the export file's sha256 checksum")
    small_cell_k: int = Field(description="小数抑制阈值 the city's small-cell threshold k")
    coverage: dict[str, Any] | None = Field(None, description="服务圈口径 the coverage circle and run, null if none")
    streets: int = Field(description="街道数 streets in the export")
    communities: int = Field(description="社区数 communities in the export")
    figures: dict[str, Figure] = Field(description=_FIGURES)
    shares: dict[str, float | None] = Field(description=_SHARES)


class ProvinceTotals(Answer):
    """全省合计 the province: exact sums of the cities' figures (lower bounds where a city suppressed one)."""

    cities: int = Field(description="城市数 cities loaded")
    streets: int = Field(description="街道数 streets, all cities")
    communities: int = Field(description="社区数 communities, all cities")
    stale_cities: int = Field(0, description="过期城市数 cities whose export is stale")
    figures: dict[str, Figure] = Field(description=_FIGURES)
    shares: dict[str, float | None] = Field(description=_SHARES)


class ProvinceView(Answer):
    """省级汇总 the province view: one row per city and the province totals."""

    model_config = example(
        {
            "generated_at": "2026-12-01T09:00:00+00:00",
            "stale_hours": 26,
            "cities": [
                {
                    "city_code": "340104",
                    "name": "示例区",
                    "dataset": "sample",
                    "exported_at": "2026-12-01T02:00:00+00:00",
                    "loaded_at": "2026-12-01T03:00:00+00:00",
                    "age_hours": 7.0,
                    "stale": False,
                    "checksum": "sha256:" + "0" * 64,
                    "small_cell_k": 5,
                    "coverage": None,
                    "streets": 2,
                    "communities": 8,
                    "figures": _FIGS_EXAMPLE,
                    "shares": _SHARES_EXAMPLE,
                }
            ],
            "province": {
                "cities": 1,
                "streets": 2,
                "communities": 8,
                "stale_cities": 0,
                "figures": _FIGS_EXAMPLE,
                "shares": _SHARES_EXAMPLE,
            },
            "labels": {"special_groups": [], "staff_roles": [], "age_bands": ["0-14", "15-59", "60+"]},
            "notes": [],
        }
    )

    generated_at: str = Field(description="生成时间 time of this answer (ISO 8601)")
    stale_hours: int = Field(description="过期阈值（小时）an export older than this is marked stale")
    cities: list[RollupCity] = Field(description="各市 one row per loaded city, by code")
    province: ProvinceTotals = Field(description="全省合计 the province totals")
    labels: dict[str, list[Any]] = Field(description="标签 special groups, staff roles, age bands (all cities)")
    notes: list[str] = Field(description="说明 notes, e.g. coverage computed with different circles")


class RollupUnit(Answer):
    """一个街道或社区 one street or community of a city's export."""

    city_code: str = Field(description="城市代码 the city")
    city_name: str = Field(description="城市名称 the city's name")
    level: str = Field(description="层级 street | community")
    code: str = Field(description="编码 the unit's code (unique within its city)")
    name: str = Field(description="名称 the unit's name")
    parent_code: str | None = Field(None, description="上级编码 the parent's code (the city code for a street)")
    figures: dict[str, Figure] = Field(description=_FIGURES)
    shares: dict[str, float | None] = Field(description=_SHARES)


class UnitTotal(Answer):
    """合计 the sums over the listed units."""

    units: int = Field(description="单元数 units listed")
    figures: dict[str, Figure] = Field(description=_FIGURES)


class RollupUnits(Answer):
    """各单元 the loaded streets or communities (of one city, or of all), with the sums over them."""

    model_config = example(
        {
            "level": "street",
            "city_code": "340104",
            "items": [
                {
                    "city_code": "340104",
                    "city_name": "示例区",
                    "level": "street",
                    "code": "340104001",
                    "name": "示例街道",
                    "parent_code": "340104",
                    "figures": _FIGS_EXAMPLE,
                    "shares": _SHARES_EXAMPLE,
                }
            ],
            "total": {"units": 1, "figures": _FIGS_EXAMPLE},
        }
    )

    level: str = Field(description="层级 street | community")
    city_code: str | None = Field(None, description="城市代码 the city asked for; null = every city")
    items: list[RollupUnit] = Field(description="单元 the units, by city and code")
    total: UnitTotal = Field(description="合计 sums over the listed units")


class RollupFeatures(FeatureCollection):
    """汇总范围 outlines the cities exported (WGS84, simplified at export); properties city_code, level, code,
    name, exported_at and headline counts. A city's outline is the union of its streets'."""

    missing: int = Field(0, description="无范围单元数 units exported without an outline (not drawn)")
