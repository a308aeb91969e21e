"""Read incoming files into a :class:`RawTable`: attribute columns, geometries, record labels.

Vector formats go through pyogrio (GDAL): GeoJSON, GeoPackage, Shapefile (also zipped), FlatGeobuf.
Tables (CSV, XLSX) carry their geometry as WKT (``wkt`` column) or as lon/lat columns.
Geometries GDAL hands over but GEOS cannot build (an unclosed ring) are kept as problems for the
validator, not dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

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


class ReadError(ValueError):
    """The file cannot be read at all (format, layer, encoding)."""


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
                enc, how = zip_shapefile_encoding(z, member)
            kw["encoding"] = enc
            notes.append(f"DBF encoding {enc} ({how})")
    if suffix == ".shp" and "encoding" not in kw:
        if encoding:
            enc, how = normalize_codec(encoding), "given with --encoding"
        else:
            enc, how = shapefile_encoding(source)
        kw["encoding"] = enc
        notes.append(f"DBF encoding {enc} ({how})")
    elif encoding:
        kw["encoding"] = normalize_codec(encoding)
    if layer is None:
        try:
            layers = list_layers(source) if suffix == ".gpkg" else []
        except Exception as exc:
            raise ReadError(f"{name}: cannot read ({_clean_msg(exc, path, source, name)})") from exc
        if len(layers) > 1:
            raise ReadError(f"{name} has {len(layers)} layers ({', '.join(layers)}); choose one with --layer")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            meta, fids, wkb, field_data = pyogrio.raw.read(
                source, layer=layer, return_fids=True, force_2d=True, datetime_as_string=True, **kw
            )
    except Exception as exc:  # GDAL's own message is the useful part
        raise ReadError(f"{name}: cannot read ({_clean_msg(exc, path, source, name)})") from exc
    for w in caught:
        notes.append(f"GDAL: {w.message}")
    cols = pd.DataFrame({str(n): _as_text(v) for n, v in zip(meta["fields"], field_data, strict=False)})
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
    return RawTable(name, cols, records, geoms, meta.get("crs"), problems, notes)


def _clean_msg(exc: BaseException, path: Path, source: str, name: str) -> str:
    """A reader's message without the server's file paths (the file is named by its upload name)."""
    m = str(exc)
    for p in sorted({source, str(path), str(path.resolve())}, key=len, reverse=True):
        m = m.replace(p, name)
    return m[:500]


def _as_text(values) -> pd.Series:
    s = pd.Series(values, dtype=object)
    return s.map(
        lambda v: (
            None
            if v is None or (isinstance(v, float) and np.isnan(v))
            else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)).strip()
        )
    )


def read_table(
    path: str | Path, *, encoding: str | None = None, sheet: str | None = None, display_name: str | None = None
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(columns as strings, record labels "row N" as a spreadsheet numbers them, notes)."""
    path = Path(path)
    name = display_name or path.name
    notes: list[str] = []
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        data = path.read_bytes()
        enc = normalize_codec(encoding) if encoding else text_encoding(data)
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
        df = _read_xlsx(path, sheet, name)
    else:
        raise ReadError(f"{name}: unsupported table format {suffix}; use .csv or .xlsx")
    df.columns = [str(c).strip() for c in df.columns]
    df = df.map(lambda v: v.strip() if isinstance(v, str) else v) if len(df) else df
    df = df.replace({"": None})
    records = [f"row {i + 2}" for i in range(len(df))]  # header is row 1
    return df.reset_index(drop=True), records, notes


def _read_xlsx(path: Path, sheet: str | None, name: str) -> pd.DataFrame:
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
            return pd.DataFrame()
        header = [("" if h is None else str(h)).strip() for h in header]
        keep = [i for i, h in enumerate(header) if h]
        data = [[_cell(r[i]) if i < len(r) else None for i in keep] for r in rows]
    except KeyError as exc:
        raise ReadError(f"{name}: no sheet {sheet!r}") from exc
    except Exception as exc:  # a damaged workbook (truncated member, broken XML)
        raise ReadError(f"{name}: cannot read workbook ({_clean_msg(exc, path, str(path), name)})") from exc
    finally:
        wb.close()
    while data and all(v is None for v in data[-1]):
        data.pop()
    return pd.DataFrame(data, columns=[header[i] for i in keep], dtype=object)


def _cell(v):
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def read_any(
    path: str | Path, *, layer: str | None = None, encoding: str | None = None, display_name: str | None = None
) -> RawTable:
    """A vector file, or a table whose geometry is a WKT column or lon/lat columns (resolved later)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        df, records, notes = read_table(p, encoding=encoding, sheet=layer, display_name=display_name)
        return RawTable(display_name or p.name, df, records, None, None, {}, notes)
    if suffix in VECTOR_SUFFIXES:
        return read_vector(p, layer=layer, encoding=encoding, display_name=display_name)
    raise ReadError(
        f"{display_name or p.name}: unsupported format {suffix or '(none)'}; use GeoJSON, GeoPackage, "
        "Shapefile (.shp or .zip), FlatGeobuf, CSV or XLSX"
    )
