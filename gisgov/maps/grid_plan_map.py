"""A folium view of a grid plan (网格方案地图): grids coloured by households against the bounds
(amber under the minimum, green within, red over the household or people maximum), labelled with code
and counts, compactness in the tooltip, rule breaks highlighted. Local assets only (no CDN)."""

from __future__ import annotations

import html

import folium

from gisgov.config import get_settings
from gisgov.gridding.rules import GridRules
from gisgov.maps.offline import add_basemap, add_html, offline_map, render_html

COLOURS = {"under": "#f59e0b", "ok": "#16a34a", "over": "#dc2626"}
BREAK_COLOUR = "#7c3aed"


def _bounds(fc: dict) -> list[list[float]] | None:
    xs, ys = [], []

    def walk(c):
        if isinstance(c[0], (int, float)):
            xs.append(c[0])
            ys.append(c[1])
        else:
            for x in c:
                walk(x)

    for f in fc.get("features", []):
        if f.get("geometry"):
            walk(f["geometry"]["coordinates"])
    for b in fc.get("breaks", []) or []:
        if b.get("geometry"):
            walk(b["geometry"]["coordinates"])
    if not xs:
        return None
    return [[min(ys), min(xs)], [max(ys), max(xs)]]


def plan_map(fc: dict, rules: GridRules, *, title: str | None = None) -> folium.Map:
    """``fc``: FeatureCollection of grids (properties from the validator) with optional ``breaks``."""
    s = get_settings()
    m = offline_map(control_scale=True)
    add_basemap(m, s.basemap_url, s.basemap_attribution)
    grids = folium.FeatureGroup(name="网格 Grids", show=True)
    for f in fc.get("features", []):
        p = f["properties"]
        colour = COLOURS.get(p.get("status"), "#64748b")
        tip = (
            f"<b>{html.escape(p['code'])}</b><br>户 households {p['households']} "
            f"({rules.min_households}–{rules.max_households})<br>人 people {p['people']} (≤ {rules.max_people})"
            f"<br>楼栋 buildings {p['buildings']}<br>Polsby–Popper {p['polsby_popper']:.3f} · Reock {p['reock']:.3f}"
        )
        folium.GeoJson(
            f,
            style_function=lambda _f, c=colour: {
                "color": "#1f2937",
                "weight": 1.5,
                "fillColor": c,
                "fillOpacity": 0.45,
            },
            tooltip=folium.Tooltip(tip),
        ).add_to(grids)
        c = _label_point(f["geometry"])
        if c:
            folium.Marker(
                c,
                icon=folium.DivIcon(
                    html=(
                        f'<div class="gisgov-grid-label">{html.escape(p["code"][-3:])}<br>{p["households"]}户/{p["people"]}人</div>'
                    )
                ),
            ).add_to(grids)
    grids.add_to(m)
    breaks = [b for b in fc.get("breaks", []) or [] if b.get("geometry")]
    if breaks:
        layer = folium.FeatureGroup(name="规则问题 Rule breaks", show=True)
        for b in breaks:
            folium.GeoJson(
                {"type": "Feature", "geometry": b["geometry"], "properties": {"rule": b["rule"]}},
                style_function=lambda _f: {
                    "color": BREAK_COLOUR,
                    "weight": 3,
                    "fillColor": BREAK_COLOUR,
                    "fillOpacity": 0.6,
                    "dashArray": "4 3",
                },
                marker=folium.CircleMarker(radius=6, color=BREAK_COLOUR, fill=True),
                tooltip=folium.Tooltip(f"<b>{html.escape(b['rule'])}</b><br>{html.escape(b['message'])}"),
            ).add_to(layer)
        layer.add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    bb = _bounds(fc)
    if bb:
        m.fit_bounds(bb)
    summary = fc.get("summary") or {}
    add_html(
        m,
        f"""
<style>.gisgov-grid-label{{font:11px/1.2 sans-serif;color:#111;text-align:center;white-space:nowrap;
  text-shadow:0 0 3px #fff,0 0 3px #fff;transform:translate(-50%,-50%);width:max-content}}
.gisgov-legend{{position:absolute;bottom:24px;right:10px;z-index:1000;background:#fff;padding:8px 10px;
  font:12px sans-serif;border-radius:4px;box-shadow:0 1px 4px rgba(0,0,0,.3)}}
.gisgov-legend i{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}}</style>
<div class="gisgov-legend"><b>{html.escape(title or "网格方案 Grid plan")}</b><br>
<i style="background:{COLOURS["under"]}"></i>少于 under {rules.min_households} 户<br>
<i style="background:{COLOURS["ok"]}"></i>{rules.min_households}–{rules.max_households} 户, ≤ {rules.max_people} 人<br>
<i style="background:{COLOURS["over"]}"></i>超过 over {rules.max_households} 户 or {rules.max_people} 人<br>
<i style="background:{BREAK_COLOUR}"></i>规则问题 rule break ({len(breaks)})<br>
grids {summary.get("grids", len(fc.get("features", [])))} · within {summary.get("within_bounds", "-")}
· mean PP {summary.get("mean_polsby_popper", "-")}</div>""",
    )
    return m


def _label_point(geom: dict) -> list[float] | None:
    import shapely.geometry

    g = shapely.geometry.shape(geom)
    if g.is_empty:
        return None
    p = g.point_on_surface()
    return [p.y, p.x]


def plan_map_html(fc: dict, rules: GridRules, *, title: str | None = None) -> str:
    return render_html(plan_map(fc, rules, title=title))
