"""Ingest bookkeeping: import jobs (status, progress and report of every upload).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE import_job (
    id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    file      text NOT NULL,
    level     text NOT NULL,
    options   jsonb NOT NULL DEFAULT '{}'::jsonb,
    status    text NOT NULL DEFAULT 'queued'
              CHECK (status IN ('queued', 'running', 'loaded', 'rejected', 'dry-run', 'failed')),
    stage     text,
    done      bigint NOT NULL DEFAULT 0,
    total     bigint NOT NULL DEFAULT 0,
    report    jsonb,
    error     text,
    created   timestamptz NOT NULL DEFAULT now(),
    finished  timestamptz
);
CREATE INDEX import_job_created_idx ON import_job (created DESC);
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS import_job")
