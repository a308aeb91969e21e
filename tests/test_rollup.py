"""Province roll-up (issue 14, item 6b) with two city databases and a province on a second PostgreSQL
cluster: city A is the gridded sample city (grids and staff, no coverage computed), city B a small
sample city (seed 7, scale 0.2) with coverage computed and one community gridded and staffed. The
sample generator gives every city the same county code (340104) and the same street codes, so the
test exports them under two city codes (``--city-code``): the roll-up keys every unit by its city.

Checked: province totals = sums of the two cities' own figures (computed here independently in SQL
and through ``/api/stats``' service); per-city rows = each city's own stats as the aggregate roles see
them; shares recomputed from the summed numerators and denominators; a newer export of A replaces A
only; an older export is refused; a tampered file is refused naming the rule; the files hold no
personal data."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from pii_scanner import assert_no_clear_pii
from security_city import gridded_city_url  # noqa: F401  (fixture)
from sqlalchemy import create_engine, pool, text

from gisgov.coverage.catalog import default_catalog_path, load_catalog
from gisgov.db import migrate
from gisgov.db.cluster import EmbeddedCluster
from gisgov.errors import Conflict, InvalidInput
from gisgov.rollup import export, figures, load
from gisgov.stats import service

K = 5
CODE_A, CODE_B = "340104", "340199"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _engine(url):
    return create_engine(url, poolclass=pool.NullPool)


@pytest.fixture(scope="module")
def province_url(tmp_path_factory):
    """A second PostgreSQL cluster (the province instance), migrated, in a temporary GISGOV_HOME."""
    home = tmp_path_factory.mktemp("province-home")
    os.chmod(home, 0o755)
    os.chmod(home.parent, 0o755)
    c = EmbeddedCluster(home, db_name="gisgov")
    st = c.up()
    migrate.upgrade(st.url)
    yield st.url
    c.down()


@pytest.fixture(scope="module")
def city_b_url(db_factory):
    """City B: a small sample city with coverage computed and one community gridded and staffed."""
    from gisgov.coverage.service import CoverageService
    from gisgov.gridding import service as gridding
    from gisgov.sample import generate_city
    from gisgov.sample.load import load_city
    from gisgov.sample.staff import staff_active_grids
    from gisgov.security.pii import Vault

    vault = Vault(hashlib.sha256(b"rollup test city B").digest())
    url = db_factory.create(prefix="gisgov_test_rollup_b")
    load_city(url, generate_city(seed=7, scale=0.2), vault=vault)
    eng = _engine(url)
    try:
        with eng.begin() as conn:
            CoverageService(model_dir=False).compute(conn)
        with eng.begin() as conn:
            code = conn.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar_one()
            gridding.plan_and_activate(conn, code, time_limit_s=2.0)
            staff_active_grids(conn, vault)
    finally:
        eng.dispose()
    return url


def _build(url, code, at, catalog=None, change=None):
    """An export of the city at ``url``; ``change(conn)`` runs first in the same transaction, which is then
    rolled back (the shared city is never changed)."""
    eng = _engine(url)
    try:
        with eng.connect() as conn:
            tx = conn.begin()
            try:
                if change is not None:
                    change(conn)
                return export.build(conn, city_code=code, small_cell_k=K, catalog=catalog, exported_at=at)
            finally:
                tx.rollback()
    finally:
        eng.dispose()


def oracle(url) -> dict[str, int]:
    """The city's headline counts straight from its tables (independent of the stats code)."""
    eng = _engine(url)
    try:
        with eng.connect() as conn:
            return dict(
                conn.execute(
                    text("""
            SELECT (SELECT count(*) FROM building) AS buildings,
                   (SELECT count(*) FROM resident) AS residents,
                   (SELECT coalesce(sum(CASE WHEN n.n > 0 THEN n.n ELSE coalesce(b.households, 0) END), 0)
                      FROM building b LEFT JOIN (SELECT building_code, count(*) AS n FROM household GROUP BY 1) n
                      ON n.building_code = b.code) AS households,
                   (SELECT count(*) FROM grid_current()) AS grids,
                   (SELECT count(*) FROM grid_staff s JOIN grid_current() g ON g.id = s.grid_id) AS staff""")
                )
                .mappings()
                .one()
            )
    finally:
        eng.dispose()


def own_stats(url, level="city", code=None, catalog=None, k=K):
    eng = _engine(url)
    try:
        with eng.connect() as conn:
            return service.unit_stats(conn, level, code, catalog=catalog, small_cell_k=k)
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(default_catalog_path())


@pytest.fixture(scope="module")
def exports(gridded_city_url, city_b_url, catalog):
    a = _build(gridded_city_url, CODE_A, T0, catalog)
    b = _build(city_b_url, CODE_B, T0 + timedelta(minutes=5), catalog)
    return a, b


