"""Answers of the background analyses (``/api/jobs/{id}``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gisgov.api.schemas._base import Answer, example


class AnalysisJob(Answer):
    """后台任务 a background analysis (grid propose / repair): status, and its result when done."""

    model_config = example(
        {
            "id": "6f1c7a52-9f55-4c43-9f0b-1d3f4c2b7a10",
            "owner": "planner1",
            "kind": "grid_propose",
            "params": {"community": "340102001001"},
            "status": "done",
            "stage": None,
            "result": {"version": 3},
            "error": None,
            "created": "2024-05-01T08:00:00+08:00",
            "started": "2024-05-01T08:00:01+08:00",
            "finished": "2024-05-01T08:00:20+08:00",
            "links": {
                "plan": "/api/grids/plans/340102001001/3",
                "map": "/api/grids/map/340102001001?plan=3",
            },
        }
    )

    id: str = Field(description="任务编号 job id (UUID)")
    owner: str | None = Field(description="发起人 the account that started it")
    kind: str = Field(description="类型 grid_propose | grid_repair")
    params: dict[str, Any] = Field(description="参数 what was asked (community, options)")
    status: str = Field(description="状态 queued | running | done | failed")
    stage: str | None = Field(description="阶段 the step it is at")
    result: Any = Field(description="结果 the analysis result when done (a plan version for proposals)")
    error: str | None = Field(description="错误 why it failed")
    created: str | None = Field(description="创建时间 when it was queued (ISO 8601)")
    started: str | None = Field(description="开始时间 when it started")
    finished: str | None = Field(description="完成时间 when it ended")
    links: dict[str, str] | None = Field(None, description="链接 the plan and its map (done, with a version)")
