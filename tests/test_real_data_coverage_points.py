"""Positions off the network and categories without facilities, over the API and the CLI (issue 11,
items 12 and 14).

12: a what-if facility 1 km outside the mapped streets counted the straight line as walking; one
20–110 km away (or at 0,0) reported "0 buildings change"; ``whatif --add 500,100`` gave a traceback
/ HTTP 500. Positions are now checked (lon/lat ranges, swapped order, within the distance cap of
the city) and a facility farther than ``network.max_access_m`` from a walkable street is refused
(rule off_network); siting leaves such candidate points out and says so.
14: a category with no facility in the data reported 0 % like a real gap; figures, the report, the
map and the catalog the dashboard reads now say "无此类设施数据 no facility of this category in the data".
"""

from __future__ import annotations

import hashlib
import json

import pytest
from auth_helpers import signed_in_client
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.config import Settings, get_settings

runner = CliRunner()
EMPTY = "wenhua"  # the category whose facilities this test deletes


@pytest.fixture(scope="module")
def city_url(db_factory):
    from gisgov.coverage.catalog import load_catalog
    from gisgov.sample import generate_city
    from gisgov.sample.load import load_city
    from gisgov.security.pii import Vault

    url = db_factory.create(prefix="gisgov_test_covpts")
    load_city(url, generate_city(seed=7, scale=0.3), vault=Vault(hashlib.sha256(b"coverage points").digest()))
    sel = load_catalog().category(EMPTY).select
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as c:
        for s in sel:
            c.execute(text("DELETE FROM facility WHERE category_code = :c"), {"c": s.category})
        ext = c.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM road_edge) q"
            )
        ).one()
        fac = c.execute(
            text("SELECT id, ST_X(geom), ST_Y(geom) FROM facility WHERE category_code = 'weisheng' LIMIT 1")
        ).one()
    eng.dispose()
    return url, tuple(ext), tuple(fac)


@pytest.fixture(scope="module")
def client(city_url):
    with signed_in_client(Settings(login_rate_per_minute=1000), city_url[0], role="admin") as c:
        yield c


def _rule(r) -> str:
    assert r.status_code == 422, r.text
    return r.json()["code"]


def test_whatif_positions_off_the_city_or_the_network_are_refused(client, city_url):
    _, (_x0, y0, x1, y1), (_fid, fx, fy) = city_url
    post = lambda lon, lat: client.post(  # noqa: E731
        "/api/coverage/whatif", json={"category": "weisheng", "op": "add", "lon": lon, "lat": lat}
    )
    ok = post(fx, fy)
    assert ok.status_code == 200, ok.text
    assert ok.json()["access_m"] is not None and ok.json()["access_m"] < 150 and ok.json()["warnings"] == []
    # 1 km east of the easternmost street (about 0.0106° of longitude at this latitude)
    assert _rule(post(x1 + 0.0106, (y0 + y1) / 2)) == "off_network"
    assert _rule(post(x1 + 0.6, (y0 + y1) / 2)) == "point_near_city"  # ~57 km east, inside China
    swapped = post(fy, fx)  # the API's region box refuses it first (the service says "swapped", below)
    assert swapped.status_code == 422 and "point_in_region" in swapped.json()["detail"]


def test_whatif_swapped_and_out_of_range_in_the_service(city_url):
    """The service itself checks (the CLI reaches it without the API's region box)."""
    from gisgov.coverage.service import CoverageService
    from gisgov.errors import InvalidInput

    url, _ext, (_fid, fx, fy) = city_url
    svc = CoverageService()
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.begin() as c:
            for lon, lat, rule in ((500, 100, "lonlat_range"), (fy, fx, "lonlat_swapped"), (0, 0, "point_near_city")):
                with pytest.raises(InvalidInput, match=f"rule: {rule}"):
                    svc.whatif(c, "weisheng", "add", lon=lon, lat=lat)
    finally:
        eng.dispose()


@pytest.fixture
def cli_env(monkeypatch, city_url, tmp_path):
    monkeypatch.setenv("GISGOV_DATABASE_URL", city_url[0])
    monkeypatch.setenv("GISGOV_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield city_url
    get_settings.cache_clear()


def test_cli_whatif_bad_positions_are_reports_not_tracebacks(cli_env):
    from gisgov.cli.main import app

    _, (_x0, y0, x1, y1), _ = cli_env
    for pos, rule in (
        ("500,100", "lonlat_range"),
        ("0,0", "point_near_city"),
        (f"{x1 + 0.0106},{(y0 + y1) / 2}", "off_network"),
    ):
        r = runner.invoke(app, ["coverage", "whatif", "--category", "weisheng", "--add", pos], env={"COLUMNS": "200"})
        assert r.exit_code == 2, r.output  # refused input: the usage exit code, not a crash
        assert isinstance(r.exception, SystemExit)
        assert f"rule: {rule}" in r.output and "Traceback" not in r.output


def test_site_leaves_off_network_points_out(client, city_url):
    _, (_x0, y0, x1, y1), (_fid, fx, fy) = city_url
    far = [x1 + 0.0106, (y0 + y1) / 2]
    r = client.post("/api/coverage/site", json={"category": "weisheng", "k": 1, "points": [[fx, fy], far]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["off_network_candidates"] == 1 and any("off_network" in w for w in out["warnings"])
    assert all(s["id"] == 0 for s in out["sites"])
    r = client.post("/api/coverage/site", json={"category": "weisheng", "k": 1, "points": [far]})
    assert _rule(r) == "off_network"


def test_no_facility_is_said_in_figures_catalog_and_map(client, city_url):
    url = city_url[0]
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.connect() as c:
        comm = c.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar()
    eng.dispose()
    s = client.get("/api/coverage/summary", params={"level": "community", "code": comm, "profile": "standard"})
    assert s.status_code == 200, s.text
    rows = s.json()["rows"]
    empty = [r for r in rows if r["item_kind"] == "category" and r["item"] == EMPTY]
    real = [r for r in rows if r["item_kind"] == "category" and r["item"] == "weisheng"]
    assert empty and all(r["no_facility"] and r["facilities"] == 0 and r["share_households"] == 0 for r in empty)
    assert real and not any(r["no_facility"] for r in real) and real[0]["facilities"] > 0
    comp = [r for r in rows if r["item_kind"] == "complete" and r["no_facility"]]
    assert comp and any(EMPTY in r["no_facility_categories"] for r in comp)
    cat = client.get("/api/coverage/catalog").json()
    flags = {c["code"]: c["no_facility"] for c in cat["categories"]}
    assert flags[EMPTY] is True and flags["weisheng"] is False
    page = client.get("/coverage/map", params={"category": EMPTY, "sites": 0})
    assert page.status_code == 200 and "无此类设施数据 no facility of this category in the data" in page.text
    page = client.get("/coverage/map", params={"category": "weisheng", "sites": 0})
    assert "无此类设施数据" not in page.text


def test_cli_report_says_no_facility(cli_env):
    from gisgov.cli.main import app

    eng = create_engine(cli_env[0], poolclass=pool.NullPool)
    with eng.connect() as c:
        comm = c.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar()
    eng.dispose()
    r = runner.invoke(app, ["coverage", "report", "--level", "community", "--code", comm], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "无此类设施数据 no facility in the data" in r.output
    r = runner.invoke(app, ["coverage", "report", "--level", "community", "--code", comm, "--json"])
    rows = json.loads(r.output)["rows"]
    assert any(x["item"] == EMPTY and x["no_facility"] for x in rows)
