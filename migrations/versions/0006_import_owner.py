"""Import jobs remember who started them: only the owner (or an admin) may read a job's status.

``import_job.owner_id`` references the account (kept as NULL when the account is deleted) and
``import_job.owner`` keeps the user name for the record. The app role's grants on ``import_job``
(migration 0005: all tables) are unchanged by adding columns.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE import_job ADD COLUMN owner_id bigint REFERENCES app_user(id) ON DELETE SET NULL;
ALTER TABLE import_job ADD COLUMN owner text;
CREATE INDEX import_job_owner_idx ON import_job (owner_id, created DESC);
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP INDEX IF EXISTS import_job_owner_idx;
ALTER TABLE import_job DROP COLUMN IF EXISTS owner;
ALTER TABLE import_job DROP COLUMN IF EXISTS owner_id;
"""
    )
