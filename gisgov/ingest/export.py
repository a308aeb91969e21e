"""Export one level to GeoPackage, GeoJSON, Shapefile, CSV or XLSX — in a form `gisgov load` reads back.

Column names are the loader's canonical fields (short aliases in Shapefiles, whose DBF field names
stop at 10 bytes); resident exports use the roster template's Chinese headers. CSV/XLSX carry the
geometry as full-precision WKT in a ``wkt`` column. ID numbers and phones are masked unless
``allow_pii`` (which decrypts them with the key; only the CLI run by the database owner offers it,
never the web app).

Re-identification: a resident export carries the birth year (出生年份) and gender, so the masked ID
column shows NO characters of the number (``******************``): four visible characters plus the
birth year would leave ~33 candidate numbers (see :mod:`gisgov.security.reident`).

Files with personal data (resident exports, masked or not) are written 0600: they are produced in a
private (0700) staging folder next to the target and moved into place, so no copy is ever readable
by other users, not even while it is being written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import shapely
from sqlalchemy import Engine, text

from gisgov.errors import StorageFull
from gisgov.ingest.diskspace import DISK_FULL, storage_full
from gisgov.ingest.levels import ALL_LEVELS
from gisgov.security.pii import ID_HIDDEN, Vault

FORMATS = {"gpkg": "gpkg", "geojson": "geojson", "shp": "shp", "csv": "csv", "xlsx": "xlsx"}
# Text encodings of Shapefile exports: GBK by default (desktop GIS in China reads a DBF as GBK), UTF-8 on
# request. The .cpg written beside the DBF names it, and the DBF header's language driver byte says GBK
# (0x4D, code page 936) for tools that ignore .cpg files.
SHP_ENCODINGS = {"gbk": "GBK", "cp936": "GBK", "utf-8": "UTF-8", "utf8": "UTF-8"}
DEFAULT_SHP_ENCODING = "gbk"
_LDID = {"GBK": 0x4D, "UTF-8": 0x00}
XLSX_CELL_LIMIT = 32767

_SQL = {
    "street": "SELECT code, name, ST_AsBinary(geom) AS geom FROM street x {where} ORDER BY code",
    "community": "SELECT code, street_code, name, class, kind, rule_set, ST_AsBinary(geom) AS geom FROM community x {where} ORDER BY code",
    # grids in use only (active plans' and grids made outside plans): drafts are exported through the plan routes
    "grid": "SELECT code, community_code, name, level AS grid_level, ST_AsBinary(geom) AS geom FROM grid_current() x {where} "
    "ORDER BY code",
    "compound": "SELECT code, community_code, name, year_built, property_mode, has_party_org, is_old, ST_AsBinary(geom) AS geom "
    "FROM compound x {where} ORDER BY code",
    "building": "SELECT x.code, x.community_code, c.code AS compound_code, g.code AS grid_code, x.name, x.address, "
    "x.floors, x.units, x.households, x.households_estimated, x.year_built, ST_AsBinary(coalesce(x.geom, x.pos)) AS geom "
    "FROM building x LEFT JOIN compound c ON c.id = x.compound_id LEFT JOIN grid g ON g.id = x.grid_id "
    "{where} ORDER BY x.code",
    "facility": "SELECT x.code, x.name, fc.name_zh AS category, x.kind, x.community_code, x.address, x.source, ST_AsBinary(x.geom) AS geom "
    "FROM facility x JOIN facility_category fc ON fc.code = x.category_code {where} ORDER BY x.code",
    "road": "SELECT x.id, x.name, x.class AS road_class, x.foot, x.oneway_foot, x.length_m, x.source, x.target, ST_AsBinary(x.geom) AS geom "
    "FROM road_edge x {where} ORDER BY x.id",
    "resident": """
        SELECT h.building_code AS "楼栋编码", b.address AS "地址", coalesce(h.door_no, right(h.code, 4)) AS "户号",
               r.name AS "姓名", r.gender AS "性别", r.birth_year AS "出生年份", r.role AS "与户主关系",
               r.id_last4, r.id_cipher, r.phone_cipher, r.phone_masked,
               (SELECT string_agg(sg.name_zh, ';' ORDER BY sg.sort) FROM resident_group rg
                JOIN special_group sg ON sg.code = rg.group_code WHERE rg.resident_id = r.id) AS "特殊人群",
               coalesce(r.residence, h.residence) AS "居住类型", h.code AS "户编码", ST_AsBinary(r.geom) AS geom
        FROM resident r JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
        {where} ORDER BY h.code, r.id""",
}

_COMMUNITY_FILTER = {
    "street": "x.code = left(:c, 9)",
    "community": "x.code = :c",
    "grid": "x.community_code = :c",
    "compound": "x.community_code = :c",
    "building": "x.community_code = :c",
    "facility": "x.community_code = :c",
    "road": "ST_Intersects(x.geom, (SELECT geom FROM community WHERE code = :c))",
    "resident": "b.community_code = :c",
}

# Area (code prefix of the caller's node): features whose code starts with it.
_AREA_FILTER = {
    "street": "starts_with(x.code, :a)",
    "community": "starts_with(x.code, :a)",
    "grid": "starts_with(x.code, :a)",
    "compound": "starts_with(x.code, :a)",
    "building": "starts_with(x.code, :a)",
    "facility": "starts_with(x.community_code, :a)",
    "road": "ST_Intersects(x.geom, (SELECT geom FROM street WHERE code = :a UNION ALL "
    "SELECT geom FROM community WHERE code = :a LIMIT 1))",
    "resident": "starts_with(h.building_code, :a)",
}
PERSONAL_LEVELS = frozenset({"resident"})

# DBF field names stop at 10 bytes: these short names are aliases the loader knows.
SHP_NAMES = {
    "street_code": "jdbm",
    "community_code": "sqbm",
    "compound_code": "xqbm",
    "grid_code": "wgbm",
    "property_mode": "wyms",
    "has_party_org": "dzz",
    "households_estimated": "hh_est",
    "oneway_foot": "oneway",
    "楼栋编码": "ldbm",
    "与户主关系": "role",
    "出生年份": "birth_year",
    "特殊人群": "groups",
    "居住类型": "residence",
    "身份证号": "sfzh",
    "联系电话": "lxdh",
    "户编码": "hbm",
    "地址": "address",
    "户号": "door_no",
    "姓名": "name",
    "性别": "gender",
}


def _level_sql(level: str, community: str | None, area: str) -> tuple[str, dict]:
    from gisgov.ingest.loader import UsageError

    if level not in ALL_LEVELS:
        raise UsageError(f"未知层级 unknown level {level!r}; choose one of {', '.join(ALL_LEVELS)}")
    if community is not None and not (len(community) == 12 and community.isdigit()):
        raise UsageError(f"社区编码须为十二位数字 --community expects a 12-digit community code, got {community!r}")
    if area and not area.isdigit():
        raise UsageError(f"范围须为编码前缀 area must be a code prefix, got {area!r}")
    conds = ([_COMMUNITY_FILTER[level]] if community else []) + ([_AREA_FILTER[level]] if area else [])
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    return _SQL[level].format(where=where), {k: v for k, v in (("c", community), ("a", area)) if v}


def count_level(engine: Engine, level: str, *, community: str | None = None, area: str = "") -> int:
    """How many records :func:`query_level` would return (same filters, same database scope)."""
    sql, params = _level_sql(level, community, area)
    body = sql.rsplit("ORDER BY", 1)[0]  # the outer ORDER BY is always the last one
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM ({body}) s"), params).scalar())


def query_level(
    engine: Engine,
    level: str,
    *,
    community: str | None = None,
    allow_pii: bool = False,
    vault: Vault | None = None,
    area: str = "",
    progress=None,
) -> tuple[pd.DataFrame, np.ndarray, int]:
    """(attribute table, geometries, srid) of one level; ``area``: only features whose code starts
    with this prefix ('' = all; roads: those meeting the street/community outline). ``progress(n)``
    is called with the number of rows read so far (every 5,000)."""
    sql, params = _level_sql(level, community, area)
    with engine.connect() as conn:
        srid = int(conn.execute(text("SELECT value FROM gisgov_meta WHERE key = 'srid'")).scalar() or 4490)
        res = conn.execution_options(stream_results=progress is not None).execute(text(sql), params)
        if progress is None:
            rows = res.all()
        else:
            rows = []
            for part in res.partitions(5000):
                rows.extend(part)
                progress(len(rows))
        df = pd.DataFrame(rows, columns=list(res.keys()))
    wkb = df.pop("geom")  # an empty level too: no 'geom' attribute column beside the geometry
    geoms = (
        shapely.from_wkb(np.array([None if g is None else bytes(g) for g in wkb], dtype=object))
        if len(df)
        else np.array([], dtype=object)
    )
    if level == "resident":
        df = _resident_pii(df, allow_pii, vault)
    return df, geoms, srid


def _resident_pii(df: pd.DataFrame, allow_pii: bool, vault: Vault | None) -> pd.DataFrame:
    if allow_pii:
        v = vault or Vault.from_settings()
        ids = [None if c is None else v.decrypt(c) for c in df["id_cipher"]]
        phones = [None if c is None else v.decrypt(c) for c in df["phone_cipher"]]
    else:  # the birth year is in the output: no character of the ID number at all
        ids = [None if x is None else ID_HIDDEN for x in df["id_last4"]]
        phones = list(df["phone_masked"])
    out = df.drop(columns=["id_last4", "id_cipher", "phone_cipher", "phone_masked"])
    pos = list(out.columns).index("与户主关系") + 1
    out.insert(pos, "身份证号", ids)
    out.insert(pos + 1, "联系电话", phones)
    return out


def export_level(
    engine: Engine,
    level: str,
    fmt: str,
    out: str | Path,
    *,
    community: str | None = None,
    allow_pii: bool = False,
    vault: Vault | None = None,
    area: str = "",
    progress=None,
    encoding: str = DEFAULT_SHP_ENCODING,
) -> int:
    """Write one level to ``out``; returns the number of records. Resident files are 0600.

    ``encoding``: text encoding of a Shapefile's DBF, ``gbk`` (default) or ``utf-8``; written in a ``.cpg``
    beside it. Other formats are UTF-8 whatever it says (CSV with a BOM, as Excel expects)."""
    from gisgov.ingest.loader import UsageError

    if fmt not in FORMATS:
        raise UsageError(f"未知格式 unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    shp_enc = shp_encoding(encoding)
    if allow_pii and level != "resident":
        allow_pii = False
    df, geoms, srid = query_level(
        engine, level, community=community, allow_pii=allow_pii, vault=vault, area=area, progress=progress
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written in a private staging folder next to the target and moved into place only when complete:
    # a failed export leaves no partial file (and personal data is never readable by others).
    stage = Path(tempfile.mkdtemp(prefix=".gisgov-export-", dir=out.parent))  # 0700
    try:
        n = _write(df, geoms, srid, level, fmt, stage / out.name, encoding=shp_enc)
        for f in sorted(stage.iterdir()):
            if level in PERSONAL_LEVELS:
                os.chmod(f, 0o600)
            os.replace(f, out.parent / f.name)
    except Exception as exc:
        # GDAL / SQLite say "cannot write": look at the staging folder before it goes
        if not isinstance(exc, StorageFull) and storage_full(exc, stage, need=_binary_size(df, geoms)):
            raise StorageFull(DISK_FULL) from exc
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return n


def _binary_size(df: pd.DataFrame, geoms: np.ndarray) -> int:
    """About the smallest file the rows make (their geometry as WKB plus their values in memory): any
    format takes at least this much."""
    try:
        wkb = int(sum(len(b) for b in shapely.to_wkb(np.asarray(geoms)) if b is not None))
    except Exception:
        wkb = 0
    return wkb + int(df.memory_usage(index=False, deep=True).sum())


def shp_encoding(encoding: str | None) -> str:
    """GDAL's name (``GBK`` / ``UTF-8``) for a Shapefile export encoding option; UsageError otherwise."""
    from gisgov.ingest.loader import UsageError

    key = (encoding or DEFAULT_SHP_ENCODING).strip().lower()
    if key not in SHP_ENCODINGS:
        raise UsageError(f"不支持的编码 unsupported Shapefile encoding {encoding!r}; choose gbk (default) or utf-8")
    return SHP_ENCODINGS[key]


