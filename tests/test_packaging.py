"""Packaging: the data files gisgov needs at run time are found from the checkout, and the built wheel
carries them (layer catalog, migrations, alembic.ini, web pages, exactly the vendored assets the app
serves) and nothing of tests or node_modules beyond that. The full install-and-run check is
``tools/wheel_smoke.sh``."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from gisgov import resources
from gisgov.config import REPO_ROOT, Settings, get_settings
from gisgov.maps.assets import ASSETS, STAMP, node_modules, vendor_allowlist

PKG = "gisgov/resources/"


def test_resources_found_in_the_checkout():
    assert resources.checkout_root() == REPO_ROOT
    assert resources.layers_dir() == REPO_ROOT / "layers"
    assert resources.migrations_dir() == REPO_ROOT / "migrations"
    assert resources.web_dir() == REPO_ROOT / "web"
    assert resources.alembic_ini() == REPO_ROOT / "alembic.ini"
    assert (resources.layers_dir() / "service_circles.yaml").is_file()
    assert list(resources.layers_dir().glob("layer-*.yaml"))
    assert (resources.migrations_dir() / "env.py").is_file()
    assert list((resources.migrations_dir() / "versions").glob("0001_*.py"))
    assert (resources.web_dir() / "login" / "index.html").is_file()
    assert resources.alembic_ini().is_file()
    with pytest.raises(ValueError, match="unknown gisgov resource"):
        resources.find("tests")


def test_settings_default_to_the_resources_and_can_be_overridden(monkeypatch, tmp_path):
    for var in ("GISGOV_WEB_DIR", "GISGOV_LAYERS_DIR", "GISGOV_MIGRATIONS_DIR"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert (s.web_dir, s.layers_dir, s.migrations_dir) == (
        resources.web_dir(),
        resources.layers_dir(),
        resources.migrations_dir(),
    )
    monkeypatch.setenv("GISGOV_WEB_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("GISGOV_LAYERS_DIR", str(tmp_path / "l"))
    monkeypatch.setenv("GISGOV_MIGRATIONS_DIR", str(tmp_path / "m"))
    s = Settings()
    assert (s.web_dir, s.layers_dir, s.migrations_dir) == (tmp_path / "w", tmp_path / "l", tmp_path / "m")


def test_alembic_config_uses_the_migrations_setting(monkeypatch, tmp_path):
    from gisgov.db import migrate

    get_settings.cache_clear()
    try:
        cfg = migrate.alembic_config("postgresql+psycopg://")
        assert Path(cfg.get_main_option("script_location")) == resources.migrations_dir()
        assert cfg.config_file_name == str(resources.alembic_ini())
        assert migrate.head()  # the scripts load: a head revision exists
        monkeypatch.setenv("GISGOV_MIGRATIONS_DIR", str(tmp_path))
        get_settings.cache_clear()
        assert migrate.alembic_config("postgresql+psycopg://").get_main_option("script_location") == str(tmp_path)
    finally:
        monkeypatch.delenv("GISGOV_MIGRATIONS_DIR", raising=False)
        get_settings.cache_clear()


def test_pyproject_license_and_extras():
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = meta["project"]
    assert project["license"] == "Apache-2.0"
    assert {"osm", "test", "bench", "dev"} <= set(project["optional-dependencies"])
    for req in project["dependencies"]:  # every dependency has a floor and a cap
        assert ">=" in req and "<" in req.replace("<=", ""), req


# ---- the built wheel (built once, from the checkout, without touching it) -----------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (node_modules(REPO_ROOT / "web") / STAMP).is_file():
        pytest.fail("web assets not installed (npm ci --prefix web): the wheel cannot be built")
    out = tmp_path_factory.mktemp("wheel")
    # sdist first, then the wheel from the unpacked sdist (as `python -m build` does): that checks the
    # sdist too, and the wheel is built in a temporary folder, not in the checkout's build/
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (found,) = out.glob("gisgov-*.whl")
    return found


@pytest.fixture(scope="module")
def names(wheel) -> list[str]:
    return zipfile.ZipFile(wheel).namelist()


def test_wheel_carries_layers_migrations_and_alembic(names):
    layers = sorted(p.name for p in (REPO_ROOT / "layers").iterdir() if p.is_file())
    assert [n.removeprefix(PKG + "layers/") for n in names if n.startswith(PKG + "layers/")] == layers
    versions = sorted(p.name for p in (REPO_ROOT / "migrations" / "versions").glob("*.py"))
    shipped = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith(PKG + "migrations/versions/"))
    assert shipped == versions and versions
    assert {PKG + "migrations/env.py", PKG + "migrations/script.py.mako", PKG + "alembic.ini"} <= set(names)
    assert PKG + "__init__.py" in names
    assert "gisgov/py.typed" in names
    assert any(n.endswith("/licenses/LICENSE") for n in names)


def test_wheel_carries_the_pages(names):
    pages = {
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "web").rglob("*")
        if p.is_file() and "node_modules" not in p.parts and not p.name.startswith(".")
    }
    shipped = {n.removeprefix("gisgov/resources/") for n in names if n.startswith(PKG + "web/")}
    assert pages <= shipped
    assert "web/login/index.html" in pages and "web/common/gisgov.js" in pages


def test_wheel_vendors_exactly_what_the_app_serves(names):
    web = REPO_ROOT / "web"
    root = node_modules(web)
    allow = vendor_allowlist(web)
    served = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and allow.allows(p.relative_to(root).as_posix())
    }
    prefix = PKG + "web/node_modules/"
    vendored = {n.removeprefix(prefix) for n in names if n.startswith(prefix)}
    assert set(ASSETS.values()) <= vendored
    assert {"leaflet/dist/leaflet.js", "leaflet/dist/leaflet.css", "leaflet/dist/images/layers.png"} <= vendored
    assert vendored == served | {STAMP}  # the lock stamp: `gisgov serve` sees the assets as current
    assert PKG + "web/package-lock.json" in names


def test_wheel_has_no_noise(names):
    noise = [
        n
        for n in names
        if n.startswith(("tests/", "bench/", "tools/", "migrations/", "layers/", "web/"))
        or "__pycache__" in n
        or n.endswith((".pyc", ".map"))
        or ("node_modules/" in n and n.endswith(("package.json", ".md", ".ts", ".scss", ".less")))
        or "/.bin/" in n
    ]
    assert noise == []
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"gisgov", "gisgov-0.1.0.dist-info"}
