"""`gisgov grids propose / check / feasibility` (issue 11, items 16 and 22): --json prints the API's answer;
tables keep codes whole when the output is not a terminal (CliRunner: not a TTY, no COLUMNS); a draft the
validator rejects exits 1 and --activate says why it did not activate it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import shapely
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.config import get_settings
from gisgov.gridding import service
from tests.grid_city import COMMUNITY, block_layout

HH = np.array([120, 90, 150, 110, 80, 130, 100, 140, 95, 105, 125, 85])  # 4×3 compounds, 1,330 households
GRID_CODE = re.compile(r"\b" + COMMUNITY + r"\d{3}\b")


@pytest.fixture(scope="module")
def grid_db(db_factory):
    url = db_factory.create(prefix="gisgov_test_grids_cli")
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as conn:
        block_layout(4, 3, HH, people_per_hh=2.3).load(conn)
    yield url, eng
    eng.dispose()


def run(url: str, monkeypatch, tmp_path, *args: str):
    monkeypatch.setenv("GISGOV_DATABASE_URL", url)
    monkeypatch.setenv("GISGOV_SECRET_KEY", "grids-cli-json-test-secret-1")
    monkeypatch.setenv("GISGOV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COLUMNS", raising=False)
    get_settings.cache_clear()
    from gisgov.cli import grids
    from gisgov.cli.main import app

    grids.console._console = None  # a fresh console per run (it is made on first use)
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        get_settings.cache_clear()


def _active(eng) -> list[int]:
    with eng.connect() as conn:
        return [
            int(v)
            for (v,) in conn.execute(
                text("SELECT version FROM grid_plan WHERE community_code = :c AND status = 'active'"), {"c": COMMUNITY}
            )
        ]


def test_propose_json_is_the_api_answer(grid_db, monkeypatch, tmp_path):
    url, eng = grid_db
    r = run(url, monkeypatch, tmp_path, "grids", "propose", "-c", COMMUNITY, "--json", "--no-save", "--seed", "1")
    assert r.exit_code == 0, r.output + r.stderr
    out = json.loads(r.stdout)  # stdout is the JSON alone (the progress bar is on stderr)
    with eng.begin() as conn:
        api = service.propose_plan(conn, COMMUNITY, seed=1, save=False).to_dict()
    assert set(out) == set(api)
    assert out["status"] == "ok" and out["report"]["ok"] and out["codes"] == api["codes"]
    assert out["geojson"]["type"] == "FeatureCollection"
    assert all(len(c) == 15 and c.startswith(COMMUNITY) for c in out["codes"])


def test_check_and_feasibility_json(grid_db, monkeypatch, tmp_path):
    url, eng = grid_db
    r = run(url, monkeypatch, tmp_path, "grids", "propose", "-c", COMMUNITY, "--activate")
    assert r.exit_code == 0, r.output + r.stderr
    r = run(url, monkeypatch, tmp_path, "grids", "check", "-c", COMMUNITY, "--json")
    assert r.exit_code == 0, r.output + r.stderr
    with eng.connect() as conn:
        assert json.loads(r.stdout) == json.loads(json.dumps(service.check(conn, COMMUNITY), default=str))
        feas = json.loads(
            json.dumps(
                service.feasibility(conn, COMMUNITY, rules={"min_households": 50, "max_households": 100}), default=str
            )
        )
    r = run(
        url, monkeypatch, tmp_path, "grids", "feasibility", "-c", COMMUNITY, "--min", "50", "--max", "100", "--json"
    )
    assert r.exit_code == 1, r.output + r.stderr
    assert json.loads(r.stdout) == feas and feas["feasible"] is False


def test_tables_keep_codes_whole_when_piped(grid_db, monkeypatch, tmp_path):
    """Not a TTY and no COLUMNS: rich used 80 columns and cut the 15-digit grid codes (34010400100…)."""
    url, _ = grid_db
    r = run(url, monkeypatch, tmp_path, "grids", "propose", "-c", COMMUNITY, "--no-save")
    assert r.exit_code == 0, r.output + r.stderr
    with_codes = GRID_CODE.findall(r.stdout)
    assert len(set(with_codes)) >= 3, r.stdout
    assert "…" not in r.stdout
    assert COMMUNITY in r.stdout  # the summary's community column
    r = run(url, monkeypatch, tmp_path, "grids", "check", "-c", COMMUNITY)
    assert r.exit_code == 0, r.output + r.stderr
    assert len(set(GRID_CODE.findall(r.stdout))) >= 3 and "…" not in r.stdout, r.stdout


def test_a_draft_in_pieces_exits_1_and_is_not_activated(grid_db, monkeypatch, tmp_path):
    """The drafted grids come out in pieces (the territory defect seen on real data, simulated on the
    grid polygons): propose says so, exits 1, and --activate says why it did not activate."""
    url, eng = grid_db
    from gisgov.gridding import propose as mod

    real = mod.grid_polygons

    def pieces(ctx, atom_grid, k):
        polys = real(ctx, atom_grid, k)
        if k >= 2:
            x0, y0, x1, _ = ctx.boundary.bounds
            west = polys[0].centroid.x < (x0 + x1) / 2
            far = shapely.box(x1 - 10, y0, x1, y0 + 10) if west else shapely.box(x0, y0, x0 + 10, y0 + 10)
            polys = [shapely.union(q, far) if i == 0 else shapely.difference(q, far) for i, q in enumerate(polys)]
        return polys

    before = _active(eng)
    monkeypatch.setattr(mod, "grid_polygons", pieces)
    r = run(url, monkeypatch, tmp_path, "grids", "propose", "-c", COMMUNITY, "--activate", "--seed", "2")
    assert r.exit_code == 1, r.output + r.stderr
    assert "rule_breaks" in r.stdout and "island" in r.stdout
    assert "not activated" in r.stdout and "island" in r.stdout.split("not activated", 1)[1]
    assert _active(eng) == before  # nothing activated
    r = run(url, monkeypatch, tmp_path, "grids", "propose", "-c", COMMUNITY, "--activate", "--json", "--seed", "2")
    assert r.exit_code == 1, r.output + r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "rule_breaks" and out["activated"] is False and "island" in out["not_activated"]
    assert any(f["rule"] == "island" for f in out["findings"])
    assert _active(eng) == before
