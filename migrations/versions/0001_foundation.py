"""Foundation: the six-level hierarchy, facilities, walking network, lookups.

Code scheme (each code starts with its parent's code; the length tells the level):
  street     9 digits  = GB/T 2260 county code (6) + 街道 code (3)
  community 12 digits  = street + 3-digit statistical 居委会/村委会 code
  grid      15 digits  = community + 3-digit sequence, west→east, north→south (DB11/T 2157-2023)
  compound  16 digits  = community + 4-digit compound sequence (gisgov scheme)
  building  17 digits  = community + 5-digit building number (as DB6101/T 3185-2024)
  household 21 digits  = building + 4-digit household (door) number

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SPECIAL_GROUPS = [
    ("tekun", "特困", "Extreme poverty (特困供养)"),
    ("dibao", "低保", "Minimum living allowance"),
    ("dibian", "低边", "Low-income margin"),
    ("canji", "残疾", "Disabled"),
    ("dujulaoren", "独居老人", "Elderly living alone"),
    ("liushouertong", "留守儿童", "Left-behind child"),
    ("shequjiaozheng", "社区矫正", "Community correction"),
    ("xingmanshifang", "刑满释放", "Released prisoner"),
    ("xidu", "吸毒人员", "Drug user"),
    ("jingshen", "精神障碍", "Severe mental disorder"),
    ("xinfang", "重点信访", "Key petitioner"),
    ("shiye", "失业", "Unemployed"),
    ("youfu", "优抚对象", "Entitled veterans/dependants"),
    ("kunjingertong", "困境儿童", "Child in hardship"),
]

FACILITY_CATEGORIES = [
    ("dangjian", "党建", "Party building"),
    ("zongzhi", "综治", "Comprehensive governance"),
    ("minzheng", "民政", "Civil affairs"),
    ("gongan", "公安", "Police"),
    ("sifa", "司法", "Justice"),
    ("weisheng", "卫生", "Health"),
    ("renshe", "人社", "Human resources & social security"),
    ("chengguan", "城管", "City management"),
    ("canlian", "残联", "Disabled persons' federation"),
    ("shichangjianguan", "市场监管", "Market regulation"),
    ("wenhua", "文化", "Culture"),
    ("tiyu", "体育", "Sports"),
    ("xinwenmeiti", "新闻媒体", "News media"),
    ("xuexiao", "学校", "Schools"),
    ("yiyuan", "医院", "Hospitals"),
    ("shangye", "商业服务", "Commercial services"),
]

LEVEL_TABLES = ["street", "community", "compound", "grid"]


def _srid() -> int:
    return int(context.config.attributes.get("srid") or 4490)


def upgrade() -> None:
    srid = _srid()
    op.execute(
        f"""
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE gisgov_meta (
    key   text PRIMARY KEY,
    value jsonb NOT NULL
);
INSERT INTO gisgov_meta VALUES ('srid', '{srid}');

-- Projected metric CRS for a geometry: the CGCS2000 3-degree Gauss-Krüger zone (EPSG:4534-4554,
-- central meridians 75E-135E) inside China, UTM elsewhere.
CREATE FUNCTION gisgov_metric_srid(g geometry) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN lon BETWEEN 73.5 AND 136.5 AND lat BETWEEN 0 AND 56
            THEN 4534 + ((round(lon / 3) * 3 - 75) / 3)::int
        ELSE (CASE WHEN lat >= 0 THEN 32600 ELSE 32700 END) + least(60, floor((lon + 180) / 6)::int + 1)
    END
    FROM (SELECT ST_X(c) AS lon, ST_Y(c) AS lat
          FROM (SELECT ST_Transform(ST_PointOnSurface(g), 4326) AS c) a) b
$$;

CREATE FUNCTION gisgov_area_m2(g geometry) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ST_Area(ST_Transform(g, gisgov_metric_srid(g))) $$;

CREATE FUNCTION gisgov_length_m(g geometry) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ST_Length(ST_Transform(g, gisgov_metric_srid(g))) $$;

-- A child's representative point must lie inside its parent's polygon.
-- TG_ARGV: parent table, parent key column, child FK column, child geometry column.
CREATE FUNCTION gisgov_check_within() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    fk text := to_jsonb(NEW) ->> TG_ARGV[2];
    g geometry;
    ok boolean;
BEGIN
    IF fk IS NULL THEN RETURN NEW; END IF;
    EXECUTE format('SELECT ($1).%I', TG_ARGV[3]) USING NEW INTO g;
    IF g IS NULL THEN RETURN NEW; END IF;
    EXECUTE format('SELECT ST_Intersects(p.geom, ST_PointOnSurface($1)) FROM %I p WHERE p.%I::text = $2',
                   TG_ARGV[0], TG_ARGV[1]) INTO ok USING g, fk;
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = format('%s %s lies outside its %s %s (rule: within_parent)',
                             TG_TABLE_NAME, coalesce(to_jsonb(NEW) ->> 'code', to_jsonb(NEW) ->> 'id'), TG_ARGV[0], fk),
            HINT = 'check the coordinates (CRS, swapped lon/lat) or the parent code';
    END IF;
    RETURN NEW;
