"""A year of synthetic events 模拟事件 for the sample city (issue 13, item 6 for events).

Every current grid gets events at random points inside it over the last 12 months, with a seasonal
mix per category (``season`` weights in the event catalog: more safety hazards in winter, more
city-appearance complaints in summer). Each event is walked through the loop with plausible delays
(accept within hours, dispatch, handle in about half the SLA with a long tail, feed back, close);
a few are rejected, some escalated to the community or the street, and some stall so that they are
overdue now. Recent events are naturally still open. All rows carry ``synthetic = true`` and the
descriptions start with 【模拟】; reporters and actors are labelled synthetic (no accounts).

Idempotent: nothing is generated when synthetic events exist already. Call
:func:`demo_step` from ``gisgov demo`` after the grid step (grids must exist).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection, text

from gisgov.events.catalog import Catalog, load_catalog

TEXTS = {
    "shirong": ["小区门口垃圾堆放未清运", "楼道乱贴小广告", "路边共享单车乱停", "绿化带内建筑垃圾", "占道经营摊点"],
    "maodun": ["楼上漏水引发邻里纠纷", "停车位归属争议", "装修噪音投诉", "宠物扰民纠纷", "物业费缴纳争议"],
    "anquan": ["楼道电动车充电", "消防通道被占用", "电线私拉乱接", "窨井盖缺失", "外墙瓷砖松动"],
    "minsheng": ["独居老人申请助餐", "低保材料咨询", "小区路灯不亮", "饮用水水压不足", "就业帮扶需求"],
    "teshu": ["独居老人定期走访", "残疾人家庭走访", "困境儿童走访", "社区矫正对象走访", "优抚对象慰问"],
    "sheshi": ["健身器材损坏", "小区道路破损", "公共座椅损坏", "雨水篦子堵塞", "单元门禁损坏"],
}
BASE_MIX = {"shirong": 0.28, "maodun": 0.14, "anquan": 0.16, "minsheng": 0.18, "teshu": 0.14, "sheshi": 0.10}
ACTORS = {
    "grid_worker": "模拟网格员 synthetic grid worker",
    "community_staff": "模拟社区工作者 synthetic community staff",
    "street_leader": "模拟街道领导 synthetic street leader",
}


def _walk(rng: np.random.Generator, cat, t0: datetime, now: datetime) -> tuple[list[tuple], dict]:
    """Steps (to, at, role, note, department) from report time t0, cut at ``now``; and the final fields."""
    h = lambda x: timedelta(hours=float(x))  # noqa: E731
    sla = cat.sla_hours
    steps: list[tuple] = [("reported", t0, "grid_worker", None, None)]
    fields = {"department": None, "escalated_to": None}
    stall = rng.random() < 0.07  # stops somewhere on the way: the overdue ones

    def add(to, dt, role, note=None, dep=None) -> bool:
        at = steps[-1][1] + dt
        if at > now:
            return False
        steps.append((to, at, role, note, dep))
        if dep:
            fields["department"] = dep
        return True

    if rng.random() < 0.04:
        add("rejected", h(rng.uniform(2, 12)), "community_staff", "不属于受理范围 not ours to handle")
        return steps, fields
    if rng.random() < 0.03:
        if not add("escalated_street", h(rng.uniform(1, 8)), "community_staff", "涉及多个社区 spans communities"):
            return steps, fields
        fields["escalated_to"] = "street"
        if stall or not add("dispatched", h(rng.uniform(12, 72)), "street_leader", "街道协调", cat.department):
            return steps, fields
    else:
        if not add("accepted", h(rng.uniform(0.5, 8)), "community_staff"):
            return steps, fields
        in_grid = cat.department == "wangge" or rng.random() < 0.5
        if stall and rng.random() < 0.3:
            return steps, fields
        if not add(
            "dispatched", h(rng.uniform(0.5, 24)), "community_staff", None, "wangge" if in_grid else cat.department
        ):
            return steps, fields
        if rng.random() < 0.07:
            if not add("escalated_community", h(rng.uniform(4, 48)), "grid_worker", "网格内无法解决 beyond the grid"):
                return steps, fields
            fields["escalated_to"] = "community"
            if not add("dispatched", h(rng.uniform(6, 48)), "community_staff", None, cat.department):
                return steps, fields
    if stall:
        return steps, fields
    if not add("handled", h(sla * rng.lognormal(np.log(0.45), 0.6)), "grid_worker", "已处置 done"):
        return steps, fields
    if not add("feedback", h(rng.uniform(2, 36)), "grid_worker", "回访满意 resident satisfied"):
        return steps, fields
    add("closed", h(rng.uniform(2, 48)), "community_staff")
    return steps, fields


def generate_events(
    conn: Connection,
    *,
    seed: int = 20241201,
    months: int = 12,
    per_grid_month: float = 2.5,
    now: datetime | None = None,
    catalog: Catalog | None = None,
) -> dict:
    """Insert a year of synthetic events into the current grids (owner connection). Returns counts."""
    catalog = catalog or load_catalog()
    conn.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
    if conn.execute(text("SELECT EXISTS (SELECT 1 FROM event WHERE synthetic)")).scalar():
        return {"created": 0, "skipped": True}
    now = now or conn.execute(text("SELECT now()")).scalar_one()
    rng = np.random.default_rng(seed)
    cats = [c for c in catalog.categories if c.code in BASE_MIX] or list(catalog.categories)
    grids = conn.execute(text("SELECT code FROM grid_current() ORDER BY code")).scalars().all()
    start = now - timedelta(days=30.44 * months)
    events, history = [], []
    for gi, code in enumerate(grids):
        n = int(rng.poisson(per_grid_month * months))
        if n == 0:
            continue
        pts = conn.execute(
            text(
                "SELECT ST_X(ST_Transform(d.geom, 4490)), ST_Y(ST_Transform(d.geom, 4490)) FROM grid_current() g, "
                "LATERAL ST_Dump(ST_GeneratePoints(g.geom, :n, :seed)) d WHERE g.code = :c"
            ),
            {"n": n, "seed": seed + gi + 1, "c": code},
        ).all()
        for lon, lat in pts:
            t0 = start + timedelta(seconds=float(rng.uniform(0, (now - start).total_seconds())))
            m = t0.month - 1
            w = np.array([BASE_MIX.get(c.code, 0.1) * c.season[m] for c in cats])
            cat = cats[int(rng.choice(len(cats), p=w / w.sum()))]
            steps, fields = _walk(rng, cat, t0, now)
            ev = {
                "lon": lon,
                "lat": lat,
                "category": cat.code,
                "description": "【模拟】"
                + TEXTS.get(cat.code, [cat.zh])[int(rng.integers(0, 5)) % len(TEXTS.get(cat.code, [cat.zh]))],
                "status": steps[-1][0],
                "deadline": t0 + timedelta(hours=cat.sla_hours),
                "reported_at": t0,
                "updated_at": steps[-1][1],
                "version": len(steps),
                **fields,
            }
            for col in ("accepted", "dispatched", "handled", "feedback", "closed", "rejected"):
                ev[f"{col}_at"] = next((at for to, at, *_ in reversed(steps) if to == col), None)
            ev["escalated_at"] = next((at for to, at, *_ in reversed(steps) if to.startswith("escalated")), None)
            events.append(ev)
            history.append(steps)
    if not events:
        return {"created": 0, "skipped": False}
    ids = (
        conn.execute(
            text("SELECT nextval(pg_get_serial_sequence('event', 'id')) FROM generate_series(1, :n)"),
            {"n": len(events)},
        )
        .scalars()
        .all()
    )
    for i, ev in zip(ids, events, strict=False):
        ev["id"] = i
    conn.execute(
        text("""
        INSERT INTO event (id, geom, category, description, reporter_role, status, department, escalated_to,
                           reported_at, accepted_at, dispatched_at, handled_at, feedback_at, closed_at, rejected_at,
                           escalated_at, deadline, updated_at, version, synthetic)
        OVERRIDING SYSTEM VALUE
        VALUES (:id, ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), Find_SRID('public', 'event', 'geom')),
                :category, :description, 'grid_worker', :status, :department, :escalated_to, :reported_at,
                :accepted_at, :dispatched_at, :handled_at, :feedback_at, :closed_at, :rejected_at, :escalated_at,
                :deadline, :updated_at, :version, true)"""),
        events,
    )
    rows = []
    for ev, steps in zip(events, history, strict=False):
        prev = None
        for to, at, role, note, dep in steps:
            rows.append(
                {
                    "e": ev["id"],
                    "at": at,
                    "actor": ACTORS[role],
                    "role": role,
                    "frm": prev,
                    "to": to,
                    "note": note,
                    "dep": dep,
                }
            )
            prev = to
    conn.execute(
        text("""
        INSERT INTO event_history (event_id, at, actor, actor_role, from_status, to_status, note, department)
        VALUES (:e, :at, :actor, :role, :frm, :to, :note, :dep)"""),
        rows,
    )
    statuses = {}
    for ev in events:
        statuses[ev["status"]] = statuses.get(ev["status"], 0) + 1
    overdue = sum(1 for ev in events if ev["status"] not in ("closed", "rejected") and ev["deadline"] < now)
    return {
        "created": len(events),
        "skipped": False,
        "grids": len(grids),
        "history": len(rows),
        "statuses": statuses,
        "overdue": overdue,
        "escalated": sum(1 for ev in events if ev["escalated_to"]),
    }


def demo_step(url: str, console) -> dict:
    """`gisgov demo` step: a year of synthetic events, once (after the grid step)."""
    from gisgov.db.engine import make_engine

    eng = make_engine(url)
    try:
        with eng.begin() as conn:
            out = generate_events(conn)
    finally:
        eng.dispose()
    if out["skipped"]:
        console.print("[green]✓[/] 事件 events: synthetic events present")
    else:
        console.print(
            f"[green]✓[/] 事件 events: {out['created']} 模拟事件 synthetic events in {out.get('grids', 0)} grids "
            f"(overdue {out.get('overdue', 0)}, escalated {out.get('escalated', 0)})"
        )
    return out
