"""Drill-down statistics (/api/stats…) on the full synthetic sample city, against naive SQL.

Two settings: the sample city as loaded (no grids, no staff, no coverage yet), read-only, served by
an app that connects as the app role (row-level security) to signed-in clients of each role; and the
same city inside one rolled-back transaction where a community gets an active plan of two grids (and
a draft plan reusing a code, which must never show), staff, one building outside every grid, and
the service-circle coverage computed by the coverage module — whose stored figures the
statistics' own SQL must reproduce.

Scope and small cells: a street leader sees exact numbers; a viewer sees special-group counts below
5 as "<5" and cannot recover them from any total on the pages (checked by interval arithmetic over
the responses, written independently of the suppression module); a community-bound account gets 404
for a sibling community and sees only its own street and community.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from auth_helpers import USER_PASSWORD, app_engine, bearer_token, signed_in_client
from fastapi.testclient import TestClient
from sample_fixtures import sample_city, sample_city_url  # noqa: F401  (fixtures)
from shapely.geometry import shape
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.api.deps import db
from gisgov.config import Settings
from gisgov.coverage.service import CoverageService
from gisgov.security.passwords import hash_password

STREET = "340104001"
COMMUNITY = "340104001001"  # first community of the sample city (望湖)
PLANNED = "340104001002"  # the community that gets two grids in the planned setting
COMPOUND = "3401040010010001"
REF_YEAR = 2024  # the sample dataset's reference_date 2024-11-23
ADDITIVE = ("households", "residents", "buildings")
AGE = ("0-14", "15-59", "60+", "80+", "unknown")
STAFF = (
    [("网格长", "测试甲"), ("专职网格员", "测试乙"), ("兼职网格员", "测试丙"), ("兼职网格员", "测试丁")],
    [("网格长", "测试戊"), ("专职网格员", "测试己"), ("信息员", "测试庚")],
)
FORBIDDEN_KEYS = {
    "id_hash",
    "id_cipher",
    "id_last4",
    "phone_cipher",
    "phone_masked",
    "phone",
    "birth_year",
    "gender",
    "household_code",
    "door_no",
    "address",
    "id_number",
}

# Buildings of a unit, written independently of the statistics' own fragments.
WHERE = {
    "city": "TRUE",
    "street": "left(b.community_code, 9) = :code",
    "community": "b.community_code = :code",
    "grid": "b.grid_id = :gid",
    "compound": "b.compound_id = (SELECT id FROM compound WHERE code = :code)",
}


def naive(conn, level: str, code: str | None, gid: int | None = None) -> dict:
    """Ground truth by plain per-table counting (correlated subqueries, no GROUPING SETS)."""
    p = {"code": code, "gid": gid, "y": REF_YEAR}
    w = WHERE[level]
    one = lambda sql: conn.execute(text(sql.format(w=w)), p).scalar()  # noqa: E731
    res = "FROM resident r JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code WHERE {w}"
    age = {
        "0-14": one(f"SELECT count(*) {res} AND :y - r.birth_year <= 14"),
        "15-59": one(f"SELECT count(*) {res} AND :y - r.birth_year BETWEEN 15 AND 59"),
        "60+": one(f"SELECT count(*) {res} AND :y - r.birth_year >= 60"),
        "80+": one(f"SELECT count(*) {res} AND :y - r.birth_year >= 80"),
        "unknown": one(f"SELECT count(*) {res} AND r.birth_year IS NULL"),
    }
    groups = dict(
        conn.execute(
            text(
                f"SELECT rg.group_code, count(*) FROM resident_group rg JOIN resident r ON r.id = rg.resident_id "
                f"JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code "
                f"WHERE {w} GROUP BY rg.group_code"
            ),
            p,
        ).all()
    )
    return {
        "buildings": one("SELECT count(*) FROM building b WHERE {w}"),
        "households": one(
            "SELECT coalesce(sum(CASE WHEN (SELECT count(*) FROM household h WHERE h.building_code = b.code) > 0 "
            "THEN (SELECT count(*) FROM household h WHERE h.building_code = b.code) "
            "ELSE coalesce(b.households, 0) END), 0) FROM building b WHERE {w}"
        ),
        "residents": one(f"SELECT count(*) {res}"),
        "age": age,
        "special_people": one(
            "SELECT count(DISTINCT rg.resident_id) FROM resident_group rg JOIN resident r ON r.id = rg.resident_id "
            "JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code WHERE {w}"
        ),
        "groups": groups,
    }


def assert_matches(stats: dict, truth: dict) -> None:
    for k in ADDITIVE:
        assert stats[k] == truth[k], k
    assert stats["age"] == truth["age"]
    assert stats["special"]["people"] == truth["special_people"]
    assert {g: n for g, n in stats["special"]["groups"].items() if n} == truth["groups"]


def assert_children_sum(doc: dict) -> None:
    """children + rest = unit for every additive count (people, ages, groups; compounds too for areas)."""
    items = [c["stats"] for c in doc["children"]["items"]] + (
        [doc["children"]["rest"]] if doc["children"]["rest"] else []
    )
    s = doc["stats"]
    for k in ADDITIVE:
        assert sum(c[k] for c in items) == s[k], k
    for band in AGE:
        assert sum(c["age"][band] for c in items) == s["age"][band], band
    assert sum(c["special"]["people"] for c in items) == s["special"]["people"]
    for g, n in s["special"]["groups"].items():
        assert sum(c["special"]["groups"][g] for c in items) == n, g


def walk(obj, keys: set, strings: set) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            keys.add(k)
            walk(v, keys, strings)
    elif isinstance(obj, list):
        for v in obj:
            walk(v, keys, strings)
    elif isinstance(obj, str):
        strings.add(obj)


@pytest.fixture(scope="module")
def sample_engine(sample_city_url):
    eng = create_engine(sample_city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def app_eng(sample_city_url):
    eng = app_engine(sample_city_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def clients(sample_city_url, app_eng):
    """Signed-in clients by (role, scope), made once per module."""
    made: dict = {}
    with ExitStack() as stack:

        def get_client(role: str, scope: str = ""):
            if (role, scope) not in made:
                made[role, scope] = stack.enter_context(
                    signed_in_client(Settings(), sample_city_url, role=role, scope=scope, engine=app_eng)
                )
            return made[role, scope]

        yield get_client


@pytest.fixture(scope="module")
def client(clients):
    return clients("admin")


def get(client, url: str, **params) -> dict:
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    return r.json()


# --- the sample city as loaded --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "level,code",
    [
        ("city", None),
        ("street", "340104001"),
        ("street", "340104002"),
        ("community", COMMUNITY),
        ("compound", COMPOUND),
    ],
)
def test_unit_numbers_equal_naive_sql(client, sample_engine, level, code):
    doc = get(client, "/api/stats" if level == "city" else f"/api/stats/{level}/{code}")
    assert doc["level"] == level and doc["code"] == code and doc["reference_year"] == REF_YEAR
    with sample_engine.connect() as conn:
        assert_matches(doc["stats"], naive(conn, level, code))
        if level in ("city", "street", "community"):
            where = {
                "city": "TRUE",
                "street": "left(community_code, 9) = :code",
                "community": "community_code = :code",
            }[level]
            n, old = conn.execute(
                text(f"SELECT count(*), count(*) FILTER (WHERE year_built < 2000) FROM compound WHERE {where}"),
                {"code": code},
            ).one()
            assert (doc["stats"]["compounds"], doc["stats"]["old_compounds"]) == (n, old)
            assert doc["stats"]["old_compound_share"] == round(old / n, 4)
    s = doc["stats"]
    assert s["elderly_share"] == round(s["age"]["60+"] / s["residents"], 4)
    assert s["grids"] == 0 and s["coverage"] is None  # no plan, no coverage computed yet
    assert doc["coverage"]["available"] is False and doc["coverage"]["circle"] == "c15"


def test_whole_city_totals_and_special_groups(client, sample_engine):
    doc = get(client, "/api/stats")
    s = doc["stats"]
    with sample_engine.connect() as conn:
        assert s["residents"] == conn.execute(text("SELECT count(*) FROM resident")).scalar() > 100_000
        assert s["buildings"] == conn.execute(text("SELECT count(*) FROM building")).scalar()
        memberships = dict(conn.execute(text("SELECT group_code, count(*) FROM resident_group GROUP BY 1")).all())
        people = conn.execute(text("SELECT count(DISTINCT resident_id) FROM resident_group")).scalar()
        labels = conn.execute(text("SELECT code, name_zh FROM special_group ORDER BY sort")).all()
    assert sum(s["special"]["groups"].values()) == sum(memberships.values())  # matches resident_group
    assert {g: n for g, n in s["special"]["groups"].items() if n} == memberships
    assert s["special"]["people"] == people <= sum(memberships.values())
    assert s["special"]["per_1000"] == round(1000 * people / s["residents"], 2)
    assert [(g["code"], g["name_zh"]) for g in doc["labels"]["special_groups"]] == [tuple(r) for r in labels]
    assert len(labels) == 14 and labels[0][1] == "特困"
    assert doc["path"] == [] and doc["name"] == "示例城" and doc["synthetic"] is True
    assert [c["level"] for c in doc["children"]["items"]] == ["street", "street"]
    assert [r["role"] for r in doc["labels"]["staff_roles"]][:3] == ["网格长", "专职网格员", "兼职网格员"]


@pytest.mark.parametrize(
    "url",
    ["/api/stats", "/api/stats/street/340104001", "/api/stats/street/340104002", f"/api/stats/community/{COMMUNITY}"],
)
def test_children_sum_to_the_parent(client, url):
    doc = get(client, url)
    assert doc["children"]["items"] and doc["children"]["rest"] is None
    assert_children_sum(doc)
    assert sum(c["stats"]["compounds"] for c in doc["children"]["items"]) == doc["stats"]["compounds"]
    assert sum(c["stats"]["old_compounds"] for c in doc["children"]["items"]) == doc["stats"]["old_compounds"]


def test_drill_path_and_children_levels(client):
    street = get(client, f"/api/stats/street/{STREET}")
    assert street["children"]["level"] == "community" and len(street["children"]["items"]) == 6
    assert [p["level"] for p in street["path"]] == ["city"]
    comm = get(client, f"/api/stats/community/{COMMUNITY}")
    assert comm["children"]["level"] == "compound"  # no grids yet: compounds
    assert [(p["level"], p["code"]) for p in comm["path"]] == [("city", None), ("street", STREET)]
    assert comm["path"][1]["name"] == street["name"]
    leaf = get(client, f"/api/stats/compound/{COMPOUND}")
    assert leaf["children"]["level"] is None and leaf["children"]["items"] == []
    assert leaf["stats"]["staff"] is None and leaf["stats"]["compounds"] == 1
    assert [p["level"] for p in leaf["path"]] == ["city", "street", "community"]


def test_features_are_the_children_in_wgs84(client):
    stats = get(client, f"/api/stats/street/{STREET}")
    r = client.get(f"/api/stats/street/{STREET}/features")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    roles = [f["properties"]["role"] for f in fc["features"]]
    assert roles == ["unit"] + ["child"] * 6
    assert [f["id"] for f in fc["features"][1:]] == [c["code"] for c in stats["children"]["items"]]
    for f in fc["features"]:
        g = shape(f["geometry"])
        assert g.is_valid and 117 < g.bounds[0] < g.bounds[2] < 118 and 31 < g.bounds[1] < g.bounds[3] < 32
    city = client.get("/api/stats/features").json()
    assert [f["properties"]["level"] for f in city["features"]] == ["street", "street"]


@pytest.mark.parametrize(
    "url,status,words",
    [
        ("/api/stats/bogus/340104001", 404, "unknown level"),
        ("/api/stats/building/34010400100100001", 404, "unknown level"),
        ("/api/stats/street/12", 422, "9 digits"),
        ("/api/stats/street/34010400a", 422, "9 digits"),
        ("/api/stats/community/340104001", 422, "12 digits"),
        ("/api/stats/grid/3401040010010", 422, "15 digits"),
        ("/api/stats/street/340104099", 404, "未找到街道"),
        ("/api/stats/community/340104001099", 404, "community not found"),
        ("/api/stats/grid/340104001001001", 404, "grid not found"),
        ("/api/stats/compound/3401040010019999", 404, "compound not found"),
        ("/api/stats/street/340104099/features", 404, "street not found"),
        ("/api/stats/compound/12/features", 422, "16 digits"),
        ("/api/stats?profile=fast", 422, "unknown walking profile"),
    ],
)
def test_errors(client, url, status, words):
    r = client.get(url)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_no_personal_data_in_the_json(client, sample_engine):
    keys: set = set()
    strings: set = set()
    for url in (
        "/api/stats",
        f"/api/stats/street/{STREET}",
        f"/api/stats/community/{COMMUNITY}",
        f"/api/stats/compound/{COMPOUND}",
    ):
        walk(get(client, url), keys, strings)
    assert not keys & FORBIDDEN_KEYS
    with sample_engine.connect() as conn:
        names = set(conn.execute(text("SELECT DISTINCT name FROM resident")).scalars())
        last4 = set(conn.execute(text("SELECT DISTINCT id_last4 FROM resident WHERE id_last4 IS NOT NULL")).scalars())
    assert len(names) > 1000
    assert not strings & names
    assert not strings & last4


# --- scope and small cells -------------------------------------------------------------------------------

SIBLING = "340104001002"  # another community of the same street
OTHER_STREET = "340104002"
SIBLING_COMPOUND = "3401040010020001"


def columns(doc: dict) -> list[str]:
    return ["people"] + [g["code"] for g in doc["labels"]["special_groups"]]


def cell(stats: dict, column: str):
    return stats["special"]["people"] if column == "people" else stats["special"]["groups"][column]


def interval(value, residents: int, k: int = 5) -> tuple[int, int]:
    """What a reader of the page knows about one figure (independent of the suppression module)."""
    if isinstance(value, int):
        return value, value
    if value == f"<{k}":
        return 0, min(k - 1, residents)
    assert value == f"≥{k}", value
    return k, residents


def recover(total: tuple[int, int], parts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each part's feasible range from total = sum(parts) (exact for one linear equation)."""
    lo_sum = sum(p[0] for p in parts)
    hi_sum = sum(p[1] for p in parts)
    return [(max(p[0], total[0] - (hi_sum - p[1])), min(p[1], total[1] - (lo_sum - p[0]))) for p in parts]


