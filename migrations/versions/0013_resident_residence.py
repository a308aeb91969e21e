"""居住类型 per person: ``resident.residence`` (常住 / 户籍 / 流动). A household keeps its head's value
(``household.residence``); a person whose own value differs (a tenant 流动 in a 户籍 household) keeps
theirs. NULL means "as the household". Rosters write it for every person.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE resident ADD COLUMN residence text
    CHECK (residence IS NULL OR residence IN ('常住', '户籍', '流动'));
COMMENT ON COLUMN resident.residence IS '居住类型 of this person; NULL = the household''s (household.residence)';
"""
    )


def downgrade() -> None:
    op.execute("ALTER TABLE resident DROP COLUMN residence")
