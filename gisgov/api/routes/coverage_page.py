"""/coverage: the coverage page 便民服务圈 (plain Leaflet page, no folium).

``web/coverage/index.html`` with its asset URLs filled in. The page picks a service category, circle and
profile (kept in the URL hash), draws community and grid outlines with names, the category's service
area and gaps, buildings by walking distance class and the category's facilities, lists suggested
sites with the community they fall in, runs what-if edits (add / move / remove a facility, nothing
stored) and shows figures per community in a sortable table. Its data come from ``/api/coverage/…``
(areas, gaps, buildings, facilities and per-community figures cached per computation run:
:mod:`gisgov.coverage.cache`), ``/api/layers/community`` and ``/api/layers/grid``; nothing leaves the app.

The page needs sign-in (the app-wide gate redirects to /login); what it shows follows the caller's
scope (cut to the caller's area) and role (suggested sites and what-if need ``run_analyses``; the page
leaves them out when the API answers 403). Aggregates only.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse

from gisgov.api.pages import LeafletPage

router = APIRouter()
PAGE = LeafletPage("coverage", "便民服务圈 coverage")


@router.get(
    "/coverage",
    response_class=HTMLResponse,
    tags=["maps"],
    summary="便民服务圈 Coverage page: service areas, gaps, suggested sites, what-if, figures per community",
)
def coverage_page(request: Request) -> HTMLResponse:
    return PAGE.response(request.app.state.settings)


def setup(app: FastAPI) -> None:
    """Serve ``web/coverage`` (the page's own JS/CSS) at /static/coverage."""
    PAGE.mount(app)
