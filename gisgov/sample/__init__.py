"""The synthetic sample city (示例城, 合成数据): generate, write to a GeoPackage, load into PostGIS.

The generator is imported on first use (PEP 562), not with the package: importing a light module
of it (``gisgov.sample.staff``, ``gisgov.sample.names``) does not pull in the generator and, through
its grid-challenge check, :mod:`gisgov.gridding`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gisgov.sample.generate import DEFAULT_SEED, SampleCity, generate_city

__all__ = ["DEFAULT_SEED", "SampleCity", "generate_city"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gisgov.sample import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
