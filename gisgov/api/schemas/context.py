"""Answers of the geographic context router (``/api/context``): roads, water and facilities for a map view,
and the basemap configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gisgov.api.schemas._base import Answer, example
from gisgov.api.schemas.geojson import FeatureCollection

_ROAD = {
    "type": "Feature",
    "geometry": {"type": "LineString", "coordinates": [[116.39, 39.9], [116.4, 39.9]]},
    "properties": {"class": "arterial", "name": "示例大道"},
}


class ContextLayers(Answer):
    """地理底图要素 the geographic context of a map view: roads, water and (when the account may see them)
    facilities, clipped to the box and simplified for the zoom."""

    model_config = example(
        {
            "bbox": [116.38, 39.89, 116.41, 39.92],
            "zoom": 15,
            "arterials_only": False,
            "roads": {"type": "FeatureCollection", "features": [_ROAD]},
            "water": {"type": "FeatureCollection", "features": []},
            "facilities": {"type": "FeatureCollection", "features": []},
            "truncated": False,
        }
    )

    bbox: list[float] = Field(description="范围 the box asked for: minlon, minlat, maxlon, maxlat (WGS84)")
    zoom: int = Field(description="缩放级别 the zoom the geometry is simplified for")
    arterials_only: bool = Field(description="仅主干道 true below the zoom where local roads are drawn")
    roads: FeatureCollection = Field(description="道路 road lines: properties class (arterial, local, …), name")
    water: FeatureCollection = Field(description="水系 rivers and water: properties kind (river, water), name")
    facilities: FeatureCollection | None = Field(
        None,
        description="设施 facility points in the caller's area (properties code, name, category_code, category, "
        "kind); null when the account may not see the facility layer",
    )
    truncated: bool = Field(description="已截断 true when a layer hit its feature cap (zoom in for the rest)")


class BasemapLayer(Answer):
    url: str = Field(description="瓦片地址模板 XYZ tile URL template ({s}, {z}, {x}, {y} or {-y})")
    subdomains: str = Field(description="子域 values of {s}")
    max_zoom: int = Field(description="最大级别 largest zoom the tiles exist for")
    overlay: bool = Field(description="注记层 true for a label layer drawn over the base")


class BasemapConfig(Answer):
    """底图配置 the configured basemap (GISGOV_BASEMAP…): what the pages draw under the data."""

    model_config = example(
        {"kind": "none", "crs": "wgs84", "attribution": "", "layers": [], "hosts": []},
    )

    kind: Literal["none", "tianditu", "amap", "tencent", "custom"] = Field(description="底图类型 basemap preset")
    crs: Literal["wgs84", "gcj02"] = Field(
        description="瓦片坐标系 datum of the tiles: wgs84 (also CGCS2000) or gcj02 (the pages shift the data onto it)"
    )
    attribution: str = Field(description="版权说明 attribution shown on the map")
    layers: list[BasemapLayer] = Field(description="瓦片图层 tile layers, base first (empty for none)")
    hosts: list[str] = Field(description="瓦片服务器 tile hosts the pages load images from (the CSP allows these)")
