"""OSM import on a realistic small Chinese town (issue 11, items 9, 13, 15, 21), written with pyosmium.

The town (≈ 1 km², around 116.40 E, 39.90 N) holds what a real city extract holds: two named
residential compounds (小区) and one unnamed residential area, an industrial estate with a factory
(红星机械厂), a warehouse and a factory dormitory, a retail block with a mall (万达商场), a school
and a supermarket mapped as ``building=yes`` with a name, a garden shed, apartments with
``building:levels`` and a block with only ``height``; a railway (at grade, one on a bridge, a subway
in a tunnel), a motorway with its link, an urban expressway (``trunk`` + ``motorroad=yes``), a river
and a lake; cycleways with and without ``foot``, a footway and service roads (one private).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import osmium
import pytest
from osmium.osm.mutable import Node, Way
from sqlalchemy import create_engine, pool, text

from gisgov.crs import WGS84
from gisgov.ingest.osm import load_osm, parse_osm, read_osm
from gisgov.ingest.report import Report

LON0, LAT0 = 116.40, 39.90
M_LON = 1 / (111_320 * np.cos(np.radians(LAT0)))  # degrees per metre east
M_LAT = 1 / 110_950  # degrees per metre north


class Town:
    """Builds OSM objects from metre coordinates; a vertex at the same spot is the same node."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], int] = {}
        self.node_tags: list[tuple[int, tuple[float, float], dict]] = []
        self.ways: list[tuple[int, list[int], dict]] = []
        self.next_node, self.next_way = 1, 1
        self.ids: dict[str, int] = {}

    def node(self, x: float, y: float) -> int:
        k = (round(x * 10), round(y * 10))
        if k not in self.nodes:
            self.nodes[k] = self.next_node
            self.next_node += 1
        return self.nodes[k]

    def poi(self, x: float, y: float, tags: dict) -> None:
        self.node_tags.append((self.next_node, (x, y), tags))
        self.next_node += 1

    def way(self, key: str, pts: list[tuple[float, float]], tags: dict) -> int:
        wid = self.next_way
        self.next_way += 1
        self.ways.append((wid, [self.node(x, y) for x, y in pts], tags))
        self.ids[key] = wid
        return wid

    def line(self, key: str, x0, y0, x1, y1, tags: dict, step: float = 100.0) -> int:
        n = max(1, round(max(abs(x1 - x0), abs(y1 - y0)) / step))
        return self.way(key, [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(n + 1)], tags)

    def box(self, key: str, x0, y0, x1, y1, tags: dict) -> int:
        return self.way(key, [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], tags)

    @staticmethod
    def lonlat(x: float, y: float) -> tuple[float, float]:
        return LON0 + x * M_LON, LAT0 + y * M_LAT

    def write(self, path: Path) -> Path:
        w = osmium.SimpleWriter(str(path))
        try:
            loc = {nid: k for k, nid in self.nodes.items()}
            for nid in sorted(loc):
                x, y = loc[nid][0] / 10, loc[nid][1] / 10
                w.add_node(Node(id=nid, location=self.lonlat(x, y), version=1, tags={}))
            for nid, (x, y), tags in self.node_tags:
                w.add_node(Node(id=nid, location=self.lonlat(x, y), version=1, tags=tags))
            for wid, nodes, tags in self.ways:
                w.add_way(Way(id=wid, nodes=nodes, version=1, tags=tags))
        finally:
            w.close()
        return path