def _province(url):
    eng = _engine(url)
    try:
        with eng.connect() as conn:
            return load.province(conn)
    finally:
        eng.dispose()


def _load(url, doc):
    eng = _engine(url)
    try:
        with eng.begin() as conn:
            return load.load(conn, load.verify(doc))
    finally:
        eng.dispose()


def test_export_is_aggregates_only_and_suppressed(exports, gridded_city_url, tmp_path):
    a, b = exports
    for doc in (a, b):
        body = json.dumps(doc, ensure_ascii=False)
        assert_no_clear_pii(body, where=f"roll-up export {doc['manifest']['city_code']}")
        assert figures.personal_data(doc) == []
        names = {n for u in doc["units"] for n in u["figures"]}
        assert all(figures.INDICATOR_RE.match(n) for n in names), names
        assert {u["level"] for u in doc["units"]} == {"city", "street", "community"}
        assert all(u["outline"]["type"] in ("Polygon", "MultiPolygon") for u in doc["units"] if u["level"] != "city")
        # small special-group counts: never an exact number below k
        for u in doc["units"]:
            for n, v in u["figures"].items():
                if n.startswith("special.") and isinstance(v, int):
                    assert v == 0 or v >= K, (u["code"], n, v)
    labels = [v for u in a["units"] for n, v in u["figures"].items() if isinstance(v, str)]
    assert any(v == f"<{K}" for v in labels), "the sample city has small special groups: they must show as <k"
    # every street's figures are exactly what an aggregate-only role sees on that street's page
    street = next(u for u in a["units"] if u["level"] == "street")
    assert street["figures"] == figures.flatten(own_stats(gridded_city_url, "street", street["code"])["stats"])
    assert a["manifest"]["coverage"] is None and b["manifest"]["coverage"]["circle"]
    assert b["units"][0]["figures"]["coverage.complete.households"] > 0
    # written as gzip and read back, checksum verified
    p = export.write(a, tmp_path / "a.json.gz")
    assert gzip.decompress(p.read_bytes())[:1] == b"{"
    assert load.read(p) == a
    assert_no_clear_pii(gzip.decompress(p.read_bytes()), where="roll-up file")


def test_province_totals_are_exact_sums(exports, province_url, gridded_city_url, city_b_url, catalog):
    a, b = exports
    ra, rb = _load(province_url, a), _load(province_url, b)
    assert (ra.replaced, rb.replaced) == (None, None)
    view = _province(province_url)
    rows = {r["city_code"]: r for r in view["cities"]}
    assert set(rows) == {CODE_A, CODE_B}
    oa, ob = oracle(gridded_city_url), oracle(city_b_url)
    assert oa["grids"] > 0 and ob["grids"] > 0 and ob["staff"] > 0
    tot = view["province"]["figures"]
    for key, ind in (
        ("households", "households"),
        ("residents", "residents"),
        ("buildings", "buildings"),
        ("grids", "grids"),
        ("staff", "staff.total"),
    ):
        assert rows[CODE_A]["figures"][ind] == oa[key], key
        assert rows[CODE_B]["figures"][ind] == ob[key], key
        assert tot[ind] == oa[key] + ob[key], key
    # per-city rows are each city's own /api/stats block (as the aggregate roles see it)
    sa, sb = own_stats(gridded_city_url, catalog=catalog), own_stats(city_b_url, catalog=catalog)
    assert rows[CODE_A]["figures"] == figures.flatten(sa["stats"])
    assert rows[CODE_B]["figures"] == figures.flatten(sb["stats"])
    assert rows[CODE_A]["shares"]["elderly_share"] == sa["stats"]["elderly_share"]
    assert rows[CODE_B]["shares"]["coverage.complete.share"] == sb["stats"]["coverage"]["complete"]["share"]
    # shares from the summed numerators and denominators, never averaged
    fa, fb = sa["stats"], sb["stats"]
    share = view["province"]["shares"]
    want = round((fa["age"]["60+"] + fb["age"]["60+"]) / (fa["residents"] + fb["residents"]), 4)
    assert share["elderly_share"] == want
    assert want != round((fa["elderly_share"] + fb["elderly_share"]) / 2, 4)
    assert share["old_compound_share"] == round(
        (fa["old_compounds"] + fb["old_compounds"]) / (fa["compounds"] + fb["compounds"]), 4
    )
    # coverage: only B computed it, so the province share is B's numerator over B's denominator
    cov = fb["coverage"]
    assert share["coverage.complete.share"] == round(
        cov["complete"]["households_in"] / cov["complete"]["households"], 4
    )
    some = next(iter(cov["categories"]))
    assert share[f"coverage.{some}.share"] == cov["categories"][some]["share"]
    # the units and outlines are in the province database, keyed by city
    eng = _engine(province_url)
    with eng.connect() as conn:
        n = conn.execute(
            text("SELECT city_code, count(*) FROM rollup_unit WHERE geom IS NOT NULL GROUP BY 1 ORDER BY 1")
        ).all()
    eng.dispose()
    assert [r[0] for r in n] == [CODE_A, CODE_B] and all(r[1] > 0 for r in n)


