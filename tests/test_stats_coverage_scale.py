"""The statistics' coverage SQL (packed distances read by slot, one row per building) against the old
definition (the ``building_access`` view: one row per building × category, joined to the budgets), on a
small city with coverage computed: the same rows for the city, streets, communities, grids and compounds,
for callers whose area is the whole city, a street, a community (its street and the city are partial
then) or a grid, as the owner and as the app role under row-level security; and after edge cases written
into the stored distances (not computed, out of reach, exactly at the budget, a building without a row, a
category without a slot) and for odd circle specifications (no requirement, a circle without a budget).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from auth_helpers import app_engine
from sample_fixtures import small_city_db
from sqlalchemy import Connection, create_engine, pool, text

from gisgov.coverage.catalog import load_catalog
from gisgov.stats import queries
from gisgov.stats.circles import CircleSpec, circle_spec
from gisgov.stats.units import CITY, Area

# The coverage statement of the statistics before it read the packed distances: the reference.
OLD_SQL = """
WITH bld AS MATERIALIZED (
    SELECT b.id, b.code, b.households AS est, {child_key} AS ck,
           c.rule_set = ANY(CAST(:rule_sets AS text[])) AS applies
    FROM building b
    JOIN community c ON c.code = b.community_code
    LEFT JOIN grid g ON g.id = b.grid_id
    LEFT JOIN compound cp ON cp.id = b.compound_id
    WHERE {scope}
),
w AS MATERIALIZED (
    SELECT bld.id, bld.ck, bld.applies, CASE WHEN hh.n > 0 THEN hh.n ELSE coalesce(bld.est, 0) END AS hh
    FROM bld
    LEFT JOIN (SELECT h.building_code, count(*) AS n FROM bld JOIN household h ON h.building_code = bld.code
               GROUP BY h.building_code) hh ON hh.building_code = bld.code
),
req AS (
    SELECT r.category, bu.distance_m
    FROM unnest(CAST(:req_categories AS text[]), CAST(:req_circles AS text[])) AS r(category, circle)
    JOIN coverage_budget bu ON bu.profile = :profile AND bu.circle = r.circle
),
met AS (
    SELECT a.building_id, count(*) AS pairs
    FROM w JOIN building_access a ON a.building_id = w.id
    JOIN req ON req.category = a.category_code AND a.distance_m <= req.distance_m
    GROUP BY a.building_id
),
within AS (
    SELECT w.ck, w.hh, a.category_code
    FROM w JOIN building_access a ON a.building_id = w.id
    JOIN coverage_budget bu ON bu.profile = :profile AND bu.circle = :circle
    WHERE a.category_code = ANY(CAST(:categories AS text[])) AND a.distance_m <= bu.distance_m
)
SELECT 'complete' AS item_kind, NULL::text AS item, GROUPING(w.ck) = 1 AS is_total, w.ck,
       coalesce(sum(w.hh) FILTER (WHERE w.applies), 0)::bigint AS households,
       coalesce(sum(w.hh) FILTER (WHERE w.applies AND met.pairs = cardinality(CAST(:req_categories AS text[]))),
                0)::bigint AS households_in
FROM w LEFT JOIN met ON met.building_id = w.id
GROUP BY GROUPING SETS ((), (w.ck))
UNION ALL
SELECT 'category', within.category_code, GROUPING(within.ck) = 1, within.ck,
       NULL::bigint, sum(within.hh)::bigint
