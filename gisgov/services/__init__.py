"""Special-group services 特殊人群服务: who lives beyond the circle of the service they need most, and
走访 visits with a per-group frequency rule (issue 13, item 3). Pure rules in :mod:`.rules`, SQL and the
coverage engine in :mod:`.store`."""
