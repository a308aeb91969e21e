"""The data version also moves with the walking network and the coverage-only inputs (issue 14).

Migration 0017 made ``tile_version.n`` move at the commit of any write to a table drawn in tiles. The coverage
service's in-memory model also depends on the road network, compound gates, barriers and special-group tags;
with their writes counted too, ``n`` says whether ANY input of the tiles or of the coverage model changed, so
a coverage read checks one number instead of fingerprinting every input table on each request (a full
aggregate over buildings, households and residents: ~40 ms on the sample city, about a second at a million
buildings).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

#: coverage inputs that 0017 did not count
TRACKED = ("road_edge", "road_node", "compound_gate", "barrier", "resident_group")


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
