"""Bounded uploads (issue 9, item 5) and broken files (item 6): every refusal is a 4xx with
``{"detail", "error"}`` naming the file and the rule, nothing is written to the database, and zips
are never extracted (read in place through GDAL's /vsizip/ after the directory checks)."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import pyrosm
import pytest
from auth_helpers import signed_in_client
from ingest_helpers import COMM_A, gdf, snapshot, write_gbk_communities, write_streets
from shapely.geometry import box
from sqlalchemy import create_engine, pool, text

from gisgov.config import Settings
from gisgov.ingest import uploads
from gisgov.ingest.readers import read_vector
from gisgov.ingest.settings import get_ingest_settings
from gisgov.ingest.uploads import UploadRejected, inspect_zip, safe_filename

SETTINGS = Settings(secret_key="upload-test-secret-key-1", home=Path(tempfile.mkdtemp(prefix="gisgov-upload-test-")))
PBF = Path(pyrosm.get_data("test_pbf"))


@pytest.fixture(scope="module")
def city(db_factory, tmp_path_factory):
    url = db_factory.create()
    eng = create_engine(url, poolclass=pool.NullPool)
    from gisgov.ingest.loader import load_file

    assert load_file(write_streets(tmp_path_factory.mktemp("city")), "street", engine=eng).status == "loaded"
    yield url, eng
    eng.dispose()


@pytest.fixture
def admin(city):
    url, eng = city
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


@pytest.fixture
def no_extraction(monkeypatch, tmp_path):
    """Zip members are never extracted, and the app's temporary files go to a folder we can measure."""
    calls = []
    monkeypatch.setattr(zipfile.ZipFile, "extract", lambda self, *a, **k: calls.append(a))
    monkeypatch.setattr(zipfile.ZipFile, "extractall", lambda self, *a, **k: calls.append(a))
    tmp = tmp_path / "apptmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield calls, tmp


