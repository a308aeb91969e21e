"""Proposing plans for every community on Dask (gisgov.gridding.dask_batch, `grids propose --all --dask`):
one task per community on a LocalCluster of 2 processes, each reading its community from PostGIS and
saving its own draft, gives the same partitions and grid figures as the single-process path."""

from __future__ import annotations

import json

import pytest
from sample_fixtures import small_city_db
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.gridding import dask_batch

runner = CliRunner()


@pytest.fixture(scope="module")
def city_url(db_factory):
    return small_city_db(db_factory, "gisgov_test_grids_dask", compute=False)


@pytest.fixture
def cli_env(city_url, monkeypatch, tmp_path):
    from gisgov.config import get_settings

    monkeypatch.setenv("GISGOV_DATABASE_URL", city_url)
    monkeypatch.setenv("GISGOV_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def drafts(url: str, versions: dict[str, int]) -> dict[str, tuple[frozenset, dict]]:
    """Per community: the draft's partition (a set of sets of building ids, with each grid's code) and its
    grid figures (households, residents per grid code)."""
    eng = create_engine(url, poolclass=pool.NullPool)
    out = {}
    with eng.connect() as conn:
        for code, v in versions.items():
            rows = conn.execute(
                text(
                    "SELECT g.code, array_agg(a.building_id ORDER BY a.building_id) FROM grid_plan p "
                    "JOIN grid g ON g.plan_id = p.id JOIN grid_assignment a ON a.grid_id = g.id "
                    "WHERE p.community_code = :c AND p.version = :v GROUP BY g.code"
                ),
                {"c": code, "v": v},
            ).all()
            stats = conn.execute(
                text("SELECT stats->'summary' FROM grid_plan WHERE community_code = :c AND version = :v"),
                {"c": code, "v": v},
            ).scalar_one()
            out[code] = (frozenset((g, tuple(ids)) for g, ids in rows), stats)
    eng.dispose()
    return out


def test_dask_proposals_equal_single_process(city_url, cli_env):
    from gisgov.cli.main import app

    args = ["grids", "propose", "--all", "--json", "--method", "heuristic"]
    one = runner.invoke(app, args)
    assert one.exit_code in (0, 1), one.output
    two = runner.invoke(app, [*args, "--dask", "--workers", "2"])
    assert two.exit_code == one.exit_code, two.output
    a1, a2 = json.loads(one.stdout), json.loads(two.stdout)
    assert len(a1) >= 3 and [x["community"] for x in a1] == [x["community"] for x in a2]
    v1 = {x["community"]: x["version"] for x in a1 if x.get("version") is not None}
    v2 = {x["community"]: x["version"] for x in a2 if x.get("version") is not None}
    assert len(v1) >= 3 and v1.keys() == v2.keys()
    assert all(v2[c] == v1[c] + 1 for c in v1)  # each Dask task saved its own new draft
    for x, y in zip(a1, a2, strict=True):
        assert (x["status"], x["method"], x["optimal"]) == (y["status"], y["method"], y["optimal"])
        assert x.get("report", {}).get("summary") == y.get("report", {}).get("summary")
        assert x.get("geojson") == y.get("geojson") and x.get("findings") == y.get("findings")
    d1, d2 = drafts(city_url, v1), drafts(city_url, v2)
    assert sum(len(p) for p, _ in d1.values()) >= 6  # grids, all told
    for c in d1:
        assert d1[c] == d2[c], c  # same grid codes holding the same buildings, same figures

    eng = create_engine(city_url, poolclass=pool.NullPool)
    with eng.connect() as conn:
        batches = conn.execute(
            text("SELECT count(DISTINCT stats->>'dask_batch'), count(stats->>'dask_batch') FROM grid_plan")
        ).one()
    eng.dispose()
    assert tuple(batches) == (1, len(v2))


def test_rerun_task_keeps_its_draft(city_url):
    """A task Dask runs twice (its worker died after the commit) saves one draft, not two."""
    eng = create_engine(city_url, poolclass=pool.NullPool)
    with eng.connect() as conn:
        code = conn.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar_one()
        before = conn.execute(text("SELECT count(*) FROM grid_plan WHERE community_code = :c"), {"c": code}).scalar()
    opts = dask_batch.ProposeOptions(time_limit_s=1.0, method="heuristic")
    db = dask_batch.Database(city_url)
    first = dask_batch.community_task(db, code, opts, "batch-x")
    again = dask_batch.community_task(db, code, opts, "batch-x")
    with eng.connect() as conn:
        after = conn.execute(text("SELECT count(*) FROM grid_plan WHERE community_code = :c"), {"c": code}).scalar()
    eng.dispose()
    assert after == before + 1
    assert again["version"] == first["version"] and "task re-run" in again["notes"][0]
    assert "@" not in repr(db) or "***" in repr(db)


def test_dask_options_need_dask(cli_env):
    from gisgov.cli.main import app

    r = runner.invoke(app, ["grids", "propose", "--all", "--workers", "3"])
    assert r.exit_code == 2
