"""Events 事件: the grid's closed loop 上报→受理→派遣→处置→反馈→办结.

- :mod:`gisgov.events.catalog`: categories (SLA hours) and departments, from a YAML file.
- :mod:`gisgov.events.machine`: the state machine (pure): which role may move an event from which
  state to which, and the errors for refusals.
- :mod:`gisgov.events.store`: SQL I/O (report, list, detail with history, transition with the
  optimistic version check).
- :mod:`gisgov.events.stats`: per-grid / per-community statistics.
"""
