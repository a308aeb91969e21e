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
from typing import Any, TypeVar

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


CONTEXT_PANE = "gisgovContext"
# muted styles of the geographic context (the Leaflet pages draw the same, web/common/gisgov.js)
ROAD_WIDTH = {"arterial": (7, 4.5), "local": (4, 2.5), "bridge": (4, 2.5), "other": (3, 1.8), "path": (0, 1.2)}
WATER_STYLE = {"color": "#8fb8d6", "weight": 1, "fillColor": "#b7d7ee", "fillOpacity": 0.85}


def _road_style(feature: dict[str, Any], casing: bool) -> dict[str, Any]:
    cls = (feature.get("properties") or {}).get("class") or "other"
    width = ROAD_WIDTH.get(cls, ROAD_WIDTH["other"])
    if casing:
        return {"color": "#a3acb7", "weight": width[0], "opacity": 0.9 if width[0] else 0, "lineCap": "round"}
    colour = "#9aa3ad" if cls == "path" else "#ffffff"
    return {"color": colour, "weight": width[1], "lineCap": "round", "lineJoin": "round"}


def add_context(m: folium.Map, context: dict[str, Any] | None) -> folium.Map:
    """Draw the geographic context (``/api/context``'s answer: roads, water, facilities) under everything
    else: a pane below the overlays that takes no clicks; 水系 Water and 道路 Roads shown, 设施 Facilities
    (when present) in the layer control, off until switched on."""
    if not context:
        return m
    folium.map.CustomPane(CONTEXT_PANE, z_index=250, pointer_events=False).add_to(m)
    water = context.get("water") or {}
    if water.get("features"):
        folium.GeoJson(
            water, name="水系 Water", style_function=lambda _f: WATER_STYLE, pane=CONTEXT_PANE, interactive=False
        ).add_to(m)
    roads = context.get("roads") or {}
    if roads.get("features"):
        group = folium.FeatureGroup(name="道路 Roads", show=True)
        for casing in (True, False):
            folium.GeoJson(
                roads,
                style_function=lambda f, c=casing: _road_style(f, c),
                pane=CONTEXT_PANE,
                interactive=False,
                control=False,
            ).add_to(group)
        group.add_to(m)
    facilities = context.get("facilities") or {}
    if facilities.get("features"):
        folium.GeoJson(
            facilities,
            name=f"设施 Facilities ({len(facilities['features'])})",
            show=False,
            marker=folium.CircleMarker(radius=4, color="#ffffff", weight=1, fill_color="#7b1fa2", fill_opacity=0.9),
            tooltip=folium.GeoJsonTooltip(fields=["name", "category"], aliases=["名称 Name", "类别 Category"]),
            zoom_on_click=False,
        ).add_to(m)
    return m


def finish_page(m: folium.Map, title: str, basemap: dict[str, Any] | None = None) -> folium.Map:
    """The page chrome every folium map shares: ``<title>``; Leaflet's attribution without the flag (plain
    "Leaflet"); for GCJ-02 tiles (``basemap["crs"] == "gcj02"``, :func:`gisgov.config.basemap_config`) the
    map's CRS shifts the WGS84 data onto the tiles: the projection of the Leaflet pages (the ``<gcj02>`` part
    of ``web/common/gisgov.js``) replaces ``L.CRS.EPSG3857``, which folium names in the map's options. One
    inline script (the CSP hashes it), run after Leaflet loads and before the map is made."""
    m.get_root().title = title  # type: ignore[attr-defined]  # a branca Figure
    body = (
        'L.Map.addInitHook(function () { if (this.attributionControl) this.attributionControl.setPrefix("Leaflet"); });'
    )
    if basemap and basemap.get("crs") == "gcj02":
        body += gcj02_js() + "L.CRS.EPSG3857 = gcjCrs(L);"
    add_html(m, f'<script>(function () {{ "use strict"; if (!window.L) return; {body} }})();</script>')
    return m


_GCJ02_PART = re.compile(r"// <gcj02>[^\n]*\n(.*?)// </gcj02>", re.S)


def gcj02_js() -> str:
    """The WGS84 <-> GCJ-02 functions and ``gcjCrs(L)`` of ``web/common/gisgov.js`` (one source for both)."""
    from gisgov import resources

    text = (resources.web_dir() / "common" / "gisgov.js").read_text(encoding="utf-8")
    m = _GCJ02_PART.search(text)
    if m is None:
        raise RuntimeError("web/common/gisgov.js has no <gcj02> part")
    return m.group(1)


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
