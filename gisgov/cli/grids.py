"""`gisgov grids …`: check, propose, repair, activate and compare grid plans (网格划分).

Exit codes (:mod:`gisgov.cli.common`): 0 done (the plan obeys the rules), 1 rule breaks / infeasible /
activation refused, 2 usage, 3 database unavailable or not migrated, 4 no such community or plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gisgov.cli import common
from gisgov.cli.common import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, error, fail
from gisgov.errors import GisgovError

if TYPE_CHECKING:
    from rich.table import Table

app = common.group("网格划分 Grid sizing: check, propose, repair, activate and compare grid plans.")


console = common.LazyConsole()  # wide when piped: tables never cut grid and community codes

COMMUNITY = typer.Option(..., "--community", "-c", help="Community code (12 digits).")
PLAN = typer.Option(None, "--plan", "-p", help="Plan version (default: the active plan).")


def _rules(min_h: int | None, max_h: int | None, max_p: int | None) -> dict[str, int | None]:
    return {"min_households": min_h, "max_households": max_h, "max_people": max_p}


def _plain(result: Any) -> dict[str, Any]:
    """A service result as a plain dict (results are typed objects with ``to_dict()`` or dicts)."""
    if hasattr(result, "to_dict"):
        return dict(result.to_dict())
    return dict(result) if isinstance(result, Mapping) else result


def _grid_table(grids: list[dict[str, Any]], title: str) -> Table:
    from rich.table import Table

    t = Table(title=title)
    for c in ("网格 code", "户 households", "人 people", "楼栋 buildings", "Polsby–Popper", "Reock", "状态 status"):
        if c[0] == "网":  # codes whole on every width: never wrapped, folded or cut with "…"
            t.add_column(c, no_wrap=True, min_width=max([len(str(g["code"])) for g in grids] + [len(c)]))
        else:
            t.add_column(c, justify="right" if c[0] != "状" else "left")
    colour = {"ok": "green", "under": "yellow", "over": "red"}
    for g in grids:
        t.add_row(
            g["code"],
            str(g["households"]),
            str(g["people"]),
            str(g["buildings"]),
            f"{g['polsby_popper']:.3f}",
            f"{g['reock']:.3f}",
            f"[{colour[g['status']]}]{g['status']}[/]",
        )
    return t


def _print_breaks(breaks: list[dict[str, Any]]) -> None:
    for b in breaks:
        console.print(f"  [red]✗[/] [bold]{b['rule']}[/] {common.escape(b['message'])}")


@app.command()
def check(
    community: str = COMMUNITY,
    plan: int | None = PLAN,
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON (GeoJSON locations)."),
) -> None:
    """校验 Check a stored plan against the rules: counts, compactness and every rule break with its location."""
    eng = common.engine()
    from gisgov.gridding import service

    try:
        with eng.connect() as conn:
            rep = _plain(service.check(conn, community, version=plan))
    except GisgovError as exc:
        raise error(exc) from None
    if as_json:
        typer.echo(json.dumps(rep, ensure_ascii=False, default=str))
    else:
        console.print(_grid_table(rep["grids"], f"社区 {community} plan {rep['plan']}"))
        _print_breaks(rep["breaks"])
        console.print(
            "[green]符合规则 plan obeys the rules[/]" if rep["ok"] else f"[red]{rep['breaks_count']} rule break(s)[/]"
        )
    raise typer.Exit(EXIT_OK if rep["ok"] else EXIT_REJECTED)


@app.command()
def feasibility(
    community: str = COMMUNITY,
    min_households: int | None = typer.Option(None, "--min", help="Households per grid, minimum."),
    max_households: int | None = typer.Option(None, "--max", help="Households per grid, maximum."),
    max_people: int | None = typer.Option(None, "--max-people", help="People per grid, maximum."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """可行性 Say whether any plan can obey the rules, and which units make it impossible."""
    eng = common.engine()
    from gisgov.gridding import service

    try:
        with eng.connect() as conn:
            rep = _plain(service.feasibility(conn, community, rules=_rules(min_households, max_households, max_people)))
    except GisgovError as exc:
        raise error(exc) from None
    if as_json:
        typer.echo(json.dumps(rep, ensure_ascii=False, default=str))
    else:
        console.print(rep["summary"])
        for f in rep["findings"]:
            console.print(f"  [red]✗[/] [bold]{f['rule']}[/] {f['message']}")
    raise typer.Exit(EXIT_OK if rep["feasible"] else EXIT_REJECTED)


def _not_activated(out: dict[str, Any], save: bool) -> str | None:
    """Why ``--activate`` did not activate a proposal (None: it may be activated)."""
    if not save:
        return "未启用 not activated: --no-save keeps the proposal out of the database"
    if out.get("version") is None:
        return f"未启用 not activated: no plan was drafted (status {out.get('status')})"
    report = out.get("report") or {}
    if out.get("status") != "ok" or not report.get("ok"):
        rules = sorted({b["rule"] for b in report.get("breaks", [])})
        return (
            f"未启用 not activated: version {out['version']} is {out.get('status')} with "
            f"{report.get('breaks_count', 0)} rule break(s) ({', '.join(rules) or 'none listed'}); "
            f"repair it (gisgov grids repair -c {out.get('community')} --plan {out['version']}) or force "
            f"(gisgov grids activate -c {out.get('community')} --plan {out['version']} --force)"
        )
    return None


class _TaskError(GisgovError):
    """A community's domain error reported by its Dask task (message and HTTP status as the task saw them)."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code

    @classmethod
    def of(cls, out: dict[str, Any]) -> _TaskError:
        return cls(str(out.get("error")), int(out.get("status_code") or 400))


