"""Event statistics per grid / per community (whatever the caller's scope shows):

- counts by category and by status; open and overdue counts;
- share closed within the grid (小事不出网格): closed events handled by the grid itself (department
  ``wangge``) and never escalated, over all closed events;
- median time to close (hours from report to close, closed events);
- closed late (closed after the deadline);
- the overdue list: open events past their deadline, oldest deadline first (no reporter, no text);
- the trend per month (Asia/Shanghai): reported and closed per calendar month;
- per grid (when more than one grid is in view): the same headline figures per grid.

:func:`summarize` is pure (rows in, figures out) so tests can check it against hand-computed values;
:func:`load` reads the rows of the events in scope.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from gisgov.events.catalog import Catalog, load_catalog
from gisgov.events.machine import STATE_LABELS, State

TZ = ZoneInfo("Asia/Shanghai")
IN_GRID_DEPARTMENT = "wangge"
TERMINAL = {"closed", "rejected"}


@dataclass(frozen=True)
class Row:
    id: int
    category: str
    status: str
    grid_code: str | None
    community_code: str | None
    reported_at: datetime
    closed_at: datetime | None
    deadline: datetime
    department: str | None = None
    escalated_to: str | None = None


def _month(t: datetime) -> str:
    return t.astimezone(TZ).strftime("%Y-%m")


def _months(first: str, last: str) -> list[str]:
    y, m = map(int, first.split("-"))
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _headline(rows: list[Row], now: datetime) -> dict:
    closed = [r for r in rows if r.status == "closed"]
    in_grid = [r for r in closed if r.department == IN_GRID_DEPARTMENT and r.escalated_to is None]
    hours = [(r.closed_at - r.reported_at).total_seconds() / 3600 for r in closed if r.closed_at]
    open_ = [r for r in rows if r.status not in TERMINAL]
    return {
        "total": len(rows),
        "open": len(open_),
        "overdue": sum(1 for r in open_ if r.deadline < now),
        "closed": len(closed),
        "closed_in_grid": len(in_grid),
        "share_closed_in_grid": round(len(in_grid) / len(closed), 4) if closed else None,
        "median_hours_to_close": round(statistics.median(hours), 2) if hours else None,
        "closed_late": sum(1 for r in closed if r.closed_at and r.closed_at > r.deadline),
        "escalated": sum(1 for r in rows if r.escalated_to is not None),
    }


def summarize(rows: list[Row], now: datetime, catalog: Catalog | None = None, *, overdue_limit: int = 200) -> dict:
    catalog = catalog or load_catalog()
    out = _headline(rows, now)
    cats = Counter(r.category for r in rows)
    out["by_category"] = [
        {"category": c, "label": catalog.label(c), "n": n}
        for c, n in sorted(cats.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    sts = Counter(r.status for r in rows)
    out["by_status"] = [{"status": s.value, "label": STATE_LABELS[s], "n": sts.get(s.value, 0)} for s in State]
    late = sorted((r for r in rows if r.status not in TERMINAL and r.deadline < now), key=lambda r: (r.deadline, r.id))
    out["overdue_list"] = [
        {
            "id": r.id,
            "category": r.category,
            "category_label": catalog.label(r.category),
            "status": r.status,
            "grid": r.grid_code,
            "community": r.community_code,
            "reported_at": r.reported_at.isoformat(),
            "deadline": r.deadline.isoformat(),
            "hours_overdue": round((now - r.deadline).total_seconds() / 3600, 1),
        }
        for r in late[:overdue_limit]
    ]
    reported = Counter(_month(r.reported_at) for r in rows)
    closed = Counter(_month(r.closed_at) for r in rows if r.status == "closed" and r.closed_at)
    months = sorted(set(reported) | set(closed))
    out["trend"] = (
        [
            {"month": m, "reported": reported.get(m, 0), "closed": closed.get(m, 0)}
            for m in _months(months[0], months[-1])
        ]
        if months
        else []
    )
    by_grid: dict[str | None, list[Row]] = defaultdict(list)
    for r in rows:
        by_grid[r.grid_code].append(r)
    out["grids"] = [
        {"grid": g} | _headline(rs, now)
        for g, rs in sorted(by_grid.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    ]
    return out


def load(conn: Connection, *, community: str | None = None, grid: str | None = None) -> list[Row]:
    rows = conn.execute(
        text("""
        SELECT id, category, status, grid_code, community_code, reported_at, closed_at, deadline, department,
               escalated_to
        FROM event
        WHERE (CAST(:comm AS text) IS NULL OR community_code = :comm)
          AND (CAST(:grid AS text) IS NULL OR grid_code = :grid)
        ORDER BY id"""),
        {"comm": community, "grid": grid},
    ).all()
    return [Row(*r) for r in rows]


def now_db(conn: Connection) -> datetime:
    return conn.execute(text("SELECT now()")).scalar_one()


def event_stats(
    conn: Connection, *, community: str | None = None, grid: str | None = None, catalog: Catalog | None = None
) -> dict:
    out = summarize(load(conn, community=community, grid=grid), now_db(conn), catalog)
    return {"community": community, "grid": grid} | out
