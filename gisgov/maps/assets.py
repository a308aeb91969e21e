"""Front-end assets the app serves itself (no CDN): the npm packages of ``web/package.json``.

``npm ci`` installs them into ``web/node_modules`` exactly as pinned by ``web/package-lock.json``;
the app serves from that folder at :data:`VENDOR_URL` only what the pages use
(:func:`vendor_allowlist`): the files named in :data:`ASSETS` and the images and fonts those files
load themselves (the folders their CSS ``url(...)`` references point into), nothing else: no
``package.json``, lock files, sources, source maps or other packages. :func:`ensure_assets` is
idempotent: a stamp ``node_modules/.gisgov-lock`` holds the SHA-256 of the lock file it was
installed from (the same stamp ``run.sh`` writes), so a second call does nothing.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gisgov.errors import GisgovError

VENDOR_URL = "/static/vendor"
STAMP = ".gisgov-lock"

# name -> path inside web/node_modules. Pages and folium maps refer to assets by these names only.
ASSETS: dict[str, str] = {
    "leaflet_js": "leaflet/dist/leaflet.js",
    "leaflet_css": "leaflet/dist/leaflet.css",
    "jquery_js": "jquery/dist/jquery.min.js",
    "bootstrap_js": "bootstrap/dist/js/bootstrap.bundle.min.js",
    "bootstrap_css": "bootstrap/dist/css/bootstrap.min.css",
    "fontawesome_css": "@fortawesome/fontawesome-free/css/all.min.css",
    "awesome_markers_js": "leaflet.awesome-markers/dist/leaflet.awesome-markers.js",
    "awesome_markers_css": "leaflet.awesome-markers/dist/leaflet.awesome-markers.css",
    "swagger_js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger_css": "swagger-ui-dist/swagger-ui.css",
    "swagger_favicon": "swagger-ui-dist/favicon-32x32.png",
    "geoman_js": "@geoman-io/leaflet-geoman-free/dist/leaflet-geoman.min.js",
    "geoman_css": "@geoman-io/leaflet-geoman-free/dist/leaflet-geoman.css",
    "vectorgrid_js": "leaflet.vectorgrid/dist/Leaflet.VectorGrid.bundled.min.js",
    "html_to_image_js": "html-to-image/dist/html-to-image.js",
}


# File types an asset may load from the folders its CSS points into (images and web fonts only).
LOADED_TYPES = (".png", ".svg", ".gif", ".jpg", ".jpeg", ".webp", ".woff", ".woff2", ".ttf", ".eot")
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]*)\1\s*\)""", re.I)


class AssetsMissing(GisgovError):
    """The vendored front-end assets are not installed."""

    status_code = 503


def asset_url(name: str) -> str:
    """URL path (served by the app) of a named asset."""
    return f"{VENDOR_URL}/{ASSETS[name]}"


def node_modules(web_dir: Path) -> Path:
    return Path(web_dir) / "node_modules"


def css_references(css: str) -> list[str]:
    """Relative URLs a stylesheet loads (``url(...)``), without query or fragment; ``data:``,
    absolute, scheme and ``#fragment`` references are left out."""
    out = []
    for _, ref in _CSS_URL.findall(css):
        ref = ref.strip()
        if not ref or ref.startswith(("#", "/", "%23")) or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", ref):
            continue
        ref = re.split(r"[?#]", ref, maxsplit=1)[0]
        if ref and ref not in out:
            out.append(ref)
    return out


@dataclass(frozen=True)
class VendorAllowlist:
    """What /static/vendor serves: exact files plus image/font files directly inside some folders."""

    files: frozenset[str]
    folders: frozenset[str]  # each ends with '/'

    def allows(self, rel: str) -> bool:
        """True if the path (relative to node_modules, '/'-separated, as requested) may be served."""
        if not rel or "\\" in rel or "\0" in rel:
            return False
        # no empty, '.' or '..' segment, and no dot-file or dot-folder (.package-lock.json, .bin, .gisgov-lock)
        if any(part == "" or part.startswith(".") for part in rel.split("/")):
            return False
        if rel in self.files:
            return True
        folder, _, name = rel.rpartition("/")
        return folder + "/" in self.folders and name.lower().endswith(LOADED_TYPES)


