"""Grid edit sessions (编辑会话) stored in PostgreSQL (table ``grid_edit_session``).

A session is a plan being edited move by move in the browser. Its state lives in the database, so it
survives restarts and works with several worker processes, and nothing evicts it silently:

* ``codes``: the session's grid codes in order (a plain string, or ``{"code", "exception"}`` for a grid
  with a rule exception such as ``multipart``);
* ``assignments``: building code → grid code (``null`` = in no grid). Compounds without any building
  are stored as ``"compound:<code>"`` keys, so moving such a compound is kept too;
* ``base_version``: the active version when the work started (the session's plan is a draft: that
  draft's own parent; else the active version at opening). A save records it as the draft's
  ``parent_version``, so an activation in between is caught (HTTP 409) when the draft is activated;
* ``revision``: +1 per move; the row is locked (``SELECT … FOR UPDATE``) while a move or a save runs, and
  a client may send the revision it last saw (two tabs of one session: the stale one gets 409);
* ``touched``: last use. A session untouched for ``GISGOV_EDIT_SESSION_IDLE_HOURS`` answers 410 Gone
  (:class:`SessionExpired`) with what to do; opening a session with ``resume`` = the old id carries
  its moves over. Expired rows are deleted :data:`KEEP_EXPIRED_DAYS` days after they expired.

Each process keeps the last few :class:`~gisgov.gridding.incremental.PlanEditor` objects keyed by
session id and a digest of the stored assignments (computed by PostgreSQL): a hit skips rebuilding the
grid polygons, a miss rebuilds from the database, which is always the truth.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from gisgov.errors import GisgovError, InvalidInput, NotFound, PlanConflict
from gisgov.gridding.context import CommunityContext
from gisgov.gridding.incremental import PlanEditor
from gisgov.gridding.io import _attach_empty_compounds, load_context
from gisgov.gridding.validate import PlanInput

#: expired sessions stay this long (for ``resume``) before they are deleted
KEEP_EXPIRED_DAYS = 7
#: per-process cache of rebuilt editors
CACHE_SIZE = 32
EMPTY_PREFIX = "compound:"

_CACHE: OrderedDict[tuple[str, str], PlanEditor] = OrderedDict()
_CACHE_LOCK = threading.Lock()


class SessionExpired(GisgovError):
    """The edit session was not used for too long, or was closed (continued in another session)."""

    status_code = 410


class SessionChanged(PlanConflict):
    """The client's revision of the session is not the stored one (another tab moved something)."""


@dataclass
class Session:
    id: str
    owner_id: int
    community: str
    base_version: int | None
    codes: list[str]
    exceptions: list[str | None]
    revision: int
    digest: str
    expired: bool
    closed: bool


def _uuid(sid: str) -> str:
    try:
        return str(uuid.UUID(str(sid)))
    except (ValueError, AttributeError, TypeError):
        raise NotFound(f"编辑会话不存在 edit session {sid!r} not found") from None


def _split_codes(raw: Any) -> tuple[list[str], list[str | None]]:
    codes: list[str] = []
    exc: list[str | None] = []
    for c in raw or []:
        if isinstance(c, dict):
            codes.append(str(c["code"]))
            exc.append(c.get("exception"))
        else:
            codes.append(str(c))
            exc.append(None)
    return codes, exc


def state_of(ctx: CommunityContext, codes: list[str], atom_grid: np.ndarray) -> dict[str, str | None]:
    """Stored form of a plan's assignment: building code → grid code, plus ``compound:<code>`` for
    compounds without buildings."""
    a = ctx.atoms
    out: dict[str, str | None] = {}
    for i in range(a.n):
        g = int(atom_grid[i])
        key = str(a.code[i]) if a.building_id[i] >= 0 else EMPTY_PREFIX + str(a.code[i])
        out[key] = codes[g] if g >= 0 else None
    return out


