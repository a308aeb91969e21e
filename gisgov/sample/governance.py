"""Staff gaps and compound-rule breaches for the sample city (合成 synthetic; issue 13, item 6).

The sample city's synthetic staff (:mod:`gisgov.sample.staff`) fill every grid 一格三员, and its
compounds have no service point recorded, so neither rule check would have anything sensible to show.
This step makes the picture realistic and deterministic:

- staff gaps: in a few staffed current grids (ranked by a hash of the grid code) the 网格长 is removed, in a
  few others the 专职网格员 — 3 % of the grids each, at least one;
- compounds never edited by a person (``updated_by`` IS NULL): a service point where the compound
  has a party organisation, except in ~10 % of them (by a hash of the code); ~8 % of the compounds
  built before 2000 lose their property mode (not under property management).

Idempotent: the choices depend only on the codes, so a second run changes nothing; compounds edited
through the API or CLI are left alone. ``gisgov_meta`` key ``governance_sample`` labels the result
synthetic. Call :func:`demo_step` from ``gisgov demo`` after the grid step (grids and staff must exist).
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import Connection, text

SOURCE = "gisgov demo（合成 synthetic）"
GAP_SHARE = 0.03
NO_POINT_SHARE = 0.10
OLD_UNMANAGED_SHARE = 0.08
NOTE = (
    "合成数据：部分网格缺网格长或专职网格员，部分小区未设党群服务点或未纳入物业管理，用于演示规则检查 "
    "synthetic: some grids lack a 网格长 or 专职网格员 and some compounds lack a service point or property "
    "management, to demonstrate the rule checks"
)


def _u(code: str, salt: str) -> float:
    """A stable number in [0, 1) for a code."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{code}".encode()).digest()[:8], "big") / 2**64


def apply_sample_governance(conn: Connection) -> dict:
    """Leave staff gaps and compound breaches in the sample city (the caller's transaction)."""
    conn.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
    # grids with staff (synthetic staff come 3-4 per grid: removing one role leaves the grid staffed, so
    # the same grids are chosen again on a second run)
    grids = (
        conn.execute(
            text("""SELECT DISTINCT g.code FROM grid_current() g
                                 WHERE EXISTS (SELECT 1 FROM grid_staff s WHERE s.grid_id = g.id)
                                 ORDER BY g.code""")
        )
        .scalars()
        .all()
    )
    ranked = sorted(grids, key=lambda c: _u(c, "staff-gap"))
    k = max(1, round(len(grids) * GAP_SHARE)) if grids else 0
    no_leader, no_full_time = sorted(ranked[:k]), sorted(ranked[k : 2 * k])
    removed = 0
    for role, codes in (("网格长", no_leader), ("专职网格员", no_full_time)):
        if codes:
            removed += conn.execute(
                text("""
                DELETE FROM grid_staff s USING grid_current() g
                WHERE s.grid_id = g.id AND g.code = ANY (:codes) AND s.role = :r"""),
                {"codes": codes, "r": role},
            ).rowcount
    compounds = conn.execute(
        text("""SELECT code, has_party_org, year_built FROM compound
                                     WHERE updated_by IS NULL ORDER BY code""")
    ).all()
    point = [c.code for c in compounds if c.has_party_org and _u(c.code, "service-point") >= NO_POINT_SHARE]
    unmanaged = [
        c.code
        for c in compounds
        if c.year_built is not None and c.year_built < 2000 and _u(c.code, "property") < OLD_UNMANAGED_SHARE
    ]
    changed = 0
    if compounds:
        changed += conn.execute(
            text("""
            UPDATE compound SET has_service_point = (code = ANY (:p))
            WHERE updated_by IS NULL AND has_service_point IS DISTINCT FROM (code = ANY (:p))"""),
            {"p": point},
        ).rowcount
        changed += conn.execute(
            text("""
            UPDATE compound SET property_mode = NULL
            WHERE updated_by IS NULL AND code = ANY (:u) AND property_mode IS NOT NULL"""),
            {"u": unmanaged},
        ).rowcount
    conn.execute(
        text("""INSERT INTO gisgov_meta (key, value) VALUES ('governance_sample', CAST(:v AS jsonb))
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"""),
        {
            "v": json.dumps(
                {
                    "synthetic": True,
                    "source": SOURCE,
                    "note": NOTE,
                    "no_leader": no_leader,
                    "no_full_time": no_full_time,
                },
                ensure_ascii=False,
            )
        },
    )
    return {
        "grids": len(grids),
        "no_leader": no_leader,
        "no_full_time": no_full_time,
        "staff_removed": removed,
        "compounds": len(compounds),
        "with_service_point": len(point),
        "old_unmanaged": len(unmanaged),
        "compounds_changed": changed,
    }


def demo_step(url: str, console) -> dict:
    """`gisgov demo` step: staff gaps and compound breaches (after the grid step; idempotent)."""
    from gisgov.db.engine import make_engine

    eng = make_engine(url)
    try:
        with eng.begin() as conn:
            out = apply_sample_governance(conn)
    finally:
        eng.dispose()
    console.print(
        f"[green]✓[/] 网格员与小区 staff and compounds: 缺网格长 {len(out['no_leader'])} / 缺专职网格员 "
        f"{len(out['no_full_time'])} grids, 老旧小区未纳入物业 {out['old_unmanaged']} compounds "
        f"(合成 synthetic{'; unchanged' if not out['staff_removed'] and not out['compounds_changed'] else ''})"
    )
    return out
