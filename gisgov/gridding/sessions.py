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
import time
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
from gisgov.gridding.shapes import EditRefused, atoms_inside, edit_geometry, give_to_neighbours, next_code, split_sides
from gisgov.gridding.validate import PlanInput

#: expired sessions stay this long (for ``resume``) before they are deleted
KEEP_EXPIRED_DAYS = 7
#: per-process cache of rebuilt editors
CACHE_SIZE = 32
EMPTY_PREFIX = "compound:"

#: what the editor cache is keyed by: the stored grid codes and assignments (codes change with
#: draw/split/merge/delete, which may leave the assignments' text as it was)
DIGEST = "md5(codes::text || assignments::text)"

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
        text(
            """
        INSERT INTO grid_edit_session (owner_id, community_code, base_version, codes, assignments)
        VALUES (:o, :c, :b, CAST(:codes AS jsonb), CAST(:a AS jsonb))
        RETURNING id, """
            + DIGEST
        ),
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
                "SELECT id, owner_id, community_code, base_version, codes, revision, "
                f"{DIGEST} AS digest, "
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
        text(
            """
        UPDATE grid_edit_session SET assignments = assignments || CAST(:d AS jsonb), revision = revision + 1,
               touched = now() WHERE id = :id RETURNING revision, """
            + DIGEST
        ),
        {"id": s.id, "d": json.dumps(delta, ensure_ascii=False)},
    ).one()
    _remember(s.id, digest, ed)
    out["revision"] = int(rev)
    return out


# --- boundary editing: draw, reshape, split, merge, delete, paint (assign) and restore (undo/redo) ----

#: the operations of :func:`edit`
OPS = ("assign", "draw", "reshape", "split", "merge", "delete", "restore")


def _key(ctx: CommunityContext, i: int) -> str:
    a = ctx.atoms
    return str(a.code[i]) if a.building_id[i] >= 0 else EMPTY_PREFIX + str(a.code[i])


def _stored_codes(codes: list[str], exceptions: list[str | None]) -> list[Any]:
    return [c if e is None else {"code": c, "exception": e} for c, e in zip(codes, exceptions, strict=False)]


def _grid_index(ed: PlanEditor, code: str | None, what: str) -> int:
    if code is None:
        raise EditRefused(f"缺少网格编码 this edit needs `{what}`: a grid code of the session (rule: edit_grid)")
    g = ed.index.get(str(code))
    if g is None:
        raise EditRefused(f"未知网格 unknown grid {code} in this session (rule: edit_grid)")
    return g


def _geometry(ctx: CommunityContext, geom: dict[str, Any] | None, kind: str) -> Any:
    from shapely import bounds

    lon0, lat0, lon1, lat1 = (float(v) for v in bounds(ctx.to_lonlat(ctx.boundary)))
    return edit_geometry(
        geom, kind, to_metric=ctx.to_metric, bounds_lonlat=(lon0, lat0, lon1, lat1), boundary=ctx.boundary
    )


def _give_away(ed: PlanEditor, leaving: np.ndarray, g: int) -> None:
    """Atoms ``leaving`` grid ``g`` go to neighbours (longest shared border, else nearest grid)."""
    gr = ed.ctx.graph
    to = give_to_neighbours(
        leaving,
        ed.atom_grid,
        indptr=gr.indptr,
        nbr=gr.nbr,
        nbr_edge=gr.nbr_edge,
        length=gr.length,
        xy=ed.ctx.atoms.xy,
        exclude=g,
    )
    for t in np.unique(to).tolist():
        ed.assign(leaving[to == t], int(t), rebuild=False)