def _du(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _zip(members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for n, data in members.items():
            z.writestr(n, data)
    return buf.getvalue()


def _zeros_zip(name: str, mb: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open(name, "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(mb):
                f.write(chunk)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """~1.1 MB of zip expanding to 1.15 GB (zeros): beyond the default 1000 MB limit."""
    return _zeros_zip("社区.dbf", 1100)


def _shapefile_zip(shp: Path, rename: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(shp.parent.glob(shp.stem + ".*")):
            z.write(p, (rename or shp.stem) + p.suffix)
    return buf.getvalue()


def _gbk_named_zip(shp: Path) -> bytes:
    """A zip as Windows tools write it: member names in GBK bytes, no UTF-8 flag."""
    gbk = shp.stem.encode("gbk")
    placeholder = "Q" * len(gbk)
    b = bytearray(_shapefile_zip(shp, rename=placeholder))
    assert b.count(placeholder.encode()) >= 2
    b = bytearray(bytes(b).replace(placeholder.encode(), gbk))
    with zipfile.ZipFile(io.BytesIO(bytes(b))) as z:
        assert all(not (i.flag_bits & 0x800) for i in z.infolist())
    return bytes(b)


def _refused(r, status: int, rule: str, name: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["detail"], str) and isinstance(body["error"], str), body
    assert f"rule: {rule}" in body["detail"] and name in body["detail"], body
    return body


# ---------------------------------------------------------------- zips


def test_zip_bomb_refused_before_anything_is_written(admin, bomb, no_extraction):
    c, eng = admin
    calls, tmp = no_extraction
    assert len(bomb) < 2_000_000
    before = snapshot(eng)
    r = c.post("/api/import", data={"level": "community"}, files={"file": ("炸弹.zip", bomb, "application/zip")})
    body = _refused(r, 413, "zip_too_large", "炸弹.zip")
    assert body["error"] == "UploadRejected" and "GISGOV_INGEST_MAX_UNZIPPED_MB" in body["detail"]
    assert calls == [] and _du(tmp) == 0 and not list(tmp.iterdir())  # no member extracted, upload removed
    assert snapshot(eng) == before
    # the reader (CLI path) refuses it the same way, without extracting
    p = tmp / "bomb.zip"
    p.write_bytes(bomb)
    with pytest.raises(UploadRejected) as e:
        read_vector(p)
    assert e.value.rule == "zip_too_large" and e.value.status_code == 413 and calls == []


def test_ratio_members_and_paths(admin, limits, no_extraction):
    c, eng = admin
    calls, tmp = no_extraction
    before = snapshot(eng)
    z = _zeros_zip("a.shp", 40)  # 40 MB of zeros in ~40 kB: ratio ~1000:1
    _refused(
        c.post("/api/import", data={"level": "community"}, files={"file": ("ratio.zip", z)}),
        413,
        "zip_ratio",
        "ratio.zip",
    )
    # a small archive is never refused for its ratio (a DBF of blank padding compresses well)
    assert inspect_zip(_write(tmp / "small.zip", _zeros_zip("a.dbf", 5)), "small.zip")
    limits(max_zip_members=5)
    many = _zip({f"f{i}.txt": b"x" for i in range(6)})
    _refused(
        c.post("/api/import", data={"level": "community"}, files={"file": ("many.zip", many)}),
        413,
        "zip_members",
        "many.zip",
    )
    for member in ("../evil.shp", "/etc/evil.shp", "a/../../evil.shp", "C:/evil.shp", "..\\evil.shp"):
        slip = _zip({member: b"x" * 100})
        _refused(
            c.post("/api/import", data={"level": "community"}, files={"file": ("slip.zip", slip)}),
            422,
            "zip_unsafe_path",
            "slip.zip",
        )
    limits(max_unzipped_mb=0.01)
    big = _zip({"a.geojson": b" " * 20_000})
    _refused(
        c.post("/api/import", data={"level": "community"}, files={"file": ("big.zip", big)}),
        413,
        "zip_too_large",
        "big.zip",
    )
    assert calls == [] and snapshot(eng) == before
    assert [p.name for p in tmp.iterdir()] == ["small.zip"]  # every upload folder removed


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def test_lying_header_refused(admin, tmp_path, no_extraction):
    """A member whose directory entry declares 1 kB but whose deflate stream yields 5 MB: GDAL would
    read all of it; the in-memory check stops at the declared size."""
    c, eng = admin
    calls, _ = no_extraction
    data = b"0" * 5_000_000
    raw = _zip({"roads.geojson": data})
    fake = 1000
    b = bytearray(raw)
    real_crc, fake_crc = zlib.crc32(data), zlib.crc32(data[:fake])
    assert b.count(struct.pack("<I", len(data))) == 2 and b.count(struct.pack("<I", real_crc)) == 2
    b = bytearray(
        bytes(b)
        .replace(struct.pack("<I", len(data)), struct.pack("<I", fake))
        .replace(struct.pack("<I", real_crc), struct.pack("<I", fake_crc))
    )
    with zipfile.ZipFile(io.BytesIO(bytes(b))) as z:
        assert z.infolist()[0].file_size == fake
    before = snapshot(eng)
    _refused(
        c.post("/api/import", data={"level": "street"}, files={"file": ("lie.zip", bytes(b))}),
        413,
        "zip_size_mismatch",
        "lie.zip",
    )
    with pytest.raises(UploadRejected) as e:
        read_vector(_write(tmp_path / "lie.zip", bytes(b)))
    assert e.value.rule == "zip_size_mismatch"
    assert calls == [] and snapshot(eng) == before


def test_zipped_shapefile_with_gbk_names_imports_in_place(city, tmp_path, no_extraction):
    url, eng = city
    calls, tmp = no_extraction
    shp = write_gbk_communities(tmp_path, cpg=False)  # GBK DBF, no .cpg: sniffed from the DBF inside the zip
    with signed_in_client(SETTINGS, url, role="admin") as c:
        for fname, data, dry in (("社区.zip", _shapefile_zip(shp), True), ("gbk.zip", _gbk_named_zip(shp), False)):
            r = c.post(
                "/api/import", data={"level": "community", "dry_run": str(dry).lower()}, files={"file": (fname, data)}
            )
            assert r.status_code == 200, r.text
            rep = r.json()
            assert rep["status"] == ("dry-run" if dry else "loaded") and rep["counts"]["read"] == 2, rep
            assert any("gb18030" in i["value"] for i in rep["issues"] if i["rule"] == "read"), rep["issues"]
    with eng.connect() as cn:
        assert cn.execute(text("SELECT name FROM community ORDER BY code")).scalars().all() == ["东园社区", "西湖社区"]
    t = read_vector(_write(tmp / "gbk.zip", _gbk_named_zip(shp)))
    assert sorted(t.columns["名称"]) == ["东园社区", "西湖社区"]
    assert calls == []


# ---------------------------------------------------------------- broken files: 4xx, never 500


def _truncated_gpkg(tmp: Path) -> bytes:
    p = tmp / "t.gpkg"
    gdf(
        [
            {
                "楼栋编码": f"{COMM_A}{i:05d}",
                "geometry": box(117.203 + i * 1e-4, 31.805, 117.20305 + i * 1e-4, 31.80505),
            }
            for i in range(1, 300)
        ]
    ).to_file(p, driver="GPKG")
    data = p.read_bytes()
    return data[: len(data) // 3]


def _truncated_xlsx(tmp: Path) -> bytes:
    import pandas as pd

    p = tmp / "t.xlsx"
    pd.DataFrame({"a": range(2000)}).to_excel(p, index=False)
    data = p.read_bytes()
    return data[: len(data) // 2]


def _broken_files(tmp: Path) -> list[tuple[str, str, bytes, int, str]]:
    """(level, file name, content, status, rule) of files refused before they are read."""
    rnd = os.urandom(5000)
    return [
        ("osm", "random.osm.pbf", rnd, 422, "file_format"),
        ("osm", "text.osm.pbf", b"this is a text file, not OSM\n" * 20, 422, "file_format"),
        ("osm", "empty.osm.pbf", b"", 422, "file_empty"),
        ("building", "random.gpkg", rnd, 422, "file_format"),
        ("building", "notazip.zip", rnd, 422, "zip_invalid"),
        ("building", "empty.geojson", b"", 422, "file_empty"),
        ("resident", "notxlsx.xlsx", b"name,id\n1,2\n", 422, "file_format"),
        ("resident", "truncated.xlsx", _truncated_xlsx(tmp), 422, "file_format"),
        ("building", "b.kml", b"<kml/>", 415, "file_type"),
        ("osm", "a.geojson", b"{}", 415, "file_type"),
        ("building", "..", b"{}", 415, "file_type"),
    ]


def _read_failures(tmp: Path) -> list[tuple[str, str, bytes]]:
    """(level, file name, content) of files that pass the signature check but cannot be read."""
    return [
        ("osm", "truncated.osm.pbf", PBF.read_bytes()[:20000]),
        ("building", "truncated.gpkg", _truncated_gpkg(tmp)),
        ("building", "garbage.geojson", os.urandom(3000)),
        ("resident", "garbage.csv", b"\x00\x01\x02" * 100),
        ("building", "shapeless.zip", _zip({"readme.txt": b"hello"})),
    ]


def test_broken_files_answer_4xx_with_the_rule(admin, tmp_path):
    c, eng = admin
    before = snapshot(eng)
    for level, name, data, status, rule in _broken_files(tmp_path):
        r = c.post("/api/import", data={"level": level}, files={"file": (name, data)})
        shown = "upload" if name == ".." else name
        body = _refused(r, status, rule, shown)
        assert body["error"] == "UploadRejected", (name, body)
    for level, name, data in _read_failures(tmp_path):
        r = c.post("/api/import", data={"level": level}, files={"file": (name, data)})
        assert r.status_code == 422, (name, r.status_code, r.text[:300])
        body = r.json()
        assert isinstance(body["detail"], str) and name in body["detail"], body
        # a nonsense table (garbage.csv as a roster) is a rejection with a report like any unreadable file
        assert body["error"] == "ImportRejected" and body["status"] == "rejected", body
        bad = [i for i in body["issues"] if i["action"] == "rejected"]
        assert bad and bad[0]["file"] == name and bad[0]["rule"] in ("unreadable", "geom_empty", "file_empty"), body
        assert "/tmp" not in r.text and "gisgov-import-" not in r.text  # no server paths in messages
    assert snapshot(eng) == before
    with eng.connect() as cn:  # nothing left running
        assert cn.execute(text("SELECT count(*) FROM import_job WHERE status IN ('queued', 'running')")).scalar() == 0


def test_broken_files_in_background_jobs_end_rejected(admin, tmp_path, limits):
    c, eng = admin
    limits(sync_limit_mb=0)
    before = snapshot(eng)
    for level, name, data in _read_failures(tmp_path):
        r = c.post("/api/import", data={"level": level}, files={"file": (name, data)})
        assert r.status_code == 202, (name, r.text)
        job = c.get(r.json()["status_url"]).json()
        assert job["status"] == "rejected", (name, job)
        issues = job["report"]["issues"]
        assert any(i["action"] == "rejected" and i["file"] == name for i in issues), issues
    # refused before a job is made, whatever the size
    for level, name, data, status, rule in _broken_files(tmp_path)[:5]:
        _refused(c.post("/api/import", data={"level": level}, files={"file": (name, data)}), status, rule, name)
    assert snapshot(eng) == before
    with eng.connect() as cn:
        assert cn.execute(text("SELECT count(*) FROM import_job WHERE status IN ('queued', 'running')")).scalar() == 0


def test_upload_limit_keeps_its_own_check(admin, limits, no_extraction):
    """Over HTTP the app-wide body budget answers first (413 PayloadTooLarge, before anything is stored);
    the route's own streaming check holds whatever stands in front of it (413 UploadRejected, temporary
    folder removed)."""
    import io

    from starlette.datastructures import UploadFile

    from gisgov.api.routes.ingest import _save_upload
    from gisgov.ingest.uploads import UploadRejected

    c, _eng = admin
    _, tmp = no_extraction
    limits(max_upload_mb=0.001)
    r = c.post("/api/import", data={"level": "street"}, files={"file": ("s.geojson", b"x" * 5000)})
    assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge", r.text
    assert "GISGOV_INGEST_MAX_UPLOAD_MB" in r.json()["detail"]
    assert not list(tmp.iterdir())
    with pytest.raises(UploadRejected) as e:
        _save_upload(UploadFile(io.BytesIO(b"x" * 5000), filename="s.geojson"), 1000)
    assert e.value.status_code == 413 and "rule: upload_too_large" in str(e.value) and "s.geojson" in str(e.value)
    assert not list(tmp.iterdir())


def test_safe_filename():
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\Users\\a\\社区.zip") == "社区.zip"
    assert safe_filename("a\x00b.geojson") == "ab.geojson"
    assert safe_filename("..") == safe_filename("") == safe_filename(None) == "upload"
    long = safe_filename("名" * 200 + ".osm.pbf")
    assert long.endswith(".osm.pbf") and len(long.encode()) <= 120
    assert uploads.upload_suffix("x.OSM.PBF") == ".osm.pbf"


def test_openapi_documents_ingest_status_codes(admin):
    c, _ = admin
    spec = c.get("/openapi.json").json()
    paths = spec["paths"]
    want = {
        ("/api/import", "post"): {"200", "202", "401", "403", "413", "415", "422"},
        ("/api/import/{job_id}", "get"): {"200", "401", "404"},
        ("/api/export", "get"): {"200", "202", "401", "403", "404", "422"},
        ("/api/export/jobs/{job_id}", "get"): {"200", "401", "404"},
        ("/api/export/jobs/{job_id}/file", "get"): {"200", "401", "404", "409", "410"},
    }
    for (path, method), codes in want.items():
        got = paths[path][method]["responses"]
        assert codes <= set(got), (path, set(got))
        for code in codes - {"200", "202"}:
            ref = got[code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[-1] in ("ErrorBody", "ValidationErrorBody"), (path, code, ref)
    props = spec["components"]["schemas"]["ErrorBody"]["properties"]
    assert set(props) == {"detail", "error", "code", "message_zh", "message_en", "details"}
    assert props["detail"]["type"] == "string"
