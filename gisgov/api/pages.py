"""Plain Leaflet pages served by the app (``web/<name>/index.html`` + ``<name>.js`` + ``<name>.css``).

The HTML has slots filled at request time: ``{{leaflet_css}}``/``{{leaflet_js}}`` (vendored Leaflet
under /static/vendor), ``{{common_css}}`` (the shared page chrome, ``web/common/gisgov.css``),
``{{common_js}}`` (the shared page code, ``web/common/gisgov.js``: CSRF token, fetch wrapper, user badge,
sign-out; a page loads it before its own script),
``{{page_css}}``/``{{page_js}}`` (the page's own files under /static/<name>, with
a content hash for cache busting) and ``{{config}}`` (a small JSON object: the basemap). A page that
loads more than its one script/stylesheet names them with ``{{page:<file>}}`` (another file of its own
folder), ``{{common:<file>}}`` (a file of ``web/common``) and ``{{vendor:<asset name>}}`` (a vendored
asset of :data:`gisgov.maps.assets.ASSETS`), each replaced by its versioned URL. Nothing links
outside the app.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from gisgov.errors import GisgovError
from gisgov.maps.assets import ASSETS, asset_url, require_assets

COMMON = "common"  # web/common: what every page shares
COMMON_CSS = "gisgov.css"
COMMON_JS = "gisgov.js"
# {{page:file}}, {{common:file}}, {{vendor:asset}}: more files of the page's folder, of web/common, vendored assets
_NAMED_SLOT = re.compile(r"\{\{(page|common|vendor):([A-Za-z0-9_][A-Za-z0-9_.-]*)\}\}")


class PageMissing(GisgovError):
    status_code = 503


@dataclass(frozen=True)
class LeafletPage:
    name: str  # folder under the web dir, and the stem of its JS/CSS files
    title: str  # shown in errors, e.g. "驾驶舱 dashboard"

    @property
    def static_url(self) -> str:
        return f"/static/{self.name}"

    @property
    def files(self) -> tuple[str, str, str]:
        return ("index.html", f"{self.name}.js", f"{self.name}.css")

    def folder(self, web_dir: Path) -> Path:
        return Path(web_dir) / self.name

    @staticmethod
    def _versioned(folder: Path, file: str) -> str:
        digest = hashlib.sha256((folder / file).read_bytes()).hexdigest()[:10]
        return f"/static/{folder.name}/{file}?v={digest}"

    def render(self, web_dir: Path, *, basemap_url: str | None, basemap_attribution: str) -> str:
        """index.html with the asset URLs and the config filled in (pure apart from reading the files)."""
        folder = self.folder(web_dir)
        common = Path(web_dir) / COMMON
        missing = [n for n in self.files if not (folder / n).is_file()]
        missing += [f"{COMMON}/{n}" for n in (COMMON_CSS, COMMON_JS) if not (common / n).is_file()]
        if missing:
            raise PageMissing(f"页面文件缺失 {self.title} page files missing in {folder}: {', '.join(missing)}")
        config = json.dumps(
            {"basemap_url": basemap_url, "basemap_attribution": basemap_attribution}, ensure_ascii=False
        ).replace("</", "<\\/")
        slots = {
            "{{leaflet_css}}": asset_url("leaflet_css"),
            "{{leaflet_js}}": asset_url("leaflet_js"),
            "{{common_css}}": self._versioned(common, COMMON_CSS),
            "{{common_js}}": self._versioned(common, COMMON_JS),
            "{{page_css}}": self._versioned(folder, f"{self.name}.css"),
            "{{page_js}}": self._versioned(folder, f"{self.name}.js"),
        }
        page = (folder / "index.html").read_text(encoding="utf-8")
        for slot, url in slots.items():
            page = page.replace(slot, html.escape(url, quote=True))

        def named(m: re.Match[str]) -> str:
            kind, name = m.group(1), m.group(2)
            if kind == "vendor":
                if name not in ASSETS:
                    raise PageMissing(f"页面引用了未知资源 {self.title} page names an unknown asset: {name}")
                return html.escape(asset_url(name), quote=True)
            where = folder if kind == "page" else common
            if not (where / name).is_file():
                raise PageMissing(f"页面文件缺失 {self.title} page files missing in {where}: {name}")
            return html.escape(self._versioned(where, name), quote=True)

        page = _NAMED_SLOT.sub(named, page)
        return page.replace("{{config}}", config)

    def response(self, settings: Any) -> HTMLResponse:
        """The page for a map route: 503 naming the fix when the vendored assets are missing, else the
        rendered HTML with the configured basemap."""
        require_assets(settings.web_dir)
        return HTMLResponse(
            self.render(
                settings.web_dir, basemap_url=settings.basemap_url, basemap_attribution=settings.basemap_attribution
            )
        )

    def mount(self, app: FastAPI) -> None:
        """Serve the page's own JS/CSS at /static/<name> (and, once per app, web/common at /static/common)."""
        web_dir = Path(app.state.settings.web_dir)
        if not any(getattr(r, "name", None) == COMMON for r in app.routes):
            app.mount(f"/static/{COMMON}", StaticFiles(directory=web_dir / COMMON, check_dir=False), name=COMMON)
        app.mount(self.static_url, StaticFiles(directory=self.folder(web_dir), check_dir=False), name=self.name)
