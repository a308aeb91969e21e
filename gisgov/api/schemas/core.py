"""Answers of the core routes: health, hierarchy, layer catalog, layer features, one feature."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gisgov.api.schemas._base import Answer, example
from gisgov.api.schemas.geojson import Feature, FeatureCollection


class Health(Answer):
    """健康状态 database, PostGIS and schema state."""

    model_config = example(
        {
            "status": "ok",
            "postgis": "3.4.2",
            "schema": "0021_events",
            "dataset": {"name": "示例城市", "synthetic": True},
        }
    )

    status: str = Field(description="状态 'ok' when the database answers")
    postgis: str | None = Field(description="PostGIS 版本 PostGIS library version")
    schema_: str | None = Field(alias="schema", description="数据库版本 Alembic revision of the schema")
    dataset: Any = Field(None, description="数据集（仅登录后）the dataset label and notes (signed-in callers only)")


class TreeNode(Answer):
    """层级节点 a street, community or grid with its counts."""

    level: str = Field(description="层级 street | community | grid")
    code: str = Field(description="编码 code")
    name: str | None = Field(description="名称 name")
    households: int = Field(description="户数 households (caller's area only)")
    residents: int = Field(description="人数 residents (caller's area only)")
    buildings: int = Field(description="楼栋数 buildings (caller's area only)")
    children: list[TreeNode] | None = Field(None, description="下级 child nodes (grids have none)")
    grid_level: Any = Field(None, description="网格级别 grid level (grids only)")


class Hierarchy(Answer):
    """层级树 street → community → grid tree of the caller's area."""

    model_config = example(
        {
            "streets": [
                {
                    "level": "street",
                    "code": "340102001",
                    "name": "示例街道",
                    "households": 1200,
                    "residents": 3100,
                    "buildings": 80,
                    "children": [],
                }
            ]
        }
    )

    streets: list[TreeNode] = Field(description="街道 the streets of the caller's area, each with its children")
    households: int = Field(description="户数合计 households of the caller's area")
    residents: int = Field(description="人数合计 residents of the caller's area")
    buildings: int = Field(description="楼栋合计 buildings of the caller's area")
    counts: dict[str, int] = Field(description="节点数 number of streets, communities and grids listed")


class LayerInfo(Answer):
    """图层 one layer of the catalog the caller may see."""

    model_config = example(
        {
            "name": "grid",
            "title": {"zh": "网格", "en": "Grids"},
            "geometry": "polygon",
            "parent": "community",
            "style": {"color": "#1f5fbf"},
            "min_zoom": 13,
            "counts": True,
            "properties": ["code", "name"],
            "href": "/api/layers/grid",
        }
    )

    name: str = Field(description="图层名 layer name (the level)")
    title: dict[str, Any] = Field(description="标题 title {zh, en}")
    geometry: str | None = Field(description="几何类型 geometry kind")
    parent: str | None = Field(description="上级图层 parent layer, if any")
    style: dict[str, Any] = Field(description="样式 Leaflet style")
    min_zoom: int | None = Field(description="最小缩放级别 minimum zoom at which the layer is drawn")
    counts: bool = Field(description="是否含统计 whether features carry household/resident counts")
    properties: Any = Field(description="属性 the feature properties the layer exposes")
    href: str = Field(description="要素地址 URL of the layer's features")


class LayerPage(FeatureCollection):
    """图层要素分页 one page of a layer's features (OGC API Features style members)."""

    layer: str | None = Field(None, description="图层名 the layer")
    numberMatched: int | None = Field(None, description="匹配总数 features matching (caller's area)")
    numberReturned: int | None = Field(None, description="本页数量 features in this page")
    links: list[dict[str, Any]] | None = Field(None, description="链接 self / next / prev links")


class FeatureDetail(Feature):
    """单个要素 one feature by code, with a summary of its children."""

    children: Any = Field(None, description="下级摘要 the children of the feature (per child layer)")
