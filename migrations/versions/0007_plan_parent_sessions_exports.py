"""Conflicting edits and background exports.

* ``grid_plan.parent_version``: the version a draft was made from (the active version when it was
  proposed, repaired or its edit session opened). Activating a draft whose parent is no longer the
  active version is refused (HTTP 409) unless the caller rebases on purpose.
* ``grid_edit_session``: a planner's edit session lives in PostgreSQL (survives restarts, works with
  several workers, never silently evicted). ``assignments`` maps building code -> grid code;
  ``revision`` counts the moves (optimistic concurrency for two tabs of the same session).
* ``export_job``: heavy exports (the resident roster) run in the background; the finished file is
  kept in GISGOV_HOME until ``expires``.

The app role gets its grants on new tables from the default privileges of migration 0005.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE grid_plan ADD COLUMN parent_version integer;
COMMENT ON COLUMN grid_plan.parent_version IS 'version this draft was made from (active version at the time)';

CREATE TABLE grid_edit_session (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id        bigint NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    community_code  text NOT NULL REFERENCES community(code) ON UPDATE CASCADE ON DELETE CASCADE,
    base_version    integer,
    codes           jsonb NOT NULL DEFAULT '[]'::jsonb,
    assignments     jsonb NOT NULL DEFAULT '{}'::jsonb,
    revision        integer NOT NULL DEFAULT 0,
    created         timestamptz NOT NULL DEFAULT now(),
    touched         timestamptz NOT NULL DEFAULT now(),
    closed          timestamptz
);
CREATE INDEX grid_edit_session_owner_idx ON grid_edit_session (owner_id, touched DESC);

CREATE TABLE export_job (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id   bigint REFERENCES app_user(id) ON DELETE SET NULL,
    owner      text,
    level      text NOT NULL,
    format     text NOT NULL,
    options    jsonb NOT NULL DEFAULT '{}'::jsonb,
    status     text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    done       bigint NOT NULL DEFAULT 0,
    total      bigint NOT NULL DEFAULT 0,
    rows       bigint,
    file       text,
    error      text,
    created    timestamptz NOT NULL DEFAULT now(),
    finished   timestamptz,
    expires    timestamptz
);
CREATE INDEX export_job_owner_idx ON export_job (owner_id, created DESC);
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP TABLE IF EXISTS export_job;
DROP TABLE IF EXISTS grid_edit_session;
ALTER TABLE grid_plan DROP COLUMN IF EXISTS parent_version;
"""
    )
