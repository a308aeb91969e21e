"""Streaming-replica read scaling (issue 14, item 6b): a private primary cluster with a small sample city,
a hot standby made from it with ``pg_basebackup -R`` (:func:`gisgov.db.replica.make_standby`), and a live
server with ``GISGOV_READ_DATABASE_URL`` set to the standby.

Where a read was answered is proven by pausing WAL replay on the standby: a change made on the primary is
then invisible to reads served by the standby, and visible once replay resumes. Both clusters are private
(temporary GISGOV_HOMEs), never the shared test cluster, and are stopped at the end."""

from __future__ import annotations

import hashlib
import os
import time

import httpx
import psycopg
import pytest
from auth_helpers import USER_PASSWORD, app_engine, ensure_user
from sqlalchemy import create_engine, pool, text

from gisgov.api import deps
from gisgov.db import migrate
from gisgov.db.cluster import EmbeddedCluster
from gisgov.db.engine import psycopg_conninfo
from gisgov.db.replica import in_recovery, make_standby, replica_app_url, wait_caught_up
from gisgov.sample import generate_city
from gisgov.sample.load import load_city
from gisgov.security.pii import Vault

SEED = 20240614


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    base = tmp_path_factory.mktemp("replica")
    os.chmod(base, 0o755)
    os.chmod(base.parent, 0o755)
    primary = EmbeddedCluster(base / "primary", db_name="gisgov")
    standby = None
    try:
        url = primary.up().url
        migrate.upgrade(url)
        load_city(url, generate_city(seed=SEED, scale=0.1), vault=Vault(hashlib.sha256(b"replica test").digest()))
        app_engine(url).dispose()  # the app role's login, made on the primary before the copy
        standby = make_standby(primary, base / "replica")
        wait_caught_up(url, standby.url())
        yield primary, standby
    finally:
        if standby is not None:
            standby.down()
        primary.down()


def _owner(url: str):
    return create_engine(url, poolclass=pool.NullPool)


def _sql(url: str, sql: str, **params):
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as c:
        return c.execute(sql, params or None).fetchall()


