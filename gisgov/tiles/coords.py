"""Tile arithmetic (pure, no database): parsing ``z/x/y`` from a URL, tile bounds, the tiles covering
an area. Tiles are the XYZ scheme of web maps (Web Mercator, EPSG:3857, y counted from the north)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gisgov.errors import GisgovError

MAX_ZOOM = 22
#: half the width of the Web Mercator square in metres
ORIGIN_SHIFT = 20037508.342789244
#: latitude limit of Web Mercator
MAX_LAT = 85.0511287798066
_INT = re.compile(r"^[0-9]{1,8}$")


class BadTile(GisgovError):
    """A tile address that does not exist (z outside 0..22, x or y outside 0..2^z-1, not an integer)."""

    status_code = 400


@dataclass(frozen=True, order=True)
class Tile:
    z: int
    x: int
    y: int

    def __post_init__(self) -> None:
        if not 0 <= self.z <= MAX_ZOOM:
            raise BadTile(f"切片层级超出范围 tile zoom z={self.z} outside 0..{MAX_ZOOM}")
        n = 1 << self.z
        if not (0 <= self.x < n and 0 <= self.y < n):
            raise BadTile(f"切片编号超出范围 tile x={self.x}, y={self.y} outside 0..{n - 1} at zoom {self.z}")

    def __str__(self) -> str:
        return f"{self.z}/{self.x}/{self.y}"

    @property
    def size_m(self) -> float:
        """Width of the tile in Web Mercator metres."""
        return 2 * ORIGIN_SHIFT / (1 << self.z)

    def bounds_3857(self) -> tuple[float, float, float, float]:
        s = self.size_m
        minx = -ORIGIN_SHIFT + self.x * s
        maxy = ORIGIN_SHIFT - self.y * s
        return (minx, maxy - s, minx + s, maxy)

    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        n = 1 << self.z
        west = self.x / n * 360.0 - 180.0
        east = (self.x + 1) / n * 360.0 - 180.0
        north = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * self.y / n))))
        south = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (self.y + 1) / n))))
        return (west, south, east, north)


def parse_tile(z: str | int, x: str | int, y: str | int) -> Tile:
    """A :class:`Tile` from URL parts; :class:`BadTile` (400) for anything but small non-negative
    integers inside the zoom's range."""
    vals = []
    for name, v in (("z", z), ("x", x), ("y", y)):
        s = str(v)
        if not _INT.match(s):
            raise BadTile(f"切片编号须为非负整数 tile {name}={s[:20]!r} is not a non-negative integer")
        vals.append(int(s))
    return Tile(*vals)


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The (x, y) of the tile at zoom ``z`` holding a point (clamped to the map)."""
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(r)) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def tiles_covering(bbox: tuple[float, float, float, float], z: int) -> list[Tile]:
    """Every tile at zoom ``z`` meeting a lon/lat box (west, south, east, north), row by row."""
    west, south, east, north = bbox
    x0, y0 = lonlat_to_tile(west, north, z)
    x1, y1 = lonlat_to_tile(east, south, z)
    return [Tile(z, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def simplify_tolerance_m(tile: Tile, pixels: float, tile_px: int = 256) -> float:
    """Metres (Web Mercator) of ``pixels`` screen pixels on a ``tile_px`` wide tile at the tile's zoom."""
    return pixels * tile.size_m / tile_px