END $$;

CREATE TABLE special_group (
    code     text PRIMARY KEY,
    name_zh  text NOT NULL UNIQUE,
    name_en  text NOT NULL,
    sort     integer NOT NULL DEFAULT 0
);

CREATE TABLE facility_category (
    code     text PRIMARY KEY,
    name_zh  text NOT NULL UNIQUE,
    name_en  text NOT NULL,
    sort     integer NOT NULL DEFAULT 0
);

CREATE TABLE street (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code       text NOT NULL UNIQUE CHECK (code ~ '^[0-9]{{9}}$'),
    name       text NOT NULL,
    geom       geometry(MultiPolygon, {srid}) NOT NULL,
    CONSTRAINT street_geom_valid CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    CONSTRAINT street_geom_srid CHECK (ST_SRID(geom) = {srid})
);

CREATE TABLE community (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code         text NOT NULL UNIQUE CHECK (code ~ '^[0-9]{{12}}$'),
    street_code  text NOT NULL REFERENCES street(code) ON UPDATE CASCADE,
    name         text NOT NULL,
    class        text CHECK (class IN ('城市社区', '撤村建居', '村')),
    kind         text,          -- 老旧小区型, 纯商品房型, 混合居住型 ... (seed 002)
    rule_set     text NOT NULL DEFAULT 'urban' CHECK (rule_set IN ('urban', 'rural')),
    geom         geometry(MultiPolygon, {srid}) NOT NULL,
    CONSTRAINT community_code_prefix CHECK (left(code, 9) = street_code),
    CONSTRAINT community_geom_valid CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    CONSTRAINT community_geom_srid CHECK (ST_SRID(geom) = {srid})
);

CREATE TABLE grid (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (code ~ '^[0-9]{{15}}$'),
    community_code  text NOT NULL REFERENCES community(code) ON UPDATE CASCADE,
    name            text,
    level           text NOT NULL DEFAULT '三级' CHECK (level IN ('一级', '二级', '三级')),
    geom            geometry(MultiPolygon, {srid}) NOT NULL,
    UNIQUE (id, community_code),
    CONSTRAINT grid_code_prefix CHECK (left(code, 12) = community_code),
    CONSTRAINT grid_geom_valid CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    CONSTRAINT grid_geom_srid CHECK (ST_SRID(geom) = {srid})
);

CREATE TABLE grid_staff (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grid_id       bigint NOT NULL REFERENCES grid(id) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('网格长', '专职网格员', '兼职网格员', '网格指导员', '信息员')),
    name          text NOT NULL,
    phone_cipher  bytea,
    phone_masked  text
);

CREATE TABLE compound (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (code ~ '^[0-9]{{16}}$'),
    community_code  text NOT NULL REFERENCES community(code) ON UPDATE CASCADE,
    name            text NOT NULL,
    year_built      smallint CHECK (year_built BETWEEN 1900 AND 2100),
    property_mode   text CHECK (property_mode IN ('物业公司', '业主自治', '社区兜底')),
    has_party_org   boolean NOT NULL DEFAULT false,
    geom            geometry(MultiPolygon, {srid}) NOT NULL,
    is_old          boolean GENERATED ALWAYS AS (year_built < 2000) STORED,   -- 老旧小区
    UNIQUE (id, community_code),
    CONSTRAINT compound_code_prefix CHECK (left(code, 12) = community_code),
    CONSTRAINT compound_geom_valid CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    CONSTRAINT compound_geom_srid CHECK (ST_SRID(geom) = {srid})
);

CREATE TABLE building (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code                  text NOT NULL UNIQUE CHECK (code ~ '^[0-9]{{17}}$'),
    community_code        text NOT NULL REFERENCES community(code) ON UPDATE CASCADE,
    compound_id           bigint,
    grid_id               bigint,
    name                  text,
    address               text,
    floors                smallint CHECK (floors >= 0),
    units                 smallint CHECK (units >= 0),
    households            integer CHECK (households >= 0),
    households_estimated  boolean NOT NULL DEFAULT false,
    year_built            smallint CHECK (year_built BETWEEN 1900 AND 2100),
    geom                  geometry(MultiPolygon, {srid}),
    pos                   geometry(Point, {srid}) NOT NULL,
    CONSTRAINT building_code_prefix CHECK (left(code, 12) = community_code),
    CONSTRAINT building_compound_fk FOREIGN KEY (compound_id, community_code)
        REFERENCES compound(id, community_code) ON UPDATE CASCADE,
    CONSTRAINT building_grid_fk FOREIGN KEY (grid_id, community_code)
        REFERENCES grid(id, community_code) ON DELETE SET NULL (grid_id),
    CONSTRAINT building_geom_valid CHECK (geom IS NULL OR (ST_IsValid(geom) AND NOT ST_IsEmpty(geom))),
    CONSTRAINT building_geom_srid CHECK (geom IS NULL OR ST_SRID(geom) = {srid}),
    CONSTRAINT building_pos_srid CHECK (ST_SRID(pos) = {srid})
);