def test_newer_export_replaces_one_city_older_refused(exports, province_url, gridded_city_url, catalog):
    a, b = exports
    _load(province_url, a)
    _load(province_url, b)
    before = _province(province_url)
    b_rows = load_rows(province_url, CODE_B)

    def one_less_staff(conn):
        conn.execute(text("DELETE FROM grid_staff WHERE id = (SELECT min(id) FROM grid_staff)"))

    newer = _build(gridded_city_url, CODE_A, T0 + timedelta(hours=1), catalog, change=one_less_staff)
    res = _load(province_url, newer)
    assert res.replaced == T0.isoformat()
    after = _province(province_url)
    old_a = next(r for r in before["cities"] if r["city_code"] == CODE_A)
    new_a = next(r for r in after["cities"] if r["city_code"] == CODE_A)
    assert new_a["figures"]["staff.total"] == old_a["figures"]["staff.total"] - 1
    assert after["province"]["figures"]["staff.total"] == before["province"]["figures"]["staff.total"] - 1
    assert load_rows(province_url, CODE_B) == b_rows  # B untouched
    # the original (older) export of A is refused, naming the rule; nothing changes
    with pytest.raises(Conflict, match="rollup_older_export"):
        _load(province_url, a)
    assert _province(province_url)["cities"] == after["cities"]
    # the same export again: unchanged
    assert _load(province_url, newer).unchanged


def load_rows(url, code):
    eng = _engine(url)
    try:
        with eng.connect() as conn:
            return conn.execute(
                text(
                    "SELECT level, code, indicator, value, label FROM rollup_figure WHERE city_code = :c ORDER BY 1, 2, 3"
                ),
                {"c": code},
            ).all()
    finally:
        eng.dispose()


def test_tampered_or_personal_files_are_refused(exports, province_url, tmp_path):
    _, b = exports
    tampered = json.loads(json.dumps(b))
    tampered["units"][0]["figures"]["households"] += 1
    path = tmp_path / "b.json"
    export.write(tampered, path)
    with pytest.raises(InvalidInput, match="rollup_checksum"):
        load.read(path)
    # a file re-signed after adding a personal field / an exact small count / an unknown indicator
    for change, rule in (
        (lambda d: d["units"][1].__setitem__("phone", "13800138000"), "rollup_no_personal_data"),
        (lambda d: d["units"][1]["figures"].__setitem__("special.people", K - 1), "rollup_small_cell"),
        (lambda d: d["units"][1]["figures"].__setitem__("resident.name", 1), "rollup_indicator"),
    ):
        doc = json.loads(json.dumps(b))
        change(doc)
        doc["manifest"]["checksum"] = figures.checksum(doc)
        with pytest.raises(InvalidInput, match=rule):
            load.verify(doc)
    (tmp_path / "junk.json.gz").write_bytes(b"\x1f\x8bnot gzip")
    with pytest.raises(InvalidInput, match="rollup_file_format"):
        load.read(tmp_path / "junk.json.gz")


def test_cli_export_load_show(gridded_city_url, province_url, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gisgov.cli.main import app
    from gisgov.config import get_settings

    runner = CliRunner()
    monkeypatch.setenv("GISGOV_DATABASE_URL", gridded_city_url)
    get_settings.cache_clear()
    out = tmp_path / "a.json.gz"
    r = runner.invoke(app, ["rollup", "export", "--out", str(out), "--city-code", "340188"])
    assert r.exit_code == 0, r.output
    assert "340188" in r.output and out.exists()
    monkeypatch.setenv("GISGOV_DATABASE_URL", province_url)
    get_settings.cache_clear()
    r = runner.invoke(app, ["rollup", "load", str(out)])
    assert r.exit_code == 0, r.output
    assert "已载入 loaded 340188" in r.output
    bad = tmp_path / "bad.json"
    doc = load.read(out)
    doc["units"][0]["figures"]["residents"] += 1
    export.write(doc, bad)
    r = runner.invoke(app, ["rollup", "load", str(bad)])
    assert r.exit_code == 2 and "rollup_checksum" in r.output
    r = runner.invoke(app, ["rollup", "show", "--json"])
    assert r.exit_code == 0, r.output
    view = json.loads(r.output)
    row = next(c for c in view["cities"] if c["city_code"] == "340188")
    assert row["figures"]["residents"] == oracle(gridded_city_url)["residents"]
    r = runner.invoke(app, ["rollup", "show"])
    assert r.exit_code == 0 and "全省 province" in r.output
