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
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
import yaml
from sqlalchemy import Engine, text

from gisgov.config import get_settings
from gisgov.crs import WGS84, metric_epsg_for_bounds, transformer
from gisgov.ingest import estimates, store
from gisgov.ingest.levels import LEVELS
from gisgov.ingest.network import Network, foot_allowed, highway_class, largest_component_share, split_lines
from gisgov.ingest.report import INFO, REPAIRED, Report, settle
from gisgov.ingest.settings import get_ingest_settings
from gisgov.ingest.validate import Parents, _polygonal_part

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


# ---------------------------------------------------------------- reading
def read_osm(path: str | Path, progress=None) -> dict:
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

    @property
    def everything(self) -> np.ndarray:
        return np.concatenate([self.net.geoms, self.b_shape, self.facilities["pos"].to_numpy(dtype=object)])


def _to_srid(srid: int) -> ToSrid:
    tr = transformer(WGS84, srid)

    def to_srid(geoms: Any) -> np.ndarray:
        arr: np.ndarray = np.asarray(geoms, dtype=object)
        if srid == WGS84:
            return arr
        out: np.ndarray = shapely.transform(arr, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
        return out

    return to_srid


def _parse_network(roads: pd.DataFrame, to_srid: ToSrid) -> tuple[Network, pd.DataFrame, np.ndarray, float]:
    """Highway ways → edges split at shared nodes, their attributes, walkable mask, connectivity."""
    rgeom = np.asarray(roads.geometry.values, dtype=object) if len(roads) else np.array([], dtype=object)
    parts, owner = shapely.get_parts(rgeom, return_index=True) if len(rgeom) else (rgeom, np.array([], int))
    is_line = shapely.get_type_id(parts) == 1 if len(parts) else np.array([], bool)
    parts, owner = parts[is_line], owner[is_line]
    net = split_lines(to_srid(parts))
    col = lambda df, c: df[c].to_numpy(dtype=object) if c in df.columns else np.full(len(df), None, dtype=object)  # noqa: E731
    hw, foot, access, name = (col(roads, c) for c in ("highway", "foot", "access", "name"))
    e_way = owner[net.line]
    edge_attrs = pd.DataFrame(
        {
            "class": [highway_class(hw[w]) for w in e_way],
            "name": [_clean(name[w]) for w in e_way],
            "foot": [foot_allowed(_clean(hw[w]), _clean(foot[w]), _clean(access[w])) for w in e_way],
            "oneway_foot": False,
        }
    )
    walk = edge_attrs["foot"].to_numpy(dtype=bool)
    walk_nodes = np.unique(np.concatenate([net.source[walk], net.target[walk]])) if walk.any() else np.array([], int)
    remap = np.full(len(net.node_xy), -1)
    remap[walk_nodes] = np.arange(len(walk_nodes))
    share = largest_component_share(len(walk_nodes), remap[net.source[walk]], remap[net.target[walk]])
    return net, edge_attrs, walk, share


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


def parse_osm(data: dict[str, Any], srid: int, report: Report, progress: Progress = None) -> OsmCity:
    """The frames :func:`read_osm` returned → an :class:`OsmCity` in ``srid``. Pure: no database;
    skipped and repaired objects are added to ``report``."""
    to_srid = _to_srid(srid)
    roads, bld, pois = data["roads"], data["buildings"], data["pois"]
    net, edge_attrs, walk, share = _parse_network(roads, to_srid)
    if progress:
        progress("network", 1, 1)
    b_keep, b_ids, b_shape = _parse_buildings(bld, to_srid, report)
    b_pos = shapely.point_on_surface(b_shape) if len(b_shape) else np.array([], dtype=object)
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
        buildings=bld.iloc[b_keep] if len(bld) else bld,
        b_ids=b_ids,
        b_shape=b_shape,
        b_pos=b_pos,
        facilities=fac,
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
) -> None:
    """Write a parsed extract in one transaction (rolled back on a dry run or a rejection)."""
    fac = city.facilities
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            store.lock(conn, "street", "community", "building", "facility")
            existing_fac = {r[0] for r in conn.execute(text("SELECT code FROM facility WHERE code LIKE 'osm:%'"))}
            for code in sorted(set(fac["code"]) & existing_fac):
                report.add(
                    code,
                    "code_exists",
                    code,
                    "该 OSM 设施已导入 this OSM object was imported before; delete the earlier import first",
                )
            if not report.ok:
                tx.rollback()
                report.status = "rejected"
                return
            communities = store._polys(conn, "community")
            b_comm = _assign_communities(communities, city.b_pos)
            f_comm = _assign_communities(communities, fac["pos"].to_numpy(dtype=object))
            if (b_comm == "").any() or (f_comm == "").any():
                _synthetic_area(conn, city.everything, srid, report)
                communities = store._polys(conn, "community")
                b_comm = _assign_communities(communities, city.b_pos)
                f_comm = _assign_communities(communities, fac["pos"].to_numpy(dtype=object))
            # buildings
            bcols = _building_rows(conn, city.buildings, city.b_shape, city.b_pos, b_comm)
            n_b = store.write_level(conn, LEVELS["building"], bcols, srid, progress)
            n_est = 0
            if estimate and n_b:
                res = set(get_ingest_settings().osm_residential)
                kinds = bcols["_kind"].to_numpy(dtype=object)
                codes = [c for c, k in zip(bcols["code"], kinds, strict=False) if str(k) in res]
                n_est = estimates.apply_estimates(conn, codes, floors_override=_floors_from_height(bcols))
            # facilities
            fac["community_code"] = [c or None for c in f_comm]
            fac["geom"] = fac["pos"]
            n_f = store.write_level(conn, LEVELS["facility"], fac, srid, progress)
            # network
            n_nodes, n_edges = store.write_network(conn, city.net, city.edge_attrs, srid, progress)
            report.counts.update(
                highway_ways=int(len(city.roads)),
                nodes=n_nodes,
                edges=n_edges,
                walkable_edges=int(city.walk.sum()),
                buildings=n_b,
                households_estimated=n_est,
                facilities=n_f,
                written=n_b + n_f + n_edges,
            )
            report.stats["largest_component_share"] = round(city.share, 4)
            report.stats["walkable_km"] = round(float(city.net.length_m[city.walk].sum()) / 1000, 2)
            report.stats["facilities_by_category"] = (
                {k: int(v) for k, v in fac["category_code"].value_counts().items()} if len(fac) else {}
            )
            report.stats["bounds"] = [round(float(b), 6) for b in bounds]
            settle(tx, report, dry_run=dry_run)
        except BaseException:
            if tx.is_active:
                tx.rollback()
            raise


