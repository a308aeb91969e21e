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


def test_password_required_on_tcp(cluster):
    st = cluster.up()
    bad = _libpq(st.url).replace(st.url.split(":")[2].split("@")[0], "wrong-password")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(bad, connect_timeout=3)
