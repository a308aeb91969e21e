"""Gridding operations on the database, shared by the CLI and the API (JSON-ready results)."""

from __future__ import annotations

import json

import numpy as np
import shapely
from sqlalchemy import Connection, text

from gisgov.errors import InvalidInput, NotFound
from gisgov.gridding import feasibility as feas_mod
from gisgov.gridding.io import atom_grid_from_codes, community_rules, load_context, load_plan, save_plan, started_on
from gisgov.gridding.propose import findings_json, propose
from gisgov.gridding.repair import repair
from gisgov.gridding.units import build_units
from gisgov.gridding.validate import PlanInput, public, validate


def _rules(conn: Connection, code: str, overrides: dict | None):
    clean = {k: v for k, v in (overrides or {}).items() if v is not None}
    return community_rules(conn, code, clean or None)


def communities(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute(text("SELECT code FROM community ORDER BY code"))]


def plan_from_geojson(ctx, fc: dict | None, assignments: dict | None) -> PlanInput:
    """Validator input from a GeoJSON FeatureCollection of grid polygons (property ``code``) and/or a
    building-code → grid-code mapping."""
    codes: list[str] = []
    polys = None
    exc: list = []
    if fc is not None:
        feats = fc.get("features") if isinstance(fc, dict) else None
        if not isinstance(feats, list):
            raise InvalidInput("grids must be a GeoJSON FeatureCollection")
        polys = []
        for i, f in enumerate(feats):
            props = f.get("properties") or {}
            code = str(props.get("code") or f.get("id") or f"#{i + 1}")
            try:
                g = shapely.geometry.shape(f["geometry"])
            except Exception as exc_:
                raise InvalidInput(f"grid {code}: unreadable geometry ({exc_})") from exc_
            if g.geom_type not in ("Polygon", "MultiPolygon"):
                raise InvalidInput(f"grid {code}: geometry must be a (Multi)Polygon, got {g.geom_type}")
            codes.append(code)
            polys.append(ctx.to_metric(g))
            exc.append(props.get("exception"))
    if assignments is not None:
        if not codes:
            codes = sorted({str(v) for v in assignments.values() if v is not None})
            exc = [None] * len(codes)
        ag = atom_grid_from_codes(ctx, codes, assignments)
    else:
        ag = None
    if polys is None and ag is None:
        raise InvalidInput("give grids (GeoJSON polygons), assignments (building → grid), or a stored plan version")
    return PlanInput(codes, ag, polys, exc)


def check(
    conn: Connection,
    code: str,
    *,
    version: int | None = None,
    grids: dict | None = None,
    assignments: dict | None = None,
    rules: dict | None = None,
) -> dict:
    ctx = load_context(conn, code, rules=_rules(conn, code, rules))
    if grids is not None or assignments is not None:
        plan = plan_from_geojson(ctx, grids, assignments)
        meta = None
    else:
        plan, meta = load_plan(conn, ctx, version)
        if not plan.codes:
            raise NotFound(f"community {code} has no grids yet (no active plan): run `gisgov grids propose`")
    rep = public(validate(ctx, plan))
    rep["plan"] = {"version": meta["version"], "status": meta["status"]} if meta else None
    return rep


def feasibility(conn: Connection, code: str, *, rules: dict | None = None) -> dict:
    ctx = load_context(conn, code, rules=_rules(conn, code, rules))
    units = build_units(ctx.atoms, ctx.compounds, ctx.graph, ctx.rules)
    f = feas_mod.check(units.graph, units.households, units.people, ctx.rules, codes=units.code)
    return {
        "community": code,
        "feasible": f.feasible,
        "k_min": f.k_min,
        "k_max": f.k_max,
        "households": f.households,
        "people": f.people,
        "units": units.n,
        "findings": findings_json(ctx, units, f),
        "summary": f.summary(),
        "rules": ctx.rules.to_dict(),
    }