def atom_grid_of(ctx: CommunityContext, codes: list[str], state: dict[str, Any]) -> np.ndarray:
    """Atom labels from the stored state. Buildings removed from the community since are skipped; new
    ones are in no grid; compounds without buildings not in the state follow their neighbour."""
    a = ctx.atoms
    idx = {c: k for k, c in enumerate(codes)}
    empty = {str(a.code[i]): i for i in np.flatnonzero(a.building_id < 0).tolist()}
    ag = np.full(a.n, -1, dtype=np.int64)
    for key, g in state.items():
        if key.startswith(EMPTY_PREFIX):
            i = empty.get(key[len(EMPTY_PREFIX) :])
        else:
            i = ctx.code_index.get(key)
            if i is not None and a.building_id[i] < 0:
                i = None
        if i is not None and g is not None and g in idx:
            ag[i] = idx[g]
    _attach_empty_compounds(ctx, ag)
    return ag


def _remember(sid: str, digest: str, ed: PlanEditor) -> None:
    with _CACHE_LOCK:
        _CACHE[(sid, digest)] = ed
        _CACHE.move_to_end((sid, digest))
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)


def _recall(sid: str, digest: str, ctx: CommunityContext) -> PlanEditor | None:
    with _CACHE_LOCK:
        ed = _CACHE.get((sid, digest))
        if ed is not None:
            _CACHE.move_to_end((sid, digest))
    return ed if ed is not None and ed.ctx.signature == ctx.signature else None


def purge(conn: Connection, owner_id: int, idle_hours: float) -> int:
    """Delete this account's sessions that expired more than :data:`KEEP_EXPIRED_DAYS` days ago."""
    return conn.execute(
        text("""DELETE FROM grid_edit_session WHERE owner_id = :o
        AND touched < now() - make_interval(secs => :keep)"""),
        {"o": owner_id, "keep": idle_hours * 3600 + KEEP_EXPIRED_DAYS * 86400},
    ).rowcount


def open_session(
    conn: Connection, ctx: CommunityContext, plan: PlanInput, *, owner_id: int, base_version: int | None
) -> tuple[str, PlanEditor]:
    """Store a new session on ``plan`` (its editor is cached); returns (id, editor)."""
    ed = PlanEditor(ctx, plan)
    codes = [c if e is None else {"code": c, "exception": e} for c, e in zip(ed.codes, ed.exceptions, strict=False)]
    row = conn.execute(
        text("""
        INSERT INTO grid_edit_session (owner_id, community_code, base_version, codes, assignments)
        VALUES (:o, :c, :b, CAST(:codes AS jsonb), CAST(:a AS jsonb))
        RETURNING id, md5(assignments::text)"""),
        {
            "o": owner_id,
            "c": ctx.code,
            "b": base_version,
            "codes": json.dumps(codes, ensure_ascii=False),
            "a": json.dumps(state_of(ctx, ed.codes, ed.atom_grid), ensure_ascii=False),
        },
    ).one()
    sid = str(row[0])
    _remember(sid, row[1], ed)
    return sid, ed


def resume(conn: Connection, old: Session) -> str:
    """A new session with the moves, grids and base version of ``old`` (expired or not); ``old`` is closed."""
    sid = conn.execute(
        text("""
        INSERT INTO grid_edit_session (owner_id, community_code, base_version, codes, assignments)
        SELECT owner_id, community_code, base_version, codes, assignments FROM grid_edit_session WHERE id = :id
        RETURNING id"""),
        {"id": old.id},
    ).scalar()
    conn.execute(text("UPDATE grid_edit_session SET closed = now() WHERE id = :id"), {"id": old.id})
    return str(sid)


