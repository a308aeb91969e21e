"""Scanner for personal data in clear: 18-character ID numbers (GB 11643-1999, with a valid check
character and a plausible birth date) and 11-digit mainland mobile numbers (1[3-9]xxxxxxxxx).

    from pii_scanner import assert_no_clear_pii, find_clear_pii
    assert_no_clear_pii(response.text, where="GET /api/layers/resident")

Masked forms (``110101********4514``, ``138****5678``) and longer digit runs (21-digit household
codes, coordinates' decimals) do not match, nor do digit runs inside hashes (32+ lowercase hex
characters: a checksum, an ETag, a signature), which held "mobile numbers" now and then. The check character is computed here independently
of ``gisgov.security.pii`` so the scanner is an oracle of its own.
"""

from __future__ import annotations

import re
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"

# not preceded by a digit or a decimal point, not followed by a digit
ID_RE = re.compile(r"(?<![0-9.])([1-9][0-9]{16}[0-9Xx])(?![0-9])")
MOBILE_RE = re.compile(r"(?<![0-9.])(1[3-9][0-9]{9})(?![0-9])")
HEX_TOKEN = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{32,}(?![0-9A-Za-z])")


def id_check_char(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=False)) % 11]


def looks_like_id(value: str) -> bool:
    """True for an 18-character string that is a well-formed ID number (date and check character)."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not date(1880, 1, 1) <= born <= date(2100, 12, 31):
        return False
    return id_check_char(value[:17]) == value[17].upper()


def find_clear_pii(text: str) -> list[tuple[str, str]]:
    """(kind, value) for every clear ID number ('id') and mobile number ('mobile') in ``text``."""
    text = HEX_TOKEN.sub(" ", text)
    found = [("id", m.group(1)) for m in ID_RE.finditer(text) if looks_like_id(m.group(1))]
    found += [("mobile", m.group(1)) for m in MOBILE_RE.finditer(text)]
    return found


def assert_no_clear_pii(text: str | bytes, where: str = "") -> None:
    """Fail (AssertionError naming the kind and a masked sample) if ``text`` holds a clear ID or mobile."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    found = find_clear_pii(text)
    if found:
        sample = ", ".join(f"{kind} {value[:3]}…{value[-2:]}" for kind, value in found[:5])
        raise AssertionError(f"clear personal data{' in ' + where if where else ''}: {len(found)} hit(s): {sample}")


# --- HTTP response bodies -------------------------------------------------------------------------

TEXT_TYPES = ("json", "geo+json", "text/", "csv", "xml", "javascript")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ZIP_TYPES = ("application/zip", "application/x-zip-compressed")
GPKG_TYPE = "application/geopackage+sqlite3"
# text-like members of a zip (xlsx sheets and shared strings, shapefile attribute tables, sidecars)
_ZIP_TEXT = (".xml", ".dbf", ".csv", ".json", ".geojson", ".txt", ".prj", ".cpg")
_MAX_UNZIPPED = 256 * 1024 * 1024  # do not inflate bombs while scanning


_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")


def find_clear_pii_delimited(text: str) -> list[tuple[str, str]]:
    """Like :func:`find_clear_pii`, but digit runs inside an identifier (an ASCII letter or ``_``
    directly before or after, as in folium's random element ids ``map_3f17875213051a…`` or hex
    hashes) are not numbers. A number in JSON, CSV, HTML or a sentence is delimited by quotes,
    separators, tags, spaces or CJK text and is still found."""

    def standalone(m: re.Match) -> bool:
        before = text[m.start() - 1] if m.start() else ""
        after = text[m.end()] if m.end() < len(text) else ""
        return before not in _WORD and after not in _WORD

    found = [("id", m.group(1)) for m in ID_RE.finditer(text) if standalone(m) and looks_like_id(m.group(1))]
    found += [("mobile", m.group(1)) for m in MOBILE_RE.finditer(text) if standalone(m)]
    return found


def _scan_zip(body: bytes) -> list[tuple[str, str]]:
    import io
    import zipfile

    try:
        zf = zipfile.ZipFile(io.BytesIO(body))
    except zipfile.BadZipFile:
        return []
    found: list[tuple[str, str]] = []
    total = 0
    for info in zf.infolist():
        if not info.filename.lower().endswith(_ZIP_TEXT):
            continue
        total += info.file_size
        if total > _MAX_UNZIPPED:
            break
        # digits are ASCII in UTF-8, GBK and Latin-1 alike
        found += find_clear_pii_delimited(zf.read(info).decode("latin-1"))
    return found


def _scan_gpkg(body: bytes) -> list[tuple[str, str]]:
    import os
    import sqlite3
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".gpkg")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        con = sqlite3.connect(path)
        try:
            found: list[tuple[str, str]] = []
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for row in con.execute(f'SELECT * FROM "{table}"'):
                    text = " ".join(str(v) for v in row if isinstance(v, (str, int)))
                    found += find_clear_pii_delimited(text)
            return found
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return []
    finally:
        os.unlink(path)


# Published example values, nobody's personal data: the worked example of GB 11643-1999 and China
# Mobile's service number. The roster template's example row shows them; responses may too.
PUBLIC_EXAMPLES = frozenset({"11010519491231002X", "13800138000"})


def scan_body(content_type: str | None, body: bytes) -> list[tuple[str, str]]:
    """(kind, value) for every clear ID/mobile number in an HTTP response body of a text-like type
    (JSON, GeoJSON, HTML, CSV, XML, JS), an XLSX workbook, a zip (shapefile) or a GeoPackage.
    Other types (images, fonts) are not scanned; :data:`PUBLIC_EXAMPLES` are not reported."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if not body:
        return []
    if ctype == XLSX_TYPE or ctype in ZIP_TYPES:
        found = _scan_zip(body)
    elif ctype == GPKG_TYPE:
        found = _scan_gpkg(body)
    elif any(t in ctype for t in TEXT_TYPES):
        found = find_clear_pii_delimited(body.decode("utf-8", errors="replace"))
    else:
        return []
    return [(kind, value) for kind, value in found if value.upper() not in PUBLIC_EXAMPLES]


def describe(found: list[tuple[str, str]]) -> str:
    """A report of findings that does not repeat the numbers in clear."""
    return ", ".join(f"{kind} {value[:3]}…{value[-2:]}" for kind, value in found[:5])
