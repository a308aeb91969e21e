"""Event photos 事件照片: a grid worker attaches photos to an event.

``event_photo`` records each photo (event, who, when, media type, size, pixel size, SHA-256 and the
file's name under GISGOV_HOME/event-photos/). The files are written by the app after the checks in
:mod:`gisgov.events.photos` (type from the bytes, size, pixel count, re-encoded without metadata).
Row-level security follows the event (a photo is visible when its event is); the app role may add
photos but not change or delete them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from alembic import context, op

revision = "0011"
down_revision = "0010"
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
CREATE TABLE event_photo (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     bigint NOT NULL REFERENCES event(id),
    uploaded_by  bigint REFERENCES app_user(id) ON DELETE SET NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    media_type   text NOT NULL CHECK (media_type IN ('image/jpeg', 'image/png')),
    bytes        integer NOT NULL CHECK (bytes > 0),
    width        integer NOT NULL CHECK (width > 0),
    height       integer NOT NULL CHECK (height > 0),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{{64}}$'),
    file         text NOT NULL CHECK (file ~ '^[0-9]+/[0-9a-f]{{64}}\\.(jpg|png)$'),
    UNIQUE (event_id, sha256)
);
CREATE INDEX event_photo_event_idx ON event_photo (event_id);
ALTER TABLE event_photo ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_photo FORCE ROW LEVEL SECURITY;
CREATE POLICY event_photo_scope ON event_photo
    USING ((SELECT gisgov_scope_all()) OR event_id IN (SELECT e.id FROM event e))
    WITH CHECK ((SELECT gisgov_scope_all()) OR event_id IN (SELECT e.id FROM event e));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{app}') THEN
        EXECUTE 'REVOKE UPDATE, DELETE, TRUNCATE ON event_photo FROM {app}';
        EXECUTE 'GRANT SELECT, INSERT ON event_photo TO {app}';
    END IF;
END $$;
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS event_photo")
