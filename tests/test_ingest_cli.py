"""`gisgov load | export | template` from the command line: exit codes 0 loaded, 1 rejected, 2 usage."""

from __future__ import annotations

import json

import pandas as pd
import pyrosm
import pytest
from ingest_helpers import bowtie, gdf, snapshot, write_gbk_communities, write_streets
from openpyxl import load_workbook
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.cli.main import app
from gisgov.config import get_settings

runner = CliRunner()


@pytest.fixture
def cli_db(db_factory, monkeypatch, tmp_path):
    url = db_factory.create()
    monkeypatch.setenv("GISGOV_DATABASE_URL", url)
    monkeypatch.setenv("GISGOV_SECRET_KEY", "cli-test-secret-key-0001")
    monkeypatch.setenv("GISGOV_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    eng = create_engine(url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()
    monkeypatch.undo()
    get_settings.cache_clear()


def gisgov(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_load_exit_codes_and_report(cli_db, tmp_path):
    r = gisgov("load", write_streets(tmp_path), "--level", "street")
    assert r.exit_code == 0, r.output
    assert "已导入 loaded" in r.output
    shp = write_gbk_communities(tmp_path, cpg=False)
    assert gisgov("load", shp, "--level", "community", "--dry-run").exit_code == 0
    assert gisgov("load", shp, "--level", "community").exit_code == 0
    p = tmp_path / "bad.gpkg"
    gdf([{"小区名称": "蝴蝶苑", "geometry": bowtie(117.210, 31.810, 0.004)}]).to_file(p, driver="GPKG")
    before = snapshot(cli_db)
    rep_json = tmp_path / "report.json"
    r = gisgov("load", p, "--level", "compound", "--report-json", rep_json)
    assert r.exit_code == 1 and "geom_invalid" in r.output and "已拒绝 rejected" in r.output
    assert json.loads(rep_json.read_text(encoding="utf-8"))["n_rejected"] == 1
    assert snapshot(cli_db) == before
    assert gisgov("load", p, "--level", "compound", "--repair").exit_code == 0
    # usage errors
    assert gisgov("load", p, "--level", "planet").exit_code == 2
    assert gisgov("load", p).exit_code == 2
    assert gisgov("load", p, "--level", "compound", "--map", "nonsense").exit_code == 2
    assert gisgov("load", tmp_path / "missing.geojson", "--level", "street").exit_code == 2
    assert gisgov("load", p, "--level", "compound", "--crs", "mars").exit_code == 2


def test_export_and_template(cli_db, tmp_path):
    assert gisgov("load", write_streets(tmp_path), "--level", "street").exit_code == 0
    out = tmp_path / "out" / "街道.csv"
    r = gisgov("export", "--level", "street", "--format", "csv", "--out", out)
    assert r.exit_code == 0, r.output
    assert pd.read_csv(out, dtype=str)["name"].tolist() == ["示范街道"]
    assert gisgov("export", "--level", "street", "--format", "kml").exit_code == 2
    t = tmp_path / "模板.xlsx"
    assert gisgov("template", "residents", "--out", t).exit_code == 0
    assert load_workbook(t)["居民名册"]["A1"].value == "楼栋编码"
    assert gisgov("template", "cats").exit_code == 2


def test_osm_from_the_cli(cli_db):
    pbf = pyrosm.get_data("helsinki_pbf")
    r = gisgov("load", pbf, "--osm")
    assert r.exit_code == 1 and "outside_region" in r.output  # Helsinki is outside the default region (China)
    r = gisgov("load", pbf, "--osm", "--region", "auto")
    assert r.exit_code == 0, r.output
    assert "largest_component_share" in r.output
    with cli_db.connect() as c:
        assert c.execute(text("SELECT count(*) FROM road_edge")).scalar() > 4000