def _atoms_of_units(ed: PlanEditor, buildings: list[str] | None, compounds: list[str] | None) -> np.ndarray:
    parts = [ed.atoms_for(building=b) for b in buildings or []]
    parts += [ed.atoms_for(compound=c) for c in compounds or []]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def _restore(ed: PlanEditor, state: dict[str, Any]) -> None:
    """Set the editor's grid codes (order, exceptions) and the given assignments (a patch)."""
    ctx = ed.ctx
    raw_codes = state.get("codes")
    raw_assign = state.get("assignments") or {}
    if not isinstance(raw_codes, list) or not isinstance(raw_assign, dict):
        raise EditRefused(
            '恢复数据格式错误 restore needs state {"codes": [...], "assignments": {...}} (rule: edit_restore)'
        )
    try:
        codes, exc = _split_codes(raw_codes)
    except (KeyError, TypeError):
        raise EditRefused(
            "恢复数据格式错误 state.codes: grid codes or {code, exception} (rule: edit_restore)"
        ) from None
    kinds = set(ctx.rules.exception_kinds)
    if any(e is not None and (not isinstance(e, str) or e not in kinds) for e in exc):
        raise EditRefused(
            f"例外类型无效 state.codes: a grid exception is one of {', '.join(sorted(kinds))} or null (rule: edit_restore)"
        )
    if len(set(codes)) != len(codes) or any(not c or len(c) > 64 for c in codes):
        raise EditRefused("网格编码重复或无效 state.codes: codes must be unique, 1–64 characters (rule: edit_restore)")
    for c, e in zip(codes, exc, strict=False):
        if c not in ed.index:
            ed.add_grid(c, e)
    empty = {str(ctx.atoms.code[i]): i for i in np.flatnonzero(ctx.atoms.building_id < 0).tolist()}
    wanted = set(codes)
    targets: dict[int, list[int]] = {}
    for key, g in raw_assign.items():
        if key.startswith(EMPTY_PREFIX):
            i = empty.get(key[len(EMPTY_PREFIX) :])
        else:
            i = ctx.code_index.get(key)
            i = i if i is not None and ctx.atoms.building_id[i] >= 0 else None
        if i is None:
            raise EditRefused(f"楼栋不在本社区 unit {key} is not in community {ctx.code} (rule: edit_restore)")
        if g is not None and (not isinstance(g, str) or g not in wanted):
            raise EditRefused(
                f"恢复到未知网格 unit {key} restored into grid {g!r}, not in state.codes (rule: edit_restore)"
            )
        targets.setdefault(ed.index[g] if g is not None else -1, []).append(i)
    for t, atoms in targets.items():
        ed.assign(np.array(atoms, dtype=np.int64), t, rebuild=False)
    for c in [c for c in ed.codes if c not in wanted]:
        g = ed.index[c]
        n = int(((ed.atom_grid == g) & (ctx.atoms.building_id >= 0)).sum())
        if n:
            raise EditRefused(
                f"恢复后网格 {c} 仍有 {n} 栋楼 restore would remove grid {c}, which still holds {n} buildings "
                "(rule: edit_restore)"
            )
        rest = np.flatnonzero(ed.atom_grid == g)
        if len(rest):
            _give_away(ed, rest, g)
        ed.remove_grid(g)
    ed.reorder(codes)
    ed.exceptions = list(exc)


