"""Text encodings of incoming files: UTF-8 and GBK/GB18030 (Chinese first).

* Shapefile DBF: a ``.cpg`` sidecar is honoured; without one the string bytes of the DBF are
  sniffed: valid UTF-8 → ``utf-8``, otherwise ``gb18030`` (a superset of GBK and GB2312).
* CSV: UTF-8 (with or without BOM, as Excel writes it) when the bytes decode, else GB18030.
"""

from __future__ import annotations

import codecs
import struct
import zipfile
from contextlib import nullcontext
from pathlib import Path, PurePosixPath
from typing import BinaryIO

# Names found in .cpg files → Python codec names. GBK/CP936/GB2312 are read as GB18030 (superset).
_CPG_ALIASES = {
    "65001": "utf-8",
    "utf8": "utf-8",
    "utf-8": "utf-8",
    "936": "gb18030",
    "cp936": "gb18030",
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "gb18030": "gb18030",
    "54936": "gb18030",
    "ansi 936": "gb18030",
    "950": "big5",
    "big5": "big5",
    "1252": "cp1252",
    "ansi 1252": "cp1252",
    "88591": "latin-1",
    "8859_1": "latin-1",
    "iso-8859-1": "latin-1",
}


def normalize_codec(name: str) -> str:
    """A Python codec name for an encoding label from a .cpg file or a user option."""
    key = name.strip().lower()
    if key in _CPG_ALIASES:
        return _CPG_ALIASES[key]
    try:
        return codecs.lookup(key).name
    except LookupError:
        raise ValueError(f"unknown encoding {name!r}") from None


def sniff_bytes(chunks: list[bytes]) -> str:
    """``utf-8`` when every chunk decodes as UTF-8, else ``gb18030``."""
    try:
        for c in chunks:
            c.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


def text_encoding(data: bytes) -> str:
    """Encoding of a text file's bytes (CSV): ``utf-8-sig`` or ``gb18030``."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


def _dbf_string_bytes(dbf: Path | BinaryIO, max_records: int = 2000) -> list[bytes]:
    """String field bytes of the first records; ``dbf`` is a path or a seekable binary file (e.g. a
    member of a zip, read in place)."""
    with dbf.open("rb") if isinstance(dbf, Path) else nullcontext(dbf) as f:
        head = f.read(32)
        if len(head) < 32:
            return []
        n_rec, header_len, rec_len = struct.unpack("<IHH", head[4:12])
        fields = []
        offset = 1  # deletion flag
        while f.tell() < header_len - 1:
            d = f.read(32)
            if not d or d[0] == 0x0D or len(d) < 32:
                break
            ftype, flen = chr(d[11]), d[16]
            if ftype in "CM":
                fields.append((offset, flen))
            offset += flen
        if not fields:
            return []
        f.seek(header_len)  # zip members (read in place) are seekable too
        out = []
        for _ in range(min(n_rec, max_records)):
            rec = f.read(rec_len)
            if len(rec) < rec_len:
                break
            out.extend(rec[o : o + n].rstrip(b" \x00") for o, n in fields)
        return [b for b in out if b]


class EncodingMismatch(ValueError):
    """The ``.cpg`` names an encoding the DBF's text is not written in."""


def check_cpg(label: str, codec: str, chunks: list[bytes]) -> None:
    """Raise :class:`EncodingMismatch` when the DBF text contradicts its ``.cpg``: not decodable in the
    named encoding, or named GBK/GB18030 while every string is valid UTF-8 with Chinese in it (read as
    GBK it would silently become mojibake)."""
    if not chunks:
        return
    try:
        for c in chunks:
            c.decode(codec)
    except (UnicodeDecodeError, LookupError):
        other = sniff_bytes(chunks)
        raise EncodingMismatch(
            f".cpg 声明的编码与属性表不符 the .cpg file says {label!r} but the DBF text is not {codec} "
            f"(it reads as {other}); fix the .cpg or pass --encoding {other}"
        ) from None
    if codec == "gb18030" and sniff_bytes(chunks) == "utf-8" and any(max(c) >= 0x80 for c in chunks):
        raise EncodingMismatch(
            f".cpg 声明的编码与属性表不符 the .cpg file says {label!r} but the DBF text is UTF-8; "
            "fix the .cpg or pass --encoding utf-8"
        )


def shapefile_encoding(shp: str | Path) -> tuple[str, str]:
    """(codec, how) for a Shapefile's DBF: from its ``.cpg`` (checked against the DBF's text, raising
    :class:`EncodingMismatch` when it lies) or sniffed from the bytes."""
    shp = Path(shp)
    dbf = next((p for p in (shp.with_suffix(".dbf"), shp.with_suffix(".DBF")) if p.exists()), None)
    for ext in (".cpg", ".CPG"):
        cpg = shp.with_suffix(ext)
        if cpg.exists():
            label = cpg.read_bytes().decode("ascii", "replace").strip()
            if label:
                codec = normalize_codec(label)
                if dbf is not None:
                    check_cpg(label, codec, _dbf_string_bytes(dbf))
                return codec, f".cpg says {label}"
    if dbf is None:
        return "utf-8", "no .dbf"
    chunks = _dbf_string_bytes(dbf)
    if not chunks:
        return "utf-8", "no text fields"
    enc = sniff_bytes(chunks)
    return enc, "detected from the DBF bytes (no .cpg)"


def zip_shapefile_encoding(z: zipfile.ZipFile, shp_member: str) -> tuple[str, str]:
    """:func:`shapefile_encoding` for a Shapefile inside a zip, read in place (nothing extracted)."""
    stem = str(PurePosixPath(shp_member).with_suffix(""))
    names = {n.lower(): n for n in z.namelist()}
    cpg = names.get(stem.lower() + ".cpg")
    if cpg is not None:
        with z.open(cpg) as f:
            label = f.read(64).decode("ascii", "replace").strip()
        if label:
            codec = normalize_codec(label)
            dbf_member = names.get(stem.lower() + ".dbf")
            if dbf_member is not None:
                with z.open(dbf_member) as f:
                    check_cpg(label, codec, _dbf_string_bytes(f))
            return codec, f".cpg says {label}"
    dbf = names.get(stem.lower() + ".dbf")
    if dbf is None:
        return "utf-8", "no .dbf"
    with z.open(dbf) as f:
        chunks = _dbf_string_bytes(f)
    if not chunks:
        return "utf-8", "no text fields"
    return sniff_bytes(chunks), "detected from the DBF bytes (no .cpg)"
