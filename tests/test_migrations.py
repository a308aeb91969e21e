"""Migrations up and down on an empty database; constraints that protect the hierarchy."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError

from gisgov.db import migrate

SQUARE = "MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))"


def sq(x0, y0, x1, y1):
    return SQUARE.format(x0=x0, y0=y0, x1=x1, y1=y1)


def test_upgrade_and_downgrade(db_factory):
    url = db_factory.create(migrated=False)
    migrate.upgrade(url)
    assert migrate.current(url) is not None
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.connect() as c:
        tables = {r[0] for r in c.execute(text("SELECT tablename FROM pg_tables WHERE schemaname='public'"))}
        assert {
            "street",
            "community",
            "grid",
            "compound",
            "building",
            "household",
            "resident",
            "facility",
            "road_edge",
            "road_node",
            "special_group",
        } <= tables
        assert c.execute(text("SELECT count(*) FROM special_group")).scalar() == 14
        assert c.execute(text("SELECT count(*) FROM facility_category")).scalar() == 16
        # every geometry column has a GiST index, except those never searched by location
        unindexed = {
            tuple(r)
            for r in c.execute(
                text(
                    "SELECT g.f_table_name, g.f_geometry_column FROM geometry_columns g "
                    "WHERE g.f_table_schema = 'public' AND NOT EXISTS (SELECT 1 FROM pg_indexes i "
                    "WHERE i.schemaname = 'public' AND i.tablename = g.f_table_name AND i.indexdef ILIKE '%USING gist%' "
                    "AND i.indexdef LIKE '%(' || g.f_geometry_column || ')%')"
                )
            )
        }
        # building_snap: rewritten in bulk by every coverage run and read by building id only (migration 0015
        # dropped its index, which cost more than the write itself at a million buildings)
        assert unindexed <= {("building_snap", "geom")}, unindexed
    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    with eng.connect() as c:
        left = {r[0] for r in c.execute(text("SELECT tablename FROM pg_tables WHERE schemaname='public'"))}
        assert left <= {"alembic_version", "spatial_ref_sys"}
    migrate.upgrade(url)  # and up again
    assert migrate.current(url) is not None
    eng.dispose()


@pytest.fixture
def hierarchy(conn):
    """A street with one community and one compound (CGCS2000 lon/lat)."""
    conn.execute(
        text("INSERT INTO street (code, name, geom) VALUES ('340104001', '测试街道', ST_GeomFromText(:g, 4490))"),
        {"g": sq(117.0, 31.0, 117.02, 31.02)},
    )
    conn.execute(
        text(
            "INSERT INTO community (code, street_code, name, geom) VALUES "
            "('340104001001', '340104001', '甲社区', ST_GeomFromText(:g, 4490)),"
            "('340104001002', '340104001', '乙社区', ST_GeomFromText(:h, 4490))"
        ),
        {"g": sq(117.0, 31.0, 117.01, 31.02), "h": sq(117.01, 31.0, 117.02, 31.02)},
    )
    conn.execute(
        text(
            "INSERT INTO compound (code, community_code, name, year_built, geom) VALUES "
            "('3401040010010001', '340104001001', '甲小区', 1995, ST_GeomFromText(:g, 4490))"
        ),
        {"g": sq(117.001, 31.001, 117.004, 31.004)},
    )
    return conn


def _fails(conn, sql, params, match):
    sp = conn.begin_nested()
    with pytest.raises(DBAPIError, match=match):
        conn.execute(text(sql), params)
    sp.rollback()


def test_rejects_invalid_polygon(hierarchy):
    bowtie = "MULTIPOLYGON(((117.001 31.001,117.003 31.003,117.003 31.001,117.001 31.003,117.001 31.001)))"
    _fails(
        hierarchy,
        "INSERT INTO compound (code, community_code, name, geom) VALUES "
        "('3401040010010002', '340104001001', 'x', ST_GeomFromText(:g, 4490))",
        {"g": bowtie},
        "geom_valid",
    )


def test_rejects_wrong_srid(hierarchy):
    _fails(
        hierarchy,
        "INSERT INTO compound (code, community_code, name, geom) VALUES "
        "('3401040010010002', '340104001001', 'x', ST_GeomFromText(:g, 4326))",
        {"g": sq(117.001, 31.001, 117.002, 31.002)},
        "SRID",
    )


def test_rejects_building_outside_its_compounds_community(hierarchy):
    cid = hierarchy.execute(text("SELECT id FROM compound")).scalar()
    # Footprint in 乙社区 while the building claims 甲社区's compound.
    _fails(
        hierarchy,
        "INSERT INTO building (code, community_code, compound_id, geom) VALUES "
        "('34010400100100001', '340104001001', :cid, ST_GeomFromText(:g, 4490))",
        {"cid": cid, "g": sq(117.015, 31.005, 117.0152, 31.0052)},
        "outside its community",
    )
    # Inside the community but outside the compound.
    _fails(
        hierarchy,
        "INSERT INTO building (code, community_code, compound_id, geom) VALUES "
        "('34010400100100001', '340104001001', :cid, ST_GeomFromText(:g, 4490))",
        {"cid": cid, "g": sq(117.006, 31.006, 117.0062, 31.0062)},
        "outside its compound",
    )
    # A building that claims a compound of another community fails the composite key.
    _fails(
        hierarchy,
        "INSERT INTO building (code, community_code, compound_id, geom) VALUES "
        "('34010400100200001', '340104001002', :cid, ST_GeomFromText(:g, 4490))",
        {"cid": cid, "g": sq(117.015, 31.005, 117.0152, 31.0052)},
        "outside its compound|building_compound_fk",
    )
    # And the correct one goes in, with its point-on-surface filled.
    hierarchy.execute(
        text(
            "INSERT INTO building (code, community_code, compound_id, geom, households) VALUES "
            "('34010400100100001', '340104001001', :cid, ST_GeomFromText(:g, 4490), 24)"
        ),
        {"cid": cid, "g": sq(117.002, 31.002, 117.0022, 31.0022)},
    )
    inside = hierarchy.execute(text("SELECT ST_Within(pos, geom) FROM building")).scalar()
    assert inside is True


def test_rejects_negative_household_count(hierarchy):
    _fails(
        hierarchy,
        "INSERT INTO building (code, community_code, geom, households) VALUES "
        "('34010400100100002', '340104001001', ST_GeomFromText(:g, 4490), -3)",
        {"g": sq(117.002, 31.002, 117.0022, 31.0022)},
        "households_check",
    )


def test_codes_must_prefix_parent(hierarchy):
    _fails(
        hierarchy,
        "INSERT INTO community (code, street_code, name, geom) VALUES "
        "('340104002003', '340104001', '错社区', ST_GeomFromText(:g, 4490))",
        {"g": sq(117.0, 31.0, 117.001, 31.001)},
        "code_prefix",
    )
    _fails(
        hierarchy,
        "INSERT INTO grid (code, community_code, geom) VALUES "
        "('34010400100100', '340104001001', ST_GeomFromText(:g, 4490))",
        {"g": sq(117.0, 31.0, 117.001, 31.001)},
        "grid_code_check",
    )


def test_metric_area_uses_gauss_kruger(hierarchy):
    srid, area = hierarchy.execute(
        text("SELECT gisgov_metric_srid(geom), gisgov_area_m2(geom) FROM community WHERE code='340104001001'")
    ).one()
    assert srid == 4548  # CGCS2000 3-degree GK CM 117E (EPSG:4534 + (117-75)/3)
    # 0.01° lon × 0.02° lat at 31°N ≈ 953 m × 2217 m
    assert 2.0e6 < area < 2.25e6
