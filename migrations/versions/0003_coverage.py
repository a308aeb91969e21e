"""Service-circle coverage results.

building_snap / facility_snap  where each building / facility joins the walking network
building_access                distance (m) from each building to the nearest facility of each
                               service category (catalog code), with that facility; NULL distance =
                               beyond the catalog's distance cap or unreachable
coverage_budget                the catalog's circles × walking profiles → distance budget (m)
building_access_profile (view) building × category × profile × circle, within or not
coverage_figure                shares per level (street/community/grid/compound) × category or
                               complete circle × profile × circle
coverage_group_figure          special groups beyond a circle, per level
coverage_run                   one row per computation (catalog checksum, method, input checksums)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _srid() -> int:
    """The storage SRID the foundation migration recorded (not today's settings: they may differ)."""
    return int(op.get_bind().exec_driver_sql("SELECT value FROM gisgov_meta WHERE key = 'srid'").scalar())


def upgrade() -> None:
    srid = _srid()
    op.execute(
        f"""
CREATE TABLE coverage_run (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    method            text NOT NULL CHECK (method IN ('network', 'straight_line')),
    catalog_checksum  text NOT NULL,
    inputs_checksum   jsonb NOT NULL DEFAULT '{{}}',
    categories        text[] NOT NULL,
    stats             jsonb NOT NULL DEFAULT '{{}}'
);

CREATE TABLE building_snap (
    building_id  bigint PRIMARY KEY REFERENCES building(id) ON DELETE CASCADE,
    edge_id      bigint,
    offset_m     double precision,
    access_m     double precision,
    via_gate_id  bigint REFERENCES compound_gate(id) ON DELETE SET NULL,
    flags        text[] NOT NULL DEFAULT '{{}}',
    geom         geometry(Point, {srid}),
    CONSTRAINT building_snap_geom_srid CHECK (geom IS NULL OR ST_SRID(geom) = {srid})
);

CREATE TABLE facility_snap (
    facility_id  bigint PRIMARY KEY REFERENCES facility(id) ON DELETE CASCADE,
    edge_id      bigint,
    offset_m     double precision,
    access_m     double precision,
    flags        text[] NOT NULL DEFAULT '{{}}',
    geom         geometry(Point, {srid}),
    CONSTRAINT facility_snap_geom_srid CHECK (geom IS NULL OR ST_SRID(geom) = {srid})
);

CREATE TABLE building_access (
    building_id    bigint NOT NULL REFERENCES building(id) ON DELETE CASCADE,
    category_code  text NOT NULL,
    distance_m     real CHECK (distance_m >= 0),
    facility_id    bigint REFERENCES facility(id) ON DELETE SET NULL,
    method         text NOT NULL DEFAULT 'network' CHECK (method IN ('network', 'straight_line')),
    run_id         bigint REFERENCES coverage_run(id) ON DELETE SET NULL,
    PRIMARY KEY (building_id, category_code)
);

CREATE TABLE coverage_budget (
    profile     text NOT NULL,
    circle      text NOT NULL,
    minutes     real NOT NULL,
    distance_m  real NOT NULL CHECK (distance_m > 0),
    speed_mps   real,
    PRIMARY KEY (profile, circle)
);

CREATE VIEW building_access_profile AS
SELECT a.building_id, a.category_code, b.profile, b.circle, a.distance_m,
       a.distance_m IS NOT NULL AND a.distance_m <= b.distance_m AS within,
       a.facility_id, a.method
FROM building_access a CROSS JOIN coverage_budget b;

CREATE TABLE coverage_figure (
    level          text NOT NULL CHECK (level IN ('street', 'community', 'grid', 'compound')),
    code           text NOT NULL,
    item_kind      text NOT NULL CHECK (item_kind IN ('category', 'complete')),
    item           text NOT NULL,
    profile        text NOT NULL,
    circle         text NOT NULL,
    buildings      integer NOT NULL,
    buildings_in   integer NOT NULL,
    households     double precision NOT NULL,
    households_in  double precision NOT NULL,
    residents      integer NOT NULL,
    residents_in   integer NOT NULL,
    run_id         bigint REFERENCES coverage_run(id) ON DELETE SET NULL,
    PRIMARY KEY (level, code, item_kind, item, profile, circle),
    CHECK (buildings_in <= buildings AND residents_in <= residents)
);

CREATE TABLE coverage_group_figure (
    level       text NOT NULL CHECK (level IN ('street', 'community', 'grid', 'compound')),
    code        text NOT NULL,
    group_code  text NOT NULL REFERENCES special_group(code) ON UPDATE CASCADE,
    category    text NOT NULL,
    profile     text NOT NULL,
    circle      text NOT NULL,
    residents   integer NOT NULL,
    beyond      integer NOT NULL,
    run_id      bigint REFERENCES coverage_run(id) ON DELETE SET NULL,
    PRIMARY KEY (level, code, group_code, category, profile, circle),
    CHECK (beyond <= residents)
);

CREATE INDEX building_access_category_idx ON building_access (category_code, distance_m);
CREATE INDEX building_access_facility_idx ON building_access (facility_id);
CREATE INDEX building_snap_geom_gix ON building_snap USING gist (geom);
CREATE INDEX building_snap_gate_idx ON building_snap (via_gate_id);
CREATE INDEX facility_snap_geom_gix ON facility_snap USING gist (geom);
CREATE INDEX coverage_figure_item_idx ON coverage_figure (item, profile, circle);
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP VIEW IF EXISTS building_access_profile;
DROP TABLE IF EXISTS coverage_group_figure, coverage_figure, coverage_budget, building_access,
    facility_snap, building_snap, coverage_run CASCADE;
"""
    )
