"""Every CLI command on a database that is up but not migrated (or migrated to an older revision):
one line saying what to run, exit 3, no traceback; the commands whose job it is migrate instead."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, pool, text

from gisgov.db import migrate

NOT_MIGRATED = "数据库尚未初始化 database not migrated"
NEEDS_UPGRADE = "数据库结构需要升级 database needs upgrade"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GISGOV_")}
    env.update({"COLUMNS": "200", "GISGOV_SECRET_KEY": "unmigrated-test-secret-key-1", **extra})
    return env


def _run_all(commands: list[list[str]], env: dict, stdin: str = "Test-passw0rd-1\nTest-passw0rd-1\n"):
    """Run the commands at once (each is an interpreter start); returns their CompletedProcess-like results."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gisgov.cli.main", *c],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    out = []
    for p in procs:
        so, se = p.communicate(stdin, timeout=180)
        out.append((p.returncode, so, se))
    return out


def _commands(tmp_path) -> list[list[str]]:
    geojson = tmp_path / "streets.geojson"
    geojson.write_text('{"type": "FeatureCollection", "features": []}', encoding="utf-8")
    return [
        ["load", str(geojson), "--level", "street"],
        ["export", "--level", "street", "--out", str(tmp_path / "s.gpkg")],
        ["grids", "plans", "--community", "340104001001"],
        ["grids", "check", "--community", "340104001001"],
        ["coverage", "report", "--code", "340104001"],
        ["user", "add", "someone", "--role", "admin", "--password-stdin"],
        ["user", "list"],
        ["audit"],
    ]


def _assert_one_line(results, commands, expected: str) -> None:
    for (rc, so, se), cmd in zip(results, commands, strict=False):
        assert rc == 3, (cmd, rc, so, se)
        assert "Traceback" not in so + se, (cmd, se)
        lines = [ln for ln in se.splitlines() if ln.strip()]
        assert len(lines) == 1 and expected in lines[0] and "`gisgov db migrate`" in lines[0], (cmd, se)


def test_commands_on_an_unmigrated_database_say_what_to_run(db_factory, tmp_path):
    url = db_factory.create(migrated=False)
    commands = _commands(tmp_path)
    env = _env(GISGOV_DATABASE_URL=url, GISGOV_HOME=str(tmp_path / "home"))
    _assert_one_line(_run_all(commands, env), commands, NOT_MIGRATED)
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.connect() as c:  # nothing was created behind the user's back
            assert c.execute(
                text("SELECT to_regclass('street') IS NULL AND to_regclass('alembic_version') IS NULL")
            ).scalar()
    finally:
        eng.dispose()
    # `gisgov db migrate` is the command whose job it is: it migrates, and then the commands work
    ((rc, so, se),) = _run_all([["db", "migrate"]], env)
    assert rc == 0 and migrate.head() in so, se
    assert migrate.schema_problem(url) is None
    ((rc, so, se),) = _run_all([["user", "list"]], env)
    assert rc == 0 and "Traceback" not in se, se


def test_older_revision_needs_upgrade(db_factory, tmp_path):
    url = db_factory.create(migrated=False)
    migrate.upgrade(url, "0006")
    assert "0006" in migrate.schema_problem(url) and NEEDS_UPGRADE in migrate.schema_problem(url)
    commands = [
        ["audit"],
        ["grids", "plans", "--community", "340104001001"],
        ["load", str(tmp_path / "missing.geojson"), "--level", "street"],
    ]
    env = _env(GISGOV_DATABASE_URL=url, GISGOV_HOME=str(tmp_path / "home"))
    _assert_one_line(_run_all(commands, env), commands, NEEDS_UPGRADE)


def test_unknown_newer_revision_says_upgrade_gisgov(db_factory):
    url = db_factory.create()
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.begin() as c:
            c.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        problem = migrate.schema_problem(url)
        assert problem and "9999_future" in problem and "upgrade gisgov" in problem
    finally:
        eng.dispose()


@pytest.fixture
def fresh_home(tmp_path_factory):
    h = tmp_path_factory.mktemp("fresh-home")
    os.chmod(h, 0o755)
    os.chmod(h.parent, 0o755)
    yield h
    subprocess.run(
        [sys.executable, "-m", "gisgov.cli.main", "db", "down"], env=_env(GISGOV_HOME=str(h)), capture_output=True
    )


def test_fresh_home_db_up_then_load(fresh_home, tmp_path):
    """The issue's case: `gisgov db up` on a fresh home, then `gisgov load file` (it used to end in a
    `relation "street" does not exist` traceback)."""
    env = _env(GISGOV_HOME=str(fresh_home))
    ((rc, _so, se),) = _run_all([["db", "up"]], env)
    assert rc == 0, se
    assert NOT_MIGRATED in se  # `db up` only starts the server, and says what is missing
    commands = _commands(tmp_path)[:3]
    _assert_one_line(_run_all(commands, env), commands, NOT_MIGRATED)
