"""`gisgov load`, `gisgov export`, `gisgov template`: real data in and out.

Exit codes (:mod:`gisgov.cli.common`): 0 loaded (or a clean dry run), 1 rejected (nothing written),
2 usage error, 3 database unavailable or not migrated (run `gisgov db migrate`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gisgov.cli import common
from gisgov.cli.common import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, escape, fail
from gisgov.errors import GisgovError, InvalidInput

if TYPE_CHECKING:
    from gisgov.ingest.report import Report

console = common.LazyConsole()

STAGES_ZH = {
    "read": "读取 read",
    "validate": "校验 validate",
    "write": "写入 write",
    "households": "建户 households",
    "residents": "居民 residents",
    "network": "路网 network",
    "buildings": "楼栋 buildings",
    "facilities": "设施 facilities",
    "estimate": "估算 estimate",
    "export": "导出 export",
}


def print_report(rep: Report, max_lines: int = 50) -> None:
    colour = {"loaded": "green", "dry-run": "cyan", "rejected": "red"}.get(rep.status, "yellow")
    label = {
        "loaded": "已导入 loaded",
        "dry-run": "试运行 dry run (nothing written)",
        "rejected": "已拒绝 rejected (nothing written)",
    }.get(rep.status, rep.status)
    console.print(
        f"[bold {colour}]{label}[/] {rep.file} → {rep.level}  " + "  ".join(f"{k}={v}" for k, v in rep.counts.items())
    )
    for k, v in rep.stats.items():
        console.print(f"  {escape(f'{k}: {v}')}", soft_wrap=True)
    shown = [i for i in rep.issues if i.action != "info"][:max_lines]
    infos = [i for i in rep.issues if i.action == "info"]
    for i in infos[:12]:
        console.print(f"  [dim]{escape(f'{i.record}: {i.rule}: {i.message} — {i.value}')}[/]", soft_wrap=True)
    if len(infos) > 12:
        console.print(f"  [dim]… {len(infos) - 12} more notes (see --report-json)[/]")
    if shown:
        console.print(f"[bold]问题 issues[/] ({len(rep.rejected)} rejected, {len(rep.repaired)} repaired):")
        for i in shown:
            colour = "red" if i.action == "rejected" else "yellow"
            detail = escape(f"{i.file}: {i.record}: [{i.rule}] {i.message} (value: {i.value})")
            console.print(f"  [{colour}]{i.action}[/] {detail}", soft_wrap=True, markup=True, highlight=False)
        rest = len([i for i in rep.issues if i.action != "info"]) - len(shown)
        if rest > 0:
            console.print(f"… {rest} more (see --report-json)")


def load(
    file: Path = typer.Argument(
        ..., help="GeoJSON, GeoPackage, Shapefile (.shp or .zip), FlatGeobuf, CSV, XLSX or .osm.pbf"
    ),
    level: str = typer.Option(
        None, "--level", "-l", help="street|community|grid|compound|building|facility|road|resident"
    ),
    layer: str = typer.Option(None, "--layer", help="Layer of a GeoPackage (or sheet of a workbook)."),
    crs: str = typer.Option(
        None,
        "--crs",
        help="Source CRS when the file has none or lies: EPSG code "
        "(4490, 4326, 4513–4554 …), gcj02 (AMap/Tencent) or bd09 (Baidu). Xi'an 80 / Beijing 54 need their "
        'datum parameters: "EPSG:2385 +towgs84=dx,dy,dz,rx,ry,rz,ds", a PROJ string/WKT with TOWGS84, or '
        '"+proj=pipeline …" ending in CGCS2000 degrees.',
    ),
    map_: list[str] = typer.Option(None, "--map", help="field=column, repeatable (e.g. --map name=小区名)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check everything, write nothing."),
    repair: bool = typer.Option(
        False,
        "--repair",
        help="Fix what can be fixed (MakeValid, swapped axes, unclosed rings, clip to parent, trim overlaps "
        "with same-level records; with --update, move buildings to the compound/grid now containing them) "
        "and report each fix.",
    ),
    update: bool = typer.Option(
        False,
        "--update",
        help="更新 Records whose code is already in the database replace it (geometry and the attributes the "
        "file maps; the previous version is kept in the history and the change audited), all or nothing; "
        "children left outside an updated boundary reject the update. Default: such codes are rejected.",
    ),
    region: str = typer.Option(
        None,
        "--region",
        help="auto (no region check) or minlon,minlat,maxlon,maxlat; default: GISGOV_REGION_BBOX (China).",
    ),
    encoding: str = typer.Option(
        None,
        "--encoding",
        help="Force the text encoding (utf-8, gbk, gb18030, big5, cp1252); needed when detection is unsure.",
    ),
    walk_profile: Path = typer.Option(
        None, "--walk-profile", help="OSM: walking rules YAML (default layers/walk_profile.yaml)."
    ),
    residential_tags: str = typer.Option(
        None,
        "--residential-tags",
        help="OSM: building=* values always treated as dwellings, comma-separated (e.g. school,dormitory).",
    ),
    all_buildings_residential: bool = typer.Option(
        False, "--all-buildings-residential", help="OSM: estimate households on every building, excluding none."
    ),
    communities: Path = typer.Option(
        None,
        "--communities",
        help="OSM: your community polygons (any supported format; codes and names), loaded in the same import.",
    ),
    header_row: int = typer.Option(
        None,
        "--header-row",
        min=1,
        help="居民名册表头行 Resident rosters: the spreadsheet row (1-based) holding the column names; "
        "default: detected among the first 30 rows (title rows, two-row merged headers).",
    ),
    osm: bool = typer.Option(
        False, "--osm", help="Import an OpenStreetMap .osm.pbf: walking network, buildings, POIs."
    ),
    no_estimate: bool = typer.Option(False, "--no-estimate", help="Do not estimate missing household counts."),
    report_json: Path = typer.Option(None, "--report-json", help="Write the full report as JSON here."),
) -> None:
    """导入 Load a file into the database: validated, all or nothing (exit 0 loaded, 1 rejected, 2 usage)."""
    engine = common.engine()
    try:
        from gisgov.cli.users import cli_actor
        from gisgov.ingest.loader import load_file

        with common.progress(console.get()) as p:
            cb = common.StageBars(p, STAGES_ZH)
            if osm:
                if update:
                    raise fail(
                        "--update applies to --level street|community|grid|compound|building|facility", EXIT_USAGE
                    )
                from gisgov.ingest.osm import load_osm

                rep = load_osm(
                    file,
                    engine=engine,
                    region=region,
                    dry_run=dry_run,
                    estimate=not no_estimate,
                    progress=cb,
                    walk_profile=walk_profile,
                    residential_tags=residential_tags or (),
                    all_buildings_residential=all_buildings_residential,
                    communities=communities,
                    communities_crs=crs,
                )
            else:
                if not level:
                    raise fail("--level is required (or --osm)", EXIT_USAGE)
                rep = load_file(
                    file,
                    level,
                    engine=engine,
                    layer=layer,
                    crs=crs,
                    mapping=map_ or None,
                    repair=repair,
                    dry_run=dry_run,
                    region=region,
                    encoding=encoding,
                    estimate=not no_estimate,
                    progress=cb,
                    header_row=header_row,
                    update=update,
                    actor=cli_actor(),
                )
    except InvalidInput as exc:  # the loader's UsageError among them
        raise fail(f"用法错误 usage error: {exc}", EXIT_USAGE) from None
    except GisgovError as exc:
        raise common.error(exc) from None
    finally:
        engine.dispose()
    print_report(rep)
    if report_json:
        report_json.write_text(json.dumps(rep.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    raise typer.Exit(EXIT_OK if rep.ok else EXIT_REJECTED)


def export(
    level: str = typer.Option(
        ..., "--level", "-l", help="street|community|grid|compound|building|facility|road|resident"
    ),
    fmt: str = typer.Option("gpkg", "--format", "-f", help="gpkg|geojson|shp|csv|xlsx"),
    community: str = typer.Option(None, "--community", help="Only this community (12-digit code)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output file (default: <level>.<format> here)."),
    shp_encoding: str = typer.Option(
        "gbk",
        "--encoding",
        help="Shapefile 文字编码 text encoding of a Shapefile export: gbk (default; desktop GIS in China reads DBFs "
        "as GBK) or utf-8; named in the .cpg written beside the .dbf. Other formats are always UTF-8.",
    ),
    allow_pii: bool = typer.Option(
        False,
        "--allow-pii",
        help="Write ID numbers and phones in clear (resident exports only; needs the key). Default: masked.",
    ),
) -> None:
    """导出 Export one level (ID numbers and phones masked unless --allow-pii)."""
    from gisgov.ingest.export import FORMATS, export_level

    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}", EXIT_USAGE)
    out = out or Path(f"{level}.{FORMATS[fmt]}")
    engine = common.engine()
    try:
        n = export_level(engine, level, fmt, out, community=community, allow_pii=allow_pii, encoding=shp_encoding)
    except InvalidInput as exc:  # the loader's UsageError among them
        raise fail(f"用法错误 usage error: {exc}", EXIT_USAGE) from None
    except GisgovError as exc:
        raise common.error(exc) from None
    finally:
        engine.dispose()
    console.print(f"[green]已导出 exported[/] {n} {level} → {out}")


def template(
    kind: str = typer.Argument("residents", help="residents (居民名册)"),
    out: Path = typer.Option(None, "--out", "-o", help="Output file (.xlsx or .csv); default 居民名册模板.xlsx"),
) -> None:
    """模板 Write a fill-in template with Chinese headers (居民名册 resident roster)."""
    from gisgov.ingest.export import write_roster_template

    if kind not in ("residents", "resident"):
        raise fail("only `residents` has a template", EXIT_USAGE)
    out = out or Path("居民名册模板.xlsx")
    write_roster_template(out)
    console.print(f"[green]模板已生成 template written[/] → {out}")


def register(app: typer.Typer) -> None:
    app.command("load")(load)
    app.command("export")(export)
    app.command("template")(template)
