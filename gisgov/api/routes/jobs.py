"""``GET /api/jobs/{job_id}``: a background analysis (grid propose / repair started with
``"background": true``): status, and its result when done. The job's owner or an admin; 404 for
everybody else (a job id is not a secret to probe)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from sqlalchemy import Connection

from gisgov.api.deps import DB, current_principal
from gisgov.api.schemas.jobs import AnalysisJob
from gisgov.errors import NotFound
from gisgov.jobs import analysis
from gisgov.security.roles import Principal

router = APIRouter(tags=["grids 网格划分"])


@router.get(
    "/api/jobs/{job_id}",
    summary="后台任务 A background analysis: status and result",
    response_model=AnalysisJob,
    response_model_exclude_unset=True,
)
def get_job(
    job_id: str = Path(..., max_length=64), conn: Connection = DB, p: Principal = Depends(current_principal)
) -> dict:
    job = analysis.get(conn, job_id, p)
    if job is None:
        raise NotFound(f"未找到任务 job not found: {job_id}")
    if job["status"] == "done" and isinstance(job.get("result"), dict) and job["result"].get("version") is not None:
        r = job["result"]
        c = job["params"].get("community")
        job["links"] = {
            "plan": f"/api/grids/plans/{c}/{r['version']}",
            "map": f"/api/grids/map/{c}?plan={r['version']}",
        }
    return job
