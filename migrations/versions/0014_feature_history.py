"""Versioned updates of imported records (issue 11, item 7): ``feature_history``.

``gisgov load --update`` (and ``POST /api/import`` with ``update``) replaces the geometry and the
attributes of records whose code is already in the database. Before a record changes, its previous
state is appended here: the level (street, community, grid, compound, building, facility), its code
and row id, the version (1 = the state before the first update), the previous attributes (jsonb, the
row without its geometry) and geometry, who changed it, when, and from which file. Rows are never
changed: a trigger refuses UPDATE and DELETE (like ``event_history``), and the app role holds only
SELECT and INSERT. No foreign keys to the hierarchy: reloading a city (TRUNCATE … CASCADE) keeps the
history.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from alembic import context, op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _srid() -> int:
    # the storage SRID recorded by 0001 (4490 unless the database was created with another)
    return int(op.get_bind().exec_driver_sql("SELECT value FROM gisgov_meta WHERE key = 'srid'").scalar())


def _app_role() -> str:
    name = str(context.config.attributes.get("app_role") or "gisgov_app")
    if not name.replace("_", "").isalnum():
        raise ValueError(f"app role name {name!r} is not a plain identifier")
    return name


def upgrade() -> None:
    srid = _srid()
    app = _app_role()
    op.execute(
        f"""
CREATE TABLE feature_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    level       text NOT NULL CHECK (level IN ('street', 'community', 'grid', 'compound', 'building', 'facility')),
    code        text NOT NULL,
    record_id   bigint NOT NULL,
    version     integer NOT NULL CHECK (version >= 1),
    op          text NOT NULL DEFAULT 'update' CHECK (op IN ('update')),
    attrs       jsonb NOT NULL,
    geom        geometry(Geometry, {srid}),
    changed_by  text,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    source      text,
    UNIQUE (level, code, record_id, version)
);
CREATE INDEX feature_history_code_idx ON feature_history (level, code, changed_at);
CREATE INDEX feature_history_geom_idx ON feature_history USING gist (geom);
COMMENT ON TABLE feature_history IS
    '更新前的记录 the state of an imported record before each --update (append-only)';

CREATE FUNCTION gisgov_feature_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = format('feature_history is append-only: %s refused (rule: feature_history_append_only)', TG_OP);
END $$;
CREATE TRIGGER feature_history_append_only BEFORE UPDATE OR DELETE ON feature_history
    FOR EACH ROW EXECUTE FUNCTION gisgov_feature_history_append_only();

DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{app}') THEN
        EXECUTE 'REVOKE UPDATE, DELETE, TRUNCATE ON feature_history FROM {app}';
        EXECUTE 'GRANT SELECT, INSERT ON feature_history TO {app}';
    END IF;
END $$;
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP TABLE IF EXISTS feature_history;
DROP FUNCTION IF EXISTS gisgov_feature_history_append_only();
"""
    )
