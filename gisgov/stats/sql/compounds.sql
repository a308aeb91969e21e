-- Compounds (小区) and old compounds (老旧小区, built before 2000) registered in one unit ({scope}
-- over compound cp) and per child ({child_key}); one pass.
SELECT GROUPING({child_key}) = 1 AS is_total,
       {child_key} AS ck,
       count(*)::bigint AS compounds,
       count(*) FILTER (WHERE cp.is_old)::bigint AS old_compounds
FROM compound cp
WHERE {scope}
GROUP BY GROUPING SETS ((), ({child_key}))
