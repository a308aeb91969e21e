"""Moved to :mod:`gisgov.maps.coverage_map` (rendering lives outside the computation package)."""

from gisgov.maps.coverage_map import build_coverage_map, coverage_map_html

__all__ = ["build_coverage_map", "coverage_map_html"]
