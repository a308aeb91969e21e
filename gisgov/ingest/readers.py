"""Read incoming files into a :class:`RawTable`: attribute columns, geometries, record labels.

Vector formats go through pyogrio (GDAL): GeoJSON, GeoPackage, Shapefile (also zipped), FlatGeobuf.
Tables (CSV, XLSX) carry their geometry as WKT (``wkt`` column) or as lon/lat columns.
Geometries GDAL hands over but GEOS cannot build (an unclosed ring) are kept as problems for the
validator, not dropped.
"""

from __future__ import annotations

import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyogrio
import pyogrio.raw
import shapely

from gisgov.ingest.encoding import normalize_codec, shapefile_encoding, text_encoding

VECTOR_SUFFIXES = {".shp", ".gpkg", ".geojson", ".json", ".fgb", ".zip"}
TABLE_SUFFIXES = {".csv", ".txt", ".xlsx", ".xlsm"}


@dataclass
class RawTable:
    """What a reader hands to field mapping and validation."""

    source: str  # file name shown in the report
    columns: pd.DataFrame  # the file's own columns (strings), index 0..n-1
    records: list[str]  # "fid 3" / "row 17", per row
    geoms: np.ndarray | None  # shapely geometries in the file's CRS (None per missing); None = no geometry
    crs: str | None = None  # the file's CRS as WKT / "EPSG:x", None when unknown
    problems: dict[int, tuple[str, str]] = field(default_factory=dict)  # row → (rule, detail)
    notes: list[str] = field(default_factory=list)
    # column → {row: the value as the file holds it} for numbers that cannot be read back exactly
    # (a 17-digit code stored as a floating-point number); a code column with such a row is refused.
    inexact: dict[str, dict[int, str]] = field(default_factory=dict)


class ReadError(ValueError):
    """The file cannot be read at all (format, layer, encoding); ``rule`` names the reason in reports."""

    def __init__(self, message: str, rule: str = "unreadable") -> None:
        super().__init__(message)
        self.rule = rule


def _encoding_error(name: str, exc: ValueError) -> ReadError:
    """A ReadError for an encoding that cannot be told or a lying .cpg, keeping the rule it names."""
    return ReadError(f"{name}: {exc}", getattr(exc, "rule", "unreadable"))


def list_layers(path: str | Path) -> list[str]:
    return [str(n) for n, _ in pyogrio.list_layers(str(path))]


_ZIP_DATASETS = (".shp", ".gpkg", ".geojson", ".json", ".fgb")