FROM within
GROUP BY GROUPING SETS ((within.category_code), (within.ck, within.category_code))
"""

Key = tuple[str, str | None, bool, str | None]


def keyed(rows: list[dict[str, Any]]) -> dict[Key, tuple[Any, Any]]:
    out: dict[Key, tuple[Any, Any]] = {}
    for r in rows:
        k = (r["item_kind"], r["item"], bool(r["is_total"]), r["ck"])
        assert k not in out, f"duplicate row {k}"
        out[k] = (r["households"], r["households_in"])
    return out


def reference(conn: Connection, level: str, code: str | None, area: Area, spec: CircleSpec) -> dict:
    unit = queries.resolve(conn, level, code, area=area)
    sql = OLD_SQL.format(**unit.fragments(area)["building"])
    return keyed([dict(r._mapping) for r in conn.execute(text(sql), unit.params() | area.params() | spec.params())])


def current(conn: Connection, level: str, code: str | None, area: Area, spec: CircleSpec) -> dict:
    unit = queries.resolve(conn, level, code, area=area)
    return keyed(queries.coverage(conn, unit.fragments(area)["building"], unit.params() | area.params(), spec))


@pytest.fixture(scope="module")
def city(db_factory) -> Iterator[dict[str, Any]]:
    """The small city (coverage computed) with two current grids in its first community; its codes."""
    url = small_city_db(db_factory, "gisgov_test_covscale", compute=True)
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as conn:
        streets = conn.execute(text("SELECT code FROM street ORDER BY code")).scalars().all()
        community = conn.execute(text("SELECT min(code) FROM community WHERE street_code = :s"), {"s": streets[0]})
        community = community.scalar()
        conn.execute(
            text("""
            WITH c AS (SELECT code, geom, ST_XMin(geom) AS x0, ST_XMax(geom) AS x1, ST_YMin(geom) AS y0,
                              ST_YMax(geom) AS y1, ST_SRID(geom) AS srid FROM community WHERE code = :c),
            plan AS (INSERT INTO grid_plan (community_code, version, status, author, activated)
                     SELECT code, 1, 'active', 'test', now() FROM c RETURNING id),
            made AS (
                INSERT INTO grid (code, community_code, plan_id, geom)
                SELECT c.code || s.seq, c.code, plan.id,
                       ST_Multi(ST_CollectionExtract(ST_Intersection(c.geom, ST_MakeEnvelope(
                           CASE s.half WHEN 0 THEN c.x0 ELSE (c.x0 + c.x1) / 2 END, c.y0,
                           CASE s.half WHEN 0 THEN (c.x0 + c.x1) / 2 ELSE c.x1 END, c.y1, c.srid)), 3))
                FROM c, plan, (VALUES ('001', 0), ('002', 1)) AS s(seq, half)
                RETURNING id, geom)
            UPDATE building b SET grid_id = made.id FROM made
            WHERE b.community_code = :c AND ST_Intersects(made.geom, b.pos)"""),
            {"c": community},
        )
        # one building of the community outside every grid (its grid child key is NULL)
        conn.execute(
            text(
                "UPDATE building SET grid_id = NULL WHERE id = (SELECT min(id) FROM building WHERE community_code = :c)"
            ),
            {"c": community},
        )
        grid = conn.execute(text("SELECT min(code) FROM grid WHERE community_code = :c"), {"c": community}).scalar()
        compounds = (
            conn.execute(
                text("SELECT code FROM compound WHERE community_code = :c ORDER BY code LIMIT 2"), {"c": community}
            )
            .scalars()
            .all()
        )
    yield {
        "url": url,
        "engine": eng,
        "streets": streets,
        "community": community,
        "grid": grid,
        "compounds": compounds,
        "spec": circle_spec(load_catalog()),
    }
    eng.dispose()


def cases(city: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(caller's area, level, code): whole-city callers on every level; partial areas (a community's
    account asking for its street and the city, a grid's account for its community), a street's account."""
    s0, c0, g0 = city["streets"][0], city["community"], city["grid"]
    out: list[tuple[str, str, str | None]] = [("", CITY, None)]
    out += [("", "street", s) for s in city["streets"]]
    out += [("", "community", c0), ("", "grid", g0)] + [("", "compound", x) for x in city["compounds"]]
    out += [(c0, "street", s0), (c0, CITY, None), (c0, "community", c0), (c0, "grid", g0)]
    out += [(g0, "community", c0), (g0, "street", s0), (g0, "grid", g0), (s0, CITY, None), (s0, "street", s0)]
    return out


def area(conn: Connection, scope: str) -> Area:
    return queries.area_of(conn, scope)


def compare_all(conn: Connection, city: dict[str, Any], spec: CircleSpec) -> int:
    """Asserts equal rows for every case; returns how many rows were compared."""
    n = 0
    for scope, level, code in cases(city):
        a = area(conn, scope)
        old, new = reference(conn, level, code, a, spec), current(conn, level, code, a, spec)
        assert new == old, (scope, level, code)
        n += len(old)
    return n


def test_same_rows_as_the_view_definition(city):
    spec = city["spec"]
    with city["engine"].connect() as conn:
        conn.execute(text("SET jit = on"))
        n = compare_all(conn, city, spec)
        assert conn.execute(text("SHOW jit")).scalar() == "on"  # the statement turns JIT off for itself only
        # the figures are not degenerate: some households within, some not, some with a complete circle
        whole = reference(conn, CITY, None, Area(), spec)
        total = whole[("complete", None, True, None)]
        assert 0 < total[1] < total[0]
        cats = [v[1] for k, v in whole.items() if k[0] == "category" and k[2]]
        assert len(cats) >= 2 and min(cats) < max(cats)
        partial = reference(conn, "street", city["streets"][0], Area(city["community"]), spec)
        assert partial[("complete", None, True, None)][0] < whole[("complete", None, True, None)][0]
    assert n > 100


