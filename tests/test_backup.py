"""Backup and restore (gisgov db backup / restore): the sample city is dumped from the test server and
restored into a second, freshly initialised cluster; row counts and geometry checksums must agree, a
damaged dump, a non-empty target and a different key are refused, and nothing is half restored."""

from __future__ import annotations

import os
import shutil

import psycopg
import pytest
from sqlalchemy.engine import make_url

from gisgov.db import backup as bk
from gisgov.db.cluster import EmbeddedCluster, find_bindir
from gisgov.errors import InvalidInput

KEY = "fp-sample-0001"


@pytest.fixture(scope="module")
def fresh_cluster(tmp_path_factory):
    """A second PostgreSQL cluster with nothing in it: no gisgov roles, no databases but the defaults."""
    home = tmp_path_factory.mktemp("restore-home")
    os.chmod(home, 0o755)
    os.chmod(home.parent, 0o755)
    c = EmbeddedCluster(home, db_name="postgres")
    c.init()
    c.start()
    yield c
    c.down()


def _new_db(cluster: EmbeddedCluster, name: str) -> str:
    with psycopg.connect(bk.libpq_url(cluster.url("postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
    return make_url(cluster.url("postgres")).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def dumped(sample_city_url, tmp_path_factory):
    out = tmp_path_factory.mktemp("backups")
    dump, manifest = bk.backup(sample_city_url, out, bindir=find_bindir(), key_fingerprint=KEY)
    return dump, manifest


def _direct(url: str) -> bk.Snapshot:
    with psycopg.connect(bk.libpq_url(url)) as conn:
        return bk.snapshot(conn.cursor())


def test_backup_writes_dump_and_manifest_that_describe_the_database(sample_city_url, dumped):
    dump, manifest = dumped
    assert dump.is_file() and bk.manifest_path(dump).is_file()
    assert not list(dump.parent.glob("*.part"))
    assert manifest.dump_sha256 == bk.sha256_file(dump)
    again = bk.Manifest.read(bk.manifest_path(dump))
    assert again == manifest
    # the manifest counts what the database holds (nobody writes to the sample city)
    assert manifest.snapshot.differences(_direct(sample_city_url)) == []
    assert manifest.tables["building"] > 2000 and manifest.tables["resident"] > 1000
    assert manifest.geometry["community.geom"] and manifest.geometry["building.geom"]
    assert manifest.alembic_revision and manifest.postgis
    assert manifest.key_fingerprint == KEY


def test_restore_into_a_fresh_cluster_gives_the_same_rows_and_geometry(fresh_cluster, dumped):
    dump, manifest = dumped
    target = _new_db(fresh_cluster, "restored")
    rep = bk.restore(dump, target, bindir=find_bindir(), key_fingerprint=KEY, app_role="gisgov_app")
    assert rep.tables == len(manifest.tables)
    assert rep.rows == sum(manifest.tables.values())
    assert rep.created_roles == ["gisgov_app"]  # the fresh cluster had no app role
    got = _direct(target)
    assert got.differences(manifest.snapshot) == []
    # residents' encrypted columns came back byte for byte
    with psycopg.connect(bk.libpq_url(target)) as conn:
        n = conn.execute("SELECT count(*) FROM resident WHERE id_cipher IS NOT NULL").fetchone()[0]
    assert n == manifest.tables["resident"]
    # the app role has its grants, and still cannot bypass row-level security
    with psycopg.connect(bk.libpq_url(target)) as conn:
        ok = conn.execute("SELECT has_table_privilege('gisgov_app', 'building', 'SELECT')").fetchone()[0]
        byp = conn.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = 'gisgov_app'").fetchone()[0]
    assert ok is True and byp is False


def test_damaged_dump_is_refused_and_nothing_restored(fresh_cluster, dumped, tmp_path):
    dump, _ = dumped
    bad = tmp_path / dump.name
    shutil.copy(dump, bad)
    shutil.copy(bk.manifest_path(dump), bk.manifest_path(bad))
    with open(bad, "r+b") as f:
        f.seek(bad.stat().st_size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    target = _new_db(fresh_cluster, "damaged")
    with pytest.raises(InvalidInput, match=r"backup_checksum"):
        bk.restore(bad, target, bindir=find_bindir(), key_fingerprint=KEY, app_role="gisgov_app")
    assert _direct(target).tables == {}


def test_missing_manifest_is_named(dumped, tmp_path):
    dump, _ = dumped
    lone = tmp_path / dump.name
    shutil.copy(dump, lone)
    with pytest.raises(InvalidInput, match=r"backup_manifest"):
        bk.verify_file(lone)


def test_non_empty_target_refused_unless_replace(fresh_cluster, dumped):
    dump, manifest = dumped
    target = _new_db(fresh_cluster, "twice")
    bk.restore(dump, target, bindir=find_bindir(), key_fingerprint=KEY, app_role="gisgov_app")
    with psycopg.connect(bk.libpq_url(target), autocommit=True) as conn:
        conn.execute("DELETE FROM event")  # a change the second restore must undo
    with pytest.raises(InvalidInput, match=r"restore_target_empty"):
        bk.restore(dump, target, bindir=find_bindir(), key_fingerprint=KEY, app_role="gisgov_app")
    rep = bk.restore(dump, target, bindir=find_bindir(), key_fingerprint=KEY, app_role="gisgov_app", replace=True)
    assert rep.rows == sum(manifest.tables.values())
    assert _direct(target).differences(manifest.snapshot) == []


def test_other_key_refused_unless_told(fresh_cluster, dumped):
    dump, _ = dumped
    target = _new_db(fresh_cluster, "otherkey")
    with pytest.raises(InvalidInput, match=r"backup_key"):
        bk.restore(dump, target, bindir=find_bindir(), key_fingerprint="another", app_role="gisgov_app")
    assert _direct(target).tables == {}
    rep = bk.restore(
        dump, target, bindir=find_bindir(), key_fingerprint="another", app_role="gisgov_app", ignore_key=True
    )
    assert rep.rows > 0


def test_snapshot_differences_name_table_and_column():
    a = bk.Snapshot({"grid": 3, "building": 10}, {"grid.geom": "aa"})
    b = bk.Snapshot({"grid": 3, "building": 9}, {"grid.geom": "bb"})
    d = a.differences(b)
    assert any("building" in x and "10" in x and "9" in x for x in d)
    assert any("grid.geom" in x for x in d)
    assert a.differences(a) == []


def test_cli_backup_then_restore(sample_city_url, fresh_cluster, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gisgov.cli.main import app
    from gisgov.config import get_settings

    monkeypatch.setenv("GISGOV_DATABASE_URL", sample_city_url)
    monkeypatch.setenv("GISGOV_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    runner = CliRunner()
    r = runner.invoke(app, ["db", "backup", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "secret.key" in r.output and "fingerprint" in r.output
    [dump] = (tmp_path / "b").glob("*.dump")
    target = _new_db(fresh_cluster, "viacli")
    r = runner.invoke(app, ["db", "restore", str(dump), "--into", target])
    assert r.exit_code == 0, r.output
    assert "restored and verified" in r.output
    # the same dump again into the now non-empty target: refused, exit 2 (bad input), one line
    r = runner.invoke(app, ["db", "restore", str(dump), "--into", target])
    assert r.exit_code == 2 and "restore_target_empty" in r.output
