"""/dashboard: the leaders' drill-down map 领导驾驶舱 (plain Leaflet page, no folium).

The page is ``web/dashboard/index.html`` with its asset URLs filled in (vendored Leaflet from
/static/vendor, its own JS/CSS from /static/dashboard with a content hash for cache busting) and a
small JSON config (basemap). All data come from ``/api/stats…`` and ``/health``; nothing leaves the app.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from gisgov.errors import GisgovError
from gisgov.maps.assets import asset_url, require_assets

router = APIRouter()
STATIC_URL = "/static/dashboard"
PAGE_FILES = ("index.html", "dashboard.js", "dashboard.css")


class DashboardMissing(GisgovError):
    status_code = 503


def page_dir(web_dir: Path) -> Path:
    return Path(web_dir) / "dashboard"


def _versioned(folder: Path, name: str) -> str:
    digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()[:10]
    return f"{STATIC_URL}/{name}?v={digest}"


def render_page(web_dir: Path, *, basemap_url: str | None, basemap_attribution: str) -> str:
    """index.html with the asset URLs and the config filled in (pure apart from reading the files)."""
    folder = page_dir(web_dir)
    missing = [n for n in PAGE_FILES if not (folder / n).is_file()]
    if missing:
        raise DashboardMissing(f"驾驶舱页面文件缺失 dashboard page files missing in {folder}: {', '.join(missing)}")
    config = json.dumps({"basemap_url": basemap_url, "basemap_attribution": basemap_attribution},
                        ensure_ascii=False).replace("</", "<\\/")
    slots = {
        "{{leaflet_css}}": asset_url("leaflet_css"),
        "{{leaflet_js}}": asset_url("leaflet_js"),
        "{{dashboard_css}}": _versioned(folder, "dashboard.css"),
        "{{dashboard_js}}": _versioned(folder, "dashboard.js"),
    }
    page = (folder / "index.html").read_text(encoding="utf-8")
    for slot, url in slots.items():
        page = page.replace(slot, html.escape(url, quote=True))
    return page.replace("{{config}}", config)


@router.get("/dashboard", response_class=HTMLResponse, tags=["maps"],
            summary="领导驾驶舱 Leaders' drill-down map: city → street → community → grid → compound")
def dashboard(request: Request) -> HTMLResponse:
    settings = request.app.state.settings
    require_assets(settings.web_dir)
    return HTMLResponse(render_page(settings.web_dir, basemap_url=settings.basemap_url,
                                    basemap_attribution=settings.basemap_attribution))


def setup(app: FastAPI) -> None:
    """Serve ``web/dashboard`` (the page's own JS/CSS) at /static/dashboard."""
    app.mount(STATIC_URL, StaticFiles(directory=page_dir(app.state.settings.web_dir), check_dir=False),
              name="dashboard")