def propose_plan(
    conn: Connection,
    code: str,
    *,
    rules: dict | None = None,
    lock: list[str] | None = None,
    method: str = "auto",
    seed: int = 0,
    time_limit_s: float = 10.0,
    closest: bool = False,
    save: bool = False,
    author: str | None = None,
    note: str | None = None,
) -> dict:
    """Draft a plan; with ``save`` store it as a draft whose parent is the active version read before the
    solver started (an activation during the solve then shows up as a conflict at activation)."""
    ctx = load_context(conn, code, rules=_rules(conn, code, rules))
    parent = started_on(conn, code)
    locked = {}
    if lock:
        active, _ = load_plan(conn, ctx, None)
        for g in lock:
            if g not in active.codes:
                raise InvalidInput(f"cannot lock grid {g}: not a grid of community {code}'s active plan")
            locked[g] = np.flatnonzero(active.atom_grid == active.codes.index(g))
    p = propose(ctx, locked=locked, method=method, seed=seed, time_limit_s=time_limit_s, closest=closest)
    out = p.public()
    if p.plan is not None:
        out["geojson"] = plan_geojson(ctx, p.plan, p.report)
        if save:
            out["parent_version"] = parent
            out["version"] = save_plan(
                conn,
                ctx,
                p.plan,
                author=author,
                note=note or f"proposed ({p.method})",
                method=p.method,
                parent_version=parent,
                stats={"summary": p.report["summary"], "optimal": p.optimal, "status": p.status, "seconds": p.seconds},
            )
    return out


def repair_plan(
    conn: Connection,
    code: str,
    *,
    version: int | None = None,
    save: bool = False,
    author: str | None = None,
    time_limit_s: float = 5.0,
    seed: int = 0,
) -> dict:
    """Repair plan ``version`` (None = active). A saved repair of a draft keeps the draft's parent; a repair
    of the active (or an archived) plan has the active version read before the solver started as parent."""
    ctx = load_context(conn, code)
    parent = started_on(conn, code, version)
    plan, meta = load_plan(conn, ctx, version)
    if not plan.codes:
        raise NotFound(f"community {code} has no grids to repair")
    res = repair(ctx, plan, seed=seed, time_limit_s=time_limit_s)
    out = {k: v for k, v in res.items() if k not in ("plan", "report")}
    out["report"] = public(res["report"])
    out["geojson"] = plan_geojson(ctx, res["plan"], res["report"])
    out["from_version"] = meta["version"] if meta else None
    if save:
        out["parent_version"] = parent
        out["version"] = save_plan(
            conn,
            ctx,
            res["plan"],
            author=author,
            method=f"repair ({res['method']})",
            parent_version=parent,
            note=f"repair of version {out['from_version']}: {res['buildings_moved']} building(s) moved",
            stats={"summary": res["report"]["summary"]},
        )
    return out


