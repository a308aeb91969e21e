"""The fast coverage read/write paths (issue 14) give exactly what the old ones gave.

A small realistic city (the sample generator) is computed at revision 0014 with reference copies of the
old functions (one row per building × category, the long figure table as CSV COPY, per-row reads); the
0015 migration must carry those rows over unchanged (views with the same columns), the new compute must
write the same distances and figures, the downgrade must give the old tables back, and the new reads
(tuples, vectorised WKB, packed distances) must equal the old reads.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import shapely
from sqlalchemy import create_engine, pool, text

from gisgov.coverage import store
from gisgov.coverage.figures import coverage_figures, group_figures
from gisgov.coverage.service import CoverageService
from gisgov.db import migrate
from gisgov.db.copy import copy_frame

SEED = 20241123
ACCESS = (
    "SELECT building_id, category_code, distance_m, facility_id, method FROM building_access "
    "ORDER BY building_id, category_code"
)
FIGURES = (
    "SELECT level, code, item_kind, item, profile, circle, buildings, buildings_in, households, households_in, "
    "residents, residents_in FROM coverage_figure ORDER BY level, code, item_kind, item, profile, circle"
)


# -- reference copies of the old paths (before issue 14) ---------------------------------------------------


def old_frame(conn, sql, params=None):
    res = conn.execute(text(sql), params or {})
    return pd.DataFrame(res.fetchall(), columns=list(res.keys()))


def old_write_access(conn, model, table, run_id):
    fids = model.facilities["id"].to_numpy()
    ids = model.buildings["id"].to_numpy()
    conn.execute(text("DELETE FROM building_access"))
    frames = []
    for c in table.categories:
        j = table.col(c)
        d = table.dist[:, j].astype(float)
        f = table.fac[:, j].astype(np.int64)
        fid = np.where(f >= 0, fids[np.maximum(f, 0)], -1)
        frames.append(
            pd.DataFrame(
                {
                    "building_id": ids,
                    "category_code": c,
                    "distance_m": pd.Series(np.round(np.where(np.isfinite(d), d, 0), 2))
                    .astype("Float64")
                    .where(pd.Series(np.isfinite(d))),
                    "facility_id": pd.Series(np.where(fid >= 0, fid, 0)).astype("Int64").where(pd.Series(fid >= 0)),
                    "method": table.method,
                    "run_id": run_id,
                }
            )
        )
    copy_frame(conn.connection.dbapi_connection.cursor(), "building_access", pd.concat(frames, ignore_index=True))


def old_write_figures(conn, fig, gfig, run_id):
    conn.execute(text("DELETE FROM coverage_figure"))
    conn.execute(text("DELETE FROM coverage_group_figure"))
    cur = conn.connection.dbapi_connection.cursor()
    copy_frame(cur, "coverage_figure", fig.assign(run_id=run_id))
    if len(gfig):
        copy_frame(cur, "coverage_group_figure", gfig.assign(run_id=run_id))


def old_compute(conn):
    """Distances and figures written the old way (the schema of 0014)."""
    svc = CoverageService()
    cat = svc.catalog()
    model = svc.ensure_model(conn)
    table = model.compute(cat)
    run_id = store.start_run(conn, cat, model.method, cat.category_codes, svc._sums)
    store.write_budgets(conn, cat)
    old_write_access(conn, model, table, run_id)
    b = model.buildings
    old_write_figures(conn, coverage_figures(b, table, cat), group_figures(b, svc.groups, table, cat), run_id)
    store.finish_run(conn, run_id, {})
    return model, table


def rows(conn, sql):
    return [tuple(r) for r in conn.execute(text(sql))]


@pytest.fixture(scope="module")
def old_city(db_factory):
    """A sample city at revision 0014 with coverage written by the old path, and the rows it wrote."""
    from gisgov.sample import generate_city
    from gisgov.sample.load import load_city
    from gisgov.security.pii import Vault

    url = db_factory.create(prefix="gisgov_test_scale", migrated=False)
    migrate.upgrade(url, "0014")
    load_city(url, generate_city(seed=SEED, scale=0.25), vault=Vault(hashlib.sha256(b"scale test").digest()))
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as c:
        model, table = old_compute(c)
    with eng.connect() as c:
        access, figures = rows(c, ACCESS), rows(c, FIGURES)
    eng.dispose()
    assert len(access) == len(model.buildings) * len(table.categories) and len(figures) > 1000
    return url, access, figures


def test_migration_carries_old_rows_then_new_compute_writes_the_same(old_city):
    url, access, figures = old_city
    migrate.upgrade(url)
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            assert c.execute(text("SELECT count(*) FROM building_access_packed")).scalar() > 0
            assert rows(c, ACCESS) == access  # the view over the packed rows = the old table
            assert rows(c, FIGURES) == figures
        with eng.begin() as c:
            res = CoverageService().compute(c)  # the new path: packed binary COPY, figure arrays
        with eng.connect() as c:
            assert rows(c, ACCESS) == access
            assert rows(c, FIGURES) == figures
            # one packed row per building, none per building × category
            assert c.execute(text("SELECT count(*) FROM building_access_packed")).scalar() == res.buildings
            assert c.execute(text("SELECT count(DISTINCT run_id) FROM building_access")).scalar() == 1
        # down again: the old tables with the same rows
        migrate.downgrade(url, "0014")
        with eng.connect() as c:
            kinds = dict(
                c.execute(
                    text(
                        "SELECT relname, relkind FROM pg_class WHERE relname IN ('building_access', 'coverage_figure')"
                    )
                ).all()
            )
            assert kinds == {"building_access": "r", "coverage_figure": "r"}
            assert rows(c, ACCESS) == access
            assert rows(c, FIGURES) == figures
        migrate.upgrade(url)
        with eng.connect() as c:
            assert rows(c, ACCESS) == access and rows(c, FIGURES) == figures
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def new_city(old_city):
    url = old_city[0]
    migrate.upgrade(url)
    return url


def test_reads_equal_the_old_reads(new_city):
    eng = create_engine(new_city, poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            for sql in (store.BUILDINGS_SQL, store.GROUPS_SQL, store.FACILITIES_SQL):
                new, old = store._frame(c, sql), old_frame(c, sql)
                pd.testing.assert_frame_equal(new, old, check_dtype=False)
            city = store.load_city(c)
            f = old_frame(c, "SELECT id, ST_AsBinary(geom) AS wkb FROM building ORDER BY id")
            old_fp = [None if w is None else shapely.from_wkb(bytes(w)) for w in f["wkb"]]
            assert len(city.footprints) == len(old_fp) > 0
            assert all(
                (a is None and b is None) or shapely.equals_exact(a, b, 0)
                for a, b in zip(city.footprints, old_fp, strict=True)
            )
            e = old_frame(c, "SELECT id, ST_AsBinary(geom) AS wkb FROM road_edge ORDER BY id")
            assert list(city.edges["id"]) == list(e["id"])
            assert all(
                shapely.equals_exact(a, shapely.from_wkb(bytes(w)), 0)
                for a, w in zip(city.edges.geometry, e["wkb"], strict=True)
            )
    finally:
        eng.dispose()


def test_stored_table_reads_back_exactly_and_partial_writes_keep_the_rest(new_city):
    eng = create_engine(new_city, poolclass=pool.NullPool)
    svc = CoverageService()
    try:
        with eng.begin() as c:
            svc.compute(c)
            cat = svc.catalog()
            model = svc.model
            fresh = model.compute(cat)
            back = store.load_table(c, model, cat.category_codes)
            assert back is not None
            want = np.where(np.isfinite(fresh.dist), np.round(fresh.dist.astype(float), 2), np.inf).astype(np.float32)
            assert np.array_equal(back.dist, want)
            assert np.array_equal(back.fac, fresh.fac)
            before = rows(c, ACCESS)
            # a one-category rewrite with a changed column: only that column changes
            j = fresh.col("weisheng")
            changed = fresh.replace(
                "weisheng", np.where(fresh.dist[:, j] < 300, 1.0, fresh.dist[:, j]), fresh.fac[:, j]
            )
            run = store.start_run(c, cat, model.method, ["weisheng"], {})
            store.write_access(c, model, changed, run, ["weisheng"])
            after = rows(c, ACCESS)
            assert [r for r in after if r[1] != "weisheng"] == [r for r in before if r[1] != "weisheng"]
            near = {r[0] for r in before if r[1] == "weisheng" and r[2] is not None and r[2] < 300}
            assert near and all(r[2] == 1.0 for r in after if r[1] == "weisheng" and r[0] in near)
            runs = dict(c.execute(text("SELECT category_code, max(run_id) FROM building_access GROUP BY 1")).all())
            assert runs["weisheng"] == run and runs["wenhua"] < run
            c.rollback()
    finally:
        eng.dispose()


def test_deleted_buildings_lose_their_snaps_and_distances(new_city):
    eng = create_engine(new_city, poolclass=pool.NullPool)
    try:
        with eng.begin() as c:
            CoverageService().compute(c)
        with eng.begin() as c:
            bid = c.execute(
                text(
                    "SELECT b.id FROM building b WHERE NOT EXISTS (SELECT 1 FROM household h "
                    "WHERE h.building_code = b.code) ORDER BY id LIMIT 1"
                )
            ).scalar()
            if bid is None:  # every building has households: remove one with its people
                bid = c.execute(text("SELECT min(id) FROM building")).scalar()
            c.execute(text("DELETE FROM building WHERE id = :b"), {"b": bid})
            for t in ("building_snap", "building_access_packed"):
                assert c.execute(text(f"SELECT count(*) FROM {t} WHERE building_id = :b"), {"b": bid}).scalar() == 0
            assert c.execute(text("SELECT count(*) FROM building_snap")).scalar() > 0
            c.rollback()
    finally:
        eng.dispose()


def test_persisted_model_is_reused_and_invalidated_when_an_input_changes(new_city, tmp_path):
    eng = create_engine(new_city, poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            first = CoverageService(model_dir=tmp_path)
            built = first.ensure_model(c)
            assert first.model_loads == 0 and len(list(tmp_path.glob("*.pickle"))) == 1
            # a new service (a restart): the model comes from the file, the same as the one built
            again = CoverageService(model_dir=tmp_path)
            kept = again.ensure_model(c)
            assert again.model_loads == 1
            assert kept is not built and kept.epsg == built.epsg
            assert np.array_equal(kept.bsnap.edge, built.bsnap.edge) and np.array_equal(kept.bsnap.leg, built.bsnap.leg)
            cat = again.catalog()
            assert np.array_equal(kept.compute(cat).dist, built.compute(cat).dist)
        with eng.begin() as c:
            # an input changes (a building's household estimate): the persisted model no longer applies
            c.execute(
                text(
                    "UPDATE building SET households = coalesce(households, 0) + 1 WHERE id = (SELECT min(id) FROM building)"
                )
            )
            third = CoverageService(model_dir=tmp_path)
            third.ensure_model(c)
            assert third.model_loads == 0 and third.builds == 1
            # a changed facility table alone: the persisted structure is reused, the facilities re-read
            c.execute(text("UPDATE facility SET name = name || ' x' WHERE id = (SELECT min(id) FROM facility)"))
            c.execute(
                text(
                    "UPDATE facility SET geom = ST_Translate(geom, 0.0005, 0) WHERE id = (SELECT min(id) FROM facility)"
                )
            )
            fourth = CoverageService(model_dir=tmp_path)
            m4 = fourth.ensure_model(c)
            assert fourth.model_loads == 1
            fx = c.execute(text("SELECT ST_X(geom) FROM facility WHERE id = (SELECT min(id) FROM facility)")).scalar()
            lon, _ = m4.to_lonlat(m4.facilities["x"].to_numpy()[:1], m4.facilities["y"].to_numpy()[:1])
            assert abs(float(lon[0]) - fx) < 1e-7
            c.rollback()
    finally:
        eng.dispose()


def test_writes_through_the_building_access_view(new_city):
    eng = create_engine(new_city, poolclass=pool.NullPool)
    try:
        with eng.begin() as c:
            CoverageService().compute(c)
        with eng.begin() as c:
            b = c.execute(text("SELECT min(id) FROM building")).scalar()
            one = "SELECT distance_m, facility_id FROM building_access WHERE building_id = :b AND category_code = :c"
            c.execute(
                text(
                    "INSERT INTO building_access (building_id, category_code, distance_m) VALUES (:b, 'wenhua', 412.4)"
                ),
                {"b": b},
            )
            assert tuple(c.execute(text(one), {"b": b, "c": "wenhua"}).one()) == (pytest.approx(412.4), None)
            c.execute(
                text("UPDATE building_access SET distance_m = 7 WHERE building_id = :b AND category_code = 'wenhua'"),
                {"b": b},
            )
            assert c.execute(text(one), {"b": b, "c": "wenhua"}).one()[0] == 7
            # a category not stored before: a new slot, read as missing for the other buildings
            c.execute(
                text("INSERT INTO building_access (building_id, category_code, distance_m) VALUES (:b, 'x_new', 5)"),
                {"b": b},
            )
            assert c.execute(text("SELECT count(*) FROM building_access WHERE category_code = 'x_new'")).scalar() == 1
            c.execute(text("DELETE FROM building_access WHERE building_id = :b AND category_code = 'wenhua'"), {"b": b})
            assert c.execute(text(one), {"b": b, "c": "wenhua"}).first() is None
            c.rollback()
    finally:
        eng.dispose()


def test_reads_fingerprint_the_inputs_only_after_a_commit_moved_the_data_version(new_city, tmp_path):
    """A coverage read checks one number (the data version) instead of fingerprinting every input table on each
    request; a committed write to any input — the road network too (migration 0018) — makes the next read check."""
    from gisgov.db.data_version import data_version

    eng = create_engine(new_city, poolclass=pool.NullPool)
    try:
        svc = CoverageService(model_dir=tmp_path)
        with eng.connect() as c:
            street = c.execute(text("SELECT min(code) FROM street")).scalar_one()
            first = svc.summary(c, "street", street)  # builds the model and the table
            checks = svc.input_checks
            assert svc.summary(c, "street", street) == first  # checks the inputs once, finds them current
            assert svc.input_checks == checks + 1
            for _ in range(3):
                assert svc.summary(c, "street", street) == first
            assert svc.input_checks == checks + 1  # nothing committed since: no fingerprints
            models = svc.model_checks
            for _ in range(3):  # the special-group summary's path (the model alone) too
                assert svc.ensure_model(c) is svc.model
            assert svc.model_checks == models
            v0 = data_version(c)
            c.rollback()
        with eng.begin() as c:  # a no-op write to the walking network, committed
            c.execute(text("UPDATE road_edge SET name = name WHERE id = (SELECT min(id) FROM road_edge)"))
        with eng.connect() as c:
            assert data_version(c) == v0 + 1
            assert svc.summary(c, "street", street) == first
            assert svc.input_checks == checks + 2  # the version moved: the inputs were fingerprinted again
            svc.ensure_model(c)
            assert svc.model_checks == models + 1
    finally:
        eng.dispose()
