"""`gisgov db up | status | url | down` through the real command line; no command prints a secret."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from sqlalchemy.engine import make_url


def _gisgov(home, *args):
    env = {**os.environ, "GISGOV_HOME": str(home)}
    env.pop("GISGOV_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "gisgov.cli.main", *args], env=env, capture_output=True, text=True)


@pytest.fixture
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("cli-home")
    os.chmod(h, 0o755)
    os.chmod(h.parent, 0o755)
    yield h
    _gisgov(h, "db", "down")


def _secret(home) -> str:
    import json

    return json.loads((home / "pg-state.json").read_text())["password"]


def test_db_lifecycle_from_the_cli(home):
    r = _gisgov(home, "db", "status")
    assert r.returncode == 3 and "未初始化" in r.stdout
    first = _gisgov(home, "db", "up")
    assert first.returncode == 0, first.stderr
    assert "已启动 started" in first.stdout
    second = _gisgov(home, "db", "up")
    assert second.returncode == 0 and "已在运行 already running" in second.stdout
    url = first.stdout.strip().splitlines()[-1]
    assert second.stdout.strip().splitlines()[-1] == url
    assert _gisgov(home, "db", "url").stdout.strip() == url
    # the URL is printed with its password hidden
    assert url.startswith("postgresql+psycopg://gisgov:***@127.0.0.1:")
    assert _gisgov(home, "db", "status").returncode == 0
    down = _gisgov(home, "db", "down")
    assert down.returncode == 0 and "已停止 stopped" in down.stdout
    r = _gisgov(home, "db", "status")
    assert r.returncode == 3 and "已停止" in r.stdout


def test_db_commands_never_print_the_password(home):
    outputs = [
        _gisgov(home, "db", "up"),
        _gisgov(home, "db", "up"),
        _gisgov(home, "db", "status"),
        _gisgov(home, "db", "url"),
        _gisgov(home, "db", "migrate"),
    ]
    assert all(o.returncode == 0 for o in outputs), [o.stderr for o in outputs]
    password = _secret(home)
    assert len(password) >= 24
    for o in outputs:
        assert password not in o.stdout and password not in o.stderr
        assert quote(password, safe="") not in o.stdout + o.stderr
    # only on explicit request, and then a URL that works
    full = _gisgov(home, "db", "url", "--show-password")
    assert full.returncode == 0
    shown = full.stdout.strip()
    assert quote(password, safe="") in shown
    with psycopg.connect(shown.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert make_url(shown).render_as_string(hide_password=True) == outputs[-2].stdout.strip()


def test_cluster_secret_files_are_0600(home):
    assert _gisgov(home, "db", "up").returncode == 0
    state = home / "pg-state.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert _secret(home) in state.read_text()
    root = Path(json.loads(state.read_text())["root"])
    assert not (root / "initpw").exists()  # the initdb password file is removed after use
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    # no file left anywhere under the home or the cluster root that holds the password and is readable by others
    password = _secret(home)
    for base in {home, root}:
        for f in base.rglob("*"):
            if f.is_file() and not f.name.startswith(".s.PGSQL"):
                try:
                    data = f.read_bytes()
                except OSError:
                    continue
                if password.encode() in data:
                    assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
    # an older, too-open state file is tightened when read
    os.chmod(state, 0o644)
    assert _gisgov(home, "db", "status").returncode == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o600


def test_write_private_is_0600_under_a_permissive_umask(tmp_path):
    from gisgov.db.cluster import EmbeddedCluster

    old = os.umask(0)
    try:
        c = EmbeddedCluster(tmp_path / "h")
        c._save_state({"port": 1, "password": "x" * 24, "root": str(tmp_path / "h" / "pg")})
    finally:
        os.umask(old)
    f = tmp_path / "h" / "pg-state.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert not (tmp_path / "h" / "pg-state.tmp").exists()


# `--help` of every command: tests/test_cli_fast.py
