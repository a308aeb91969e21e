"""/map (the hierarchy map), ``/`` → /map, and the vendored assets under /static/vendor.

The map is built at request time for the signed-in account: the catalog's ``on_map`` layers it
may see are read from PostGIS through the ``db`` dependency (the same SQL and the same scope as
/api/layers: the caller's area, plus the outline of the street above a community) into
GeoDataFrames, then handed to the pure builder :func:`gisgov.maps.hierarchy_map.build_hierarchy_map`.
Without a session /map redirects to /login.
"""

from __future__ import annotations

import json

import geopandas as gpd
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Connection

from gisgov.api import queries
from gisgov.api.deps import DB, current_principal
from gisgov.api.routes.core import get_catalog
from gisgov.layers import Catalog, Layer
from gisgov.maps.assets import VENDOR_URL, node_modules, require_assets
from gisgov.maps.hierarchy_map import build_hierarchy_map
from gisgov.maps.offline import render_html
from gisgov.security.roles import Principal

router = APIRouter()

# A 3×3 grid on a blue square: the tab icon, drawn here so no file or CDN is needed.
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1f5fbf"/>'
    '<path d="M6 12h20M6 20h20M12 6v20M20 6v20" stroke="#fff" stroke-width="2.5"/>'
    '<rect x="6" y="6" width="20" height="20" fill="none" stroke="#fff" stroke-width="2.5"/></svg>'
)


def frame_from_geojson(features_json: str) -> gpd.GeoDataFrame:
    """GeoDataFrame (EPSG:4326) from a JSON list of GeoJSON features (empty list → empty frame)."""
    features = json.loads(features_json)
    if not features:
        return gpd.GeoDataFrame({"code": [], "name": []}, geometry=gpd.GeoSeries([], crs=4326), crs=4326)
    return gpd.GeoDataFrame.from_features(features, crs=4326)


def read_map_layers(conn: Connection, cat: Catalog, p: Principal) -> list[tuple[Layer, gpd.GeoDataFrame]]:
    """Every ``on_map`` layer the account may see, its features in the account's area, as
    (layer, frame) pairs. Personal layers are never drawn on this map."""
    out = []
    scope = queries.Scope.of(p)
    for lyr in cat.visible_for(p):
        if lyr.on_map and not lyr.personal:
            page = queries.layer_page(conn, cat, lyr, count=False, scope=scope)
            out.append((lyr, frame_from_geojson(page.features_json)))
    return out


@router.get("/", include_in_schema=False)
def index() -> RedirectResponse:
    return RedirectResponse("/map")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    return Response(FAVICON_SVG, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


@router.get("/map", response_class=HTMLResponse, tags=["maps"],
            summary="网格地图 Map of streets, communities, grids and compounds (offline assets)")
def hierarchy_map(request: Request, p: Principal = Depends(current_principal), conn: Connection = DB) -> HTMLResponse:
    settings = request.app.state.settings
    require_assets(settings.web_dir)
    layers = read_map_layers(conn, get_catalog(request), p)
    m = build_hierarchy_map(
        layers,
        dataset=queries.dataset_info(conn),
        basemap_url=settings.basemap_url,
        basemap_attribution=settings.basemap_attribution,
        links=[("/dashboard", "领导驾驶舱 Leaders' dashboard")],
        user=f"{p.display_name}（{p.label} {p.role.value}）· 范围 scope {p.scope_code or '全市 whole city'}",
    )
    return HTMLResponse(render_html(m))


def setup(app: FastAPI) -> None:
    """Serve ``web/node_modules`` (installed by ``npm ci`` from the lock file) at /static/vendor."""
    directory = node_modules(app.state.settings.web_dir)
    app.mount(VENDOR_URL, StaticFiles(directory=directory, check_dir=False), name="vendor")
