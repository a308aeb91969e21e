"""Disk full during an export (issue 14, item 4): the export fails with a clear Chinese + English message,
the partial file is removed (the space comes back), a background job is marked failed with that message
and a direct export answers 507 with the error model; nothing is left behind.

The disk is a real small filesystem: a 256 KiB tmpfs when this process may mount one (root with
CAP_SYS_ADMIN); otherwise the file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes the same writes fail
in the kernel with EFBIG. Either way the writes really fail; nothing is simulated in Python."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import tempfile
import types
from pathlib import Path

import pytest
from auth_helpers import signed_in_client
from security_city import gridded_city_url  # noqa: F401  (fixture)
from sqlalchemy import create_engine, pool, text

from gisgov.config import Settings
from gisgov.ingest import export_jobs

SMALL = 256 * 1024


@contextlib.contextmanager
def small_disk(path: Path):
    """``path`` on a 256 KiB filesystem (tmpfs), or, where mounting is not allowed, under a 256 KiB file
    size limit for this process. Yields how it was made."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        os.geteuid() == 0
        and not os.environ.get("GISGOV_TEST_NO_MOUNT")  # =1: try the file size limit path here too
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SMALL},mode=0755", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    if mounted:
        try:
            yield "tmpfs"
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL, hard))
    try:
        yield "rlimit"
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def owner(gridded_city_url):
    eng = create_engine(gridded_city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.mark.parametrize("fmt", ["geojson", "gpkg"])
def test_background_export_on_a_full_disk_fails_cleanly(owner, tmp_path, fmt):
    who = types.SimpleNamespace(user_id=None, username="disk-test")
    job = export_jobs.create(owner, who, "building", fmt, {"area": "*"}, 0)
    finished: list[tuple] = []
    home = tmp_path / "home"
    with small_disk(home) as how:
        export_jobs.run(
            owner,
            job,
            home,
            "building",
            fmt,
            community=None,
            area="",
            keep_hours=1.0,
            on_finish=lambda *a: finished.append(a),
        )
        left = _files(home)
    with owner.connect() as c:
        status, error, file = c.execute(
            text("SELECT status, error, file FROM export_job WHERE id = :i"), {"i": job}
        ).one()
    assert status == "failed", (how, status, error)
    assert error == export_jobs.DISK_FULL, (how, error)
    assert file is None
    assert left == [], (how, left)  # the partial file is gone, the space is back
    assert finished == [(None, export_jobs.DISK_FULL)]


def test_direct_export_on_a_full_disk_answers_507(gridded_city_url, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    with signed_in_client(Settings(login_rate_per_minute=1000, home=tmp_path / "home"), gridded_city_url) as c:
        assert c.get("/api/export", params={"level": "building", "format": "geojson"}).status_code == 200  # fits
        with small_disk(scratch) as how:
            monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the direct export writes its file
            r = c.get("/api/export", params={"level": "building", "format": "geojson"})
            left = _files(scratch)
            monkeypatch.setattr(tempfile, "tempdir", None)
    assert r.status_code == 507, (how, r.status_code, r.text[:300])
    body = r.json()
    assert body["error"] == "StorageFull" and "磁盘空间不足" in body["message_zh"] and "disk full" in body["message_en"]
    assert left == [], (how, left)
    with create_engine(gridded_city_url, poolclass=pool.NullPool).connect() as conn:
        row = conn.execute(
            text(
                "SELECT result, detail->>'error' FROM audit_log WHERE action = 'export' AND object = 'building' "
                "ORDER BY id DESC LIMIT 1"
            )
        ).one()
    assert tuple(row) == ("error", "disk full")
