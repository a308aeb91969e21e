"""The tile cache (gisgov.tiles.cache) and the data version it is keyed with (migration 0017): a tile
cached before a committed write is never served after it; callers with different areas never share a
cached tile; a cache hit and a 304 run no tile SQL."""

from __future__ import annotations

import threading

import mapbox_vector_tile
import pytest
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from sample_fixtures import SAMPLE_VAULT
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError

import gisgov.api.routes.tiles as tiles_route
from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.db.data_version import data_version
from gisgov.sample.load import load_city
from gisgov.tiles.cache import ENTRY_OVERHEAD, Entry, TileCache, TileKey
from gisgov.tiles.coords import lonlat_to_tile

# -- the LRU itself -------------------------------------------------------------------------------------


def _key(i: int, area: str = "") -> TileKey:
    return TileKey("building", 17, i, 0, (), area, "", area or "*")


def _entry(version: int, size: int) -> Entry:
    return Entry(version, b"x" * size, False, f"e{version}-{size}")


def test_lru_is_bounded_by_bytes_and_evicts_the_least_recently_used():
    c = TileCache(max_bytes=3 * (100 + ENTRY_OVERHEAD))
    for i in range(3):
        c.put(_key(i), _entry(1, 100))
    assert len(c) == 3 and c.bytes == 3 * (100 + ENTRY_OVERHEAD)
    assert c.get(_key(0), 1) is not None  # 0 is now the most recent
    c.put(_key(3), _entry(1, 100))
    assert c.get(_key(1), 1) is None  # the least recently used went
    assert all(c.get(_key(i), 1) is not None for i in (0, 2, 3))
    c.put(_key(9), _entry(1, 10 * c.max_bytes))  # larger than the whole cache: not kept
    assert c.get(_key(9), 1) is None and c.bytes <= c.max_bytes


def test_an_entry_answers_only_its_own_data_version():
    c = TileCache()
    c.put(_key(1), _entry(5, 10))
    assert c.get(_key(1), 5) is not None
    assert c.get(_key(1), 6) is None  # the data moved on
    c.put(_key(2), _entry(6, 10))  # a newer version drops the older entries
    assert len(c) == 1 and c.get(_key(1), 5) is None
    c.put(_key(3), _entry(5, 10))  # rendered from superseded data: not kept
    assert c.get(_key(3), 5) is None and len(c) == 1


def test_keys_differ_by_area():
    assert _key(1, "340104001001") != _key(1, "340104001002")
    assert _key(1, "a").etag(1, b"t") != _key(1, "b").etag(1, b"t")
    assert _key(1).etag(1, b"t") != _key(1).etag(2, b"t")


# -- the data version in PostgreSQL ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def city(db_factory, sample_city):
    url = db_factory.create(prefix="gisgov_test_tile_cache")
    load_city(url, sample_city, vault=SAMPLE_VAULT)
    owner = create_engine(url, poolclass=pool.NullPool)
    with owner.begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        a, b = c.execute(text("SELECT code FROM community ORDER BY code LIMIT 2")).scalars().all()
        # a building of community a with two households and a neighbour in the same z=15 tile
        bld = c.execute(
            text(
                "SELECT b.code, ST_X(b.pos) AS lon, ST_Y(b.pos) AS lat FROM building b WHERE b.community_code = :a "
                "AND (SELECT count(*) FROM household h WHERE h.building_code = b.code) >= 2 ORDER BY b.code LIMIT 1"
            ),
            {"a": a},
        ).one()
        other = c.execute(
            text("SELECT code, ST_X(pos) AS lon, ST_Y(pos) AS lat FROM building WHERE community_code = :b LIMIT 1"),
            {"b": b},
        ).one()
    eng = app_engine(url)
    app = create_app(Settings(login_rate_per_minute=1000), engine=eng)
    users = {"admin": ensure_user(url, "admin", ""), "staff_a": ensure_user(url, "community_staff", a)}
    with TestClient(app) as client:
        tokens = {k: bearer_token(client, u) for k, u in users.items()}
        yield {"client": client, "tokens": tokens, "owner": owner, "app_engine": eng, "a": a, "bld": bld,
               "other": other, "app": app}  # fmt: skip
    eng.dispose()
    owner.dispose()


def _version(engine) -> int:
    with engine.connect() as c:
        return data_version(c)


