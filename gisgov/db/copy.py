"""Bulk writes with PostgreSQL COPY (never row-by-row inserts for large tables)."""

from __future__ import annotations

import io

import pandas as pd
import psycopg

CHUNK_ROWS = 50_000


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
