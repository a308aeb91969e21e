"""Province roll-up (issue 14, item 6b): the aggregates each city exports (``gisgov rollup export``),
loaded into a province instance (``gisgov rollup load``).

``rollup_city``    one row per city: code, name, dataset, export time (the version), the file's checksum,
                   the schema revision and small-cell k of the exporting city, coverage meta, labels.
``rollup_unit``    the city, its streets and communities: code, name, parent, simplified outline (WGS84).
``rollup_figure``  one count per unit and indicator. Aggregate-only by construction: the indicator must be
                   one of a fixed vocabulary (households, residents, buildings, compounds, age bands,
                   special groups, grids, staff by role, coverage numerators/denominators); special-group
                   counts are stored as the aggregate-only roles see them (a number, or the label ``<k`` /
                   ``≥k`` with no value). There is no column for a person.

Rows of one city are replaced as a whole (ON DELETE CASCADE from ``rollup_city``). The app role may read.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08
"""

from alembic import context, op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

INDICATORS = (
    r"^(households|residents|buildings|compounds|old_compounds|grids"
    r"|age\.(0-14|15-59|60\+|80\+|unknown)"
    r"|special\.people|special\.group\.[A-Za-z0-9_-]{1,40}"
    r"|staff\.total|staff\.role\.[^ .]{1,20}"
    r"|coverage\.households|coverage\.category\.[A-Za-z0-9_-]{1,40}"
    r"|coverage\.complete\.(households|households_in))$"
)


def _app_role() -> str:
    name = str(context.config.attributes.get("app_role") or "gisgov_app")
    if not name.replace("_", "").isalnum():
        raise ValueError(f"app role name {name!r} is not a plain identifier")
    return name


def upgrade() -> None:
    app = _app_role()
    op.execute(
        f"""
CREATE TABLE rollup_city (
    city_code        text PRIMARY KEY CHECK (city_code ~ '^[0-9]{{2,12}}$'),
    name             text NOT NULL,
    dataset          text,
    exported_at      timestamptz NOT NULL,
    loaded_at        timestamptz NOT NULL DEFAULT now(),
    source_checksum  text NOT NULL CHECK (source_checksum ~ '^sha256:[0-9a-f]{{64}}$'),
    schema_revision  text,
    small_cell_k     integer NOT NULL CHECK (small_cell_k >= 2),
    coverage         jsonb,
    labels           jsonb NOT NULL DEFAULT '{{}}'::jsonb
);
COMMENT ON TABLE rollup_city IS '省级汇总：各市导出 province roll-up: one row per exported city (aggregates only)';

CREATE TABLE rollup_unit (
    city_code    text NOT NULL REFERENCES rollup_city (city_code) ON DELETE CASCADE,
    level        text NOT NULL CHECK (level IN ('city', 'street', 'community')),
    code         text NOT NULL,
    name         text NOT NULL,
    parent_code  text,
    geom         geometry(Geometry, 4326),
    PRIMARY KEY (city_code, level, code)
);
CREATE INDEX rollup_unit_geom_idx ON rollup_unit USING gist (geom);

CREATE TABLE rollup_figure (
    city_code  text NOT NULL,
    level      text NOT NULL,
    code       text NOT NULL,
    indicator  text NOT NULL CHECK (indicator ~ '{INDICATORS}'),
    value      bigint CHECK (value >= 0),
    label      text CHECK (label ~ '^[<≥][0-9]+$'),
    CHECK (value IS NULL OR label IS NULL),
    CHECK (indicator LIKE 'special.%' OR value IS NOT NULL),
    PRIMARY KEY (city_code, level, code, indicator),
    FOREIGN KEY (city_code, level, code) REFERENCES rollup_unit (city_code, level, code) ON DELETE CASCADE
);
COMMENT ON TABLE rollup_figure IS
    '汇总指标 aggregate counts per unit; special-group counts as aggregate roles see them (value or <k/≥k label)';

DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{app}') THEN
        EXECUTE 'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON rollup_city, rollup_unit, rollup_figure FROM {app}';
        EXECUTE 'GRANT SELECT ON rollup_city, rollup_unit, rollup_figure TO {app}';
    END IF;
END $$;
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS rollup_figure, rollup_unit, rollup_city")
