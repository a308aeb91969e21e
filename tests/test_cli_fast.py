"""The command line starts fast: `gisgov --help` and every command's `--help` import no heavy library
(geopandas, pandas, shapely, numpy, SQLAlchemy, folium, OR-Tools, SciPy …: the commands import what
they need when they run), and `gisgov --help` answers within a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from typer.testing import CliRunner

# Top-level packages no `--help` may import (each costs from 0.1 s to several seconds).
HEAVY = {
    "geopandas",
    "pandas",
    "shapely",
    "numpy",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "folium",
    "ortools",
    "highspy",
    "scipy",
    "openpyxl",
    "pyproj",
    "pyogrio",
    "networkx",
    "fastapi",
    "uvicorn",
    "argon2",
}


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GISGOV_")}
    env["COLUMNS"] = "200"
    return env


def _command_paths() -> list[list[str]]:
    import typer

    from gisgov.cli.main import app

    def walk(cmd, prefix):
        yield prefix
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            yield from walk(sub, [*prefix, name])

    return list(walk(typer.main.get_command(app), []))


def test_importing_the_cli_imports_nothing_heavy():
    code = "import json, sys; import gisgov.cli.main; print(json.dumps(sorted(sys.modules)))"
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    modules = json.loads(r.stdout)
    assert "gisgov.cli.grids" in modules and "gisgov.cli.coverage" in modules  # every command module loaded
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    # -X importtime lines ("import time: self | cumulative | module") say what pulled a heavy module in
    assert heavy == [], [ln for ln in r.stderr.splitlines() if ln.rsplit("|", 1)[-1].strip() in heavy][:20]


# One interpreter renders the help of every command, then lists what got imported.
_EVERY_HELP = """
import json, sys
import typer
from gisgov.cli.main import app

root = typer.main.get_command(app)
paths = []
def walk(cmd, prefix):
    paths.append(prefix)
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        walk(sub, [*prefix, name])
walk(root, [])
failed = []
for path in paths:
    try:
        root.main([*path, "--help"], prog_name="gisgov", standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            failed.append(path)
print("\\n=====", file=sys.stderr)
print(json.dumps({"paths": paths, "failed": failed, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def test_every_help_imports_nothing_heavy():
    r = subprocess.run([sys.executable, "-c", _EVERY_HELP], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stderr.rsplit("=====", 1)[1])
    assert len(out["paths"]) >= 40 and out["failed"] == [], out["failed"]
    assert "Usage: gisgov grids check" in r.stdout and "--community" in r.stdout
    heavy = sorted(m for m in out["modules"] if m.split(".")[0] in HEAVY)
    assert heavy == [], heavy


def test_gisgov_help_within_a_second():
    best = float("inf")
    for _ in range(5):  # best of 5: another process on the machine can slow any single run
        t0 = time.perf_counter()
        r = subprocess.run(
            [sys.executable, "-m", "gisgov.cli.main", "--help"], env=_env(), capture_output=True, text=True, timeout=60
        )
        best = min(best, time.perf_counter() - t0)
        assert r.returncode == 0 and "Usage" in r.stdout, r.stderr
    assert best < 1.0, f"gisgov --help took {best:.2f} s (best of 5)"


def test_every_command_has_help():
    from gisgov.cli.main import app

    paths = _command_paths()
    assert ["db", "up"] in paths and len(paths) >= 40
    for required in (
        ["user", "add"],
        ["user", "list"],
        ["user", "disable"],
        ["user", "passwd"],
        ["user", "role"],
        ["audit"],
        ["db", "url"],
        ["serve"],
        ["demo"],
        ["grids", "codes"],
        ["coverage", "report"],
    ):
        assert required in paths, required
    runner = CliRunner()
    for path in paths:  # in-process: one interpreter start per command would take minutes
        r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0 and "Usage" in r.output, (path, r.output)
    assert "--show-password" in runner.invoke(app, ["db", "url", "--help"], env={"COLUMNS": "200"}).output
    # and once through the real command line
    real = subprocess.run(
        [sys.executable, "-m", "gisgov.cli.main", "user", "add", "--help"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert real.returncode == 0 and "--password-stdin" in real.stdout and "--scope" in real.stdout


_RUN = """
import json, sys
from gisgov.cli.main import app
try:
    app(sys.argv[1:], prog_name="gisgov")
except SystemExit as exc:
    rc = exc.code
print(json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""

# what a command needs to ask for the database (and nothing more before it has answered)
DATABASE_CHECK = {"sqlalchemy", "alembic", "psycopg"}


def test_commands_ask_for_the_database_before_loading_their_libraries(tmp_path):
    """`gisgov coverage report` on an unreachable database says so at once (exit 3), without first
    spending seconds importing geopandas, SciPy or OR-Tools."""
    env = {**_env(), "GISGOV_DATABASE_URL": "postgresql+psycopg://nobody:nothing@127.0.0.1:9/none"}
    for args in (
        ["coverage", "report", "--code", "340104001"],
        ["load", str(tmp_path / "streets.geojson"), "--level", "street"],
        ["grids", "check", "-c", "340104001001"],
        ["grids", "map", "-c", "340104001001", "-o", str(tmp_path / "m.html")],
    ):
        r = subprocess.run([sys.executable, "-c", _RUN, *args], env=env, capture_output=True, text=True, timeout=120)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["rc"] == 3 and "cannot reach the database" in r.stderr, (args, r.stderr)
        heavy = sorted({m.split(".")[0] for m in out["modules"]} & (HEAVY - DATABASE_CHECK))
        assert heavy == [], (args, heavy)
