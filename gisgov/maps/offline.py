"""folium maps and plugins whose JS/CSS come from the app (``/static/vendor/…``), never a CDN.

folium keeps its CDN links in class attributes (``folium.Map.default_js`` …). :func:`localize`
gives one *instance* new lists pointing at the vendored copies (the shared class lists are never
touched), and refuses an asset that has no local copy. No folium plugin is vendored today: a plugin
(``folium.plugins.Draw``, ``MarkerCluster`` …) needs its npm package in ``web/package.json`` and its
files in :data:`gisgov.maps.assets.ASSETS` / :data:`FOLIUM_TO_LOCAL` first. :func:`render_html` renders a map and
fails if any ``src``/``href`` still leaves the server.

Icons: folium's glyphicon CSS (Bootstrap 3) is not vendored: use ``folium.Icon(prefix="fa")``
(Font Awesome 6 is).
"""

from __future__ import annotations

import re
from typing import TypeVar

import folium
from branca.element import Element
from folium.elements import JSCSSMixin

from gisgov.maps.assets import asset_url

# folium's resource names -> gisgov asset names (gisgov.maps.assets.ASSETS); None = dropped.
FOLIUM_TO_LOCAL: dict[str, str | None] = {
    "leaflet": "leaflet_js",
    "jquery": "jquery_js",
    "bootstrap": "bootstrap_js",
    "awesome_markers": "awesome_markers_js",
    "leaflet_css": "leaflet_css",
    "bootstrap_css": "bootstrap_css",
    "glyphicons_css": None,  # Bootstrap 3 glyphicons: not vendored, use prefix="fa" icons
    "awesome_markers_font_css": "fontawesome_css",
    "awesome_markers_css": "awesome_markers_css",
    "awesome_rotate_css": None,  # only for rotated awesome-marker icons (Icon(angle=…))
}

E = TypeVar("E", bound=JSCSSMixin)

_EXTERNAL_ASSET = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]+)""", re.IGNORECASE)


class NoLocalAsset(ValueError):
    """A folium element wants a CDN asset gisgov does not vendor."""


def _local_list(element: JSCSSMixin, links: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, url in links:
        if url.startswith("/"):  # already local
            out.append((name, url))
            continue
        if name not in FOLIUM_TO_LOCAL:
            raise NoLocalAsset(
                f"{type(element).__name__} needs {name} ({url}) which gisgov does not serve: add the npm "
                "package to web/package.json and the file to gisgov.maps.assets.ASSETS / FOLIUM_TO_LOCAL"
            )
        local = FOLIUM_TO_LOCAL[name]
        if local is not None:
            out.append((name, asset_url(local)))
    return out


def localize(element: E) -> E:
    """Point ``element``'s JS/CSS at the app's vendored assets (new per-instance lists)."""
    element.default_js = _local_list(element, list(element.default_js))
    element.default_css = _local_list(element, list(element.default_css))
    return element


def offline_map(**kwargs) -> folium.Map:
    """A ``folium.Map`` with local assets and, unless given, no tiles (``tiles=None``)."""
    kwargs.setdefault("tiles", None)
    return localize(folium.Map(**kwargs))


def add_basemap(m: folium.Map, url: str | None, attribution: str = "", *, name: str = "底图 Basemap") -> folium.Map:
    """Add an XYZ tile layer from ``url`` (settings.basemap_url); nothing when ``url`` is None/empty."""
    if url:
        folium.TileLayer(tiles=url, attr=attribution or "basemap", name=name, overlay=False, control=True).add_to(m)
    return m


def external_asset_urls(html: str) -> list[str]:
    """Every ``src=``/``href=`` in ``html`` that points off the serving host."""
    return [m.group(1) for m in _EXTERNAL_ASSET.finditer(html)]


def add_css(m: folium.Map, css: str) -> None:
    m.get_root().header.add_child(Element(f"<style>{css}</style>"))


def add_html(m: folium.Map, html: str) -> None:
    m.get_root().html.add_child(Element(html))


def render_html(m: folium.Map) -> str:
    """The full HTML page of ``m``; raises :class:`NoLocalAsset` if an asset URL leaves the server."""
    html = m.get_root().render()
    bad = external_asset_urls(html)
    if bad:
        raise NoLocalAsset(f"map HTML links external assets (no CDN allowed): {', '.join(sorted(set(bad)))}")
    return html