def _zip_dataset(path: Path, name: str) -> tuple[str, list[str]]:
    """(member to open, members GDAL may read for it) of an uploaded zip, after the archive checks of
    :func:`gisgov.ingest.uploads.inspect_zip` (size, ratio, members, paths; 413/422 on a refusal)."""
    from gisgov.ingest.uploads import inspect_zip

    infos = inspect_zip(path, name, verify=False)
    files = [i.filename for i in infos if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
    for suffix in _ZIP_DATASETS:
        found = sorted(n for n in files if n.lower().endswith(suffix))
        if found:
            member = found[0]
            stem = member[: -len(suffix)].lower()
            group = [n for n in files if n.lower().rsplit(".", 1)[0] == stem] if suffix == ".shp" else [member]
            return member, group
    raise ReadError(f"{name}: no Shapefile, GeoPackage, GeoJSON or FlatGeobuf inside the zip")


def _vsizip(path: Path, member: str) -> str:
    return f"/vsizip/{{{path.resolve()}}}/{member}"


def read_vector(
    path: str | Path, *, layer: str | None = None, encoding: str | None = None, display_name: str | None = None
) -> RawTable:
    """A vector file. A .zip is read in place through GDAL's ``/vsizip/`` (nothing is extracted) once
    the archive passed the upload checks and the members GDAL reads were inflated once in memory
    against their declared sizes (a lying header is refused, rule ``zip_size_mismatch``)."""
    path = Path(path)
    name = display_name or path.name
    source = str(path)
    notes: list[str] = []
    kw: dict = {}
    suffix = path.suffix.lower()
    if suffix == ".zip":
        import zipfile

        from gisgov.ingest.encoding import zip_shapefile_encoding
        from gisgov.ingest.uploads import inspect_zip

        member, group = _zip_dataset(path, name)
        inspect_zip(path, name, members=group)  # inflate what GDAL will read, in memory, bounded
        source, suffix = _vsizip(path, member), Path(member).suffix.lower()
        if suffix == ".shp" and not encoding:
            with zipfile.ZipFile(path) as z:
                try:
                    enc, how = zip_shapefile_encoding(z, member)
                except ValueError as exc:
                    raise _encoding_error(name, exc) from exc
            kw["encoding"] = enc
            notes.append(f"DBF encoding {enc} ({how})")
    if suffix == ".shp" and source == str(path):
        _check_shapefile_parts(path, name)
    if suffix == ".shp" and "encoding" not in kw:
        if encoding:
            enc, how = normalize_codec(encoding), "given with --encoding"
        else:
            try:
                enc, how = shapefile_encoding(source)
            except ValueError as exc:  # a lying .cpg, an unknown label, an encoding that cannot be told
                raise _encoding_error(name, exc) from exc
        kw["encoding"] = enc
        notes.append(f"DBF encoding {enc} ({how})")
    elif encoding:
        kw["encoding"] = normalize_codec(encoding)
    if layer is None:
        try:
            layers = list_layers(source) if suffix == ".gpkg" else []
        except Exception as exc:
            raise ReadError(_read_failure(exc, path, source, name, suffix)) from exc
        if len(layers) > 1:
            raise ReadError(f"{name} has {len(layers)} layers ({', '.join(layers)}); choose one with --layer")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            meta, fids, wkb, field_data = pyogrio.raw.read(
                source, layer=layer, return_fids=True, force_2d=True, datetime_as_string=True, **kw
            )
    except UnicodeDecodeError as exc:
        how = notes[-1] if notes else ""
        raise ReadError(
            f"{name}: 文字编码不符 the text is not valid {kw.get('encoding', 'utf-8')} ({how}); "
            "the .cpg file may be wrong: pass --encoding gbk (or utf-8, gb18030, big5)"
        ) from exc
    except Exception as exc:  # GDAL's own message is the useful part
        raise ReadError(_read_failure(exc, path, source, name, suffix)) from exc
    for w in caught:
        notes.append(f"GDAL: {w.message}")
    names = [str(n) for n in meta["fields"]]
    inexact: dict[str, dict[int, str]] = {}
    texts: dict[str, pd.Series] = {}
    exact_dbf = _dbf_numbers(path, source, suffix, names, field_data) if suffix == ".shp" else {}
    for col, v in zip(names, field_data, strict=False):
        if col in exact_dbf:
            raw_text = exact_dbf[col]
            sel = np.asarray(fids if fids is not None else np.arange(len(v)), dtype=np.int64)
            vals = [raw_text[int(f)] if 0 <= int(f) < len(raw_text) else None for f in sel]
            texts[col], lost = _dbf_text(vals)
        else:
            texts[col], lost = _as_text(v)
        if lost:
            inexact[col] = lost
    cols = pd.DataFrame(texts)
    n = len(fids) if fids is not None else len(cols)
    if cols.empty and n:
        cols = pd.DataFrame(index=range(n))
    base = np.asarray(fids if fids is not None else np.arange(n))
    records = [f"fid {int(f)}" for f in base]
    problems: dict[int, tuple[str, str]] = {}
    geoms = np.empty(n, dtype=object)
    if wkb is not None:
        arr = np.empty(n, dtype=object)
        arr[:] = list(wkb)
        geoms = shapely.from_wkb(arr, on_invalid="ignore")
        bad = np.flatnonzero(shapely.is_missing(geoms) & np.array([w is not None for w in arr], dtype=bool))
        if bad.size:
            fixed = shapely.from_wkb(arr[bad], on_invalid="fix")
            for i, g in zip(bad, fixed, strict=False):
                problems[int(i)] = ("ring_not_closed", "ring not closed / too few points")
                geoms[i] = g  # the closed version; used only with --repair
    if n == 0:
        raise ReadError(f"{name}: 文件中没有任何要素 the file holds no features (empty layer); nothing to load")
    return RawTable(name, cols, records, geoms, meta.get("crs"), problems, notes, inexact)


def _read_failure(exc: BaseException, path: Path, source: str, name: str, suffix: str) -> str:
    m = _clean_msg(exc, path, source, name)
    low = m.lower()
    if suffix == ".gpkg" and ("malformed" in low or "not a database" in low or "not recognized" in low):
        return (
            f"{name}: GeoPackage 文件已损坏或不完整（可能上传或复制时被截断） the GeoPackage is damaged or "
            f"incomplete (truncated while copying or uploading?); export it again ({m[:200]})"
        )
    if "not recognized as being in a supported file format" in low:
        return f"{name}: 无法识别的文件内容 the content is not a readable {suffix or 'vector'} file ({m[:200]})"
    return f"{name}: cannot read ({m})"


def _check_shapefile_parts(shp: Path, name: str) -> None:
    """A Shapefile is .shp + .shx + .dbf: say once and clearly which part is missing or empty."""
    if not shp.exists() or shp.stat().st_size <= 100:
        raise ReadError(f"{name}: .shp 文件为空 the .shp file is empty (no features); nothing to load")
    missing = [ext for ext in (".shx", ".dbf") if not any(shp.with_suffix(e).exists() for e in (ext, ext.upper()))]
    if ".dbf" in missing:
        raise ReadError(
            f"{name}: 缺少属性表 {shp.stem}.dbf the attribute table {shp.stem}.dbf is missing; a Shapefile needs "
            f"{shp.stem}.shp, .shx and .dbf (and .prj, .cpg) side by side, or all of them in one .zip"
        )


# Largest integer a float64 holds exactly: beyond it neighbouring integers share one float.
_EXACT = 2**53
_DBF_NUM = re.compile(r"^[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$")


def _dbf_numbers(
    path: Path, source: str, suffix: str, names: list[str], field_data: list[Any]
) -> dict[str, list[str | None]]:
    """The text of the DBF's numeric (N/F) fields that GDAL read as floating-point numbers, per record
    number, read from the .dbf itself: a 17-digit code in a numeric field keeps every digit."""
    floats = {c for c, v in zip(names, field_data, strict=False) if np.asarray(v).dtype.kind == "f"}
    if not floats:
        return {}
    try:
        if source.startswith("/vsizip/"):
            import zipfile

            zpath, member = str(path), source.split("}/", 1)[1]
            with zipfile.ZipFile(zpath) as z:
                lookup = {m.lower(): m for m in z.namelist()}
                dbf = lookup.get(member.rsplit(".", 1)[0].lower() + ".dbf")
                if dbf is None:
                    return {}
                with z.open(dbf) as f:
                    return read_dbf_numbers(f, floats)
        dbf_path = next((p for p in (path.with_suffix(".dbf"), path.with_suffix(".DBF")) if p.exists()), None)
        if dbf_path is None:
            return {}
        with dbf_path.open("rb") as f:
            return read_dbf_numbers(f, floats)
    except (OSError, ValueError, struct.error):
        return {}


def read_dbf_numbers(f: BinaryIO, wanted: set[str]) -> dict[str, list[str | None]]:
    """{field: text per record} of the numeric fields named in ``wanted`` (names compared as GDAL
    reports them: ASCII, trailing NULs dropped)."""
    head = f.read(32)
    n_rec, header_len, rec_len = struct.unpack("<IHH", head[4:12])
    fields: list[tuple[str, int, int]] = []
    offset = 1
    while True:
        d = f.read(32)
        if not d or d[0] == 0x0D or len(d) < 32:
            break
        fname = d[:11].split(b"\x00", 1)[0].decode("latin-1").strip()
        ftype, flen = chr(d[11]), d[16]
        if ftype in "NF" and fname in wanted:
            fields.append((fname, offset, flen))
        offset += flen
    if not fields:
        return {}
    f.seek(header_len)
    out: dict[str, list[str | None]] = {fn: [] for fn, _, _ in fields}
    for _ in range(n_rec):
        rec = f.read(rec_len)
        if len(rec) < rec_len:
            break
        for fn, o, ln in fields:
            t = rec[o : o + ln].decode("latin-1").strip().strip("\x00")
            out[fn].append(t or None)
    return out


def _dbf_text(values: list[str | None]) -> tuple[pd.Series, dict[int, str]]:
    """Numbers as the DBF writes them → exact text (``34010400100179003.000`` → ``34010400100179003``),
    with the rows whose text cannot stand for an exact integer code (``3.40104001001790E+16``)."""
    out: list[str | None] = []
    bad: dict[int, str] = {}
    for i, t in enumerate(values):
        t = t.strip() if t is not None else None
        if not t or set(t) <= {"*"}:
            out.append(None)
            continue
        m = _DBF_NUM.match(t)
        if not m or not (m.group(1) or m.group(2)):
            out.append(t)
            continue
        whole, frac, exp = m.group(1) or "", (m.group(2) or "").rstrip("0"), m.group(3)
        sign = "-" if t.startswith("-") else ""
        if exp is not None:
            digits = (whole + frac).lstrip("0")
            e = int(exp) - len(frac)
            if e >= 0 and digits:
                value = digits + "0" * e
                out.append(sign + value)
                if len(value) > 15 and e > 0:  # trailing digits were never stored: the code is lost
                    bad[i] = t
            else:
                out.append(str(float(t)))
            continue
        whole = whole.lstrip("0") or "0"
        out.append(sign + (f"{whole}.{frac}" if frac else whole))
    return pd.Series(out, dtype=object), bad


def _clean_msg(exc: BaseException, path: Path, source: str, name: str) -> str:
    """A reader's message without the server's file paths (the file is named by its upload name)."""
    m = str(exc)
    for p in sorted({source, str(path), str(path.resolve())}, key=len, reverse=True):
        m = m.replace(p, name)
    return m[:500]


def _as_text(values: Any) -> tuple[pd.Series, dict[int, str]]:
    """Values as text, with the rows holding a floating-point number too large to be an exact
    integer (≥ 2**53: a 16–17-digit code stored as a float has already lost its last digits)."""
    s = pd.Series(values, dtype=object)
    bad: dict[int, str] = {}

    def one(i: int, v: Any) -> str | None:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            if abs(v) >= _EXACT:
                bad[i] = repr(v)
            return str(int(v))
        return str(v).strip()

    return pd.Series([one(i, v) for i, v in enumerate(s.tolist())], dtype=object), bad


def read_table(
    path: str | Path, *, encoding: str | None = None, sheet: str | None = None, display_name: str | None = None
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(columns as strings, record labels "row N" as a spreadsheet numbers them, notes)."""
    df, records, notes, _ = _read_table(path, encoding=encoding, sheet=sheet, display_name=display_name)
    return df, records, notes


def _read_table(
    path: str | Path, *, encoding: str | None = None, sheet: str | None = None, display_name: str | None = None
) -> tuple[pd.DataFrame, list[str], list[str], dict[str, dict[int, str]]]:
    """:func:`read_table` and the numbers that cannot stand for an exact code (see :func:`_cell`)."""
    inexact: dict[str, dict[int, str]] = {}
    path = Path(path)
    name = display_name or path.name
    notes: list[str] = []
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise ReadError(f"{name}: 文件为空（0 字节） the file is empty (0 bytes); nothing to load")
    if suffix in (".csv", ".txt"):
        data = path.read_bytes()
        enc = _csv_encoding(data, encoding, name)
        notes.append(f"CSV encoding {enc}" + ("" if encoding else " (detected)"))
        import io

        try:
            df = pd.read_csv(
                io.BytesIO(data), dtype=str, encoding=enc, keep_default_na=False, na_values=[""], skipinitialspace=True
            )
        except UnicodeDecodeError as exc:
            raise ReadError(f"{name}: not valid {enc} text ({exc}); pass --encoding") from exc
        except Exception as exc:
            raise ReadError(f"{name}: cannot read CSV ({_clean_msg(exc, path, str(path), name)})") from exc
    elif suffix in (".xlsx", ".xlsm"):
        df, inexact, xlsx_notes = _read_xlsx(path, sheet, name)
        notes.extend(xlsx_notes)
    else:
        raise ReadError(f"{name}: unsupported table format {suffix}; use .csv or .xlsx")
    df.columns = [str(c).strip() for c in df.columns]
    df = df.map(lambda v: v.strip() if isinstance(v, str) else v) if len(df) else df
    df = df.replace({"": None})
    records = [f"row {i + 2}" for i in range(len(df))]  # header is row 1
    return df.reset_index(drop=True), records, notes, inexact


def _csv_encoding(data: bytes, encoding: str | None, name: str) -> str:
    """The codec given with ``--encoding``, else the one detected (refused, rule ``encoding_unsure``,
    when the text reads plausibly in more than one)."""
    try:
        return normalize_codec(encoding) if encoding else text_encoding(data)
    except ValueError as exc:
        raise _encoding_error(name, exc) from exc


def read_rows(
    path: str | Path, *, encoding: str | None = None, sheet: str | None = None, display_name: str | None = None
) -> tuple[list[tuple[int, list[Any]]], list[str]]:
    """Every row of a CSV or an XLSX sheet as (spreadsheet row number, cells as the file holds them: text,
    or for XLSX also int/float/datetime, so that a number Excel made of an ID can be told apart), and notes.
    Nothing is taken as the header: rosters find theirs (title rows, two-row headers)."""
    path = Path(path)
    name = display_name or path.name
    notes: list[str] = []
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise ReadError(f"{name}: 文件为空（0 字节） the file is empty (0 bytes); nothing to load")
    if suffix in (".csv", ".txt"):
        import csv
        import io

        data = path.read_bytes()
        enc = _csv_encoding(data, encoding, name)
        notes.append(f"CSV encoding {enc}" + ("" if encoding else " (detected)"))
        try:
            textdata = data.decode(enc)
        except UnicodeDecodeError as exc:
            raise ReadError(f"{name}: not valid {enc} text ({exc}); pass --encoding") from exc
        try:
            rows = [[c if c.strip() else None for c in r] for r in csv.reader(io.StringIO(textdata))]
        except csv.Error as exc:
            raise ReadError(f"{name}: cannot read CSV ({exc})") from exc
        return list(enumerate(rows, start=1)), notes
    if suffix not in (".xlsx", ".xlsm"):
        raise ReadError(f"{name}: unsupported table format {suffix}; use .csv or .xlsx")
    from openpyxl import load_workbook

    from gisgov.ingest.uploads import inspect_zip

    inspect_zip(path, name, verify=False)
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise ReadError(f"{name}: cannot open workbook ({_clean_msg(exc, path, str(path), name)})") from exc
    try:
        ws = wb[sheet] if sheet else wb.worksheets[0]
        out = [
            (i, [None if (isinstance(v, str) and not v.strip()) else v for v in r])
            for i, r in enumerate(ws.iter_rows(values_only=True), start=1)
        ]
    except KeyError as exc:
        raise ReadError(f"{name}: no sheet {sheet!r}") from exc
    except Exception as exc:
        raise ReadError(f"{name}: cannot read workbook ({_clean_msg(exc, path, str(path), name)})") from exc
    finally:
        wb.close()
    return out, notes


def _read_xlsx(path: Path, sheet: str | None, name: str) -> tuple[pd.DataFrame, dict[str, dict[int, str]], list[str]]:
    """(the sheet's columns as text, {column: {row: value}} of numbers that cannot stand for an exact
    code, notes on columns whose whole numbers should have been text)."""
    from openpyxl import load_workbook

    from gisgov.ingest.uploads import inspect_zip

    inspect_zip(path, name, verify=False)  # an XLSX is a zip: size, ratio and member limits first
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise ReadError(f"{name}: cannot open workbook ({_clean_msg(exc, path, str(path), name)})") from exc
    try:
        ws = wb[sheet] if sheet else wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            return pd.DataFrame(), {}, []
        header = [("" if h is None else str(h)).strip() for h in header]
        keep = [i for i, h in enumerate(header) if h]
        cols = [header[i] for i in keep]
        inexact: dict[str, dict[int, str]] = {}
        numbered: dict[str, list[str]] = {}  # column → whole numbers read exactly that look like codes
        data = []
        for r_i, r in enumerate(rows):
            out = []
            for c, i in zip(cols, keep, strict=True):
                v = r[i] if i < len(r) else None
                text, kind = _cell(v)
                if kind == "inexact":
                    inexact.setdefault(c, {})[r_i] = _number_repr(v)
                elif kind == "whole":
                    numbered.setdefault(c, []).append(text or "")
                out.append(text)
            data.append(out)
    except KeyError as exc:
        raise ReadError(f"{name}: no sheet {sheet!r}") from exc
    except Exception as exc:  # a damaged workbook (truncated member, broken XML)
        raise ReadError(f"{name}: cannot read workbook ({_clean_msg(exc, path, str(path), name)})") from exc
    finally:
        wb.close()
    while data and all(v is None for v in data[-1]):
        data.pop()
    notes = [
        f"列 {c} 的 {len(vals)} 个编码存为数字 column {c}: {len(vals)} cells are numbers, not text (read exactly as "
        f"whole numbers, e.g. {vals[0]}); a code column should be formatted as text (@) in Excel, which keeps "
        "only 15 significant digits of a number"
        for c, vals in numbered.items()
        if c not in inexact
    ]
    return pd.DataFrame(data, columns=cols, dtype=object), inexact, notes


# A spreadsheet number of 16 or more digits is not an exact code: Excel keeps 15 significant digits (it
# turns 34010400100179003 into 34010400100179000 as it is typed) and a float64 holds whole numbers
# exactly only below 2**53 (about 9.007e15).
_SHEET_EXACT = 10**15
# Whole numbers of at least this many digits are taken for codes stored as numbers (noted): floors,
# households and years are smaller.
_CODE_LIKE = 10**5


def _cell(v: Any) -> tuple[str | None, str]:
    """(the cell as text, kind): kind ``inexact`` for a whole number of 16+ digits (it cannot be an exact
    code), ``whole`` for a whole number that looks like a code (≥ 6 digits) stored as a number, else ``""``."""
    if v is None:
        return None, ""
    if isinstance(v, bool):
        return str(v), ""
    if isinstance(v, (int, float)) and not (isinstance(v, float) and not v.is_integer()):
        n = int(v)
        if abs(n) >= _SHEET_EXACT:
            return str(n), "inexact"
        return str(n), "whole" if abs(n) >= _CODE_LIKE else ""
    return str(v).strip(), ""


def _number_repr(v: Any) -> str:
    """How a spreadsheet number reads (``3.4010400100179e+16``), for the report."""
    return repr(float(v)) if isinstance(v, float) else f"{v} (number)"


def read_any(
    path: str | Path, *, layer: str | None = None, encoding: str | None = None, display_name: str | None = None
) -> RawTable:
    """A vector file, or a table whose geometry is a WKT column or lon/lat columns (resolved later)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        df, records, notes, inexact = _read_table(p, encoding=encoding, sheet=layer, display_name=display_name)
        return RawTable(display_name or p.name, df, records, None, None, {}, notes, inexact)
    if suffix in VECTOR_SUFFIXES:
        return read_vector(p, layer=layer, encoding=encoding, display_name=display_name)
    raise ReadError(
        f"{display_name or p.name}: unsupported format {suffix or '(none)'}; use GeoJSON, GeoPackage, "
        "Shapefile (.shp or .zip), FlatGeobuf, CSV or XLSX"
    )
