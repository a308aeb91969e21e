"""The data version also moves with everything the cached reads of the dashboard show (issue 14, load).

Each worker keeps answers of the leaders' read routes (statistics, hierarchy, layer pages, the map page,
plan lists) keyed by ``tile_version.n``; for that, ``n`` must move with every table those answers read. 0017 and
0018 count the hierarchy, buildings, people, grids, plans, the network and coverage results; this adds grid
staff (一格三员 counts), the special-group vocabulary, the dataset label (``gisgov_meta``) and the coverage run
and figure tables (written with ``building_access_packed``, which already counted, but also on their own when a
run is recorded or its figures rebuilt).

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

#: read by cached answers, not counted by 0017/0018
TRACKED = (
    "grid_staff",
    "special_group",
    "gisgov_meta",
    "coverage_run",
    "coverage_figure_item",
    "coverage_figure_level",
    "coverage_figure_total",
    "coverage_group_figure",
)


def upgrade() -> None:
    op.execute(
        "\n".join(
            f"CREATE TRIGGER zz_tile_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t}\n"
            "    FOR EACH STATEMENT EXECUTE FUNCTION gisgov_tile_version_touch();"
            for t in TRACKED
        )
    )


def downgrade() -> None:
    op.execute("\n".join(f"DROP TRIGGER IF EXISTS zz_tile_version ON {t};" for t in TRACKED))
