"""Saving a DRAFT plan no longer moves the data version (issue 14, load).

``tile_version.n`` (0017–0019) moves at the commit of every write to the tables the leaders' cached answers and
tiles read, so each worker recomputes its kept answers and tiles after it. A draft plan is seen only by whoever
edits plans, by its own id (``?plan=``, ``/api/grids/plans/…``): yet a planner saving a draft moved the number,
and every cached tile and statistics page of the whole city was computed again (under the load test, every
~25 s). Here writes that touch only draft plans leave it alone:

- ``grid_plan``: row triggers that move it unless the row is a draft before and after (inserting or deleting a
  draft, changing its parent version) — activating, archiving or deleting an active plan still moves it;
- ``grid`` and ``grid_assignment``: statement triggers with transition tables that move it unless every row
  written belongs to a draft plan (a grid outside any plan, or of an active plan, still moves it; rows whose
  plan is gone, as when a plan is deleted, move it too).

Plan lists are therefore not kept by the answer cache (they show drafts).

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

ROWS = ("grid", "grid_assignment")


def upgrade() -> None:
    op.execute(
        """
DROP TRIGGER IF EXISTS zz_tile_version ON grid_plan;
CREATE TRIGGER zz_tile_version_ins AFTER INSERT ON grid_plan FOR EACH ROW
    WHEN (NEW.status <> 'draft') EXECUTE FUNCTION gisgov_tile_version_touch();
CREATE TRIGGER zz_tile_version_upd AFTER UPDATE ON grid_plan FOR EACH ROW
    WHEN (OLD.status <> 'draft' OR NEW.status <> 'draft') EXECUTE FUNCTION gisgov_tile_version_touch();
CREATE TRIGGER zz_tile_version_del AFTER DELETE ON grid_plan FOR EACH ROW
    WHEN (OLD.status <> 'draft') EXECUTE FUNCTION gisgov_tile_version_touch();
CREATE TRIGGER zz_tile_version AFTER TRUNCATE ON grid_plan
    FOR EACH STATEMENT EXECUTE FUNCTION gisgov_tile_version_touch();

-- grid / grid_assignment: move the number unless every row written belongs to a draft plan
CREATE FUNCTION gisgov_tile_version_touch_unless_drafts() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
DECLARE
    moved boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT EXISTS (SELECT 1 FROM new_rows r LEFT JOIN public.grid_plan p ON p.id = r.plan_id
                       WHERE p.status IS DISTINCT FROM 'draft') INTO moved;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT EXISTS (SELECT 1 FROM old_rows r LEFT JOIN public.grid_plan p ON p.id = r.plan_id
                       WHERE p.status IS DISTINCT FROM 'draft') INTO moved;
    ELSE
        SELECT EXISTS (SELECT 1 FROM new_rows r LEFT JOIN public.grid_plan p ON p.id = r.plan_id
                       WHERE p.status IS DISTINCT FROM 'draft')
            OR EXISTS (SELECT 1 FROM old_rows r LEFT JOIN public.grid_plan p ON p.id = r.plan_id
                       WHERE p.status IS DISTINCT FROM 'draft') INTO moved;
    END IF;
    IF moved THEN
        PERFORM public.gisgov_tile_version_request();
    END IF;
    RETURN NULL;
END $$;

-- the bump request of gisgov_tile_version_touch, callable from other trigger functions
CREATE FUNCTION gisgov_tile_version_request() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
DECLARE
    me text := pg_current_xact_id()::text;
BEGIN
    IF current_setting('gisgov.tile_bump', true) IS DISTINCT FROM me THEN
        INSERT INTO public.tile_version_bump (xid) VALUES (me::xid8) ON CONFLICT DO NOTHING;
        PERFORM set_config('gisgov.tile_bump', me, true);
    END IF;
END $$;
"""
    )
    for t in ROWS:
        op.execute(
            f"""
DROP TRIGGER IF EXISTS zz_tile_version ON {t};
CREATE TRIGGER zz_tile_version_ins AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gisgov_tile_version_touch_unless_drafts();
CREATE TRIGGER zz_tile_version_upd AFTER UPDATE ON {t} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gisgov_tile_version_touch_unless_drafts();
CREATE TRIGGER zz_tile_version_del AFTER DELETE ON {t} REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gisgov_tile_version_touch_unless_drafts();
CREATE TRIGGER zz_tile_version AFTER TRUNCATE ON {t}
    FOR EACH STATEMENT EXECUTE FUNCTION gisgov_tile_version_touch();
"""
        )


def downgrade() -> None:
    for t in (*ROWS, "grid_plan"):
        op.execute(
            f"""
DROP TRIGGER IF EXISTS zz_tile_version_ins ON {t};
DROP TRIGGER IF EXISTS zz_tile_version_upd ON {t};
DROP TRIGGER IF EXISTS zz_tile_version_del ON {t};
DROP TRIGGER IF EXISTS zz_tile_version ON {t};
CREATE TRIGGER zz_tile_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t}
    FOR EACH STATEMENT EXECUTE FUNCTION gisgov_tile_version_touch();
"""
        )
    op.execute(
        "DROP FUNCTION IF EXISTS gisgov_tile_version_touch_unless_drafts();"
        "DROP FUNCTION IF EXISTS gisgov_tile_version_request();"
    )
