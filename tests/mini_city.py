"""A tiny hand-made hierarchy (EPSG:4490, near 117.2°E 31.8°N) with known counts, for API/map tests.

street 340104001 示范街道
├── community 340104001001 东园社区   grids …001001 (2 buildings), …001002 (empty)
│   └── compound 3401040010010001 梧桐苑: building …00001 (3 households, 6 people),
│                                          building …00002 (2 households, 4 people)
└── community 340104001002 西湖社区   grid …002001
    └── compound 3401040010020001 碧水湾: building …00001 (no roster, households = 40 estimated)
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, pool, text

STREET = "340104001"
COMM_A, COMM_B = "340104001001", "340104001002"
GRID_A1, GRID_A2, GRID_B1 = "340104001001001", "340104001001002", "340104001002001"
COMPOUND_A, COMPOUND_B = "3401040010010001", "3401040010020001"
BLD_A1, BLD_A2, BLD_B1 = "34010400100100001", "34010400100100002", "34010400100200001"

EXPECTED = {  # households, residents
    STREET: (45, 10),
    COMM_A: (5, 10),
    COMM_B: (40, 0),
    GRID_A1: (5, 10),
    GRID_A2: (0, 0),
    GRID_B1: (40, 0),
    COMPOUND_A: (5, 10),
    COMPOUND_B: (40, 0),
}


def _box(x1, y1, x2, y2) -> str:
    return f"ST_Multi(ST_MakeEnvelope({x1}, {y1}, {x2}, {y2}, 4490))"


SQL = f"""
INSERT INTO street (code, name, geom) VALUES ('{STREET}', '示范街道', {_box(117.20, 31.80, 117.24, 31.83)});
INSERT INTO community (code, street_code, name, class, geom) VALUES
  ('{COMM_A}', '{STREET}', '东园社区', '城市社区', {_box(117.20, 31.80, 117.22, 31.83)}),
  ('{COMM_B}', '{STREET}', '西湖社区', '城市社区', {_box(117.22, 31.80, 117.24, 31.83)});
INSERT INTO grid (code, community_code, name, geom) VALUES
  ('{GRID_A1}', '{COMM_A}', '东园一网格', {_box(117.20, 31.80, 117.21, 31.83)}),
  ('{GRID_A2}', '{COMM_A}', NULL, {_box(117.21, 31.80, 117.22, 31.83)}),
  ('{GRID_B1}', '{COMM_B}', '西湖一网格', {_box(117.22, 31.80, 117.24, 31.83)});
INSERT INTO compound (code, community_code, name, year_built, property_mode, geom) VALUES
  ('{COMPOUND_A}', '{COMM_A}', '梧桐苑', 1995, '物业公司', {_box(117.202, 31.805, 117.206, 31.809)}),
  ('{COMPOUND_B}', '{COMM_B}', '碧水湾', 2010, '业主自治', {_box(117.225, 31.810, 117.229, 31.814)});
INSERT INTO building (code, community_code, compound_id, grid_id, name, floors, households, geom)
SELECT '{BLD_A1}', '{COMM_A}', (SELECT id FROM compound WHERE code = '{COMPOUND_A}'),
       (SELECT id FROM grid WHERE code = '{GRID_A1}'), '1栋', 6, 3, {_box(117.2025, 31.8055, 117.2030, 31.8060)}
UNION ALL
SELECT '{BLD_A2}', '{COMM_A}', (SELECT id FROM compound WHERE code = '{COMPOUND_A}'),
       (SELECT id FROM grid WHERE code = '{GRID_A1}'), '2栋', 6, 2, {_box(117.2040, 31.8070, 117.2045, 31.8075)}
UNION ALL
SELECT '{BLD_B1}', '{COMM_B}', (SELECT id FROM compound WHERE code = '{COMPOUND_B}'),
       (SELECT id FROM grid WHERE code = '{GRID_B1}'), '1幢', 18, 40, {_box(117.226, 31.811, 117.2265, 31.8115)};
UPDATE building SET households_estimated = true WHERE code = '{BLD_B1}';
INSERT INTO household (code, building_code, door_no) VALUES
  ('{BLD_A1}0101', '{BLD_A1}', '101'), ('{BLD_A1}0102', '{BLD_A1}', '102'), ('{BLD_A1}0201', '{BLD_A1}', '201'),
  ('{BLD_A2}0101', '{BLD_A2}', '101'), ('{BLD_A2}0102', '{BLD_A2}', '102');
INSERT INTO resident (household_id, name, gender, birth_year, role)
SELECT h.id, '居民' || g, CASE WHEN g % 2 = 0 THEN '男' ELSE '女' END, 1950 + g, '其他'
FROM household h
JOIN (VALUES ('{BLD_A1}0101', 2), ('{BLD_A1}0102', 3), ('{BLD_A1}0201', 1),
             ('{BLD_A2}0101', 3), ('{BLD_A2}0102', 1)) AS n(code, k) ON n.code = h.code
CROSS JOIN LATERAL generate_series(1, n.k) AS g;
INSERT INTO facility (code, name, category_code, kind, community_code, geom) VALUES
  ('F0001', '东园社区卫生服务站', 'weisheng', '卫生服务站', '{COMM_A}', ST_SetSRID(ST_MakePoint(117.207, 31.812), 4490));
INSERT INTO road_node (id, geom) VALUES
  (1, ST_SetSRID(ST_MakePoint(117.20, 31.815), 4490)), (2, ST_SetSRID(ST_MakePoint(117.24, 31.815), 4490));
INSERT INTO road_edge (source, target, class, name, length_m, geom) VALUES
  (1, 2, 'arterial', '示范路', 3786.0, ST_SetSRID(ST_MakeLine(ST_MakePoint(117.20, 31.815), ST_MakePoint(117.24, 31.815)), 4490));
INSERT INTO gisgov_meta (key, value) VALUES ('dataset', '{{"name": "mini test city", "synthetic": true}}')
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
"""


def load_mini_city(url: str) -> None:
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.begin() as conn:
            conn.execute(text(SQL))
    finally:
        eng.dispose()


@pytest.fixture(scope="session")
def mini_city_url(db_factory) -> str:
    """A fresh migrated database holding the mini city (read-only for tests)."""
    url = db_factory.create()
    load_mini_city(url)
    return url


@pytest.fixture(scope="session")
def mini_city_engine(mini_city_url):
    eng = create_engine(mini_city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()