CREATE FUNCTION gisgov_building_pos() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.geom IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.pos IS NULL OR NEW.geom IS DISTINCT FROM OLD.geom) THEN
        NEW.pos := ST_PointOnSurface(NEW.geom);
    END IF;
    RETURN NEW;
END $$;

CREATE TABLE household (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (code ~ '^[0-9]{{21}}$'),
    building_code   text NOT NULL REFERENCES building(code) ON UPDATE CASCADE ON DELETE CASCADE,
    door_no         text,
    residence       text NOT NULL DEFAULT '常住' CHECK (residence IN ('常住', '户籍', '流动')),
    CONSTRAINT household_code_prefix CHECK (left(code, 17) = building_code)
);

CREATE TABLE resident (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    household_id  bigint NOT NULL REFERENCES household(id) ON DELETE CASCADE,
    name          text NOT NULL,
    gender        text CHECK (gender IN ('男', '女')),
    birth_year    smallint CHECK (birth_year BETWEEN 1880 AND 2100),
    role          text CHECK (role IN ('户主', '配偶', '子女', '父母', '孙辈', '兄弟姐妹', '其他')),
    id_hash       bytea UNIQUE,      -- HMAC-SHA256 of the ID number (lookup, dedup)
    id_cipher     bytea,             -- AES-GCM ciphertext of the ID number
    id_last4      text CHECK (id_last4 ~ '^[0-9]{{3}}[0-9X]$'),
    phone_cipher  bytea,
    phone_masked  text,
    geom          geometry(Point, {srid}),
    CONSTRAINT resident_geom_srid CHECK (geom IS NULL OR ST_SRID(geom) = {srid})
);

CREATE FUNCTION gisgov_resident_pos() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.geom IS NULL THEN
        SELECT b.pos INTO NEW.geom FROM household h JOIN building b ON b.code = h.building_code
        WHERE h.id = NEW.household_id;
    END IF;
    RETURN NEW;
END $$;

CREATE TABLE resident_group (
    resident_id  bigint NOT NULL REFERENCES resident(id) ON DELETE CASCADE,
    group_code   text NOT NULL REFERENCES special_group(code) ON UPDATE CASCADE,
    PRIMARY KEY (resident_id, group_code)
);

CREATE TABLE facility (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL UNIQUE,
    name            text NOT NULL,
    category_code   text NOT NULL REFERENCES facility_category(code) ON UPDATE CASCADE,
    kind            text,             -- facility type within the category (幼儿园, 卫生服务站 ...)
    community_code  text REFERENCES community(code) ON UPDATE CASCADE,
    address         text,
    source          text,
    geom            geometry(Point, {srid}) NOT NULL,
    CONSTRAINT facility_geom_srid CHECK (ST_SRID(geom) = {srid})
);

CREATE TABLE road_node (
    id    bigint PRIMARY KEY,
    geom  geometry(Point, {srid}) NOT NULL
);

CREATE TABLE road_edge (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       bigint NOT NULL REFERENCES road_node(id) ON DELETE CASCADE,
    target       bigint NOT NULL REFERENCES road_node(id) ON DELETE CASCADE,
    class        text NOT NULL DEFAULT 'local' CHECK (class IN ('arterial', 'local', 'path', 'gate', 'bridge', 'other')),
    name         text,
    foot         boolean NOT NULL DEFAULT true,
    oneway_foot  boolean NOT NULL DEFAULT false,
    length_m     double precision NOT NULL CHECK (length_m >= 0),
    geom         geometry(LineString, {srid}) NOT NULL,
    CONSTRAINT road_edge_geom_valid CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    CONSTRAINT road_edge_geom_srid CHECK (ST_SRID(geom) = {srid})
);

CREATE TABLE compound_gate (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    compound_id  bigint NOT NULL REFERENCES compound(id) ON DELETE CASCADE,
    node_id      bigint REFERENCES road_node(id) ON DELETE SET NULL,
    name         text,
    geom         geometry(Point, {srid}) NOT NULL,
    CONSTRAINT compound_gate_geom_srid CHECK (ST_SRID(geom) = {srid})
);

