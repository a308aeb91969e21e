"""Analysis jobs: a grid proposal or repair asked for with ``"background": true`` runs in a thread of
the server and is looked up later (``GET /api/jobs/{id}``), instead of holding the request open for
the solver's whole time.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE analysis_job (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id   bigint REFERENCES app_user(id) ON DELETE SET NULL,
    owner      text,
    kind       text NOT NULL CHECK (kind IN ('grid_propose', 'grid_repair')),
    params     jsonb NOT NULL DEFAULT '{}'::jsonb,
    status     text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    stage      text,
    result     jsonb,
    error      text,
    created    timestamptz NOT NULL DEFAULT now(),
    started    timestamptz,
    finished   timestamptz
);
CREATE INDEX analysis_job_owner_idx ON analysis_job (owner_id, created DESC);
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS analysis_job")
