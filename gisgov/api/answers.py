"""Answers of the leaders' read routes kept in memory, per worker process, by the committed data version.

The dashboard's statistics, the hierarchy tree, layer pages, the map page and the coverage catalog are the same for
every account with the same role and area until a write commits, yet cost 50–450 ms each to compute on
the sample city (the small-cell suppression of a viewer's city page most). Under load (bench/load_locust.py)
they were most of the work. Here an answer is kept under

- the route's path and its query parameters (sorted),
- the caller's role and area (``Principal.role``, ``scope_code``: together they fix everything an answer
  shows — the rows row-level security lets through, exact or suppressed special groups, staff names), and
  the account itself where the answer names it (the map page's header),
- the DATA VERSION (``tile_version.n``: :mod:`gisgov.db.data_version`), read in the request's transaction
  before the answer is computed. Every committed write to a table these answers read moves it (migrations
  0017–0019), so an answer kept before a write is never given after it; an entry can hold data newer than
  its number, never older (as for tiles, :mod:`gisgov.tiles.cache`).

Only 200 (OK) answers of routes that write nothing and audit nothing are kept (personal layers are read and
audited per request, never cached). The cache is bounded by bytes (``GISGOV_ANSWER_CACHE_MB``, 0 = off)
and uses the tiles' LRU. Answers carry ``X-Gisgov-Cache: hit|miss``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import Connection, text

from gisgov.db.data_version import data_version
from gisgov.security.roles import Principal
from gisgov.tiles.cache import ENTRY_OVERHEAD, TileCache

HEADER = "X-Gisgov-Cache"


@dataclass(frozen=True)
class AnswerKey:
    path: str
    params: tuple[tuple[str, str], ...]
    role: str
    scope: str
    account: int | None  # set only for answers that name the account
    variant: str  # what else shapes the answer (the layer catalog it was drawn from)


@dataclass(frozen=True)
class Answer:
    version: int
    body: bytes
    media_type: str
    etag: str

    @property
    def size(self) -> int:
        return len(self.body) + ENTRY_OVERHEAD


def answer_cache(request: Request) -> TileCache:
    st = request.app.state
    cache = getattr(st, "answer_cache", None)
    if cache is None:
        cache = st.answer_cache = TileCache(int(st.settings.answer_cache_mb * 2**20))
    return cache


def cached(
    request: Request,
    conn: Connection,
    p: Principal,
    make: Callable[[], Response],
    *,
    per_account: bool = False,
    variant: object = "",
) -> Response:
    """``make()``'s answer, or the one kept for this route, parameters, role, area (and account) at the
    current data version. ``make`` runs on ``conn`` (the request's scoped transaction) on a miss."""
    cache = answer_cache(request)
    if cache.max_bytes <= 0:
        return make()
    version = data_version(conn)
    key = AnswerKey(
        request.url.path,
        tuple(sorted(request.query_params.multi_items())),
        p.role.value,
        p.scope_code,
        p.user_id if per_account else None,
        str(variant),
    )
    hit = cache.get(key, version)
    if hit is not None:
        return _replay(hit)
    # one computation per key at a time (per worker): the requests that arrive meanwhile (a cold start, or
    # right after a write, when every dashboard asks for the same answer) wait for it instead of all
    # computing it at once
    with _computing(key):
        hit = cache.get(key, version)
        if hit is not None:
            return _replay(hit)
        return _compute(cache, key, version, make)


def _replay(hit: Answer) -> Response:
    return Response(hit.body, media_type=hit.media_type, headers={HEADER: "hit", "ETag": hit.etag})


_LOCKS: dict[AnswerKey, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _computing(key: AnswerKey) -> threading.Lock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            if len(_LOCKS) > 10_000:  # bounded; a lock still held elsewhere is simply no longer shared
                _LOCKS.clear()
            lock = _LOCKS[key] = threading.Lock()
        return lock


def _compute(cache: TileCache, key: AnswerKey, version: int, make: Callable[[], Response]) -> Response:
    resp = make()
    body = getattr(resp, "body", None)
    if resp.status_code == 200 and isinstance(body, bytes):
        etag = 'W/"' + hashlib.blake2b(repr((version, key)).encode() + body, digest_size=12).hexdigest() + '"'
        cache.put(key, Answer(version, body, resp.media_type or "application/json", etag))
        resp.headers["ETag"] = etag
    resp.headers[HEADER] = "miss"
    return resp


_EVENTS_SEEN = text("SELECT max(id), max(updated_at) FROM event")


def events_seen(conn: Connection, slot_s: float = 60) -> tuple[Any, ...]:
    """What an answer over events depends on besides the data version (events are not counted by it): the
    newest event and the newest change of one the caller can see (every report inserts a row, every change
    of state sets ``updated_at``), and the clock's ``slot_s`` slot (deadlines pass with time: an answer is at
    most that far behind the clock)."""
    newest, changed = conn.execute(_EVENTS_SEEN).one()
    return newest, str(changed), int(time.time() // slot_s)


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def model_json(model: Any, data: Any) -> Response:
    """``data`` validated and written as FastAPI writes a route's ``response_model`` with
    ``response_model_exclude_unset=True`` (by alias, unset fields left out), as a Response to keep."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        body = model.model_validate(data).model_dump_json(by_alias=True, exclude_unset=True)
    else:
        ta = _ADAPTERS.get(model)
        if ta is None:
            ta = _ADAPTERS[model] = TypeAdapter(model)
        body = ta.dump_json(ta.validate_python(data), by_alias=True, exclude_unset=True).decode()
    return Response(body.encode() if isinstance(body, str) else body, media_type="application/json")
