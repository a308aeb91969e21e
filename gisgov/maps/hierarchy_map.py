"""The hierarchy map (streets, communities, grids, compounds) from GeoDataFrames — pure, no DB.

Input: ``(layer, frame)`` pairs where ``layer`` is a catalog :class:`gisgov.layers.Layer` (title,
style) and ``frame`` a GeoDataFrame in any CRS (shown in WGS84) with ``name``, ``code`` and, for
counted layers, ``households`` and ``residents`` columns. Output: an offline ``folium.Map``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import folium
import geopandas as gpd
import numpy as np
from folium.features import DivIcon, GeoJsonTooltip

from gisgov.crs import WGS84
from gisgov.layers import Layer
from gisgov.maps.offline import add_basemap, add_context, add_css, add_html, finish_page, offline_map

TOOLTIP_FIELDS = (
    ("name", "名称 Name"),
    ("code", "编码 Code"),
    ("households", "户数 Households"),
    ("residents", "人数 People"),
)
LABELLED_LEVELS = ("community",)  # levels whose names are written on the map
CHINA_CENTER = (35.0, 105.0)  # lat, lon: shown when there is no data at all
OUTLINE_PANE = "gisgov-outlines"

_CSS = """
body .leaflet-container { background: %(bg)s; font-family: "Microsoft YaHei", "PingFang SC", "Noto Sans CJK SC", "Source Han Sans SC",
  "WenQuanYi Micro Hei", sans-serif; }