def build_town() -> Town:
    t = Town()
    # streets: a 200 m block grid, 0..800 × 0..400, vertices every 100 m (shared with the paths)
    t.line("south", 0, 0, 800, 0, {"highway": "tertiary", "name": "南街"})
    t.line("middle", 0, 200, 800, 200, {"highway": "residential", "name": "中街"})
    t.line("north", 0, 400, 800, 400, {"highway": "residential", "name": "北街"})
    for x in (0, 200, 400, 600, 800):
        t.line(f"v{x}", x, 0, x, 400, {"highway": "residential", "name": f"{x // 200 + 1}号路"})
    # ways whose walkability the profile decides
    t.line("cycle_plain", 100, 200, 100, 400, {"highway": "cycleway"})
    t.line("cycle_foot_yes", 300, 200, 300, 400, {"highway": "cycleway", "foot": "yes"})
    t.line("cycle_designated", 500, 200, 500, 400, {"highway": "cycleway", "foot": "designated"})
    t.line("footway", 700, 200, 700, 400, {"highway": "footway"})
    t.line("service", 100, 0, 100, 200, {"highway": "service"})
    t.line("service_private", 300, 0, 300, 200, {"highway": "service", "access": "private"})
    # barriers
    t.line("motorway", 900, -150, 900, 600, {"highway": "motorway", "name": "京港澳高速", "ref": "G4"})
    t.line("motorway_link", 900, 300, 800, 400, {"highway": "motorway_link"})
    t.line("expressway", -50, -100, 850, -100, {"highway": "trunk", "motorroad": "yes", "name": "南环快速路"})
    t.line("rail", -50, 450, 850, 450, {"railway": "rail", "name": "京沪铁路"})
    t.line("rail_bridge", -30, -150, -30, 600, {"railway": "light_rail", "bridge": "yes", "layer": "1"})
    t.line("subway", 250, -150, 250, 600, {"railway": "subway", "tunnel": "yes", "layer": "-2"})
    t.line("river", -50, -50, 850, -50, {"waterway": "river", "name": "清河"})
    t.box("lake", 820, 100, 880, 160, {"natural": "water", "water": "lake", "name": "小湖"})
    # land use
    t.box("lu_xingfu", 10, 10, 190, 190, {"landuse": "residential", "name": "幸福小区"})
    t.box("lu_heping", 210, 10, 390, 190, {"landuse": "residential", "name": "和平小区"})
    t.box("lu_unnamed", 10, 210, 190, 390, {"landuse": "residential"})
    t.box("lu_industrial", 410, 10, 790, 190, {"landuse": "industrial", "name": "红星工业园"})
    t.box("lu_retail", 410, 210, 590, 390, {"landuse": "retail"})
    # buildings in 幸福小区
    t.box("b_apartments", 30, 30, 70, 50, {"building": "apartments", "building:levels": "6", "name": "1号楼"})
    t.box("b_height", 100, 30, 140, 50, {"building": "residential", "height": "18 m"})
    t.box("b_yes3", 30, 100, 70, 120, {"building": "yes", "building:levels": "3"})
    t.box("b_shed", 150, 150, 153, 153, {"building": "yes"})
    t.box("b_school_name", 100, 100, 160, 130, {"building": "yes", "name": "幸福第一小学"})
    # buildings in 和平小区
    t.box("b_plain", 230, 30, 270, 50, {"building": "yes"})
    t.box("b_school", 300, 100, 350, 140, {"building": "school"})
    t.box("b_supermarket", 220, 150, 260, 180, {"building": "yes", "name": "华联超市"})
    # unnamed residential area
    t.box("b_house", 30, 230, 50, 245, {"building": "house"})
    # industrial estate
    t.box("b_factory", 450, 50, 550, 110, {"building": "yes", "name": "红星机械厂"})
    t.box("b_industrial_yes", 620, 50, 680, 90, {"building": "yes"})
    t.box("b_warehouse", 700, 120, 760, 160, {"building": "warehouse"})
    t.box(
        "b_dormitory", 600, 130, 630, 160, {"building": "dormitory", "building:levels": "4", "name": "红星厂职工宿舍"}
    )
    # retail block
    t.box("b_mall", 430, 230, 530, 300, {"building": "yes", "name": "万达商场"})
    t.box("b_retail", 540, 330, 580, 370, {"building": "retail"})
    t.box("b_office", 650, 230, 690, 260, {"building": "office"})
    t.box("b_shop_tag", 620, 300, 650, 320, {"building": "yes", "shop": "convenience", "name": "便利店"})
    # north of the railway: the only streets are south of it
    t.box("b_north", 300, 470, 340, 490, {"building": "apartments", "building:levels": "5"})
    # POIs
    t.poi(240, 165, {"shop": "supermarket", "name": "华联超市"})
    t.poi(130, 115, {"amenity": "school", "name": "幸福第一小学"})
    t.poi(650, 250, {"amenity": "clinic", "name": "社区卫生服务站"})
    return t


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> tuple[Town, Path]:
    t = build_town()
    return t, t.write(tmp_path_factory.mktemp("osm") / "town.osm.pbf")


@pytest.fixture(scope="module")
def town_data(town):
    return read_osm(town[1])


def _engine(db_factory):
    return create_engine(db_factory.create(), poolclass=pool.NullPool)


