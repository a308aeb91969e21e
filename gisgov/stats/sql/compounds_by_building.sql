-- Compounds that have buildings in each child (grids of a community: a compound split between
-- grids counts in each). Only the per-child rows are used.
WITH bld AS MATERIALIZED (
    SELECT b.compound_id, {child_key} AS ck
    FROM building b
    LEFT JOIN grid g ON g.id = b.grid_id
    LEFT JOIN compound cp ON cp.id = b.compound_id
    WHERE {scope}
)
SELECT false AS is_total, bld.ck,
       count(DISTINCT cp.id)::bigint AS compounds,
       count(DISTINCT cp.id) FILTER (WHERE cp.is_old)::bigint AS old_compounds
FROM bld JOIN compound cp ON cp.id = bld.compound_id
GROUP BY bld.ck