.gisgov-panel { position: absolute; z-index: 1000; background: rgba(255,255,255,0.93); border-radius: 6px;
  box-shadow: 0 1px 5px rgba(0,0,0,0.35); padding: 8px 12px; font-size: 13px; line-height: 1.45; color: #222; }
.gisgov-title { top: 10px; left: 56px; }
.gisgov-title b { font-size: 15px; }
.gisgov-title small { color: #555; }
.gisgov-title { max-width: 420px; }
.gisgov-banner { margin-top: 6px; padding: 4px 8px; background: #fff4d6; border: 1px solid #e0a800; border-radius: 4px;
  color: #7a4b00; font-weight: 600; font-size: 12.5px; }
.gisgov-legend { bottom: 28px; right: 10px; }
.gisgov-legend i { display: inline-block; width: 22px; height: 12px; margin-right: 6px; vertical-align: -1px; }
.gisgov-empty { top: 45%%; left: 50%%; transform: translate(-50%%, -50%%); font-size: 15px; }
.gisgov-label { font-size: 12px; font-weight: 600; color: #12408f; white-space: nowrap; text-align: center;
  text-shadow: 0 0 3px #fff, 0 0 3px #fff, 0 0 3px #fff; pointer-events: none; }
"""


def _to_wgs84(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if frame.crs is None:
        raise ValueError("map layer frame has no CRS; set it (e.g. EPSG:4326 or EPSG:4490) before mapping")
    return frame if frame.crs.to_epsg() == WGS84 else frame.to_crs(WGS84)


def _prepare(layer: Layer, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    f = _to_wgs84(frame).copy()
    f = f[~f.geometry.is_empty & f.geometry.notna()]
    if "code" not in f:
        f["code"] = ""
    if "name" not in f:
        f["name"] = None
    f["name"] = f["name"].where(f["name"].notna(), f["code"].map(lambda c: f"{layer.title.zh} {c}"))
    for col in ("households", "residents"):
        if col in f:
            f[col] = f[col].fillna(0).astype("int64")
    return f


def _swatch(layer: Layer) -> str:
    s = layer.style
    fill = s.fill_color or s.color
    bg = f"background:{fill};opacity:{max(s.fill_opacity, 0.35):.2f};" if s.fill else "background:transparent;"
    return f'<i style="{bg}border:{max(1, min(s.weight, 4)):.0f}px solid {s.color};"></i>'


def _fmt(n: float) -> str:
    return f"{int(n):,}"


def build_hierarchy_map(
    layers: Sequence[tuple[Layer, gpd.GeoDataFrame]],
    *,
    dataset: dict | None = None,
    basemap_url: str | None = None,
    basemap_attribution: str = "",
    title: str = "网格化管理地图 Grid governance map",
    links: Sequence[tuple[str, str]] = (),
    user: str | None = None,
    context: dict[str, Any] | None = None,
    basemap: dict[str, Any] | None = None,
) -> folium.Map:
    """An offline folium map of the given layers, styled per level, with tooltips, a layer
    control, a scale bar, a legend, a banner for synthetic data, fitted to the data.
    ``links``: (same-server URL, label) pairs shown in the title panel (e.g. the dashboard);
    ``user``: who is signed in and their scope, shown in the title panel (escaped); ``context``: roads, water
    and facilities drawn under the layers (:func:`gisgov.api.routes.context.context_for_bounds`);
    ``basemap``: :func:`gisgov.config.basemap_config` (GCJ-02 tiles shift the map's CRS)."""
    prepared = [(lyr, _prepare(lyr, fr)) for lyr, fr in layers]
    m = offline_map(control_scale=True, prefer_canvas=False, zoom_snap=0.25)
    add_css(m, _CSS % {"bg": "#e8ecef" if not basemap_url else "#ddd"})
    add_basemap(m, basemap_url, basemap_attribution)
    add_context(m, context)
    finish_page(m, title, basemap)

    # Outline-only levels (street, community) get panes above the filled areas, the higher level
    # on top, so borders stay visible whatever layers are toggled; the panes ignore the pointer
    # except on the strokes themselves, so tooltips of the areas beneath still work.
    outlines = [lyr.name for lyr, _ in prepared if not lyr.style.fill]
    for rank, name in enumerate(reversed(outlines)):
        folium.map.CustomPane(f"{OUTLINE_PANE}-{name}", z_index=450 + rank, pointer_events=False).add_to(m)
    for lyr, f in prepared:
        label = f"{lyr.title.zh} {lyr.title.en} ({len(f)})"
        if f.empty:
            folium.FeatureGroup(name=label, show=True).add_to(m)
            continue
        style = lyr.style.leaflet()
        hover = {**style, "weight": style["weight"] + 2, "fillOpacity": min(1.0, style["fillOpacity"] + 0.2)}
        fields = [(c, a) for c, a in TOOLTIP_FIELDS if c in f.columns]
        keep = [c for c, _ in fields] + ["geometry"]
        gj = folium.GeoJson(
            f[keep].to_json(na="null", drop_id=True),
            name=label,
            style_function=lambda _f, s=style: s,
            highlight_function=lambda _f, s=hover: s,
            tooltip=GeoJsonTooltip(
                fields=[c for c, _ in fields], aliases=[a for _, a in fields], sticky=True, localize=True
            ),
            zoom_on_click=False,
            pane="overlayPane" if lyr.style.fill else f"{OUTLINE_PANE}-{lyr.name}",
            marker=folium.CircleMarker(radius=lyr.style.radius or 4) if lyr.geometry_kind == "point" else None,
        )
        gj.add_to(m)
        if lyr.name in LABELLED_LEVELS:
            labels = folium.FeatureGroup(name=f"{lyr.title.zh}名称 {lyr.title.en} labels", show=True)
            for name, pt in zip(f["name"], f.geometry.representative_point(), strict=True):
                folium.Marker(
                    [pt.y, pt.x],
                    icon=DivIcon(
                        html=f'<div class="gisgov-label">{html.escape(str(name))}</div>',
                        icon_size=(160, 18),
                        icon_anchor=(80, 9),
                        class_name="gisgov-label-icon",
                    ),
                    interactive=False,
                ).add_to(labels)
            labels.add_to(m)

    bounds = [f.total_bounds for _, f in prepared if not f.empty]
    if bounds:
        b = np.array(bounds)
        minx, miny, maxx, maxy = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
        m.fit_bounds(
            [[float(miny), float(minx)], [float(maxy), float(maxx)]],
            padding_top_left=(20, 130),
            padding_bottom_right=(20, 20),
        )
    else:
        m.location, m.options["zoom"] = list(CHINA_CENTER), 4
        add_html(
            m,
            '<div class="gisgov-panel gisgov-empty">暂无数据 No data yet — '
            "run <code>gisgov sample</code> or load your own 网格 data</div>",
        )

    folium.LayerControl(collapsed=False, position="topright").add_to(m)

    name = html.escape(str((dataset or {}).get("name") or ""))
    totals = []
    for lyr, f in prepared:
        if lyr.name == "street" and "households" in f:
            totals.append(f"户数 households {_fmt(f['households'].sum())} · 人数 people {_fmt(f['residents'].sum())}")
    banner = ""
    if dataset and dataset.get("synthetic"):
        banner = (
            '<div class="gisgov-banner">⚠ 合成示例数据 Synthetic sample data<br>'
            "人口与地址均为虚构 people and addresses are fictitious</div>"
        )
    add_html(
        m,
        f'<div class="gisgov-panel gisgov-title"><b>{html.escape(title)}</b>'
        + (f"<br><small>数据集 Dataset: {name}</small>" if name else "")
        + (f"<br><small>{totals[0]}</small>" if totals else "")
        + (f'<br><small class="gisgov-user">用户 User: {html.escape(user)}</small>' if user else "")
        + "".join(f'<br><a href="{html.escape(url, quote=True)}">{html.escape(label)} ›</a>' for url, label in links)
        + banner
        + "</div>",
    )
    legend = "".join(f"<div>{_swatch(lyr)}{lyr.title.zh} {lyr.title.en}</div>" for lyr, _ in prepared)
    add_html(m, f'<div class="gisgov-panel gisgov-legend"><b>图例 Legend</b>{legend}</div>')
    return m