def _propose_dask(
    eng: Any,
    codes: list[str],
    lock: list[str],
    method: str,
    seed: int,
    time_limit: float,
    closest: bool,
    save: bool,
    activate: bool,
    author: str | None,
    note: str | None,
    rules: dict[str, int | None],
    workers: int,
    scheduler: str | None,
) -> dict[str, dict[str, Any]]:
    """``--dask``: one task per community; each reads its community and saves its own draft in its own
    transaction (gisgov.gridding.dask_batch)."""
    from gisgov.coverage.dask_batch import local_client
    from gisgov.gridding import dask_batch

    opts = dask_batch.ProposeOptions(
        rules=rules,
        lock=tuple(lock),
        method=method,
        seed=seed,
        time_limit_s=time_limit,
        closest=closest,
        save=save,
        activate=activate,
        author=author,
        note=note,
    )
    cluster = None
    if scheduler:
        from dask.distributed import Client

        client = Client(scheduler)  # type: ignore[no-untyped-call]
        where = f"scheduler {scheduler}"
    else:
        client, cluster = local_client(workers=workers)
        where = f"local cluster, {workers} worker processes"
    try:
        common.say(f"Dask: {where}; 社区任务 community tasks: {len(codes)}")
        return dask_batch.propose_all(client, eng.url.render_as_string(hide_password=False), codes, opts)
    finally:
        client.close()  # type: ignore[no-untyped-call]
        if cluster is not None:
            cluster.close()