def vendor_allowlist(web_dir: Path) -> VendorAllowlist:
    """The allowlist for the installed assets (recomputed when a stylesheet changes)."""
    root = node_modules(web_dir)
    stamps = []
    for rel in ASSETS.values():
        if rel.endswith(".css"):
            try:
                stamps.append((rel, (root / rel).stat().st_mtime_ns))
            except OSError:
                stamps.append((rel, None))
    return _allowlist(str(root), tuple(stamps))


@lru_cache(maxsize=8)
def _allowlist(root: str, stamps: tuple) -> VendorAllowlist:
    folders = set()
    for rel, mtime in stamps:
        if mtime is None:
            continue
        try:
            css = (Path(root) / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for ref in css_references(css):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), ref))
            if target.startswith("../") or target == ".." or not target.lower().endswith(LOADED_TYPES):
                continue
            folders.add(posixpath.dirname(target) + "/")
    return VendorAllowlist(frozenset(ASSETS.values()), frozenset(folders))


def missing_assets(web_dir: Path) -> list[str]:
    """Names of the assets whose file is absent."""
    root = node_modules(web_dir)
    return [name for name, rel in ASSETS.items() if not (root / rel).is_file()]


def lock_digest(web_dir: Path) -> str:
    return hashlib.sha256((Path(web_dir) / "package-lock.json").read_bytes()).hexdigest()


def assets_current(web_dir: Path) -> bool:
    """True when node_modules was installed from the current lock file and every asset is there."""
    stamp = node_modules(web_dir) / STAMP
    try:
        current = stamp.read_text().strip() == lock_digest(web_dir)
    except OSError:
        return False
    return current and not missing_assets(web_dir)


def ensure_assets(web_dir: Path, *, npm: str | None = None) -> bool:
    """Run ``npm ci`` in ``web_dir`` unless node_modules already matches the lock. True if it ran.

    Lifecycle scripts stay disabled (``web/.npmrc``: ``ignore-scripts=true``; repeated here).
    """
    web_dir = Path(web_dir)
    if not (web_dir / "package-lock.json").is_file():
        raise AssetsMissing(f"前端资源清单缺失 web asset lock file missing: {web_dir / 'package-lock.json'}")
    if assets_current(web_dir):
        return False
    exe = npm or shutil.which("npm")
    if not exe:
        raise AssetsMissing(
            "未找到 npm npm not found: install Node.js and npm (Debian: apt-get install -y nodejs npm), "
            f"then run `npm ci --prefix {web_dir}`"
        )
    proc = subprocess.run(
        [exe, "ci", "--prefix", str(web_dir), "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise AssetsMissing(
            f"前端资源安装失败 npm ci failed ({proc.returncode}) in {web_dir}: {proc.stderr.strip()[-2000:]}"
        )
    gone = missing_assets(web_dir)
    if gone:
        raise AssetsMissing(f"前端资源安装后仍缺文件 npm ci finished but assets are missing: {', '.join(gone)}")
    (node_modules(web_dir) / STAMP).write_text(lock_digest(web_dir) + "\n")
    return True


def require_assets(web_dir: Path) -> None:
    """Raise :class:`AssetsMissing` (HTTP 503) naming the fix when assets are absent."""
    gone = missing_assets(web_dir)
    if gone:
        raise AssetsMissing(
            f"前端资源未安装 web assets not installed ({', '.join(gone[:3])}…): "
            f"run `gisgov assets` or `npm ci --prefix {web_dir}`"
        )


if __name__ == "__main__":  # python -m gisgov.maps.assets [web_dir]
    import sys

    from gisgov.config import get_settings

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else get_settings().web_dir
    ran = ensure_assets(target)
    print(("installed" if ran else "already current") + f": {node_modules(target)}")
