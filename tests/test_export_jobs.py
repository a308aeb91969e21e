"""Heavy exports as background jobs (issue 9, item 3): 202 + job, progress, owner-only download of
the same (masked) rows as the synchronous export, under the caller's database scope, audited once,
files private and deleted after expiry."""

from __future__ import annotations

import io
import re
import stat
import time
from contextlib import contextmanager

import pandas as pd
import pytest
from auth_helpers import signed_in_client
from ingest_helpers import COMM_A, COMM_B, gdf, load_city
from shapely.geometry import box
from sqlalchemy import create_engine, pool, text

from gisgov.config import Settings
from gisgov.ingest import export as export_mod
from gisgov.ingest.loader import UsageError, load_file
from gisgov.ingest.roster import load_roster
from gisgov.ingest.settings import get_ingest_settings
from gisgov.security.pii import Vault, id_check_digit

SECRET = "export-jobs-secret-key-1"
ID18 = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


def ident(seq: int) -> str:
    first = f"34010419{60 + seq % 40:02d}0101{seq:03d}"
    return first + id_check_digit(first)


@pytest.fixture(scope="module")
def city(db_factory, tmp_path_factory):
    """Two communities; 6 residents in A, 3 in B."""
    url = db_factory.create()
    eng = create_engine(url, poolclass=pool.NullPool)
    tmp = tmp_path_factory.mktemp("city")
    load_city(eng, tmp)
    b = tmp / "b.geojson"
    gdf(
        [
            {"楼栋编码": f"{COMM_A}00001", "geometry": box(117.2030, 31.8050, 117.2035, 31.8055)},
            {"楼栋编码": f"{COMM_B}00001", "geometry": box(117.2251, 31.8101, 117.2259, 31.8107)},
        ]
    ).to_file(b)
    assert load_file(b, "building", engine=eng).status == "loaded"
    rows = [
        {
            "楼栋编码": f"{COMM_A}00001",
            "户号": f"{100 + i}",
            "姓名": f"东{i}",
            "身份证号": ident(i),
            "联系电话": f"1390000{i:04d}",
        }
        for i in range(1, 7)
    ]
    rows += [
        {
            "楼栋编码": f"{COMM_B}00001",
            "户号": f"{200 + i}",
            "姓名": f"西{i}",
            "身份证号": ident(10 + i),
            "联系电话": f"1370000{i:04d}",
        }
        for i in range(1, 4)
    ]
    p = tmp / "roster.csv"
    p.write_bytes(pd.DataFrame(rows).to_csv(index=False).encode("utf-8"))
    assert load_roster(p, engine=eng, vault=Vault.from_settings(Settings(secret_key=SECRET))).status == "loaded"
    yield url, eng
    eng.dispose()


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@contextmanager
def client(url, home, role="admin", scope="", sync_rows=2):
    settings = Settings(secret_key=SECRET, home=home, export_sync_rows=sync_rows)
    with signed_in_client(settings, url, role=role, scope=scope) as c:
        yield c


@pytest.fixture
def keep(monkeypatch):
    def set_(hours):
        monkeypatch.setenv("GISGOV_INGEST_EXPORT_KEEP_HOURS", str(hours))
        get_ingest_settings.cache_clear()

    yield set_
    monkeypatch.undo()
    get_ingest_settings.cache_clear()


def wait(c, status_url: str, limit_s: float = 120) -> dict:
    end = time.monotonic() + limit_s
    while True:
        job = c.get(status_url).json()
        if job["status"] in ("done", "failed") or time.monotonic() > end:
            return job
        time.sleep(0.1)


def audit_rows(eng, actor: str) -> list:
    with eng.connect() as cn:
        return cn.execute(
            text("SELECT result, object, detail FROM audit_log WHERE action = 'export' AND actor = :u ORDER BY id"),
            {"u": actor},
        ).all()


def wait_audit(eng, actor: str, n: int, limit_s: float = 30) -> list:
    end = time.monotonic() + limit_s
    while len(rows := audit_rows(eng, actor)) < n and time.monotonic() < end:
        time.sleep(0.1)
    return rows