def edit(
    conn: Connection,
    s: Session,
    op: str,
    *,
    grid: str | None = None,
    other: str | None = None,
    buildings: list[str] | None = None,
    compounds: list[str] | None = None,
    geometry: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply one boundary edit to the stored session (``s`` read with ``lock=True``); see
    :mod:`gisgov.gridding.shapes` for how a shape selects units. Grid outlines are rebuilt from the
    units' territory cells, so edges follow compound edges, roads and the community boundary and
    neighbours stay free of gaps and overlaps. The answer's ``undo`` is a ``restore`` body that
    reverses the edit exactly; codes and assignments are written in one UPDATE (revision + 1)."""
    t0 = time.perf_counter()
    if op not in OPS:
        raise EditRefused(f"未知操作 unknown edit op {op!r}: one of {', '.join(OPS)} (rule: edit_op)")
    base = editor(conn, s)
    ed = base.copy()  # cached editors are never changed in place
    ctx = ed.ctx
    a = ctx.atoms
    before_codes = _stored_codes(base.codes, base.exceptions)
    if op == "assign":
        g = _grid_index(ed, grid, "grid")
        atoms = _atoms_of_units(ed, buildings, compounds)
        if geometry is not None:
            atoms = np.union1d(atoms, atoms_inside(a.xy, _geometry(ctx, geometry, "Polygon")))
        if len(atoms) == 0:
            raise EditRefused(
                "没有选中任何楼栋或小区 nothing selected: give buildings, compounds or a lasso polygon holding "
                "units (rule: edit_select)"
            )
        ed.assign(atoms, g, rebuild=False)
    elif op == "draw":
        inside = atoms_inside(a.xy, _geometry(ctx, geometry, "Polygon"))
        if len(inside) == 0:
            raise EditRefused(
                "所画多边形内没有楼栋或小区 the polygon holds no building or compound: a new grid needs units "
                "(a unit is inside when its point is) (rule: edit_select)"
            )
        g = ed.add_grid(next_code(ctx.code, ed.codes))
        ed.assign(inside, g, rebuild=False)
    elif op == "reshape":
        g = _grid_index(ed, grid, "grid")
        inside = atoms_inside(a.xy, _geometry(ctx, geometry, "Polygon"))
        if len(inside) == 0:
            raise EditRefused(
                f"新边界内没有楼栋或小区 the new outline of grid {grid} holds no unit: delete the grid instead "
                "(rule: edit_select)"
            )
        leaving = np.setdiff1d(np.flatnonzero(ed.atom_grid == g), inside)
        ed.assign(inside, g, rebuild=False)
        _give_away(ed, leaving, g)
    elif op == "split":
        g = _grid_index(ed, grid, "grid")
        line = _geometry(ctx, geometry, "LineString")
        mine = np.flatnonzero(ed.atom_grid == g)
        sides = split_sides(ed.outline(g), line, a.xy[mine])
        if len(sides) < 2:
            raise EditRefused(
                f"分割线没有把网格 {grid} 分成两块以上有楼栋的部分 the line does not cut grid {grid} into two or more "
                "pieces holding units: draw it across the grid, from outside to outside (rule: split_line)"
            )
        sides.sort(key=lambda x: (-int(a.households[mine[x]].sum()), -len(x)))
        for side in sides[1:]:
            ng = ed.add_grid(next_code(ctx.code, ed.codes))
            ed.assign(mine[side], ng, rebuild=False)
    elif op == "merge":
        g = _grid_index(ed, grid, "grid")
        o = _grid_index(ed, other, "other")
        if g == o:
            raise EditRefused(f"不能与自身合并 grid {grid} cannot be merged with itself (rule: merge_neighbours)")
        gr = ctx.graph
        gi, gj = ed.atom_grid[gr.ei], ed.atom_grid[gr.ej]
        if not (((gi == g) & (gj == o)) | ((gi == o) & (gj == g))).any():
            raise EditRefused(
                f"网格 {grid} 与 {other} 不相邻，不能合并 grids {grid} and {other} are not neighbours (they share no "
                "border between units) (rule: merge_neighbours)"
            )
        ed.assign(np.flatnonzero(ed.atom_grid == o), g, rebuild=False)
        ed.remove_grid(o)
    elif op == "delete":
        g = _grid_index(ed, grid, "grid")
        mine = np.flatnonzero(ed.atom_grid == g)
        nb = int((a.building_id[mine] >= 0).sum())
        if nb or int(ed.H[g]):
            raise EditRefused(
                f"网格非空，不能删除：还有 {nb} 栋楼、{int(ed.H[g])} 户 grid {grid} is not empty: move its {nb} "
                f"buildings ({int(ed.H[g])} households) to other grids first (rule: delete_empty)"
            )
        if len(mine):  # land of compounds without buildings goes to the neighbours
            _give_away(ed, mine, g)
        ed.remove_grid(g)
    else:
        _restore(ed, state or {})
    # what changed, by code (indices shift when grids are added or removed)
    old_c = np.array([*base.codes, None], dtype=object)[base.atom_grid]
    new_c = np.array([*ed.codes, None], dtype=object)[ed.atom_grid]
    changed = np.flatnonzero(old_c != new_c)
    added = [c for c in ed.codes if c not in base.index]
    removed = [c for c in base.codes if c not in ed.index]
    touched = {c for c in old_c[changed].tolist() + new_c[changed].tolist() if c is not None} | set(added)
    touched |= {c for c in ed.codes if c in base.index and base.exceptions[base.index[c]] != ed.exceptions[ed.index[c]]}
    ed.rebuild({ed.index[c] for c in touched if c in ed.index})
    delta = {_key(ctx, i): new_c[i] for i in changed.tolist()}
    rev, digest = conn.execute(
        text(
            """
        UPDATE grid_edit_session SET codes = CAST(:codes AS jsonb), assignments = assignments || CAST(:d AS jsonb),
               revision = revision + 1, touched = now() WHERE id = :id RETURNING revision, """
            + DIGEST
        ),
        {
            "id": s.id,
            "codes": json.dumps(_stored_codes(ed.codes, ed.exceptions), ensure_ascii=False),
            "d": json.dumps(delta, ensure_ascii=False),
        },
    ).one()
    _remember(s.id, digest, ed)
    moved_b = changed[a.building_id[changed] >= 0]
    split = []
    for c in sorted({int(x) for x in a.compound[changed] if x >= 0}):
        if len({int(x) for x in ed.atom_grid[ctx.atoms_of_compound(c)]}) > 1:
            split.append(str(ctx.compounds.code[c]))
    rows = [ed.grid_row(ed.index[c]) for c in ed.codes if c in touched or c in ed.outline_changed]
    return {
        "op": op,
        "grids": rows,
        "added": added,
        "removed": removed,
        "codes": list(ed.codes),
        "moved": {
            "buildings": int(len(moved_b)),
            "households": int(a.households[changed].sum()),
            "people": int(a.people[changed].sum()),
        },
        "changed": {str(a.code[i]): new_c[i] for i in moved_b.tolist()},
        "split_compounds": split,
        "undo": {
            "op": "restore",
            "revision": int(rev),
            "state": {"codes": before_codes, "assignments": {_key(ctx, i): old_c[i] for i in changed.tolist()}},
        },
        "revision": int(rev),
        "ms": round((time.perf_counter() - t0) * 1000, 2),
    }