def get(
    conn: Connection,
    sid: str,
    *,
    owner_id: int,
    covers: Callable[[str], bool],
    idle_hours: float,
    lock: bool = False,
    live: bool = True,
) -> Session:
    """Session ``sid`` of account ``owner_id``. Another account's session, or one whose community is
    outside ``covers``, answers 404 like a missing one; with ``live`` an expired or closed one answers
    410. ``lock`` holds the row (FOR UPDATE) until the transaction ends."""
    key = _uuid(sid)
    row = (
        conn.execute(
            text(
                "SELECT id, owner_id, community_code, base_version, codes, revision, md5(assignments::text) AS digest, "
                "touched < now() - make_interval(secs => :idle) AS expired, closed IS NOT NULL AS closed "
                "FROM grid_edit_session WHERE id = :id" + (" FOR UPDATE" if lock else "")
            ),
            {"id": key, "idle": idle_hours * 3600},
        )
        .mappings()
        .one_or_none()
    )
    if row is None or row["owner_id"] != owner_id or not covers(row["community_code"]):
        raise NotFound(f"编辑会话不存在 edit session {sid} not found")
    codes, exc = _split_codes(row["codes"])
    s = Session(
        key,
        row["owner_id"],
        row["community_code"],
        row["base_version"],
        codes,
        exc,
        row["revision"],
        row["digest"],
        bool(row["expired"]),
        bool(row["closed"]),
    )
    if live and s.closed:
        raise SessionExpired(
            "编辑会话已关闭（已在新的会话中继续），请使用新会话或重新打开编辑器。 "
            f"edit session {sid} was closed (continued in a newer session): use that one or open "
            "the editor again."
        )
    if live and s.expired:
        raise SessionExpired(
            f"编辑会话已过期（超过 {idle_hours:g} 小时未使用），请重新打开；"
            "用“重新打开”可带回本会话未保存的修改。 "
            f"edit session {sid} expired after {idle_hours:g} h without use: open a new one "
            f'(POST /api/grids/sessions with {{"resume": "{sid}"}} carries its moves over).'
        )
    return s


def touch(conn: Connection, s: Session) -> None:
    conn.execute(text("UPDATE grid_edit_session SET touched = now() WHERE id = :id"), {"id": s.id})


def editor(conn: Connection, s: Session) -> PlanEditor:
    """The session's editor: cached in this process, or rebuilt from the stored state."""
    ctx = load_context(conn, s.community)
    ed = _recall(s.id, s.digest, ctx)
    if ed is None:
        state = conn.execute(text("SELECT assignments FROM grid_edit_session WHERE id = :id"), {"id": s.id}).scalar()
        ed = PlanEditor(ctx, PlanInput(s.codes, atom_grid_of(ctx, s.codes, state or {}), None, s.exceptions))
        _remember(s.id, s.digest, ed)
    return ed


def check_revision(s: Session, revision: int | None) -> None:
    if revision is not None and revision != s.revision:
        raise SessionChanged(
            f"编辑会话已在别处修改（当前第 {s.revision} 步，本页为第 {revision} 步），"
            "请刷新页面后再操作；已做的修改都已保存在会话中。 "
            f"edit session changed elsewhere (revision {s.revision}, this page has {revision}), "
            "e.g. in another tab: reload the page; every move made so far is kept in the session."
        )


def move(
    conn: Connection, s: Session, to: str, *, building: str | None = None, compound: str | None = None
) -> dict[str, Any]:
    """Apply one move to the stored session (``s`` must have been read with ``lock=True``)."""
    if (building is None) == (compound is None):
        raise InvalidInput("楼栋与小区只能给出其一 give exactly one of building or compound")
    ed = editor(conn, s).copy()  # cached editors are never changed in place
    atoms = ed.atoms_for(building=building, compound=compound)
    out = ed.move(to, building=building, compound=compound)
    a = ed.ctx.atoms
    delta = {(str(a.code[i]) if a.building_id[i] >= 0 else EMPTY_PREFIX + str(a.code[i])): to for i in atoms.tolist()}
    rev, digest = conn.execute(
        text("""
        UPDATE grid_edit_session SET assignments = assignments || CAST(:d AS jsonb), revision = revision + 1,
               touched = now() WHERE id = :id RETURNING revision, md5(assignments::text)"""),
        {"id": s.id, "d": json.dumps(delta, ensure_ascii=False)},
    ).one()
    _remember(s.id, digest, ed)
    out["revision"] = int(rev)
    return out
