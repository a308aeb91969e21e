"""Bulk writes and reads with PostgreSQL COPY (never row-by-row inserts for large tables).

:func:`copy_frame` writes a DataFrame as CSV. The binary helpers build PostgreSQL's binary COPY format
straight from numpy arrays (no Python object per value): :func:`binary_rows` for fixed-width rows
(scalars and one-dimensional arrays without NULLs, e.g. one row per building with a ``real[]`` of
distances), :func:`binary_field` for the odd variable-width field (text, text[]), and
:func:`copy_binary` / :func:`read_binary` to send and fetch them.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import pandas as pd
import psycopg

CHUNK_ROWS = 50_000
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
# element type: (oid, big-endian numpy dtype)
TYPES = {
    "int2": (21, ">i2"),
    "int4": (23, ">i4"),
    "int8": (20, ">i8"),
    "float4": (700, ">f4"),
    "float8": (701, ">f8"),
}


def copy_frame(cur: psycopg.Cursor, table: str, df: pd.DataFrame, *, chunk: int = CHUNK_ROWS) -> None:
    """COPY a DataFrame into ``table`` (its columns named as the DataFrame's), in CSV chunks.

    ``table`` and the column names come from code, never from user input. Missing values are
    written as empty fields (NULL).
    """
    cols = ", ".join(df.columns)
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as cp:
        for start in range(0, len(df), chunk):
            buf = io.StringIO()
            df.iloc[start : start + chunk].to_csv(buf, index=False, header=False, na_rep="")
            cp.write(buf.getvalue())


def row_dtype(columns: list[tuple[str, int]]) -> np.dtype:
    """The numpy record of one binary COPY row: ``columns`` = (type, width) pairs, width 0 = a scalar,
    width K = a one-dimensional array of K elements (no NULLs)."""
    fields: list[Any] = [("nf", ">i2")]
    for i, (kind, width) in enumerate(columns):
        dt = TYPES[kind][1]
        fields.append((f"l{i}", ">i4"))
        if width == 0:
            fields.append((f"v{i}", dt))
        else:
            fields.append((f"h{i}", ">i4", (5,)))  # ndim, has-null, element oid, length, lower bound
            fields.append((f"e{i}", [("l", ">i4"), ("v", dt)], (width,)))
    return np.dtype(fields)


def binary_rows(columns: list[tuple[str, np.ndarray]]) -> bytes:
    """Rows of binary COPY (without header) from columns: (type, 1-D values) or (type, 2-D (n, K) arrays)."""
    spec = [(kind, 0 if np.ndim(v) == 1 else np.shape(v)[1]) for kind, v in columns]
    n = len(columns[0][1])
    rec = np.empty(n, dtype=row_dtype(spec))
    rec["nf"] = len(columns)
    for i, ((kind, values), (_, width)) in enumerate(zip(columns, spec, strict=True)):
        oid, dt = TYPES[kind]
        size = np.dtype(dt).itemsize
        if width == 0:
            rec[f"l{i}"] = size
            rec[f"v{i}"] = values
        else:
            rec[f"l{i}"] = 20 + width * (4 + size)
            rec[f"h{i}"] = (1, 0, oid, width, 1)
            rec[f"e{i}"]["l"] = size
            rec[f"e{i}"]["v"] = values
    return rec.tobytes()


def binary_field(value: Any) -> bytes:
    """One field of a binary COPY row, length included: None, str (text), int (bigint), or a 1-D numpy
    array of a :data:`TYPES` dtype / of str (text[])."""
    if value is None:
        return struct.pack(">i", -1)
    if isinstance(value, str):
        b = value.encode()
        return struct.pack(">i", len(b)) + b
    if isinstance(value, int | np.integer):
        return struct.pack(">iq", 8, int(value))
    arr = np.asarray(value)
    if arr.dtype.kind in "OUS":
        items = [str(s).encode() for s in arr]
        body = b"".join(struct.pack(">i", len(b)) + b for b in items)
        head = struct.pack(">iiiii", 1, 0, 25, len(items), 1)
    else:
        kind = {"i4": "int4", "i8": "int8", "f4": "float4", "f8": "float8", "i2": "int2"}[arr.dtype.str[1:]]
        oid, dt = TYPES[kind]
        el = np.empty(len(arr), dtype=[("l", ">i4"), ("v", dt)])
        el["l"] = np.dtype(dt).itemsize
        el["v"] = arr
        body = el.tobytes()
        head = struct.pack(">iiiii", 1, 0, oid, len(arr), 1)
    return struct.pack(">i", len(head) + len(body)) + head + body


def binary_record(fields: list[Any]) -> bytes:
    """One binary COPY row of variable-width fields (see :func:`binary_field`)."""
    return struct.pack(">h", len(fields)) + b"".join(binary_field(f) for f in fields)


def copy_binary(cur: psycopg.Cursor, table: str, names: list[str], body: bytes | list[bytes]) -> None:
    """COPY rows already in binary format (from :func:`binary_rows` / :func:`binary_record`) into ``table``."""
    parts = [body] if isinstance(body, bytes | bytearray) else body
    with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT binary)") as cp:
        cp.write(HEADER)
        for p in parts:
            for s in range(0, len(p), 64 << 20):
                cp.write(p[s : s + (64 << 20)])
        cp.write(TRAILER)


def read_binary(cur: psycopg.Cursor, query: str, dtype: np.dtype) -> np.ndarray:
    """``COPY (query) TO STDOUT (FORMAT binary)`` parsed as fixed-width records of ``dtype``."""
    buf = bytearray()
    with cur.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as cp:
        for block in cp:
            buf += block
    if len(buf) < len(HEADER) + 2:
        return np.empty(0, dtype=dtype)
    ext = struct.unpack(">i", bytes(buf[15:19]))[0]
    start = 19 + ext
    count = (len(buf) - 2 - start) // dtype.itemsize
    return np.frombuffer(buf, dtype=dtype, count=count, offset=start)