def page_blocks(doc: dict) -> list[dict]:
    items = [c["stats"] for c in doc["children"]["items"]]
    return items + ([doc["children"]["rest"]] if doc["children"]["rest"] else [])


def test_viewer_sees_small_cells_as_strings_and_cannot_recover_them(clients):
    viewer = clients("viewer", STREET)
    leader = clients("street_leader", STREET)  # same area, exact numbers
    pages = {}
    for url in (f"/api/stats/street/{STREET}", f"/api/stats/community/{COMMUNITY}", "/api/stats"):
        doc, exact = get(viewer, url), get(leader, url)
        pages[url] = doc
        assert doc["suppression"]["k"] == 5 and exact["suppression"] is None
        small = 0
        for col in columns(doc):
            shown = [(doc["stats"], exact["stats"]), *list(zip(page_blocks(doc), page_blocks(exact), strict=True))]
            for s, e in shown:
                v, truth = cell(s, col), cell(e, col)
                if isinstance(v, int):
                    assert v == truth and (v >= 5 or e["residents"] == 0), (url, col, v)
                elif v == "<5":
                    small += 1
                    assert truth < 5 and e["residents"] > 0
                else:
                    assert v == "≥5" and truth >= 5
                if col == "people" and not isinstance(v, int):
                    assert s["special"]["per_1000"] is None
            # the unit's total = children + rest: no "<5" child can be pinned to one value
            t = interval(cell(doc["stats"], col), doc["stats"]["residents"])
            parts = page_blocks(doc)
            ranges = recover(t, [interval(cell(b, col), b["residents"]) for b in parts])
            for b, (lo, hi) in zip(parts, ranges, strict=True):
                if cell(b, col) == "<5":
                    assert lo < hi, (url, col, b, lo, hi)
        if url != "/api/stats":
            assert small > 0, url  # the sample city has small cells at these levels
    # the same figure is suppressed alike on every page that shows it
    street, comm = pages[f"/api/stats/street/{STREET}"], pages[f"/api/stats/community/{COMMUNITY}"]
    row = next(c for c in street["children"]["items"] if c["code"] == COMMUNITY)
    assert row["stats"]["special"] == comm["stats"]["special"]
    assert pages["/api/stats"]["children"]["items"][0]["stats"]["special"] == street["stats"]["special"]
    # a compound's own page agrees with its row in the community
    for c in comm["children"]["items"][:5]:
        assert get(viewer, f"/api/stats/compound/{c['code']}")["stats"]["special"] == c["stats"]["special"]