@app.command()
def propose(
    community: str | None = typer.Option(None, "--community", "-c", help="Community code (12 digits)."),
    all_: bool = typer.Option(False, "--all", help="Every community of the database."),
    min_households: int | None = typer.Option(None, "--min", help="Households per grid, minimum (default 300)."),
    max_households: int | None = typer.Option(None, "--max", help="Households per grid, maximum (default 500)."),
    max_people: int | None = typer.Option(None, "--max-people", help="People per grid, maximum (default 1000)."),
    lock: list[str] = typer.Option([], "--lock", help="Grid code of the active plan to keep as it is (repeatable)."),
    method: str = typer.Option("auto", help="auto | exact | heuristic"),
    seed: int = typer.Option(0, help="Random seed (same seed, same plan)."),
    time_limit: float = typer.Option(10.0, help="Exact solver budget (deterministic seconds)."),
    closest: bool = typer.Option(False, help="When no plan can obey the rules, draft the closest plan."),
    save: bool = typer.Option(True, help="Store the proposal as a new draft version."),
    activate: bool = typer.Option(False, help="Activate the saved proposal when it obeys the rules."),
    author: str | None = typer.Option(None, help="Author recorded with the plan."),
    note: str | None = typer.Option(None, help="Note recorded with the plan."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the answer as JSON (the API's answer: status, findings, report, GeoJSON); "
        "with --all a JSON array, one answer per community.",
    ),
    dask: bool = typer.Option(
        False, "--dask", help="Run on Dask, one task per community (a local cluster unless --scheduler is given)."
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="With --dask: worker processes of the local cluster."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="With --dask: address of an existing Dask scheduler, e.g. tcp://host:8786."
    ),
) -> None:
    """划分 Draft a plan: feasibility first, then exact (CP-SAT) or heuristic partition, saved as a draft.

    The draft is checked by the full validator: a plan with any rule break is not "ok" (exit 1) and
    --activate says why it did not activate it."""
    if method not in ("auto", "exact", "heuristic"):
        raise fail(f"--method must be auto, exact or heuristic (got {method})", EXIT_USAGE)
    if not all_ and not community:
        raise fail("give --community CODE or --all", EXIT_USAGE)
    if (scheduler or workers != 2) and not dask:
        raise fail("--workers / --scheduler 需要 --dask: they only apply with --dask", EXIT_USAGE)
    eng = common.engine()
    from rich.console import Console
    from rich.table import Table

    from gisgov.gridding import plans, service

    with eng.connect() as conn:
        codes = service.communities(conn) if all_ else [str(community)]
    if not codes:
        raise fail("数据库中没有社区 no communities in the database", EXIT_REJECTED)
    summary = Table(title="网格方案 proposals")
    for c in ("社区 community", "grids", "within bounds", "status", "method", "optimal", "s", "version"):
        if c.startswith("社区"):
            summary.add_column(c, no_wrap=True, min_width=max(len(x) for x in codes))
        else:
            summary.add_column(c)
    answers: list[dict[str, Any]] = []
    rc = EXIT_OK
    # with --json the progress bar goes to stderr: stdout holds the JSON only
    bar_console = Console(stderr=True) if as_json else console.get()
    on_dask = (
        _propose_dask(
            eng,
            codes,
            lock,
            method,
            seed,
            time_limit,
            closest,
            save,
            activate,
            author,
            note,
            _rules(min_households, max_households, max_people),
            workers,
            scheduler,
        )
        if dask
        else {}
    )
    with common.progress(bar_console, transient=len(codes) == 1 or as_json) as bar:
        task = bar.add_task("划分 proposing", total=len(codes))
        for code in codes:
            bar.update(task, description=f"划分 {code}")
            try:
                if dask:
                    out = on_dask[code]
                    if out.get("status") == "error":
                        raise _TaskError.of(out)
                    if activate and not out.get("activated"):
                        out["not_activated"] = _not_activated(out, save)
                else:
                    with eng.begin() as conn:
                        out = _plain(
                            service.propose_plan(
                                conn,
                                code,
                                rules=_rules(min_households, max_households, max_people),
                                lock=lock,
                                method=method,
                                seed=seed,
                                time_limit_s=time_limit,
                                closest=closest,
                                save=save,
                                author=author,
                                note=note,
                            )
                        )
                        if activate:
                            why = _not_activated(out, save)
                            if why is None:
                                plans.activate(conn, code, out["version"])
                            out["activated"] = why is None
                            if why is not None:
                                out["not_activated"] = why
            except GisgovError as exc:
                common.say(f"错误 error: {code}: {exc}")
                rc = rc or common.exit_code_for(exc)
                if as_json:
                    answers.append({"community": code, "status": "error", "error": str(exc)})
                bar.advance(task)
                continue
            if out["status"] != "ok":
                rc = rc or EXIT_REJECTED
            bar.advance(task)
            if as_json:
                answers.append(out)
                continue
            s = out.get("report", {}).get("summary", {})
            summary.add_row(
                code,
                str(s.get("grids", 0)),
                f"{s.get('within_bounds', 0)}/{s.get('grids', 0)}",
                out["status"],
                str(out.get("method")),
                "yes" if out.get("optimal") else "no",
                f"{out['seconds']:.1f}",
                str(out.get("version", "-")) + (" (active)" if out.get("activated") else ""),
            )
            if out["status"] != "ok":
                for f in out["findings"]:
                    console.print(f"  [red]✗[/] {code} [bold]{f['rule']}[/] {common.escape(f['message'])}")
            if len(codes) == 1 and "report" in out:
                console.print(_grid_table(out["report"]["grids"], f"社区 {code}"))
                _print_breaks(out["report"]["breaks"])
            for n in out.get("notes", []):
                console.print(f"  [dim]{code}: {common.escape(n)}[/]")
            if out.get("not_activated"):
                console.print(f"  [yellow]{code}: {common.escape(out['not_activated'])}[/]")
    if as_json:
        typer.echo(json.dumps(answers if all_ else answers[0], ensure_ascii=False, default=str))
    else:
        console.print(summary)
    raise typer.Exit(rc)


@app.command()
def repair(
    community: str = COMMUNITY,
    plan: int | None = PLAN,
    save: bool = typer.Option(True, help="Store the repaired plan as a new draft version."),
    author: str | None = typer.Option(None, help="Author recorded with the plan."),
    time_limit: float = typer.Option(5.0, help="Exact repair budget (deterministic seconds)."),
) -> None:
    """修复 Fix a plan's rule breaks moving as few buildings as possible (compounds kept whole)."""
    eng = common.engine()
    from gisgov.gridding import service

    try:
        with eng.begin() as conn:
            out = _plain(
                service.repair_plan(conn, community, version=plan, save=save, author=author, time_limit_s=time_limit)
            )
    except GisgovError as exc:
        raise error(exc) from None
    console.print(
        f"breaks {out['breaks_before']} → {out['breaks_after']}, {out['buildings_moved']} building(s) moved "
        f"({out['method']}), {out['seconds']} s" + (f", saved as version {out['version']}" if save else "")
    )
    for b in out["moved"][:50]:
        console.print(f"  moved {b}")
    _print_breaks(out["report"]["breaks"])
    raise typer.Exit(EXIT_OK if out["report"]["ok"] else EXIT_REJECTED)


@app.command()
def activate(
    community: str = COMMUNITY,
    plan: int = typer.Option(..., "--plan", "-p", help="Plan version to activate."),
    force: bool = typer.Option(False, help="Activate even with rule breaks."),
    rebase: bool = typer.Option(
        False,
        help="Activate even though the plan was made from a version that is "
        "no longer active (after checking `gisgov grids diff`).",
    ),
) -> None:
    """启用 Activate a plan atomically: renumber codes W→E N→S, archive the old plan, re-point buildings.

    A draft made from a version that is no longer the active one is refused (exit 1, what changed is
    printed) unless --rebase is given."""
    eng = common.engine()
    from gisgov.gridding import plans

    try:
        with eng.begin() as conn:
            out = _plain(plans.activate(conn, community, plan, force=force, rebase=rebase))
    except plans.ParentConflict as exc:
        console.print(f"命令行确认覆盖 on the command line: gisgov grids activate {community} --plan {plan} --rebase")
        raise fail(f"PlanConflict: {exc}", EXIT_REJECTED) from None
    except GisgovError as exc:
        raise error(exc) from None
    console.print(
        f"[green]已启用 activated[/] version {out['version']} (previous {out['previous']}), "
        f"{out['buildings']} buildings, {out['staff_moved']} staff carried over"
    )
    for old, new in out["codes"].items():
        if old != new:
            console.print(f"  {old} → {new}")


@app.command("plans")
def plans_cmd(community: str = COMMUNITY) -> None:
    """版本 List the plan versions of a community (history)."""
    from rich.table import Table

    eng = common.engine()
    from gisgov.gridding.io import list_plans

    with eng.connect() as conn:
        rows = list_plans(conn, community)
    t = Table(title=f"社区 {community} 网格方案 plans")
    for c in ("version", "status", "parent", "grids", "author", "created", "method", "note"):
        t.add_column(c)
    for r in rows:
        parent = r.get("parent_version")
        t.add_row(
            str(r["version"]),
            r["status"],
            "" if parent is None else str(parent),
            str(r["grids"]),
            str(r["author"] or ""),
            str(r["created"])[:19],
            str(r["method"] or ""),
            str(r["note"] or ""),
        )
    console.print(t)


@app.command()
def diff(
    community: str = COMMUNITY,
    a: int = typer.Argument(..., help="Older version."),
    b: int = typer.Argument(..., help="Newer version."),
) -> None:
    """对比 Compare two versions: buildings moved, counts per grid before/after."""
    from rich.table import Table

    eng = common.engine()
    from gisgov.gridding import plans

    try:
        with eng.connect() as conn:
            d = _plain(plans.diff(conn, community, a, b))
    except GisgovError as exc:
        raise error(exc) from None
    console.print(f"{d['buildings_moved']} building(s) moved from version {a} to {b}")
    t = Table()
    for c in ("grid", "households before", "after", "people before", "after"):
        t.add_column(c)
    for g in d["grids"]:
        be, af = g["before"] or {}, g["after"] or {}
        t.add_row(
            g["code"],
            str(be.get("households", "-")),
            str(af.get("households", "-")),
            str(be.get("people", "-")),
            str(af.get("people", "-")),
        )
    console.print(t)


@app.command()
def codes(
    community: str = COMMUNITY,
    plan: int | None = PLAN,
    out: Path | None = typer.Option(None, "--out", "-o", help="CSV file to write (default: print)."),
) -> None:
    """编码表 Export the grid code table of a plan (CSV, the same file as the web app's download)."""
    eng = common.engine()
    from gisgov.gridding import plans
    from gisgov.gridding.code_table import code_table_csv

    try:
        with eng.connect() as conn:
            rows = plans.code_table(conn, community, plan)
    except GisgovError as exc:
        raise error(exc) from None
    if out is None:
        typer.echo(code_table_csv(rows, bom=False), nl=False)
        return
    out.write_bytes(code_table_csv(rows).encode("utf-8"))
    console.print(f"wrote {len(rows)} grids to {out}")


@app.command("map")
def map_cmd(
    community: str = COMMUNITY,
    plan: int | None = PLAN,
    out: Path = typer.Option(..., "--out", "-o", help="HTML file to write."),
) -> None:
    """地图 Write a map of a plan: grids coloured by households against the bounds, rule breaks highlighted
    (the same page as the web app's /grids/map/{community})."""
    eng = common.engine()
    from gisgov.maps.plan_page import plan_map_page

    try:
        with eng.connect() as conn:
            page = plan_map_page(conn, community, plan)
    except GisgovError as exc:
        raise error(exc) from None
    out.write_text(page, encoding="utf-8")
    console.print(f"wrote {out}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="grids")