-- Rivers, rail lines and other barriers (walking cannot cross except on an edge).
CREATE TABLE barrier (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind  text NOT NULL CHECK (kind IN ('river', 'water', 'rail', 'wall', 'other')),
    name  text,
    geom  geometry(Geometry, {srid}) NOT NULL,
    CONSTRAINT barrier_geom_valid CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    CONSTRAINT barrier_geom_srid CHECK (ST_SRID(geom) = {srid})
);

CREATE TRIGGER a_building_pos BEFORE INSERT OR UPDATE ON building
    FOR EACH ROW EXECUTE FUNCTION gisgov_building_pos();
CREATE TRIGGER a_resident_pos BEFORE INSERT OR UPDATE OF geom, household_id ON resident
    FOR EACH ROW EXECUTE FUNCTION gisgov_resident_pos();
CREATE TRIGGER b_community_within_street BEFORE INSERT OR UPDATE ON community
    FOR EACH ROW EXECUTE FUNCTION gisgov_check_within('street', 'code', 'street_code', 'geom');
CREATE TRIGGER b_compound_within_community BEFORE INSERT OR UPDATE ON compound
    FOR EACH ROW EXECUTE FUNCTION gisgov_check_within('community', 'code', 'community_code', 'geom');
CREATE TRIGGER b_grid_within_community BEFORE INSERT OR UPDATE ON grid
    FOR EACH ROW EXECUTE FUNCTION gisgov_check_within('community', 'code', 'community_code', 'geom');
CREATE TRIGGER b_building_within_community BEFORE INSERT OR UPDATE ON building
    FOR EACH ROW EXECUTE FUNCTION gisgov_check_within('community', 'code', 'community_code', 'pos');
CREATE TRIGGER c_building_within_compound BEFORE INSERT OR UPDATE ON building
    FOR EACH ROW EXECUTE FUNCTION gisgov_check_within('compound', 'id', 'compound_id', 'pos');

CREATE INDEX street_geom_gix ON street USING gist (geom);
CREATE INDEX community_geom_gix ON community USING gist (geom);
CREATE INDEX community_street_idx ON community (street_code);
CREATE INDEX grid_geom_gix ON grid USING gist (geom);
CREATE INDEX grid_community_idx ON grid (community_code);
CREATE INDEX grid_staff_grid_idx ON grid_staff (grid_id);
CREATE INDEX compound_geom_gix ON compound USING gist (geom);
CREATE INDEX compound_community_idx ON compound (community_code);
CREATE INDEX building_geom_gix ON building USING gist (geom);
CREATE INDEX building_pos_gix ON building USING gist (pos);
CREATE INDEX building_community_idx ON building (community_code);
CREATE INDEX building_compound_idx ON building (compound_id);
CREATE INDEX building_grid_idx ON building (grid_id);
CREATE INDEX household_building_idx ON household (building_code);
CREATE INDEX resident_household_idx ON resident (household_id);
CREATE INDEX resident_geom_gix ON resident USING gist (geom);
CREATE INDEX resident_group_group_idx ON resident_group (group_code);
CREATE INDEX facility_geom_gix ON facility USING gist (geom);
CREATE INDEX facility_category_idx ON facility (category_code);
CREATE INDEX road_node_geom_gix ON road_node USING gist (geom);
CREATE INDEX road_edge_geom_gix ON road_edge USING gist (geom);
CREATE INDEX road_edge_source_idx ON road_edge (source);
CREATE INDEX road_edge_target_idx ON road_edge (target);
CREATE INDEX compound_gate_geom_gix ON compound_gate USING gist (geom);
CREATE INDEX compound_gate_compound_idx ON compound_gate (compound_id);
CREATE INDEX barrier_geom_gix ON barrier USING gist (geom);
"""
    )
    for table, rows in (("special_group", SPECIAL_GROUPS), ("facility_category", FACILITY_CATEGORIES)):
        op.get_bind().execute(
            sa.text(f"INSERT INTO {table} (code, name_zh, name_en, sort) VALUES (:c, :z, :e, :i)"),
            [dict(c=c, z=z, e=e, i=i) for i, (c, z, e) in enumerate(rows, 1)],
        )


def downgrade() -> None:
    op.execute(
        """
DROP TABLE IF EXISTS barrier, compound_gate, road_edge, road_node, facility, resident_group, resident,
    household, building, compound, grid_staff, grid, community, street, facility_category, special_group,
    gisgov_meta CASCADE;
DROP FUNCTION IF EXISTS gisgov_resident_pos(), gisgov_building_pos(), gisgov_check_within(),
    gisgov_length_m(geometry), gisgov_area_m2(geometry), gisgov_metric_srid(geometry);
"""
    )