def test_complementary_suppression_on_a_compound_level_page(clients, client):
    """Some community has exactly one primary small cell in a column under a shown total: the
    page then carries a complementary "≥5" and the small cell still cannot be pinned."""
    viewer = clients("viewer", STREET)
    complements = 0
    for comm in get(client, f"/api/stats/street/{STREET}")["children"]["items"]:
        doc = get(viewer, f"/api/stats/community/{comm['code']}")
        for col in columns(doc):
            vals = [cell(b, col) for b in page_blocks(doc)]
            complements += vals.count("≥5")
            if isinstance(cell(doc["stats"], col), int):
                assert vals.count("<5") + vals.count("≥5") != 1, (comm["code"], col, vals)
    assert complements > 0


def test_street_leader_sees_exact_numbers(clients, sample_engine):
    leader = clients("street_leader", STREET)
    for level, code in (("street", STREET), ("community", COMMUNITY), ("compound", COMPOUND)):
        doc = get(leader, f"/api/stats/{level}/{code}")
        assert doc["suppression"] is None and doc["area"]["limited"] is False
        with sample_engine.connect() as conn:
            assert_matches(doc["stats"], naive(conn, level, code))
        strings: set = set()
        walk([b["special"] for b in [doc["stats"], *page_blocks(doc)]], set(), strings)
        assert not strings
    city = get(leader, "/api/stats")
    assert [c["code"] for c in city["children"]["items"]] == [STREET]
    assert city["area"]["limited"] is True
    assert city["stats"]["residents"] == get(leader, f"/api/stats/street/{STREET}")["stats"]["residents"]
    assert leader.get(f"/api/stats/street/{OTHER_STREET}").status_code == 404