def _check_encodable(df: pd.DataFrame, encoding: str) -> None:
    """Every text value must be writable in ``encoding``: GDAL would write a blank field instead."""
    from gisgov.ingest.loader import UsageError

    if encoding == "UTF-8":
        return
    for c in df.columns:
        if df[c].dtype.kind in "biufcmM":  # numbers and dates: nothing to encode
            continue
        for i, v in enumerate(df[c].tolist()):
            if not isinstance(v, str):
                continue
            try:
                v.encode("gbk")
            except UnicodeEncodeError as exc:
                code = df["code"].iloc[i] if "code" in df.columns else f"row {i + 1}"
                raise UsageError(
                    f"字符无法用 GBK 编码 {c} of {code} holds {v[exc.start : exc.end]!r}, which GBK cannot write "
                    f"(in {v!r}); export with --encoding utf-8 (rule: shp_not_encodable)"
                ) from None


def _write(
    df: pd.DataFrame, geoms: np.ndarray, srid: int, level: str, fmt: str, out: Path, *, encoding: str = "GBK"
) -> int:
    """Write one level's table and geometries to ``out``; ``encoding`` (GDAL's name) is a Shapefile's."""
    from gisgov.ingest.loader import UsageError

    for c in df.columns:  # nullable ints stay ints in every format
        if (
            df[c].dtype == object
            and df[c].map(lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)).any()
        ):
            df[c] = pd.array([None if v is None else int(v) for v in df[c]], dtype="Int64")
    if fmt in ("csv", "xlsx"):
        table = df.copy()
        table["wkt"] = shapely.to_wkt(geoms, rounding_precision=-1) if len(geoms) else []
        if fmt == "csv":
            table.to_csv(out, index=False, encoding="utf-8-sig")
        else:
            too_long = table["wkt"].map(lambda w: w is not None and len(w) > XLSX_CELL_LIMIT)
            if too_long.any():
                raise UsageError(
                    f"几何过长，超过电子表格单元格上限 {int(too_long.sum())} geometries exceed Excel's {XLSX_CELL_LIMIT}-character cell "
                    "limit as WKT; export this level as gpkg or csv"
                )
            table.to_excel(out, index=False, engine="openpyxl")
        return len(table)
    import geopandas as gpd

    gdf = gpd.GeoDataFrame(df, geometry=list(geoms) if len(geoms) else [], crs=f"EPSG:{srid}")
    if fmt == "shp":
        if len(gdf) and len(set(gdf.geom_type.dropna())) > 1:
            raise UsageError(
                f"几何类型混杂，无法写入同一个形状文件 {level}: mixed geometry types cannot go into one Shapefile; use gpkg"
            )
        gdf = gdf.rename(columns=SHP_NAMES)
        if out.suffix.lower() != ".shp":
            out = out.with_suffix(".shp")
        _check_encodable(gdf.drop(columns="geometry"), encoding)
        pyogrio.write_dataframe(gdf, out, driver="ESRI Shapefile", encoding=encoding)
        _mark_dbf(out, encoding)
    elif fmt == "gpkg":
        pyogrio.write_dataframe(gdf, out, driver="GPKG", layer=level)
    else:
        pyogrio.write_dataframe(gdf, out, driver="GeoJSON", layer_options={"COORDINATE_PRECISION": 12})
    return len(gdf)


