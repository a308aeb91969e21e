-- Households, residents, buildings, age bands and special groups (特殊人群) of one unit ({scope})
-- and of each of its children ({child_key}), in one pass over the unit's residents:
--   kind 'people': buildings, households, residents, age bands, special_people (distinct people
--                  in at least one group), per GROUPING SET () = the unit, (ck) = one child;
--   kind 'group':  memberships per special group (a person in two groups counts in each).
-- A building's households: its household rows, or building.households when it has no roster.
-- Age = :ref_year - birth_year (by birth year; the dataset's reference year).
WITH bld AS MATERIALIZED (
    SELECT b.id, b.code, b.households AS est, {child_key} AS ck
    FROM building b
    LEFT JOIN grid g ON g.id = b.grid_id
    LEFT JOIN compound cp ON cp.id = b.compound_id
    WHERE {scope}
),
hh AS (
    SELECT bld.id AS bid, count(*) AS n
    FROM bld JOIN household h ON h.building_code = bld.code
    GROUP BY bld.id
),
res AS MATERIALIZED (
    SELECT r.id, bld.id AS bid, :ref_year - r.birth_year AS age
    FROM bld
    JOIN household h ON h.building_code = bld.code
    JOIN resident r ON r.household_id = h.id
),
special AS (
    SELECT DISTINCT resident_id FROM resident_group
),
rs AS (
    SELECT res.bid,
           count(*) AS residents,
           count(*) FILTER (WHERE res.age < 15) AS age_0_14,
           count(*) FILTER (WHERE res.age BETWEEN 15 AND 59) AS age_15_59,
           count(*) FILTER (WHERE res.age >= 60) AS age_60,
           count(*) FILTER (WHERE res.age >= 80) AS age_80,
           count(*) FILTER (WHERE res.age IS NULL) AS age_unknown,
           count(sp.resident_id) AS special_people
    FROM res LEFT JOIN special sp ON sp.resident_id = res.id
    GROUP BY res.bid
),
memberships AS (
    SELECT res.bid, rg.group_code FROM res JOIN resident_group rg ON rg.resident_id = res.id
)
SELECT 'people' AS kind,
       GROUPING(bld.ck) = 1 AS is_total,
       bld.ck,
       NULL::text AS group_code,
       count(*)::bigint AS buildings,
       coalesce(sum(CASE WHEN hh.n > 0 THEN hh.n ELSE coalesce(bld.est, 0) END), 0)::bigint AS households,
       coalesce(sum(rs.residents), 0)::bigint AS residents,
       coalesce(sum(rs.age_0_14), 0)::bigint AS age_0_14,
       coalesce(sum(rs.age_15_59), 0)::bigint AS age_15_59,
       coalesce(sum(rs.age_60), 0)::bigint AS age_60,
       coalesce(sum(rs.age_80), 0)::bigint AS age_80,
       coalesce(sum(rs.age_unknown), 0)::bigint AS age_unknown,
       coalesce(sum(rs.special_people), 0)::bigint AS special_people,
       NULL::bigint AS members
FROM bld
LEFT JOIN hh ON hh.bid = bld.id
LEFT JOIN rs ON rs.bid = bld.id
GROUP BY GROUPING SETS ((), (bld.ck))
UNION ALL
SELECT 'group', GROUPING(bld.ck) = 1, bld.ck, m.group_code, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       count(*)::bigint
FROM memberships m JOIN bld ON bld.id = m.bid
GROUP BY GROUPING SETS ((m.group_code), (bld.ck, m.group_code))