def test_resident_export_job_matches_sync_export(city, home):
    url, eng = city
    with client(url, home, sync_rows=5000) as c:
        r = c.get("/api/export", params={"level": "resident", "format": "csv"})
        assert r.status_code == 200
        sync = pd.read_csv(io.BytesIO(r.content), dtype=str, encoding="utf-8-sig")
    assert len(sync) == 9
    n_audit = len(audit_rows(eng, "t_admin_all"))
    with client(url, home, sync_rows=2) as c:
        r = c.get("/api/export", params={"level": "resident", "format": "csv"})
        assert r.status_code == 202, r.text
        body = r.json()
        assert r.headers["location"] == body["status_url"] and body["total"] == 9 and body["status"] == "queued"
        job = wait(c, body["status_url"])
        assert job["status"] == "done", job
        assert job["rows"] == job["total"] == job["done"] == 9 and job["error"] is None
        assert job["expires"] and job["file_url"].endswith(f"/api/export/jobs/{body['job']}/file")
        f = c.get(job["file_url"])
        assert f.status_code == 200 and "resident.csv" in f.headers["content-disposition"]
        got = pd.read_csv(io.BytesIO(f.content), dtype=str, encoding="utf-8-sig")
        pd.testing.assert_frame_equal(got, sync)
        assert set(got["身份证号"]) == {"*" * 18} and not ID18.search(f.text) and not MOBILE.search(f.text)
        # the file is private: 0700 folders, 0600 file
        folder = home.resolve() / "exports" / body["job"]
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((home.resolve() / "exports").stat().st_mode) == 0o700
        assert [stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()] == [0o600]
        # small exports stay synchronous
        r = c.get("/api/export", params={"level": "community", "format": "geojson"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    rows = wait_audit(eng, "t_admin_all", n_audit + 2)[n_audit:]
    job_rows = [x for x in rows if (x.detail or {}).get("job") == body["job"]]
    assert len(job_rows) == 1 and job_rows[0].result == "ok" and job_rows[0].detail["rows"] == 9
    assert job_rows[0].object == "resident"


def test_only_the_owner_downloads(city, home):
    url, _ = city
    with client(url, home, role="community_staff", scope=COMM_A) as a:
        r = a.get("/api/export", params={"level": "resident", "format": "xlsx"})  # resident XLSX: always a job
        assert r.status_code == 202, r.text
        status_url = r.json()["status_url"]
        job = wait(a, status_url)
        assert job["status"] == "done", job
        df = pd.read_excel(io.BytesIO(a.get(job["file_url"]).content), dtype=str)
        # the job ran under the caller's scope: community A only, masked
        assert len(df) == job["rows"] == 6 and df["楼栋编码"].str.startswith(COMM_A).all()
        assert set(df["身份证号"]) == {"*" * 18}
        file_url = job["file_url"]
    with client(url, home, role="community_staff", scope=COMM_B) as b:
        assert b.get(status_url).status_code == 404
        r = b.get(file_url)
        assert r.status_code == 404 and r.json()["error"] == "NotFound"
        assert b.get("/api/export/jobs/not-a-uuid").status_code == 404
        assert b.get("/api/export/jobs/00000000-0000-0000-0000-000000000000/file").status_code == 404
    with client(url, home, role="admin") as adm:
        seen = adm.get(status_url)
        assert seen.status_code == 200 and seen.json()["owner"] == f"t_community_staff_{COMM_A}"
        assert adm.get(file_url).status_code == 404  # admins see the status, only the owner gets the file


def test_expired_files_are_deleted(city, home, keep):
    url, _ = city
    keep(0.0002)  # 0.72 s
    with client(url, home, sync_rows=1) as c:
        r = c.get("/api/export", params={"level": "resident", "format": "gpkg"})
        assert r.status_code == 202
        job = wait(c, r.json()["status_url"])
        assert job["status"] == "done"
        folder = home.resolve() / "exports" / job["id"]
        assert folder.is_dir()
        time.sleep(1.5)
        gone = c.get(job["file_url"])
        assert gone.status_code == 410 and "过期" in gone.json()["detail"]
        again = c.get(job["file_url"].rsplit("/file", 1)[0]).json()
        assert again["expired"] is True and again["file_url"] is None
        # the next job clears expired files
        r = c.get("/api/export", params={"level": "building", "format": "shp"})
        assert r.status_code == 202
        nxt = wait(c, r.json()["status_url"])
        assert nxt["status"] == "done" and not folder.exists()
        assert c.get(nxt["file_url"]).content[:2] == b"PK"


def test_failed_job_says_why(city, home, monkeypatch):
    url, eng = city

    def broken(*a, **k):
        raise UsageError("3 geometries exceed Excel's cell limit; export this level as gpkg or csv")

    monkeypatch.setattr(export_mod, "export_level", broken)
    n = len(audit_rows(eng, "t_admin_all"))
    with client(url, home) as c:
        r = c.get("/api/export", params={"level": "resident", "format": "xlsx"})
        assert r.status_code == 202
        job = wait(c, r.json()["status_url"])
        assert job["status"] == "failed" and "gpkg or csv" in job["error"] and job["file_url"] is None
        r = c.get(f"/api/export/jobs/{job['id']}/file")
        assert r.status_code == 409 and "failed" in r.json()["detail"]
    rows = wait_audit(eng, "t_admin_all", n + 1)[n:]
    assert [x.result for x in rows] == ["error"] and "gpkg or csv" in rows[0].detail["error"]
    assert not (home.resolve() / "exports" / job["id"]).exists()


def test_personal_export_permission_still_checked_first(city, home):
    url, _ = city
    with client(url, home, role="viewer", scope=COMM_A) as v:
        assert v.get("/api/export", params={"level": "resident", "format": "xlsx"}).status_code == 403
        r = v.get("/api/export", params={"level": "building", "format": "csv", "community": COMM_B})
        assert r.status_code == 404
