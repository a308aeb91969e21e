"""`gisgov coverage …`: service circles 便民服务圈 — compute, report, gaps, siting, what-if, map.

Exit codes (:mod:`gisgov.cli.common`): 0 done, 1 refused, 2 usage error, 3 database unavailable or not
migrated, 4 not found (no such area, category or facility).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gisgov.cli import common
from gisgov.cli.common import EXIT_USAGE, error, fail
from gisgov.errors import GisgovError

if TYPE_CHECKING:
    from gisgov.coverage.service import CoverageService

app = common.group("便民服务圈 Service circles: who reaches each service within 5/10/15/30 minutes on foot.")
console = common.LazyConsole()

STAGES = {"graph": "路网 walking graph", "snap": "接入 snapping buildings", "distances": "距离 distances per category"}
CATALOG_OPT = typer.Option(
    None,
    "--catalog",
    exists=True,
    dir_okay=False,
    help="Service-circle catalog YAML (default: GISGOV_LAYERS_DIR/service_circles.yaml).",
)


def _service(catalog: Path | None) -> CoverageService:
    from gisgov.coverage.service import CoverageService

    return CoverageService(catalog)


NO_FACILITY = "无此类设施数据 no facility in the data"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


@app.command()
def compute(
    category: list[str] = typer.Option(None, "--category", "-c", help="Only these service categories (repeatable)."),
    profile: str = typer.Option(
        None, "--profile", "-p", help="Profile shown in the summary (all profiles are always stored)."
    ),
    catalog: Path = CATALOG_OPT,
    show_problems: int = typer.Option(10, help="List up to this many flagged buildings (long / disconnected snaps)."),
    dask: bool = typer.Option(
        False, "--dask", help="Run on Dask, one task per street (a local cluster unless --scheduler is given)."
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="With --dask: worker processes of the local cluster."),
    scheduler: str = typer.Option(
        None, "--scheduler", help="With --dask: address of an existing Dask scheduler, e.g. tcp://host:8786."
    ),
) -> None:
    """计算 Compute distances building → nearest facility of every category and store them with the figures."""
    from rich.table import Table

    if (scheduler or workers != 2) and not dask:
        raise fail("--workers / --scheduler 需要 --dask: they only apply with --dask", code=EXIT_USAGE)
    if dask and category:
        raise fail("--dask 计算全部类别 --dask computes every category: drop --category", code=EXIT_USAGE)
    eng = common.engine()
    try:
        svc = _service(catalog)
        cat = svc.catalog()
        if profile:
            cat.profile(profile)
        if dask:
            res = _compute_dask(eng, cat, workers, scheduler)
        else:
            with common.progress(console.get()) as p, eng.begin() as conn:
                res = svc.compute(conn, category or None, progress=common.StageBars(p, STAGES))
    except GisgovError as exc:
        raise error(exc) from None
    finally:
        eng.dispose()
    if res.method != "network":
        console.print(
            "[bold yellow]⚠ 无步行路网：直线距离 × 绕行系数 no walking network: straight line × detour factor "
            f"{cat.network.detour_factor} (not a walk)[/]"
        )
    console.print(
        f"[green]✓[/] run {res.run_id}: {res.categories} categories × {res.buildings} buildings, "
        f"{res.facilities} facilities, {res.rows_written} rows, method={res.method}"
    )
    secs = ", ".join(f"{k} {v:.2f} s" for k, v in res.seconds.items())
    console.print(f"  耗时 time: {secs}")
    net = res.snap.get("network", {})
    if net:
        console.print(
            f"  路网 network: {net['nodes']} nodes, {net['edges']} edges, {net['components']} component(s); "
            f"{net.get('minor_component_edges', 0)} edges on disconnected pieces (reported, not dropped)"
        )
        frags = net.get("fragments") or []
        if frags:
            longest = ", ".join(f"{f['length_m']:.0f} m" for f in frags[:5])
            console.print(
                f"  孤立小路网 fragments: {net.get('minor_components', len(frags))}, "
                f"{net.get('minor_component_km', 0):.2f} km in all (longest: {longest}); buildings within "
                f"{cat.network.fragment_extra_m:.0f} m more of the main network join it (main_preferred)"
            )
    flags = {k: v for k, v in res.snap.items() if isinstance(v, int) and k not in ("buildings",) and v}
    if flags:
        console.print("  接入标记 snap flags: " + ", ".join(f"{k}={v}" for k, v in flags.items()))
    if len(res.problems) and show_problems:
        t = Table(title="需核查的楼栋 Buildings to check (snap flags)")
        for c in ("building_id", "code", "access_m", "flags"):
            t.add_column(c)
        for r in res.problems.head(show_problems).itertuples(index=False):
            t.add_row(str(r.building_id), str(r.code), f"{r.access_m:.1f}", r.flags)
        console.print(t)


def _compute_dask(eng: Any, cat: Any, workers: int, scheduler: str | None) -> Any:
    """The Dask path: a LocalCluster of ``workers`` processes, or the scheduler at ``scheduler``."""
    from gisgov.coverage import dask_batch

    cluster = None
    if scheduler:
        from dask.distributed import Client

        client = Client(scheduler)  # type: ignore[no-untyped-call]
        where = f"scheduler {scheduler}"
    else:
        client, cluster = dask_batch.local_client(workers=workers)
        where = f"local cluster, {workers} worker processes"
    try:
        console.print(f"Dask: {where} ({len(client.scheduler_info().get('workers', {}))} workers)")
        with eng.begin() as conn:
            res = dask_batch.compute(conn, client, cat)
    finally:
        client.close()  # type: ignore[no-untyped-call]
        if cluster is not None:
            cluster.close()
    st = res.streets
    console.print(
        f"  街道任务 street tasks: {len(st)}; halo {st['halo_m'].min():.0f}–{st['halo_m'].max():.0f} m, "
        f"widened {int(st['widened'].sum())} time(s); slowest task {st['seconds'].max():.2f} s"
    )
    return res


@app.command()
def report(
    level: str = typer.Option("street", help="street | community | grid | compound"),
    code: str = typer.Option(..., help="Code of the street / community / grid / compound."),
    profile: str = typer.Option("standard", "--profile", "-p", help="Walking profile (standard, elderly …)."),
    measure: str = typer.Option("households", help="Share of: buildings | households | residents."),
    category: list[str] = typer.Option(None, "--category", "-c", help="Only these categories (repeatable)."),
    catalog: Path = CATALOG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """报告 Coverage of one area: share within each circle per category, complete circles, special groups."""
    if measure not in ("buildings", "households", "residents"):
        raise fail(f"measure {measure!r} must be buildings, households or residents", EXIT_USAGE)
    from rich.table import Table

    eng = common.engine()
    try:
        svc = _service(catalog)
        with eng.begin() as conn:
            s = svc.summary(conn, level, code, profile)
    except GisgovError as exc:
        raise error(exc) from None
    finally:
        eng.dispose()
    if as_json:
        typer.echo(json.dumps(s, ensure_ascii=False, indent=1, default=float))
        return
    rows = s["rows"]
    if category:
        rows = [r for r in rows if r["item_kind"] == "complete" or r["item"] in category]
    circles = list(dict.fromkeys(r["circle"] for r in rows if r["item_kind"] == "category"))
    t = Table(
        title=f"便民服务圈覆盖 Service-circle coverage — {level} {code} · profile {profile} · "
        f"share of {measure} ({'stored' if s['stored'] else 'computed in memory, not stored'})"
    )
    t.add_column("类别 category")
    for c in circles:
        b = next(r["budget_m"] for r in rows if r["circle"] == c)
        t.add_column(f"{c} (≤{b:.0f} m)", justify="right")
    for item in dict.fromkeys(r["item"] for r in rows if r["item_kind"] == "category"):
        mine = {r["circle"]: r for r in rows if r["item"] == item and r["item_kind"] == "category"}
        first = next(iter(mine.values()))
        if first.get("no_facility"):
            t.add_row(f"{first['name_zh']} {first['name_en']}", *[NO_FACILITY] * len(circles))
            continue
        t.add_row(
            f"{first['name_zh']} {first['name_en']}",
            *[_pct(mine[c][f"share_{measure}"]) if c in mine else "" for c in circles],
        )
    console.print(t)
    none = [r for r in rows if r["item_kind"] == "category" and r.get("no_facility")]
    if none:
        names = ", ".join(dict.fromkeys(f"{r['name_zh']} {r['name_en']}" for r in none))
        console.print(
            f"[yellow]⚠ {NO_FACILITY}: {names} — 覆盖率为缺数据而非服务缺口 their 0 % is missing data, not a gap[/]"
        )
    comp = [r for r in rows if r["item_kind"] == "complete"]
    if comp:
        t2 = Table(title="完整生活圈 Complete circles (every required category within reach; tiers cumulative)")
        for c in ("standard", "tier", f"share of {measure}", "in / total"):
            t2.add_column(c)
        for r in comp:
            share = _pct(r[f"share_{measure}"])
            if r.get("no_facility"):
                share += f" ({NO_FACILITY}: {', '.join(r.get('no_facility_categories') or [])})"
            t2.add_row(
                f"{r['name_zh']} {r['name_en']}",
                r["circle"],
                share,
                f"{r[measure + '_in']:.0f} / {r[measure]:.0f}",
            )
        console.print(t2)
    if s["special_groups"]:
        t3 = Table(title="特殊人群 Special groups beyond their circle")
        for c in ("group", "category", "profile", "circle", "beyond / residents"):
            t3.add_column(c)
        for g in s["special_groups"]:
            t3.add_row(g["group_code"], g["category"], g["profile"], g["circle"], f"{g['beyond']} / {g['residents']}")
        console.print(t3)
    if s["method"] != "network":
        console.print("[yellow]⚠ 直线距离 × 绕行系数 straight line × detour factor: no walking network[/]")


@app.command()
def site(
    category: str = typer.Option(..., "--category", "-c", help="Service category to site."),
    k: int = typer.Option(3, "--k", min=1, help="Number of new sites (maximal covering)."),
    fewest: bool = typer.Option(
        False, "--fewest", help="Set covering: the fewest sites that cover everyone coverable."
    ),
    circle: str = typer.Option("c15", help="Circle whose budget defines coverage."),
    profile: str = typer.Option("standard", "--profile", "-p"),
    level: str = typer.Option(None, help="Limit demand and candidates to this level … (street / community / grid)."),
    code: str = typer.Option(None, help="… and code."),
    candidates: str = typer.Option("buildings", help="buildings | nodes"),
    points: Path = typer.Option(
        None, exists=True, dir_okay=False, help="Candidate sites file (GeoJSON/GeoPackage points, e.g. vacant parcels)."
    ),
    catalog: Path = CATALOG_OPT,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """选址 Where to put new facilities: best k sites (MCLP) or fewest sites for full coverage (LSCP)."""
    pts = None
    if points:
        import geopandas as gpd

        g = gpd.read_file(points).to_crs(4490)
        pts = [(p.x, p.y) for p in g.geometry.representative_point()]
    from rich.table import Table

    eng = common.engine()
    try:
        svc = _service(catalog)
        with eng.begin() as conn:
            r = svc.site(
                conn,
                category,
                k=None if fewest else k,
                circle=circle,
                profile=profile,
                level=level,
                code=code,
                candidates=candidates,
                points=pts,
            )
    except GisgovError as exc:
        raise error(exc) from None
    finally:
        eng.dispose()
    if as_json:
        typer.echo(json.dumps(r, ensure_ascii=False, indent=1, default=float))
        return
    t = Table(
        title=f"选址建议 Suggested sites — {r['name_zh']} {r['name_en']} · {circle} (≤{r['budget_m']:.0f} m) · "
        f"{r['problem'].upper()} · {r['solver']}{' optimal' if r['optimal'] else ''}"
    )
    for c in ("#", "candidate", "lon", "lat", "households gained", "buildings gained"):
        t.add_column(c, justify="right")
    for s in r["sites"]:
        t.add_row(
            str(s["rank"]),
            f"{s['kind']} {s['id']}",
            f"{s['lon']:.6f}",
            f"{s['lat']:.6f}",
            f"{s['households_gained']:.0f}",
            str(s["buildings_gained"]),
        )
    console.print(t)
    console.print(
        f"未覆盖 beyond the circle now: {r['demand_buildings']} buildings / {r['demand_households']:.0f} households; "
        f"newly covered: {r['covered_buildings']} / {r['covered_households']:.0f}; "
        f"unreachable from any candidate: {r['uncoverable_buildings']}; "
        f"{r['candidates']} candidates, {r['seconds'].get('total', 0):.2f} s"
    )
    for w in r.get("warnings") or []:
        console.print(f"[yellow]⚠ {common.escape(w)}[/]")


def _lonlat(v: str) -> tuple[float, float]:
    try:
        lon, lat = (float(x) for x in v.split(","))
    except ValueError:
        raise fail(f"{v!r} is not LON,LAT", EXIT_USAGE) from None
    return lon, lat


@app.command()
def whatif(
    category: str = typer.Option(..., "--category", "-c"),
    add: str = typer.Option(None, help="Add a facility at LON,LAT."),
    remove: int = typer.Option(None, help="Remove the facility with this id."),
    move: int = typer.Option(None, help="Move the facility with this id (with --to)."),
    to: str = typer.Option(None, help="New place LON,LAT for --move."),
    level: str = typer.Option(None),
    code: str = typer.Option(None),
    commit: bool = typer.Option(False, "--commit", help="Write the edit and update the stored results."),
    kind: str = typer.Option(None, help="facility.kind of an added facility (e.g. 社区卫生服务站)."),
    catalog: Path = CATALOG_OPT,
) -> None:
    """假设 What-if: add, move or remove one facility and see the coverage change (only its category)."""
    given = {"add": add, "remove": remove, "move": move}
    ops = [o for o, v in given.items() if v is not None]
    if len(ops) != 1:
        raise fail("give exactly one of --add, --remove, --move", EXIT_USAGE)
    op = ops[0]
    kw = {}
    if op == "add":
        kw["lon"], kw["lat"] = _lonlat(add)
    elif op == "move":
        if not to:
            raise fail("--move needs --to LON,LAT", EXIT_USAGE)
        kw["facility_id"] = move
        kw["lon"], kw["lat"] = _lonlat(to)
    else:
        kw["facility_id"] = remove
    from rich.table import Table

    eng = common.engine()
    try:
        svc = _service(catalog)
        with eng.begin() as conn:
            r = svc.whatif(conn, category, op, commit=commit, level=level, code=code, kind=kind, **kw)
    except GisgovError as exc:
        raise error(exc) from None
    finally:
        eng.dispose()
    t = Table(
        title=f"假设 What-if {op} · {r['name_zh']} {r['name_en']} · {r['changed_buildings']} buildings change "
        f"({r['compute_ms']:.0f} ms){' · committed' if r['committed'] else ' · not saved'}"
    )
    for c in ("profile", "circle", "budget", "households before", "after", "Δ"):
        t.add_column(c, justify="right")
    for f in r["figures"]:
        t.add_row(
            f["profile"],
            f["circle"],
            f"{f['budget_m']:.0f} m",
            f"{f['households_before']:.0f}",
            f"{f['households_after']:.0f}",
            f"{f['households_after'] - f['households_before']:+.0f}",
        )
    console.print(t)
    if r.get("access_m") is not None:
        console.print(f"  接入距离 access leg to the walking network: {r['access_m']:.0f} m")
    for w in r.get("warnings") or []:
        console.print(f"[yellow]⚠ {common.escape(w)}[/]")


@app.command("map")
def map_cmd(
    category: str = typer.Option(..., "--category", "-c"),
    circle: str = typer.Option("c15"),
    profile: str = typer.Option("standard", "--profile", "-p"),
    sites: int = typer.Option(3, help="Suggested sites to show (0 = none)."),
    out: Path = typer.Option(Path("coverage_map.html"), help="HTML file to write."),
    catalog: Path = CATALOG_OPT,
) -> None:
    """地图 Write the map page of one category: facilities, service area, buildings by distance, gaps, sites.

    The page loads Leaflet from the app's /static/vendor; open it through `gisgov serve`
    (/coverage/map?category=…) or put it next to the vendored assets.
    """
    from gisgov.maps.coverage_map import coverage_map_html

    eng = common.engine()
    try:
        svc = _service(catalog)
        with eng.begin() as conn:
            html = coverage_map_html(svc, conn, category, circle, profile, sites=sites)
    except GisgovError as exc:
        raise error(exc) from None
    finally:
        eng.dispose()
    out.write_text(html, encoding="utf-8")
    console.print(f"[green]✓[/] {out}")


@app.command()
def catalog(catalog: Path = CATALOG_OPT) -> None:
    """目录 Show the circles, profiles, categories and which tier requires which (from the catalog YAML)."""
    from rich.table import Table

    svc = _service(catalog)
    try:
        cat = svc.catalog()
    except GisgovError as exc:
        raise error(exc) from None
    b = cat.budgets()
    t = Table(title=f"生活圈 Circles ({cat.path})")
    for col in ("circle", "minutes", *[p.code for p in cat.profiles], "source"):
        t.add_column(col)
    for c in cat.circles:
        t.add_row(
            f"{c.code} {c.name_zh}",
            f"{c.minutes:g}",
            *[f"{b[(b.circle == c.code) & (b.profile == p.code)].distance_m.iloc[0]:.0f} m" for p in cat.profiles],
            c.source,
        )
    console.print(t)
    t2 = Table(title="要求 Requirement sets (tiers cumulative)")
    for col in ("standard", "applies to", "tier", "categories"):
        t2.add_column(col)
    for s in cat.standards:
        for tier, cats in s.tiers:
            t2.add_row(f"{s.code} {s.name_zh}", s.applies_to, tier, ", ".join(cats))
    console.print(t2)
    console.print(f"{len(cat.categories)} service categories; distances exact up to {cat.distance_cap_m:.0f} m")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="coverage")