def test_the_version_moves_once_per_committed_write_and_only_at_commit(city):
    owner, code = city["owner"], city["bld"].code
    v0 = _version(owner)
    with owner.connect() as w:
        w.begin()
        w.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        w.execute(text("UPDATE building SET floors = floors WHERE code = :c"), {"c": code})
        w.execute(text("UPDATE building SET floors = floors WHERE code = :c"), {"c": code})
        assert _version(owner) == v0  # not committed yet: others still see the old number
        w.commit()
    assert _version(owner) == v0 + 1  # one bump for the transaction's two statements
    with owner.connect() as w:
        w.begin()
        w.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        w.execute(text("UPDATE household SET building_code = building_code WHERE building_code = :c"), {"c": code})
        w.rollback()
    assert _version(owner) == v0 + 1  # a rolled-back write changes nothing
    with owner.begin() as w:
        w.execute(text("UPDATE coverage_budget SET distance_m = distance_m WHERE false"))
    assert _version(owner) == v0 + 2  # any statement on a tracked table counts, even one that changed no row
    with owner.begin() as w:
        assert w.execute(text("SELECT count(*) FROM tile_version_bump")).scalar_one() == 0
    # the app role reads the number but cannot write it
    with city["app_engine"].connect() as c:
        assert data_version(c) == v0 + 2
        with pytest.raises(DBAPIError):
            c.execute(text("UPDATE tile_version SET n = n + 100"))


class _CountSQL:
    """Counts tile statements run by the route."""

    def __init__(self, monkeypatch):
        self.n = 0
        self._lock = threading.Lock()
        real = tiles_route.tile_bytes

        def counted(*a, **k):
            with self._lock:
                self.n += 1
            return real(*a, **k)

        monkeypatch.setattr(tiles_route, "tile_bytes", counted)


def _get(city, who: str, path: str, **headers):
    return city["client"].get(path, headers={"Authorization": f"Bearer {city['tokens'][who]}", **headers})


def _households(r) -> dict[str, int]:
    assert r.status_code == 200, r.text
    tile = mapbox_vector_tile.decode(r.content) if r.content else {}
    return {
        f["properties"]["code"]: f["properties"]["households"] for f in tile.get("building", {}).get("features", [])
    }


def test_a_cached_tile_is_replayed_until_a_write_then_redrawn(city, monkeypatch):
    sql = _CountSQL(monkeypatch)
    b = city["bld"]
    x, y = lonlat_to_tile(b.lon, b.lat, 15)
    path = f"/tiles/building/15/{x}/{y}.pbf"
    first = _get(city, "admin", path)
    before = _households(first)[b.code]
    n = sql.n
    again = _get(city, "admin", path)
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    assert sql.n == n  # served from the cache: no tile statement
    # a conditional request with the cached tile's ETag: 304, no tile statement either
    assert _get(city, "admin", path, **{"If-None-Match": first.headers["etag"]}).status_code == 304
    assert sql.n == n
    # one of the building's households moves out (another writer, committed)
    with city["owner"].begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        hid = c.execute(text("SELECT min(id) FROM household WHERE building_code = :c"), {"c": b.code}).scalar_one()
        c.execute(text("DELETE FROM resident WHERE household_id = :h"), {"h": hid})
        c.execute(text("DELETE FROM household WHERE id = :h"), {"h": hid})
    after = _get(city, "admin", path)
    assert sql.n == n + 1  # the data version moved: drawn again
    assert _households(after)[b.code] == before - 1
    assert after.headers["etag"] != first.headers["etag"]
    # the old ETag no longer answers 304
    assert _get(city, "admin", path, **{"If-None-Match": first.headers["etag"]}).status_code == 200


def test_callers_with_different_areas_never_share_a_cached_tile(city, monkeypatch):
    sql = _CountSQL(monkeypatch)
    o = city["other"]
    x, y = lonlat_to_tile(o.lon, o.lat, 17)
    path = f"/tiles/building/17/{x}/{y}.pbf"
    everyone = _households(_get(city, "admin", path))
    assert o.code in everyone
    n = sql.n
    mine = _households(_get(city, "staff_a", path))  # the same tile, just cached for the admin
    assert sql.n == n + 1  # drawn for this caller's area, not replayed
    assert o.code not in mine and all(c.startswith(city["a"]) for c in mine)
    mine_again = _households(_get(city, "staff_a", path))
    assert mine_again == mine and sql.n == n + 1  # now cached for this area
    assert o.code in _households(_get(city, "admin", path)) and sql.n == n + 1
    cache = tiles_route.tile_cache(city["app"])
    assert sum(1 for k in cache._items if (k.x, k.y, k.z) == (x, y, 17)) == 2