def _building_at(conn, x: float, y: float) -> dict:
    lon, lat = Town.lonlat(x, y)
    row = conn.execute(
        text("""SELECT code, name, floors, households, households_estimated, compound_id FROM building
                WHERE ST_Contains(geom, ST_SetSRID(ST_Point(:x, :y), ST_SRID(geom)))"""),
        {"x": lon, "y": lat},
    ).one()
    return dict(row._mapping)


@pytest.fixture(scope="module")
def loaded(town, db_factory):
    eng = _engine(db_factory)
    rep = load_osm(town[1], engine=eng, region="auto")
    assert rep.status == "loaded", [i.line() for i in rep.rejected]
    yield eng, rep
    eng.dispose()


# ---------------------------------------------------------------- item 9: households on non-residential buildings
def test_households_only_on_dwellings(loaded):
    eng, rep = loaded
    with eng.connect() as c:
        got = {k: _building_at(c, x, y) for k, (x, y) in HOUSES.items()}
        none = {k: _building_at(c, x, y) for k, (x, y) in NOT_HOUSES.items()}
    for k, b in got.items():
        assert b["households"] and b["households"] > 0 and b["households_estimated"], (k, b)
    for k, b in none.items():
        assert b["households"] is None and not b["households_estimated"], (k, b)
    # the factory alone would have been 6,000 m² ÷ 95 m² ≈ 63 households
    assert rep.stats["households_excluded"] == {"name": 4, "landuse": 1, "building_tag": 4, "poi_tag": 1, "small": 1}
    assert rep.counts["households_estimated"] == len(HOUSES)
    lines = [i for i in rep.issues if i.rule == "households_excluded"]
    assert {i.value.split(":")[0] for i in lines} == set(rep.stats["households_excluded"])
    assert any("红星机械厂" in i.message for i in lines)
    assert all("--all-buildings-residential" in i.message for i in lines)


def test_households_override(town, db_factory):
    eng = _engine(db_factory)
    rep = load_osm(town[1], engine=eng, region="auto", census=False, residential_tags="school,warehouse")
    assert rep.status == "loaded"
    with eng.connect() as c:
        assert _building_at(c, 325, 120)["households"] > 0  # building=school
        assert _building_at(c, 730, 140)["households"] > 0  # building=warehouse
        assert _building_at(c, 500, 80)["households"] is None  # the factory still excluded
    assert rep.stats["households_excluded"]["building_tag"] == 2  # retail, office
    eng.dispose()
    eng = _engine(db_factory)
    rep = load_osm(town[1], engine=eng, region="auto", census=False, all_buildings_residential=True)
    with eng.connect() as c:
        n, est = c.execute(text("SELECT count(*), count(*) FILTER (WHERE households_estimated) FROM building")).one()
    assert n == est == len(HOUSES) + len(NOT_HOUSES) and rep.stats["households_excluded"] == {}
    eng.dispose()


HOUSES = {  # building → a point inside it
    "apartments": (50, 40),
    "residential_height": (120, 40),
    "yes_levels": (50, 110),
    "plain_yes": (250, 40),
    "house": (40, 237),
    "dormitory_in_industrial": (615, 145),
    "north_of_rail": (320, 480),
}
NOT_HOUSES = {
    "factory": (500, 80),
    "shed": (151.5, 151.5),
    "school_by_name": (130, 115),
    "school": (325, 120),
    "supermarket_by_name": (240, 165),
    "yes_in_industrial": (650, 70),
    "warehouse": (730, 140),
    "mall": (480, 265),
    "retail": (560, 350),
    "office": (670, 245),
    "shop_tag": (635, 310),
}


# ---------------------------------------------------------------- item 13: barriers
def test_barriers_imported(loaded):
    eng, rep = loaded
    with eng.connect() as c:
        rows = c.execute(text("SELECT kind, name FROM barrier ORDER BY kind, name")).all()
    kinds = {(k, n) for k, n in rows}
    assert ("rail", "京沪铁路") in kinds and ("river", "清河") in kinds and ("water", "小湖") in kinds
    assert {n for k, n in kinds if k == "other"} == {"京港澳高速", "南环快速路", "motorway_link"}
    assert len(rows) == 6  # the light rail on a bridge and the subway in a tunnel are no barriers
    assert rep.counts["barriers"] == 6