def test_community_account_sees_its_community_whole_and_nothing_beside_it(clients, sample_engine):
    staff = clients("community_staff", COMMUNITY)  # exact numbers, community scope
    doc = get(staff, f"/api/stats/community/{COMMUNITY}")
    assert doc["area"]["limited"] is False
    with sample_engine.connect() as conn:
        assert_matches(doc["stats"], naive(conn, "community", COMMUNITY))  # complete, not cut by RLS
    assert_children_sum(doc)
    viewer = clients("viewer", COMMUNITY)
    for url in (
        f"/api/stats/community/{SIBLING}",
        f"/api/stats/community/{SIBLING}/features",
        f"/api/stats/compound/{SIBLING_COMPOUND}",
        f"/api/stats/street/{OTHER_STREET}",
    ):
        r = viewer.get(url)
        assert r.status_code == 404, (url, r.text)
    # worded like an unknown code: nothing to probe
    unknown = viewer.get("/api/stats/community/340104001099").json()["detail"]
    assert viewer.get(f"/api/stats/community/{SIBLING}").json()["detail"] == unknown.replace("340104001099", SIBLING)
    city = get(viewer, "/api/stats")
    assert [c["code"] for c in city["children"]["items"]] == [STREET] and city["area"]["limited"] is True
    street = get(viewer, f"/api/stats/street/{STREET}")
    assert [c["code"] for c in street["children"]["items"]] == [COMMUNITY]
    assert street["area"]["limited"] is True and street["area"]["note"]
    own = get(viewer, f"/api/stats/community/{COMMUNITY}")
    for k in ADDITIVE:  # the street and the city count only the community: no misleading totals
        assert street["stats"][k] == city["stats"][k] == own["stats"][k] == doc["stats"][k]
    assert street["stats"]["special"] == own["stats"]["special"]
    fc = viewer.get("/api/stats/features").json()
    assert [f["properties"]["code"] for f in fc["features"]] == [STREET]
    fc = viewer.get(f"/api/stats/street/{STREET}/features").json()
    assert [f["properties"]["code"] for f in fc["features"] if f["properties"]["role"] == "child"] == [COMMUNITY]