def plan_geojson(ctx, plan: PlanInput, report: dict) -> dict:
    """Grids as a GeoJSON FeatureCollection (lon/lat) with their statistics."""
    polys = report["_polygons"]
    feats = []
    for k, g in enumerate(report["grids"]):
        if polys[k] is None or polys[k].is_empty:
            continue
        feats.append(
            {
                "type": "Feature",
                "id": g["code"],
                "properties": g,
                "geometry": shapely.geometry.mapping(ctx.to_lonlat(polys[k])),
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def stored_plan_geojson(conn: Connection, code: str, version: int | None) -> dict:
    ctx = load_context(conn, code)
    plan, meta = load_plan(conn, ctx, version)
    rep = validate(ctx, plan)
    fc = plan_geojson(ctx, plan, rep)
    fc["plan"] = {k: (str(v) if k in ("created", "activated") and v else v) for k, v in (meta or {}).items()}
    fc["breaks"] = rep["breaks"]
    fc["summary"] = rep["summary"]
    return fc


# --- the `gisgov demo` step ---------------------------------------------------------------------

#: per-community budget of the exact solver in the demo (deterministic seconds): 12 communities
#: stay within about a minute on two cores
DEMO_TIME_LIMIT_S = 3.0
DEMO_AUTHOR = "gisgov demo"
STAFF_NOTE = "网格员为合成数据 grid staff are synthetic (一格三员: 网格长, 专职网格员, 兼职网格员)"
RULE_ZH = {
    "stranded": "夹心小区",
    "no_plan": "无整小区方案",
    "piece_infeasible": "飞地",
    "bottleneck": "瓶颈",
    "unit_over_max": "单元超限",
    "count_range": "户数不符",
    "not_found": "未找到方案",
}


def without_active_plan(conn: Connection) -> list[str]:
    """Communities (codes) that have no active grid plan."""
    return [
        r[0]
        for r in conn.execute(
            text("""
        SELECT c.code FROM community c WHERE NOT EXISTS (
            SELECT 1 FROM grid_plan p WHERE p.community_code = c.code AND p.status = 'active')
        ORDER BY c.code""")
        )
    ]


def plan_and_activate(
    conn: Connection, code: str, *, time_limit_s: float = DEMO_TIME_LIMIT_S, author: str = DEMO_AUTHOR
) -> dict:
    """Propose a plan for ``code`` (the closest plan when none obeys every rule), save it and activate
    it, forcing the activation only for a closest plan. Runs in the caller's transaction."""
    from gisgov.gridding import plans

    out = propose_plan(
        conn,
        code,
        closest=True,
        time_limit_s=time_limit_s,
        save=True,
        author=author,
        note="演示自动划分 proposed by the demo",
    )
    if "version" not in out:
        raise InvalidInput(f"community {code}: no plan could be drafted ({out['status']})")
    forced = out["status"] != "ok"
    act = plans.activate(conn, code, out["version"], force=forced)
    s = out["report"]["summary"]
    reason = next((f for f in out["findings"] if f.get("rule")), None)
    return {
        "community": code,
        "version": out["version"],
        "status": out["status"],
        "forced": forced,
        "grids": s.get("grids", 0),
        "within_bounds": s.get("within_bounds", 0),
        "method": out.get("method"),
        "seconds": out.get("seconds"),
        "breaks": act["breaks_count"],
        "split_compounds": sum(1 for b in out["report"]["breaks"] if b["rule"] == "split_compound"),
        "reason_rule": reason["rule"] if reason else None,
        "reason": reason["message"] if reason else None,
    }


def staff_active_grids(conn: Connection, vault=None, *, seed: int = 0) -> dict:
    """Give every active grid without staff synthetic staff (一格三员: 网格长, 专职网格员, 1–2
    兼职网格员); phones stored as ciphertext + masked form only. Returns counts of grids and people."""
    from gisgov.sample.staff import SOURCE, synthetic_staff
    from gisgov.security.pii import Vault

    grids = conn.execute(
        text("""
        SELECT g.id, g.code FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active'
        WHERE NOT EXISTS (SELECT 1 FROM grid_staff s WHERE s.grid_id = g.id) ORDER BY g.code""")
    ).all()
    if not grids:
        return {"grids": 0, "staff": 0}
    vault = vault or Vault.from_settings()
    ids = {code: gid for gid, code in grids}
    staff = synthetic_staff([code for _, code in grids], seed=seed)
    rows = []
    for r in staff.itertuples():
        cipher, masked = vault.protect_phone(r.phone)
        rows.append({"g": ids[r.grid_code], "role": r.role, "name": r.name, "c": cipher, "m": masked})
    conn.execute(
        text(
            "INSERT INTO grid_staff (grid_id, role, name, phone_cipher, phone_masked) VALUES (:g, :role, :name, :c, :m)"
        ),
        rows,
    )
    conn.execute(
        text("""INSERT INTO gisgov_meta (key, value) VALUES ('grid_staff', CAST(:v AS jsonb))
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"""),
        {"v": json.dumps({"synthetic": True, "source": SOURCE, "note": STAFF_NOTE}, ensure_ascii=False)},
    )
    return {"grids": len(grids), "staff": len(rows)}


def demo_step(url: str, console, *, time_limit_s: float = DEMO_TIME_LIMIT_S, vault=None) -> list[dict]:
    """`gisgov demo` step: every community without an active grid plan gets one (proposed; the
    closest plan, force-activated, where no plan obeys every rule), then every active grid without
    staff gets synthetic staff. Idempotent: a second run finds nothing to do."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from gisgov.db.engine import make_engine
    from gisgov.errors import GisgovError

    eng = make_engine(url)
    results: list[dict] = []
    t0 = time.perf_counter()
    try:
        with eng.connect() as conn:
            todo = without_active_plan(conn)
            names = dict(conn.execute(text("SELECT code, name FROM community")).all())
        if todo:
            with Progress(
                TextColumn("{task.description:<34}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                task = bar.add_task("网格划分 grid plans", total=len(todo))
                for code in todo:
                    bar.update(task, description=f"网格划分 grid plans: {code}")
                    try:
                        with eng.begin() as conn:
                            results.append(plan_and_activate(conn, code, time_limit_s=time_limit_s))
                    except GisgovError as exc:
                        results.append(
                            {
                                "community": code,
                                "status": "error",
                                "reason": str(exc),
                                "grids": 0,
                                "within_bounds": 0,
                                "forced": False,
                                "reason_rule": "error",
                            }
                        )
                    bar.advance(task)
                bar.update(task, description="网格划分 grid plans ✓")
        with eng.begin() as conn:
            staffed = staff_active_grids(conn, vault)
    finally:
        eng.dispose()
    seconds = time.perf_counter() - t0
    if not todo and not staffed["grids"]:
        console.print("[green]✓[/] 网格 grids: every community already has an active plan and staffed grids")
        return results
    if results:
        t = Table(title="网格方案 grid plans · 示例城（合成 synthetic）")
        for c in ("社区 community", "网格 grids", "符合 within", "方案 plan", "说明 note"):
            t.add_column(c)
        for r in results:
            plan = {"ok": "[green]ok[/]", "closest": "[yellow]closest→forced[/]"}.get(
                r["status"], f"[red]{r['status']}[/]"
            )
            note = ""
            if r["status"] != "ok" and r.get("reason_rule"):
                note = f"{RULE_ZH.get(r['reason_rule'], '')} {r['reason_rule']}"
            name = names.get(r["community"], "").replace("（合成）", "")
            t.add_row(f"{name} {r['community']}", str(r["grids"]), f"{r['within_bounds']}/{r['grids']}", plan, note)
        console.print(t)
        for r in results:
            if r["status"] != "ok" and r.get("reason"):
                console.print(
                    f"  [yellow]![/] {r['community']} 无整小区方案 no plan keeps every compound whole: "
                    f"{r['reason']}. Activated with force: the closest plan, "
                    f"{r['within_bounds']}/{r['grids']} grids within the bounds, "
                    f"{r.get('split_compounds', 0)} compound(s) split."
                )
    forced = [r["community"] for r in results if r.get("forced")]
    errors = [r["community"] for r in results if r["status"] == "error"]
    console.print(
        f"[green]✓[/] 网格 grids: {sum(r['grids'] for r in results)} grids in {len(results) - len(errors)} "
        f"communities activated, {staffed['staff']} synthetic staff on {staffed['grids']} grids "
        f"({seconds:.1f} s)"
        + (f"; [yellow]closest plans force-activated (compounds split): {', '.join(forced)}[/]" if forced else "")
        + (f"; [red]failed: {', '.join(errors)}[/]" if errors else "")
    )
    return results
