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
from contextlib import contextmanager
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


# -- the province view in the app (/api/rollup/..., /province) -----------------------------------------------

CODE_C = "340198"  # city B's export again under a third code, exported long ago: a stale city


def _resigned(doc, *, at, code=None):
    """The same export with another time (and code), its checksum made again: what the city would have
    exported at that time (the province cannot tell the difference, and must not need to)."""
    d = json.loads(json.dumps(doc))
    d["manifest"]["exported_at"] = at.isoformat()
    if code is not None:
        old = d["manifest"]["city_code"]
        d["manifest"]["city_code"] = code
        for u in d["units"]:
            if u["code"] == old:
                u["code"] = code
            if u.get("parent_code") == old:
                u["parent_code"] = code
    d["manifest"].pop("checksum", None)
    d["manifest"]["checksum"] = figures.checksum(d)
    return d


@pytest.fixture(scope="module")
def api_city(exports, city_b_url):
    """City B's database with a roll-up of three cities loaded (A and B exported an hour ago, C two days
    ago): the routes read the roll-up tables of whatever database the app serves; B has the communities
    the test's accounts are bound to."""
    a, b = exports
    now = datetime.now(UTC)
    docs = {
        CODE_A: _resigned(a, at=now - timedelta(hours=1)),
        CODE_B: _resigned(b, at=now - timedelta(minutes=50)),
        CODE_C: _resigned(b, at=now - timedelta(hours=50), code=CODE_C),
    }
    for d in docs.values():
        _load(city_b_url, d)
    return city_b_url, docs


@contextmanager
def _client(owner_url, role="admin", scope=""):
    from auth_helpers import app_engine, bearer_token, ensure_user
    from fastapi.testclient import TestClient

    from gisgov.api import app as app_module
    from gisgov.api.app import create_app
    from gisgov.config import Settings

    eng = app_engine(owner_url)
    user = ensure_user(owner_url, role, scope)
    app = create_app(Settings(), engine=eng)
    if "gisgov.api.routes.rollup" not in app_module.ROUTER_MODULES:  # until the app registers it
        from gisgov.api.routes import rollup as rollup_routes

        app.include_router(rollup_routes.router)
        rollup_routes.setup(app)
    try:
        with TestClient(app) as c:
            c.headers["Authorization"] = f"Bearer {bearer_token(c, user)}"
            yield c
    finally:
        eng.dispose()


