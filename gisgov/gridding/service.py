"""Gridding operations on the database, shared by the CLI and the API.

Every operation returns a typed result. Answers that are JSON only (``check``, ``feasibility``) are
TypedDicts. Answers that come with members that are not JSON (the chosen plan, grid polygons in the
metric CRS) are dataclasses: the JSON answer is :meth:`JsonResult.to_dict`, the other members are fields
of their own and never part of it. Such a result also reads like the mapping ``to_dict()`` gives
(``result["version"]``, ``result.get("status")``), so callers that only read the answer need not change.
Progress is reported through a plain ``progress(done, total)`` callback; output belongs to the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gisgov.errors import GisgovError, InvalidInput, NotFound
from gisgov.gridding import feasibility as feas_mod
from gisgov.gridding.context import CommunityContext
from gisgov.gridding.io import atom_grid_from_codes, community_rules, load_context, load_plan, save_plan, started_on
from gisgov.gridding.propose import findings_json, propose
from gisgov.gridding.repair import repair
from gisgov.gridding.rules import GridRules
from gisgov.gridding.units import build_units
from gisgov.gridding.validate import PlanInput, public, validate

JsonDict = dict[str, Any]
#: ``progress(done, total)``: called once before the first item (done = 0) and after each one
Progress = Callable[[int, int], None]


class JsonResult(Mapping[str, Any]):
    """A result whose JSON answer is :meth:`to_dict`; read-only mapping access reads that answer."""

    def to_dict(self) -> JsonDict:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass(frozen=True)
class ValidatedPlan:
    """A validator report split in two: its JSON part and the grid polygons (metric CRS, one per grid)."""

    report: JsonDict
    polygons: list[BaseGeometry | None]

    @classmethod
    def of(cls, raw: JsonDict) -> ValidatedPlan:
        return cls(report=public(raw), polygons=list(raw.get("_polygons") or []))


def validated(ctx: CommunityContext, plan: PlanInput) -> ValidatedPlan:
    return ValidatedPlan.of(validate(ctx, plan))


class CheckResult(TypedDict):
    """``check``: the validator's report of a plan (JSON only) and, for a stored plan, its version and status."""

    community: str
    rules: JsonDict
    ok: bool
    breaks_count: int
    grids: list[JsonDict]
    breaks: list[JsonDict]
    summary: JsonDict
    plan: JsonDict | None


class FeasibilityResult(TypedDict):
    """``feasibility``: whether any plan can obey the rules, the grid-count range, what prevents it."""

    community: str
    feasible: bool
    k_min: int
    k_max: int
    households: int
    people: int
    units: int
    findings: list[JsonDict]
    summary: str
    notes: list[str]
    unchecked: list[str]
    rules: JsonDict


@dataclass(frozen=True)
class PlanResult(JsonResult):
    """``propose_plan`` / ``repair_plan``: the answer, the plan drawn (not JSON) and, when saved, its version."""

    body: JsonDict
    plan: PlanInput | None = None
    geojson: JsonDict | None = None
    saved: bool = False
    version: int | None = None
    parent_version: int | None = None
    #: members a caller adds to the answer (``result["activated"] = True`` after activating it)
    extra: JsonDict = field(default_factory=dict)

    def to_dict(self) -> JsonDict:
        out = dict(self.body)
        if self.geojson is not None:
            out["geojson"] = self.geojson
        if self.saved:
            out["parent_version"] = self.parent_version
            out["version"] = self.version
        return out | self.extra

    def __setitem__(self, key: str, value: Any) -> None:
        self.extra[key] = value


@dataclass(frozen=True)
class StoredPlan(JsonResult):
    """``stored_plan_geojson``: a stored plan as GeoJSON with its row, rule breaks and summary."""

    geojson: JsonDict
    plan: JsonDict
    breaks: list[JsonDict]
    summary: JsonDict

    def to_dict(self) -> JsonDict:
        return {**self.geojson, "plan": self.plan, "breaks": self.breaks, "summary": self.summary}


def _reproject(transform: object, geom: BaseGeometry) -> BaseGeometry:
    """``ctx.to_metric`` / ``ctx.to_lonlat`` applied to one geometry (typed here)."""
    return cast(Callable[[BaseGeometry], BaseGeometry], transform)(geom)