# ---------------------------------------------------------------- the import
def load_osm(
    path: str | Path,
    *,
    engine: Engine,
    region=None,
    dry_run: bool = False,
    estimate: bool = True,
    progress=None,
    census: bool = True,
) -> Report:
    """Import an .osm.pbf extract: read (pyrosm) → parse (:func:`parse_osm`) → check its extent →
    cross-check with an independent census (pyosmium) → write (:func:`write_osm`)."""
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
    srid = get_settings().srid
    city = parse_osm(data, srid, report, progress)
    bounds = check_extent(city, box, report)
    if bounds is None:
        return report
    if census:
        try:
            c = osm_census(p, data["rules"])
        except Exception as exc:
            return _unreadable(report, p, exc)
        report_census(report, city, c)
    write_osm(engine, city, report, srid=srid, bounds=bounds, dry_run=dry_run, estimate=estimate, progress=progress)
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


def _clean(v):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def _address(tags: dict) -> str | None:
    parts = [_clean(tags.get(k)) for k in ("addr:city", "addr:street", "addr:housenumber")]
    s = " ".join(p for p in parts if p)
    return s or None


def _assign_communities(communities: Parents, points: np.ndarray) -> np.ndarray:
    idx = communities.containing(np.asarray(points, dtype=object))
    out = np.array(["" if k < 0 else communities.codes[k] for k in idx], dtype=object)
    return out


def _synthetic_area(conn, geoms: np.ndarray, srid: int, report: Report) -> None:
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


def _building_rows(conn, bld: pd.DataFrame, shapes: np.ndarray, pos: np.ndarray, comm: np.ndarray) -> pd.DataFrame:
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
    levels = []
    for lv, t in zip(get("building:levels"), tags, strict=False):
        x = parse_levels(lv)
        if x is None and isinstance(t, str) and "building:levels" in t:
            try:
                x = parse_levels(json.loads(t).get("building:levels"))
            except ValueError:
                x = None
        levels.append(x)
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
            "_height": [parse_height(v) for v in get("height")],
        }
    )
    return df


def _floors_from_height(b: pd.DataFrame) -> dict[str, float]:
    h = get_ingest_settings().storey_height_m
    return {
        c: max(1.0, round(v / h))
        for c, v, f in zip(b["code"], b["_height"], b["floors"], strict=False)
        if v is not None and not pd.isna(v) and pd.isna(f)
    }