def test_stats_need_sign_in(sample_city_url, app_eng):
    with TestClient(create_app(Settings(), engine=app_eng)) as anon:
        for url in ("/api/stats", f"/api/stats/street/{STREET}", "/api/stats/features"):
            assert anon.get(url).status_code == 401


# --- grids, staff and coverage (one rolled-back transaction) -------------------------------------------

GRIDS_SQL = """
WITH c AS (SELECT code, geom, ST_XMin(geom) AS x0, ST_XMax(geom) AS x1, ST_YMin(geom) AS y0, ST_YMax(geom) AS y1,
                  ST_SRID(geom) AS srid FROM community WHERE code = :c),
plan AS (INSERT INTO grid_plan (community_code, version, status, author, activated)
         SELECT code, 1, 'active', 'test', now() FROM c RETURNING id)
INSERT INTO grid (code, community_code, plan_id, geom)
SELECT c.code || s.seq, c.code, plan.id,
       ST_Multi(ST_CollectionExtract(ST_Intersection(c.geom, ST_MakeEnvelope(
           CASE s.half WHEN 0 THEN c.x0 ELSE (c.x0 + c.x1) / 2 END, c.y0,
           CASE s.half WHEN 0 THEN (c.x0 + c.x1) / 2 ELSE c.x1 END, c.y1, c.srid)), 3))
FROM c, plan, (VALUES ('001', 0), ('002', 1)) AS s(seq, half)
RETURNING id, code
"""


@pytest.fixture(scope="module")
def planned(sample_engine, app_eng):
    """(client, conn, grids {code: id}, unassigned building id): see the module docstring."""
    with sample_engine.connect() as conn:
        tx = conn.begin()
        try:
            grids = {r.code: r.id for r in conn.execute(text(GRIDS_SQL), {"c": PLANNED})}
            ids = list(grids.values())
            conn.execute(
                text(
                    "UPDATE building b SET grid_id = g.id FROM grid g WHERE g.id = ANY(:ids) "
                    "AND b.community_code = :c AND ST_Intersects(g.geom, b.pos)"
                ),
                {"ids": ids, "c": PLANNED},
            )
            lone = conn.execute(
                text(
                    "UPDATE building SET grid_id = NULL WHERE id = (SELECT min(id) FROM building "
                    "WHERE community_code = :c) RETURNING id"
                ),
                {"c": PLANNED},
            ).scalar()
            # a draft plan re-using the first code: never part of the figures or the map
            conn.execute(
                text(
                    "WITH p AS (INSERT INTO grid_plan (community_code, version, status) VALUES (:c, 2, 'draft') RETURNING id) "
                    "INSERT INTO grid (code, community_code, plan_id, geom) SELECT :c || '001', :c, p.id, c.geom "
                    "FROM p, community c WHERE c.code = :c"
                ),
                {"c": PLANNED},
            )
            for gid, staff in zip(ids, STAFF, strict=True):
                for i, (role, name) in enumerate(staff):
                    conn.execute(
                        text("INSERT INTO grid_staff (grid_id, role, name, phone_masked) VALUES (:g, :r, :n, :p)"),
                        {"g": gid, "r": role, "n": name, "p": f"139****{gid % 100:02d}{i:02d}"},
                    )
            CoverageService().compute(conn)
            with signed_in_client(Settings(), sample_engine, role="admin", engine=app_eng) as c:
                c.app.dependency_overrides[db] = lambda: conn
                yield c, conn, grids, lone
        finally:
            tx.rollback()


