"""`gisgov staff …` / `gisgov compounds …` (acting as an account, through the app role) on the mini city,
and the sample step on the gridded sample city: gaps and breaches appear, a second run changes nothing."""

from __future__ import annotations

import json

import pytest
import typer
from auth_helpers import app_url, ensure_user
from mini_city import COMM_A, COMPOUND_A, COMPOUND_B, GRID_A1, GRID_A2, load_mini_city
from security_city import gridded_city_url  # noqa: F401  (fixture)
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.cli import governance as cli_gov
from gisgov.governance import compounds as cr
from gisgov.governance import store
from gisgov.governance.settings import get_governance_settings
from gisgov.sample.governance import apply_sample_governance
from gisgov.security.roles import Principal, Role


@pytest.fixture(scope="module")
def city(db_factory):
    url = db_factory.create(prefix="gisgov_test_governance_cli")
    load_mini_city(url)
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        c.execute(
            text(
                "INSERT INTO grid_staff (grid_id, role, name, phone_masked) SELECT id, '网格长', '甲（测试）', "
                "'138****0001' FROM grid WHERE code = :g"
            ),
            {"g": GRID_A1},
        )
    eng.dispose()
    return url


def invoke(args, city, monkeypatch):
    monkeypatch.setenv("GISGOV_APP_DATABASE_URL", app_url(city))
    monkeypatch.setenv("GISGOV_DATABASE_URL", city)
    get_governance_settings.cache_clear()
    from gisgov.config import get_settings

    get_settings.cache_clear()  # the CLI reads settings once per process
    cr.load_rules.cache_clear()
    main = typer.Typer()
    cli_gov.register(main)
    return CliRunner().invoke(main, args)


def test_help(city, monkeypatch):
    for group, cmds in (("staff", ("list", "check", "import", "template")), ("compounds", ("check", "show", "set"))):
        r = invoke([group, "--help"], city, monkeypatch)
        assert r.exit_code == 0 and all(c in r.output for c in cmds), r.output
        for cmd in cmds:
            r = invoke([group, cmd, "--help"], city, monkeypatch)
            assert r.exit_code == 0, r.output


def test_staff_check_list_import(city, monkeypatch, tmp_path):
    cs = ensure_user(city, "community_staff", COMM_A)
    viewer = ensure_user(city, "viewer", COMM_A)
    r = invoke(["staff", "check", "--as", cs, "--json"], city, monkeypatch)
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert [(g["code"], g["gaps"]) for g in d["grids"]] == [
        (GRID_A1, ["no_full_time"]),
        (GRID_A2, ["no_leader", "no_full_time"]),
    ]
    assert invoke(["staff", "check", "--as", cs, "--strict"], city, monkeypatch).exit_code == 1
    r = invoke(["staff", "list", "--as", viewer], city, monkeypatch)
    assert r.exit_code == 0 and "甲（测试）" not in r.output and GRID_A1 in r.output
    r = invoke(["staff", "list", "--as", cs], city, monkeypatch)
    assert r.exit_code == 0 and "甲（测试）" in r.output and "138****0001" in r.output
    tpl = tmp_path / "t.xlsx"
    assert invoke(["staff", "template", str(tpl)], city, monkeypatch).exit_code == 0
    from openpyxl import load_workbook

    wb = load_workbook(tpl)
    ws = wb.worksheets[0]
    ws.append([GRID_A1, "专职网格员", "乙（测试）", "13700000002"])
    ws.append([GRID_A2, "网格长", "丙（测试）", None])
    ws.append([GRID_A2, "专职网格员", "丁（测试）", "137"])
    wb.save(tpl)
    r = invoke(["staff", "import", str(tpl), "--as", cs, "--mode", "append"], city, monkeypatch)
    assert r.exit_code == 1 and "第4行" in r.output and "phone_format" in r.output, r.output
    ws.delete_rows(4)
    ws.append([GRID_A2, "专职网格员", "丁（测试）", "13700000004"])
    wb.save(tpl)
    r = invoke(["staff", "import", str(tpl), "--as", cs, "--mode", "append"], city, monkeypatch)
    assert r.exit_code == 0, r.output
    assert "13700000004" not in r.output
    r = invoke(["staff", "check", "--as", cs, "--strict"], city, monkeypatch)
    assert r.exit_code == 0, r.output
    r = invoke(["staff", "import", str(tpl), "--as", viewer], city, monkeypatch)
    assert r.exit_code == 1


def test_compounds_check_and_set(city, monkeypatch):
    cs = ensure_user(city, "community_staff", COMM_A)
    r = invoke(["compounds", "check", "--as", cs, "--json"], city, monkeypatch)
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["breaches"] == [] and d["communities"][0]["old_ratio"] == 1.0  # 5 households: not large; managed
    r = invoke(
        ["compounds", "set", COMPOUND_A, "--as", cs, "--version", "1", "--property-mode", "none"], city, monkeypatch
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["breaches"] == ["old_no_property"]
    r = invoke(["compounds", "check", "--as", cs, "--strict"], city, monkeypatch)
    assert r.exit_code == 1 and COMPOUND_A in r.output
    r = invoke(["compounds", "set", COMPOUND_A, "--as", cs, "--version", "1", "--party-org"], city, monkeypatch)
    assert r.exit_code == 1
    r = invoke(["compounds", "set", COMPOUND_B, "--as", cs, "--version", "1", "--party-org"], city, monkeypatch)
    assert r.exit_code == 4
    eng = create_engine(city, poolclass=pool.NullPool)
    with eng.connect() as c:
        rows = c.execute(text("SELECT result, detail FROM audit_log WHERE action = 'compound_edit' ORDER BY id")).all()
    eng.dispose()
    assert [r.result for r in rows] == ["ok", "denied", "denied"]
    assert rows[0].detail["changes"] == {"property_mode": ["物业公司", None]} and rows[0].detail["via"].startswith(
        "cli:"
    )


def test_sample_step_leaves_gaps_and_breaches_once(gridded_city_url):
    eng = create_engine(gridded_city_url, poolclass=pool.NullPool)
    admin = Principal(0, "t", "t", Role.admin, "")
    try:
        with eng.begin() as c:
            first = apply_sample_governance(c)
        with eng.begin() as c:
            second = apply_sample_governance(c)
        with eng.begin() as c:
            c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
            ov = store.staff_overview(c, admin, ceiling=500)
            chk = store.compound_check(c, admin, rules=cr.load_rules())
            meta = c.execute(text("SELECT value FROM gisgov_meta WHERE key = 'governance_sample'")).scalar_one()
    finally:
        eng.dispose()
    assert first["no_leader"] and first["no_full_time"] and not set(first["no_leader"]) & set(first["no_full_time"])
    assert first["staff_removed"] == len(first["no_leader"]) + len(first["no_full_time"])  # one of each role per grid
    assert (second["staff_removed"], second["compounds_changed"]) == (0, 0)
    assert (second["no_leader"], second["no_full_time"]) == (first["no_leader"], first["no_full_time"])
    s = ov["summary"]
    assert set(first["no_leader"]) <= set(s["no_leader"]) and set(first["no_full_time"]) <= set(s["no_full_time"])
    found = {r for b in chk["breaches"] for r in b["rules"]}
    assert found == {"large_no_party_org", "large_no_service_point", "old_no_property"}
    assert 0.4 < chk["totals"]["old_ratio"] < 0.9
    assert meta["synthetic"] is True
