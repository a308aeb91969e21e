"""`gisgov events …` (acting as an account, through the app role) and the synthetic year of events
for the sample/demo city: every generated history follows the state machine, some events are overdue
and some escalated, the seasonal mix shows, and a second run adds nothing."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
import typer
from auth_helpers import app_url, ensure_user
from mini_city import COMM_A, GRID_A1, load_mini_city
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.cli import events as cli_events
from gisgov.events import machine
from gisgov.sample.events import generate_events

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def city(db_factory):
    url = db_factory.create(prefix="gisgov_test_events_cli")
    load_mini_city(url)
    return url


@pytest.fixture(scope="module")
def owner(city):
    eng = create_engine(city, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def generated(owner):
    with owner.begin() as c:
        return generate_events(c, now=NOW, per_grid_month=6.0)


def test_synthetic_year_follows_the_machine(owner, generated):
    assert generated["created"] > 100 and generated["overdue"] > 0 and generated["escalated"] > 0
    with owner.connect() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
        rows = c.execute(
            text("SELECT event_id, from_status, to_status, actor_role, at FROM event_history ORDER BY event_id, at, id")
        ).all()
        evs = {
            r.id: r
            for r in c.execute(
                text(
                    "SELECT id, status, version, synthetic, description, grid_code, "
                    "reported_at, deadline, category FROM event"
                )
            )
        }
    assert all(e.synthetic and e.description.startswith("【模拟】") and e.grid_code for e in evs.values())
    per = Counter()
    last = {}
    for r in rows:
        per[r.event_id] += 1
        if r.from_status is None:
            assert r.to_status == "reported"
        else:
            assert machine.can(r.actor_role, r.from_status, r.to_status), r
            assert last[r.event_id].at <= r.at
        last[r.event_id] = r
    for eid, e in evs.items():
        assert last[eid].to_status == e.status and per[eid] == e.version
        assert e.reported_at <= NOW
    statuses = Counter(e.status for e in evs.values())
    assert statuses["closed"] > statuses["reported"] and statuses["rejected"] >= 1
    # seasonal mix: safety hazards weigh more in Dec-Feb than in Apr-May (catalog season weights)
    winter = [e for e in evs.values() if e.reported_at.month in (12, 1, 2)]
    spring = [e for e in evs.values() if e.reported_at.month in (4, 5)]
    share = lambda es: sum(e.category == "anquan" for e in es) / max(1, len(es))  # noqa: E731
    assert share(winter) > share(spring)
    with owner.begin() as c:  # a second run adds nothing
        assert generate_events(c, now=NOW)["created"] == 0


def invoke(args, city, monkeypatch):
    monkeypatch.setenv("GISGOV_APP_DATABASE_URL", app_url(city))
    monkeypatch.setenv("GISGOV_DATABASE_URL", city)
    from gisgov.config import get_settings

    get_settings.cache_clear()  # the CLI reads settings once per process
    main = typer.Typer()
    cli_events.register(main)
    return CliRunner().invoke(main, ["events", *args])


def test_cli_report_transition_list_stats(city, generated, monkeypatch):
    gw = ensure_user(city, "grid_worker", GRID_A1)
    cs = ensure_user(city, "community_staff", COMM_A)
    viewer = ensure_user(city, "viewer", COMM_A)
    assert invoke(["--help"], city, monkeypatch).exit_code == 0
    for cmd in ("list", "report", "transition", "stats", "show"):
        r = invoke([cmd, "--help"], city, monkeypatch)
        assert r.exit_code == 0 and "--as" in r.output, r.output
    r = invoke(
        [
            "report",
            "--as",
            gw,
            "--lon",
            "117.205",
            "--lat",
            "31.815",
            "--category",
            "anquan",
            "--description",
            "消防通道堵塞",
            "--json",
        ],
        city,
        monkeypatch,
    )
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output)
    assert ev["grid_code"] == GRID_A1 and ev["status"] == "reported"
    eid = str(ev["id"])
    r = invoke(["transition", eid, "--as", gw, "--to", "accepted", "--version", "1"], city, monkeypatch)
    assert r.exit_code == 1 and "网格员" in r.output and "grid_worker" in r.output, r.output
    r = invoke(["transition", eid, "--as", cs, "--to", "accepted", "--version", "1", "--json"], city, monkeypatch)
    assert r.exit_code == 0 and json.loads(r.output)["version"] == 2, r.output
    r = invoke(
        ["transition", eid, "--as", cs, "--to", "dispatched", "--version", "1", "--department", "wangge"],
        city,
        monkeypatch,
    )
    assert r.exit_code == 1 and "version" in r.output, r.output
    r = invoke(["transition", "999999", "--as", cs, "--to", "accepted", "--version", "1"], city, monkeypatch)
    assert r.exit_code == 4
    r = invoke(["list", "--as", cs, "--status", "accepted", "--json"], city, monkeypatch)
    assert r.exit_code == 0 and ev["id"] in [e["id"] for e in json.loads(r.output)["items"]], r.output
    r = invoke(["list", "--as", cs, "--overdue"], city, monkeypatch)
    assert r.exit_code == 0 and "事件 events" in r.output
    r = invoke(["list", "--as", viewer], city, monkeypatch)
    assert r.exit_code == 1
    r = invoke(["stats", "--as", viewer, "--grid", GRID_A1, "--json"], city, monkeypatch)
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["total"] >= 1 and s["trend"] and "reporter" not in r.output
    r = invoke(["stats", "--as", cs], city, monkeypatch)
    assert r.exit_code == 0 and "网格内办结" in r.output
    r = invoke(
        [
            "report",
            "--as",
            "nobody_here",
            "--lon",
            "117.2",
            "--lat",
            "31.8",
            "--category",
            "anquan",
            "--description",
            "x",
        ],
        city,
        monkeypatch,
    )
    assert r.exit_code == 4
    eng = create_engine(city, poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            got = c.execute(
                text(
                    "SELECT result, detail->>'via' LIKE 'cli:%' FROM audit_log "
                    "WHERE action = 'event_transition' AND object = :o ORDER BY id"
                ),
                {"o": f"event:{eid}"},
            ).all()
    finally:
        eng.dispose()
    assert [g[0] for g in got] == ["denied", "ok", "denied"] and all(g[1] for g in got)