def test_community_with_grids_has_grid_children_staff_and_rest(planned):
    client, conn, grids, lone = planned
    doc = get(client, f"/api/stats/community/{PLANNED}")
    ch = doc["children"]
    assert ch["level"] == "grid" and [c["code"] for c in ch["items"]] == sorted(grids)  # draft grid not listed
    assert [c["name"] for c in ch["items"]] == ["网格001", "网格002"]
    s = doc["stats"]
    assert s["grids"] == 2
    assert s["staff"]["total"] == 7
    assert s["staff"]["roles"] == {"网格长": 2, "专职网格员": 2, "兼职网格员": 2, "网格指导员": 0, "信息员": 1}
    g1, g2 = (c["stats"] for c in ch["items"])
    assert g1["staff"]["roles"]["兼职网格员"] == 2 and g2["staff"]["roles"]["信息员"] == 1
    assert g1["grids"] == g2["grids"] == 1
    assert_children_sum(doc)
    assert ch["rest"]["buildings"] == 1  # the building outside every grid
    lone_hh = conn.execute(
        text(
            "SELECT CASE WHEN x.n > 0 THEN x.n ELSE coalesce(b.households, 0) END FROM building b, "
            "LATERAL (SELECT count(*) AS n FROM household h WHERE h.building_code = b.code) x "
            "WHERE b.id = :b"
        ),
        {"b": lone},
    ).scalar()
    assert ch["rest"]["households"] == lone_hh > 0
    for c in ch["items"]:
        assert_matches(c["stats"], naive(conn, "grid", None, gid=grids[c["code"]]))
    city = get(client, "/api/stats")
    assert city["stats"]["grids"] == 2 and city["stats"]["staff"]["total"] == 7
    assert sum(c["stats"]["staff"]["total"] for c in city["children"]["items"]) == 7


def test_grid_unit_and_its_compounds(planned):
    client, conn, grids, _ = planned
    code = sorted(grids)[0]
    doc = get(client, f"/api/stats/grid/{code}")
    assert doc["name"] == "网格001" and [p["level"] for p in doc["path"]] == ["city", "street", "community"]
    assert_matches(doc["stats"], naive(conn, "grid", None, gid=grids[code]))  # the active grid, not the draft
    assert doc["stats"]["staff"]["total"] == 4 and doc["stats"]["grids"] == 1
    assert doc["children"]["level"] == "compound" and doc["children"]["items"]
    assert_children_sum(doc)
    for c in doc["children"]["items"]:
        outside = conn.execute(
            text(
                "SELECT count(*) FROM building b JOIN compound cp ON cp.id = b.compound_id "
                "WHERE cp.code = :c AND b.grid_id IS DISTINCT FROM :g"
            ),
            {"c": c["code"], "g": grids[code]},
        ).scalar()
        assert c["partial"] == (outside > 0)
        assert c["stats"]["staff"] is None and c["stats"]["grids"] == 1
    fc = client.get(f"/api/stats/community/{PLANNED}/features").json()
    assert [f["properties"]["role"] for f in fc["features"]] == ["unit", "child", "child"]
    draft_area = conn.execute(
        text(
            "SELECT ST_Area(geom) FROM grid g JOIN grid_plan p ON p.id = g.plan_id "
            "WHERE p.status = 'draft' AND g.community_code = :c"
        ),
        {"c": PLANNED},
    ).scalar()
    assert all(shape(f["geometry"]).area < draft_area * 0.9 for f in fc["features"][1:])


def test_compound_counts_the_grids_of_its_buildings(planned):
    client, conn, _grids, _ = planned
    rows = conn.execute(
        text(
            "SELECT cp.code, count(DISTINCT b.grid_id) AS n, min(g.code) AS one, "
            "count(*) = count(b.grid_id) AS all_in FROM compound cp JOIN building b ON b.compound_id = cp.id "
            "LEFT JOIN grid g ON g.id = b.grid_id WHERE cp.community_code = :c GROUP BY cp.code ORDER BY cp.code"
        ),
        {"c": PLANNED},
    ).all()
    assert rows
    for r in rows:
        doc = get(client, f"/api/stats/compound/{r.code}")
        assert doc["stats"]["grids"] == r.n and doc["stats"]["staff"] is None
        in_one = r.n == 1 and r.all_in
        assert [p["level"] for p in doc["path"]][-1] == ("grid" if in_one else "community")
        if in_one:
            assert doc["path"][-1]["code"] == r.one


