"""Load one file of one level: read → map fields → convert CRS → validate → write, all or nothing.

The whole load runs in one transaction. When any record is rejected nothing is written; with
``dry_run`` everything (including the database's own checks) runs and is rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from gisgov.config import get_settings
from gisgov.errors import InvalidInput
from gisgov.ingest import estimates, store
from gisgov.ingest.coords import SourceCRS, crs_from_file, parse_crs, to_storage
from gisgov.ingest.fields import parse_map, resolve
from gisgov.ingest.levels import ALL_LEVELS, LEVELS, Level
from gisgov.ingest.readers import RawTable, ReadError, read_any
from gisgov.ingest.report import INFO, REPAIRED, Report, settle
from gisgov.ingest.settings import get_ingest_settings
from gisgov.ingest.uploads import UploadRejected
from gisgov.ingest.validate import Batch, _label, validate


class UsageError(InvalidInput):
    """The command was asked for something impossible (unknown level, bad option): exit code 2."""


def parse_region(region) -> tuple[float, float, float, float] | None:
    """``None`` → settings.region_bbox; ``"auto"``/``"none"`` → no region check; ``"a,b,c,d"`` → box."""
    if region is None:
        return tuple(get_settings().region_bbox)
    if isinstance(region, (tuple, list)):
        return tuple(float(v) for v in region)
    s = str(region).strip().lower()
    if s in ("auto", "none", "off"):
        return None
    try:
        box = tuple(float(v) for v in s.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[0] >= box[2] or box[1] >= box[3]:
        raise UsageError(f"范围参数无效 --region expects auto or minlon,minlat,maxlon,maxlat, got {region!r}")
    return box


def _geometries_from_table(raw: RawTable, mapping: dict[str, str]) -> tuple[np.ndarray, dict]:
    cols = raw.columns
    n = len(cols)
    problems: dict[int, tuple[str, str]] = {}
    if "wkt" in mapping:
        vals = cols[mapping["wkt"]].to_numpy(dtype=object)
        geoms = shapely.from_wkt(vals, on_invalid="ignore")
        for i in np.flatnonzero(shapely.is_missing(geoms) & pd.notna(vals)):
            fixed = shapely.from_wkt(vals[i], on_invalid="fix")
            if fixed is not None and "POLYGON" in str(vals[i]).upper():
                geoms[i] = fixed
                problems[int(i)] = ("ring_not_closed", str(vals[i])[:60])
            else:
                problems[int(i)] = ("geom_empty", f"unreadable WKT: {str(vals[i])[:60]}")
        return geoms, problems
    if "lon" in mapping and "lat" in mapping:
        x = pd.to_numeric(cols[mapping["lon"]], errors="coerce").to_numpy(dtype=float)
        y = pd.to_numeric(cols[mapping["lat"]], errors="coerce").to_numpy(dtype=float)
        geoms = np.empty(n, dtype=object)
        good = ~(np.isnan(x) | np.isnan(y))
        geoms[good] = shapely.points(x[good], y[good])
        for i in np.flatnonzero(~good):
            problems[int(i)] = ("geom_empty", f"lon={cols[mapping['lon']].iloc[i]}, lat={cols[mapping['lat']].iloc[i]}")
        return geoms, problems
    raise UsageError(
        f"{raw.source}: a table needs a geometry: a WKT column (wkt/几何) or lon/lat columns (经度/纬度); "
        f"columns: {', '.join(map(str, cols.columns))}"
    )


def prepare(
    raw: RawTable, level_name: str, *, crs: str | None = None, overrides: list[str] | dict | None = None, report: Report
) -> Batch:
    """Field mapping + geometry + CRS conversion: a Batch in storage lon/lat."""
    level = LEVELS[level_name]
    fields = ("code",) + level.fields + (("wkt", "lon", "lat") if raw.geoms is None else ())
    try:
        ov = overrides if isinstance(overrides, dict) else parse_map(overrides)
        mapping = resolve(list(raw.columns.columns), level.name, fields, ov)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    report.add(
        "(file)",
        "field_mapping",
        ", ".join(f"{f}←{c}" for f, c in mapping.items()) or "(none)",
        "字段对应 field mapping",
        INFO,
    )
    attrs = pd.DataFrame(
        {f: raw.columns[c].to_numpy(dtype=object) for f, c in mapping.items() if f not in ("wkt", "lon", "lat")},
        index=range(len(raw.columns)),
    )
    for f, c in mapping.items():
        if (f == "code" or f.endswith("_code")) and raw.inexact.get(c):
            for i, value in sorted(raw.inexact[c].items()):
                report.add(
                    raw.records[i],
                    "code_inexact",
                    value,
                    f"编码以浮点数存储，末位已丢失 the code in column {c} is stored as a floating-point number and "
                    "cannot be represented exactly (its last digits are lost); store codes as text (a character "
                    "field) and export again",
                )
    problems = dict(raw.problems)
    if raw.geoms is None:
        geoms, p2 = _geometries_from_table(raw, mapping)
        problems.update(p2)
    else:
        geoms = raw.geoms
    settings = get_settings()
    try:
        src = parse_crs(crs)
        if src is None:
            src = crs_from_file(raw.crs)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if src is None:
        if raw.geoms is None:
            src = SourceCRS(epsg=4490)
            report.add(
                "(file)",
                "crs_assumed",
                "EPSG:4490",
                "表格未声明坐标系，按 CGCS2000 经纬度读取 table has no CRS: "
                "read as EPSG:4490 lon/lat (pass --crs otherwise)",
                INFO,
            )
        else:
            from gisgov.ingest.coords import projected_hint

            hint = projected_hint(raw.geoms)
            raise UsageError(
                f"文件未声明坐标系 {raw.source} has no CRS (no .prj); "
                + (hint or "pass --crs (4490, 4326, 4513–4554, gcj02, bd09)")
            )
    if not (src.offset is None and src.epsg == settings.srid):
        report.add(
            "(file)",
            "crs_converted",
            src.label,
            f"坐标已转换 coordinates converted {src.label} → EPSG:{settings.srid}",
            INFO,
        )
    geoms = to_storage(geoms, src, settings.srid)
    for note in raw.notes:
        report.add("(file)", "read", note, "读取 read", INFO)
    return Batch(level, list(raw.records), attrs, geoms, problems, Path(raw.source).stem)


def load_file(
    path: str | Path,
    level: str,
    *,
    engine: Engine,
    layer: str | None = None,
    crs: str | None = None,
    mapping: list[str] | dict | None = None,
    repair: bool = False,
    dry_run: bool = False,
    region=None,
    encoding: str | None = None,
    estimate: bool = True,
    progress=None,
    display_name: str | None = None,
    vault=None,
    area: str = "",
    header_row: int | None = None,
    update: bool = False,
    actor=None,
) -> Report:
    """Load ``path`` as ``level``; returns the report (status loaded / rejected / dry-run).

    ``header_row``: for resident rosters, the spreadsheet row (1-based) holding the column names
    (default: found among the first 30 rows, see :func:`gisgov.ingest.roster.find_header`).

    ``area``: code prefix of the hierarchy the caller may change ('' = all). Records whose code (a
    facility's community code) lies outside it are rejected (rule ``out_of_scope``); road networks
    are city-wide and need ``area == ''``. Resident rosters are checked against the database scope
    of the connection (row-level security), see :func:`gisgov.ingest.roster.load_roster`.

    ``update``: records whose code is already in the database replace it (geometry and the attributes
    the file maps; the rest keep their values) instead of being rejected (``code_exists``); the previous
    state goes to ``feature_history`` and each change is audited (``actor``: a Principal or a name),
    in the load's single transaction. Children of an updated record (a street's communities, a
    community's grids/compounds/buildings/facilities, a compound's or grid's buildings) whose position
    falls outside it are rejected (rule ``child_outside``): nothing changes. With ``repair``, buildings
    are moved to the compound / grid now containing them (or to none) and each move is reported;
    children bound by their code cannot be moved by an import and stay rejected.

    Same-level records may not overlap (rule ``sibling_overlap``; with ``repair`` the newer record is
    trimmed) and gaps inside a parent are noted (``parent_gap``), see :mod:`gisgov.ingest.siblings`."""
    if level not in ALL_LEVELS:
        raise UsageError(f"未知层级 unknown level {level!r}; choose one of {', '.join(ALL_LEVELS)}")
    if update and level not in store.UPDATABLE:
        raise UsageError(f"该层级不能更新 --update applies to {', '.join(store.UPDATABLE)}, not {level}")
    if header_row is not None and header_row < 1:
        raise UsageError(f"表头行号须不小于一 --header-row expects a row number ≥ 1, got {header_row}")
    p = Path(path)
    if not p.exists():
        raise UsageError(f"文件不存在 no such file: {p}")
    if level == "resident":
        from gisgov.ingest.roster import load_roster

        return load_roster(
            p,
            engine=engine,
            mapping=mapping,
            dry_run=dry_run,
            encoding=encoding,
            sheet=layer,
            progress=progress,
            display_name=display_name,
            vault=vault,
            area=area,
            header_row=header_row,
        )
    if header_row not in (None, 1):
        raise UsageError("表头行号只适用于居民名册 --header-row applies to resident rosters (--level resident) only")
    name = display_name or p.name
    report = Report(name, level, dry_run=dry_run)
    box = parse_region(region)
    if progress:
        progress("read", 0, 1)
    try:
        raw = read_any(p, layer=layer, encoding=encoding, display_name=name)
    except (ReadError, UploadRejected) as exc:
        report.add("(file)", getattr(exc, "rule", "unreadable"), p.suffix, str(exc))
        report.status = "rejected"
        return report
    except Exception as exc:  # a reader failing in a way not foreseen: a report, never a traceback
        report.add(
            "(file)",
            "unreadable",
            p.suffix,
            f"{name}: 无法读取 cannot read ({type(exc).__name__}: {str(exc).replace(str(p), name)})"[:600],
        )
        report.status = "rejected"
        return report
    if len(raw.records) == 0:
        report.add(
            "(file)", "file_empty", p.suffix, f"{name}: 文件没有任何记录 the file holds no records; nothing to load"
        )
        report.status = "rejected"
        return report
    batch = prepare(raw, level, crs=crs, overrides=mapping, report=report)
    report.counts["read"] = len(batch.records)
    if progress:
        progress("read", 1, 1)
    lv = LEVELS[level]
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            store.lock(conn, lv.table)
            ctx = store.load_context(conn, lv, box)
            ctx.clip_share = get_ingest_settings().clip_share
            ctx.update = update
            if progress:
                progress("validate", 0, len(batch.records))
            rows, issues = validate(batch, ctx, repair=repair)
            report.extend(issues)
            _check_siblings(lv, batch, ctx, rows, report, repair)
            if area:
                _check_area(lv, rows, batch.records, area, report)
            if progress:
                progress("validate", len(batch.records), len(batch.records))
            if report.ok:
                upd = None
                if update:
                    upd = _Update(ctx.existing_codes, list(batch.attrs.columns), actor, name, repair)
                _write(conn, lv, rows, ctx.srid, report, estimate, progress, upd)
            settle(tx, report, dry_run=dry_run)
        except BaseException:
            if tx.is_active:
                tx.rollback()
            raise
    return report


def _check_area(lv, rows: pd.DataFrame, records: list[str], area: str, report: Report) -> None:
    """Reject (rule ``out_of_scope``) every record outside the caller's area ``area``."""
    from gisgov.ingest.rules import msg

    if lv.name == "road":
        report.add(
            "(file)",
            "out_of_scope",
            area,
            msg(
                "out_of_scope",
                "道路网覆盖全市，仅限全市账号 the road network is city-wide: only whole-city accounts load it",
            ),
        )
        return
    col = "community_code" if lv.name == "facility" else "code"
    for i, v in enumerate(rows[col].tolist()):
        if v is None or not str(v).startswith(area):
            report.add(
                records[i],
                "out_of_scope",
                v,
                msg("out_of_scope", f"{lv.name} {v or '(无编码 no code)'} 不在 not within {area}"),
            )


def _check_siblings(lv, batch: Batch, ctx, rows: pd.DataFrame, report: Report, repair: bool) -> None:
    """不重不漏: overlaps with same-level records (file and database), gaps inside the parents."""
    from gisgov.ingest.siblings import check_gaps, check_overlaps

    if lv.name not in store.SIBLING_SOURCES:
        return
    ok = rows["_ok"].to_numpy(dtype=bool).copy()
    records = _label(batch.records, rows["code"].tolist())
    report.extend(check_overlaps(lv.name, records, rows, ok, ctx.siblings, repair=repair))
    if report.ok and ok.all():  # gaps of what would be written (a rejected load writes nothing)
        report.extend(check_gaps(lv.name, rows, ok, ctx.parents, ctx.siblings))
    rows["_ok"] = ok


@dataclass
class _Update:
    """What ``--update`` needs when writing: codes already stored, the fields the file maps, who, which file."""

    existing: set[str]
    mapped: list[str]
    actor: object
    source: str
    repair: bool


def _apply_updates(
    conn: Connection, lv: Level, rows: pd.DataFrame, srid: int, report: Report, estimate: bool, upd: _Update
) -> None:
    from gisgov.ingest.rules import msg

    columns = store.update_columns(lv, upd.mapped)
    changed, unchanged, missing = store.update_level(
        conn, lv, rows.reset_index(drop=True), srid, columns, actor=upd.actor, source=upd.source
    )
    for code in missing:
        report.add(
            code,
            "code_exists",
            code,
            msg("code_exists", f"{code} belongs only to a draft or archived plan; an import updates current records"),
        )
    report.counts["updated"] = len(changed)
    report.counts["unchanged"] = len(unchanged)
    for e in changed:
        report.add(
            f"{lv.name} {e['code']}",
            "updated",
            f"v{e['version']}",
            msg("updated", f"changed {', '.join(e['changed'])}; previous version kept as history #{e['history_id']}"),
            INFO,
        )
    moved = [e for e in changed if e["geometry_changed"]]
    if lv.name == "building" and estimate and moved:
        if "households" not in upd.mapped:  # an estimate made for the old footprint is made again
            conn.execute(
                text("UPDATE building SET households = NULL WHERE households_estimated AND code = ANY(:c)"),
                {"c": [e["code"] for e in moved]},
            )
        report.counts["households_estimated"] = report.counts.get("households_estimated", 0) + (
            estimates.apply_estimates(conn, [e["code"] for e in changed])
        )
    outside = store.children_outside(conn, lv, [e["id"] for e in moved])
    by_col: dict[str, list[tuple[str, str, str, str]]] = {}
    for child, code, pcode, where in outside:
        col = store.REASSIGNABLE.get((lv.name, child))
        if upd.repair and col:
            by_col.setdefault(col, []).append((child, code, pcode, where))
            continue
        hint = (
            "use --repair to move it to the one now containing it"
            if col
            else f"correct the {child} first (its code ties it to this {lv.name})"
        )
        report.add(
            f"{lv.name} {pcode}",
            "child_outside",
            code,
            msg("child_outside", f"{child} {code} would lie outside {lv.name} {pcode} (at {where}); {hint}"),
        )
    for col, items in by_col.items():
        new = dict(store.reassign_buildings(conn, col, [c for _, c, _, _ in items]))
        for child, code, pcode, where in items:
            report.add(
                f"{lv.name} {pcode}",
                "child_outside",
                code,
                msg(
                    "child_outside",
                    f"{child} {code} (at {where}) moved from {lv.name} {pcode} to "
                    f"{new.get(code) or '(none 无)'} 已改挂到所在的{lv.zh}",
                ),
                REPAIRED,
            )


def _write(
    conn: Connection,
    lv: Level,
    rows: pd.DataFrame,
    srid: int,
    report: Report,
    estimate: bool,
    progress: Any,
    upd: _Update | None = None,
) -> None:
    sp = conn.begin_nested()
    try:
        if lv.name == "road":
            from gisgov.ingest.network import split_lines

            lines, owner = _explode_lines(rows["geom"].to_numpy(dtype=object))
            net = split_lines(lines)
            attrs = rows.iloc[owner[net.line]].reset_index(drop=True)
            n_nodes, n_edges = store.write_network(conn, net, attrs, srid, progress)
            report.counts.update(nodes=n_nodes, edges=n_edges, written=n_edges)
            from gisgov.ingest.network import largest_component_share

            report.stats["largest_component_share"] = round(
                largest_component_share(len(net.node_xy), net.source, net.target), 4
            )
        else:
            if upd is not None:
                is_upd = rows["code"].isin(upd.existing).to_numpy()
                _apply_updates(conn, lv, rows[is_upd], srid, report, estimate, upd)
                rows = rows[~is_upd].reset_index(drop=True)
            report.counts["written"] = store.write_level(conn, lv, rows, srid, progress)
            if lv.name == "building":
                report.counts["households_given"] = int(rows["households"].notna().sum())
                if estimate:
                    report.counts["households_estimated"] = estimates.apply_estimates(conn, rows["code"].tolist())
        sp.commit()
    except DBAPIError as exc:
        sp.rollback()
        diag = getattr(exc.orig, "diag", None)
        detail = (diag.message_primary if diag is not None and diag.message_primary else str(exc.orig)).strip()
        report.add(
            "(database)", "database", type(exc.orig).__name__, f"数据库拒绝 the database refused the load: {detail}"
        )


def _explode_lines(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    parts, idx = shapely.get_parts(geoms, return_index=True)
    return parts, idx
