"""Drill-down statistics for leaders' views (领导驾驶舱): aggregates of one unit of the hierarchy
(whole city, street, community, grid, compound) and of its direct children, in one pass per topic.

- :mod:`gisgov.stats.units`   pure: levels, code checks, which children a unit has, SQL fragments
- :mod:`gisgov.stats.queries` the SQL (files in ``gisgov/stats/sql``) run on a caller's connection
- :mod:`gisgov.stats.shape`   pure: aggregate rows → the JSON document (shares, labels)

Only aggregate counts leave this package: never names, ID numbers or phones of residents or staff.
"""
