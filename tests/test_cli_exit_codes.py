"""One table of exit codes for every command (gisgov.cli.common, documented in the README):
0 done, 1 rejected / rule breaks, 2 usage, 3 database unavailable or not migrated, 4 not found.
Each code is checked here with a real command; every failure is one line on stderr, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gisgov.cli import common
from gisgov.config import get_settings
from gisgov.errors import DatabaseUnavailable, Forbidden, GisgovError, InvalidInput, NotFound, PlanConflict

UNKNOWN_COMMUNITY = "999999999999"


def test_the_documented_table():
    assert (common.EXIT_OK, common.EXIT_REJECTED, common.EXIT_USAGE, common.EXIT_DATABASE, common.EXIT_NOT_FOUND) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert sorted(common.EXIT_CODES) == [0, 1, 2, 3, 4]
    assert "gisgov db migrate" in common.EXIT_CODES[3]
    for code in range(5):  # the module's docstring carries the same table
        assert f"\n{code}  " in common.__doc__


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (NotFound("x"), 4),
        (InvalidInput("x"), 2),
        (DatabaseUnavailable("x"), 3),
        (Forbidden("x"), 1),
        (PlanConflict("x"), 1),
        (GisgovError("x"), 1),
    ],
)
def test_domain_errors_map_to_the_table(exc, code):
    assert common.exit_code_for(exc) == code


def _invoke(url: str | None, monkeypatch, tmp_path, *args: str, input: str | None = None):
    if url is None:
        monkeypatch.delenv("GISGOV_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("GISGOV_DATABASE_URL", url)
    monkeypatch.setenv("GISGOV_SECRET_KEY", "exit-codes-test-secret-key-1")
    monkeypatch.setenv("GISGOV_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    from gisgov.cli.main import app

    try:
        return CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "200"})
    finally:
        get_settings.cache_clear()


def _one_error_line(r, *expected: str) -> None:
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("错误 error:"), r.stderr
    for e in expected:
        assert e in lines[0], (e, lines[0])


@pytest.fixture(scope="module")
def migrated(db_factory) -> str:
    return db_factory.create(prefix="gisgov_test_exitcodes")


def test_0_done(migrated, monkeypatch, tmp_path):
    r = _invoke(migrated, monkeypatch, tmp_path, "user", "list")
    assert r.exit_code == 0, r.output


def test_1_rejected_import(migrated, monkeypatch, tmp_path):
    bowtie = [[117.20, 31.80], [117.21, 31.81], [117.21, 31.80], [117.20, 31.81], [117.20, 31.80]]
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"街道编码": "340104001", "街道名称": "蝴蝶街道"},
                "geometry": {"type": "Polygon", "coordinates": [bowtie]},
            }
        ],
    }
    p = tmp_path / "streets.geojson"
    p.write_text(json.dumps(fc, ensure_ascii=False), encoding="utf-8")
    r = _invoke(migrated, monkeypatch, tmp_path, "load", str(p), "--level", "street")
    assert r.exit_code == 1, r.output
    assert "geom_invalid" in r.output and "已拒绝 rejected" in r.output


def test_2_bad_option_through_the_real_command_line():
    r = subprocess.run(
        [sys.executable, "-m", "gisgov.cli.main", "grids", "check", "--community", UNKNOWN_COMMUNITY, "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--bogus" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_2_bad_value_before_the_database_is_asked(monkeypatch, tmp_path):
    # an unreachable database: the usage error is found first
    url = "postgresql+psycopg://nobody:nothing@127.0.0.1:9/none"
    r = _invoke(url, monkeypatch, tmp_path, "coverage", "report", "--code", "340104001", "--measure", "cats")
    assert r.exit_code == 2, r.output
    _one_error_line(r, "measure 'cats'")
    r = _invoke(url, monkeypatch, tmp_path, "grids", "propose", "--method", "magic", "-c", UNKNOWN_COMMUNITY)
    assert r.exit_code == 2, r.output
    _one_error_line(r, "--method")


def test_3_unreachable_database(monkeypatch, tmp_path):
    url = "postgresql+psycopg://nobody:nothing@127.0.0.1:9/none"  # nothing listens on port 9
    for args in (["grids", "plans", "-c", UNKNOWN_COMMUNITY], ["user", "list"], ["audit"]):
        r = _invoke(url, monkeypatch, tmp_path, *args)
        assert r.exit_code == 3, (args, r.output)
        _one_error_line(r, "cannot reach the database")
        assert "nothing" not in r.stderr  # never the password


def test_3_not_migrated(db_factory, monkeypatch, tmp_path):
    url = db_factory.create(migrated=False, prefix="gisgov_test_exitcodes_bare")
    for args in (["grids", "check", "-c", UNKNOWN_COMMUNITY], ["user", "list"]):
        r = _invoke(url, monkeypatch, tmp_path, *args)
        assert r.exit_code == 3, (args, r.output)
        _one_error_line(r, "database not migrated", "`gisgov db migrate`")


def test_4_not_found(migrated, monkeypatch, tmp_path):
    for args, says in (
        (["grids", "check", "-c", UNKNOWN_COMMUNITY], UNKNOWN_COMMUNITY),
        (["grids", "codes", "-c", UNKNOWN_COMMUNITY], UNKNOWN_COMMUNITY),
        (["grids", "map", "-c", UNKNOWN_COMMUNITY, "-o", str(tmp_path / "m.html")], UNKNOWN_COMMUNITY),
        (["user", "disable", "nobody"], "no user nobody"),
        (["events", "show", "1", "--as", "nobody_here"], "nobody_here"),
    ):
        r = _invoke(migrated, monkeypatch, tmp_path, *args)
        assert r.exit_code == 4, (args, r.output)
        _one_error_line(r, says)
