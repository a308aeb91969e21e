"""Compact coverage storage (issue 14): distances one row per building, figures one row per level × item.

Before, ``building_access`` held one row per building × category (46 million rows for a city of
1,000,000 buildings) and ``coverage_figure`` one row per level × code × item × profile × circle
(25 million). Writing them was most of ``gisgov coverage compute``. Now:

coverage_access_slot   the categories stored, each with its position (slot) in the arrays below,
                       its method and the run that wrote it
building_access_packed one row per building: distance_m real[] and facility_id integer[] by slot
                       ('Infinity' = no facility within reach, 'NaN' = not computed for it, -1 = none)
coverage_figure_level  per level: the codes (the arrays below follow their order)
coverage_figure_total  per level × mask (all / urban / rural): buildings, households, residents
coverage_figure_item   per level × item_kind × item × profile × circle: the ``_in`` counts by code (and,
                       for items packed from the old table, their own totals: ``*_base``)

building_snap loses its per-row foreign key to building and its GiST index (together most of the time of
writing a million snaps): a statement-level trigger on building removes the snaps and packed distances of
deleted or truncated buildings instead.

``building_access`` and ``coverage_figure`` stay as VIEWs with the same columns, so every reader
(stats SQL, maps, tests, ad-hoc queries) keeps working; ``building_access_profile`` is rebuilt on
the view. The upgrade packs existing rows (a building missing a category keeps it missing: 'NaN');
the downgrade unpacks them into the old tables.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from alembic import context, op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _app_role() -> str:
    name = str(context.config.attributes.get("app_role") or "gisgov_app")
    if not name.replace("_", "").isalnum():
        raise ValueError(f"app role name {name!r} is not a plain identifier")
    return name


VIEWS = """
CREATE VIEW building_access AS
SELECT p.building_id, s.category_code,
       nullif(p.distance_m[s.slot], 'Infinity'::real) AS distance_m,
       nullif(p.facility_id[s.slot], -1)::bigint AS facility_id,
       s.method, s.run_id
FROM building_access_packed p CROSS JOIN coverage_access_slot s
WHERE p.distance_m[s.slot] <> 'NaN'::real;

-- writes through the view (ad-hoc fixes, tests): INSERT sets one building × category (an upsert: the view has
-- no unique constraint, so ON CONFLICT is not available), UPDATE changes it, DELETE makes it missing again
CREATE FUNCTION gisgov_building_access_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s integer;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT slot INTO s FROM coverage_access_slot WHERE category_code = OLD.category_code;
        UPDATE building_access_packed SET distance_m[s] = 'NaN', facility_id[s] = -1
        WHERE building_id = OLD.building_id AND s IS NOT NULL;
        RETURN OLD;
    END IF;
    SELECT slot INTO s FROM coverage_access_slot WHERE category_code = NEW.category_code;
    IF s IS NULL THEN
        INSERT INTO coverage_access_slot (slot, category_code, method, run_id)
        SELECT coalesce(max(slot), 0) + 1, NEW.category_code, coalesce(NEW.method, 'network'), NEW.run_id
        FROM coverage_access_slot
        RETURNING slot INTO s;
    END IF;
    INSERT INTO building_access_packed (building_id, distance_m, facility_id)
    SELECT NEW.building_id, array_fill('NaN'::real, ARRAY[k]), array_fill(-1, ARRAY[k])
    FROM (SELECT max(slot) AS k FROM coverage_access_slot) m
    ON CONFLICT (building_id) DO NOTHING;
    UPDATE building_access_packed
    SET distance_m[s] = coalesce(NEW.distance_m, 'Infinity'::real), facility_id[s] = coalesce(NEW.facility_id, -1)
    WHERE building_id = NEW.building_id;
    RETURN NEW;
END $$;
CREATE TRIGGER building_access_write INSTEAD OF INSERT OR UPDATE OR DELETE ON building_access
    FOR EACH ROW EXECUTE FUNCTION gisgov_building_access_write();

CREATE VIEW building_access_profile AS
SELECT a.building_id, a.category_code, b.profile, b.circle, a.distance_m,
       a.distance_m IS NOT NULL AND a.distance_m <= b.distance_m AS within,
       a.facility_id, a.method
FROM building_access a CROSS JOIN coverage_budget b;

CREATE VIEW coverage_figure AS
SELECT i.level, l.codes[j] AS code, i.item_kind, i.item, i.profile, i.circle,
       coalesce(i.buildings_base[j], t.buildings[j], 0) AS buildings, i.buildings_in[j] AS buildings_in,
       coalesce(i.households_base[j], t.households[j], 0)::double precision AS households,
       i.households_in[j]::double precision AS households_in,
       coalesce(i.residents_base[j], t.residents[j], 0) AS residents, i.residents_in[j] AS residents_in, i.run_id
FROM coverage_figure_item i
JOIN coverage_figure_level l ON l.level = i.level
LEFT JOIN coverage_figure_total t ON t.level = i.level AND t.mask = i.mask
CROSS JOIN LATERAL generate_subscripts(l.codes, 1) AS j;
"""


def upgrade() -> None:
    app = _app_role()
    op.execute(
        f"""