def _rules(conn: Connection, code: str, overrides: Mapping[str, Any] | None) -> GridRules:
    clean = {k: v for k, v in (overrides or {}).items() if v is not None}
    return community_rules(conn, code, clean or None)


def communities(conn: Connection) -> list[str]:
    return [str(r[0]) for r in conn.execute(text("SELECT code FROM community ORDER BY code"))]


def plan_from_geojson(ctx: CommunityContext, fc: Any, assignments: Mapping[str, str | None] | None) -> PlanInput:
    """Validator input from a GeoJSON FeatureCollection of grid polygons (property ``code``) and/or a
    building-code → grid-code mapping."""
    codes: list[str] = []
    polys: list[BaseGeometry] | None = None
    exc: list[str | None] = []
    if fc is not None:
        feats = fc.get("features") if isinstance(fc, dict) else None
        if not isinstance(feats, list):
            raise InvalidInput("网格须为要素集合 grids must be a GeoJSON FeatureCollection")
        polys = []
        for i, f in enumerate(feats):
            props = f.get("properties") or {}
            code = str(props.get("code") or f.get("id") or f"#{i + 1}")
            try:
                g = shapely.geometry.shape(f["geometry"])
            except Exception as exc_:
                raise InvalidInput(f"网格几何无法读取 grid {code}: unreadable geometry ({exc_})") from exc_
            if g.geom_type not in ("Polygon", "MultiPolygon"):
                raise InvalidInput(f"网格几何须为面 grid {code}: geometry must be a (Multi)Polygon, got {g.geom_type}")
            codes.append(code)
            polys.append(_reproject(ctx.to_metric, g))
            exc.append(props.get("exception"))
    if assignments is not None:
        if not codes:
            codes = sorted({str(v) for v in assignments.values() if v is not None})
            exc = [None] * len(codes)
        ag = atom_grid_from_codes(ctx, codes, dict(assignments))  # type: ignore[arg-type]
    else:
        ag = None
    if polys is None and ag is None:
        raise InvalidInput(
            "缺少网格方案 give grids (GeoJSON polygons), assignments (building → grid), or a stored plan version"
        )
    return PlanInput(codes, ag, polys, exc)


def check(
    conn: Connection,
    code: str,
    *,
    version: int | None = None,
    grids: JsonDict | None = None,
    assignments: Mapping[str, str | None] | None = None,
    rules: Mapping[str, Any] | None = None,
) -> CheckResult:
    ctx = load_context(conn, code, rules=_rules(conn, code, rules))
    meta: JsonDict | None = None
    if grids is not None or assignments is not None:
        plan = plan_from_geojson(ctx, grids, assignments)
    else:
        plan, meta = load_plan(conn, ctx, version)
        if not plan.codes:
            raise NotFound(f"community {code} has no grids yet (no active plan): run `gisgov grids propose`")
    report = validated(ctx, plan).report
    return {
        "community": report["community"],
        "rules": report["rules"],
        "ok": report["ok"],
        "breaks_count": report["breaks_count"],
        "grids": report["grids"],
        "breaks": report["breaks"],
        "summary": report["summary"],
        "plan": {"version": meta["version"], "status": meta["status"]} if meta else None,
    }


def feasibility(conn: Connection, code: str, *, rules: Mapping[str, Any] | None = None) -> FeasibilityResult:
    ctx = load_context(conn, code, rules=_rules(conn, code, rules))
    units = build_units(ctx.atoms, ctx.compounds, ctx.graph, ctx.rules)
    f = feas_mod.check(
        units.graph,
        units.households,
        units.people,
        ctx.rules,
        codes=units.code,
        people_estimated=units.people_estimated,
    )
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
        "notes": list(f.notes),
        "unchecked": [str(units.code[u]) for u in f.unchecked],
        "rules": ctx.rules.to_dict(),
    }


