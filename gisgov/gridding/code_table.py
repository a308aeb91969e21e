"""The code table of a grid plan (网格编码表) as CSV: the one writer behind the API download
(``GET /grids/plans/{community}/{version}/codes?format=csv``) and ``gisgov grids codes``.

Pure: rows in (from :func:`gisgov.gridding.plans.code_table`), text out.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

#: Columns of the CSV, in order; other keys of a row are left out.
CODE_TABLE_COLUMNS: tuple[str, ...] = (
    "code",
    "name",
    "level",
    "households",
    "buildings",
    "area_m2",
    "community",
    "version",
    "status",
)

BOM = "\ufeff"


def code_table_csv(rows: Iterable[Mapping[str, Any]], *, bom: bool = True) -> str:
    """The code table as CSV text: a header, one line per grid (CRLF line ends, as the csv module writes).
    With ``bom`` (default) it starts with a UTF-8 byte-order mark, so spreadsheet programs read the
    Chinese names as UTF-8; written to a terminal it is left out."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CODE_TABLE_COLUMNS), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return (BOM if bom else "") + buf.getvalue()


def code_table_filename(community: str, version: int) -> str:
    """File name of a plan's code table download."""
    return f"grids_{community}_v{version}.csv"
