"""OSM import of the real Helsinki extract shipped inside pyrosm (no download): counts checked against
an independent pyosmium count, the walking network connected and split at every junction."""

from __future__ import annotations

import osmium
import pyrosm
import pytest
from ingest_helpers import snapshot
from sqlalchemy import create_engine, pool, text

from gisgov.ingest.network import largest_component_share
from gisgov.ingest.osm import SYNTH_COMMUNITY, SYNTH_STREET, load_category_rules, load_osm, match_category

PBF = pyrosm.get_data("helsinki_pbf")


class IndependentCount(osmium.SimpleHandler):
    """What the file holds, counted straight from the raw OSM objects."""

    def __init__(self):
        super().__init__()
        self.buildings = 0
        self.pois = 0
        self.rules = load_category_rules()

    def node(self, n):
        self.pois += bool(match_category(dict(n.tags), self.rules))

    def way(self, w):
        t = dict(w.tags)
        self.buildings += "building" in t and w.is_closed() and len(w.nodes) >= 4
        self.pois += bool(match_category(t, self.rules))

    def relation(self, r):
        t = dict(r.tags)
        if t.get("type") == "multipolygon":
            self.buildings += "building" in t
            self.pois += bool(match_category(t, self.rules))


@pytest.fixture(scope="module")
def helsinki(db_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    rep = load_osm(PBF, engine=eng, region="auto")
    assert rep.status == "loaded", [i.line() for i in rep.rejected]
    yield eng, rep
    eng.dispose()


def test_outside_default_region_is_rejected(db_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    before = snapshot(eng)
    rep = load_osm(PBF, engine=eng, census=False)  # default region: China
    assert rep.status == "rejected" and [i.rule for i in rep.rejected] == ["outside_region"]
    assert "--region auto" in rep.rejected[0].message
    assert snapshot(eng) == before
    eng.dispose()


def test_counts_match_an_independent_count(helsinki):
    eng, rep = helsinki
    ind = IndependentCount()
    ind.apply_file(PBF)
    skipped_b = [i for i in rep.issues if i.rule == "osm_skipped" and i.value in ("building", "Polygon", "EMPTY")]
    skipped_p = [i for i in rep.issues if i.rule == "osm_skipped" and i.value == "poi"]
    with eng.connect() as c:
        n_b = c.execute(text("SELECT count(*) FROM building")).scalar()
        n_f = c.execute(text("SELECT count(*) FROM facility")).scalar()
    assert ind.buildings == 500 and 450 <= n_b <= ind.buildings
    assert n_b + len(skipped_b) == ind.buildings  # every building imported or reported, none lost silently
    assert n_f + len(skipped_p) == ind.pois and n_f >= 0.95 * ind.pois
    # and against pyrosm's own reading of the same file
    gdf = pyrosm.OSM(PBF).get_buildings()
    unusable = [i for i in skipped_b if i.value != "building"]
    assert n_b == len(gdf) - len(unusable)


def test_network_connected_split_and_measured(helsinki):
    eng, rep = helsinki
    with eng.connect() as c:
        edges = c.execute(text("SELECT source, target FROM road_edge WHERE foot")).all()
        nodes = sorted({n for e in edges for n in e})
        idx = {n: i for i, n in enumerate(nodes)}
        import numpy as np

        share = largest_component_share(
            len(nodes), np.array([idx[s] for s, _ in edges]), np.array([idx[t] for _, t in edges])
        )
        assert share >= 0.9 and abs(share - rep.stats["largest_component_share"]) < 1e-3
        # no node lies inside an edge it is not an end of: every way was cut at every junction
        hidden = c.execute(
            text("""
            SELECT count(*) FROM road_node n JOIN road_edge e
              ON ST_Intersects(n.geom, e.geom) AND n.id <> e.source AND n.id <> e.target
             AND ST_Intersects(n.geom, ST_Points(e.geom))""")
        ).scalar()
        assert hidden == 0
        bad_len = c.execute(
            text("""
            SELECT count(*) FROM road_edge
            WHERE abs(length_m - ST_Length(geom::geography)) > 0.005 * ST_Length(geom::geography) + 0.01""")
        ).scalar()
        assert bad_len == 0
        classes = dict(c.execute(text("SELECT class, count(*) FROM road_edge GROUP BY class")).all())
        assert {"arterial", "local", "path"} <= set(classes)
        assert (
            c.execute(text("SELECT count(*) FROM road_edge WHERE NOT foot")).scalar() > 0
        )  # foot=no / access=no kept, flagged


def test_synthetic_hierarchy_and_estimates(helsinki):
    eng, _rep = helsinki
    with eng.connect() as c:
        assert c.execute(text("SELECT name FROM street WHERE code = :c"), {"c": SYNTH_STREET}).scalar() == "OSM导入区域"
        assert c.execute(text("SELECT count(DISTINCT community_code) FROM building")).scalar() == 1
        assert c.execute(text("SELECT min(community_code) FROM building")).scalar() == SYNTH_COMMUNITY
        est, levels = c.execute(
            text("SELECT count(*) FILTER (WHERE households_estimated), count(floors) FROM building")
        ).one()
        assert est > 0 and levels > 100
        cats = dict(c.execute(text("SELECT category_code, count(*) FROM facility GROUP BY 1")).all())
        assert {"xuexiao", "weisheng", "tiyu", "shangye", "wenhua"} <= set(cats)
        school = c.execute(text("SELECT kind, source FROM facility WHERE category_code = 'xuexiao' LIMIT 1")).one()
        assert "OpenStreetMap" in school.source


def test_reimport_rejected_and_dry_run_writes_nothing(helsinki):
    eng, _ = helsinki
    before = snapshot(eng)
    rep = load_osm(PBF, engine=eng, region="auto", census=False)
    assert rep.status == "rejected" and {i.rule for i in rep.rejected} == {"code_exists"}
    assert snapshot(eng) == before


def test_dry_run(db_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    before = snapshot(eng)
    rep = load_osm(PBF, engine=eng, region="auto", dry_run=True, census=False)
    assert rep.status == "dry-run" and rep.counts["buildings"] > 400
    assert snapshot(eng) == before
    eng.dispose()