def propose_plan(
    conn: Connection,
    code: str,
    *,
    rules: Mapping[str, Any] | None = None,
    lock: list[str] | None = None,
    method: str = "auto",
    seed: int = 0,
    time_limit_s: float = 10.0,
    closest: bool = False,
    save: bool = False,
    author: str | None = None,
    note: str | None = None,
) -> PlanResult:
    """Draft a plan; with ``save`` store it as a draft whose parent is the active version read before the
    solver started (an activation during the solve then shows up as a conflict at activation)."""
    ctx = load_context(conn, code, rules=_rules(conn, code, rules))
    parent = started_on(conn, code)
    locked: dict[str, np.ndarray] = {}
    if lock:
        active, _ = load_plan(conn, ctx, None)
        for g in lock:
            if g not in active.codes or active.atom_grid is None:
                raise InvalidInput(f"无法锁定网格 cannot lock grid {g}: not a grid of community {code}'s active plan")
            locked[g] = np.flatnonzero(active.atom_grid == active.codes.index(g))
    p = propose(ctx, locked=locked, method=method, seed=seed, time_limit_s=time_limit_s, closest=closest)
    if p.plan is None or p.report is None:
        return PlanResult(body=p.public())
    geojson = plan_geojson(ctx, ValidatedPlan.of(p.report))
    if not save:
        return PlanResult(body=p.public(), plan=p.plan, geojson=geojson)
    version = save_plan(
        conn,
        ctx,
        p.plan,
        author=author,
        note=note or f"proposed ({p.method})",
        method=p.method,
        parent_version=parent,
        stats={"summary": p.report["summary"], "optimal": p.optimal, "status": p.status, "seconds": p.seconds},
    )
    return PlanResult(body=p.public(), plan=p.plan, geojson=geojson, saved=True, version=version, parent_version=parent)


def repair_plan(
    conn: Connection,
    code: str,
    *,
    version: int | None = None,
    save: bool = False,
    author: str | None = None,
    time_limit_s: float = 5.0,
    seed: int = 0,
) -> PlanResult:
    """Repair plan ``version`` (None = active). A saved repair of a draft keeps the draft's parent; a repair
    of the active (or an archived) plan has the active version read before the solver started as parent."""
    ctx = load_context(conn, code)
    parent = started_on(conn, code, version)
    plan, meta = load_plan(conn, ctx, version)
    if not plan.codes:
        raise NotFound(f"community {code} has no grids to repair")
    res = repair(ctx, plan, seed=seed, time_limit_s=time_limit_s)
    checked = ValidatedPlan.of(res["report"])
    body: JsonDict = {k: v for k, v in res.items() if k not in ("plan", "report")}
    body["report"] = checked.report
    from_version = meta["version"] if meta else None
    geojson = plan_geojson(ctx, checked)
    body["from_version"] = from_version
    if not save:
        return PlanResult(body=body, plan=res["plan"], geojson=geojson)
    saved = save_plan(
        conn,
        ctx,
        res["plan"],
        author=author,
        method=f"repair ({res['method']})",
        parent_version=parent,
        note=f"repair of version {from_version}: {res['buildings_moved']} building(s) moved",
        stats={"summary": checked.report["summary"]},
    )
    return PlanResult(body=body, plan=res["plan"], geojson=geojson, saved=True, version=saved, parent_version=parent)


