"""Answers of the drill-down statistics (``/api/stats…``). Outlines are GeoJSON
(:class:`gisgov.api.schemas.geojson.FeatureCollection` with ``level``, ``code``, ``child_level``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gisgov.api.schemas._base import Answer, example
from gisgov.api.schemas.geojson import FeatureCollection


class UnitStats(Answer):
    """单元统计 indicators of one unit (the whole city, a street, community, grid or compound) and of each
    direct child. Special-group counts may be ``"<5"`` / ``"≥5"`` for roles that see them suppressed."""

    model_config = example(
        {
            "level": "street",
            "level_label": {"zh": "街道", "en": "Street"},
            "code": "340102001",
            "name": "示例街道",
            "path": [{"level": "city", "code": None, "name": "示例市"}],
            "reference_year": 2024,
            "synthetic": True,
            "stats": {"households": 1200, "residents": 3100, "buildings": 80},
            "children": {"level": "community", "items": [], "rest": None},
            "labels": {"special_groups": [], "staff_roles": [], "age_bands": []},
            "coverage": None,
            "area": {"scope": "", "limited": False, "note": None},
            "suppression": None,
            "staff_list": None,
        }
    )

    level: str = Field(description="层级 city | street | community | grid | compound")
    level_label: dict[str, Any] = Field(description="层级名称 level name {zh, en}")
    code: str | None = Field(description="编码 the unit's code (null for the city)")
    name: str | None = Field(description="名称 the unit's name")
    path: list[Any] = Field(description="上级路径 the units above, city first")
    reference_year: int | None = Field(description="参考年份 year the ages are counted at")
    synthetic: bool = Field(description="合成数据 whether the dataset is synthetic")
    stats: dict[str, Any] = Field(description="指标 the unit's indicators (households, residents, age bands …)")
    children: dict[str, Any] = Field(description="下级 the direct children: level, items (each with stats), rest")
    labels: dict[str, Any] = Field(description="标签 names of special groups, staff roles and age bands")
    coverage: Any = Field(description="生活圈 the service-circle figures' settings (null without a catalog)")
    area: dict[str, Any] = Field(description="辖区 the caller's area and whether the unit was limited to it")
    suppression: Any = Field(description="小数抑制 how small special-group counts are shown (null: exact)")
    staff_list: Any = Field(description="网格员 the grid's staff (role, name, masked phone; grids, some roles)")


class UnitFeatures(FeatureCollection):
    """单元及下级范围 the unit's outline (``role: unit``) and its children's polygons (``role: child``)."""

    level: str | None = Field(None, description="层级 the unit's level (city for the whole city)")
    code: str | None = Field(None, description="编码 the unit's code (null for the city)")
    child_level: str | None = Field(None, description="下级层级 the children's level")
