"""Plan lifecycle: activation (atomic: validate, renumber W→E N→S, archive the previous plan, point
``building.grid_id`` at the new grids, carry grid staff over) and the diff between two versions.

Lost updates: every draft records ``parent_version``, the active version its work started from. A plan
whose parent is not the active version any more (someone activated another plan in between) is not
activated: :class:`ParentConflict` (HTTP 409) says which version is active now, when and by whom it was
activated and how many buildings differ from the draft's parent; the draft stays. ``rebase=True`` is the
planner's explicit "I have looked; replace the current plan with this draft anyway" (the draft's parent
becomes the current active version). The check runs under the community's advisory lock, so of two
concurrent activations of drafts with the same parent exactly one succeeds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, text

from gisgov.errors import NotFound, PlanConflict
from gisgov.gridding.codes import number
from gisgov.gridding.io import load_context, load_plan, plan_row
from gisgov.gridding.validate import validate


class ParentConflict(PlanConflict):
    """The plan was made from a version that is no longer the active one (HTTP 409); ``info`` says what
    changed (JSON-ready)."""

    def __init__(self, message: str, info: dict[str, Any]):
        super().__init__(message)
        self.info = info


def _activated_by(conn: Connection, code: str, version: int) -> str | None:
    """Who activated ``version`` (the audit log of the web app; None for activations from the command line)."""
    return conn.execute(
        text("""SELECT actor FROM audit_log WHERE action = 'plan_activate' AND object = :o
        AND result = 'ok' ORDER BY id DESC LIMIT 1"""),
        {"o": f"{code}/v{version}"},
    ).scalar()


def conflict_info(
    conn: Connection, code: str, version: int, parent: int | None, current: dict[str, Any] | None
) -> dict[str, Any]:
    """What changed since plan ``version`` was made from ``parent``: the active plan now, who activated it
    and when, and how many buildings are in another grid than in ``parent`` (:func:`diff`)."""
    cur = current["version"] if current else None
    info = {
        "community": code,
        "version": version,
        "parent_version": parent,
        "active_version": cur,
        "activated": current["activated"].isoformat() if current and current["activated"] else None,
        "activated_by": _activated_by(conn, code, cur) if cur is not None else None,
        "buildings_changed": None,
        "diff": None,
    }
    if cur is not None and parent is not None:
        info["buildings_changed"] = diff(conn, code, parent, cur)["buildings_moved"]
        info["diff"] = f"/api/grids/diff/{code}?a={parent}&b={cur}"
    elif (
        cur is not None and current is not None
    ):  # no plan was active when the draft was made: every building of the active plan is new
        info["buildings_changed"] = conn.execute(
            text("SELECT count(*) FROM grid_assignment WHERE plan_id = :p"), {"p": current["id"]}
        ).scalar()
    return info


def conflict_message(info: dict[str, Any], *, saved: bool = False, saving: bool = False) -> str:
    """A planner's reading of :func:`conflict_info` (中文 + English): refusing an activation, or (``saved``)
    warning that a draft just saved will need ``rebase`` to be activated."""
    v, parent, cur = info["version"], info["parent_version"], info["active_version"]
    if saving:  # an edit session's save, refused: there is no version number yet
        who = info["activated_by"] or "命令行 command line"
        base_zh = f"第 {parent} 版" if parent is not None else "无启用方案时"
        base_en = f"version {parent}" if parent is not None else "no active plan"
        n = info["buildings_changed"]
        now_zh = (
            f"现在启用的是第 {cur} 版（{who} 启用），有 {n} 栋楼栋的网格不同"
            if cur is not None
            else "该社区现在没有启用方案"
        )
        now_en = (
            f"version {cur} is active now (activated by {who}); {n} building(s) are in other grids"
            if cur is not None
            else "the community has no active plan now"
        )
        return (
            f"方案冲突，未保存：本编辑会话基于{base_zh}，{now_zh}。会话及其修改均保留；请先查看差异，"
            f"确认后以 rebase: true 再次保存。 plan conflict, nothing saved: this edit session was opened on "
            f"{base_en}, but {now_en}. The session and its moves are kept; look at what changed"
            + (f" ({info['diff']})" if info.get("diff") else "")
            + ' and save again with {"rebase": true}.'
        )
    who = info["activated_by"] or "命令行 command line"
    when = (info["activated"] or "")[:19].replace("T", " ") or "?"
    base_zh = f"第 {parent} 版" if parent is not None else "无启用方案时"
    base_en = f"version {parent}" if parent is not None else "no active plan"
    if cur is None:
        zh = f"方案冲突：方案第 {v} 版基于{base_zh}，但该社区现在没有启用方案。"
        en = f"plan conflict: version {v} was made from {base_en}, but the community has no active plan now."
    else:
        n = info["buildings_changed"]
        zh = (
            f"方案冲突：方案第 {v} 版基于{base_zh}，其后第 {cur} 版已被 {who} 于 {when} 启用，"
            f"两者有 {n} 栋楼栋的网格不同。"
        )
        en = (
            f"plan conflict: version {v} was made from {base_en}, but version {cur} was activated since "
            f"(by {who} at {when}); {n} building(s) are in other grids there."
        )
    if saved:
        return (
            f"{zh}草稿已保存；启用前请先查看差异，启用时需确认（rebase: true）。 "
            f"{en} The draft is saved; look at what changed"
            + (f" ({info['diff']})" if info.get("diff") else "")
            + ' before activating it: activation will ask for {"rebase": true}.'
        )
    return (
        f"{zh}该方案已保留，未做任何更改；请先查看差异，确认后以 rebase: true 再次提交即可覆盖当前方案。 "
        f"{en} Nothing was changed and the plan is kept; look at what changed"
        + (f" ({info['diff']})" if info.get("diff") else "")
        + ', then send {"rebase": true} to replace the current plan with it anyway.'
    )


def activate(
    conn: Connection,
    code: str,
    version: int,
    *,
    force: bool = False,
    rebase: bool = False,
    checkpoint: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Make plan ``version`` the active plan of community ``code``, all or nothing.

    Runs inside the caller's transaction; on any error (a rule break without ``force``, a parent that is
    no longer the active version without ``rebase`` (:class:`ParentConflict`), a database constraint, or
    ``checkpoint`` raising) the caller's rollback leaves the old plan active."""
    step = checkpoint or (lambda name: None)
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('grid_plan:' || :c))"), {"c": code})
    conn.execute(text("SELECT id FROM grid_plan WHERE community_code = :c FOR UPDATE"), {"c": code}).all()
    meta = plan_row(conn, code, version)
    if meta["status"] == "active":
        raise PlanConflict(
            f"网格方案第 {version} 版已是启用方案 grid plan version {version} of community {code} is already active"
        )
    # read under the lock: a concurrent activation has committed (or rolled back) by now
    previous = plan_row(conn, code, None)
    current = previous["version"] if previous else None
    parent = meta["parent_version"]
    rebased = None
    if parent != current:
        if not rebase:
            info = conflict_info(conn, code, version, parent, previous)
            raise ParentConflict(conflict_message(info), info)
        conn.execute(text("UPDATE grid_plan SET parent_version = :v WHERE id = :p"), {"v": current, "p": meta["id"]})
        rebased = {"from": parent, "to": current}
        parent = current
    ctx = load_context(conn, code)
    plan, _ = load_plan(conn, ctx, version)
    if not plan.codes:
        raise PlanConflict(f"grid plan version {version} of community {code} has no grids")
    report = validate(ctx, plan)
    if not report["ok"] and not force:
        first = "; ".join(b["message"] for b in report["breaks"][:5])
        raise PlanConflict(
            f"grid plan version {version} of community {code} breaks {report['breaks_count']} rule(s), "
            f"not activated: {first}"
        )
    step("validated")
    # deterministic renumbering in reading order (W→E, N→S)
    if plan.polygons is None:  # load_plan always reads the stored polygons
        raise ValueError(f"grid plan version {version} of community {code}: no polygons")
    new_codes = number(code, plan.polygons)
    ids: dict[str, int] = dict(
        conn.execute(text("SELECT code, id FROM grid WHERE plan_id = :p"), {"p": meta["id"]}).all()
    )
    conn.execute(text("SET CONSTRAINTS grid_plan_code_key DEFERRED"))
    renamed = dict(zip(plan.codes, new_codes, strict=False))
    conn.execute(
        text("UPDATE grid SET code = :new WHERE id = :id"),
        [{"new": renamed[old], "id": ids[old]} for old in plan.codes],
    )
    conn.execute(text("SET CONSTRAINTS grid_plan_code_key IMMEDIATE"))
    step("renumbered")
    # grids made outside plans become an archived plan (history kept)
    legacy = conn.execute(
        text("SELECT count(*) FROM grid WHERE community_code = :c AND plan_id IS NULL"), {"c": code}
    ).scalar()
    legacy_version = None
    if legacy:
        legacy_version = conn.execute(
            text("SELECT max(version) + 1 FROM grid_plan WHERE community_code = :c"), {"c": code}
        ).scalar()
        lid = conn.execute(
            text("""INSERT INTO grid_plan (community_code, version, status, author, note)
            VALUES (:c, :v, 'archived', 'gisgov', '既有网格 grids made outside plans, archived at activation of version ' || :a)
            RETURNING id"""),
            {"c": code, "v": legacy_version, "a": str(version)},
        ).scalar()
        conn.execute(
            text("""INSERT INTO grid_assignment (plan_id, building_id, grid_id)
            SELECT :p, b.id, b.grid_id FROM building b JOIN grid g ON g.id = b.grid_id
            WHERE g.community_code = :c AND g.plan_id IS NULL"""),
            {"p": lid, "c": code},
        )
        conn.execute(
            text("UPDATE grid SET plan_id = :p WHERE community_code = :c AND plan_id IS NULL"), {"p": lid, "c": code}
        )
    old_grid_ids = [
        r[0]
        for r in conn.execute(
            text(
                "SELECT g.id FROM grid g JOIN grid_plan p ON p.id = g.plan_id WHERE p.community_code = :c "
                "AND (p.status = 'active' OR p.version = :lv)"
            ),
            {"c": code, "lv": legacy_version or -1},
        )
    ]
    conn.execute(
        text("UPDATE grid_plan SET status = 'archived' WHERE community_code = :c AND status = 'active'"), {"c": code}
    )
    step("archived")
    conn.execute(text("UPDATE grid_plan SET status = 'active', activated = now() WHERE id = :p"), {"p": meta["id"]})
    conn.execute(
        text("UPDATE building SET grid_id = NULL WHERE community_code = :c AND grid_id IS NOT NULL"), {"c": code}
    )
    moved = conn.execute(
        text("""UPDATE building b SET grid_id = a.grid_id FROM grid_assignment a
        WHERE a.plan_id = :p AND a.building_id = b.id"""),
        {"p": meta["id"]},
    ).rowcount
    step("buildings")
    staff = 0
    if old_grid_ids:
        staff = conn.execute(
            text("""
            UPDATE grid_staff s SET grid_id = m.new_id FROM (
                SELECT DISTINCT ON (o.id) o.id AS old_id, n.id AS new_id
                FROM grid o JOIN grid n ON n.plan_id = :p AND ST_Intersects(o.geom, n.geom)
                WHERE o.id = ANY(:old)
                ORDER BY o.id, ST_Area(ST_Intersection(o.geom, n.geom)) DESC, n.code) m
            WHERE s.grid_id = m.old_id"""),
            {"p": meta["id"], "old": old_grid_ids},
        ).rowcount
    step("staff")
    return {
        "community": code,
        "version": version,
        "previous": current,
        "parent_version": parent,
        "rebased": rebased,
        "codes": renamed,
        "buildings": moved,
        "staff_moved": staff,
        "ok": report["ok"],
        "breaks_count": report["breaks_count"],
        "legacy_archived_as": legacy_version,
    }


