"""/dashboard: the leaders' drill-down map 领导驾驶舱 (plain Leaflet page, no folium).

The page is ``web/dashboard/index.html`` with its asset URLs filled in (vendored Leaflet from
/static/vendor, its own JS/CSS from /static/dashboard with a content hash for cache busting) and a
small JSON config (basemap). All data come from ``/api/stats…``, ``/api/auth/me`` (the signed-in user
in the top bar, with sign-out) and ``/health``; nothing leaves the app. The page needs sign-in (the
app-wide gate redirects to /login); what it shows follows the caller's scope and role (small
special-group counts arrive as ``"<5"`` for aggregate-only roles; staff names only for roles that may
read personal data, phones always masked).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse

from gisgov.api.pages import LeafletPage
from gisgov.maps.assets import require_assets

router = APIRouter()
PAGE = LeafletPage("dashboard", "驾驶舱 dashboard")


@router.get("/dashboard", response_class=HTMLResponse, tags=["maps"],
            summary="领导驾驶舱 Leaders' drill-down map: city → street → community → grid → compound")
def dashboard(request: Request) -> HTMLResponse:
    settings = request.app.state.settings
    require_assets(settings.web_dir)
    return HTMLResponse(PAGE.render(settings.web_dir, basemap_url=settings.basemap_url,
                                    basemap_attribution=settings.basemap_attribution))


def setup(app: FastAPI) -> None:
    """Serve ``web/dashboard`` (the page's own JS/CSS) at /static/dashboard."""
    PAGE.mount(app)
