"""Vector tiles (Mapbox Vector Tile, ``application/vnd.mapbox-vector-tile``) of the catalog's heavy
layers, made by PostGIS: :mod:`gisgov.tiles.coords` (pure tile arithmetic) and :mod:`gisgov.tiles.sql`
(the one statement per tile). Served at ``/tiles/{layer}/{z}/{x}/{y}.pbf``
(:mod:`gisgov.api.routes.tiles`); which layers, which properties and which zooms come from the
``tiles:`` section of ``layers/layer-<name>.yaml`` (:class:`gisgov.layers.Tiles`)."""

from gisgov.tiles.coords import MAX_ZOOM, BadTile, Tile, parse_tile, tiles_covering
from gisgov.tiles.sql import COVERAGE, CoverageAsk, PlanRows, tile_bytes, tile_sql

__all__ = [
    "COVERAGE",
    "MAX_ZOOM",
    "BadTile",
    "CoverageAsk",
    "PlanRows",
    "Tile",
    "parse_tile",
    "tile_bytes",
    "tile_sql",
    "tiles_covering",
]