DROP VIEW IF EXISTS building_access_profile;
ALTER TABLE building_access RENAME TO building_access_rows;
ALTER TABLE coverage_figure RENAME TO coverage_figure_rows;

CREATE TABLE coverage_access_slot (
    slot           integer PRIMARY KEY CHECK (slot >= 1),
    category_code  text NOT NULL UNIQUE,
    method         text NOT NULL DEFAULT 'network' CHECK (method IN ('network', 'straight_line')),
    run_id         bigint REFERENCES coverage_run(id) ON DELETE SET NULL
);
CREATE TABLE building_access_packed (
    building_id  bigint PRIMARY KEY,  -- rows of deleted buildings removed by a trigger on building
    distance_m   real[] NOT NULL,
    facility_id  integer[] NOT NULL
);
CREATE TABLE coverage_figure_level (
    level  text PRIMARY KEY CHECK (level IN ('street', 'community', 'grid', 'compound')),
    codes  text[] NOT NULL
);
CREATE TABLE coverage_figure_total (
    level       text NOT NULL REFERENCES coverage_figure_level(level) ON DELETE CASCADE,
    mask        text NOT NULL CHECK (mask IN ('all', 'urban', 'rural')),
    buildings   integer[] NOT NULL,
    households  real[] NOT NULL,
    residents   integer[] NOT NULL,
    PRIMARY KEY (level, mask)
);
CREATE TABLE coverage_figure_item (
    level          text NOT NULL REFERENCES coverage_figure_level(level) ON DELETE CASCADE,
    item_kind      text NOT NULL CHECK (item_kind IN ('category', 'complete')),
    item           text NOT NULL,
    profile        text NOT NULL,
    circle         text NOT NULL,
    mask           text NOT NULL CHECK (mask IN ('all', 'urban', 'rural')),
    buildings_in   integer[] NOT NULL,
    households_in  real[] NOT NULL,
    residents_in   integer[] NOT NULL,
    buildings_base   integer[],
    households_base  real[],
    residents_base   integer[],
    run_id         bigint REFERENCES coverage_run(id) ON DELETE SET NULL,
    PRIMARY KEY (level, item_kind, item, profile, circle)
);
CREATE INDEX coverage_figure_item_item_idx ON coverage_figure_item (item, profile, circle);

-- existing distances, packed (a missing building × category stays missing: NaN)
INSERT INTO coverage_access_slot (slot, category_code, method, run_id)
SELECT row_number() OVER (ORDER BY category_code), category_code, min(method), max(run_id)
FROM building_access_rows GROUP BY category_code;
INSERT INTO building_access_packed (building_id, distance_m, facility_id)
SELECT b.building_id,
       array_agg(CASE WHEN a.building_id IS NULL THEN 'NaN'::real
                      ELSE coalesce(a.distance_m, 'Infinity'::real) END ORDER BY s.slot),
       array_agg(coalesce(a.facility_id, -1)::integer ORDER BY s.slot)
FROM (SELECT DISTINCT building_id FROM building_access_rows) b
CROSS JOIN coverage_access_slot s
LEFT JOIN building_access_rows a ON a.building_id = b.building_id AND a.category_code = s.category_code
GROUP BY b.building_id;

-- existing figures, packed (codes of a level in code order; a code missing an item counts 0). The old rows do
-- not say which buildings a 'complete' item counts (all, or the urban / rural ones): those items keep their own
-- totals (the *_base arrays)
INSERT INTO coverage_figure_level (level, codes)
SELECT level, array_agg(DISTINCT code ORDER BY code) FROM coverage_figure_rows GROUP BY level;
CREATE TEMP TABLE _fig_code ON COMMIT DROP AS
SELECT l.level, c.code, c.j FROM coverage_figure_level l CROSS JOIN LATERAL unnest(l.codes) WITH ORDINALITY c(code, j);
ANALYZE _fig_code;
INSERT INTO coverage_figure_total (level, mask, buildings, households, residents)
SELECT c.level, 'all', array_agg(coalesce(f.b, 0) ORDER BY c.j), array_agg(coalesce(f.h, 0)::real ORDER BY c.j),
       array_agg(coalesce(f.r, 0) ORDER BY c.j)
FROM _fig_code c
LEFT JOIN (SELECT level, code, max(buildings) AS b, max(households) AS h, max(residents) AS r
           FROM coverage_figure_rows WHERE item_kind = 'category' GROUP BY 1, 2) f USING (level, code)
GROUP BY c.level;
INSERT INTO coverage_figure_item (level, item_kind, item, profile, circle, mask, buildings_in, households_in,
                                  residents_in, buildings_base, households_base, residents_base, run_id)
SELECT k.level, k.item_kind, k.item, k.profile, k.circle, 'all',
       array_agg(coalesce(r.buildings_in, 0) ORDER BY c.j), array_agg(coalesce(r.households_in, 0)::real ORDER BY c.j),
       array_agg(coalesce(r.residents_in, 0) ORDER BY c.j),
       CASE WHEN k.item_kind = 'complete' THEN array_agg(coalesce(r.buildings, 0) ORDER BY c.j) END,
       CASE WHEN k.item_kind = 'complete' THEN array_agg(coalesce(r.households, 0)::real ORDER BY c.j) END,
       CASE WHEN k.item_kind = 'complete' THEN array_agg(coalesce(r.residents, 0) ORDER BY c.j) END,
       max(k.run_id)
