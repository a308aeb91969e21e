-- The finest cells of the caller's area ({area} over building b) for small-cell suppression: one row
-- per (community, current grid, compound) of the buildings (kind 'cell': residents, special_people)
-- and one per (cell, special group) (kind 'group': memberships). Every figure the statistics show is a
-- sum of these cells, so the suppression can follow every total the API exposes.
WITH bld AS MATERIALIZED (
    SELECT b.id, b.code, b.community_code, g.code AS grid_code, cp.code AS compound_code
    FROM building b
    LEFT JOIN grid g ON g.id = b.grid_id
    LEFT JOIN compound cp ON cp.id = b.compound_id
    WHERE {area}
),
res AS MATERIALIZED (
    SELECT r.id, bld.community_code, bld.grid_code, bld.compound_code
    FROM bld
    JOIN household h ON h.building_code = bld.code
    JOIN resident r ON r.household_id = h.id
),
special AS (
    SELECT DISTINCT resident_id FROM resident_group
)
SELECT 'cell' AS kind, bld.community_code, bld.grid_code, bld.compound_code, NULL::text AS group_code,
       coalesce(x.residents, 0)::bigint AS residents, coalesce(x.special_people, 0)::bigint AS n
FROM (SELECT DISTINCT community_code, grid_code, compound_code FROM bld) bld
LEFT JOIN (
    SELECT res.community_code, res.grid_code, res.compound_code, count(*) AS residents,
           count(sp.resident_id) AS special_people
    FROM res LEFT JOIN special sp ON sp.resident_id = res.id
    GROUP BY 1, 2, 3
) x ON x.community_code = bld.community_code AND x.grid_code IS NOT DISTINCT FROM bld.grid_code
   AND x.compound_code IS NOT DISTINCT FROM bld.compound_code
UNION ALL
SELECT 'group', res.community_code, res.grid_code, res.compound_code, rg.group_code, NULL, count(*)::bigint
FROM res JOIN resident_group rg ON rg.resident_id = res.id
GROUP BY res.community_code, res.grid_code, res.compound_code, rg.group_code
