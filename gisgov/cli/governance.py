"""`gisgov staff list | check | import | template` and `gisgov compounds check | show | set`.

Every command but ``template`` acts AS an account (``--as USERNAME``): its role decides what it may do
and see (names of staff only for roles that read personal data; edits and imports: 管理员 admin,
社区工作者 community_staff) and its scope where. The commands connect as the app role, so row-level
security applies exactly as in the web app. Imports and edits are audited with that account as the
actor and ``via: cli:<OS user>`` in the detail; refusals too.

Exit codes (:mod:`gisgov.cli.common`): 0 done, 1 rejected import, refused for the role (403), stale version
(409) or ``check --strict`` found a gap or breach, 2 bad input (422), 3 database unavailable, 4 not found
(object or account).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gisgov.cli import common
from gisgov.cli.common import AS_HELP, EXIT_REJECTED, acting, escape, fail
from gisgov.errors import GisgovError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from gisgov.security.roles import Principal

staff_app = common.group("网格员 一格三员 Grid staff: list, rule check (网格长 + 专职网格员), caseload, XLSX import.")
compounds_app = common.group("小区 Compound rules: breaches, property-mode shares, 老旧小区 ratio; edit attributes.")

EXIT_STRICT = EXIT_REJECTED  # `check --strict` found a gap, an overload or a breach
CODE_HELP = "街道/社区/网格编码 street/community/grid code inside the account's area"


def _record(
    target: Engine | Connection,
    action: str,
    p: Principal,
    obj: str | None,
    detail: dict[str, Any],
    result: str = "ok",
) -> None:
    from gisgov.cli.users import cli_actor
    from gisgov.security import audit

    audit.record(target, action, actor=p, object=obj, result=result, detail=detail | {"via": cli_actor()})


def _ceiling() -> float:
    from gisgov.governance.settings import get_governance_settings

    return get_governance_settings().staff_max_caseload


def _echo_json(obj: object) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=1, default=str))


# ---------------------------------------------------------------- staff


@staff_app.command("list")
def staff_list(
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    code: str = typer.Option(None, help=CODE_HELP),
    problems: bool = typer.Option(
        False, "--problems", help="只列有缺口或超负荷的网格 only grids with a gap or overload"
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """列表 Staff per grid: counts by role, caseload; names and masked phones for personal-data roles."""
    from rich.table import Table

    from gisgov.domain.staff import ROLES
    from gisgov.governance import store

    with acting(as_user) as (conn, p, _):
        try:
            out = store.staff_overview(conn, p, code=code, ceiling=_ceiling(), only_problems=problems)
        except GisgovError as exc:
            raise common.error(exc) from exc
        if out["names_shown"]:
            _record(conn, "read_personal", p, f"grid_staff:{out['area'] or 'all'}", {"count": out["summary"]["staff"]})
    if as_json:
        _echo_json(out)
        return
    t = Table(
        title=f"网格员 staff — {out['area'] or '全市 city'}: {out['summary']['grids']} grids, "
        f"{out['summary']['staff']} people, ceiling {out['summary']['ceiling']:g} 户/专职"
    )
    for col in ("网格 grid", "户数 hh", *ROLES, "户/专职 caseload", "问题 problems"):
        t.add_column(col)
    if out["names_shown"]:
        t.add_column("人员 people (masked phones)")
    for g in out["grids"]:
        probs = [*g["gaps"], *(["caseload_over"] if g["caseload_over"] else [])]
        cells = [
            g["code"],
            str(g["households"]),
            *(str(g["roles"][r]) for r in ROLES),
            "—" if g["caseload"] is None else f"{g['caseload']:g}",
            ", ".join(probs) or "ok",
        ]
        if out["names_shown"]:
            cells.append(
                escape("; ".join(f"{x['role']} {x['name']} {x['phone_masked'] or ''}".strip() for x in g["people"]))
            )
        t.add_row(*cells)
    common.console().print(t)


@staff_app.command("check")
def staff_check(
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    code: str = typer.Option(None, help=CODE_HELP),
    strict: bool = typer.Option(
        False, "--strict", help=f"有缺口或超负荷时退出码 {EXIT_STRICT} exit {EXIT_STRICT} on any gap/overload"
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """规则检查 Each grid has a 网格长 and at least one 专职网格员; caseload against GISGOV_STAFF_MAX_CASELOAD."""
    from gisgov.governance import store

    with acting(as_user) as (conn, p, _):
        try:
            out = store.staff_overview(conn, p, code=code, ceiling=_ceiling(), only_problems=True)
        except GisgovError as exc:
            raise common.error(exc) from exc
    s = out["summary"]
    if as_json:
        _echo_json(
            {
                "area": out["area"],
                "summary": s,
                "grids": [
                    {
                        k: g[k]
                        for k in (
                            "code",
                            "name",
                            "community_code",
                            "households",
                            "full_time",
                            "caseload",
                            "caseload_over",
                            "gaps",
                        )
                    }
                    for g in out["grids"]
                ],
            }
        )
    else:
        c = common.console()
        c.print(
            f"网格 grids {s['grids']} · 合规 ok {s['grids_ok']} · 缺网格长 no 网格长 {len(s['no_leader'])} · "
            f"缺专职网格员 no 专职网格员 {len(s['no_full_time'])} · 超负荷 over {s['ceiling']:g} 户/专职 "
            f"{len(s['caseload_over'])}",
            highlight=False,
        )
        for g in out["grids"]:
            probs = [
                *g["gap_labels"],
                *([f"工作量 caseload {g['caseload']:g} > {s['ceiling']:g}"] if g["caseload_over"] else []),
            ]
            c.print(f"  {g['code']} {escape(g['name'] or '')}: {'; '.join(probs)}", highlight=False)
    if strict and out["grids"]:
        raise typer.Exit(EXIT_STRICT)


@staff_app.command("import")
def staff_import(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help="XLSX: 网格编码, 角色, 姓名, 手机号"
    ),
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    mode: str = typer.Option("replace", help="replace: the file's grids get exactly its rows; append: add rows"),
    dry_run: bool = typer.Option(False, "--dry-run", help="只检查不写入 check only"),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """导入 Import staff from the XLSX template, all or nothing (every row error names row, column and rule)."""
    from gisgov.governance import store, xlsx
    from gisgov.governance.settings import get_governance_settings
    from gisgov.security.pii import Vault

    s = get_governance_settings()
    with acting(as_user) as (conn, p, eng):
        try:
            records = xlsx.read_records(file, file.name)
            out = store.import_staff(
                conn,
                p,
                Vault.from_settings(),
                records,
                mode=mode,
                dry_run=dry_run,
                ceiling=s.staff_max_caseload,
                max_rows=s.staff_import_max_rows,
            )
        except store.ImportRejected as exc:
            _record(eng, "import", p, "grid_staff", {"file": file.name, "errors": len(exc.rows)}, result="failed")
            c = common.console()
            for r in exc.rows:
                c.print(f"  {escape(r['message'])}", highlight=False)
            raise fail(exc, EXIT_REJECTED) from exc  # a rejected import: nothing written
        except GisgovError as exc:
            _record(
                eng,
                "import",
                p,
                "grid_staff",
                {"file": file.name, "reason": str(exc)[:300]},
                result="denied" if exc.status_code in (403, 404) else "failed",
            )
            raise common.error(exc) from exc
        if not dry_run:
            _record(
                conn,
                "import",
                p,
                "grid_staff",
                {
                    "file": file.name,
                    "mode": mode,
                    "rows": out["rows"],
                    "grids": out["grids"],
                    "removed": out["removed"],
                },
            )
    if as_json:
        _echo_json(out)
        return
    verb = "检查通过（未写入）checked, nothing written" if dry_run else "已导入 imported"
    common.console().print(
        f"{verb}: {out['rows']} rows, {out['grids']} grids ({mode}; removed {out['removed']}); "
        f"仍有缺口 grids still with a gap: {', '.join(out['gaps_after']) or '—'}",
        highlight=False,
    )


@staff_app.command("template")
def staff_template(out: Path = typer.Argument(Path("staff-template.xlsx"), help="输出文件 output .xlsx")) -> None:
    """导入模板 Write the XLSX template (网格编码, 角色, 姓名, 手机号)."""
    from gisgov.governance import xlsx

    out.write_bytes(xlsx.template_bytes())
    typer.echo(str(out))


# ---------------------------------------------------------------- compounds


@compounds_app.command("check")
def compounds_check(
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    code: str = typer.Option(None, help="街道/社区编码 street/community code"),
    strict: bool = typer.Option(
        False, "--strict", help=f"有违规时退出码 {EXIT_STRICT} exit {EXIT_STRICT} on any breach"
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON output"),
) -> None:
    """规则检查 Breaches (200+ households: party organisation, service point; pre-2000: property management),
    property-mode shares and the 老旧小区 ratio per community."""
    from rich.table import Table

    from gisgov.governance import store

    with acting(as_user) as (conn, p, _):
        try:
            out = store.compound_check(conn, p, code=code)
        except GisgovError as exc:
            raise common.error(exc) from exc
    if as_json:
        _echo_json(out)
    else:
        c = common.console()
        t = Table(title=f"小区 compounds — {out['area'] or '全市 city'}")
        rule_cols = list(out["totals"]["breaches"])
        for col in (
            "社区 community",
            "小区 n",
            "老旧 old",
            "老旧率 ratio",
            "物业公司",
            "业主自治",
            "社区兜底",
            "无 none",
            *rule_cols,
        ):
            t.add_column(col)
        for m in [*out["communities"], {**out["totals"], "code": "合计 total", "name": ""}]:
            ratio = "—" if m["old_ratio"] is None else f"{m['old_ratio']:.1%}"
            t.add_row(
                f"{m['code']} {escape(m.get('name') or '')}",
                str(m["compounds"]),
                str(m["old"]),
                ratio,
                *(str(v["n"]) for v in m["property_modes"].values()),
                *(str(v) for v in m["breaches"].values()),
            )
        c.print(t)
        for b in out["breaches"]:
            c.print(
                f"  {b['code']} {escape(b['name'])} ({b['households']} 户, {b['year_built'] or '—'}): "
                f"{escape('; '.join(b['labels']))}",
                highlight=False,
            )
    if strict and out["breaches"]:
        raise typer.Exit(EXIT_STRICT)


@compounds_app.command("show")
def compounds_show(
    code: str = typer.Argument(..., help="小区编码 16-digit compound code"),
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
) -> None:
    """查看 One compound's governance attributes, version and breaches."""
    from gisgov.governance import store

    with acting(as_user) as (conn, p, _):
        try:
            out = store.get_compound(conn, p, code)
        except GisgovError as exc:
            raise common.error(exc) from exc
    _echo_json(out)


