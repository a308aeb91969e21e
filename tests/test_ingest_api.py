"""POST /api/import (sync report, background job with progress, size limit), GET /api/export, template."""

from __future__ import annotations

import io
import json
import zipfile

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.ingest.settings import get_ingest_settings
from gisgov.security.pii import id_check_digit
from ingest_helpers import COMM_A, bowtie, gdf, snapshot, write_gbk_communities, write_streets


@pytest.fixture
def api(db_factory):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    app = create_app(Settings(secret_key="api-test-secret-key-123"), engine=eng)
    with TestClient(app) as c:
        yield c, eng
    eng.dispose()


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


def test_import_sync_reports_and_rejects(api, tmp_path):
    c, eng = api
    r = c.post("/api/import", data={"level": "street"},
               files={"file": ("街道.geojson", write_streets(tmp_path).read_bytes(), "application/geo+json")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "loaded" and body["counts"]["written"] == 1
    job = c.get(body["status_url"]).json()
    assert job["status"] == "loaded" and job["report"]["counts"]["written"] == 1
    shp = write_gbk_communities(tmp_path, cpg=False)
    r = c.post("/api/import", data={"level": "community"},
               files={"file": ("社区.zip", _zip_shapefile(shp), "application/zip")})
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
    r = c.post("/api/import", data={"level": "compound", "repair": "true"}, files={"file": ("bad.gpkg", p.read_bytes())})
    assert r.status_code == 200 and r.json()["n_repaired"] == 1
    assert c.post("/api/import", data={"level": "moon"}, files={"file": ("x.csv", b"a,b\n")}).status_code == 422
    assert c.get("/api/import/00000000-0000-0000-0000-000000000000").status_code == 404


def test_background_job_with_progress_and_size_limit(api, tmp_path, limits):
    c, eng = api
    limits(sync_limit_mb=0)
    r = c.post("/api/import", data={"level": "street"}, files={"file": ("s.geojson", write_streets(tmp_path).read_bytes())})
    assert r.status_code == 202 and r.headers["location"] == r.json()["status_url"]
    job = c.get(r.json()["status_url"]).json()
    assert job["status"] == "loaded" and job["stage"] == "write" and job["done"] == job["total"] == 1
    limits(max_upload_mb=0.0001)
    r = c.post("/api/import", data={"level": "street"}, files={"file": ("s.geojson", b"x" * 1000)})
    assert r.status_code == 413


def test_export_endpoints_and_template(api, tmp_path):
    c, eng = api
    for level, p in (("street", write_streets(tmp_path)), ("community", write_gbk_communities(tmp_path, cpg=True))):
        files = {"file": (p.name, p.read_bytes())} if level == "street" else {"file": ("c.zip", _zip_shapefile(p))}
        assert c.post("/api/import", data={"level": level}, files=files).status_code == 200
    b = tmp_path / "b.geojson"
    gdf([{"楼栋编码": f"{COMM_A}00001", "户数": 3, "geometry": box(117.2030, 31.8050, 117.2035, 31.8055)}]).to_file(b)
    assert c.post("/api/import", data={"level": "building"}, files={"file": ("b.geojson", b.read_bytes())}).status_code == 200
    first = "11010519491231002"
    roster = pd.DataFrame({"楼栋编码": [f"{COMM_A}00001"], "户号": ["1"], "姓名": ["张三"],
                           "身份证号": [first + id_check_digit(first)], "联系电话": ["13912345678"]})
    r = c.post("/api/import", data={"level": "resident"},
               files={"file": ("名册.csv", roster.to_csv(index=False).encode("gbk"))})
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
    assert "张三" in body and first not in body and "139****5678" in body
    assert c.get("/api/export", params={"level": "building", "format": "kml"}).status_code == 422
    r = c.get("/api/template/residents")
    assert r.status_code == 200 and r.content[:2] == b"PK"
