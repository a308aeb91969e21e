"""OpenStreetMap import: walking network, buildings, service POIs → a service-circle-ready city.

Read with pyrosm (a maintained reader of .osm.pbf); cross-checked with pyosmium, which lists every
OSM building and mapped POI in the file so that objects the reader could not build (relations cut
at the extract's edge, broken rings) are *reported*, not silently lost.

* Network: every ``highway=*`` way pyrosm's ``all`` filter returns, split at every shared node
  (:mod:`gisgov.ingest.network`), ``length_m`` measured in the metric CRS of the extract, class
  from ``highway`` (arterial / local / path), ``foot = false`` for motorways, ``foot=no`` etc.
* Buildings: footprints (made valid when OSM's are not, each fix reported), ``building:levels`` →
  floors; households estimated for residential kinds (flagged).
* POIs: nodes, ways and relations matching ``layers/osm_categories.yaml`` → facilities at their
  point (or point-on-surface), code ``osm:n<id>`` / ``osm:w<id>`` / ``osm:r<id>``.
* Hierarchy: buildings and facilities hang on the existing community that contains them; where
  none does, on a synthetic street ``999999001`` / community ``999999001001`` named
  ``OSM导入区域`` covering the extract (its hull + 100 m), created or grown as needed.

OSM data © OpenStreetMap contributors, ODbL: credit it wherever it is shown.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import shapely
import yaml
from sqlalchemy import Connection, Engine, text

from gisgov.config import get_settings
from gisgov.crs import WGS84, metric_epsg_for_bounds, transformer
from gisgov.ingest import estimates, store
from gisgov.ingest.levels import LEVELS
from gisgov.ingest.network import (
    Network,
    WalkProfile,
    highway_class,
    largest_component_share,
    load_walk_profile,
    split_lines,
)
from gisgov.ingest.report import INFO, REPAIRED, Report, settle
from gisgov.ingest.settings import get_ingest_settings
from gisgov.ingest.validate import Parents, _polygonal_part

_poly_part: Callable[[Any], Any] = _polygonal_part  # the polygonal part of a geometry, or None

SYNTH_STREET = "999999001"
SYNTH_COMMUNITY = "999999001001"
SYNTH_NAME = "OSM导入区域"
OSM_SOURCE = "OpenStreetMap © OpenStreetMap contributors (ODbL)"
_LEVELS_RE = re.compile(r"\d+(\.\d+)?")


# ---------------------------------------------------------------- category mapping (pure)
@lru_cache(maxsize=4)
def load_category_rules(path: str | None = None) -> tuple[dict, ...]:
    p = Path(path) if path else get_settings().layers_dir / "osm_categories.yaml"
    with open(p, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    out = []
    for r in rules:
        match = {k: (None if "*" in v else {str(x) for x in v}) for k, v in r["match"].items()}
        out.append({"category": r["category"], "match": match, "kinds": r.get("kinds", {}) or {}})
    return tuple(out)


def match_category(tags: dict, rules=None) -> tuple[str, str] | None:
    """(category code, kind) of the first rule a tag dict matches, else None."""
    for r in rules or load_category_rules():
        for key, values in r["match"].items():
            v = tags.get(key)
            if v is None or v == "":
                continue
            v = str(v)
            if values is None or v in values:
                return r["category"], r["kinds"].get(v, v)
    return None


def rule_keys(rules=None) -> set[str]:
    return {k for r in (rules or load_category_rules()) for k in r["match"]}


def parse_levels(v) -> int | None:
    """``building:levels`` → whole floors ('5', '4.5' → 5, '3;4' → 3); None when unusable."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    m = _LEVELS_RE.search(str(v))
    if not m:
        return None
    f = float(m.group(0))
    return int(round(f)) if 0 < f < 300 else None


def parse_height(v) -> float | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    m = _LEVELS_RE.search(str(v))
    return float(m.group(0)) if m else None


def _tags(row: pd.Series, keys: set[str]) -> dict:
    t = {}
    raw = row.get("tags")
    if isinstance(raw, str) and raw:
        with contextlib.suppress(ValueError):
            t.update(json.loads(raw))
    elif isinstance(raw, dict):
        t.update(raw)
    for k in keys:
        v = row.get(k)
        if v is not None and not (isinstance(v, float) and np.isnan(v)):
            t[k] = v
    return t


# ---------------------------------------------------------------- independent census (pyosmium)
def osm_census(path: str | Path, rules=None) -> dict[str, set[tuple[str, int]]]:
    """Every building (closed way ≥ 4 nodes or multipolygon relation with ``building``), every POI
    object matching the category rules, every highway way: sets of ("n"/"w"/"r", id)."""
    import osmium

    rules = rules or load_category_rules()

    class Census(osmium.SimpleHandler):
        def __init__(self):
            super().__init__()
            self.buildings, self.pois, self.highways = set(), set(), set()

        def node(self, n):
            if len(n.tags) and match_category(dict(n.tags), rules):
                self.pois.add(("n", n.id))

        def way(self, w):
            tags = dict(w.tags)
            if "building" in tags and tags["building"] != "no" and w.is_closed() and len(w.nodes) >= 4:
                self.buildings.add(("w", w.id))
            if match_category(tags, rules):
                self.pois.add(("w", w.id))
            if "highway" in tags:
                self.highways.add(("w", w.id))

        def relation(self, r):
            tags = dict(r.tags)
            if tags.get("type") == "multipolygon" and "building" in tags and tags["building"] != "no":
                self.buildings.add(("r", r.id))
            if tags.get("type") == "multipolygon" and match_category(tags, rules):
                self.pois.add(("r", r.id))

    c = Census()
    c.apply_file(str(path))
    return {"buildings": c.buildings, "pois": c.pois, "highways": c.highways}


def _ids(df: pd.DataFrame) -> list[tuple[str, int]]:
    return [(str(t)[0], int(i)) for t, i in zip(df["osm_type"], df["id"], strict=False)]


