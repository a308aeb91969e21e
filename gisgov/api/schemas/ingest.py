"""Answers of import and export (``/api/import…``, ``/api/export…``). Files keep their own media types."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gisgov.api.schemas._base import Answer, example


class JobAccepted(Answer):
    """已排队 a background import or export: poll ``status_url``."""

    model_config = example({"job": "42", "status": "queued", "status_url": "https://gisgov.example/api/import/42"})

    job: str = Field(description="任务编号 job id")
    status: str = Field(description="状态 always queued")
    status_url: str = Field(description="进度地址 where to poll the job")
    total: int | None = Field(None, description="记录数 records to export (exports only)")


class ImportReport(Answer):
    """导入报告 the report of an import (loaded, dry run, or — with 422 — rejected)."""

    model_config = example(
        {
            "job": "42",
            "status_url": "https://gisgov.example/api/import/42",
            "file": "buildings.geojson",
            "level": "building",
            "status": "loaded",
            "dry_run": False,
            "counts": {"read": 120, "written": 120},
            "stats": {},
            "n_rejected": 0,
            "n_repaired": 0,
            "issues": [],
            "issues_truncated": 0,
        }
    )

    job: str = Field(description="任务编号 the import job")
    status_url: str = Field(description="进度地址 the job's status URL")
    file: str = Field(description="文件 the file name")
    level: str = Field(description="层级 what was imported")
    status: str = Field(description="状态 loaded | dry_run | rejected")
    dry_run: bool = Field(description="试运行 checked only, nothing written")
    counts: dict[str, Any] = Field(
        description="计数 records read, written (new), updated and unchanged (with update), households estimated …"
    )
    stats: dict[str, Any] = Field(description="统计 per-level figures of the load")
    n_rejected: int = Field(description="拒绝条数 records rejected")
    n_repaired: int = Field(description="修复条数 records repaired")
    issues: list[dict[str, Any]] = Field(description="问题 record, rule, message and action of each issue")
    issues_truncated: int = Field(description="未列出问题数 issues left out of the list")


class ImportJob(Answer):
    """导入任务 status, progress and report of an import."""

    model_config = example(
        {
            "id": "42",
            "file": "buildings.geojson",
            "level": "building",
            "options": {"dry_run": False},
            "status": "done",
            "stage": "write",
            "done": 120,
            "total": 120,
            "report": None,
            "error": None,
            "created": "2024-05-01T08:00:00+08:00",
            "finished": "2024-05-01T08:00:05+08:00",
            "owner": "staff1",
        }
    )

    id: str = Field(description="任务编号 job id")
    file: str | None = Field(description="文件 the file name")
    level: str | None = Field(description="层级 what is imported")
    options: Any = Field(description="选项 the import options")
    status: str = Field(description="状态 queued | running | done | failed")
    stage: str | None = Field(description="阶段 the step it is at")
    done: int | None = Field(description="已处理 records done")
    total: int | None = Field(description="总数 records in all")
    report: Any = Field(description="报告 the import report when finished")
    error: str | None = Field(description="错误 why it failed")
    retryable: bool | None = Field(
        None,
        description="可重试 a background import whose process stopped keeps its upload: POST /api/import/{job}/retry",
    )
    created: str | None = Field(description="创建时间 when it was queued (ISO 8601)")
    finished: str | None = Field(description="完成时间 when it ended")
    owner: str | None = Field(description="发起人 the account that started it")


class ExportJob(Answer):
    """导出任务 status and download link of an export."""

    model_config = example(
        {
            "id": "7",
            "owner": "staff1",
            "level": "resident",
            "format": "xlsx",
            "status": "done",
            "done": 500,
            "total": 500,
            "rows": 500,
            "error": None,
            "created": "2024-05-01T08:00:00+08:00",
            "finished": "2024-05-01T08:00:09+08:00",
            "expires": "2024-05-02T08:00:09+08:00",
            "community": None,
            "file_url": "https://gisgov.example/api/export/jobs/7/file",
            "expired": False,
        }
    )

    id: str = Field(description="任务编号 job id")
    owner: str | None = Field(description="发起人 the account that started it")
    level: str = Field(description="层级 what is exported")
    format: str = Field(description="格式 gpkg | geojson | shp | csv | xlsx")
    status: str = Field(description="状态 queued | running | done | failed")
    done: int | None = Field(description="已导出 records written so far")
    total: int | None = Field(description="总数 records in all")
    rows: int | None = Field(description="行数 records in the file (done)")
    error: str | None = Field(description="错误 why it failed")
    created: Any = Field(description="创建时间 when it was queued")
    finished: Any = Field(description="完成时间 when it ended")
    expires: Any = Field(description="过期时间 when the file is deleted")
    community: str | None = Field(description="社区 the community asked for, if any")
    file_url: str | None = Field(description="下载地址 download URL (done and not expired)")
    expired: bool | None = Field(None, description="已过期 the file was deleted (done jobs only)")