def _mark_dbf(shp: Path, encoding: str) -> None:
    """Name the encoding in the .cpg (GDAL writes one; made sure of here) and in the DBF's language
    driver byte (header offset 29)."""
    shp.with_suffix(".cpg").write_text(encoding, encoding="ascii")
    dbf = shp.with_suffix(".dbf")
    with dbf.open("r+b") as f:
        f.seek(29)
        f.write(bytes([_LDID[encoding]]))


def write_roster_template(out: str | Path) -> Path:
    """The resident roster template (居民名册模板) with Chinese headers, an example row and notes."""
    from gisgov.ingest.roster import TEMPLATE_EXAMPLE, TEMPLATE_HEADERS, TEMPLATE_NOTES

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        pd.DataFrame([TEMPLATE_EXAMPLE], columns=TEMPLATE_HEADERS).to_csv(out, index=False, encoding="utf-8-sig")
        return out
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill

    wb = Workbook()
    ws = wb.active
    ws.title = "居民名册"
    ws.append(TEMPLATE_HEADERS)
    ws.append(TEMPLATE_EXAMPLE)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    text_cols = {TEMPLATE_HEADERS.index(h) for h in ("楼栋编码", "户号", "身份证号", "联系电话")}
    for j, width in enumerate((20, 24, 8, 10, 6, 10, 12, 22, 16, 22, 10)):
        col = "ABCDEFGHIJK"[j]
        dim = ws.column_dimensions[col]
        dim.width = width
        if j in text_cols:
            # the whole column is text (Excel applies a column's format to every cell typed into it):
            # codes, door numbers, ID numbers and phones keep every digit and their leading zeros
            dim.number_format = "@"
        for row in (1, 2):
            ws[f"{col}{row}"].number_format = "@"
    notes = wb.create_sheet("填写说明")
    notes.append(["列 column", "说明 notes"])
    for k, v in TEMPLATE_NOTES:
        notes.append([k, v])
    notes.column_dimensions["A"].width = 14
    notes.column_dimensions["B"].width = 100
    wb.save(out)
    return out
