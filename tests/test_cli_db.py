"""`gisgov db up | status | url | down` through the real command line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


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
    assert url.startswith("postgresql+psycopg://gisgov:") and "@127.0.0.1:" in url
    assert _gisgov(home, "db", "status").returncode == 0
    down = _gisgov(home, "db", "down")
    assert down.returncode == 0 and "已停止 stopped" in down.stdout
    r = _gisgov(home, "db", "status")
    assert r.returncode == 3 and "已停止" in r.stdout


def _command_paths():
    import typer

    from gisgov.cli.main import app

    def walk(cmd, prefix):
        yield prefix
        if getattr(cmd, "commands", None):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*prefix, name])

    return list(walk(typer.main.get_command(app), []))


def test_every_command_has_help(home):
    paths = _command_paths()
    assert ["db", "up"] in paths and len(paths) >= 7
    for path in paths:
        r = _gisgov(home, *path, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, path