def _figures(conn, level: str, profile: str = "standard") -> dict:
    """coverage_figure rows of the coverage module: {(code, kind, item): (households, households_in)}."""
    rows = conn.execute(
        text(
            "SELECT code, item_kind, item, households, households_in FROM coverage_figure "
            "WHERE level = :l AND profile = :p AND ((item_kind = 'category' AND circle = 'c15') "
            "OR (item_kind = 'complete' AND item = 'report16_town' AND circle = 'c15'))"
        ),
        {"l": level, "p": profile},
    ).all()
    return {(r.code, r.item_kind, r.item): (round(r.households), round(r.households_in)) for r in rows}


def _assert_coverage(stats: dict, code: str, figures: dict) -> None:
    cov = stats["coverage"]
    assert cov is not None
    assert (cov["complete"]["households"], cov["complete"]["households_in"]) == figures[
        (code, "complete", "report16_town")
    ]
    for cat, v in cov["categories"].items():
        total, inside = figures[(code, "category", cat)]
        assert (stats["households"], v["households_in"]) == (total, inside), (code, cat)
        assert v["share"] == (round(inside / total, 4) if total else None)


@pytest.mark.parametrize("profile", ["standard", "elderly"])
def test_coverage_shares_reproduce_the_coverage_module(planned, profile):
    client, conn, _grids, _ = planned
    city = get(client, "/api/stats", profile=profile)
    assert city["coverage"]["available"] is True and city["coverage"]["profile"] == profile
    assert len(city["coverage"]["categories"]) == 16
    streets = _figures(conn, "street", profile)
    for c in city["children"]["items"]:
        _assert_coverage(c["stats"], c["code"], streets)
    whole = city["stats"]["coverage"]["complete"]
    assert whole["households_in"] == sum(v[1] for k, v in streets.items() if k[1] == "complete")
    street = get(client, f"/api/stats/street/{STREET}", profile=profile)
    _assert_coverage(street["stats"], STREET, streets)
    communities = _figures(conn, "community", profile)
    for c in street["children"]["items"]:
        _assert_coverage(c["stats"], c["code"], communities)
    grid_figs = _figures(conn, "grid", profile)
    planned_doc = get(client, f"/api/stats/community/{PLANNED}", profile=profile)
    for c in planned_doc["children"]["items"]:
        _assert_coverage(c["stats"], c["code"], grid_figs)
    compounds = _figures(conn, "compound", profile)
    comm = get(client, f"/api/stats/community/{COMMUNITY}", profile=profile)
    for c in comm["children"]["items"]:
        _assert_coverage(c["stats"], c["code"], compounds)


def test_elderly_circles_are_never_wider(planned):
    client, *_ = planned
    std = get(client, f"/api/stats/street/{STREET}")["stats"]["coverage"]
    old = get(client, f"/api/stats/street/{STREET}", profile="elderly")["stats"]["coverage"]
    assert old["complete"]["households_in"] <= std["complete"]["households_in"]
    assert all(old["categories"][k]["households_in"] <= v["households_in"] for k, v in std["categories"].items())


@pytest.fixture(scope="module")
def planned_as(planned, sample_engine, app_eng):
    """Clients of other roles on the planned transaction: planned_as(role, scope)."""
    _, conn, _, _ = planned
    made: dict = {}
    with ExitStack() as stack:

        def get_client(role: str, scope: str = ""):
            if (role, scope) not in made:
                c = stack.enter_context(
                    signed_in_client(Settings(), sample_engine, role=role, scope=scope, engine=app_eng)
                )
                c.app.dependency_overrides[db] = lambda: conn
                made[role, scope] = c
            return made[role, scope]

        yield get_client


def test_grid_staff_names_only_for_personal_roles_phones_masked(planned, planned_as):
    client, conn, grids, _ = planned
    first = sorted(grids)[0]
    staff = conn.execute(text("SELECT name, phone_masked FROM grid_staff")).all()
    assert len(staff) == 7
    names, phones = {r.name for r in staff}, {r.phone_masked for r in staff}
    for c in (client, planned_as("street_leader", STREET)):
        doc = get(c, f"/api/stats/grid/{first}")
        assert [(x["role"], x["name"]) for x in doc["staff_list"]] == STAFF[0]
        assert all(set(x) == {"role", "name", "phone_masked"} for x in doc["staff_list"])
        assert {x["phone_masked"] for x in doc["staff_list"]} <= phones
        assert all("****" in x["phone_masked"] for x in doc["staff_list"])
        assert get(c, f"/api/stats/community/{PLANNED}")["staff_list"] is None
    for role in ("viewer", "planner"):
        c = planned_as(role, STREET)
        keys: set = set()
        strings: set = set()
        for url in ("/api/stats", f"/api/stats/community/{PLANNED}", f"/api/stats/grid/{first}"):
            doc = get(c, url)
            assert doc["staff_list"] is None
            walk(doc, keys, strings)
        assert doc["stats"]["staff"]["total"] == 4  # counts stay
        assert not strings & (names | phones)
        assert not keys & FORBIDDEN_KEYS