def _keys(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _keys(v)


def _no_personal(r):
    assert_no_clear_pii(r.content, where=r.url.path)
    assert not set(_keys(r.json())) & figures.PERSONAL_KEYS, r.url.path


def test_api_province_view_totals_suppression_stale(api_city):
    url, docs = api_city
    city_fig = {code: next(u for u in d["units"] if u["level"] == "city")["figures"] for code, d in docs.items()}
    with _client(url) as c:
        r = c.get("/api/rollup/cities")
        assert r.status_code == 200, r.text
        _no_personal(r)
        view = r.json()
        rows = {row["city_code"]: row for row in view["cities"]}
        assert set(rows) >= set(docs)
        mine = [rows[k] for k in docs]
        for code in docs:  # each city's row is its export, suppression labels kept as labels
            assert rows[code]["figures"] == city_fig[code], code
        # the province: exact sums of the cities (only these three are loaded in this database)
        assert set(rows) == set(docs)
        tot = view["province"]["figures"]
        for ind in ("households", "residents", "buildings", "grids", "staff.total", "age.60+"):
            assert tot[ind] == sum(r_["figures"][ind] for r_ in mine), ind
            assert isinstance(tot[ind], int) and tot[ind] > 0
        for ind, v in tot.items():  # every indicator: the sum, or a lower bound over a suppressed figure
            parts = [r_["figures"][ind] for r_ in mine if ind in r_["figures"]]
            if all(isinstance(p, int) for p in parts):
                assert v == sum(parts), ind
            else:
                assert v == f"≥{sum(figures.lower_bound(p) for p in parts)}", (ind, v, parts)
        assert view["province"]["shares"]["elderly_share"] == round(tot["age.60+"] / tot["residents"], 4)
        assert (view["province"]["streets"], view["province"]["communities"]) == (
            sum(r_["streets"] for r_ in mine),
            sum(r_["communities"] for r_ in mine),
        )
        # export time and the stale marker: C was exported two days ago
        assert [rows[k]["stale"] for k in (CODE_A, CODE_B, CODE_C)] == [False, False, True]
        assert 49 < rows[CODE_C]["age_hours"] < 51 and view["province"]["stale_cities"] == 1
        assert c.get("/api/rollup/cities", params={"stale_hours": 60}).json()["province"]["stale_cities"] == 0
        assert rows[CODE_A]["exported_at"] == docs[CODE_A]["manifest"]["exported_at"]

        # streets of one city: the export's street figures, summed
        r = c.get("/api/rollup/units", params={"level": "street", "city": CODE_A})
        assert r.status_code == 200, r.text
        _no_personal(r)
        got = {u["code"]: u["figures"] for u in r.json()["items"]}
        want = {u["code"]: u["figures"] for u in docs[CODE_A]["units"] if u["level"] == "street"}
        assert got == want
        assert r.json()["total"]["figures"]["residents"] == city_fig[CODE_A]["residents"]
        # communities: small special-group counts stay suppressed labels; a sum over one is a lower bound
        r = c.get("/api/rollup/units", params={"level": "community", "city": CODE_A})
        got = {u["code"]: u["figures"] for u in r.json()["items"]}
        assert got == {u["code"]: u["figures"] for u in docs[CODE_A]["units"] if u["level"] == "community"}
        labelled = {k for f in got.values() for k, v in f.items() if v == f"<{K}"}
        assert labelled, "the sample city has small special groups: they must show as <k"
        for ind in labelled:
            total = r.json()["total"]["figures"][ind]
            assert total == f"≥{sum(figures.lower_bound(f.get(ind)) for f in got.values())}", (ind, total)
        r = c.get("/api/rollup/units", params={"level": "community"})
        assert r.status_code == 200
        n_comm = sum(1 for d in docs.values() for u in d["units"] if u["level"] == "community")
        assert r.json()["total"]["units"] == n_comm
        assert {u["city_code"] for u in r.json()["items"]} == set(docs)

        # outlines: a city's is the union of its streets' (the export carries none of its own)
        r = c.get("/api/rollup/features", params={"level": "city"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
        _no_personal(r)
        feats = r.json()["features"]
        assert {f["properties"]["city_code"] for f in feats} == set(docs)
        assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in feats)
        r = c.get("/api/rollup/features", params={"level": "street", "city": CODE_B})
        assert len(r.json()["features"]) == sum(1 for u in docs[CODE_B]["units"] if u["level"] == "street")

        # bad input: 4xx, never 500
        for path, params, status in (
            ("/api/rollup/units", {"city": "999999"}, 404),
            ("/api/rollup/features", {"city": "999999"}, 404),
            ("/api/rollup/units", {"city": "abc"}, 422),
            ("/api/rollup/units", {"level": "grid"}, 422),
            ("/api/rollup/features", {"level": "province"}, 422),
            ("/api/rollup/cities", {"stale_hours": 0}, 422),
            ("/api/rollup/cities", {"stale_hours": 10**12}, 422),
            ("/api/rollup/cities", {"stale_hours": "nan"}, 422),
        ):
            got = c.get(path, params=params)
            assert got.status_code == status, (path, params, got.status_code, got.text[:200])
        page = c.get("/province")
        assert page.status_code == 200 and "省级汇总" in page.text and "<script>" not in page.text


def test_api_province_view_only_for_top_accounts(api_city):
    url, _ = api_city
    eng = _engine(url)
    with eng.connect() as conn:
        street, community = conn.execute(text("SELECT street_code, code FROM community ORDER BY code LIMIT 1")).one()
    eng.dispose()
    for role, scope in (("community_staff", community), ("street_leader", street), ("viewer", street)):
        with _client(url, role, scope) as c:
            for path in ("/api/rollup/cities", "/api/rollup/units", "/api/rollup/features"):
                r = c.get(path)
                assert r.status_code == 403, (role, path, r.status_code)
                assert "out_of_scope" in r.json()["detail"] and "residents" not in r.text
            assert c.get("/province").status_code == 200  # the page; it shows the refusal
    with _client(url) as c:
        c.headers.pop("Authorization")
        assert c.get("/api/rollup/cities").status_code == 401
