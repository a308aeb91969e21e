-- Service-circle coverage from the stored distances (building_access × coverage_budget), unit and
-- children in one pass each:
--   item_kind 'category': households of buildings within the :profile/:circle budget of each
--                         category in :categories (households = that unit's households);
--   item_kind 'complete': households of buildings with a complete circle (every (category, circle)
--                         pair of :req_categories/:req_circles within its own budget), out of the
--                         households of communities whose rule_set is in :rule_sets.
-- A building without a stored distance counts as not within (as in the coverage figures).
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