def test_access_leg_across_the_railway_is_flagged(loaded):
    from gisgov.coverage.service import CoverageService
    from gisgov.network import flag_names

    eng, _ = loaded
    with eng.begin() as conn:
        svc = CoverageService()
        m = svc.ensure_model(conn)
        code = _building_at(conn, 320, 480)["code"]
        south = _building_at(conn, 250, 40)["code"]
    codes = m.buildings["code"].to_numpy()
    flags = {c: flag_names(int(f)) for c, f in zip(codes, m.bsnap.flags, strict=False)}
    assert "crosses_barrier" in flags[code]
    assert "crosses_barrier" not in flags[south]


def test_motorways_count_as_barriers_for_access_legs(loaded):
    """Motorways and roads closed to walkers are stored as kind 'other'; the walking model reads them."""
    from gisgov.coverage import store

    eng, _ = loaded
    with eng.connect() as conn:
        city = store.load_city(conn)
    kinds = sorted(city.barriers["kind"])
    assert kinds.count("other") == 3 and "rail" in kinds


# ---------------------------------------------------------------- item 15: walking profile
def _way_walk(city, town: Town) -> dict[str, bool]:
    """Walkable flag per way key of the town (every edge of a way shares it)."""
    ids = city.roads["id"].to_numpy()
    by_way: dict[int, set[bool]] = {}
    for w, ok in zip(ids[city.net.line] if len(ids) else [], city.walk, strict=False):
        by_way.setdefault(int(w), set()).add(bool(ok))
    return {k: by_way[wid].pop() for k, wid in town.ids.items() if wid in by_way}


def test_walk_profile_default_is_conservative(town, town_data):
    rep = Report("town.osm.pbf", "osm", dry_run=True)
    city = parse_osm(town_data, WGS84, rep)
    walk = _way_walk(city, town[0])
    assert walk["cycle_plain"] is False  # no foot tag: not walkable (OSM default cycleway foot=no)
    assert walk["cycle_foot_yes"] and walk["cycle_designated"] and walk["footway"] and walk["service"]
    assert not walk["service_private"] and not walk["motorway"] and not walk["expressway"]
    assert city.profile.name == "china-conservative"
    assert city.ways["cycleway"] == {"used": 2, "skipped": 1, "skipped_no_foot_tag": 1}
    assert city.ways["trunk"] == {"used": 0, "skipped": 1, "skipped_motorroad": 1}
    assert city.ways["service"] == {"used": 1, "skipped": 1, "skipped_access_no": 1}


def test_walk_profile_is_configurable(town, town_data, tmp_path):
    from gisgov.ingest.network import load_walk_profile

    text_ = (Path(__file__).parents[1] / "layers" / "walk_profile.yaml").read_text(encoding="utf-8")
    custom = tmp_path / "walk_lenient.yaml"
    custom.write_text(
        text_.replace("name: china-conservative", "name: lenient").replace(
            "needs_foot_tag: [cycleway]", "needs_foot_tag: []"
        ),
        encoding="utf-8",
    )
    rep = Report("town.osm.pbf", "osm", dry_run=True)
    city = parse_osm(town_data, WGS84, rep, walk_profile=load_walk_profile(custom))
    assert _way_walk(city, town[0])["cycle_plain"] is True
    assert city.ways["cycleway"] == {"used": 3, "skipped": 0}
    bad = tmp_path / "bad.yaml"
    bad.write_text("needs_foot: [cycleway]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown keys"):
        load_walk_profile(bad)


def test_walk_counts_in_the_load_report(loaded, town, db_factory, tmp_path):
    eng, rep = loaded
    assert rep.stats["walk_profile"] == "china-conservative"
    assert rep.stats["walk_ways"]["cycleway"]["skipped_no_foot_tag"] == 1
    with eng.connect() as c:
        lon, lat = Town.lonlat(100, 300)
        foot = (
            c.execute(
                text(
                    "SELECT foot FROM road_edge WHERE ST_DWithin(geom, ST_SetSRID(ST_Point(:x, :y), ST_SRID(geom)), 1e-6)"
                ),
                {"x": lon, "y": lat},
            )
            .scalars()
            .all()
        )
    assert foot == [False]  # the untagged cycleway is imported, not walkable


# ---------------------------------------------------------------- item 21: floors, compounds, communities
def test_floors_from_levels_and_height(loaded):
    eng, rep = loaded
    with eng.connect() as c:
        assert _building_at(c, 50, 40)["floors"] == 6  # building:levels=6
        assert _building_at(c, 120, 40)["floors"] == 6  # height=18 m ÷ 3 m
        assert _building_at(c, 250, 40)["floors"] is None  # nothing known
        h6, h1 = _building_at(c, 120, 40)["households"], _building_at(c, 250, 40)["households"]
    assert h6 == round(40 * 20 * 6 / 95)  # 800 m² × 6 floors ÷ 95 m²
    assert h1 == round(40 * 20 / 95)
    assert rep.stats["floors_from"]["height"] == 1 and rep.stats["floors_from"]["building_levels"] == 4


