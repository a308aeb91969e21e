"""Capabilities plug into the CLI, the API and the demo by module name; a missing module is skipped."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from types import ModuleType


def optional_modules(names: Iterable[str]) -> Iterator[ModuleType]:
    """Import each named module that exists. An ImportError *inside* a module is not hidden."""
    for name in names:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
