-- Grids a compound's buildings lie in (compounds have no staff of their own), unit and children.
WITH bld AS MATERIALIZED (
    SELECT b.grid_id, {child_key} AS ck
    FROM building b
    LEFT JOIN grid g ON g.id = b.grid_id
    LEFT JOIN compound cp ON cp.id = b.compound_id
    WHERE {scope}
)
SELECT GROUPING(bld.ck) = 1 AS is_total, bld.ck, count(DISTINCT bld.grid_id)::bigint AS grids
FROM bld
GROUP BY GROUPING SETS ((), (bld.ck))
