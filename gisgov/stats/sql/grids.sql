-- Current grids (grid_current(): active plans' grids and grids made outside plans) and their
-- staff (一格三员) by role, of one unit ({scope} over g) and per child ({child_key}); one pass.
-- Counts only: no staff name or phone is read.
SELECT GROUPING({child_key}) = 1 AS is_total,
       {child_key} AS ck,
       count(DISTINCT g.id)::bigint AS grids,
       count(s.id)::bigint AS staff,
       count(s.id) FILTER (WHERE s.role = '网格长')::bigint AS role_1,
       count(s.id) FILTER (WHERE s.role = '专职网格员')::bigint AS role_2,
       count(s.id) FILTER (WHERE s.role = '兼职网格员')::bigint AS role_3,
       count(s.id) FILTER (WHERE s.role = '网格指导员')::bigint AS role_4,
       count(s.id) FILTER (WHERE s.role = '信息员')::bigint AS role_5
FROM grid_current() g
LEFT JOIN grid_staff s ON s.grid_id = g.id
WHERE {scope}
GROUP BY GROUPING SETS ((), ({child_key}))
