"""Province roll-up 省级汇总 (issue 14, item 6b): each city keeps its own PostgreSQL; the province loads
the cities' exported aggregates (:mod:`gisgov.rollup.export`, :mod:`gisgov.rollup.load`; the pure rules and
sums in :mod:`gisgov.rollup.figures`)."""
