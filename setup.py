"""Build hook: put the data files gisgov needs at run time into the package (metadata is in pyproject.toml).

The repository keeps ``layers/``, ``migrations/``, ``alembic.ini`` and ``web/`` at its top level; a wheel
carries copies under ``gisgov/resources/`` where :mod:`gisgov.resources` finds them. Of ``web/node_modules``
(``npm ci``, hundreds of files) only what ``/static/vendor`` serves is copied: the files named in
``gisgov.maps.assets.ASSETS`` and the images/fonts their stylesheets load (the same allowlist the server
applies), plus the lock file's stamp so ``gisgov serve`` sees the assets as current and never runs npm.
A copy at build time (rather than ``package-dir`` mappings with glob patterns) keeps that list in one
place, and fails the build, naming the fix, when the assets were not installed.

The sdist carries the same files (``MANIFEST.in`` for the folders; the vendored subset is added here), so
a wheel built from the sdist is the same as one built from the checkout. Editable installs copy
nothing: the checkout's folders are used in place.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
TARGET = Path("gisgov") / "resources"  # inside the build folder
SKIP = {"__pycache__", "node_modules", ".pytest_cache"}


def _assets():
    sys.path.insert(0, str(HERE))
    try:
        from gisgov.maps import assets  # standard library only
    finally:
        sys.path.remove(str(HERE))
    return assets


def vendored_files(root: Path) -> list[str]:
    """Paths under ``web/node_modules`` (posix, relative) the app serves: every file the server's allowlist
    admits, the stamp of the lock file the assets came from. Raises SystemExit when they are missing."""
    assets = _assets()
    web = root / "web"
    modules = assets.node_modules(web)
    missing = assets.missing_assets(web)
    if missing or not assets.assets_current(web):
        raise SystemExit(
            "web assets not installed from web/package-lock.json "
            f"(missing: {', '.join(missing) or 'none'}; stamp current: {assets.assets_current(web)}): "
            "run `npm ci --prefix web` (or `gisgov assets`) before building"
        )
    allow = assets.vendor_allowlist(web)
    out = set(allow.files)
    for folder in allow.folders:
        for f in (modules / folder).iterdir():
            rel = folder + f.name
            if f.is_file() and allow.allows(rel):
                out.add(rel)
    return [*sorted(out), assets.STAMP]


def resource_files(root: Path) -> list[str]:
    """Every data file (posix path relative to ``root``) that ships, in repository layout."""
    files = ["alembic.ini"]
    for top in ("layers", "migrations", "web"):
        for dirpath, dirnames, filenames in os.walk(root / top):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP and not d.startswith("."))
            rel = Path(dirpath).relative_to(root)
            files += [
                (rel / n).as_posix() for n in sorted(filenames) if not n.startswith(".") and not n.endswith(".pyc")
            ]
    files += [f"web/node_modules/{rel}" for rel in vendored_files(root)]
    return files


class BuildPyWithResources(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # editable install: gisgov.resources reads the checkout in place
        dest = Path(self.build_lib) / TARGET
        for name in ("layers", "migrations", "web", "alembic.ini"):  # stale copies of an earlier build go
            stale = dest / name
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        for rel in resource_files(HERE):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(HERE / rel, target)


class SdistWithVendored(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        for rel in vendored_files(HERE):
            src = HERE / "web" / "node_modules" / rel
            target = Path(base_dir) / "web" / "node_modules" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


setup(cmdclass={"build_py": BuildPyWithResources, "sdist": SdistWithVendored})
