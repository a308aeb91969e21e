"""A province instance's side of the roll-up: read and verify a city's file, load it (all or nothing,
replacing that city's previous roll-up), and the province view (exact sums of the cities' figures,
shares recomputed from the summed numerators and denominators).

Rules a file must pass, each named in the refusal: ``rollup_file_format`` (not a roll-up file),
``rollup_checksum`` (the content does not match the manifest's checksum: changed after export),
``rollup_no_personal_data``, ``rollup_indicator``, ``rollup_small_cell`` (see
:func:`gisgov.rollup.figures.validate`), ``rollup_older_export`` (a city's export older than the one
loaded), ``rollup_same_time_other_content`` (the same export time with other content).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from gisgov.errors import Conflict, InvalidInput
from gisgov.rollup import figures

MAX_BYTES = 512 * 1024 * 1024  # a roll-up file is small (kB per community); refuse anything huge


def read(path: str | Path) -> dict[str, Any]:
    """The verified document in a roll-up file (``.json`` or gzip, told by its first bytes)."""
    raw = Path(path).read_bytes()
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        if len(raw) > MAX_BYTES:
            raise ValueError("too large")
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"无法读取汇总文件 cannot read the roll-up file {Path(path).name}: {exc} (rule: rollup_file_format)"
        ) from None
    return verify(doc)


def verify(doc: Any) -> dict[str, Any]:
    """``doc`` if its checksum matches and it keeps the roll-up rules; else InvalidInput naming the rule."""
    if not isinstance(doc, dict) or not isinstance(doc.get("manifest"), dict) or "checksum" not in doc["manifest"]:
        raise InvalidInput("不是汇总文件 not a roll-up file: no manifest checksum (rule: rollup_file_format)")
    want = doc["manifest"]["checksum"]
    try:
        got = figures.checksum(doc)
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("不是汇总文件 not a roll-up file (rule: rollup_file_format)") from None
    if got != want:
        raise InvalidInput(
            f"校验和不符，文件导出后被改动 checksum mismatch: the content was changed after export "
            f"(manifest {str(want)[:20]}…, content {got[:20]}…) (rule: rollup_checksum)"
        )
    figures.validate(doc)
    return doc


@dataclass(frozen=True)
class LoadResult:
    city_code: str
    city_name: str
    exported_at: str
    units: int
    figures: int
    replaced: str | None  # export time of the roll-up it replaced
    unchanged: bool = False  # the very same export was loaded already


def _stamp(value: str) -> datetime:
    try:
        t = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"导出时间无效 bad exported_at {value!r} (rule: rollup_file_format)") from None
    if t.tzinfo is None:
        raise InvalidInput(f"导出时间缺少时区 exported_at without a time zone {value!r} (rule: rollup_file_format)")
    return t


def load(conn: Connection, doc: dict[str, Any]) -> LoadResult:
    """Load one verified document in the caller's transaction (all or nothing), replacing the city's
    previous roll-up. An export older than the loaded one is refused (Conflict, ``rollup_older_export``)."""
    m = doc["manifest"]
    code, new_at = str(m["city_code"]), _stamp(m["exported_at"])
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('gisgov.rollup'), hashtext(:c))"), {"c": code})
    old = conn.execute(
        text("SELECT exported_at, source_checksum FROM rollup_city WHERE city_code = :c"), {"c": code}
    ).first()
    n_fig = sum(len(u["figures"]) for u in doc["units"])
    if old is not None:
        if new_at < old.exported_at:
            raise Conflict(
                f"该市已载入更新的导出，拒绝较旧的文件 city {code} has a newer export loaded "
                f"({old.exported_at.isoformat()}) than this file ({new_at.isoformat()}); nothing was changed "
                f"(rule: rollup_older_export)"
            )
        if new_at == old.exported_at:
            if old.source_checksum == m["checksum"]:
                return LoadResult(code, m["city_name"], m["exported_at"], len(doc["units"]), n_fig, None, True)
            raise Conflict(
                f"同一导出时间内容不同 city {code}: an export with the same time ({new_at.isoformat()}) but other "
                f"content is loaded; nothing was changed (rule: rollup_same_time_other_content)"
            )
        conn.execute(text("DELETE FROM rollup_city WHERE city_code = :c"), {"c": code})
    conn.execute(
        text("""
        INSERT INTO rollup_city (city_code, name, dataset, exported_at, source_checksum, schema_revision,
                                 small_cell_k, coverage, labels)
        VALUES (:c, :name, :ds, :at, :sum, :rev, :k, CAST(:cov AS jsonb), CAST(:labels AS jsonb))"""),
        {
            "c": code,
            "name": m["city_name"],
            "ds": m.get("dataset"),
            "at": new_at,
            "sum": m["checksum"],
            "rev": m.get("schema_revision"),
            "k": m["small_cell_k"],
            "cov": json.dumps(m.get("coverage"), ensure_ascii=False),
            "labels": json.dumps(doc.get("labels") or {}, ensure_ascii=False),
        },
    )
    unit_rows = [
        {
            "c": code,
            "level": u["level"],
            "code": str(u["code"]),
            "name": str(u["name"]),
            "parent": u.get("parent_code"),
            "g": None if not u.get("outline") else json.dumps(u["outline"]),
        }
        for u in doc["units"]
    ]
    conn.execute(
        text("""
        INSERT INTO rollup_unit (city_code, level, code, name, parent_code, geom)
        VALUES (:c, :level, :code, :name, :parent,
                CASE WHEN CAST(:g AS text) IS NULL THEN NULL ELSE ST_SetSRID(ST_GeomFromGeoJSON(CAST(:g AS text)), 4326) END)"""),
        unit_rows,
    )
    fig_rows = [
        {
            "c": code,
            "level": u["level"],
            "code": str(u["code"]),
            "ind": name,
            "v": v if isinstance(v, int) else None,
            "label": v if isinstance(v, str) else None,
        }
        for u in doc["units"]
        for name, v in u["figures"].items()
    ]
    if fig_rows:
        conn.execute(
            text("""
            INSERT INTO rollup_figure (city_code, level, code, indicator, value, label)
            VALUES (:c, :level, :code, :ind, :v, :label)"""),
            fig_rows,
        )
    return LoadResult(
        code,
        m["city_name"],
        m["exported_at"],
        len(unit_rows),
        len(fig_rows),
        old.exported_at.isoformat() if old is not None else None,
    )


# -- the province view ---------------------------------------------------------------------------------


def _value(row: Any) -> figures.Value:
    return int(row.value) if row.value is not None else row.label


def city_figures(conn: Connection, level: str = "city") -> dict[tuple[str, str], dict[str, figures.Value]]:
    """Figures of every loaded unit of ``level``: ``{(city_code, unit code): {indicator: value}}``."""
    out: dict[tuple[str, str], dict[str, figures.Value]] = {}
    rows = conn.execute(
        text("SELECT city_code, code, indicator, value, label FROM rollup_figure WHERE level = :l ORDER BY 1, 2, 3"),
        {"l": level},
    )
    for r in rows:
        out.setdefault((r.city_code, r.code), {})[r.indicator] = _value(r)
    return out


def province(conn: Connection) -> dict[str, Any]:
    """The province view: per-city rows (figures and shares) and the province totals, exact sums of the
    cities' city-level figures with shares recomputed from the sums."""
    cities = conn.execute(
        text("""
        SELECT city_code, name, dataset, exported_at, loaded_at, source_checksum, small_cell_k, coverage,
               (SELECT count(*) FROM rollup_unit u WHERE u.city_code = c.city_code AND u.level = 'street') AS streets,
               (SELECT count(*) FROM rollup_unit u WHERE u.city_code = c.city_code AND u.level = 'community')
                   AS communities
        FROM rollup_city c ORDER BY city_code""")
    ).all()
    figs = city_figures(conn, "city")
    rows = []
    for c in cities:
        f = next((v for (cc, _), v in figs.items() if cc == c.city_code), {})
        rows.append(
            {
                "city_code": c.city_code,
                "name": c.name,
                "dataset": c.dataset,
                "exported_at": c.exported_at.isoformat(),
                "loaded_at": c.loaded_at.isoformat(),
                "checksum": c.source_checksum,
                "small_cell_k": c.small_cell_k,
                "coverage": c.coverage,
                "streets": int(c.streets),
                "communities": int(c.communities),
                "figures": f,
                "shares": figures.shares(f),
            }
        )
    tot = figures.total(r["figures"] for r in rows)
    circles = {
        json.dumps({k: (r["coverage"] or {}).get(k) for k in ("standard", "circle", "profile")})
        for r in rows
        if r["coverage"]
    }
    return {
        "cities": rows,
        "province": {
            "cities": len(rows),
            "streets": sum(r["streets"] for r in rows),
            "communities": sum(r["communities"] for r in rows),
            "figures": tot,
            "shares": figures.shares(tot),
        },
        "notes": (
            [
                "各市服务圈口径不同，覆盖率不可比 cities computed coverage with different circles: shares are not comparable"
            ]
            if len(circles) > 1
            else []
        ),
    }
