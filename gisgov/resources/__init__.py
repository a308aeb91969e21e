"""Where gisgov's data files are: the layer catalog, the migrations (with ``alembic.ini``) and the web pages.

The repository keeps them at its top level (``layers/``, ``migrations/``, ``alembic.ini``, ``web/``).
A built wheel carries copies inside this package (``gisgov/resources/<name>``, put there by
``setup.py`` at build time; of ``web/node_modules`` only the vendored files the pages use), found
with :mod:`importlib.resources`. From a git checkout (editable install, or the checkout on
``sys.path`` as in the tests) the package holds no copies and the repository's folders are used in
place. Settings override each one: ``GISGOV_LAYERS_DIR``, ``GISGOV_MIGRATIONS_DIR``, ``GISGOV_WEB_DIR``.

Only the standard library is imported here (``setup.py`` and ``gisgov.config`` read it).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# What ships in the wheel, by the name it has both in the repository and in this package.
LAYERS = "layers"
MIGRATIONS = "migrations"
WEB = "web"
ALEMBIC_INI = "alembic.ini"
NAMES = (LAYERS, MIGRATIONS, WEB, ALEMBIC_INI)

# The checkout this package was imported from, if it was (…/<checkout>/gisgov/resources/__init__.py).
_CHECKOUT = Path(__file__).resolve().parents[2]


def packaged_root() -> Path:
    """The folder of this package on disk (where a wheel puts the data files)."""
    root = resources.files(__name__)
    if not isinstance(root, Path):  # e.g. imported from a zip file: alembic and StaticFiles need real files
        raise RuntimeError(f"gisgov must be installed as files, not zipped ({root})")
    return root


def checkout_root() -> Path | None:
    """The git checkout gisgov runs from, or None when it runs from an installed wheel."""
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "gisgov" / "resources").is_dir():
        return _CHECKOUT
    return None


def find(name: str) -> Path:
    """Path of one shipped data file or folder (one of :data:`NAMES`): the packaged copy when present
    (installed wheel), else the repository's (checkout). When neither exists the packaged path is
    returned, so the error of whoever reads it names where the file was expected."""
    if name not in NAMES:
        raise ValueError(f"unknown gisgov resource {name!r} (known: {', '.join(NAMES)})")
    packaged = packaged_root() / name
    if packaged.exists():
        return packaged
    checkout = checkout_root()
    if checkout is not None and (checkout / name).exists():
        return checkout / name
    return packaged


def layers_dir() -> Path:
    """Default folder of the declarative layer catalog (``layers/*.yaml``)."""
    return find(LAYERS)


def migrations_dir() -> Path:
    """Default Alembic script folder (``env.py``, ``versions/``)."""
    return find(MIGRATIONS)


def web_dir() -> Path:
    """Default folder of the browser pages and their vendored assets (``node_modules``)."""
    return find(WEB)


def alembic_ini() -> Path:
    """The Alembic configuration file shipped with gisgov."""
    return find(ALEMBIC_INI)
