"""The service-circle map of one category (pure builder + a helper that gathers its layers).

Layers: the dissolved service area, gap areas, buildings coloured by network distance, the
facilities, and suggested new sites. Assets come from the app (``gisgov.maps.offline``), no CDN.
The layers are computed by :mod:`gisgov.coverage` (no folium there); this module only draws them.
"""

from __future__ import annotations

import html
from typing import Any

import folium
import geopandas as gpd
import numpy as np

from gisgov.crs import WGS84
from gisgov.maps.offline import add_context, add_css, add_html, finish_page, offline_map, render_html

RING_COLOURS = ["#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027"]
NO_FACILITY_COLOUR = "#9aa0a6"
NO_FACILITY_TEXT = "无此类设施数据 no facility of this category in the data"

_CSS = """
.gisgov-panel { position: absolute; z-index: 1000; background: rgba(255,255,255,0.93); border-radius: 6px;
  box-shadow: 0 1px 5px rgba(0,0,0,0.35); padding: 8px 12px; font-size: 13px; line-height: 1.45; color: #222;
  font-family: "Microsoft YaHei", "PingFang SC", "Noto Sans CJK SC", sans-serif; }
.gisgov-title { top: 10px; left: 56px; max-width: 460px; }
.gisgov-legend { bottom: 28px; right: 10px; }
.gisgov-legend i { display: inline-block; width: 12px; height: 12px; border-radius: 6px; margin-right: 6px; }
.gisgov-warn { margin-top: 6px; padding: 4px 8px; background: #fff4d6; border: 1px solid #e0a800; border-radius: 4px; }
"""


def build_coverage_map(
    *,
    title: str,
    area: gpd.GeoDataFrame,
    gaps: gpd.GeoDataFrame,
    buildings: gpd.GeoDataFrame,
    facilities: gpd.GeoDataFrame,
    sites: list[dict],
    rings: list[tuple[str, float]],
    budget_m: float,
    method: str,
    note: str = "",
    no_facility: bool = False,
    context: dict[str, Any] | None = None,
    basemap: dict[str, Any] | None = None,
) -> folium.Map:
    """``rings``: (label, distance m) in increasing order, used to colour buildings. ``no_facility``: the
    data hold no facility of the category — buildings are grey and the page says so (missing data,
    not a gap)."""
    m = offline_map(control_scale=True, prefer_canvas=True)
    add_css(m, _CSS)
    add_context(m, context)  # roads and water under the layers (the facilities are this map's own)
    finish_page(m, f"{title} — gisgov", basemap)
    a = area.to_crs(WGS84)
    if len(a) and not a.geometry.is_empty.all():
        folium.GeoJson(
            a[["category", "circle", "budget_m", "geometry"]].to_json(drop_id=True),
            name=f"服务圈 Service area (≤{budget_m:.0f} m)",
            style_function=lambda _f: {"color": "#1a7f37", "weight": 1, "fillColor": "#2ea043", "fillOpacity": 0.25},
        ).add_to(m)
    g = gaps.to_crs(WGS84)
    if len(g):
        folium.GeoJson(
            g[["buildings", "households", "geometry"]].to_json(drop_id=True),
            name=f"服务盲区 Gaps ({len(g)})",
            style_function=lambda _f: {
                "color": "#b31d28",
                "weight": 1.5,
                "fillColor": "#d73027",
                "fillOpacity": 0.2,
                "dashArray": "4 3",
            },
            tooltip=folium.GeoJsonTooltip(["buildings", "households"], aliases=["楼栋 buildings", "户数 households"]),
        ).add_to(m)
    b = buildings.to_crs(WGS84).copy()
    d = b["distance_m"].to_numpy(float)
    edges = np.array([r for _, r in rings])
    ring = np.searchsorted(edges, np.where(np.isnan(d), np.inf, d), side="left")
    b["colour"] = [RING_COLOURS[min(i, len(RING_COLOURS) - 1)] for i in np.minimum(ring, len(rings))]
    b["distance_m"] = np.where(np.isnan(d), None, np.round(d, 0))
    if no_facility:
        b["colour"] = NO_FACILITY_COLOUR
        b["distance_m"] = NO_FACILITY_TEXT
    folium.GeoJson(
        b[["code", "households", "distance_m", "colour", "geometry"]].to_json(drop_id=True, na="null"),
        name=f"楼栋 Buildings by distance ({len(b)})",
        marker=folium.CircleMarker(radius=3, weight=0, fill=True, fill_opacity=0.9),
        style_function=lambda f: {"fillColor": f["properties"]["colour"], "color": f["properties"]["colour"]},
        tooltip=folium.GeoJsonTooltip(
            ["code", "households", "distance_m"], aliases=["楼栋 building", "户数 households", "步行距离 walk (m)"]
        ),
    ).add_to(m)
    fac = facilities.to_crs(WGS84)
    fg = folium.FeatureGroup(name=f"设施 Facilities ({len(fac)})")
    for r in fac.itertuples():
        folium.CircleMarker(
            [r.geometry.y, r.geometry.x],
            radius=7,
            color="#0b3d91",
            weight=2,
            fill=True,
            fill_color="#ffffff",
            fill_opacity=1,
            tooltip=html.escape(f"{r.name} · {r.kind or ''} (id {r.id})"),
        ).add_to(fg)
    fg.add_to(m)
    if sites:
        sg = folium.FeatureGroup(name=f"建议选址 Suggested sites ({len(sites)})")
        for s in sites:
            folium.Marker(
                [s["lat"], s["lon"]],
                icon=folium.Icon(color="purple", icon="star", prefix="fa"),
                tooltip=html.escape(
                    f"#{s['rank']}: +{s['households_gained']:.0f} 户 households, "
                    f"+{s['buildings_gained']} 楼栋 buildings"
                ),
            ).add_to(sg)
        sg.add_to(m)
    folium.LayerControl(collapsed=False, position="topright").add_to(m)
    bounds = b.total_bounds if len(b) else fac.total_bounds
    if len(b) or len(fac):
        m.fit_bounds(
            [[float(bounds[1]), float(bounds[0])], [float(bounds[3]), float(bounds[2])]], padding_top_left=(20, 120)
        )
    legend = "".join(
        f'<div><i style="background:{RING_COLOURS[i]}"></i>≤ {r:.0f} m {html.escape(lbl)}</div>'
        for i, (lbl, r) in enumerate(rings[: len(RING_COLOURS) - 1])
    )
    legend += f'<div><i style="background:{RING_COLOURS[-1]}"></i>更远 / 不可达 beyond / unreachable</div>'
    if no_facility:
        legend = f'<div class="gisgov-nofac"><i style="background:{NO_FACILITY_COLOUR}"></i>{NO_FACILITY_TEXT}</div>'
    add_html(m, f'<div class="gisgov-panel gisgov-legend"><b>步行距离 Walking distance</b>{legend}</div>')
    warn = (
        ""
        if method == "network"
        else '<div class="gisgov-warn">无路网：直线距离×绕行系数 No walking network: straight line × detour factor</div>'
    )
    if no_facility:
        warn += (
            f'<div class="gisgov-warn gisgov-nofac">{NO_FACILITY_TEXT}: 覆盖率为缺数据而非服务缺口 '
            "the 0 % coverage is missing data, not a gap</div>"
        )
    add_html(
        m,
        f'<div class="gisgov-panel gisgov-title"><b>{html.escape(title)}</b><br><small>{html.escape(note)}</small>'
        f"{warn}</div>",
    )
    return m


