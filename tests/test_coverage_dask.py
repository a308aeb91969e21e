"""Coverage on Dask, one task per street with a halo (gisgov.coverage.dask_batch): the same distances,
snaps and stored figures as the single-process path, on a generated city with two streets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import shapely
from sample_fixtures import small_city_db
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.coverage import dask_batch, store
from gisgov.coverage.model import CoverageModel
from gisgov.coverage.service import CoverageService

runner = CliRunner()


@pytest.fixture(scope="module")
def city_url(db_factory):
    """A fresh database with the generated city (scale 0.4: two streets, facilities near their border)."""
    return small_city_db(db_factory, "gisgov_test_dask", compute=False)


@pytest.fixture(scope="module")
def ceng(city_url):
    eng = create_engine(city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def client():
    c, cluster = dask_batch.local_client(workers=2, threads_per_worker=1)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def city(ceng):
    with ceng.connect() as conn:
        return store.load_city(conn, footprints=False)


@pytest.fixture(scope="module")
def catalog():
    return CoverageService(model_dir=False).catalog()


def single(city, catalog):
    m = CoverageModel(city, catalog.network, catalog.distance_cap_m)
    return m, m.compute(catalog)


def assert_same(m1, t1, m2, t2):
    assert t1.categories == t2.categories
    assert list(m1.buildings["id"]) == list(m2.buildings["id"])
    fin1, fin2 = np.isfinite(t1.dist), np.isfinite(t2.dist)
    assert (fin1 == fin2).all()
    np.testing.assert_allclose(t1.dist[fin1], t2.dist[fin2], rtol=0, atol=1e-3)
    f1 = np.where(t1.fac >= 0, m1.facilities["id"].to_numpy()[np.maximum(t1.fac, 0)], -1)
    f2 = np.where(t2.fac >= 0, m2.facilities["id"].to_numpy()[np.maximum(t2.fac, 0)], -1)
    assert (f1 == f2).mean() > 0.999  # equal distances to two facilities may name either
    for name in ("edge", "offset", "leg", "flags"):
        a, b = getattr(m1.bsnap, name), getattr(m2.bsnap, name)
        if name == "edge":
            a = np.where(a >= 0, m1.graph.edge_ids[np.maximum(a, 0)], -1)
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=name)


def test_dask_distances_equal_single_process(city, catalog, client):
    m1, t1 = single(city, catalog)
    m2, t2 = dask_batch.in_memory(city, catalog, client)
    assert t1.dist.shape[0] > 500 and city.buildings["street"].nunique() >= 2
    assert np.isfinite(t1.dist).any() and not np.isfinite(t1.dist).all()
    assert_same(m1, t1, m2, t2)


def stored(conn) -> dict[str, pd.DataFrame]:
    """What a compute leaves in the database, without the run ids."""
    out = {}
    for name, order in (
        ("coverage_figure", None),
        ("coverage_group_figure", None),
        ("building_access", "building_id, category_code"),
        ("building_snap", "building_id"),
        ("facility_snap", "facility_id"),
    ):
        df = pd.read_sql(text(f"SELECT * FROM {name}" + (f" ORDER BY {order}" if order else "")), conn)
        df = df.drop(columns=[c for c in df.columns if c in ("run_id", "geom", "computed_at")])
        if order is None:
            df = df.sort_values(list(df.columns)).reset_index(drop=True)
        out[name] = df
    return out


def test_dask_compute_stores_the_same_figures(ceng, client, catalog):
    with ceng.connect() as conn:
        tx = conn.begin()
        res1 = CoverageService(model_dir=False).compute(conn)
        one = stored(conn)
        tx.rollback()
    with ceng.connect() as conn:
        tx = conn.begin()
        res2 = dask_batch.compute(conn, client, catalog)
        two = stored(conn)
        run = conn.execute(
            text("SELECT stats->>'engine', categories FROM coverage_run WHERE id = :i"), {"i": res2.run_id}
        )
        engine, cats = run.one()
        tx.rollback()
    assert engine == "dask" and list(cats) == catalog.category_codes
    assert (res1.buildings, res1.facilities, res1.rows_written) == (res2.buildings, res2.facilities, res2.rows_written)
    assert len(res2.streets) >= 2 and res2.streets["buildings"].sum() == res2.buildings
    assert len(one["coverage_figure"]) > 1000
    for name in one:
        a, b = one[name], two[name]
        assert list(a.columns) == list(b.columns), name
        assert len(a) == len(b) and len(a) > 0, name
        num = [c for c in a.columns if pd.api.types.is_float_dtype(a[c])]
        rest = [c for c in a.columns if c not in num]
        pd.testing.assert_frame_equal(a[rest], b[rest], check_dtype=False, obj=name)
        for c in num:
            np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), atol=1e-3, err_msg=f"{name}.{c}")


def street_of(ceng, x, y) -> np.ndarray:
    """The street (code) each point lies in, from the street outlines."""
    with ceng.connect() as conn:
        s = pd.read_sql(text("SELECT code, ST_AsBinary(geom) AS wkb FROM street"), conn)
    polys = shapely.from_wkb(s["wkb"].to_numpy())
    out = np.full(len(x), "", dtype=object)
    for code, poly in zip(s["code"], polys, strict=True):
        out[shapely.contains_xy(poly, x, y)] = code
    return out


def test_halo_reaches_facilities_across_the_street_border(ceng, city, catalog, client):
    """With a cap of 600 m each task sees only part of the city; buildings whose nearest facility lies in
    the other street still get the single-process distance (and lose it when the halo is cut to the street)."""
    small = dataclasses.replace(catalog, distance_cap_m=600.0)
    m1, t1 = single(city, small)
    with ceng.connect() as conn:  # the tasks read their halo from PostGIS, on this transaction's snapshot
        p = dask_batch.plan(conn, small)
        assert len(p.streets) == 2
        results = dask_batch.run_streets_db(client, p, small)
    assert any(r.edges < p.source.n_edges for r in results)  # a real halo, not the whole city
    assert sum(r.facilities for r in results) < 2 * len(city.facilities)
    m2, t2 = dask_batch.assemble(p.shared, results, small)
    assert_same(m1, t1, m2, t2)
    # the same halos cut from the frames in memory give the same answers
    shared, streets = dask_batch.prepare(city, small)
    mem = client.gather([client.submit(dask_batch.street_task, shared, s, small, pure=False) for s in streets])
    assert [(r.street, r.edges, r.facilities) for r in mem] == [(r.street, r.edges, r.facilities) for r in results]

    fstreet = street_of(ceng, city.facilities.geometry.x.to_numpy(), city.facilities.geometry.y.to_numpy())
    fid = m1.facilities["id"].to_numpy()
    bstreet = city.buildings["street"].astype(str).to_numpy()
    fpos = pd.Series(np.arange(len(fid)), index=fid)
    across = np.zeros_like(t1.fac, dtype=bool)
    ok = t1.fac >= 0
    across[ok] = fstreet[t1.fac[ok]] != np.broadcast_to(bstreet[:, None], t1.fac.shape)[ok]
    assert across.sum() > 20, "the city should have buildings served across the street border"
    i, j = np.nonzero(across)
    np.testing.assert_allclose(t2.dist[i, j], t1.dist[i, j], atol=1e-3)
    f2 = m2.facilities["id"].to_numpy()[t2.fac[i, j]]
    assert (f2 == fid[t1.fac[i, j]]).mean() > 0.99
    assert len(fpos) == len(m2.facilities)

    # the same street with its facilities only (no halo): those buildings get other, longer answers
    street = bstreet[i[0]]
    mine = fstreet == street
    alone = dataclasses.replace(city, facilities=city.facilities[mine])
    m3 = CoverageModel(alone, small.network, small.distance_cap_m)
    t3 = m3.compute(small)
    sel = bstreet[i] == street
    d3 = t3.dist[i[sel], j[sel]]
    worse = ~(d3 <= t1.dist[i[sel], j[sel]] + 1e-3)  # without the other street's facilities: longer or none
    assert worse.sum() > 10 and worse.mean() > 0.9  # (a few have an equally near one of their own)


def test_cli_compute_dask(city_url, monkeypatch):
    from gisgov.cli.main import app

    monkeypatch.setenv("GISGOV_DATABASE_URL", city_url)
    r = runner.invoke(app, ["coverage", "compute", "--dask", "--workers", "2"])
    assert r.exit_code == 0, r.output
    assert "street tasks: 2" in r.output and "Dask: local cluster, 2 worker processes" in r.output
    eng = create_engine(city_url, poolclass=pool.NullPool)
    with eng.connect() as conn:
        engine, n = conn.execute(
            text(
                "SELECT stats->>'engine', (SELECT count(*) FROM building_access_packed) FROM coverage_run ORDER BY id DESC LIMIT 1"
            )
        ).one()
        nb = conn.execute(text("SELECT count(*) FROM building")).scalar()
    eng.dispose()
    assert engine == "dask" and n == nb
    bad = runner.invoke(app, ["coverage", "compute", "--workers", "3"])
    assert bad.exit_code != 0


def test_source_hides_the_password():
    src = dask_batch.Source(
        url="postgresql+psycopg://gis:s3cret@db:5432/city", snapshot=None, srid=4490, epsg=4547, n_edges=1
    )
    assert "s3cret" not in repr(src) and "db:5432/city" in repr(src)
