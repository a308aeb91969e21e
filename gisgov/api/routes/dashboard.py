"""/dashboard: the leaders' drill-down map 领导驾驶舱 (plain Leaflet page, no folium).

The page is ``web/dashboard/index.html`` with its asset URLs filled in (vendored Leaflet from
/static/vendor, its own JS/CSS from /static/dashboard with a content hash for cache busting) and a
small JSON config (basemap). All data come from ``/api/stats…``, ``/api/auth/me`` (the signed-in user
in the top bar, with sign-out) and ``/health``; nothing leaves the app. The page needs sign-in (the
app-wide gate redirects to /login); what it shows follows the caller's scope and role (small
special-group counts arrive as ``"<5"`` for aggregate-only roles; staff names only for roles that may
read personal data, phones always masked).

Leaders' indicators (issue 13): the page also reads the events statistics (``/api/events/stats``,
``/api/events/geojson``), staff gaps (``/api/staff/gaps``), compound rules (``/api/compounds/check``,
``/api/compounds/breaches``) and special-group services (``/api/special/summary``); a panel whose API
answers 403 for the role is left out. ``GET /api/dashboard/events?street=`` gives the event statistics
of one street (``/api/events/stats`` filters by community or grid only), same figures and shape.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection, text

from gisgov.api.answers import cached, events_seen, model_json
from gisgov.api.deps import DB, in_scope_or_404, require
from gisgov.api.pages import LeafletPage
from gisgov.api.schemas.dashboard import StreetEventStats
from gisgov.events import stats as event_stats
from gisgov.security.roles import Perm, Principal

router = APIRouter()
PAGE = LeafletPage("dashboard", "驾驶舱 dashboard")


@router.get(
    "/dashboard",
    response_class=HTMLResponse,
    tags=["maps"],
    summary="领导驾驶舱 Leaders' drill-down map: city → street → community → grid → compound",
)
def dashboard(request: Request) -> HTMLResponse:
    return PAGE.response(request.app.state.settings)


@router.get(
    "/api/dashboard/events",
    tags=["events 事件"],
    summary="街道事件统计 Event statistics of one street (counts only; same figures as /api/events/stats)",
    response_model=StreetEventStats,
    response_model_exclude_unset=True,
)
def street_event_stats(
    request: Request,
    conn: Connection = DB,
    p: Principal = Depends(require(Perm.read_aggregates)),
    street: str = Query(..., pattern=r"^[0-9]{9}$", description="街道编码 street code"),
) -> Response:
    """Kept per worker (:mod:`gisgov.api.answers`) until an event is reported or changes state, at most a
    minute (deadlines pass with the clock)."""
    in_scope_or_404(p, street, "街道 street")
    return cached(
        request,
        conn,
        p,
        lambda: model_json(StreetEventStats, _street_event_stats(conn, street)),
        variant=events_seen(conn),
    )


def _street_event_stats(conn: Connection, street: str) -> dict:
    rows = conn.execute(
        text("""
        SELECT id, category, status, grid_code, community_code, reported_at, closed_at, deadline, department,
               escalated_to
        FROM event WHERE street_code = :s ORDER BY id"""),
        {"s": street},
    ).all()
    out = event_stats.summarize([event_stats.Row(*r) for r in rows], event_stats.now_db(conn))
    return {"street": street, "community": None, "grid": None} | out


def setup(app: FastAPI) -> None:
    """Serve ``web/dashboard`` (the page's own JS/CSS) at /static/dashboard."""
    PAGE.mount(app)
