"""POST /api/import (sync report, background job with progress, size limit), GET /api/export, template —
signed in, with permissions, the caller's scope (row-level security) and audit."""

from __future__ import annotations

import io
import json
import re
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from auth_helpers import app_engine, signed_in_client
from fastapi.testclient import TestClient
from ingest_helpers import (
    COMM_A,
    COMM_B,
    STREET,
    bowtie,
    gdf,
    load_city,
    snapshot,
    write_gbk_communities,
    write_streets,
)
from shapely.geometry import box
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.ingest import jobs, roster
from gisgov.ingest.loader import load_file
from gisgov.ingest.roster import load_roster
from gisgov.ingest.settings import get_ingest_settings
from gisgov.security.pii import Vault, id_check_digit

SETTINGS = Settings(secret_key="api-test-secret-key-123", home=Path(tempfile.mkdtemp(prefix="gisgov-api-test-")))
VAULT = Vault.from_settings(SETTINGS)
ID18 = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


def ident(seq: int, year: int = 1960) -> str:
    first = f"340104{year}0101{seq:03d}"
    return first + id_check_digit(first)


@pytest.fixture
def owner(db_factory):
    url = db_factory.create()
    eng = create_engine(url, poolclass=pool.NullPool)
    yield url, eng
    eng.dispose()


@pytest.fixture
def api(owner):
    url, eng = owner
    with signed_in_client(SETTINGS, url, role="admin") as c:
        yield c, eng


@pytest.fixture
def limits(monkeypatch):
    def set_(**kw):
        for k, v in kw.items():
            monkeypatch.setenv(f"GISGOV_INGEST_{k.upper()}", str(v))
        get_ingest_settings.cache_clear()

    yield set_
    monkeypatch.undo()
    get_ingest_settings.cache_clear()


def _zip_shapefile(shp) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in shp.parent.glob(shp.stem + ".*"):
            z.write(p, p.name)
    return buf.getvalue()


def _audit_rows(eng, action: str, actor: str | None = None) -> list:
    with eng.connect() as c:
        return c.execute(
            text(
                "SELECT actor, result, object, detail FROM audit_log WHERE action = :a "
                "AND (CAST(:u AS text) IS NULL OR actor = :u) ORDER BY id"
            ),
            {"a": action, "u": actor},
        ).all()