def test_same_rows_under_row_level_security(city):
    """As the app role with the caller's scope set (what a request runs): row-level security on buildings
    and households plus the area restriction."""
    eng = app_engine(city["url"], pool_size=1, max_overflow=0)
    try:
        for scope in ("", city["community"], city["grid"], city["streets"][0]):
            with eng.begin() as conn:
                conn.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": scope or "*"})
                a = area(conn, scope)
                for s, level, code in cases(city):
                    if s != scope:
                        continue
                    old = reference(conn, level, code, a, city["spec"])
                    assert old, (scope, level, code)
                    assert current(conn, level, code, a, city["spec"]) == old, (scope, level, code)
    finally:
        eng.dispose()


def test_same_rows_after_edge_cases_in_the_stored_distances(city):
    spec = city["spec"]
    cats = [c for c, _, _ in spec.categories]
    with city["engine"].connect() as conn:
        tx = conn.begin()
        try:
            budget = conn.execute(
                text("SELECT distance_m FROM coverage_budget WHERE profile = :p AND circle = :c"),
                {"p": spec.profile, "c": spec.circle},
            ).scalar()
            slot = dict(conn.execute(text("SELECT category_code, slot FROM coverage_access_slot")).all())
            ids = (
                conn.execute(text("SELECT building_id FROM building_access_packed ORDER BY building_id LIMIT 400"))
                .scalars()
                .all()
            )
            edits = [
                ("'NaN'", ids[0:60], cats[0]),  # not computed for it
                ("'Infinity'", ids[60:120], cats[1]),  # no facility within reach
                (":budget", ids[120:180], cats[2]),  # exactly at the budget: within
                ("CAST(:budget AS real) + 0.5", ids[180:240], cats[2]),  # just beyond
                ("0", ids[240:300], cats[3]),
            ]
            for value, bids, cat in edits:
                conn.execute(
                    text(
                        f"UPDATE building_access_packed SET distance_m[{int(slot[cat])}] = {value} "
                        "WHERE building_id = ANY(:ids)"
                    ),
                    {"ids": list(bids), "budget": budget},
                )
            conn.execute(
                text("DELETE FROM building_access_packed WHERE building_id = ANY(:ids)"), {"ids": ids[300:330]}
            )
            # a category shown and required whose slot is gone; a new slot beyond every array's length
            conn.execute(text("DELETE FROM coverage_access_slot WHERE category_code = :c"), {"c": cats[4]})
            conn.execute(
                text(
                    "UPDATE coverage_access_slot SET category_code = 'gone_' || category_code WHERE category_code = :c"
                ),
                {"c": cats[5]},
            )
            conn.execute(
                text(
                    "INSERT INTO coverage_access_slot (slot, category_code) SELECT max(slot) + 1, :c FROM coverage_access_slot"
                ),
                {"c": cats[5]},
            )
            assert compare_all(conn, city, spec) > 100
            # at the budget counts, just beyond does not (the reference says so too)
            n_at = conn.execute(
                text("SELECT count(*) FROM building_access WHERE category_code = :c AND distance_m = :b"),
                {"c": cats[2], "b": budget},
            ).scalar()
            assert n_at >= 60
        finally:
            tx.rollback()


@pytest.mark.parametrize(
    "variant",
    ["no_requirement", "requirement_without_budget", "duplicate_requirement", "one_category", "unknown_category"],
)
def test_same_rows_for_odd_circle_specifications(city, variant):
    spec: CircleSpec = city["spec"]
    reqs = spec.requirements
    changed = {
        "no_requirement": dataclasses.replace(spec, requirements=()),
        "requirement_without_budget": dataclasses.replace(spec, requirements=(*reqs, (reqs[0][0], "no_such_circle"))),
        "duplicate_requirement": dataclasses.replace(spec, requirements=(*reqs, reqs[0])),
        "one_category": dataclasses.replace(spec, categories=spec.categories[:1], requirements=reqs[:1]),
        "unknown_category": dataclasses.replace(
            spec,
            categories=(*spec.categories, ("no_such_category", "无", "none")),
            requirements=(*reqs, ("no_such_category", spec.circle)),
        ),
    }[variant]
    with city["engine"].connect() as conn:
        assert compare_all(conn, city, changed) > 20