def test_named_residential_land_use_becomes_compounds(loaded):
    eng, rep = loaded
    with eng.connect() as c:
        comps = dict(c.execute(text("SELECT name, id FROM compound")).all())
        assert set(comps) == {"幸福小区", "和平小区"}  # the unnamed residential area is no compound
        assert _building_at(c, 50, 40)["compound_id"] == comps["幸福小区"]
        assert _building_at(c, 250, 40)["compound_id"] == comps["和平小区"]
        assert _building_at(c, 40, 237)["compound_id"] is None
        bad = c.execute(
            text(
                "SELECT count(*) FROM building b JOIN compound k ON k.id = b.compound_id WHERE NOT ST_Within(b.pos, k.geom)"
            )
        ).scalar()
    assert bad == 0 and rep.counts["compounds"] == 2


def _communities_file(tmp_path: Path) -> Path:
    def ring(x0, y0, x1, y1):
        pts = [Town.lonlat(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
        return {"type": "Polygon", "coordinates": [[list(p) for p in pts]]}

    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"社区代码": "110105001001", "社区名称": "幸福社区"},
                "geometry": ring(-200, -200, 400, 700),
            },
            {
                "type": "Feature",
                "properties": {"社区代码": "110105001002", "社区名称": "红星社区"},
                "geometry": ring(400, -200, 1000, 700),
            },
        ],
    }
    p = tmp_path / "communities.geojson"
    p.write_text(json.dumps(fc, ensure_ascii=False), encoding="utf-8")
    return p


def test_communities_supplied_in_the_same_command(town, db_factory, tmp_path):
    eng = _engine(db_factory)
    rep = load_osm(town[1], engine=eng, region="auto", census=False, communities=_communities_file(tmp_path))
    assert rep.status == "loaded", [i.line() for i in rep.rejected]
    with eng.connect() as c:
        per = dict(c.execute(text("SELECT community_code, count(*) FROM building GROUP BY 1")).all())
        comps = dict(c.execute(text("SELECT name, community_code FROM compound")).all())
        streets = c.execute(text("SELECT code FROM street")).scalars().all()
        assert _building_at(c, 500, 80)["code"].startswith("110105001002")
    assert set(per) == {"110105001001", "110105001002"}  # no synthetic community
    assert comps == {"幸福小区": "110105001001", "和平小区": "110105001001"}
    assert streets == ["110105001"] and rep.counts["communities"] == 2
    assert any(i.rule == "street_created" for i in rep.issues)
    eng.dispose()


def test_bad_communities_file_writes_nothing(town, db_factory, tmp_path):
    p = _communities_file(tmp_path)
    p.write_text(p.read_text(encoding="utf-8").replace("110105001002", "11010500100"), encoding="utf-8")
    eng = _engine(db_factory)
    rep = load_osm(town[1], engine=eng, region="auto", census=False, communities=p)
    assert rep.status == "rejected" and "code_format" in {i.rule for i in rep.rejected}
    with eng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM building")).scalar() == 0
        assert c.execute(text("SELECT count(*) FROM community")).scalar() == 0
    eng.dispose()


def test_cli_passes_the_osm_options(town, db_factory, monkeypatch):
    """`gisgov load … --osm` with the OSM options: every building estimated, a custom walk profile path
    refused with a clear usage error when missing."""
    from typer.testing import CliRunner

    from gisgov.cli.main import app
    from gisgov.config import get_settings

    url = db_factory.create(prefix="gisgov_test_osm_cli")
    monkeypatch.setenv("GISGOV_DATABASE_URL", url)
    get_settings.cache_clear()
    runner = CliRunner()
    r = runner.invoke(app, ["load", str(town[1]), "--osm", "--region", "auto", "--walk-profile", "/nonexistent.yaml"])
    assert r.exit_code == 2, r.output
    r = runner.invoke(app, ["load", str(town[1]), "--osm", "--region", "auto", "--all-buildings-residential"])
    assert r.exit_code == 0, r.output
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.connect() as conn:
            factory = _building_at(conn, 500, 80)
    finally:
        eng.dispose()
    assert factory["households"] and factory["households"] > 0  # estimated, as asked
