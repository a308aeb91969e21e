"""Bounded uploads: what a file must look like before anything reads it.

* Zip archives (zipped Shapefiles, and XLSX workbooks, which are zips too) are checked from their
  central directory before any member is read: at most ``GISGOV_INGEST_MAX_ZIP_MEMBERS`` members,
  no absolute or ``..`` member paths (zip slip), no encryption, only stored/deflated members, a
  total uncompressed size of at most ``GISGOV_INGEST_MAX_UNZIPPED_MB`` and (above
  :data:`RATIO_FREE_BYTES`) at most ``GISGOV_INGEST_MAX_ZIP_RATIO`` uncompressed bytes per byte
  of archive (overlapping members count every time, so "overlap" bombs are caught too).
* Zipped vector data is then read in place by GDAL (``/vsizip/``): nothing is extracted to disk.
  GDAL trusts the deflate stream rather than the sizes in the directory, so every member GDAL may
  read is first inflated once in memory, chunk by chunk, and refused the moment it yields more
  bytes than its header declared (a lying header), without writing anything.
* Other formats get a cheap signature check (GeoPackage, OSM PBF, XLSX) and an empty file is
  refused, so a broken upload answers with a rule instead of a parser's stack trace.

Refusals raise :class:`UploadRejected` (HTTP 413 for size rules, 415 for formats the app does not
read, 422 otherwise) with a message naming the file and the rule, Chinese first.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from gisgov.errors import InvalidInput
from gisgov.ingest.settings import IngestSettings, get_ingest_settings

RATIO_FREE_BYTES = 10_000_000  # archives expanding to less than this are never refused for their ratio
_CHUNK = 1 << 20
ZIP_SUFFIXES = {".zip", ".xlsx", ".xlsm"}
UPLOAD_SUFFIXES = (
    ".geojson",
    ".json",
    ".gpkg",
    ".zip",
    ".shp",
    ".fgb",
    ".csv",
    ".txt",
    ".xlsx",
    ".xlsm",
    ".osm.pbf",
    ".pbf",
)

RULE_TEXT = {
    "file_empty": "文件为空 the file is empty",
    "file_format": "文件内容与格式不符 the content does not match the file type",
    "file_type": "不支持的文件类型 unsupported file type",
    "upload_too_large": "文件过大 upload larger than allowed",
    "zip_invalid": "不是有效的 zip 压缩包 not a valid zip archive",
    "zip_unsafe_path": "压缩包内含不安全的路径 unsafe member path in the zip (absolute or ..)",
    "zip_members": "压缩包内文件过多 too many files in the zip",
    "zip_too_large": "解压后过大 the zip expands to more than allowed",
    "zip_ratio": "压缩比异常（疑似压缩炸弹） compression ratio too high (zip bomb?)",
    "zip_size_mismatch": "压缩包内文件大小与声明不符 a member expands beyond its declared size",
    "zip_encrypted": "压缩包已加密 encrypted zip members are not supported",
    "zip_method": "不支持的压缩方式 unsupported compression method (use deflate)",
}


class UploadRejected(InvalidInput):
    """A file refused before it is read; ``rule`` names the limit, ``status_code`` is 413/415/422."""

    def __init__(self, name: str, rule: str, detail: str = "", status_code: int = 422):
        self.rule, self.status_code, self.file = rule, status_code, name
        text = f"{name}: {RULE_TEXT[rule]}" + (f" — {detail}" if detail else "") + f" (rule: {rule})"
        super().__init__(text)


def safe_filename(name: str | None, default: str = "upload") -> str:
    """The last path part of a client-supplied file name, without control characters, at most 120
    characters (the suffix kept); never empty, '.' or '..'."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()
    if base in ("", ".", ".."):
        return default
    if len(base.encode()) > 120:
        suffix = "".join(PurePosixPath(base).suffixes[-2:])[-20:]
        stem = base[: len(base) - len(suffix)]
        while len((stem + suffix).encode()) > 120:
            stem = stem[:-1]
        base = (stem + suffix) or default
    return base


def upload_suffix(name: str) -> str:
    low = name.lower()
    return ".osm.pbf" if low.endswith(".osm.pbf") else Path(low).suffix


def check_name(name: str, level: str) -> None:
    """415 for a file type the importer does not read (before the upload is stored)."""
    suffix = upload_suffix(name)
    if level == "osm":
        if suffix not in (".osm.pbf", ".pbf"):
            raise UploadRejected(
                name, "file_type", "OSM 导入需要 .osm.pbf 文件 an OSM import takes an .osm.pbf extract", 415
            )
        return
    if suffix not in UPLOAD_SUFFIXES or suffix in (".osm.pbf", ".pbf"):
        raise UploadRejected(
            name,
            "file_type",
            "请使用 use GeoJSON, GeoPackage, zipped Shapefile (.zip), FlatGeobuf, CSV or XLSX (.osm.pbf: level osm)",
            415,
        )


