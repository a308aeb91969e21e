"""Rendered tiles kept in memory, per process: a least-recently-used map bounded by bytes.

A tile is cached under its :class:`TileKey`: the layer as asked, the tile, the query that shapes it
(plan, community, category, profile, circle), the caller's area (``Scope``: area prefix and personal
node, and the row-level-security scope), the catalog it was drawn from, and the DATA VERSION: the number
``tile_version.n`` that every committed write to a table drawn in tiles increases (migration 0017). Each
request reads that number (:func:`gisgov.db.data_version.data_version`, one short statement) before looking here, so

- a tile cached before a write is never served after the write committed (its key holds the old number);
- two callers with different areas never share an entry (their scopes differ);
- the number of the entry is the one read in the rendering transaction BEFORE the tile statement, so an
  entry can hold data newer than its number, never older.

Entries of older versions are not looked for again; they age out of the LRU (and :meth:`TileCache.put`
drops them first when a newer version arrives). The cache holds aggregates only (tiles carry no personal
fields), like the answers it replays.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

#: default bound of one process's tile cache (bytes of tile bodies plus a fixed overhead per entry)
DEFAULT_MAX_BYTES = 64 * 2**20
#: accounted per entry besides its body (key, ETag, bookkeeping)
ENTRY_OVERHEAD = 256


@dataclass(frozen=True)
class TileKey:
    """Everything a tile's bytes depend on, except the data version."""

    layer: str
    z: int
    x: int
    y: int
    params: tuple[tuple[str, str], ...]
    area: str
    personal: str
    db_scope: str
    catalog: str = ""

    def etag(self, version: int, body: bytes) -> str:
        h = hashlib.blake2b(digest_size=12)
        for part in (
            self.layer,
            f"{self.z}/{self.x}/{self.y}",
            repr(self.params),
            self.area,
            self.personal,
            self.db_scope,
            self.catalog,
            str(version),
        ):
            h.update(part.encode() + b"\0")
        h.update(body)
        return f'W/"{h.hexdigest()}"'


@dataclass(frozen=True)
class Entry:
    version: int
    body: bytes
    capped: bool
    etag: str

    @property
    def size(self) -> int:
        return len(self.body) + ENTRY_OVERHEAD


class Versioned(Protocol):
    """What the LRU keeps: the data version it was made at, and its size in bytes."""

    @property
    def version(self) -> int: ...

    @property
    def size(self) -> int: ...


class TileCache:
    """Thread-safe LRU of rendered tiles, bounded by ``max_bytes`` (0 disables it). The keys and entries are
    any hashable key and any :class:`Versioned` entry: the API's answer cache (:mod:`gisgov.api.answers`)
    uses it too."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._bytes = 0
        self._newest = 0
        self.hits = 0
        self.misses = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, version: int) -> Any:
        """The entry for ``key`` rendered at ``version`` (or later data), else None."""
        with self._lock:
            e = self._items.get(key)
            if e is None or e.version != version:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return e

    def put(self, key: Hashable, entry: Versioned) -> None:
        if entry.size > self.max_bytes:
            return
        with self._lock:
            if entry.version > self._newest:
                self._newest = entry.version
                self._drop_older(entry.version)
            elif entry.version < self._newest:
                return  # rendered from data already superseded: it could never be asked for again
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._items[key] = entry
            self._bytes += entry.size
            while self._bytes > self.max_bytes:
                _, gone = self._items.popitem(last=False)
                self._bytes -= gone.size

    def _drop_older(self, version: int) -> None:
        stale = [k for k, e in self._items.items() if e.version < version]
        for k in stale:
            self._bytes -= self._items.pop(k).size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
