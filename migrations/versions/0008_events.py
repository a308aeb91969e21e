"""Events 事件: the grid's closed loop 上报→受理→派遣→处置→反馈→办结 (issue 13, item 1).

- ``event``: one reported problem. A point in the storage SRID; ``category`` from the configurable
  catalog (gisgov/events/categories.yaml, checked by the app, not by a foreign key, so the catalog can
  grow without a migration); description; reporter (``app_user``); status; the time of every step;
  handling department; deadline (report time + the category's SLA hours, fixed at report time);
  ``version`` for optimistic concurrency (a transition names the version it saw; a stale one changes
  nothing and the API answers 409).
- Place: a BEFORE INSERT / UPDATE OF geom trigger fills ``grid_code``,
  ``community_code`` and ``street_code`` from the point (``gisgov_event_place``): the grid of
  ``grid_current()`` (active plans' grids) whose polygon covers the point — on a shared boundary the
  one with the smallest code —, its community and street; a point in no grid gets the community and
  street that cover it (smallest code again); a point in no street is refused. Codes, no foreign
  keys to the hierarchy: reloading the sample city (TRUNCATE … CASCADE of the hierarchy) leaves the
  events and their append-only history alone.
- ``event_history``: append-only (a trigger refuses UPDATE/DELETE/TRUNCATE, like ``audit_log``): who,
  role, from, to, when, note, department.
- Row-level security (ENABLE + FORCE) on both tables, like the personal-data tables of 0005: the
  ``gisgov.scope`` setting is '*' or street/community/grid codes; an event is visible when its street,
  community or grid code is one of them. History rows follow their event.
- The app role may not DELETE events, nor UPDATE/DELETE history rows.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATES = (
    "reported",
    "accepted",
    "dispatched",
    "handled",
    "feedback",
    "closed",
    "rejected",
    "escalated_community",
    "escalated_street",
)


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
    states = ", ".join(f"'{s}'" for s in STATES)
    op.execute(
        f"""
CREATE TABLE event (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    geom             geometry(Point, {srid}) NOT NULL,
    category         text NOT NULL CHECK (category ~ '^[a-z][a-z0-9_]{{0,31}}$'),
    description      text NOT NULL CHECK (length(description) BETWEEN 1 AND 2000),
    reporter_id      bigint REFERENCES app_user(id) ON DELETE SET NULL,
    reporter_role    text,
    status           text NOT NULL DEFAULT 'reported' CHECK (status IN ({states})),
    department       text,
    escalated_to     text CHECK (escalated_to IN ('community', 'street')),
    grid_code        text CHECK (grid_code ~ '^[0-9]{{15}}$'),
    community_code   text CHECK (community_code ~ '^[0-9]{{12}}$'),
    street_code      text NOT NULL CHECK (street_code ~ '^[0-9]{{9}}$'),
    reported_at      timestamptz NOT NULL DEFAULT now(),
    accepted_at      timestamptz,
    dispatched_at    timestamptz,
    handled_at       timestamptz,
    feedback_at      timestamptz,
    closed_at        timestamptz,
    rejected_at      timestamptz,
    escalated_at     timestamptz,
    deadline         timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    version          integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    synthetic        boolean NOT NULL DEFAULT false,
    CONSTRAINT event_geom_srid CHECK (ST_SRID(geom) = {srid}),
    CONSTRAINT event_codes_nested CHECK (
        (community_code IS NULL OR left(community_code, 9) = street_code)
        AND (grid_code IS NULL OR (community_code IS NOT NULL AND left(grid_code, 12) = community_code))),
    CONSTRAINT event_deadline_after_report CHECK (deadline >= reported_at)
);
CREATE INDEX event_geom_idx ON event USING gist (geom);
CREATE INDEX event_status_idx ON event (status, deadline);
CREATE INDEX event_grid_idx ON event (grid_code, status);
CREATE INDEX event_community_idx ON event (community_code, status);
CREATE INDEX event_street_idx ON event (street_code, status);
CREATE INDEX event_reported_idx ON event (reported_at);

CREATE TABLE event_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    bigint NOT NULL REFERENCES event(id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    bigint REFERENCES app_user(id) ON DELETE SET NULL,
    actor       text,
    actor_role  text,
    from_status text CHECK (from_status IN ({states})),
    to_status   text NOT NULL CHECK (to_status IN ({states})),
    note        text CHECK (length(note) <= 2000),
    department  text
);
CREATE INDEX event_history_event_idx ON event_history (event_id, at, id);