def code_table(conn: Connection, code: str, version: int | None) -> list[dict[str, Any]]:
    """The code table of a plan (网格编码表): code, name, households, people, buildings, area."""
    meta = plan_row(conn, code, version)
    if meta is None:
        raise NotFound(f"community {code} has no active grid plan")
    rows = (
        conn.execute(
            text("""
        SELECT g.code, g.name, g.level, count(a.building_id) AS buildings,
               coalesce(sum(CASE WHEN hh.n > 0 THEN hh.n ELSE coalesce(b.households, 0) END), 0) AS households,
               round(gisgov_area_m2(g.geom)::numeric, 1) AS area_m2
        FROM grid g LEFT JOIN grid_assignment a ON a.grid_id = g.id
        LEFT JOIN building b ON b.id = a.building_id
        LEFT JOIN (SELECT building_code, count(*) n FROM household GROUP BY 1) hh ON hh.building_code = b.code
        WHERE g.plan_id = :p GROUP BY g.id ORDER BY g.code"""),
            {"p": meta["id"]},
        )
        .mappings()
        .all()
    )
    return [{**dict(r), "community": code, "version": meta["version"], "status": meta["status"]} for r in rows]


def diff(conn: Connection, code: str, a: int, b: int) -> dict[str, Any]:
    """What changed from version ``a`` to ``b``: buildings moved (matched by grid code) and the counts
    of every grid code before and after."""
    ctx = load_context(conn, code)
    pa, _ = load_plan(conn, ctx, a)
    pb, _ = load_plan(conn, ctx, b)
    atoms = ctx.atoms
    aa, ab = pa.atom_grid, pb.atom_grid
    if aa is None or ab is None:  # load_plan always sets them
        raise ValueError("plans without atom_grid")
    moved = []
    for i in range(atoms.n):
        if atoms.building_id[i] < 0:
            continue
        ga = pa.codes[aa[i]] if aa[i] >= 0 else None
        gb = pb.codes[ab[i]] if ab[i] >= 0 else None
        if ga != gb:
            moved.append({"building": str(atoms.code[i]), "from": ga, "to": gb, "households": int(atoms.households[i])})
    counts: dict[str, dict[str, Any]] = {}
    for tag, plan in (("before", pa), ("after", pb)):
        for k, c in enumerate(plan.codes):
            sel = plan.atom_grid == k
            counts.setdefault(c, {"code": c, "before": None, "after": None})[tag] = {
                "households": int(atoms.households[sel].sum()),
                "people": int(atoms.people[sel].sum()),
                "buildings": int((sel & (atoms.building_id >= 0)).sum()),
            }
    return {
        "community": code,
        "from": a,
        "to": b,
        "buildings_moved": len(moved),
        "moved": moved,
        "grids": sorted(counts.values(), key=lambda x: x["code"]),
    }