def check_file(path: Path, name: str, settings: IngestSettings | None = None) -> None:
    """Signature and archive checks of a stored upload; raises :class:`UploadRejected`."""
    s = settings or get_ingest_settings()
    size = path.stat().st_size
    if size == 0:
        raise UploadRejected(name, "file_empty")
    suffix = upload_suffix(name)
    with path.open("rb") as f:
        head = f.read(64)
    if suffix == ".gpkg" and not head.startswith(b"SQLite format 3\x00"):
        raise UploadRejected(name, "file_format", "不是 GeoPackage（SQLite）文件 not a GeoPackage (SQLite) file")
    if suffix in (".osm.pbf", ".pbf") and not _looks_like_pbf(head):
        raise UploadRejected(name, "file_format", "不是 OSM PBF 文件 not an OSM PBF extract (no OSMHeader block)")
    if suffix in (".xlsx", ".xlsm"):
        if not zipfile.is_zipfile(path):
            raise UploadRejected(name, "file_format", "不是 XLSX 工作簿 not an XLSX workbook (not a zip container)")
        inspect_zip(path, name, s, verify=False)  # openpyxl reads through zipfile, which stops at declared sizes
    elif suffix == ".zip":
        inspect_zip(path, name, s, verify=True)


def _looks_like_pbf(head: bytes) -> bool:
    if len(head) < 8:
        return False
    n = struct.unpack(">I", head[:4])[0]
    return 0 < n < 64 * 1024 and b"OSMHeader" in head[4 : 4 + min(n, 60)]


def _unsafe(member: str) -> bool:
    m = member.replace("\\", "/")
    parts = PurePosixPath(m).parts
    return m.startswith("/") or bool(re.match(r"^[A-Za-z]:", m)) or ".." in parts or "\x00" in m


def inspect_zip(
    path: Path,
    name: str,
    settings: IngestSettings | None = None,
    *,
    verify: bool = True,
    members: list[str] | None = None,
) -> list[zipfile.ZipInfo]:
    """Check an archive from its directory (and, with ``verify``, by inflating in memory every member
    named in ``members`` — all when None — against its declared size). Returns the entries."""
    s = settings or get_ingest_settings()
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise UploadRejected(name, "zip_invalid", str(exc)) from None
    with z:
        infos = z.infolist()
    if len(infos) > s.max_zip_members:
        raise UploadRejected(
            name, "zip_members", f"{len(infos)} > {s.max_zip_members} (GISGOV_INGEST_MAX_ZIP_MEMBERS)", 413
        )
    for i in infos:
        if _unsafe(i.filename):
            raise UploadRejected(name, "zip_unsafe_path", repr(i.filename)[:120])
    total = sum(i.file_size for i in infos)
    limit = int(s.max_unzipped_mb * 1e6)
    if total > limit:
        raise UploadRejected(
            name,
            "zip_too_large",
            f"{total / 1e6:,.0f} MB > {s.max_unzipped_mb:g} MB (GISGOV_INGEST_MAX_UNZIPPED_MB)",
            413,
        )
    archive = max(path.stat().st_size, 1)
    if total > RATIO_FREE_BYTES and total / archive > s.max_zip_ratio:
        raise UploadRejected(
            name, "zip_ratio", f"{total / archive:,.0f}:1 > {s.max_zip_ratio:g}:1 (GISGOV_INGEST_MAX_ZIP_RATIO)", 413
        )
    for i in infos:
        if i.flag_bits & 0x1:
            raise UploadRejected(name, "zip_encrypted", i.filename[:120])
        if i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) and not i.is_dir():
            raise UploadRejected(name, "zip_method", f"{i.filename[:120]}: method {i.compress_type}")
    if verify:
        wanted = None if members is None else set(members)
        with path.open("rb") as fh:
            for i in infos:
                if not i.is_dir() and (wanted is None or i.filename in wanted):
                    _verify_member(fh, i, name, archive)
    return infos


def _verify_member(fh, info: zipfile.ZipInfo, name: str, archive_size: int) -> None:
    """Inflate one member in memory (1 MB at a time) and refuse it as soon as it yields more bytes than
    declared, or when its data does not end where the directory says."""
    fh.seek(info.header_offset)
    head = fh.read(30)
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        raise UploadRejected(name, "zip_invalid", f"{info.filename[:120]}: bad local header")
    n, m = struct.unpack("<HH", head[26:30])
    start = info.header_offset + 30 + n + m
    if start + info.compress_size > archive_size:
        raise UploadRejected(name, "zip_invalid", f"{info.filename[:120]}: truncated")
    fh.seek(start)
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise UploadRejected(name, "zip_size_mismatch", info.filename[:120])
        return
    d = zlib.decompressobj(-15)
    left, out = info.compress_size, 0
    try:
        while left > 0 and not d.eof:
            data = fh.read(min(_CHUNK, left))
            if not data:
                raise UploadRejected(name, "zip_invalid", f"{info.filename[:120]}: truncated")
            left -= len(data)
            while data and not d.eof:
                out += len(d.decompress(data, _CHUNK))
                if out > info.file_size:
                    raise UploadRejected(
                        name,
                        "zip_size_mismatch",
                        f"{info.filename[:120]}: more than the declared {info.file_size:,} bytes",
                        413,
                    )
                data = d.unconsumed_tail
        out += len(d.flush())
    except zlib.error as exc:
        raise UploadRejected(name, "zip_invalid", f"{info.filename[:120]}: {exc}") from None
    if not d.eof or out != info.file_size:
        raise UploadRejected(
            name, "zip_size_mismatch", f"{info.filename[:120]}: {out:,} bytes, declared {info.file_size:,}"
        )
