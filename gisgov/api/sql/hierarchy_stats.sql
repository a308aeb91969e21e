-- Households, residents and buildings per (community, grid) in one pass over the roster.
-- A building's households: its household rows, or building.households when it has no roster.
-- Only buildings of the caller's area (:s_area, a code prefix; '' = everywhere); household and
-- resident rows are further limited by row-level security (gisgov.scope).
WITH hc AS (
    SELECT building_code, count(*) AS n FROM household GROUP BY building_code
),
rc AS (
    SELECT h.building_code, count(*) AS n
    FROM resident r JOIN household h ON h.id = r.household_id
    GROUP BY h.building_code
)
SELECT b.community_code,
       b.grid_id,
       sum(CASE WHEN hc.n > 0 THEN hc.n ELSE coalesce(b.households, 0) END)::bigint AS households,
       sum(coalesce(rc.n, 0))::bigint AS residents,
       count(*)::bigint AS buildings
FROM building b
LEFT JOIN hc ON hc.building_code = b.code
LEFT JOIN rc ON rc.building_code = b.code
WHERE starts_with(b.community_code, :s_area)
GROUP BY b.community_code, b.grid_id