# ---------------------------------------------------------------- land use, barriers, building tags (pyosmium)
#: railway=* values imported as barriers when at grade (not tunnel, bridge, underground or layer < 0)
RAIL_BARRIERS = frozenset({"rail", "light_rail", "subway", "narrow_gauge", "monorail", "funicular"})
#: highway=* values imported as barriers when the walking profile closes them (motorway always; trunk
#: with motorroad=yes / foot=no) and they are at grade
ROAD_BARRIERS = frozenset({"motorway", "motorway_link", "trunk", "trunk_link"})
WATERWAY_BARRIERS = frozenset({"river", "canal"})
#: barrier.kind per source (the table allows river, water, rail, wall, other; the coverage snapping
#: reads river, water, rail and wall)
BARRIER_KIND = {"rail": "rail", "road": "other", "river": "river", "water": "water"}
#: amenity=* areas treated as land use of their kind for household estimates
AMENITY_LANDUSE = {
    "school": "education",
    "university": "education",
    "college": "education",
    "kindergarten": "education",
    "hospital": "institutional",
    "prison": "institutional",
}
BUILDING_TAG_KEYS = ("building", "name", "building:levels", "height", *estimates.NON_RESIDENTIAL_KEYS)


def _at_grade(tags: dict) -> bool:
    if tags.get("tunnel", "no") != "no" or tags.get("bridge", "no") != "no" or tags.get("covered", "no") == "yes":
        return False
    if tags.get("location") in ("underground", "overground"):
        return False
    try:
        return float(str(tags.get("layer", "0")).split(";")[0]) >= 0
    except ValueError:
        return True


def read_osm_extras(path: str | Path) -> dict[str, pd.DataFrame]:
    """Land use areas, barrier candidates and every building's tags, read with pyosmium (one pass,
    node locations kept, areas assembled from closed ways and multipolygons)."""
    import osmium

    wkb = osmium.geom.WKBFactory()

    class Extras(osmium.SimpleHandler):
        def __init__(self) -> None:
            super().__init__()
            self.landuse: list[dict[str, Any]] = []
            self.barriers: list[dict[str, Any]] = []
            self.building_tags: dict[tuple[str, int], dict[str, Any]] = {}

        def way(self, w) -> None:
            t = w.tags
            if "building" in t and t["building"] != "no":
                self.building_tags[("w", w.id)] = {k: t[k] for k in BUILDING_TAG_KEYS if k in t}
            src = None
            if t.get("railway") in RAIL_BARRIERS:
                src = "rail"
            elif t.get("highway") in ROAD_BARRIERS:
                src = "road"
            elif t.get("waterway") in WATERWAY_BARRIERS:
                src = "river"
            if src is None:
                return
            tags = dict(t)
            if not _at_grade(tags):
                return
            try:
                g = wkb.create_linestring(w)
            except Exception:  # missing node locations (way cut at the extract's edge)
                return
            self.barriers.append({"source": src, "tags": tags, "id": w.id, "wkb": g})

        def relation(self, r) -> None:
            t = r.tags
            if t.get("type") == "multipolygon" and "building" in t and t["building"] != "no":
                self.building_tags[("r", r.id)] = {k: t[k] for k in BUILDING_TAG_KEYS if k in t}

        def area(self, a) -> None:
            t = a.tags
            lu = t.get("landuse") or AMENITY_LANDUSE.get(t.get("amenity", ""))
            water = t.get("natural") == "water" or t.get("waterway") == "riverbank"
            if not lu and not water:
                return
            try:
                g = wkb.create_multipolygon(a)
            except Exception:
                return
            oid = ("w" if a.from_way() else "r", a.orig_id())
            if lu:
                self.landuse.append({"landuse": lu, "name": t.get("name"), "osm": f"{oid[0]}{oid[1]}", "wkb": g})
            if water and _at_grade(dict(t)):
                self.barriers.append({"source": "water", "tags": dict(t), "id": oid[1], "wkb": g})

    h = Extras()
    h.apply_file(str(path), locations=True)

    def frame(rows: list[dict[str, Any]], cols: list[str]) -> pd.DataFrame:
        df = pd.DataFrame(rows, columns=[*cols, "wkb"])
        df["geometry"] = shapely.from_wkb(df.pop("wkb").to_numpy(dtype=object)) if len(df) else []
        return df

    bt = pd.DataFrame({"key": list(h.building_tags), "tags": list(h.building_tags.values())})
    return {
        "landuse": frame(h.landuse, ["landuse", "name", "osm"]),
        "barriers": frame(h.barriers, ["source", "tags", "id"]),
        "building_tags": bt,
    }


# ---------------------------------------------------------------- reading
def read_osm(path: str | Path, progress: Progress = None) -> dict[str, Any]:
    import warnings

    import pyrosm

    rules = load_category_rules()
    keys = rule_keys(rules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        osm = pyrosm.OSM(str(path))
        if progress:
            progress("read", 0, 3)
        roads = osm.get_network(network_type="all")
        if progress:
            progress("read", 1, 3)
        buildings = osm.get_buildings()
        if progress:
            progress("read", 2, 3)
        pois = osm.get_pois(custom_filter=dict.fromkeys(keys, True))
        if progress:
            progress("read", 3, 3)
    empty = pd.DataFrame({"id": [], "osm_type": [], "geometry": []})
    return {
        "roads": roads if roads is not None else empty,
        "buildings": buildings if buildings is not None else empty,
        "pois": pois if pois is not None else empty,
        "rules": rules,
        "keys": keys,
        **read_osm_extras(path),
    }


# ---------------------------------------------------------------- parsing (pure: no database)
ToSrid = Callable[[Any], np.ndarray]  # lon/lat geometries -> the same in the storage CRS
Progress = Callable[[str, int, int], Any] | None
Box = tuple[float, float, float, float]


@dataclass
class OsmCity:
    """What an extract holds, in the storage CRS, ready to write (built by :func:`parse_osm`)."""

    roads: pd.DataFrame  # pyrosm's highway ways (counted as highway_ways)
    net: Network  # the ways split at every shared node
    edge_attrs: pd.DataFrame  # per edge: class, name, foot, oneway_foot
    walk: np.ndarray  # per edge: walkable
    share: float  # share of walkable nodes in the largest connected component
    buildings: pd.DataFrame  # pyrosm rows of the usable buildings
    b_ids: list[tuple[str, int]]  # ("w"/"r", id) of every building pyrosm returned
    b_shape: np.ndarray  # usable (valid, polygonal) footprints of ``buildings``
    b_pos: np.ndarray  # a point on each footprint
    facilities: pd.DataFrame  # code, name, category_code, kind, address, source, pos
    profile: WalkProfile = field(default_factory=WalkProfile)  # the walking rules applied
    ways: dict[str, dict[str, int]] = field(default_factory=dict)  # per highway value: used / skipped
    b_tags: list[dict[str, Any]] = field(default_factory=list)  # per kept building: its OSM tags
    b_landuse: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))  # land use it lies in
    b_area_m2: np.ndarray = field(default_factory=lambda: np.array([], dtype=float))
    b_residential: np.ndarray = field(default_factory=lambda: np.array([], dtype=bool))  # gets households
    b_excluded: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))  # why not ('' = does)
    compounds: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["name", "osm", "geom", "area_m2"]))
    barriers: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["kind", "name", "source", "geom"]))

    @property
    def everything(self) -> np.ndarray:
        return np.concatenate(
            [
                self.net.geoms,
                self.b_shape,
                self.facilities["pos"].to_numpy(dtype=object),
                self.compounds["geom"].to_numpy(dtype=object),
            ]
        )