def _csv(rows: list[dict]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode("utf-8")


# ---------------------------------------------------------------- a small city with people in two communities


@pytest.fixture(scope="module")
def city(db_factory, tmp_path_factory):
    """Street, communities A and B, two buildings each, residents in both (loaded by the owner)."""
    url = db_factory.create()
    eng = create_engine(url, poolclass=pool.NullPool)
    tmp = tmp_path_factory.mktemp("city")
    load_city(eng, tmp)
    b = tmp / "b.geojson"
    gdf(
        [
            {"楼栋编码": f"{COMM_A}00001", "户数": 3, "geometry": box(117.2030, 31.8050, 117.2035, 31.8055)},
            {"楼栋编码": f"{COMM_A}00002", "户数": 3, "geometry": box(117.2040, 31.8050, 117.2045, 31.8055)},
            {"楼栋编码": f"{COMM_B}00001", "户数": 3, "geometry": box(117.2251, 31.8101, 117.2259, 31.8107)},
        ]
    ).to_file(b)
    assert load_file(b, "building", engine=eng).status == "loaded"
    rp = tmp / "roster.csv"
    rp.write_bytes(
        _csv(
            [
                {
                    "楼栋编码": f"{COMM_A}00001",
                    "户号": "101",
                    "姓名": "东一",
                    "身份证号": ident(1),
                    "联系电话": "13900001111",
                    "特殊人群": "低保",
                },
                {
                    "楼栋编码": f"{COMM_A}00002",
                    "户号": "201",
                    "姓名": "东二",
                    "身份证号": ident(2),
                    "联系电话": "13900002222",
                    "特殊人群": "",
                },
                {
                    "楼栋编码": f"{COMM_B}00001",
                    "户号": "101",
                    "姓名": "西一",
                    "身份证号": ident(3),
                    "联系电话": "13700003333",
                    "特殊人群": "残疾",
                },
            ]
        )
    )
    assert load_roster(rp, engine=eng, vault=VAULT).status == "loaded"
    yield url, eng
    eng.dispose()


@contextmanager
def as_(url, role, scope=""):
    with signed_in_client(SETTINGS, url, role=role, scope=scope) as c:
        yield c


# ---------------------------------------------------------------- behaviour kept from before (as admin)


def test_import_sync_reports_and_rejects(api, tmp_path):
    c, eng = api
    r = c.post(
        "/api/import",
        data={"level": "street"},
        files={"file": ("街道.geojson", write_streets(tmp_path).read_bytes(), "application/geo+json")},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "loaded" and body["counts"]["written"] == 1
    job = c.get(body["status_url"]).json()
    assert job["status"] == "loaded" and job["report"]["counts"]["written"] == 1 and job["owner"] == "t_admin_all"
    shp = write_gbk_communities(tmp_path, cpg=False)
    r = c.post(
        "/api/import", data={"level": "community"}, files={"file": ("社区.zip", _zip_shapefile(shp), "application/zip")}
    )
    assert r.status_code == 200, r.text
    with eng.connect() as cn:
        assert cn.execute(text("SELECT name FROM community ORDER BY code")).scalars().all() == ["东园社区", "西湖社区"]
    # a bow-tie: 422 with the record named, nothing written
    p = tmp_path / "bad.gpkg"
    gdf([{"小区名称": "蝴蝶苑", "geometry": bowtie(117.210, 31.810, 0.004)}]).to_file(p, driver="GPKG")
    before = snapshot(eng)
    r = c.post("/api/import", data={"level": "compound"}, files={"file": ("bad.gpkg", p.read_bytes())})
    assert r.status_code == 422
    rej = [i for i in r.json()["issues"] if i["action"] == "rejected"]
    assert rej[0]["rule"] == "geom_invalid" and rej[0]["record"] == "fid 1" and rej[0]["file"] == "bad.gpkg"
    assert snapshot(eng) == before
    r = c.post(
        "/api/import", data={"level": "compound", "repair": "true"}, files={"file": ("bad.gpkg", p.read_bytes())}
    )
    assert r.status_code == 200 and r.json()["n_repaired"] == 1
    assert c.post("/api/import", data={"level": "moon"}, files={"file": ("x.csv", b"a,b\n")}).status_code == 422
    assert c.get("/api/import/00000000-0000-0000-0000-000000000000").status_code == 404
    # every import audited once, with its result
    rows = _audit_rows(eng, "import", "t_admin_all")
    assert [r.result for r in rows] == ["ok", "ok", "failed", "ok", "failed"]
    assert rows[0].detail["written"] == 1 and rows[2].detail["rejected"] == 1


def test_background_job_with_progress_and_size_limit(api, tmp_path, limits):
    c, eng = api
    limits(sync_limit_mb=0)
    r = c.post(
        "/api/import", data={"level": "street"}, files={"file": ("s.geojson", write_streets(tmp_path).read_bytes())}
    )
    assert r.status_code == 202 and r.headers["location"] == r.json()["status_url"]
    job = c.get(r.json()["status_url"]).json()
    assert job["status"] == "loaded" and job["stage"] == "write" and job["done"] == job["total"] == 1
    rows = _audit_rows(eng, "import", "t_admin_all")
    assert len(rows) == 1 and rows[0].result == "ok" and rows[0].object == f"import_job:{r.json()['job']}"
    limits(max_upload_mb=0.0001)
    r = c.post("/api/import", data={"level": "street"}, files={"file": ("s.geojson", b"x" * 1000)})
    assert r.status_code == 413


def test_export_endpoints_and_template(api, tmp_path):
    c, _eng = api
    for level, p in (("street", write_streets(tmp_path)), ("community", write_gbk_communities(tmp_path, cpg=True))):
        files = {"file": (p.name, p.read_bytes())} if level == "street" else {"file": ("c.zip", _zip_shapefile(p))}
        assert c.post("/api/import", data={"level": level}, files=files).status_code == 200
    b = tmp_path / "b.geojson"
    gdf([{"楼栋编码": f"{COMM_A}00001", "户数": 3, "geometry": box(117.2030, 31.8050, 117.2035, 31.8055)}]).to_file(b)
    assert (
        c.post("/api/import", data={"level": "building"}, files={"file": ("b.geojson", b.read_bytes())}).status_code
        == 200
    )
    first = "11010519491231002"
    roster_df = pd.DataFrame(
        {
            "楼栋编码": [f"{COMM_A}00001"],
            "户号": ["1"],
            "姓名": ["张三"],
            "身份证号": [first + id_check_digit(first)],
            "联系电话": ["13912345678"],
        }
    )
    r = c.post(
        "/api/import",
        data={"level": "resident"},
        files={"file": ("名册.csv", roster_df.to_csv(index=False).encode("gbk"))},
    )
    assert r.status_code == 200, r.text
    r = c.get("/api/export", params={"level": "community", "format": "geojson"})
    assert r.status_code == 200
    fc = json.loads(r.content)
    assert sorted(f["properties"]["name"] for f in fc["features"]) == ["东园社区", "西湖社区"]
    r = c.get("/api/export", params={"level": "community", "format": "shp"})
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert {"community.shp", "community.dbf", "community.cpg", "community.prj"} <= set(names)
    r = c.get("/api/export", params={"level": "resident", "format": "csv"})
    body = r.content.decode("utf-8-sig")
    # birth year is exported: the ID column shows no character of the number, not even the last four
    assert "张三" in body and first not in body and "002X" not in body and "*" * 18 in body
    assert "139****5678" in body and "1949" in body
    assert c.get("/api/export", params={"level": "building", "format": "kml"}).status_code == 422
    r = c.get("/api/template/residents")
    assert r.status_code == 200 and r.content[:2] == b"PK"


# ---------------------------------------------------------------- sign-in, permissions, ownership


def test_anonymous_gets_401(owner):
    url, _ = owner
    eng = app_engine(url)
    try:
        with TestClient(create_app(SETTINGS, engine=eng)) as c:
            assert c.get("/api/export", params={"level": "building", "format": "csv"}).status_code == 401
            assert c.get("/api/export", params={"level": "resident", "format": "csv"}).status_code == 401
            assert c.post("/api/import", data={"level": "street"}, files={"file": ("s.csv", b"a\n")}).status_code == 401
            assert c.get("/api/import/00000000-0000-0000-0000-000000000000").status_code == 401
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    "role, scope", [("viewer", STREET), ("planner", STREET), ("viewer", COMM_A), ("street_leader", STREET)]
)
def test_roles_without_import_data_get_403(city, tmp_path, role, scope):
    url, eng = city
    before = snapshot(eng)
    with as_(url, role, scope) as c:
        r = c.post(
            "/api/import", data={"level": "street"}, files={"file": ("s.geojson", write_streets(tmp_path).read_bytes())}
        )
        assert r.status_code == 403 and "import_data" in r.json()["detail"]
    assert snapshot(eng) == before


def test_job_status_only_for_owner_or_admin(city, tmp_path):
    url, _eng = city
    b = tmp_path / "b.geojson"
    gdf([{"楼栋编码": f"{COMM_A}00009", "geometry": box(117.2050, 31.8050, 117.2055, 31.8055)}]).to_file(b)
    with as_(url, "community_staff", COMM_A) as a:
        r = a.post(
            "/api/import", data={"level": "building", "dry_run": "true"}, files={"file": ("b.geojson", b.read_bytes())}
        )
        assert r.status_code == 200, r.text
        url_a = r.json()["status_url"]
        assert a.get(url_a).status_code == 200
    with as_(url, "community_staff", COMM_B) as other:
        assert other.get(url_a).status_code == 404
    with as_(url, "admin") as adm:
        assert adm.get(url_a).json()["owner"] == f"t_community_staff_{COMM_A}"


# ---------------------------------------------------------------- export: area, permissions, masking, audit


def test_export_restricted_to_area_and_personal_permission(city):
    url, eng = city
    with as_(url, "viewer", COMM_A) as v:
        r = v.get("/api/export", params={"level": "building", "format": "geojson"})
        assert r.status_code == 200
        codes = sorted(f["properties"]["code"] for f in json.loads(r.content)["features"])
        assert codes and all(c.startswith(COMM_A) for c in codes)
        r = v.get("/api/export", params={"level": "community", "format": "csv"})
        assert pd.read_csv(io.BytesIO(r.content), dtype=str)["code"].tolist() == [COMM_A]
        assert (
            v.get("/api/export", params={"level": "building", "format": "csv", "community": COMM_B}).status_code == 404
        )
        assert v.get("/api/export", params={"level": "resident", "format": "csv"}).status_code == 403
        assert (
            v.get("/api/export", params={"level": "resident", "format": "csv", "community": COMM_A}).status_code == 403
        )
    denied = _audit_rows(eng, "export", f"t_viewer_{COMM_A}")
    assert [d.result for d in denied] == ["ok", "ok", "denied", "denied"]
    with as_(url, "planner", STREET) as pl:
        assert pl.get("/api/export", params={"level": "resident", "format": "csv"}).status_code == 403
        r = pl.get("/api/export", params={"level": "building", "format": "csv"})
        assert len(pd.read_csv(io.BytesIO(r.content))) == 3  # the whole street: both communities


def test_community_staff_resident_export(city):
    url, eng = city
    user = f"t_community_staff_{COMM_A}"
    before = len(_audit_rows(eng, "export", user))
    with as_(url, "community_staff", COMM_A) as c:
        r = c.get("/api/export", params={"level": "resident", "format": "csv"})
        assert r.status_code == 200, r.text
        body = r.content.decode("utf-8-sig")
        df = pd.read_csv(io.StringIO(body), dtype=str)
        assert set(df["姓名"]) >= {"东一", "东二"} and "西一" not in body
        assert df["楼栋编码"].str.startswith(COMM_A).all() and df["户编码"].str.startswith(COMM_A).all()
        assert not ID18.search(body) and not MOBILE.search(body)
        assert set(df["身份证号"]) == {"*" * 18} and "139****1111" in body
        # another community's residents: 404 (not 403), nothing exported
        assert (
            c.get("/api/export", params={"level": "resident", "format": "csv", "community": COMM_B}).status_code == 404
        )
    rows = _audit_rows(eng, "export", user)[before:]
    assert len(rows) == 2
    ok = [r for r in rows if r.result == "ok"]
    assert len(ok) == 1 and ok[0].detail["rows"] == len(df) and ok[0].detail["level"] == "resident"
    # the admin's export holds everybody, still masked (a resident XLSX always runs as a background job)
    with as_(url, "admin") as adm:
        r = adm.get("/api/export", params={"level": "resident", "format": "xlsx"})
        assert r.status_code == 202, r.text
        job = _wait_export(adm, r.json()["status_url"])
        assert job["status"] == "done", job
        body = adm.get(job["file_url"]).content
        df = pd.read_excel(io.BytesIO(body), dtype=str)
        assert len(df) == job["rows"]
        assert {"东一", "西一"} <= set(df["姓名"]) and set(df["身份证号"]) == {"*" * 18}
        assert not MOBILE.search(df.to_csv())


def _wait_export(client, status_url: str, limit_s: float = 120) -> dict:
    end = time.monotonic() + limit_s
    while True:
        job = client.get(status_url).json()
        if job["status"] in ("done", "failed") or time.monotonic() > end:
            return job
        time.sleep(0.2)


# ---------------------------------------------------------------- import under the caller's scope


def test_community_staff_roster_into_other_community_fails_atomically(city, tmp_path):
    url, eng = city
    user = f"t_community_staff_{COMM_A}"
    before = snapshot(eng)
    n_audit = len(_audit_rows(eng, "import", user))
    data = _csv(
        [
            {"楼栋编码": f"{COMM_A}00001", "户号": "102", "姓名": "东三", "身份证号": ident(11)},
            {"楼栋编码": f"{COMM_B}00001", "户号": "102", "姓名": "西三", "身份证号": ident(12)},
        ]
    )
    with as_(url, "community_staff", COMM_A) as c:
        r = c.post("/api/import", data={"level": "resident"}, files={"file": ("名册.csv", data)})
        assert r.status_code == 422, r.text
        rep = r.json()
        assert rep["status"] == "rejected"
        bad = [i for i in rep["issues"] if i["action"] == "rejected"]
        assert [i["rule"] for i in bad] == ["out_of_scope"] and "out_of_scope" in bad[0]["message"]
        assert bad[0]["value"] == f"{COMM_B}00001" and bad[0]["record"] == "row 3"  # the second data row
        # buildings of the other community: rejected per record; the road network: city-wide only
        b = tmp_path / "b.geojson"
        gdf([{"楼栋编码": f"{COMM_B}00009", "geometry": box(117.2261, 31.8101, 117.2265, 31.8105)}]).to_file(b)
        r = c.post("/api/import", data={"level": "building"}, files={"file": ("b.geojson", b.read_bytes())})
        assert r.status_code == 422 and [i["rule"] for i in r.json()["issues"] if i["action"] == "rejected"] == [
            "out_of_scope"
        ]
        r = c.post("/api/import", data={"level": "road"}, files={"file": ("r.geojson", b.read_bytes())})
        assert r.status_code == 403
        # its own community: loads, and the households really are there (written under its scope)
        ok = _csv([{"楼栋编码": f"{COMM_A}00002", "户号": "202", "姓名": "东四", "身份证号": ident(13)}])
        assert snapshot(eng) == before  # nothing written by the refused imports
        r = c.post("/api/import", data={"level": "resident"}, files={"file": ("ok.csv", ok)})
        assert r.status_code == 200 and r.json()["counts"]["written"] == 1
    with eng.connect() as cn:
        assert cn.execute(text("SELECT count(*) FROM resident WHERE name = '东四'")).scalar() == 1
    rows = _audit_rows(eng, "import", user)[n_audit:]
    assert [r.result for r in rows] == ["failed", "failed", "denied", "ok"]
    assert rows[0].detail["rejected"] == 1 and rows[0].detail["status"] == "rejected"


def test_rls_with_check_is_reported_as_out_of_scope(city, tmp_path, monkeypatch):
    """Defence in depth: without the app's own check, row-level security refuses the write and the
    report names the rule; nothing is written."""
    url, eng = city
    monkeypatch.setattr(roster, "_out_of_scope", lambda conn, codes, area: set())
    p = tmp_path / "r.csv"
    p.write_bytes(_csv([{"楼栋编码": f"{COMM_B}00001", "户号": "103", "姓名": "西五", "身份证号": ident(21)}]))
    before = snapshot(eng)
    app = app_engine(url)
    try:
        rep = load_roster(p, engine=jobs.scoped_engine(app, COMM_A), vault=VAULT)
    finally:
        app.dispose()
    assert rep.status == "rejected"
    rules = [i.rule for i in rep.issues if i.action == "rejected"]
    assert rules == ["out_of_scope"] and "row-level security" in rep.issues[-1].message
    assert snapshot(eng) == before


def test_scoped_engine_sets_scope_in_every_transaction(city):
    url, _eng = city
    app = app_engine(url)
    try:
        scoped = jobs.scoped_engine(app, COMM_A)
        with scoped.connect() as c:  # autobegin
            assert c.execute(text("SELECT current_setting('gisgov.scope', true)")).scalar() == COMM_A
            names = set(c.execute(text("SELECT name FROM resident")).scalars())
            c.commit()
            # a second transaction on the same connection is scoped too
            assert c.execute(text("SELECT current_setting('gisgov.scope', true)")).scalar() == COMM_A
        assert {"东一", "东二"} <= names and "西一" not in names
        with scoped.begin() as c:
            assert (
                c.execute(
                    text("SELECT count(*) FROM household WHERE building_code LIKE :b"), {"b": COMM_B + "%"}
                ).scalar()
                == 0
            )
        with app.connect() as c:  # the app's own engine is untouched: no scope, no rows
            assert c.execute(text("SELECT coalesce(current_setting('gisgov.scope', true), '')")).scalar() == ""
            assert c.execute(text("SELECT count(*) FROM resident")).scalar() == 0
    finally:
        app.dispose()