def _token(http: httpx.Client, user: str) -> dict:
    r = http.post("/api/auth/token", data={"username": user, "password": USER_PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _community_name(hierarchy: dict, code: str) -> str | None:
    def walk(nodes):
        for n in nodes:
            if n.get("code") == code:
                return n.get("name")
            found = walk(n.get("children") or [])
            if found is not None:
                return found
        return None

    return walk(hierarchy.get("streets") or hierarchy.get("children") or [])


def test_replica_helpers(clusters):
    primary, standby = clusters
    assert in_recovery(standby.url()) and not in_recovery(primary.url())
    assert (standby.data_dir / "standby.signal").exists()
    # the app signs in to the replica with its own login, whatever user the read URL names
    app = "postgresql+psycopg://gisgov_app:pw@127.0.0.1:5432/gisgov"
    assert replica_app_url("postgresql://gisgov:su@127.0.0.1:6000/gisgov", app) == (
        "postgresql+psycopg://gisgov_app:pw@127.0.0.1:6000/gisgov"
    )


def test_every_primary_read_is_a_get_route():
    """The rule table names real GET routes (a renamed route must not silently move to the replica)."""
    from gisgov.api.app import create_app
    from gisgov.config import Settings

    app = create_app(Settings())

    def walk(routes):
        for r in routes:
            inner = getattr(r, "original_router", None)
            yield from walk(inner.routes) if inner is not None else [r]

    gets = {r.path for r in walk(app.routes) if "GET" in (getattr(r, "methods", None) or ())}
    assert set(deps.PRIMARY_READS) <= gets, set(deps.PRIMARY_READS) - gets
    assert "/api/hierarchy" in gets and "/api/hierarchy" not in deps.PRIMARY_READS


def test_reads_on_the_replica_writes_on_the_primary(clusters, monkeypatch):
    from live_server import serve

    primary, standby = clusters
    url = primary.url()
    owner = _owner(url)
    with owner.begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        comm, other = [r[0] for r in c.execute(text("SELECT code FROM community ORDER BY code LIMIT 2"))]
        name = c.execute(text("SELECT name FROM community WHERE code = :c"), {"c": comm}).scalar()
        lon, lat = c.execute(
            text("SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM community WHERE code = :c"),
            {"c": comm},
        ).one()
    writer = ensure_user(url, "admin", username="t_writer")
    reader = ensure_user(url, "admin", username="t_reader")
    staff = ensure_user(url, "community_staff", comm)
    wait_caught_up(url, standby.url())
    replica_url = standby.url()
    with (
        serve(url, read_database_url=replica_url, login_rate_per_minute=1000) as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        w, r, s = _token(http, writer), _token(http, reader), _token(http, staff)
        health = http.get("/health").json()
        assert health["replica"]["status"] == "ok" and health["replica"]["in_recovery"] is True
        assert http.get("/api/hierarchy", headers=r).status_code == 200
        time.sleep(0.3)  # a lag gate (GISGOV_READ_MAX_LAG_S) has measured by now: reads on the replica

        # -- reads are answered by the replica: with replay paused, a change on the primary is not seen
        _sql(replica_url, "SELECT pg_wal_replay_pause()")
        try:
            with owner.begin() as c:
                c.execute(text("UPDATE community SET name = name || ' 副本测试' WHERE code = :c"), {"c": comm})
            hier = http.get("/api/hierarchy", headers=r)
            assert hier.status_code == 200
            assert _community_name(hier.json(), comm) == name
            feats = http.get("/api/layers/community", headers=r).json()["features"]
            assert [f["properties"]["name"] for f in feats if f["properties"]["code"] == comm] == [name]

            # -- a write through the API goes to the primary (the replica cannot take it)
            cat = http.get("/api/events/catalog", headers=w).json()
            category = cat["categories"][0]["code"]
            made = http.post(
                "/api/events",
                headers=w,
                json={"lon": lon, "lat": lat, "category": category, "description": "副本测试 replica test"},
            )
            assert made.status_code == 201, made.text
            eid = made.json()["id"]
            assert _sql(url, "SELECT count(*) FROM event WHERE id = %(i)s", i=eid) == [(1,)]
            # the writer reads its own write at once (read-your-writes: its reads stay on the primary)
            assert http.get(f"/api/events/{eid}", headers=w).status_code == 200
            # another account reads from the paused replica: not there yet
            assert http.get(f"/api/events/{eid}", headers=r).status_code == 404
        finally:
            _sql(replica_url, "SELECT pg_wal_replay_resume()")
        wait_caught_up(url, replica_url)
        assert http.get("/health").json()["replica"]["lag_bytes"] == 0
        assert http.get(f"/api/events/{eid}", headers=r).status_code == 200
        assert _community_name(http.get("/api/hierarchy", headers=r).json(), comm) == f"{name} 副本测试"

        # -- the scope applies on the replica: a community account sees its community only
        assert http.get(f"/api/community/{comm}", headers=s).status_code == 200
        assert http.get(f"/api/community/{other}", headers=s).status_code == 404
        codes = {f["properties"]["code"] for f in http.get("/api/layers/community", headers=s).json()["features"]}
        assert codes == {comm}
        bld = http.get("/api/layers/building", headers=s, params={"limit": 1000}).json()["features"]
        assert bld and all(f["properties"]["code"].startswith(comm) for f in bld)

        # -- a GET that writes but is missing from the rules: a clear 503 once, then it runs on the primary
        monkeypatch.delitem(deps.PRIMARY_READS, "/api/audit")
        first = http.get("/api/audit", headers=r)
        assert first.status_code == 503 and first.json()["error"] == "ReplicaWrite", first.text
        assert http.get("/api/audit", headers=r).status_code == 200

        # -- the replica down: reads fall back to the primary (200, never 500), and come back to it later
        monkeypatch.setattr(deps, "REPLICA_RETRY_S", 0.5)
        standby.down()
        try:
            for path in ("/api/hierarchy", "/api/layers/community", f"/api/events/{eid}"):
                got = http.get(path, headers=r)
                assert got.status_code == 200, (path, got.status_code, got.text[:200])
            assert http.get("/health").json()["replica"]["status"] == "unreachable"
            assert (
                http.post(
                    "/api/events", headers=w, json={"lon": lon, "lat": lat, "category": category, "description": "再报"}
                ).status_code
                == 201
            )
        finally:
            standby.start()
        time.sleep(1.2)  # past REPLICA_RETRY_S and the lag gate's measuring interval (its last: unreachable)
        http.get("/api/hierarchy", headers=r)  # renews both
        time.sleep(0.3)
        _sql(replica_url, "SELECT pg_wal_replay_pause()")
        try:
            with owner.begin() as c:
                c.execute(text("UPDATE community SET name = :n WHERE code = :c"), {"n": name, "c": comm})
            hier = http.get("/api/hierarchy", headers=r).json()
            assert _community_name(hier, comm) == f"{name} 副本测试"  # served by the replica again
        finally:
            _sql(replica_url, "SELECT pg_wal_replay_resume()")
    owner.dispose()


# -- routing by measured lag (gisgov.db.replica.LagGate) -------------------------------------------------


def _replay_ts_age(replica_url: str) -> float:
    row = _sql(replica_url, "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())")
    return float(row[0][0]) if row and row[0][0] is not None else float("inf")


def _until(check, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s")


def test_lag_gate_closes_when_replay_falls_behind(clusters):
    from gisgov.db.cluster import free_port
    from gisgov.db.replica import LagGate

    primary, standby = clusters
    url, replica_url = primary.url(), standby.url()
    p_eng, r_eng = _owner(url), _owner(replica_url)
    # a limit of 3 s: wide enough that the write below is measured before it (on a loaded machine too)
    gate = LagGate(p_eng, r_eng, max_lag_s=3.0, ttl_s=0.1, background=False)
    wait_caught_up(url, replica_url)
    assert gate.allows_reads() and gate.reason is None
    assert (gate.last.bytes, gate.last.seconds) == (0, 0.0)
    # an idle primary: the replica's last replayed commit grows old, but nothing is behind
    time.sleep(3.3)
    assert _replay_ts_age(replica_url) > 3.0  # the naive figure would close the gate here
    time.sleep(0.1)
    assert gate.allows_reads() and gate.last.seconds < 0.5, gate.last  # (WAL in flight: a few bytes, ~0 s)

    bytes_gate = LagGate(p_eng, r_eng, max_lag_s=None, max_lag_bytes=64 * 1024, ttl_s=0.1, background=False)
    assert bytes_gate.allows_reads()
    _sql(replica_url, "SELECT pg_wal_replay_pause()")
    try:
        with p_eng.begin() as c:
            c.execute(text("CREATE TABLE IF NOT EXISTS lag_probe (n int)"))
            c.execute(text("INSERT INTO lag_probe SELECT generate_series(1, 20000)"))
        lag = gate.measure()
        assert lag.bytes > 64 * 1024 and lag.seconds < 3.0, lag  # behind, but only just: still open
        assert gate.allows_reads()
        bytes_gate.measure()  # now, not within the 0.1 s its last measurement is kept (timing-free)
        assert not bytes_gate.allows_reads() and "bytes" in bytes_gate.reason
        time.sleep(3.2)
        assert not gate.allows_reads(), gate.last
        assert gate.reason.startswith("replica lag ") and "> 3 s" in gate.reason
        assert gate.status()["reads"] == "primary" and gate.status()["lag_bytes"] > 0
    finally:
        _sql(replica_url, "SELECT pg_wal_replay_resume()")
    wait_caught_up(url, replica_url)
    time.sleep(0.15)
    assert gate.allows_reads() and bytes_gate.allows_reads(), (gate.last, bytes_gate.last)

    # the app's way: never waits on the database; closed until the first measurement, then open
    bg = LagGate(p_eng, r_eng, max_lag_s=1.0, ttl_s=0.1, background=True)
    assert not bg.allows_reads() and bg.reason == "replica lag not measured yet"
    _until(bg.allows_reads)
    # a replica that cannot be reached: lag unknown, closed
    dead = create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/x", poolclass=pool.NullPool)
    off = LagGate(p_eng, dead, ttl_s=0.1, background=False)
    assert not off.allows_reads() and off.reason.startswith("replica lag unknown")
    with p_eng.begin() as c:
        c.execute(text("DROP TABLE lag_probe"))
    for e in (p_eng, r_eng, dead):
        e.dispose()


def test_reads_routed_by_lag_end_to_end(clusters, monkeypatch):
    """The hook the app takes (see LagGate's docstring), applied here around ``deps.primary_reason``: with
    replay paused, reads stay on the replica while its lag is under the limit and move to the primary
    once it is over; after replay resumes they go back to the replica."""
    from live_server import serve

    from gisgov.db.replica import LagGate

    primary, standby = clusters
    url, replica_url = primary.url(), standby.url()
    owner = _owner(url)
    with owner.begin() as c:
        comm = c.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar_one()
        name = c.execute(text("SELECT name FROM community WHERE code = :c"), {"c": comm}).scalar_one()
    reader = ensure_user(url, "admin", username="t_lag_reader")
    original = deps.primary_reason
    gates: list[LagGate] = []

    def primary_reason(request):
        why = original(request)
        replica = getattr(request.app.state, "read_replica", None)
        if why is None and replica is not None:
            gate = getattr(request.app.state, "replica_lag", None)
            if gate is None:
                gate = request.app.state.replica_lag = LagGate(
                    request.app.state.engine, replica.engine, max_lag_s=2.0, ttl_s=0.1
                )
                gates.append(gate)
            if not gate.allows_reads():
                return gate.reason
        return why

    monkeypatch.setattr(deps, "primary_reason", primary_reason)

    def seen(http, h):
        return _community_name(http.get("/api/hierarchy", headers=h).json(), comm)

    wait_caught_up(url, replica_url)
    with (
        serve(url, read_database_url=replica_url, login_rate_per_minute=1000) as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        h = _token(http, reader)
        assert seen(http, h) == name
        _until(lambda: seen(http, h) == name and gates and gates[0].reason is None)  # the gate measured: open
        _sql(replica_url, "SELECT pg_wal_replay_pause()")
        try:
            with owner.begin() as c:
                c.execute(text("UPDATE community SET name = name || ' 延迟' WHERE code = :c"), {"c": comm})
            assert seen(http, h) == name  # lag just begun (< 2 s): still read on the replica
            # the replica stays behind (paused): once its lag passes 2 s, reads go to the primary
            _until(lambda: seen(http, h) == f"{name} 延迟", timeout=8)
            assert gates[0].reason.startswith("replica lag ") and "> 2 s" in gates[0].reason
            assert _sql(replica_url, "SELECT name FROM community WHERE code = %(c)s", c=comm) == [(name,)]
        finally:
            _sql(replica_url, "SELECT pg_wal_replay_resume()")
        wait_caught_up(url, replica_url)
        time.sleep(0.5)
        http.get("/api/hierarchy", headers=h)  # renews the measurement
        time.sleep(0.3)
        # back on the replica: pause again, change again, the reader sees the replica's (older) name
        _sql(replica_url, "SELECT pg_wal_replay_pause()")
        try:
            with owner.begin() as c:
                c.execute(text("UPDATE community SET name = :n WHERE code = :c"), {"n": name, "c": comm})
            assert seen(http, h) == f"{name} 延迟"
        finally:
            _sql(replica_url, "SELECT pg_wal_replay_resume()")
    owner.dispose()
