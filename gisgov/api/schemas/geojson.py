"""GeoJSON answers (RFC 7946, WGS84 lon/lat) shared by every router.

Geometries stay free JSON objects (``{"type": ..., "coordinates": ...}``); ``properties`` is an object
whose members depend on the layer. Extra members (a feature ``id``, ``bbox``, a ``name``, route-specific metadata) are kept,
so declaring these models as a ``response_model`` never drops what a page reads.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

_POINT: dict[str, Any] = {"type": "Point", "coordinates": [116.397, 39.909]}


class Feature(BaseModel):
    """一个要素 one GeoJSON Feature."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"type": "Feature", "geometry": _POINT, "properties": {"code": "110101001001"}}]
        },
    )

    type: Literal["Feature"] = Field("Feature", description="固定为 Feature always 'Feature'")
    geometry: dict[str, Any] | None = Field(
        None, description="几何（经纬度 WGS84）geometry as a GeoJSON object (lon/lat, WGS84), or null"
    )
    properties: dict[str, Any] | None = Field(
        default_factory=dict, description="属性 the feature's attributes (members depend on the layer)"
    )


class FeatureCollection(BaseModel):
    """要素集合 a GeoJSON FeatureCollection."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "FeatureCollection",
                    "features": [{"type": "Feature", "geometry": _POINT, "properties": {"code": "110101001001"}}],
                }
            ]
        },
    )

    type: Literal["FeatureCollection"] = Field(
        "FeatureCollection", description="固定为 FeatureCollection always 'FeatureCollection'"
    )
    features: list[Feature] = Field(default_factory=list, description="要素列表 the features")


class Page(BaseModel, Generic[T]):
    """分页列表 one page of a list: ``items`` plus where it sits in the whole."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [], "total": 0, "limit": 50, "offset": 0}]})

    items: list[T] = Field(description="本页条目 the items of this page")
    total: int | None = Field(None, description="总数（未知时为空）total number of items, when known")
    limit: int | None = Field(None, description="每页条数 page size asked for")
    offset: int | None = Field(None, description="起始位置 index of the first item of this page")


GEOJSON = "application/geo+json"


class GeoJSONResponse(Response):
    """A GeoJSON text answer (``application/geo+json``)."""

    media_type = GEOJSON


def geojson_ok(model: type[BaseModel] = FeatureCollection, description: str = "GeoJSON (RFC 7946, WGS84)") -> dict:
    """``responses`` entry documenting a GeoJSON 200 answer with ``model`` (use with
    ``response_class=GeoJSONResponse``)."""
    return {200: {"model": model, "description": description}}