def coverage_map_html(
    svc,
    conn,
    category: str,
    circle: str = "c15",
    profile: str = "standard",
    *,
    sites: int = 3,
    level: str | None = None,
    code: str | None = None,
) -> str:
    """Gather the layers from the service and render the page (raises if any asset would leave the server)."""
    cat = svc.catalog()
    c = cat.category(category)
    budget = cat.budget_m(circle, profile)
    area = svc.service_area(conn, c.code, circle, profile)
    gaps = svc.gaps(conn, c.code, circle, profile, level, code)
    bld = svc.buildings_frame(conn, c.code)
    fac = svc.facilities_frame(conn, c.code)
    site_rows = []
    if sites:
        site_rows = svc.site(conn, c.code, k=sites, circle=circle, profile=profile, level=level, code=code)["sites"]
    rings = [(f"{x.code}", cat.budget_m(x.code, profile)) for x in cat.circles]
    reach = bld["distance_m"].to_numpy(float) <= budget
    note = (
        f"{cat.circle(circle).name_zh} {cat.circle(circle).name_en} · {cat.profile(profile).name_zh} · "
        f"≤{budget:.0f} m · 覆盖 covered {reach.mean() * 100:.1f}% of {len(bld)} buildings · "
        f"服务圈 = reachable street parts + access legs, buffered {svc.model.params.area_width_m:.0f} m"
    )
    from gisgov.api.routes.context import context_for_bounds
    from gisgov.config import basemap_config, get_settings

    frame = bld if len(bld) else fac
    context = context_for_bounds(conn, frame.to_crs(WGS84).total_bounds) if len(frame) else None
    m = build_coverage_map(
        title=f"便民服务圈 {c.name_zh} {c.name_en}",
        context=context,
        basemap=basemap_config(get_settings()),
        area=area,
        gaps=gaps,
        buildings=bld,
        facilities=fac,
        sites=site_rows,
        rings=rings,
        budget_m=budget,
        method=svc.model.method,
        note=note,
        no_facility=len(fac) == 0,
    )
    return render_html(m)