def plan_geojson(ctx: CommunityContext, checked: ValidatedPlan) -> JsonDict:
    """Grids as a GeoJSON FeatureCollection (lon/lat) with their statistics."""
    polys = checked.polygons
    feats = []
    for k, g in enumerate(checked.report["grids"]):
        poly = polys[k] if k < len(polys) else None
        if poly is None or poly.is_empty:
            continue
        feats.append(
            {
                "type": "Feature",
                "id": g["code"],
                "properties": g,
                "geometry": shapely.geometry.mapping(_reproject(ctx.to_lonlat, poly)),
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def stored_plan_geojson(conn: Connection, code: str, version: int | None) -> StoredPlan:
    ctx = load_context(conn, code)
    plan, meta = load_plan(conn, ctx, version)
    checked = validated(ctx, plan)
    return StoredPlan(
        geojson=plan_geojson(ctx, checked),
        plan={k: (str(v) if k in ("created", "activated") and v else v) for k, v in (meta or {}).items()},
        breaks=checked.report["breaks"],
        summary=checked.report["summary"],
    )


# --- the `gisgov demo` step ---------------------------------------------------------------------

#: per-community budget of the exact solver in the demo (deterministic seconds): 12 communities
#: stay within about a minute on two cores
DEMO_TIME_LIMIT_S = 3.0
DEMO_AUTHOR = "gisgov demo"
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
        str(r[0])
        for r in conn.execute(
            text("""
        SELECT c.code FROM community c WHERE NOT EXISTS (
            SELECT 1 FROM grid_plan p WHERE p.community_code = c.code AND p.status = 'active')
        ORDER BY c.code""")
        )
    ]


@dataclass(frozen=True)
class DemoPlanOutcome(JsonResult):
    """One community's plan in the demo: proposed, saved and activated (forced for a closest plan), or
    ``status == "error"`` with the reason."""

    community: str
    status: str
    grids: int = 0
    within_bounds: int = 0
    forced: bool = False
    version: int | None = None
    method: str | None = None
    seconds: float | None = None
    breaks: int = 0
    split_compounds: int = 0
    reason_rule: str | None = None
    reason: str | None = None

    def to_dict(self) -> JsonDict:
        return {
            "community": self.community,
            "version": self.version,
            "status": self.status,
            "forced": self.forced,
            "grids": self.grids,
            "within_bounds": self.within_bounds,
            "method": self.method,
            "seconds": self.seconds,
            "breaks": self.breaks,
            "split_compounds": self.split_compounds,
            "reason_rule": self.reason_rule,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class StaffedGrids(JsonResult):
    """Grids that were given synthetic staff, and how many people."""

    grids: int
    staff: int

    def to_dict(self) -> JsonDict:
        return {"grids": self.grids, "staff": self.staff}


@dataclass(frozen=True)
class DemoOutcome:
    """The demo's grid step: one outcome per community that had no active plan, the staffing, community
    names (code → name) and the seconds it took."""

    results: list[DemoPlanOutcome]
    staffed: StaffedGrids
    names: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def todo(self) -> int:
        return len(self.results)


def plan_and_activate(
    conn: Connection, code: str, *, time_limit_s: float = DEMO_TIME_LIMIT_S, author: str = DEMO_AUTHOR
) -> DemoPlanOutcome:
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
    if out.version is None:
        raise InvalidInput(f"无法起草方案 community {code}: no plan could be drafted ({out.body['status']})")
    status = str(out.body["status"])
    forced = status != "ok"
    act = plans.activate(conn, code, out.version, force=forced)
    report = out.body["report"]
    s = report["summary"]
    reason = next((f for f in out.body["findings"] if f.get("rule")), None)
    return DemoPlanOutcome(
        community=code,
        version=out.version,
        status=status,
        forced=forced,
        grids=int(s.get("grids", 0)),
        within_bounds=int(s.get("within_bounds", 0)),
        method=out.body.get("method"),
        seconds=out.body.get("seconds"),
        breaks=int(act["breaks_count"]),
        split_compounds=sum(1 for b in report["breaks"] if b["rule"] == "split_compound"),
        reason_rule=reason["rule"] if reason else None,
        reason=reason["message"] if reason else None,
    )


def plan_communities(
    url: str,
    *,
    time_limit_s: float = DEMO_TIME_LIMIT_S,
    staff: Callable[[Connection], StaffedGrids] | None = None,
    progress: Progress | None = None,
) -> DemoOutcome:
    """The demo's grid step, without output: every community without an active grid plan gets one
    (proposed; the closest plan, force-activated, where no plan obeys every rule), each in its own
    transaction, then ``staff(conn)`` (e.g. the sample city's synthetic staffing) in one more. Idempotent: a second run
    finds nothing to do. ``progress(done, total)`` is called before the first community and after each."""
    from gisgov.db.engine import make_engine

    eng = make_engine(url)
    results: list[DemoPlanOutcome] = []
    t0 = time.perf_counter()
    try:
        with eng.connect() as conn:
            todo = without_active_plan(conn)
            names = {str(c): str(n or "") for c, n in conn.execute(text("SELECT code, name FROM community")).all()}
        if todo and progress is not None:
            progress(0, len(todo))
        for done, code in enumerate(todo, start=1):
            try:
                with eng.begin() as conn:
                    results.append(plan_and_activate(conn, code, time_limit_s=time_limit_s))
            except GisgovError as exc:
                results.append(DemoPlanOutcome(community=code, status="error", reason=str(exc), reason_rule="error"))
            if progress is not None:
                progress(done, len(todo))
        staffed = StaffedGrids(grids=0, staff=0)
        if staff is not None:
            with eng.begin() as conn:
                staffed = staff(conn)
    finally:
        eng.dispose()
    return DemoOutcome(results=results, staffed=staffed, names=names, seconds=time.perf_counter() - t0)
