"""/map (the hierarchy map), ``/`` → /map, and the vendored assets under /static/vendor (only the
files the pages use: :func:`gisgov.maps.assets.vendor_allowlist`; anything else answers 404).

The map is built at request time for the signed-in account: the catalog's ``on_map`` layers it
may see are read from PostGIS through the ``db`` dependency (the same SQL and the same scope as
/api/layers: the caller's area, plus the outline of the street above a community) into
GeoDataFrames, then handed to the pure builder :func:`gisgov.maps.hierarchy_map.build_hierarchy_map`
with the geographic context of their extent (roads, water, facilities in the caller's area: /api/context).
Without a session /map redirects to /login.
"""

from __future__ import annotations

import html
import json
import os

import geopandas as gpd
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Connection
from starlette.exceptions import HTTPException

from gisgov.api import queries
from gisgov.api.answers import HEADER, cached
from gisgov.api.deps import DB, current_principal
from gisgov.api.routes.context import context_for_bounds, facility_scope_for
from gisgov.api.routes.core import get_catalog
from gisgov.config import basemap_config
from gisgov.crs import WGS84
from gisgov.layers import Catalog, Layer
from gisgov.maps.assets import VENDOR_URL, node_modules, require_assets, vendor_allowlist
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
        return gpd.GeoDataFrame({"code": [], "name": []}, geometry=gpd.GeoSeries([], crs=WGS84), crs=WGS84)
    return gpd.GeoDataFrame.from_features(features, crs=WGS84)


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


@router.get(
    "/map",
    response_class=HTMLResponse,
    tags=["maps"],
    summary="网格地图 Map of streets, communities, grids and compounds (offline assets)",
)
def hierarchy_map(request: Request, p: Principal = Depends(current_principal), conn: Connection = DB) -> Response:
    settings = request.app.state.settings
    require_assets(settings.web_dir)
    cat = get_catalog(request)
    # kept per role and area (and catalog) with a marker where the page names the account, filled in per request
    page = cached(request, conn, p, lambda: _hierarchy_map(request, p, conn, cat), variant=id(cat))
    who = f"{p.display_name}（{p.label} {p.role.value}）· 范围 scope {p.scope_code or '全市 whole city'}"
    body = bytes(page.body).replace(_ACCOUNT_MARK.encode(), html.escape(who).encode())
    headers = {HEADER: page.headers.get(HEADER, "miss")}  # no ETag: the body differs per account
    return HTMLResponse(body, headers=headers)


#: stands for the signed-in account in a kept map page (html.escape leaves it as it is)
_ACCOUNT_MARK = "GISGOV-ACCOUNT-3f9c2a71"


def _hierarchy_map(request: Request, p: Principal, conn: Connection, cat: Catalog) -> HTMLResponse:
    settings = request.app.state.settings
    layers = read_map_layers(conn, cat, p)
    frames = [f for _, f in layers if not f.empty]
    bounds = frames and [
        min(f.total_bounds[0] for f in frames),
        min(f.total_bounds[1] for f in frames),
        max(f.total_bounds[2] for f in frames),
        max(f.total_bounds[3] for f in frames),
    ]
    context = (
        context_for_bounds(
            conn, bounds, srid=settings.srid, facility_scope=facility_scope_for(request, p), scope=queries.Scope.of(p)
        )
        if bounds
        else None
    )
    m = build_hierarchy_map(
        layers,
        dataset=queries.dataset_info(conn),
        basemap_url=settings.basemap_url,
        basemap_attribution=settings.basemap_attribution,
        links=[("/dashboard", "领导驾驶舱 Leaders' dashboard"), ("/coverage", "服务圈 Coverage")],
        user=_ACCOUNT_MARK,
        context=context,
        basemap=basemap_config(settings),
    )
    return HTMLResponse(render_html(m))


class VendorFiles(StaticFiles):
    """``web/node_modules`` restricted to :func:`vendor_allowlist`: the asset files the pages name
    and the images/fonts those assets load. Any other path (package.json, lock files, other
    packages, dot-files, ``..``) answers 404, whether or not the file exists."""

    def __init__(self, web_dir) -> None:
        self.web_dir = web_dir
        super().__init__(directory=node_modules(web_dir), check_dir=False)

    async def check_config(self) -> None:
        return None  # assets not installed: every path is simply 404 (the pages say how to install)

    async def get_response(self, path: str, scope) -> Response:
        # ``path`` is normalised by StaticFiles; a request spelled with '.' or '..' segments is refused as such
        dotted = any(seg in (".", "..") for seg in scope.get("path", "").split("/"))
        if dotted or not vendor_allowlist(self.web_dir).allows(path.replace(os.sep, "/")):
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


def setup(app: FastAPI) -> None:
    """Serve the vendored assets the pages use (from ``web/node_modules``, installed by ``npm ci``
    from the lock file) at /static/vendor."""
    app.mount(VENDOR_URL, VendorFiles(app.state.settings.web_dir), name="vendor")
