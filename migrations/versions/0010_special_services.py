"""Special-group services: which resident a 走访 visit event was for (issue 13, item 3).

- ``special_visit``: one row per (visit event, resident visited). The event is an ordinary ``event``
  of the 特殊人群走访 category (its point: the resident's building); this table names the resident it was
  for and when the visit took place (``visited_at``, the event's report time when recorded through
  gisgov). A resident's last visit is the latest ``visited_at`` of its rows whose event was not
  rejected; the per-group visit frequency rule (gisgov/services/special_services.yaml) decides overdue.
- Row-level security (ENABLE + FORCE) like the personal-data tables of 0005: a row is visible when its
  resident is (``resident_id IN (SELECT id FROM resident)`` under the transaction's ``gisgov.scope``);
  writing needs the event to be visible too.
- The app role may SELECT and INSERT only: visits are records, never changed or deleted by the app.
  Deleting a resident deletes its visit rows (ON DELETE CASCADE); events are never deleted.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _app_role() -> str:
    name = str(context.config.attributes.get("app_role") or "gisgov_app")
    if not name.replace("_", "").isalnum():
        raise ValueError(f"app role name {name!r} is not a plain identifier")
    return name


def upgrade() -> None:
    app = _app_role()
    op.execute(
        f"""
CREATE TABLE special_visit (
    event_id     bigint NOT NULL REFERENCES event(id),
    resident_id  bigint NOT NULL REFERENCES resident(id) ON DELETE CASCADE,
    visited_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, resident_id)
);
CREATE INDEX special_visit_resident_idx ON special_visit (resident_id, visited_at DESC);

ALTER TABLE special_visit ENABLE ROW LEVEL SECURITY;
ALTER TABLE special_visit FORCE ROW LEVEL SECURITY;
CREATE POLICY special_visit_scope ON special_visit
    USING ((SELECT gisgov_scope_all()) OR resident_id IN (SELECT r.id FROM resident r))
    WITH CHECK ((SELECT gisgov_scope_all())
                OR (resident_id IN (SELECT r.id FROM resident r) AND event_id IN (SELECT e.id FROM event e)));

DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{app}') THEN
        EXECUTE 'REVOKE ALL ON special_visit FROM {app}';
        EXECUTE 'GRANT SELECT, INSERT ON special_visit TO {app}';
    END IF;
END $$;
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS special_visit;")
