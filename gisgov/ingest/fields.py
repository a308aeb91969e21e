"""Find each canonical field among an incoming file's columns (Chinese aliases, ``--map``)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path

import yaml

from gisgov.config import get_settings

# Canonical fields each level reads (besides geometry); resident rosters have their own list.
RESIDENT_FIELDS = (
    "building_code",
    "address",
    "door_no",
    "name",
    "gender",
    "birth_year",
    "role",
    "id_number",
    "phone",
    "groups",
    "residence",
)


def _norm(s: str) -> str:
    return unicodedata.normalize("NFKC", str(s)).strip().lower()


@lru_cache(maxsize=4)
def load_aliases(path: str | None = None) -> dict:
    p = Path(path) if path else get_settings().layers_dir / "field_aliases.yaml"
    with open(p, encoding="utf-8") as f:
        return yaml.safe_load(f)


def aliases_for(level: str, field: str, table: dict | None = None) -> list[str]:
    t = table or load_aliases()
    own = (t.get("levels", {}).get(level) or {}).get(field, [])
    return [*own, *t.get("common", {}).get(field, [])]


def parse_map(items: list[str] | None) -> dict[str, str]:
    """``["name=小区名", "code=XQBM"]`` → ``{"name": "小区名", "code": "XQBM"}``."""
    out: dict[str, str] = {}
    for it in items or []:
        if "=" not in it:
            raise ValueError(f"--map expects field=column, got {it!r}")
        k, v = it.split("=", 1)
        if not k.strip() or not v.strip():
            raise ValueError(f"--map expects field=column, got {it!r}")
        out[k.strip()] = v.strip()
    return out


def resolve(
    columns: list[str],
    level: str,
    fields: tuple[str, ...],
    overrides: dict[str, str] | None = None,
    table: dict | None = None,
) -> dict[str, str]:
    """``{canonical field: column}`` for the fields found; ``--map`` overrides win.

    Raises ValueError for an override naming an unknown field or a column the file lacks.
    """
    overrides = overrides or {}
    by_norm = {}
    for c in columns:
        by_norm.setdefault(_norm(c), c)
    out: dict[str, str] = {}
    for f, col in overrides.items():
        if f not in fields:
            raise ValueError(f"--map {f}={col}: unknown field {f!r} for level {level}; fields: {', '.join(fields)}")
        if _norm(col) not in by_norm:
            raise ValueError(
                f"--map {f}={col}: the file has no column {col!r}; columns: {', '.join(map(str, columns))}"
            )
        out[f] = by_norm[_norm(col)]
    used = set(out.values())
    for f in fields:
        if f in out:
            continue
        for alias in aliases_for(level, f, table):
            c = by_norm.get(_norm(alias))
            if c is not None and c not in used:
                out[f] = c
                used.add(c)
                break
    return out
