-- Service-circle coverage from the packed distances (building_access_packed: one row per building, the
-- distances as an array, the slot of each category in coverage_access_slot), unit and children in one
-- pass over the unit's buildings (never through the building_access view, which unpacks 46 rows per
-- building). Returns one row per GROUPING SET () = the unit, (ck) = one child:
--   households     households of buildings in communities whose rule_set is one of the rule sets;
--   households_in  of those, the households of buildings with a complete circle (every required
--                  (category, circle) pair within its own budget);
--   in_<i>         households of buildings within the budget (walking profile, circle) of the i-th shown
--                  category (NULL when no building of the group is: the category has no row there).
-- The complete / within / sums slots are built by gisgov.stats.queries.coverage from the slots and budgets:
-- each test is "p.distance_m[<slot>] < 'Infinity' AND p.distance_m[<slot>] <= <budget>" (a missing building, slot
-- or budget, 'NaN' = not computed and 'Infinity' = no facility within reach never count as within).
-- A building's households: its household rows, or building.households when it has no roster.
WITH w AS (
    SELECT b.code, {child_key} AS ck, c.rule_set = ANY(CAST(:rule_sets AS text[])) AS applies,
           coalesce(b.households, 0) AS est,
           {complete} AS complete{within}
    FROM building b
    JOIN community c ON c.code = b.community_code
    LEFT JOIN grid g ON g.id = b.grid_id
    LEFT JOIN compound cp ON cp.id = b.compound_id
    LEFT JOIN building_access_packed p ON p.building_id = b.id
    WHERE {scope}
    OFFSET 0
),
x AS (
    -- one row per household of a building (counting 1), or one row for a building without any (counting its
    -- estimate): summed per group, the households of its buildings
    SELECT w.*, CASE WHEN h.building_code IS NULL THEN w.est ELSE 1 END AS hh
    FROM w LEFT JOIN household h ON h.building_code = w.code
)
SELECT GROUPING(w.ck) = 1 AS is_total, w.ck,
       coalesce(sum(w.hh) FILTER (WHERE w.applies), 0)::bigint AS households,
       coalesce(sum(w.hh) FILTER (WHERE w.applies AND w.complete), 0)::bigint AS households_in{sums}
FROM x AS w
GROUP BY GROUPING SETS ((), (w.ck))