CREATE FUNCTION gisgov_event_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = format('event_history is append-only: %s refused (rule: event_history_append_only)', TG_OP);
END $$;
CREATE TRIGGER event_history_append_only BEFORE UPDATE OR DELETE ON event_history
    FOR EACH ROW EXECUTE FUNCTION gisgov_event_history_append_only();
CREATE TRIGGER event_history_no_truncate BEFORE TRUNCATE ON event_history
    FOR EACH STATEMENT EXECUTE FUNCTION gisgov_event_history_append_only();

-- Where a point lies: the current grid covering it (smallest code on a shared boundary), else the
-- community and street covering it (smallest code). No row when no street covers the point.
CREATE FUNCTION gisgov_event_place(pt geometry)
RETURNS TABLE (grid_code text, community_code text, street_code text)
LANGUAGE sql STABLE AS $$
    WITH g AS (
        SELECT x.id, x.code, x.community_code FROM grid_current() x
        WHERE ST_Covers(x.geom, pt) ORDER BY x.code LIMIT 1
    ), c AS (
        SELECT code, street_code FROM community
        WHERE code = (SELECT community_code FROM g)
           OR (NOT EXISTS (SELECT 1 FROM g) AND ST_Covers(geom, pt))
        ORDER BY code LIMIT 1
    ), s AS (
        SELECT code FROM street
        WHERE code = (SELECT street_code FROM c)
           OR (NOT EXISTS (SELECT 1 FROM c) AND ST_Covers(geom, pt))
        ORDER BY code LIMIT 1
    )
    SELECT (SELECT code FROM g), (SELECT code FROM c), s.code FROM s
$$;

CREATE FUNCTION gisgov_event_locate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE place record;
BEGIN
    SELECT * INTO place FROM gisgov_event_place(NEW.geom);
    IF place.street_code IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = 'event point outside every street (rule: event_inside_city)';
    END IF;
    NEW.grid_code := place.grid_code;
    NEW.community_code := place.community_code;
    NEW.street_code := place.street_code;
    RETURN NEW;
END $$;
CREATE TRIGGER event_locate BEFORE INSERT OR UPDATE OF geom ON event
    FOR EACH ROW EXECUTE FUNCTION gisgov_event_locate();

-- Row-level security: an event is in scope when its street, community or grid code is a scope code
-- (the scope test in (SELECT …) runs once per query, as in 0005).
ALTER TABLE event ENABLE ROW LEVEL SECURITY;
ALTER TABLE event FORCE ROW LEVEL SECURITY;
CREATE POLICY event_scope ON event
    USING ((SELECT gisgov_scope_all())
           OR street_code = ANY ((SELECT gisgov_scope_codes())::text[])
           OR community_code = ANY ((SELECT gisgov_scope_codes())::text[])
           OR grid_code = ANY ((SELECT gisgov_scope_codes())::text[]))
    WITH CHECK ((SELECT gisgov_scope_all())
           OR street_code = ANY ((SELECT gisgov_scope_codes())::text[])
           OR community_code = ANY ((SELECT gisgov_scope_codes())::text[])
           OR grid_code = ANY ((SELECT gisgov_scope_codes())::text[]));

ALTER TABLE event_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_history FORCE ROW LEVEL SECURITY;
CREATE POLICY event_history_scope ON event_history
    USING ((SELECT gisgov_scope_all()) OR event_id IN (SELECT e.id FROM event e))
    WITH CHECK ((SELECT gisgov_scope_all()) OR event_id IN (SELECT e.id FROM event e));

-- the app role: events are never deleted, history rows never changed (grants come from 0005's defaults)
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{app}') THEN
        EXECUTE 'REVOKE DELETE, TRUNCATE ON event FROM {app}';
        EXECUTE 'REVOKE UPDATE, DELETE, TRUNCATE ON event_history FROM {app}';
        EXECUTE 'GRANT SELECT, INSERT, UPDATE ON event TO {app}';
        EXECUTE 'GRANT SELECT, INSERT ON event_history TO {app}';
        EXECUTE 'GRANT EXECUTE ON FUNCTION gisgov_event_place(geometry) TO {app}';
    END IF;
END $$;
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP TABLE IF EXISTS event_history;
DROP TABLE IF EXISTS event;
DROP FUNCTION IF EXISTS gisgov_event_locate();
DROP FUNCTION IF EXISTS gisgov_event_place(geometry);
DROP FUNCTION IF EXISTS gisgov_event_history_append_only();
"""
    )
