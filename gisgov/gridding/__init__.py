"""Grid planning (网格划分): community context, units and rules, feasibility explanations, the
heuristic and exact (CP-SAT) partitions, proposals, repair, validation and plan storage.

Pure computations on numpy/shapely in most modules; database I/O in :mod:`gisgov.gridding.io`,
:mod:`gisgov.gridding.plans` and :mod:`gisgov.gridding.sessions`. Submodules are imported where
used (nothing is imported with the package), so ``import gisgov.gridding.rules`` stays light.
"""
