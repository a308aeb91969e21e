"""Answers of the dashboard's own API (``/api/dashboard/…``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gisgov.api.schemas._base import Answer, example


class StreetEventStats(Answer):
    """街道事件统计 event statistics of one street (the same figures and shape as /api/events/stats)."""

    model_config = example(
        {
            "street": "340102001",
            "community": None,
            "grid": None,
            "total": 40,
            "open": 6,
            "overdue": 1,
            "closed": 34,
            "by_category": [{"category": "环境卫生", "label": "环境卫生 sanitation", "n": 10}],
            "by_status": [{"status": "closed", "label": "已办结", "n": 34}],
            "trend": [{"month": "2024-05", "reported": 8, "closed": 7}],
            "grids": [],
        }
    )

    street: str = Field(description="街道编码 the street's code")
    community: str | None = Field(description="社区编码 always null here (the whole street)")
    grid: str | None = Field(description="网格编码 always null here (the whole street)")
    trend: list[dict[str, Any]] = Field(description="月度趋势 events reported and closed per month")
    grids: list[dict[str, Any]] = Field(description="分网格 the headline figures per grid")