def _to_srid(srid: int) -> ToSrid:
    tr = transformer(WGS84, srid)

    def to_srid(geoms: Any) -> np.ndarray:
        arr: np.ndarray = np.asarray(geoms, dtype=object)
        if srid == WGS84:
            return arr
        out: np.ndarray = shapely.transform(arr, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
        return out

    return to_srid


def _parse_network(
    roads: pd.DataFrame, to_srid: ToSrid, profile: WalkProfile
) -> tuple[Network, pd.DataFrame, np.ndarray, float, dict[str, dict[str, int]]]:
    """Highway ways → edges split at shared nodes, their attributes, walkable mask, connectivity,
    and per ``highway`` value the ways used / skipped (by reason) under ``profile``."""
    rgeom = np.asarray(roads.geometry.values, dtype=object) if len(roads) else np.array([], dtype=object)
    parts, owner = shapely.get_parts(rgeom, return_index=True) if len(rgeom) else (rgeom, np.array([], int))
    is_line = shapely.get_type_id(parts) == 1 if len(parts) else np.array([], bool)
    parts, owner = parts[is_line], owner[is_line]
    net = split_lines(to_srid(parts))
    col = lambda df, c: df[c].to_numpy(dtype=object) if c in df.columns else np.full(len(df), None, dtype=object)  # noqa: E731
    hw, foot, access, name, motorroad = (col(roads, c) for c in ("highway", "foot", "access", "name", "motorroad"))
    decisions = [
        profile.decide(_clean(hw[w]), _clean(foot[w]), _clean(access[w]), _clean(motorroad[w]))
        for w in range(len(roads))
    ]
    ways: dict[str, dict[str, int]] = {}
    for w, (ok, why) in enumerate(decisions):
        d = ways.setdefault(str(_clean(hw[w]) or "(none)"), {"used": 0, "skipped": 0})
        d["used" if ok else "skipped"] += 1
        if not ok:
            d[f"skipped_{why}"] = d.get(f"skipped_{why}", 0) + 1
    e_way = owner[net.line]
    edge_attrs = pd.DataFrame(
        {
            "class": [highway_class(hw[w]) for w in e_way],
            "name": [_clean(name[w]) for w in e_way],
            "foot": [decisions[w][0] for w in e_way],
            "oneway_foot": False,
        }
    )
    walk = edge_attrs["foot"].to_numpy(dtype=bool)
    walk_nodes = np.unique(np.concatenate([net.source[walk], net.target[walk]])) if walk.any() else np.array([], int)
    remap = np.full(len(net.node_xy), -1)
    remap[walk_nodes] = np.arange(len(walk_nodes))
    share = largest_component_share(len(walk_nodes), remap[net.source[walk]], remap[net.target[walk]])
    return net, edge_attrs, walk, share, dict(sorted(ways.items()))


def _parse_buildings(
    bld: pd.DataFrame, to_srid: ToSrid, report: Report
) -> tuple[list[int], list[tuple[str, int]], np.ndarray]:
    """Usable footprints (made valid when needed; each fix or skip reported): kept row positions,
    ids of every building read, the footprints."""
    b_geoms = to_srid(bld.geometry.values) if len(bld) else np.array([], dtype=object)
    b_ids = _ids(bld) if len(bld) else []
    b_keep, b_shape = [], []
    for i, g in enumerate(b_geoms):
        rec = f"{b_ids[i][0]}{b_ids[i][1]}"
        if g is None or g.is_empty:
            report.add(rec, "osm_skipped", "EMPTY", "建筑几何为空，已跳过 building without geometry skipped", INFO)
            continue
        poly = _polygonal_part(g)
        if poly is None or not poly.is_valid:
            fixed = _polygonal_part(shapely.make_valid(g))
            if fixed is None or fixed.is_empty:
                report.add(
                    rec,
                    "osm_skipped",
                    g.geom_type,
                    "建筑几何无法修复，已跳过 building geometry unusable, skipped",
                    INFO,
                )
                continue
            report.add(
                rec,
                "geom_invalid",
                shapely.is_valid_reason(g),
                "MakeValid 已修复 building footprint made valid",
                REPAIRED,
            )
            poly = fixed
        b_keep.append(i)
        b_shape.append(poly)
    return b_keep, b_ids, np.array(b_shape, dtype=object)


def _parse_pois(
    pois: pd.DataFrame, rules: tuple[dict[str, Any], ...], keys: set[str], to_srid: ToSrid, report: Report
) -> pd.DataFrame:
    """POIs matching the category rules → facility rows at their point (or a point on their surface)."""
    f_rows = []
    p_geoms = to_srid(pois.geometry.values) if len(pois) else np.array([], dtype=object)
    p_ids = _ids(pois) if len(pois) else []
    for i in range(len(pois)):
        row = pois.iloc[i]
        tags = _tags(row, keys)
        m = match_category(tags, rules)
        if m is None:
            continue
        g = p_geoms[i]
        if g is None or g.is_empty:
            report.add(
                f"{p_ids[i][0]}{p_ids[i][1]}", "osm_skipped", "EMPTY", "设施几何为空，已跳过 POI without geometry", INFO
            )
            continue
        pt = g if g.geom_type == "Point" else shapely.point_on_surface(shapely.make_valid(g))
        cat, kind = m
        f_rows.append(
            {
                "code": f"osm:{p_ids[i][0]}{p_ids[i][1]}",
                "name": _clean(tags.get("name")) or str(kind),
                "category_code": cat,
                "kind": str(kind),
                "address": _address(tags),
                "source": OSM_SOURCE,
                "pos": pt,
            }
        )
    return pd.DataFrame(f_rows, columns=["code", "name", "category_code", "kind", "address", "source", "pos"])


COMPOUND_MAX_M2 = 1_000_000.0  # a named residential area larger than 1 km² is a district, not a 小区
COMPOUND_MIN_M2 = 500.0


def _areas_m2(geoms: np.ndarray, srid: int) -> np.ndarray:
    """Areas (m²) of storage-CRS polygons, measured in the metric CRS of their extent."""
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return np.array([], dtype=float)
    epsg = metric_epsg_for_bounds(tuple(shapely.total_bounds(geoms)))
    tr = transformer(srid, epsg)
    out: np.ndarray = shapely.area(
        shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    )
    return out


def _valid_polygons(geoms: np.ndarray) -> np.ndarray:
    out = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(geoms):
        if g is None or g.is_empty:
            continue
        poly = _poly_part(g if g.is_valid else shapely.make_valid(g))
        out[i] = None if poly is None or poly.is_empty else poly
    return out


def _parse_landuse(lu: pd.DataFrame | None, to_srid: ToSrid, srid: int) -> pd.DataFrame:
    """Land use polygons in the storage CRS (``landuse``, ``name``, ``osm``, ``geom``, ``area_m2``)."""
    if lu is None or not len(lu):
        return pd.DataFrame(columns=["landuse", "name", "osm", "geom", "area_m2"])
    geoms = _valid_polygons(to_srid(lu["geometry"].to_numpy(dtype=object)))
    out = pd.DataFrame(
        {"landuse": lu["landuse"].to_numpy(), "name": [_clean(v) for v in lu["name"]], "osm": lu["osm"], "geom": geoms}
    )
    out = out[out["geom"].notna()].reset_index(drop=True)
    out["area_m2"] = _areas_m2(out["geom"].to_numpy(dtype=object), srid)
    return out


def _landuse_at(landuse: pd.DataFrame, points: np.ndarray) -> np.ndarray:
    """The land use of the smallest land use polygon containing each point (None: none)."""
    out = np.full(len(points), None, dtype=object)
    if not len(landuse) or not len(points):
        return out
    tree = shapely.STRtree(landuse["geom"].to_numpy(dtype=object))
    pi, li = tree.query(np.asarray(points, dtype=object), predicate="within")
    if not len(pi):
        return out
    area = landuse["area_m2"].to_numpy(dtype=float)[li]
    order = np.lexsort((area, pi))
    pi, li = pi[order], li[order]
    first = np.ones(len(pi), dtype=bool)
    first[1:] = pi[1:] != pi[:-1]
    out[pi[first]] = landuse["landuse"].to_numpy(dtype=object)[li[first]]
    return out


def _parse_compounds(landuse: pd.DataFrame, report: Report) -> pd.DataFrame:
    """Named ``landuse=residential`` areas → compounds (小区): smallest first; one overlapping a
    compound already taken, or too large / too small for a compound, is reported and skipped."""
    cols = ["name", "osm", "geom", "area_m2"]
    if not len(landuse):
        return pd.DataFrame(columns=cols)
    cand = landuse[(landuse["landuse"] == "residential") & landuse["name"].notna()].sort_values("area_m2")
    taken: list[Any] = []
    rows = []
    for r in (SimpleNamespace(**{str(k): v for k, v in d.items()}) for d in cand.to_dict("records")):
        if not COMPOUND_MIN_M2 <= r.area_m2 <= COMPOUND_MAX_M2:
            report.add(
                r.osm,
                "osm_compound_skipped",
                f"{r.area_m2:.0f} m²",
                f"住宅用地「{r.name}」面积不像小区，未作为小区导入 named residential land use is not "
                f"compound-sized ({COMPOUND_MIN_M2:.0f}–{COMPOUND_MAX_M2:.0f} m²): not imported as a compound",
                INFO,
            )
            continue
        hit = [t for t in taken if shapely.intersection(t, r.geom).area > 0.01 * min(t.area, r.geom.area)]
        if hit:
            report.add(
                r.osm,
                "osm_compound_skipped",
                str(r.name),
                f"住宅用地「{r.name}」与已导入小区重叠 overlaps a smaller compound already taken: not imported",
                INFO,
            )
            continue
        taken.append(r.geom)
        rows.append({"name": r.name, "osm": r.osm, "geom": r.geom, "area_m2": r.area_m2})
    return pd.DataFrame(rows, columns=cols)


def _parse_barriers(barriers: pd.DataFrame | None, to_srid: ToSrid, profile: WalkProfile) -> pd.DataFrame:
    """Railways, closed roads (motorway; trunk closed to walking) and water → barrier rows."""
    cols = ["kind", "name", "source", "geom"]
    if barriers is None or not len(barriers):
        return pd.DataFrame(columns=cols)
    rows = []
    geoms = to_srid(barriers["geometry"].to_numpy(dtype=object))
    for src, tags, g in zip(barriers["source"], barriers["tags"], geoms, strict=False):
        if g is None or g.is_empty:
            continue
        if src == "road":
            ok, _ = profile.decide(tags.get("highway"), tags.get("foot"), tags.get("access"), tags.get("motorroad"))
            if ok:  # a trunk people may walk along is not a barrier
                continue
        if src == "water":
            g = _poly_part(g if g.is_valid else shapely.make_valid(g))
            if g is None or g.is_empty:
                continue
        label = tags.get("name") or tags.get("ref") or tags.get("railway") or tags.get("highway")
        rows.append(
            {
                "kind": BARRIER_KIND[src],
                "name": _clean(label),
                "source": tags.get("railway") or tags.get("highway") or tags.get("waterway") or "water",
                "geom": g,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def _building_tags(bld: pd.DataFrame, tag_frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Each building's OSM tags: pyosmium's full read when given, else pyrosm's columns."""
    known: dict[tuple[str, int], dict[str, Any]] = {}
    if tag_frame is not None and len(tag_frame):
        known = dict(zip(tag_frame["key"], tag_frame["tags"], strict=False))
    out: list[dict[str, Any]] = []
    for i, k in enumerate(_ids(bld) if len(bld) else []):
        t = known.get(k)
        out.append(dict(t) if t is not None else _tags(bld.iloc[i], set(BUILDING_TAG_KEYS)))
    return out


def parse_osm(
    data: dict[str, Any],
    srid: int,
    report: Report,
    progress: Progress = None,
    *,
    walk_profile: WalkProfile | None = None,
    residential_tags: tuple[str, ...] | list[str] = (),
    all_buildings_residential: bool = False,
) -> OsmCity:
    """The frames :func:`read_osm` returned → an :class:`OsmCity` in ``srid``. Pure: no database;
    skipped and repaired objects are added to ``report``.

    ``walk_profile``: the walking rules (default ``layers/walk_profile.yaml``). ``residential_tags``:
    ``building=*`` values whose buildings always get household estimates (the user's override);
    ``all_buildings_residential``: estimate households on every building (no exclusion)."""
    profile = walk_profile or load_walk_profile()
    to_srid = _to_srid(srid)
    roads, bld, pois = data["roads"], data["buildings"], data["pois"]
    net, edge_attrs, walk, share, ways = _parse_network(roads, to_srid, profile)
    if progress:
        progress("network", 1, 1)
    b_keep, b_ids, b_shape = _parse_buildings(bld, to_srid, report)
    b_pos = shapely.point_on_surface(b_shape) if len(b_shape) else np.array([], dtype=object)
    kept = bld.iloc[b_keep] if len(bld) else bld
    landuse = _parse_landuse(data.get("landuse"), to_srid, srid)
    b_tags = _building_tags(kept, data.get("building_tags"))
    b_landuse = _landuse_at(landuse, b_pos)
    b_area = _areas_m2(b_shape, srid)
    b_res, b_why = estimates.residential_mask(
        [_clean(t.get("building")) for t in b_tags],
        [_clean(t.get("name")) for t in b_tags],
        b_area,
        b_landuse,
        b_tags,
        residential_kinds=get_ingest_settings().osm_residential,
        residential_tags=residential_tags,
        all_residential=all_buildings_residential,
    )
    if progress:
        progress("buildings", 1, 1)
    fac = _parse_pois(pois, data["rules"], data["keys"], to_srid, report)
    if progress:
        progress("facilities", 1, 1)
    return OsmCity(
        roads=roads,
        net=net,
        edge_attrs=edge_attrs,
        walk=walk,
        share=share,
        buildings=kept,
        b_ids=b_ids,
        b_shape=b_shape,
        b_pos=b_pos,
        facilities=fac,
        profile=profile,
        ways=ways,
        b_tags=b_tags,
        b_landuse=b_landuse,
        b_area_m2=b_area,
        b_residential=b_res,
        b_excluded=b_why,
        compounds=_parse_compounds(landuse, report),
        barriers=_parse_barriers(data.get("barriers"), to_srid, profile),
    )


def check_extent(city: OsmCity, box: Box | None, report: Report) -> Box | None:
    """Bounds of everything in the extract; None (report rejected) when it is empty or outside ``box``."""
    everything = city.everything
    if not len(everything):
        report.add("(file)", "geom_empty", "0", "提取范围内没有道路、建筑或设施 nothing to import in this extract")
        report.status = "rejected"
        return None
    bounds = tuple(shapely.total_bounds(everything))
    if box is not None and not (
        bounds[0] >= box[0] and bounds[1] >= box[1] and bounds[2] <= box[2] and bounds[3] <= box[3]
    ):
        report.add(
            "(file)",
            "outside_region",
            ",".join(f"{b:.4f}" for b in bounds),
            f"坐标超出配置区域 extract lies outside the configured region {box}; pass --region auto "
            "(or set GISGOV_REGION_BBOX) to import it",
        )
        report.status = "rejected"
        return None
    return bounds


def report_census(report: Report, city: OsmCity, c: dict[str, set[tuple[str, int]]]) -> None:
    """What the independent census found but the reader could not build is reported (never lost silently)."""
    for k in sorted(c["buildings"] - set(city.b_ids)):
        report.add(
            f"{k[0]}{k[1]}",
            "osm_skipped",
            "building",
            "读取器无法构建该建筑几何（多为提取边界截断的关系）the reader could not build this building "
            "(usually a relation cut at the extract's edge)",
            INFO,
        )
    fac = city.facilities
    got_p = {tuple(x) for x in (fac["code"].str.slice(4).map(lambda s: (s[0], int(s[1:]))) if len(fac) else [])}
    for k in sorted(c["pois"] - got_p):
        report.add(
            f"{k[0]}{k[1]}",
            "osm_skipped",
            "poi",
            "读取器未返回该设施 the reader returned no geometry for this POI",
            INFO,
        )
    report.stats["osm_buildings_in_file"] = len(c["buildings"])
    report.stats["osm_pois_in_file"] = len(c["pois"])
    report.stats["osm_highway_ways_in_file"] = len(c["highways"])


# ---------------------------------------------------------------- writing
def write_osm(
    engine: Engine,
    city: OsmCity,
    report: Report,
    *,
    srid: int,
    bounds: Box,
    dry_run: bool = False,
    estimate: bool = True,
    progress: Progress = None,
    communities: Any = None,
) -> None:
    """Write a parsed extract in one transaction (rolled back on a dry run or a rejection).

    ``communities``: a prepared community batch (:func:`prepare_communities`) written first, in the
    same transaction, so that buildings, compounds and facilities hang on them."""
    fac = city.facilities
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            store.lock(conn, "street", "community", "compound", "building", "facility", "barrier")
            existing_fac = {r[0] for r in conn.execute(text("SELECT code FROM facility WHERE code LIKE 'osm:%'"))}
            for code in sorted(set(fac["code"]) & existing_fac):
                report.add(
                    code,
                    "code_exists",
                    code,
                    "该 OSM 设施已导入 this OSM object was imported before; delete the earlier import first",
                )
            if communities is not None and report.ok:
                report.counts["communities"] = _write_communities(conn, communities, srid, report)
            if not report.ok:
                tx.rollback()
                report.status = "rejected"
                return
            communities_ = store._polys(conn, "community")
            c_pos = shapely.point_on_surface(city.compounds["geom"].to_numpy(dtype=object))
            b_comm = _assign_communities(communities_, city.b_pos)
            f_comm = _assign_communities(communities_, fac["pos"].to_numpy(dtype=object))
            k_comm = _assign_communities(communities_, c_pos)
            if (b_comm == "").any() or (f_comm == "").any() or (k_comm == "").any():
                _synthetic_area(conn, city.everything, srid, report)
                communities_ = store._polys(conn, "community")
                b_comm = _assign_communities(communities_, city.b_pos)
                f_comm = _assign_communities(communities_, fac["pos"].to_numpy(dtype=object))
                k_comm = _assign_communities(communities_, c_pos)
            # compounds (小区) from named residential land use, then the buildings inside them
            n_k, k_ids, k_geoms = _write_compounds(conn, city.compounds, k_comm, communities_, srid)
            bcols = _building_rows(conn, city.buildings, city.b_shape, city.b_pos, b_comm)
            bcols["compound_id"] = pd.array(_compound_of(city.b_pos, b_comm, k_ids, k_geoms, k_comm), dtype="Int64")
            n_b = store.write_level(conn, LEVELS["building"], bcols, srid, progress)
            n_est = 0
            if estimate and n_b:
                codes = [c for c, r in zip(bcols["code"], city.b_residential, strict=False) if r]
                n_est = estimates.apply_estimates(conn, codes)
            # facilities
            fac["community_code"] = [c or None for c in f_comm]
            fac["geom"] = fac["pos"]
            n_f = store.write_level(conn, LEVELS["facility"], fac, srid, progress)
            # network and barriers
            n_nodes, n_edges = store.write_network(conn, city.net, city.edge_attrs, srid, progress)
            n_bar = _write_barriers(conn, city.barriers, srid)
            report.counts.update(
                highway_ways=int(len(city.roads)),
                nodes=n_nodes,
                edges=n_edges,
                walkable_edges=int(city.walk.sum()),
                buildings=n_b,
                households_estimated=n_est,
                facilities=n_f,
                compounds=n_k,
                barriers=n_bar,
                written=n_b + n_f + n_edges + n_k + n_bar,
            )
            _report_city(report, city, bcols, estimate)
            report.stats["bounds"] = [round(float(b), 6) for b in bounds]
            settle(tx, report, dry_run=dry_run)
        except BaseException:
            if tx.is_active:
                tx.rollback()
            raise


def _report_city(report: Report, city: OsmCity, bcols: pd.DataFrame, estimate: bool) -> None:
    """Walking profile and way counts, exclusions from household estimates, floors, barriers."""
    fac = city.facilities
    report.stats["largest_component_share"] = round(city.share, 4)
    report.stats["walkable_km"] = round(float(city.net.length_m[city.walk].sum()) / 1000, 2)
    report.stats["walk_profile"] = city.profile.name
    report.stats["walk_ways"] = city.ways
    report.stats["facilities_by_category"] = (
        {k: int(v) for k, v in fac["category_code"].value_counts().items()} if len(fac) else {}
    )
    floors = bcols["floors"]
    report.stats["floors_from"] = {
        "building_levels": int(bcols["_floors_from"].eq("levels").sum()),
        "height": int(bcols["_floors_from"].eq("height").sum()),
        "unknown": int(floors.isna().sum()),
    }
    report.stats["barriers_by_kind"] = (
        {str(k): int(v) for k, v in city.barriers["source"].value_counts().items()} if len(city.barriers) else {}
    )
    why = pd.Series(city.b_excluded, dtype=object)
    excluded = {str(k): int(v) for k, v in why[why != ""].value_counts().items()}
    report.stats["households_excluded"] = excluded
    if not estimate:
        return
    for reason, n in sorted(excluded.items()):
        examples = [
            f"{c}{'「' + str(nm) + '」' if nm else ''}"
            for c, nm, w in zip(bcols["code"], bcols["name"], city.b_excluded, strict=False)
            if w == reason
        ][:5]
        report.add(
            "(file)",
            "households_excluded",
            f"{reason}: {n}",
            f"{n} 栋建筑未估算户数 buildings got no household estimate: "
            f"{estimates.EXCLUDE_REASONS[reason]} (e.g. {', '.join(examples)}); "
            "override with --residential-tags or --all-buildings-residential",
            INFO,
        )


# ---------------------------------------------------------------- the import
def load_osm(
    path: str | Path,
    *,
    engine: Engine,
    region: Any = None,
    dry_run: bool = False,
    estimate: bool = True,
    progress: Progress = None,
    census: bool = True,
    walk_profile: str | Path | None = None,
    residential_tags: tuple[str, ...] | list[str] | str = (),
    all_buildings_residential: bool = False,
    communities: str | Path | None = None,
    communities_crs: str | None = None,
) -> Report:
    """Import an .osm.pbf extract: read (pyrosm) → parse (:func:`parse_osm`) → check its extent →
    cross-check with an independent census (pyosmium) → write (:func:`write_osm`).

    ``walk_profile``: a walking-profile YAML (default ``layers/walk_profile.yaml``).
    ``residential_tags``: ``building=*`` values always treated as dwellings (list or comma-separated).
    ``all_buildings_residential``: estimate households on every building, excluding none.
    ``communities``: a polygon file of communities (社区) written first in the same transaction;
    buildings, compounds and facilities then hang on them (``communities_crs`` when the file has none)."""
    from gisgov.ingest.loader import UsageError, parse_region

    p = Path(path)
    if not p.exists():
        raise UsageError(f"文件不存在 no such file: {p}")
    if not p.name.lower().endswith((".pbf", ".osm.pbf")):
        raise UsageError(f"{p.name}: 只读取开放街道地图提取文件 --osm reads OpenStreetMap .osm.pbf extracts")
    report = Report(p.name, "osm", dry_run=dry_run)
    box = parse_region(region)
    try:
        data = read_osm(p, progress)
    except Exception as exc:  # not a PBF, truncated, damaged blocks: the file is refused, never a 500
        return _unreadable(report, p, exc)
    try:
        profile = load_walk_profile(walk_profile)
    except (OSError, ValueError) as exc:
        raise UsageError(f"步行规则文件无效 --walk-profile: {exc}") from exc
    if isinstance(residential_tags, str):
        residential_tags = [t for t in (x.strip() for x in residential_tags.split(",")) if t]
    comm_batch = None
    if communities is not None:
        comm_batch = prepare_communities(communities, report, crs=communities_crs)
        if comm_batch is None:
            return report
    srid = get_settings().srid
    city = parse_osm(
        data,
        srid,
        report,
        progress,
        walk_profile=profile,
        residential_tags=tuple(residential_tags),
        all_buildings_residential=all_buildings_residential,
    )
    bounds = check_extent(city, box, report)
    if bounds is None:
        return report
    if census:
        try:
            c = osm_census(p, data["rules"])
        except Exception as exc:
            return _unreadable(report, p, exc)
        report_census(report, city, c)
    write_osm(
        engine,
        city,
        report,
        srid=srid,
        bounds=bounds,
        dry_run=dry_run,
        estimate=estimate,
        progress=progress,
        communities=comm_batch,
    )
    return report


def _unreadable(report: Report, p: Path, exc: Exception) -> Report:
    detail = str(exc).replace(str(p.resolve()), p.name).replace(str(p), p.name)[:300]
    report.add(
        "(file)",
        "unreadable",
        p.name,
        f"{p.name}: 无法读取的 OSM PBF 文件 not a readable OSM PBF extract "
        f"(rule: unreadable; {type(exc).__name__}: {detail})",
    )
    report.status = "rejected"
    return report


def _clean(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def _address(tags: dict[str, Any]) -> str | None:
    parts = [_clean(tags.get(k)) for k in ("addr:city", "addr:street", "addr:housenumber")]
    s = " ".join(p for p in parts if p)
    return s or None


def _assign_communities(communities: Parents, points: np.ndarray) -> np.ndarray:
    idx = communities.containing(np.asarray(points, dtype=object))
    out = np.array(["" if k < 0 else communities.codes[k] for k in idx], dtype=object)
    return out


def _synthetic_area(conn: Connection, geoms: np.ndarray, srid: int, report: Report) -> None:
    """Create (or grow) the synthetic street/community covering the extract."""
    hull = shapely.convex_hull(shapely.union_all(shapely.envelope(geoms)))
    epsg = metric_epsg_for_bounds(tuple(shapely.bounds(hull)))
    fwd, back = transformer(srid, epsg), transformer(epsg, srid)
    m = shapely.transform(hull, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
    area = shapely.transform(m.buffer(100, quad_segs=4), lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))
    wkb = shapely.to_wkb(shapely.set_srid(shapely.MultiPolygon([area]), srid), hex=True, include_srid=True)
    exists = conn.execute(text("SELECT 1 FROM street WHERE code = :c"), {"c": SYNTH_STREET}).scalar()
    if exists:
        conn.execute(
            text(
                "UPDATE street SET geom = ST_Multi(ST_Union(geom, ST_GeomFromEWKB(decode(:g, 'hex')))) WHERE code = :c"
            ),
            {"g": wkb, "c": SYNTH_STREET},
        )
        conn.execute(
            text(
                "UPDATE community SET geom = ST_Multi(ST_Union(geom, ST_GeomFromEWKB(decode(:g, 'hex')))) "
                "WHERE code = :c"
            ),
            {"g": wkb, "c": SYNTH_COMMUNITY},
        )
        report.add("(file)", "synthetic_area", SYNTH_COMMUNITY, f"已扩大合成社区 grew the synthetic {SYNTH_NAME}", INFO)
    else:
        conn.execute(
            text("INSERT INTO street (code, name, geom) VALUES (:c, :n, ST_GeomFromEWKB(decode(:g, 'hex')))"),
            {"c": SYNTH_STREET, "n": SYNTH_NAME, "g": wkb},
        )
        conn.execute(
            text(
                "INSERT INTO community (code, street_code, name, kind, geom) "
                "VALUES (:c, :s, :n, 'OSM', ST_GeomFromEWKB(decode(:g, 'hex')))"
            ),
            {"c": SYNTH_COMMUNITY, "s": SYNTH_STREET, "n": SYNTH_NAME, "g": wkb},
        )
        report.add(
            "(file)",
            "synthetic_area",
            SYNTH_COMMUNITY,
            f"已创建合成街道 {SYNTH_STREET} / 社区 {SYNTH_COMMUNITY}「{SYNTH_NAME}」 covering the extract "
            "(no community contained its buildings)",
            INFO,
        )


def _building_rows(
    conn: Connection, bld: pd.DataFrame, shapes: np.ndarray, pos: np.ndarray, comm: np.ndarray
) -> pd.DataFrame:
    n = len(shapes)
    top: dict[str, int] = {}
    for (code,) in conn.execute(
        text("SELECT code FROM building WHERE community_code = ANY(:c)"), {"c": sorted(set(comm))}
    ):
        top[code[:12]] = max(top.get(code[:12], 0), int(code[12:]))
    codes = []
    for c in comm:
        top[c] = top.get(c, 0) + 1
        if top[c] > 99999:
            raise ValueError(f"社区楼栋数超出编码容量 community {c}: more than 99,999 buildings")
        codes.append(f"{c}{top[c]:05d}")
    get = lambda c: bld[c].to_numpy(dtype=object) if c in bld.columns else np.full(n, None, dtype=object)  # noqa: E731
    tags = bld["tags"].to_numpy(dtype=object) if "tags" in bld.columns else np.full(n, None, dtype=object)
    addr = [
        _address({"addr:city": a, "addr:street": b, "addr:housenumber": c})
        for a, b, c in zip(get("addr:city"), get("addr:street"), get("addr:housenumber"), strict=False)
    ]
    storey = get_ingest_settings().storey_height_m
    levels: list[int | None] = []
    source: list[str] = []
    for lv, t, h in zip(get("building:levels"), tags, get("height"), strict=False):
        x = parse_levels(lv)
        if x is None and isinstance(t, str) and "building:levels" in t:
            try:
                x = parse_levels(json.loads(t).get("building:levels"))
            except ValueError:
                x = None
        src = "levels" if x is not None else ""
        if x is None:
            m = parse_height(h)
            if m is not None and 0 < m < 1000:
                x, src = max(1, int(round(m / storey))), "height"
        levels.append(x)
        source.append(src)
    df = pd.DataFrame(
        {
            "code": codes,
            "community_code": comm,
            "compound_id": None,
            "grid_id": None,
            "name": [_clean(v) for v in get("name")],
            "address": addr,
            "floors": pd.array(levels, dtype="Int64"),
            "units": None,
            "households": None,
            "households_estimated": False,
            "year_built": None,
            "geom": shapes,
            "pos": pos,
            "_kind": [_clean(v) or "yes" for v in get("building")],
            "_floors_from": source,
        }
    )
    return df


def _write_compounds(
    conn: Connection, compounds: pd.DataFrame, comm: np.ndarray, communities: Parents, srid: int
) -> tuple[int, np.ndarray, np.ndarray]:
    """Compounds clipped to the community holding their point-on-surface, coded community code +
    4-digit sequence (continuing the community's existing numbers); returns (count, ids, geometries)."""
    if not len(compounds):
        return 0, np.array([], dtype=np.int64), np.array([], dtype=object)
    top: dict[str, int] = {}
    for (code,) in conn.execute(
        text("SELECT code FROM compound WHERE community_code = ANY(:c)"), {"c": sorted(set(comm))}
    ):
        top[code[:12]] = max(top.get(code[:12], 0), int(code[12:]))
    codes, geoms = [], []
    for g, c in zip(compounds["geom"], comm, strict=False):
        k = communities.index(c)
        clipped = _poly_part(shapely.intersection(g, communities.geoms[k])) if k is not None else None
        top[c] = top.get(c, 0) + 1
        if top[c] > 9999:
            raise ValueError(f"社区小区数超出编码容量 community {c}: more than 9,999 compounds")
        codes.append(f"{c}{top[c]:04d}")
        clipped = clipped if clipped is not None and not clipped.is_empty else g
        geoms.append(clipped if clipped.geom_type == "MultiPolygon" else shapely.MultiPolygon([clipped]))
    rows = pd.DataFrame(
        {
            "code": codes,
            "community_code": comm,
            "name": compounds["name"].to_numpy(dtype=object),
            "year_built": None,
            "property_mode": None,
            "has_party_org": False,
            "geom": geoms,
        }
    )
    n = store.write_level(conn, LEVELS["compound"], rows, srid)
    ids: dict[str, int] = {
        str(k): int(v)
        for k, v in conn.execute(text("SELECT code, id FROM compound WHERE code = ANY(:c)"), {"c": codes}).all()
    }
    return n, np.array([ids[c] for c in codes], dtype=np.int64), np.array(geoms, dtype=object)


def _compound_of(
    pos: np.ndarray, b_comm: np.ndarray, k_ids: np.ndarray, k_geoms: np.ndarray, k_comm: np.ndarray
) -> list[int | None]:
    """The compound containing each building's point (same community), else None."""
    out: list[int | None] = [None] * len(pos)
    if not len(k_ids) or not len(pos):
        return out
    bi, ki = shapely.STRtree(k_geoms).query(np.asarray(pos, dtype=object), predicate="within")
    for b, k in zip(bi, ki, strict=False):
        if out[b] is None and k_comm[k] == b_comm[b]:
            out[b] = int(k_ids[k])
    return out


def _write_barriers(conn: Connection, barriers: pd.DataFrame, srid: int) -> int:
    if not len(barriers):
        return 0
    hexes = store.ewkb(barriers["geom"], srid)
    rows = zip(barriers["kind"], barriers["name"].map(_clean), hexes, strict=False)
    return store.copy_rows(conn, "barrier", ["kind", "name", "geom"], rows)


# ---------------------------------------------------------------- user-supplied communities
def prepare_communities(path: str | Path, report: Report, *, crs: str | None = None) -> Any:
    """Read a polygon file of communities (社区: 12-digit code, name …; the usual field aliases) for
    :func:`load_osm`: a prepared batch, validated and written inside the OSM import's transaction."""
    from gisgov.ingest.loader import UsageError, prepare
    from gisgov.ingest.readers import ReadError, read_any

    p = Path(path)
    if not p.exists():
        raise UsageError(f"社区文件不存在 no such communities file: {p}")
    try:
        raw = read_any(p)
    except ReadError as exc:
        report.add(p.name, getattr(exc, "rule", "unreadable"), p.suffix, str(exc))
        report.status = "rejected"
        return None
    if not len(raw.records):
        report.add(
            p.name, "file_empty", p.suffix, f"{p.name}: 社区文件没有任何记录 the communities file holds no records"
        )
        report.status = "rejected"
        return None
    sub = Report(p.name, "community", dry_run=report.dry_run)
    batch = prepare(raw, "community", crs=crs, report=sub)
    report.issues.extend(sub.issues)  # each names the communities file
    return batch


def _write_communities(conn: Connection, batch: Any, srid: int, report: Report) -> int:
    """Validate the communities against the database (codes, streets) and write them. A street that
    does not exist yet is created from its communities (code = the communities' first 9 digits)."""
    from gisgov.ingest.validate import validate

    lv = LEVELS["community"]
    codes = [str(c) for c in batch.attrs["code"].tolist() if c is not None] if "code" in batch.attrs else []
    have = {r[0] for r in conn.execute(text("SELECT code FROM street"))}
    for street in sorted({c[:9] for c in codes if len(c) == 12 and c.isdigit()} - have):
        parts = [
            g
            for c, g in zip(batch.attrs["code"], batch.geoms, strict=False)
            if str(c).startswith(street) and g is not None
        ]
        shape = _poly_part(shapely.make_valid(shapely.union_all(parts)))
        if shape is None:
            continue
        shape = shape.buffer(0)
        shape = shape if shape.geom_type == "MultiPolygon" else shapely.MultiPolygon([shape])
        wkb = shapely.to_wkb(shapely.set_srid(shape, srid), hex=True, include_srid=True)
        conn.execute(
            text("INSERT INTO street (code, name, geom) VALUES (:c, :n, ST_GeomFromEWKB(decode(:g, 'hex')))"),
            {"c": street, "n": f"街道{street}", "g": wkb},
        )
        report.add(
            "(communities)",
            "street_created",
            street,
            f"已由社区边界生成街道 {street} street {street} created from its communities' outline (rename it later)",
            INFO,
        )
    ctx = store.load_context(conn, lv, None)
    rows, issues = validate(batch, ctx)
    for i in issues:
        i.file = f"{batch.source} (communities)"
    report.extend(issues)
    if not report.ok:
        return 0
    return store.write_level(conn, lv, rows[rows["_ok"]], srid)
