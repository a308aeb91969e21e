"""Service circles on real OSM data: the Helsinki extract shipped inside pyrosm (no download).

Two paths share the same network code: the OSM file read straight into GeoDataFrames (pyrosm →
:func:`gisgov.network.graph_from_edges`), and the normal route `gisgov load --osm` into PostGIS
followed by the coverage service. OSM data © OpenStreetMap contributors, ODbL.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyrosm
import pytest
import shapely
from sqlalchemy import create_engine, pool, text
from test_network import _brute_force

from gisgov.coverage import areas
from gisgov.coverage.catalog import load_catalog
from gisgov.coverage.model import CityData, CoverageModel
from gisgov.coverage.service import CoverageService
from gisgov.ingest.osm import load_category_rules, match_category
from gisgov.network import Access, Sources, nearest_distances

PBF = pyrosm.get_data("helsinki_pbf")
TAG_KEYS = ("amenity", "shop", "leisure", "office", "healthcare", "tourism", "social_facility")
PATHS = {"footway", "path", "steps", "pedestrian"}


@pytest.fixture(scope="module")
def helsinki_city() -> CityData:
    osm = pyrosm.OSM(PBF)
    nodes, edges = osm.get_network(network_type="walking", nodes=True)
    edges = edges.rename(columns={"u": "source", "v": "target", "length": "length_m"})
    edges["foot"] = edges["foot"].fillna("yes") != "no"
    edges["oneway_foot"] = edges["highway"].isin(PATHS) & (edges["oneway"].fillna("no") == "yes")
    b = osm.get_buildings()
    b = b[b.geometry.notna()].reset_index(drop=True)
    pts = b.geometry.representative_point()
    buildings = gpd.GeoDataFrame(
        {
            "id": np.arange(1, len(b) + 1),
            "code": b["id"].astype(str),
            "street": "helsinki",
            "community": np.where(pts.x < pts.x.median(), "west", "east"),
            "grid": None,
            "compound": None,
            "compound_id": -1,
            "households": 1.0,
            "residents": 0,
            "rule_set": "urban",
        },
        geometry=pts.to_numpy(),
        crs=4326,
    )
    rules = load_category_rules()
    p = osm.get_pois(custom_filter=dict.fromkeys(("amenity", "shop", "leisure", "office", "healthcare"), True))
    rows, geoms = [], []
    for i, r in enumerate(p.itertuples(index=False)):
        tags = {k: getattr(r, k) for k in TAG_KEYS if hasattr(r, k) and isinstance(getattr(r, k), str)}
        hit = match_category(tags, rules)
        if hit and r.geometry is not None:
            rows.append({"id": i + 1, "name": getattr(r, "name", None), "category_code": hit[0], "kind": hit[1]})
            geoms.append(r.geometry.representative_point())
    facilities = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=geoms, crs=4326)
    return CityData(
        buildings=buildings,
        facilities=facilities,
        edges=edges[["id", "source", "target", "length_m", "foot", "oneway_foot", "geometry"]],
        nodes=nodes[["id", "geometry"]],
    )


@pytest.fixture(scope="module")
def helsinki(helsinki_city):
    cat = load_catalog()
    m = CoverageModel(helsinki_city, cat.network, cat.distance_cap_m)
    return m, m.compute(cat), cat


def test_helsinki_network_and_snaps(helsinki, helsinki_city):
    m, _t, _cat = helsinki
    assert m.method == "network" and m.epsg == 32635  # UTM 35N outside China
    rep = m.graph.report
    assert rep["nodes"] > 4000 and rep["edges"] > 5000
    assert rep["main_component_share"] > 0.9
    assert rep["components"] == len(m.graph.components_table())  # every piece reported
    s = m.snap_summary()
    assert s["buildings"] > 400
    assert s["long_snap"] / s["buildings"] < 0.05
    # geometries oriented source → target (checked against the node positions)
    g = m.graph
    nodes = helsinki_city.nodes.to_crs(m.epsg).set_index("id").geometry
    u_pt = nodes.reindex(g.node_ids[g.u]).to_numpy()
    assert shapely.distance(shapely.get_point(g.geoms, 0), u_pt).max() < 0.01


def test_helsinki_coverage_is_computed(helsinki):
    m, t, _cat = helsinki
    present = set(m.facilities["category_code"])
    assert {"shangye", "weisheng", "xuexiao", "wenhua"} <= present
    for code in ("shangye", "weisheng", "xuexiao"):
        d = t.dist[:, t.col(code)]
        assert np.isfinite(d).mean() > 0.9
        assert np.median(d[np.isfinite(d)]) < 1000
    # dense centre: shops within 5 minutes of most buildings
    assert (t.dist[:, t.col("shangye")] <= 300).mean() > 0.8
    assert np.isinf(t.dist[:, t.col("gb_canteen")]).all()  # no 社区食堂 in Helsinki's tags


def test_helsinki_distances_agree_with_brute_force(helsinki):
    m, _t, cat = helsinki
    rng = np.random.default_rng(7)
    bi = np.sort(rng.choice(len(m.buildings), 100, replace=False))
    rows = m.category_rows(cat.category("weisheng"))
    fi = rng.choice(rows, min(20, len(rows)), replace=False)
    bs, fs = m.bsnap.take(bi), m.fsnap.take(fi)
    brute = _brute_force(m.graph, bs, fs)
    acc = Access.from_snap(bs)
    ours = np.column_stack(
        [nearest_distances(m.graph, Sources(fs.edge[[j]], fs.offset[[j]], fs.leg[[j]]), acc)[0] for j in range(len(fi))]
    )
    both = np.isfinite(brute) & np.isfinite(ours)
    assert np.array_equal(np.isfinite(brute), np.isfinite(ours))
    assert both.sum() > 1000 and np.max(np.abs(ours[both] - brute[both])) <= 1.0


def test_helsinki_service_area_acceptance(helsinki):
    m, t, cat = helsinki
    d = t.dist[:, t.col("weisheng")].astype(float)
    area = areas.service_area(m, m.category_rows(cat.category("weisheng")), 300.0, d)
    inside = shapely.contains_xy(area, m.buildings["x"].to_numpy(), m.buildings["y"].to_numpy())
    reach = d <= 300
    assert not (inside & ~reach).any()
    assert inside[reach].mean() >= 0.99


def test_helsinki_through_postgis(db_factory):
    """`gisgov load --osm` (ingest) then the coverage service, as a planner would."""
    from gisgov.ingest.osm import load_osm

    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    rep = load_osm(PBF, engine=eng, region="auto")
    assert rep.status == "loaded"
    with eng.begin() as conn:
        res = CoverageService().compute(conn)
    assert res.method == "network" and res.buildings > 400
    with eng.connect() as c:
        street = c.execute(text("SELECT code FROM street LIMIT 1")).scalar()
        share = c.execute(
            text("""SELECT buildings_in::float / buildings FROM coverage_figure WHERE level = 'street'
                                  AND code = :s AND item = 'shangye' AND profile = 'standard' AND circle = 'c10'"""),
            {"s": street},
        ).scalar()
    assert share > 0.8
    eng.dispose()
