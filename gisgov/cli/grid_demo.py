"""The `gisgov demo` grid step at the CLI edge: a progress bar while plans are drawn, then a table.

The work is :func:`gisgov.gridding.service.plan_communities` (no output of its own); this module only
shows it on a rich console.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from gisgov.cli import common
from gisgov.gridding import service
from gisgov.sample.staff import staff_active_grids

if TYPE_CHECKING:
    from gisgov.security.pii import Vault


def demo_step(
    url: str, console: Console, *, time_limit_s: float = service.DEMO_TIME_LIMIT_S, vault: Vault | None = None
) -> list[service.DemoPlanOutcome]:
    """Draw and activate a plan for every community without one, staff the grids, and report on ``console``."""
    with common.progress(console) as bar:
        task = None

        def progress(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task("网格划分 grid plans", total=total)
            bar.update(task, completed=done, description="网格划分 grid plans" + (" ✓" if done == total else ""))

        out = service.plan_communities(
            url, time_limit_s=time_limit_s, staff=lambda conn: staff_active_grids(conn, vault), progress=progress
        )
    show(console, out)
    return out.results


def show(console: Console, out: service.DemoOutcome) -> None:
    """The table of plans and the one-line summary of the step."""
    results, staffed = out.results, out.staffed
    if not results and not staffed.grids:
        console.print("[green]✓[/] 网格 grids: every community already has an active plan and staffed grids")
        return
    if results:
        t = Table(title="网格方案 grid plans · 示例城（合成 synthetic）")
        for c in ("社区 community", "网格 grids", "符合 within", "方案 plan", "说明 note"):
            t.add_column(c)
        for r in results:
            plan = {"ok": "[green]ok[/]", "closest": "[yellow]closest→forced[/]"}.get(r.status, f"[red]{r.status}[/]")
            note = ""
            if r.status != "ok" and r.reason_rule:
                note = f"{service.RULE_ZH.get(r.reason_rule, '')} {r.reason_rule}"
            name = out.names.get(r.community, "").replace("（合成）", "")
            t.add_row(f"{name} {r.community}", str(r.grids), f"{r.within_bounds}/{r.grids}", plan, note)
        console.print(t)
        for r in results:
            if r.status != "ok" and r.reason:
                console.print(
                    f"  [yellow]![/] {r.community} 无整小区方案 no plan keeps every compound whole: "
                    f"{r.reason}. Activated with force: the closest plan, "
                    f"{r.within_bounds}/{r.grids} grids within the bounds, "
                    f"{r.split_compounds} compound(s) split."
                )
    forced = [r.community for r in results if r.forced]
    errors = [r.community for r in results if r.status == "error"]
    console.print(
        f"[green]✓[/] 网格 grids: {sum(r.grids for r in results)} grids in {len(results) - len(errors)} "
        f"communities activated, {staffed.staff} synthetic staff on {staffed.grids} grids "
        f"({out.seconds:.1f} s)"
        + (f"; [yellow]closest plans force-activated (compounds split): {', '.join(forced)}[/]" if forced else "")
        + (f"; [red]failed: {', '.join(errors)}[/]" if errors else "")
    )
