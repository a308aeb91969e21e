"""Staff 一格三员 and compound rules (issue 13, items 2 and 4).

- ``compound.has_service_point``: the compound has a 党群服务点 (service point); the source reports
  ask every compound of 200+ households for a party organisation AND a service point.
- ``compound.version`` (optimistic concurrency: an edit names the version it saw; a stale one changes
  nothing and the API answers 409), ``compound.updated_at`` / ``updated_by`` (who changed the
  governance attributes last; every change is also in the audit log).
- ``grid_staff.updated_at`` / ``updated_by``: the same for staff rows (row-level security of 0005 is
  unchanged: the new columns are not personal).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE compound ADD COLUMN has_service_point boolean NOT NULL DEFAULT false;
ALTER TABLE compound ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1);
ALTER TABLE compound ADD COLUMN updated_at timestamptz;
ALTER TABLE compound ADD COLUMN updated_by text;
ALTER TABLE grid_staff ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE grid_staff ADD COLUMN updated_by text;
"""
    )


def downgrade() -> None:
    op.execute(
        """
ALTER TABLE grid_staff DROP COLUMN IF EXISTS updated_by;
ALTER TABLE grid_staff DROP COLUMN IF EXISTS updated_at;
ALTER TABLE compound DROP COLUMN IF EXISTS updated_by;
ALTER TABLE compound DROP COLUMN IF EXISTS updated_at;
ALTER TABLE compound DROP COLUMN IF EXISTS version;
ALTER TABLE compound DROP COLUMN IF EXISTS has_service_point;
"""
    )
