"""The synthetic sample city: generated, written to a GeoPackage, loaded into a real PostGIS."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import psycopg
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal
from pandas.testing import assert_frame_equal
from sample_fixtures import SAMPLE_VAULT
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from gisgov.db.engine import psycopg_conninfo
from gisgov.sample import generate_city
from gisgov.sample.generate import LAYERS
from gisgov.sample.gpkg import read_gpkg, write_gpkg
from gisgov.sample.layout import REFERENCE_YEAR
from gisgov.sample.load import DatabaseNotEmpty, load_city
from gisgov.security.pii import Vault, id_problem

CATEGORIES = {
    "dangjian",
    "zongzhi",
    "minzheng",
    "gongan",
    "sifa",
    "weisheng",
    "renshe",
    "chengguan",
    "canlian",
    "shichangjianguan",
    "wenhua",
    "tiyu",
    "xinwenmeiti",
    "xuexiao",
    "yiyuan",
    "shangye",
}


def q(url: str, sql: str, *params):
    with psycopg.connect(psycopg_conninfo(url)) as conn:
        return conn.execute(sql, params or None).fetchall()


def q1(url: str, sql: str, *params):
    return q(url, sql, *params)[0][0]


@pytest.fixture(scope="module")
def small_city():
    return generate_city(seed=7, scale=0.1)


# --- generator (pure) -------------------------------------------------------------------------------


def test_same_seed_gives_identical_city():
    a, b = generate_city(seed=11, scale=0.1), generate_city(seed=11, scale=0.1)
    for name in LAYERS:
        x, y = getattr(a, name), getattr(b, name)
        if hasattr(x, "geometry"):
            assert_geodataframe_equal(x, y, check_less_precise=False)
        else:
            assert_frame_equal(x, y)
    assert a.meta == b.meta
    c = generate_city(seed=12, scale=0.1)
    assert not c.residents["id_number"].equals(a.residents["id_number"])


def test_full_scale_counts_near_targets(sample_city):
    n = sample_city.counts()
    assert n["streets"] == 2 and n["communities"] == 12
    assert 170 <= n["compounds"] <= 230
    assert 2200 <= n["buildings"] <= 2900
    assert 54_000 <= n["households"] <= 66_000
    assert 145_000 <= n["residents"] <= 175_000
    assert 2.5 <= n["residents"] / n["households"] <= 2.7
    assert 0.57 <= sample_city.compounds["is_old"].mean() <= 0.63
    assert n["barriers"] == 1 and sample_city.barriers["kind"].iloc[0] == "river"


def test_compound_sizes_like_a_real_street(sample_city):
    """Many small old compounds (老旧小区, mostly 60–250 households) and fewer, larger new estates
    (商品房, most above 500 households: split along buildings by the grid rules) — seed 001: 267
    compounds, 177 built before 2000."""
    cp = sample_city.compounds
    old, new = cp[cp["is_old"]], cp[~cp["is_old"]]
    assert 60 <= old["households"].median() <= 200
    assert (old["households"] <= 250).mean() >= 0.85
    assert ((old["households"] >= 60) & (old["households"] <= 250)).mean() >= 0.6
    assert new["households"].median() >= 450
    assert (new["households"] > 500).mean() >= 0.5 and (new["households"] > 1000).any()
    assert set(new["building_type"]) <= {"多层洋房", "小高层", "高层"} and set(old["building_type"]) == {"多层住宅"}


def test_grid_challenge_is_planned_and_verified(sample_city):
    """One community is made deliberately hard to grid: a compound below 300 households whose every
    neighbour is a whole compound that would push a shared grid over 500 households / 1,000 people."""
    ch = sample_city.meta["grid_challenges"]
    assert len(ch) == 1
    c = ch[0]
    assert c["reason"] == "stranded" and "合成" in c["name"] and "夹心小区" in c["reason_text"]
    cp = sample_city.compounds.set_index("code")
    assert cp.loc[c["compound_code"], "community_code"] == c["community_code"]
    assert cp.loc[c["compound_code"], "households"] == c["households"] < 300
    assert c["neighbours"] and all(n in cp.index for n in c["neighbours"])
    people = sample_city.residents.groupby(sample_city.residents["household_code"].str.slice(0, 17)).size()
    b = sample_city.buildings.assign(people=sample_city.buildings["code"].map(people).fillna(0))
    by_compound = b.groupby("compound_code")[["households", "people"]].sum()
    assert by_compound.loc[c["compound_code"], "people"] == c["people"]
    for n in c["neighbours"]:
        nb = by_compound.loc[n]
        assert nb["households"] <= 500 and nb["people"] <= 1000  # whole compounds: not split
        assert c["households"] + nb["households"] > 500 or c["people"] + nb["people"] > 1000
    # the generator only reports what holds: a city too small for the plan reports nothing
    assert generate_city(seed=7, scale=0.1).meta["grid_challenges"] == []


def test_codes_prefix_their_parents(small_city):
    c = small_city
    assert (c.communities["code"].str.len() == 12).all()
    assert (c.communities["code"].str[:9] == c.communities["street_code"]).all()
    assert set(c.communities["street_code"]) == set(c.streets["code"]) == {"340104001", "340104002"}
    assert (c.compounds["code"].str.len() == 16).all()
    assert (c.compounds["code"].str[:12] == c.compounds["community_code"]).all()
    assert (c.buildings["code"].str.len() == 17).all()
    assert (c.buildings["code"].str[:12] == c.buildings["community_code"]).all()
    assert (c.buildings["compound_code"].str[:12] == c.buildings["community_code"]).all()
    assert (c.households["code"].str.len() == 21).all()
    assert (c.households["code"].str[:17] == c.households["building_code"]).all()
    for df in (c.communities, c.compounds, c.buildings, c.households, c.facilities):
        assert df["code"].is_unique


def test_ids_valid_unique_and_consistent(small_city):
    r = small_city.residents
    assert r["id_number"].is_unique
    problems = [(x, id_problem(x)) for x in r["id_number"] if id_problem(x)]
    assert problems == []
    assert (r["id_number"].str[:6] == "340104").all()
    assert (r["id_number"].str[6:10].astype(int) == r["birth_year"]).all()
    assert (r["id_number"].str[6:14] == r["birth_date"].str.replace("-", "")).all()
    odd = r["id_number"].str[16].astype(int) % 2 == 1
    assert (odd == (r["gender"] == "男")).all()


def test_people_are_plausible(sample_city):
    r, hh = sample_city.residents, sample_city.households
    age = REFERENCE_YEAR - r["birth_year"]
    assert 0.10 <= (age < 15).mean() <= 0.20
    assert 0.15 <= (age >= 60).mean() <= 0.30
    assert 0.45 <= (r["gender"] == "男").mean() <= 0.55
    heads = r[r["role"] == "户主"].groupby("household_code").size()
    assert len(heads) == len(hh) and (heads == 1).all()
    sizes = r.groupby("household_code").size()
    assert (sizes.reindex(hh["code"]).to_numpy() == hh["size"].to_numpy()).all()
    assert set(r["role"]) <= {"户主", "配偶", "子女", "父母", "孙辈", "兄弟姐妹", "其他"}
    assert r.loc[age < 12, "phone"].isna().all()
    phones = r["phone"].dropna()
    assert phones.str.fullmatch(r"1[3-9]\d{9}").all()


def test_special_groups_at_realistic_rates_and_eligible(sample_city):
    r = sample_city.residents.set_index("resident_no")
    g = sample_city.resident_groups.join(r, on="resident_no")
    share = g["resident_no"].nunique() / len(r)
    assert 0.045 <= share <= 0.07  # seed 001: 6,596 of ~118k (5.6%)
    assert len(set(g["group_code"])) == 14
    age = REFERENCE_YEAR - g["birth_year"]
    size = g["household_code"].map(sample_city.households.set_index("code")["size"])
    alone = g["group_code"] == "dujulaoren"
    assert ((age[alone] >= 60) & (size[alone] == 1)).all()
    assert (age[g["group_code"] == "liushouertong"] < 16).all()
    assert (age[g["group_code"] == "kunjingertong"] < 18).all()
    assert not g.duplicated(["resident_no", "group_code"]).any()


def test_gpkg_round_trip(small_city, tmp_path):
    path = write_gpkg(small_city, tmp_path / "city.gpkg")
    back = read_gpkg(path)
    assert back.meta == json.loads(json.dumps(small_city.meta))
    assert back.meta["synthetic"] is True
    for name in LAYERS:
        a, b = getattr(small_city, name), getattr(back, name)
        assert len(a) == len(b), name
        assert list(a.columns) == list(b.columns), name
        if hasattr(a, "geometry"):
            assert shapely.equals_exact(np.asarray(a.geometry), np.asarray(b.geometry), tolerance=0).all(), name
    assert back.residents["id_number"].tolist() == small_city.residents["id_number"].tolist()
    assert back.compounds["is_old"].tolist() == small_city.compounds["is_old"].tolist()


def test_read_gpkg_rejects_other_files(tmp_path):
    import geopandas as gpd

    p = tmp_path / "other.gpkg"
    gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.Point(117, 31)], crs=4490).to_file(p, layer="x")
    with pytest.raises(ValueError, match="sample_gpkg_layers"):
        read_gpkg(p)


# --- loaded full city (session fixture) -----------------------------------------------------------


def test_loaded_counts_match(sample_city, sample_city_url):
    tables = {
        "streets": "street",
        "communities": "community",
        "compounds": "compound",
        "buildings": "building",
        "households": "household",
        "residents": "resident",
        "resident_groups": "resident_group",
        "facilities": "facility",
        "road_nodes": "road_node",
        "road_edges": "road_edge",
        "compound_gates": "compound_gate",
        "barriers": "barrier",
    }
    for layer, table in tables.items():
        assert q1(sample_city_url, f"SELECT count(*) FROM {table}") == len(getattr(sample_city, layer)), table
    assert q1(sample_city_url, "SELECT count(*) FROM grid") == 0  # grids are left for the planner


def test_every_building_nests_in_exactly_one_compound_and_community(sample_city_url):
    bad = q(
        sample_city_url,
        """
        SELECT b.code,
               (SELECT count(*) FROM compound c WHERE ST_Intersects(c.geom, b.pos)),
               (SELECT count(*) FROM community m WHERE ST_Intersects(m.geom, b.pos)),
               (SELECT c.code FROM compound c WHERE c.id = b.compound_id)
        FROM building b
        WHERE (SELECT count(*) FROM compound c WHERE ST_Intersects(c.geom, b.pos)) <> 1
           OR (SELECT count(*) FROM community m WHERE ST_Intersects(m.geom, b.pos) AND ST_Contains(m.geom, b.pos)) <> 1
           OR NOT ST_Contains((SELECT c.geom FROM compound c WHERE c.id = b.compound_id), b.geom)
           OR NOT ST_Contains((SELECT m.geom FROM community m WHERE m.code = b.community_code), b.pos)
           OR left((SELECT c.code FROM compound c WHERE c.id = b.compound_id), 12) <> b.community_code
        LIMIT 5""",
    )
    assert bad == []
    assert q1(sample_city_url, "SELECT count(*) FROM building WHERE compound_id IS NULL") == 0
    outside = q1(
        sample_city_url,
        """SELECT count(*) FROM compound c JOIN community m ON m.code = c.community_code
                                     WHERE NOT ST_Contains(m.geom, c.geom)""",
    )
    assert outside == 0


def test_communities_tile_streets_and_streets_tile_the_city(sample_city_url):
    # no gap: the union of a street's communities is the street; no overlap: areas add up
    for code, gap, over in q(
        sample_city_url,
        """
            SELECT s.code, ST_Area(ST_SymDifference(s.geom, ST_Union(m.geom))),
                   sum(ST_Area(m.geom)) - ST_Area(s.geom)
            FROM street s JOIN community m ON m.street_code = s.code GROUP BY s.code, s.geom""",
    ):
        assert gap < 1e-12 and abs(over) < 1e-12, code
    overlaps = q1(
        sample_city_url,
        """SELECT coalesce(sum(ST_Area(ST_Intersection(a.geom, b.geom))), 0)
                                      FROM community a JOIN community b ON a.id < b.id AND ST_Intersects(a.geom, b.geom)""",
    )
    assert overlaps < 1e-12
    assert (
        q1(
            sample_city_url,
            "SELECT ST_Area(ST_Intersection(a.geom, b.geom)) FROM street a, street b WHERE a.code < b.code",
        )
        < 1e-12
    )


def test_household_size_and_old_compounds_in_db(sample_city_url):
    avg = q1(sample_city_url, "SELECT (SELECT count(*) FROM resident)::float / (SELECT count(*) FROM household)")
    assert 2.5 <= avg <= 2.7
    old = q1(sample_city_url, "SELECT avg(is_old::int)::float FROM compound")
    assert 0.57 <= old <= 0.63
    # buildings' household counts match the households loaded; residents sit at their building
    assert (
        q1(
            sample_city_url,
            """SELECT count(*) FROM building b
                                  WHERE b.households <> (SELECT count(*) FROM household h WHERE h.building_code = b.code)""",
        )
        == 0
    )
    assert (
        q1(
            sample_city_url,
            """SELECT count(*) FROM resident r JOIN household h ON h.id = r.household_id
                                  JOIN building b ON b.code = h.building_code WHERE NOT ST_Equals(r.geom, b.pos)""",
        )
        == 0
    )
    # compounds of >= 200 households mostly have a party organisation (seed 001 rule)
    share = q1(
        sample_city_url,
        "SELECT avg(has_party_org::int)::float FROM compound c "
        "WHERE (SELECT sum(households) FROM building b WHERE b.compound_id = c.id) >= 200",
    )
    assert share >= 0.8


def test_all_16_facility_categories_present(sample_city_url):
    cats = {r[0] for r in q(sample_city_url, "SELECT DISTINCT category_code FROM facility")}
    assert cats == CATEGORIES
    assert cats == {r[0] for r in q(sample_city_url, "SELECT code FROM facility_category")}
    assert q1(sample_city_url, "SELECT count(*) FROM facility WHERE source NOT LIKE '%synthetic%'") == 0
    # facilities stand in their community, beside a road (within 15 m of a street centreline)
    assert (
        q1(
            sample_city_url,
            """SELECT count(*) FROM facility f JOIN community m ON m.code = f.community_code
                                  WHERE NOT ST_Contains(m.geom, f.geom)""",
        )
        == 0
    )
    far = q1(
        sample_city_url,
        """SELECT count(*) FROM facility f WHERE NOT EXISTS (
                                   SELECT 1 FROM road_edge e WHERE e.class IN ('arterial', 'local')
                                   AND ST_DWithin(ST_Transform(e.geom, 4548), ST_Transform(f.geom, 4548), 15))""",
    )
    assert far == 0


def _graph(url):
    nodes = q(
        url, "SELECT id, ST_X(ST_Transform(geom, 4548)), ST_Y(ST_Transform(geom, 4548)) FROM road_node ORDER BY id"
    )
    ids = np.array([n[0] for n in nodes])
    xy = np.array([(n[1], n[2]) for n in nodes])
    pos = {i: k for k, i in enumerate(ids)}
    edges = q(url, "SELECT source, target, length_m FROM road_edge")
    u = np.array([pos[e[0]] for e in edges])
    v = np.array([pos[e[1]] for e in edges])
    w = np.array([e[2] for e in edges])
    g = coo_matrix((w, (u, v)), shape=(len(ids), len(ids))).tocsr()
    return g, xy, pos


def test_network_is_connected_with_gates_and_two_bridges(sample_city_url):
    g, _xy, _pos = _graph(sample_city_url)
    assert connected_components(g, directed=False)[0] == 1
    classes = dict(q(sample_city_url, "SELECT class, count(*) FROM road_edge GROUP BY class"))
    assert {"arterial", "local", "path", "gate", "bridge"} <= set(classes)
    assert classes["bridge"] == 2
    # the river is crossed by the two bridges only
    crossing = q(
        sample_city_url,
        """SELECT e.class, count(*) FROM road_edge e JOIN barrier b ON b.kind = 'river'
                                     AND ST_Intersects(e.geom, b.geom) GROUP BY e.class""",
    )
    assert crossing == [("bridge", 2)]
    # every compound has 1-2 gates sitting on a network node; lengths are metric
    per = q(
        sample_city_url,
        "SELECT c.code, count(g.id) FROM compound c LEFT JOIN compound_gate g ON g.compound_id = c.id GROUP BY c.code",
    )
    assert all(1 <= n <= 2 for _, n in per)
    assert (
        q1(
            sample_city_url,
            """SELECT count(*) FROM compound_gate g JOIN road_node n ON n.id = g.node_id
                                  WHERE ST_Distance(ST_Transform(g.geom, 4548), ST_Transform(n.geom, 4548)) > 0.01""",
        )
        == 0
    )
    assert q1(sample_city_url, "SELECT count(*) FROM compound_gate WHERE node_id IS NULL") == 0
    assert q1(sample_city_url, "SELECT max(abs(length_m - gisgov_length_m(geom))) FROM road_edge") < 0.5


def test_under_served_communities_really_lack_nearby_facilities(sample_city_url):
    meta = q1(sample_city_url, "SELECT value FROM gisgov_meta WHERE key = 'dataset'")
    under = meta["under_served"]
    assert len(under) >= 2
    assert any(u["reason"] == "river" for u in under)
    g, xy, _pos = _graph(sample_city_url)
    tree = cKDTree(xy)
    fac = q(
        sample_city_url,
        "SELECT category_code, community_code, ST_X(ST_Transform(geom, 4548)), "
        "ST_Y(ST_Transform(geom, 4548)) FROM facility",
    )
    f = pd.DataFrame(fac, columns=["cat", "community", "x", "y"])
    f["node"] = tree.query(f[["x", "y"]].to_numpy())[1]
    for u in under:
        b = np.array(
            q(
                sample_city_url,
                "SELECT ST_X(ST_Transform(pos, 4548)), ST_Y(ST_Transform(pos, 4548)) "
                "FROM building WHERE community_code = %s",
                u["community_code"],
            )
        )
        assert len(b) > 0
        b_nodes = np.unique(tree.query(b)[1])
        assert set(u["missing"]) & {"weisheng", "tiyu"}, u
        for cat in u["missing"]:
            assert not ((f["cat"] == cat) & (f["community"] == u["community_code"])).any(), (u["name"], cat)
            src = np.unique(f.loc[f["cat"] == cat, "node"])
            d = dijkstra(g, directed=False, indices=src, min_only=True)
            assert d[b_nodes].min() > 1000, (u["name"], cat, d[b_nodes].min())
    # and a well-served community does have health facilities within 1000 m of all its buildings
    served = q1(
        sample_city_url,
        "SELECT code FROM community WHERE code <> ALL(%s) ORDER BY code LIMIT 1",
        [u["community_code"] for u in under],
    )
    b = np.array(
        q(
            sample_city_url,
            "SELECT ST_X(ST_Transform(pos, 4548)), ST_Y(ST_Transform(pos, 4548)) "
            "FROM building WHERE community_code = %s",
            served,
        )
    )
    d = dijkstra(g, directed=False, indices=np.unique(f.loc[f["cat"] == "weisheng", "node"]), min_only=True)
    assert d[np.unique(tree.query(b)[1])].min() < 1000


def test_id_numbers_never_in_clear_in_the_database(sample_city, sample_city_url):
    clear = set(sample_city.residents["id_number"])
    rows = [r[0] for r in q(sample_city_url, "SELECT r::text FROM resident r")]
    text = "\n".join(rows)
    hits = [m for m in re.findall(r"\d{17}[\dX]", text) if m in clear]
    assert hits == []
    assert "333430313034" not in text  # ASCII "340104" as bytea hex
    phones = set(sample_city.residents["phone"].dropna())
    cols = q(sample_city_url, "SELECT name, gender, role, id_last4, phone_masked FROM resident")
    assert not any(c in phones for row in cols for c in row if c)
    masked = [row[4] for row in cols if row[4]]
    assert masked and all(re.fullmatch(r"1\d{2}\*{4}\d{4}", m) for m in masked)
    # last 4 characters kept; hash and cipher recover and match the clear value
    assert Counter(r[3] for r in cols) == Counter(x[-4:] for x in clear)
    sample = q(sample_city_url, "SELECT id_hash, id_cipher, id_last4 FROM resident ORDER BY id LIMIT 500")
    for h, c, last4 in sample:
        value = SAMPLE_VAULT.decrypt(c)
        assert value in clear and value[-4:] == last4 and SAMPLE_VAULT.digest(value) == bytes(h)


def test_meta_says_synthetic(sample_city_url):
    meta = q1(sample_city_url, "SELECT value FROM gisgov_meta WHERE key = 'dataset'")
    assert meta["synthetic"] is True and meta["generator"] == "gisgov sample"
    assert "合成" in meta["name"] and "synthetic" in meta["name"]
    assert meta["seed"] == 20241123
    assert q1(sample_city_url, "SELECT value FROM gisgov_meta WHERE key = 'metric_srid'") == 4548
    assert all(
        "（合成）" in n for (n,) in q(sample_city_url, "SELECT name FROM street UNION ALL SELECT name FROM community")
    )
    assert q1(sample_city_url, "SELECT name FROM barrier") == "示例河（合成）"


# --- load semantics (small city, own databases) -----------------------------------------------------


def _snapshot(url):
    return q(
        url,
        """SELECT (SELECT count(*) FROM street), (SELECT count(*) FROM building),
                            (SELECT count(*) FROM resident), (SELECT max(id) FROM resident),
                            (SELECT md5(string_agg(code, ',' ORDER BY code)) FROM household),
                            (SELECT value FROM gisgov_meta WHERE key = 'dataset')""",
    )[0]


def test_second_load_refused_unless_replace(db_factory, small_city):
    url = db_factory.create()
    vault = Vault(b"s" * 32)
    load_city(url, small_city, vault=vault)
    before = _snapshot(url)
    assert before[2] == len(small_city.residents)
    other = generate_city(seed=8, scale=0.1)
    with pytest.raises(DatabaseNotEmpty, match="sample_requires_empty_database") as exc:
        load_city(url, other, vault=vault)
    assert "street=2" in str(exc.value) and "--replace" in str(exc.value)
    assert _snapshot(url) == before
    counts = load_city(url, other, replace=True, vault=vault)
    after = _snapshot(url)
    assert counts["resident"] == after[2] == len(other.residents)
    assert after[3] == len(other.residents)  # identities restarted
    assert after[5]["seed"] == 8 and after[4] != before[4]


def test_failed_load_leaves_nothing(db_factory, small_city):
    url = db_factory.create()
    broken = generate_city(seed=7, scale=0.1)
    # move one building far outside its compound: the within-parent trigger must reject the load
    b = broken.buildings
    b.loc[0, "geometry"] = shapely.affinity.translate(b.geometry.iloc[0], xoff=0.5)
    with pytest.raises(psycopg.errors.CheckViolation, match="within_parent"):
        load_city(url, broken, vault=Vault(b"s" * 32))
    assert (
        q1(
            url,
            "SELECT (SELECT count(*) FROM street) + (SELECT count(*) FROM compound) "
            "+ (SELECT count(*) FROM household) + (SELECT count(*) FROM road_node)",
        )
        == 0
    )
    assert q(url, "SELECT 1 FROM gisgov_meta WHERE key = 'dataset'") == []


def test_cli_writes_gpkg_loads_and_refuses_a_second_time(db_factory, tmp_path):
    url = db_factory.create()
    env = {**os.environ, "GISGOV_HOME": str(tmp_path), "GISGOV_DATABASE_URL": url}
    cmd = [
        sys.executable,
        "-m",
        "gisgov.cli.main",
        "sample",
        "--scale",
        "0.05",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "s.gpkg"),
    ]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "s.gpkg").exists()
    assert "synthetic" in first.stdout and "residents" in first.stdout
    n = q1(url, "SELECT count(*) FROM resident")
    assert n == len(read_gpkg(tmp_path / "s.gpkg").residents)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert second.returncode == 1
    assert "sample_requires_empty_database" in second.stdout.replace("\n", "")
    assert q1(url, "SELECT count(*) FROM resident") == n
