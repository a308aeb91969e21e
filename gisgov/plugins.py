"""Capabilities plug into the CLI, the API and the demo by module name.

A named module that does not exist is an error (a typo in a module list must not silently drop a
command group or a router). The only module that may be left out is one whose *dependency* is a
declared optional extra (:data:`OPTIONAL_DEPENDENCIES`) that is not installed.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Iterator
from types import ModuleType

log = logging.getLogger(__name__)

# top-level import name of an optional dependency -> the extra of pyproject.toml that installs it
OPTIONAL_DEPENDENCIES: dict[str, str] = {
    "osmium": "osm",
    "pyrosm": "osm",
}


class PluginModuleNotFound(ImportError):
    """A module named in a plugin list does not exist (usually a typo in the list)."""


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def optional_modules(names: Iterable[str]) -> Iterator[ModuleType]:
    """Import each named module.

    - the module itself (or a package on its path) does not exist: :class:`PluginModuleNotFound`;
    - the module needs an optional dependency (:data:`OPTIONAL_DEPENDENCIES`) that is not
      installed: the module is skipped (logged, naming the extra to install);
    - any other missing module or ImportError inside the module: raised as it is.
    """
    for name in names:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing and (missing == name or name.startswith(missing + ".")):
                raise PluginModuleNotFound(
                    f"模块不存在 module {name!r} not found (is it misspelt in the module list?)", name=name
                ) from exc
            extra = OPTIONAL_DEPENDENCIES.get(_top(missing))
            if extra is None:
                raise
            log.info(
                "skipped %s: optional dependency %s not installed (pip install 'gisgov[%s]')", name, missing, extra
            )
