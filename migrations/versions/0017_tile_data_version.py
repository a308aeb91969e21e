"""Tile data version (issue 14): one number that changes whenever data drawn in a vector tile changes.

``tile_version`` holds one row, ``n``. A write to any table a tile reads (buildings, their households and
residents, compounds, grids and plans with their assignments, facilities, stored distances and coverage
budgets, streets and communities, which define the callers' areas) makes its transaction add 1 to ``n``
when it COMMITS, so the new number becomes visible together with the new data, never before it:

- a statement-level trigger on each of those tables (insert, update, delete, truncate) inserts one row
  into ``tile_version_bump`` per transaction (a transaction-local flag skips the later statements);
- that row's DEFERRED constraint trigger runs at commit: it adds 1 to ``n`` and deletes the row.

The row lock on ``tile_version`` is therefore held only while a transaction commits, not from its first
write (a long import does not make other writers wait, and two writers cannot deadlock on it in the
middle of their work). The tile cache (:mod:`gisgov.tiles.cache`) reads ``n`` once per request and keys
rendered tiles with it: a tile cached before a commit is never served after it.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

from alembic import context, op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

#: the tables whose writes change some tile (the tile SQL, the callers' areas, the coverage layer)
TRACKED = (
    "building",
    "household",
    "resident",
    "compound",
    "grid",
    "grid_plan",
    "grid_assignment",
    "facility",
    "facility_category",
    "building_access_packed",
    "coverage_access_slot",
    "coverage_budget",
    "community",
    "street",
)


def _app_role() -> str:
    name = str(context.config.attributes.get("app_role") or "gisgov_app")
    if not name.replace("_", "").isalnum():
        raise ValueError(f"app role name {name!r} is not a plain identifier")
    return name


def upgrade() -> None:
    app = _app_role()
    triggers = "\n".join(
        f"CREATE TRIGGER zz_tile_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t}\n"
        "    FOR EACH STATEMENT EXECUTE FUNCTION gisgov_tile_version_touch();"
        for t in TRACKED
    )
    op.execute(
        f"""
CREATE TABLE tile_version (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    n bigint NOT NULL DEFAULT 1
);
INSERT INTO tile_version DEFAULT VALUES;
CREATE TABLE tile_version_bump (xid xid8 PRIMARY KEY);

-- at commit: the transaction's one bump
CREATE FUNCTION gisgov_tile_version_commit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
BEGIN
    UPDATE public.tile_version SET n = n + 1;
    DELETE FROM public.tile_version_bump WHERE xid = NEW.xid;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER tile_version_commit AFTER INSERT ON tile_version_bump
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gisgov_tile_version_commit();

-- after each writing statement: ask for the bump once per transaction
CREATE FUNCTION gisgov_tile_version_touch() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
DECLARE
    me text := pg_current_xact_id()::text;
BEGIN
    IF current_setting('gisgov.tile_bump', true) IS DISTINCT FROM me THEN
        INSERT INTO public.tile_version_bump (xid) VALUES (me::xid8) ON CONFLICT DO NOTHING;
        PERFORM set_config('gisgov.tile_bump', me, true);
    END IF;
    RETURN NULL;
END $$;
{triggers}

DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{app}') THEN
        -- the app reads the number; only the triggers (SECURITY DEFINER) write it
        EXECUTE 'REVOKE ALL ON tile_version, tile_version_bump FROM {app}';
        EXECUTE 'GRANT SELECT ON tile_version TO {app}';
    END IF;
END $$;
"""
    )


def downgrade() -> None:
    drops = "\n".join(f"DROP TRIGGER IF EXISTS zz_tile_version ON {t};" for t in TRACKED)
    op.execute(
        f"""
{drops}
DROP FUNCTION IF EXISTS gisgov_tile_version_touch();
DROP TABLE IF EXISTS tile_version_bump;
DROP FUNCTION IF EXISTS gisgov_tile_version_commit();
DROP TABLE IF EXISTS tile_version;
"""
    )
