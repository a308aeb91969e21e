"""Grid plans (gridding issue): versions of a community's grids, per-plan building assignments.

- ``grid_plan``: community, version, status draft/active/archived (at most one active per
  community), author, created, activated, note, method and rules used, stats.
- ``grid`` is owned by a plan (``plan_id``); codes are unique per plan (deferrable, so activation
  can renumber in one statement) instead of globally; ``exception`` marks a planner's exception
  ('multipart' = a grid allowed in several pieces).
- ``grid_assignment(plan_id, building_id, grid_id)``: each plan's building→grid assignment.
  ``building.grid_id`` keeps pointing at the ACTIVE plan's grid, so the rest of the platform sees the
  active plan; the function ``grid_current()`` lists the grids of active plans (and grids made outside plans).
- Existing grids are adopted as version 1 (active) of their community's plan.
Downgrade keeps only active (and plan-less) grids and restores the global UNIQUE(code).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE grid_plan (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    community_code  text NOT NULL REFERENCES community(code) ON UPDATE CASCADE ON DELETE CASCADE,
    version         integer NOT NULL CHECK (version >= 1),
    status          text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'archived')),
    author          text,
    created         timestamptz NOT NULL DEFAULT now(),
    activated       timestamptz,
    note            text,
    method          text,
    rules           jsonb,
    stats           jsonb,
    UNIQUE (community_code, version),
    UNIQUE (id, community_code)
);
CREATE UNIQUE INDEX grid_plan_one_active ON grid_plan (community_code) WHERE status = 'active';

ALTER TABLE grid ADD COLUMN plan_id bigint;
ALTER TABLE grid ADD COLUMN exception text CHECK (exception IN ('multipart'));
ALTER TABLE grid ADD CONSTRAINT grid_plan_fk FOREIGN KEY (plan_id, community_code)
    REFERENCES grid_plan (id, community_code) ON DELETE CASCADE;
ALTER TABLE grid ADD CONSTRAINT grid_id_plan_key UNIQUE (id, plan_id);

-- adopt existing grids as version 1 (active) of each community
INSERT INTO grid_plan (community_code, version, status, author, note, activated)
SELECT DISTINCT community_code, 1, 'active', 'migration 0002', '既有网格 grids present before plans existed', now()
FROM grid;
UPDATE grid g SET plan_id = p.id FROM grid_plan p WHERE p.community_code = g.community_code;

ALTER TABLE grid DROP CONSTRAINT grid_code_key;
ALTER TABLE grid ADD CONSTRAINT grid_plan_code_key UNIQUE NULLS NOT DISTINCT (plan_id, code)
    DEFERRABLE INITIALLY IMMEDIATE;
CREATE INDEX grid_plan_idx ON grid (plan_id);
CREATE INDEX grid_code_idx ON grid (code);

CREATE TABLE grid_assignment (
    plan_id      bigint NOT NULL REFERENCES grid_plan (id) ON DELETE CASCADE,
    building_id  bigint NOT NULL REFERENCES building (id) ON DELETE CASCADE,
    grid_id      bigint NOT NULL,
    PRIMARY KEY (plan_id, building_id),
    CONSTRAINT grid_assignment_grid_fk FOREIGN KEY (grid_id, plan_id) REFERENCES grid (id, plan_id) ON DELETE CASCADE
);
CREATE INDEX grid_assignment_grid_idx ON grid_assignment (grid_id);
CREATE INDEX grid_assignment_building_idx ON grid_assignment (building_id);

INSERT INTO grid_assignment (plan_id, building_id, grid_id)
SELECT g.plan_id, b.id, g.id FROM building b JOIN grid g ON g.id = b.grid_id WHERE g.plan_id IS NOT NULL;

-- the grids the platform currently uses: active plans' grids and grids made outside plans
CREATE FUNCTION grid_current() RETURNS SETOF grid LANGUAGE sql STABLE AS $$
    SELECT g.* FROM grid g LEFT JOIN grid_plan p ON p.id = g.plan_id
    WHERE g.plan_id IS NULL OR p.status = 'active'
$$;
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP FUNCTION IF EXISTS grid_current();
DROP TABLE IF EXISTS grid_assignment;
DELETE FROM grid g USING grid_plan p WHERE p.id = g.plan_id AND p.status <> 'active';
DROP INDEX IF EXISTS grid_code_idx;
DROP INDEX IF EXISTS grid_plan_idx;
ALTER TABLE grid DROP CONSTRAINT IF EXISTS grid_plan_code_key;
ALTER TABLE grid DROP CONSTRAINT IF EXISTS grid_id_plan_key;
ALTER TABLE grid DROP CONSTRAINT IF EXISTS grid_plan_fk;
ALTER TABLE grid DROP COLUMN IF EXISTS exception;
ALTER TABLE grid DROP COLUMN IF EXISTS plan_id;
ALTER TABLE grid ADD CONSTRAINT grid_code_key UNIQUE (code);
DROP TABLE IF EXISTS grid_plan;
"""
    )
