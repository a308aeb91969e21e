"""The base of the answer models of the grids, editor, events, photos, staff/compounds, special-services and
admin routers.

An :class:`Answer` documents the members every client may rely on and keeps any other member the service
adds (``extra="allow"``): declaring it as a ``response_model`` describes the answer without dropping what
a page reads. Routes declare ``response_model_exclude_unset=True`` (:data:`KEEP_SHAPE`) so a member the
service leaves out stays out (it is not sent as ``null``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: keyword arguments for a route whose answer is an :class:`Answer`: members left out stay left out
KEEP_SHAPE: dict[str, Any] = {"response_model_exclude_unset": True}


class Answer(BaseModel):
    """回应 an answer object; members beyond the documented ones may be present."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


def examples(*items: dict[str, Any]) -> ConfigDict:
    """Model config of an :class:`Answer` subclass with ``examples`` in its JSON schema."""
    return ConfigDict(extra="allow", populate_by_name=True, json_schema_extra={"examples": list(items)})


class JobAccepted(Answer):
    """后台任务已开始 a background job was started: poll ``status_url``."""

    model_config = examples({"job": "5f0c2b", "status": "queued", "status_url": "/api/jobs/5f0c2b"})

    job: str = Field(description="任务编号 job id")
    status: str = Field(description="任务状态 job state (queued)")
    status_url: str = Field(description="查询地址 where to read the job's state and result (GET)")


class Deleted(Answer):
    """已删除 what was removed."""

    model_config = examples({"id": 7, "removed": True})
