"""Gridding operations on the database, shared by the CLI and the API (JSON-ready results)."""

from __future__ import annotations

import numpy as np
import shapely
from sqlalchemy import Connection, text

from gisgov.errors import InvalidInput, NotFound
from gisgov.gridding import feasibility as feas_mod
from gisgov.gridding.io import atom_grid_from_codes, community_rules, load_context, load_plan, save_plan
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
            except Exception as exc_:  # noqa: BLE001
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


def check(conn: Connection, code: str, *, version: int | None = None, grids: dict | None = None,
          assignments: dict | None = None, rules: dict | None = None) -> dict:
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
    return {"community": code, "feasible": f.feasible, "k_min": f.k_min, "k_max": f.k_max,
            "households": f.households, "people": f.people, "units": units.n,
            "findings": findings_json(ctx, units, f), "summary": f.summary(), "rules": ctx.rules.to_dict()}


def propose_plan(conn: Connection, code: str, *, rules: dict | None = None, lock: list[str] | None = None,
                 method: str = "auto", seed: int = 0, time_limit_s: float = 10.0, closest: bool = False,
                 save: bool = False, author: str | None = None, note: str | None = None) -> dict:
    ctx = load_context(conn, code, rules=_rules(conn, code, rules))
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
            out["version"] = save_plan(conn, ctx, p.plan, author=author, note=note or f"proposed ({p.method})",
                                       method=p.method, stats={"summary": p.report["summary"], "optimal": p.optimal,
                                                               "status": p.status, "seconds": p.seconds})
    return out


def repair_plan(conn: Connection, code: str, *, version: int | None = None, save: bool = False,
                author: str | None = None, time_limit_s: float = 5.0, seed: int = 0) -> dict:
    ctx = load_context(conn, code)
    plan, meta = load_plan(conn, ctx, version)
    if not plan.codes:
        raise NotFound(f"community {code} has no grids to repair")
    res = repair(ctx, plan, seed=seed, time_limit_s=time_limit_s)
    out = {k: v for k, v in res.items() if k not in ("plan", "report")}
    out["report"] = public(res["report"])
    out["geojson"] = plan_geojson(ctx, res["plan"], res["report"])
    out["from_version"] = meta["version"] if meta else None
    if save:
        out["version"] = save_plan(conn, ctx, res["plan"], author=author, method=f"repair ({res['method']})",
                                   note=f"repair of version {out['from_version']}: {res['buildings_moved']} building(s) moved",
                                   stats={"summary": res["report"]["summary"]})
    return out


def plan_geojson(ctx, plan: PlanInput, report: dict) -> dict:
    """Grids as a GeoJSON FeatureCollection (lon/lat) with their statistics."""
    polys = report["_polygons"]
    feats = []
    for k, g in enumerate(report["grids"]):
        if polys[k] is None or polys[k].is_empty:
            continue
        feats.append({"type": "Feature", "id": g["code"], "properties": g,
                      "geometry": shapely.geometry.mapping(ctx.to_lonlat(polys[k]))})
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
