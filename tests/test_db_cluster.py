"""The embedded cluster: idempotent up, clean down, stale pid file after a crash."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from gisgov.db.cluster import EmbeddedCluster


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    os.chmod(home, 0o755)
    os.chmod(home.parent, 0o755)
    c = EmbeddedCluster(home, db_name="gisgov")
    yield c
    c.down()


def test_up_is_idempotent_and_down_stops(cluster):
    st1 = cluster.up()
    assert st1.running and st1.pid
    st2 = cluster.up()
    assert st2.pid == st1.pid and st2.url == st1.url
    with psycopg.connect(_libpq(st2.url)) as conn:
        version = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
        assert version.startswith("3.")
        # The socket lives inside the data folder, TCP only on loopback.
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        sockdir = conn.execute("SHOW unix_socket_directories").fetchone()[0]
        assert sockdir.startswith(str(cluster.root))
    assert cluster.down() is True
    assert cluster.status().running is False
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_libpq(st2.url), connect_timeout=2)
    assert cluster.down() is False


def test_stale_pid_file_after_crash(cluster):
    st = cluster.up()
    os.kill(st.pid, signal.SIGKILL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(st.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    # The crashed server left postmaster.pid behind; children may linger briefly.
    time.sleep(1.0)
    st2 = cluster.up()
    assert st2.running and st2.pid != st.pid
    with psycopg.connect(_libpq(st2.url)) as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_restart_keeps_the_port_a_running_app_knows(cluster):
    """A running app's pooled connections, closed by the server at shutdown, linger on its port
    (FIN-WAIT-2 / CLOSE-WAIT) until the app notices; after down/up
    the cluster must come back on the same port, or every running app is stranded."""
    st = cluster.up()
    held = [psycopg.connect(_libpq(st.url)) for _ in range(3)]  # a running app's pool
    for conn in held:
        conn.execute("SELECT 1")
    assert cluster.down() is True  # the server closes its ends; the app has not noticed yet
    try:
        st2 = cluster.up()
    finally:
        for conn in held:
            conn.close()
    assert st2.port == st.port and st2.url == st.url
    with psycopg.connect(_libpq(st.url)) as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_password_required_on_tcp(cluster):
    st = cluster.up()
    bad = _libpq(st.url).replace(st.url.split(":")[2].split("@")[0], "wrong-password")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(bad, connect_timeout=3)


def test_running_app_recovers_after_database_restart(cluster):
    """The database stopped and started under a running app: 503 (naming no host or port) while it
    is down, then answers again without restarting the app."""
    from auth_helpers import app_engine
    from fastapi.testclient import TestClient

    from gisgov.api.app import create_app
    from gisgov.config import Settings
    from gisgov.db import migrate

    st = cluster.up()
    migrate.upgrade(st.url)
    eng = app_engine(st.url)
    try:
        with TestClient(create_app(Settings(), engine=eng)) as c:
            assert c.get("/health").status_code == 200
            cluster.down()
            down = c.get("/health")
            assert down.status_code == 503 and str(st.port) not in down.text and "127.0.0.1" not in down.text
            cluster.up()
            assert c.get("/health").status_code == 200
    finally:
        eng.dispose()