@compounds_app.command("set")
def compounds_set(
    code: str = typer.Argument(..., help="小区编码 16-digit compound code"),
    as_user: str = typer.Option(..., "--as", help=AS_HELP),
    version: int = typer.Option(..., help="版本 the version you last saw (compounds show)"),
    party_org: bool = typer.Option(None, "--party-org/--no-party-org", help="已成立党组织 party organisation"),
    service_point: bool = typer.Option(None, "--service-point/--no-service-point", help="已设党群服务点 service point"),
    property_mode: str = typer.Option(None, help="物业模式 物业公司 / 业主自治 / 社区兜底 / none (clears it)"),
    year: int = typer.Option(None, help="建成年份 year built"),
) -> None:
    """修改 Edit a compound's governance attributes (version checked; audited)."""
    from gisgov.governance import store

    changes: dict[str, Any] = {}
    if party_org is not None:
        changes["has_party_org"] = party_org
    if service_point is not None:
        changes["has_service_point"] = service_point
    if property_mode is not None:
        changes["property_mode"] = (
            None if property_mode.strip().lower() in ("none", "无", "") else property_mode.strip()
        )
    if year is not None:
        changes["year_built"] = year
    obj = f"compound:{code}"
    with acting(as_user) as (conn, p, eng):
        try:
            out, diff = store.edit_compound(conn, p, code, version, changes)
        except GisgovError as exc:
            if exc.status_code in (403, 404, 409):
                _record(
                    eng,
                    "compound_edit",
                    p,
                    obj,
                    {"version": version, "fields": sorted(changes), "reason": str(exc)[:300]},
                    result="denied",
                )
            raise common.error(exc) from exc
        if diff:
            _record(conn, "compound_edit", p, obj, {"changes": diff, "version": out["version"]})
    _echo_json(out | {"changed": sorted(diff)})


def register(main: typer.Typer) -> None:
    main.add_typer(staff_app, name="staff")
    main.add_typer(compounds_app, name="compounds")