def test_viewer_grid_pages_agree_with_the_community_page(planned, planned_as):
    """Grids, the building outside every grid and the parts of compounds in each grid: every page's
    small cells stay unrecoverable and a figure looks the same wherever it appears."""
    _, _, _grids, _ = planned
    viewer = planned_as("viewer", STREET)
    comm = get(viewer, f"/api/stats/community/{PLANNED}")
    assert comm["children"]["level"] == "grid" and comm["children"]["rest"] is not None
    for g in comm["children"]["items"]:
        doc = get(viewer, f"/api/stats/grid/{g['code']}")
        assert doc["stats"]["special"] == g["stats"]["special"]
        for col in columns(doc):
            t = interval(cell(doc["stats"], col), doc["stats"]["residents"])
            parts = page_blocks(doc)
            for b, (lo, hi) in zip(
                parts, recover(t, [interval(cell(b, col), b["residents"]) for b in parts]), strict=True
            ):
                if cell(b, col) == "<5":
                    assert lo < hi, (g["code"], col)
        for c in doc["children"]["items"]:
            if not c["partial"]:  # a compound wholly in the grid: its own page shows the same figures
                assert get(viewer, f"/api/stats/compound/{c['code']}")["stats"]["special"] == c["stats"]["special"]


def test_grid_bound_viewer_sees_its_grid_only(planned, sample_engine, app_eng):
    """A viewer bound to a grid: its grid whole; the community counted over the grid only; the sibling
    grid and a compound wholly in the sibling grid answer 404."""
    _, conn, grids, _ = planned
    mine, other = sorted(grids)
    with sample_engine.begin() as own:  # committed, so the app can sign it in (the grid exists only in `conn`)
        own.execute(
            text(
                "INSERT INTO app_user (username, display_name, role, scope_code, password_hash) "
                "VALUES ('t_viewer_grid', 't_viewer_grid', 'viewer', :s, :h) ON CONFLICT (username) DO NOTHING"
            ),
            {"s": mine, "h": hash_password(USER_PASSWORD)},
        )
    with TestClient(create_app(Settings(), engine=app_eng)) as c:
        c.headers["Authorization"] = f"Bearer {bearer_token(c, 't_viewer_grid')}"
        c.app.dependency_overrides[db] = lambda: conn
        grid = get(c, f"/api/stats/grid/{mine}")
        assert grid["area"]["limited"] is False and grid["suppression"]["k"] == 5
        assert grid["stats"]["residents"] == naive(conn, "grid", None, gid=grids[mine])["residents"]
        comm = get(c, f"/api/stats/community/{PLANNED}")
        assert comm["area"]["limited"] is True
        assert [x["code"] for x in comm["children"]["items"]] == [mine] and comm["children"]["rest"] is None
        for k in ADDITIVE:
            assert comm["stats"][k] == grid["stats"][k]
        assert comm["stats"]["special"] == grid["stats"]["special"]
        assert c.get(f"/api/stats/grid/{other}").status_code == 404
        assert c.get(f"/api/stats/grid/{other}/features").status_code == 404
        elsewhere = conn.execute(
            text(
                "SELECT cp.code FROM compound cp WHERE cp.community_code = :c AND NOT EXISTS (SELECT 1 FROM building b "
                "WHERE b.compound_id = cp.id AND b.grid_id IS NOT DISTINCT FROM :g) AND EXISTS (SELECT 1 FROM building b "
                "WHERE b.compound_id = cp.id) ORDER BY cp.code LIMIT 1"
            ),
            {"c": PLANNED, "g": grids[mine]},
        ).scalar()
        assert elsewhere is not None
        assert c.get(f"/api/stats/compound/{elsewhere}").status_code == 404
        assert c.get(f"/api/stats/community/{COMMUNITY}").status_code == 404


def test_staff_names_and_phones_never_leave(planned):
    client, conn, _grids, _ = planned
    keys: set = set()
    strings: set = set()
    for url in ("/api/stats", f"/api/stats/community/{PLANNED}"):
        walk(get(client, url), keys, strings)
    staff = conn.execute(text("SELECT name, phone_masked FROM grid_staff")).all()
    assert len(staff) == 7
    assert not strings & ({r.name for r in staff} | {r.phone_masked for r in staff})
    assert not keys & FORBIDDEN_KEYS