FROM (SELECT level, item_kind, item, profile, circle, max(run_id) AS run_id
      FROM coverage_figure_rows GROUP BY 1, 2, 3, 4, 5) k
JOIN _fig_code c ON c.level = k.level
LEFT JOIN coverage_figure_rows r ON r.level = k.level AND r.code = c.code AND r.item_kind = k.item_kind
     AND r.item = k.item AND r.profile = k.profile AND r.circle = k.circle
GROUP BY k.level, k.item_kind, k.item, k.profile, k.circle;

DROP TABLE building_access_rows;
DROP TABLE coverage_figure_rows;

-- per-row checks that cost more than the write itself at a million buildings: the foreign key of
-- building_snap (and of the packed distances) becomes one statement-level trigger on building that removes
-- the rows of deleted or truncated buildings; nothing reads snaps by location, so the GiST index goes
ALTER TABLE building_snap DROP CONSTRAINT IF EXISTS building_snap_building_id_fkey;
DROP INDEX IF EXISTS building_snap_geom_gix;
CREATE FUNCTION gisgov_coverage_forget_buildings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM building_snap;
        DELETE FROM building_access_packed;
    ELSE
        DELETE FROM building_snap WHERE building_id IN (SELECT id FROM gone);
        DELETE FROM building_access_packed WHERE building_id IN (SELECT id FROM gone);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER z_coverage_forget_deleted AFTER DELETE ON building REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION gisgov_coverage_forget_buildings();
CREATE TRIGGER z_coverage_forget_truncated AFTER TRUNCATE ON building
    FOR EACH STATEMENT EXECUTE FUNCTION gisgov_coverage_forget_buildings();
{VIEWS}
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{app}') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON coverage_access_slot, building_access_packed,
                 coverage_figure_level, coverage_figure_total, coverage_figure_item TO {app}';
        EXECUTE 'GRANT SELECT ON building_access, building_access_profile, coverage_figure TO {app}';
    END IF;
END $$;
"""
    )


def downgrade() -> None:
    app = _app_role()
    op.execute(
        f"""
DROP TRIGGER IF EXISTS z_coverage_forget_deleted ON building;
DROP TRIGGER IF EXISTS z_coverage_forget_truncated ON building;
DROP FUNCTION IF EXISTS gisgov_coverage_forget_buildings();
DELETE FROM building_snap s WHERE NOT EXISTS (SELECT 1 FROM building b WHERE b.id = s.building_id);
DELETE FROM building_access_packed s WHERE NOT EXISTS (SELECT 1 FROM building b WHERE b.id = s.building_id);
ALTER TABLE building_snap DROP CONSTRAINT IF EXISTS building_snap_building_id_fkey;
ALTER TABLE building_snap ADD CONSTRAINT building_snap_building_id_fkey FOREIGN KEY (building_id)
    REFERENCES building(id) ON DELETE CASCADE;
CREATE INDEX IF NOT EXISTS building_snap_geom_gix ON building_snap USING gist (geom);
CREATE TABLE building_access_rows AS SELECT * FROM building_access;
CREATE TABLE coverage_figure_rows AS SELECT * FROM coverage_figure;
DROP VIEW building_access_profile;
DROP VIEW building_access;
DROP VIEW coverage_figure;
DROP TABLE coverage_figure_item, coverage_figure_total, coverage_figure_level, building_access_packed,
    coverage_access_slot;
DROP FUNCTION IF EXISTS gisgov_building_access_write();

CREATE TABLE building_access (
    building_id    bigint NOT NULL REFERENCES building(id) ON DELETE CASCADE,
    category_code  text NOT NULL,
    distance_m     real CHECK (distance_m >= 0),
    facility_id    bigint REFERENCES facility(id) ON DELETE SET NULL,
    method         text NOT NULL DEFAULT 'network' CHECK (method IN ('network', 'straight_line')),
    run_id         bigint REFERENCES coverage_run(id) ON DELETE SET NULL,
    PRIMARY KEY (building_id, category_code)
);
INSERT INTO building_access (building_id, category_code, distance_m, facility_id, method, run_id)
SELECT r.building_id, r.category_code, r.distance_m, f.id, r.method, r.run_id
FROM building_access_rows r LEFT JOIN facility f ON f.id = r.facility_id;
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
INSERT INTO coverage_figure SELECT * FROM coverage_figure_rows;
DROP TABLE building_access_rows, coverage_figure_rows;
CREATE INDEX building_access_category_idx ON building_access (category_code, distance_m);
CREATE INDEX building_access_facility_idx ON building_access (facility_id);
CREATE INDEX coverage_figure_item_idx ON coverage_figure (item, profile, circle);
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{app}') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON building_access, coverage_figure TO {app}';
    END IF;
END $$;
"""
    )
