"""/grids/editor: the grid plan editor 网格划分编辑器 (plain Leaflet page, no folium).

The page (``web/grid-editor``) opens an edit session (``POST /api/grids/sessions``), draws the session's
grids, compounds and buildings from ``GET /api/grids/sessions/{id}/layers`` (below), moves a compound or
a building with ``POST /api/grids/sessions/{id}/move``, undoes by moving back, and saves the session as a
draft version with ``POST /api/grids/sessions/{id}/save``. Only aggregate counts are sent: households
and people per grid, compound and building, never names, ID numbers or phones. The page needs a signed-in
account (the app's gate redirects to /login); a session's layers are served to the account that opened it
only. The page's writes send the ``X-CSRF-Token`` header (the ``gisgov_csrf`` cookie) with JSON bodies.

Sessions live in PostgreSQL: the page shows a Chinese message when its session expired (410, with a
button that reopens it keeping the moves: ``resume``) and when a move, save or activation conflicts
(409: the session changed in another tab, or another plan was activated since the session started).
"""

from __future__ import annotations

import json

import numpy as np
import shapely
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection, text

from gisgov.api.deps import DB, require
from gisgov.api.pages import LeafletPage
from gisgov.api.routes.grids import SESSION, edit_session
from gisgov.api.schemas.answer import KEEP_SHAPE
from gisgov.api.schemas.grids import SessionLayers
from gisgov.crs import GEOJSON_PRECISION
from gisgov.gridding import sessions
from gisgov.security.roles import Perm, Principal

router = APIRouter()
PAGE = LeafletPage("grid-editor", "网格编辑器 grid editor")


@router.get(
    "/grids/editor",
    response_class=HTMLResponse,
    tags=["maps"],
    summary="网格划分编辑器 Grid plan editor: move compounds/buildings between grids, live rule checks",
    responses={200: {"description": "页面 the HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
)
def editor_page(request: Request) -> HTMLResponse:
    return PAGE.response(request.app.state.settings)


def _geo(ctx, geom) -> dict | None:
    if geom is None or geom.is_empty:
        return None
    return shapely.geometry.mapping(shapely.set_precision(ctx.to_lonlat(geom), 10.0**-GEOJSON_PRECISION))


@router.get(
    "/api/grids/sessions/{sid}/layers",
    response_model=SessionLayers,
    **KEEP_SHAPE,
    tags=["grids 网格划分"],
    responses=SESSION,
    summary="编辑图层 An edit session's grids (counts, rule breaks, units that cannot leave), compounds and buildings",
)
def session_layers(
    sid: str, request: Request, conn: Connection = DB, p: Principal = Depends(require(Perm.read_aggregates))
) -> dict:
    s = edit_session(conn, request, sid, p)  # 404 unless the caller opened it, 410 once expired
    ed = sessions.editor(conn, s)
    sessions.touch(conn, s)
    ctx = ed.ctx
    a = ctx.atoms
    grids = []
    for g in range(len(ed.codes)):
        row = ed.grid_row(g)
        poly = ed.polys[g]
        row["label"] = (
            list(ctx.to_lonlat(shapely.point_on_surface(poly)).coords[0])
            if poly is not None and not poly.is_empty
            else None
        )
        grids.append(row)
    codes = np.array([*ed.codes, None], dtype=object)  # index -1 -> None
    compounds = []
    for c in range(len(ctx.compounds.code)):
        members = ctx.atoms_of_compound(c)
        in_grids = sorted({codes[int(x)] for x in ed.atom_grid[members] if x >= 0})
        compounds.append(
            {
                "type": "Feature",
                "id": str(ctx.compounds.code[c]),
                "geometry": _geo(ctx, ctx.compounds.geom[c]),
                "properties": {
                    "code": str(ctx.compounds.code[c]),
                    "name": str(ctx.compounds.name[c] or ""),
                    "households": int(a.households[members].sum()),
                    "people": int(a.people[members].sum()),
                    "buildings": int((a.building_id[members] >= 0).sum()),
                    "grids": in_grids,
                },
            }
        )
    foot = {
        r[0]: r[1]
        for r in conn.execute(
            text("SELECT code, ST_AsGeoJSON(coalesce(geom, pos), :prec) FROM building WHERE community_code = :c"),
            {"c": ctx.code, "prec": GEOJSON_PRECISION},
        )
    }
    buildings = []
    for i in np.flatnonzero(a.building_id >= 0).tolist():
        code = str(a.code[i])
        c = int(a.compound[i])
        g = int(ed.atom_grid[i])
        buildings.append(
            {
                "type": "Feature",
                "id": code,
                "geometry": json.loads(foot[code]) if foot.get(code) else _geo(ctx, shapely.Point(a.xy[i])),
                "properties": {
                    "code": code,
                    "compound": str(ctx.compounds.code[c]) if c >= 0 else None,
                    "households": int(a.households[i]),
                    "people": int(a.people[i]),
                    "grid": codes[g] if g >= 0 else None,
                },
            }
        )
    r = ctx.rules
    return {
        "session": s.id,
        "revision": s.revision,
        "base_version": s.base_version,
        "community": {"code": ctx.code, "name": ctx.name},
        "rules": {
            "name": r.name,
            "min_households": r.min_households,
            "max_households": r.max_households,
            "max_people": r.max_people,
        },
        "boundary": _geo(ctx, ctx.boundary),
        "grids": grids,
        "compounds": {"type": "FeatureCollection", "features": compounds},
        "buildings": {"type": "FeatureCollection", "features": buildings},
    }


def setup(app: FastAPI) -> None:
    """Serve ``web/grid-editor`` (the page's own JS/CSS) at /static/grid-editor."""
    PAGE.mount(app)
