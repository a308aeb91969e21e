"""Staff and compound rules through PostgreSQL and the HTTP API on the mini city (a database of its
own): known gaps, caseloads and breaches listed exactly; names only for personal-data roles; edits by
the right roles in scope (others 403 / 404), audited, with a stale compound version 409; the XLSX
import all or nothing with messy headers; the gap and breach maps."""

from __future__ import annotations

import io

import pytest
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from mini_city import COMM_A, COMM_B, COMPOUND_A, COMPOUND_B, GRID_A1, GRID_A2, GRID_B1, STREET, load_mini_city
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.api.routes import governance as gov_routes
from gisgov.config import Settings
from gisgov.governance import compounds as cr
from gisgov.governance.settings import get_governance_settings
from gisgov.security.pii import Vault

COMPOUND_C = "3401040010010002"
VAULT = Vault(b"t" * 32)
SCOPES = {
    "admin": "",
    "street_leader": STREET,
    "community_staff": COMM_A,
    "grid_worker": GRID_A1,
    "planner": STREET,
    "viewer": STREET,
}
RULES_YAML = """
large_households: 5
old_before_year: 2000
rules:
  large_no_party_org: {zh: "{large_households}户以上无党组织", en: "no party org"}
  large_no_service_point: {zh: "{large_households}户以上无服务点", en: "no service point"}
  old_no_property: {zh: "{old_before_year}年前无物业", en: "old without property management"}
"""


@pytest.fixture(scope="module")
def city(db_factory):
    url = db_factory.create(prefix="gisgov_test_governance")
    load_mini_city(url)
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as c:
        c.execute(
            text("""INSERT INTO compound (code, community_code, name, year_built, property_mode, geom)
            VALUES (:c, :comm, '老街坊', 1980, NULL, ST_Multi(ST_MakeEnvelope(117.212, 31.805, 117.214, 31.807, 4490)))"""),
            {"c": COMPOUND_C, "comm": COMM_A},
        )
    eng.dispose()
    return url


@pytest.fixture(scope="module")
def owner(city):
    eng = create_engine(city, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module", autouse=True)
def settings_env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    rules = tmp_path_factory.mktemp("rules") / "rules.yaml"
    rules.write_text(RULES_YAML, encoding="utf-8")
    mp.setenv("GISGOV_COMPOUND_RULES", str(rules))
    mp.setenv("GISGOV_STAFF_MAX_CASELOAD", "30")
    get_governance_settings.cache_clear()
    cr.load_rules.cache_clear()
    yield
    mp.undo()
    get_governance_settings.cache_clear()
    cr.load_rules.cache_clear()


@pytest.fixture(scope="module")
def clients(city):
    eng = app_engine(city)
    app = create_app(Settings(), engine=eng)
    if not any(getattr(r, "path", None) == "/api/staff" for r in app.routes):
        app.include_router(gov_routes.router)
    out = {}
    with TestClient(app) as base:
        for role, scope in SCOPES.items():
            c = TestClient(app)
            c.headers["Authorization"] = f"Bearer {bearer_token(base, ensure_user(city, role, scope))}"
            out[role] = c
        c = TestClient(app)
        c.headers["Authorization"] = f"Bearer {bearer_token(base, ensure_user(city, 'community_staff', COMM_B))}"
        out["community_staff_b"] = c
        yield out
    eng.dispose()


# Known staff: A1 complete (5 households / 1 full-time = 5), A2 no 网格长 (0 households),
# B1 complete but 40 households / 1 full-time = 40 > ceiling 30.
STAFF = [
    (GRID_A1, "网格长", "甲一（测试）", "13800000001"),
    (GRID_A1, "专职网格员", "甲二（测试）", "13800000002"),
    (GRID_A2, "专职网格员", "乙一（测试）", "13800000003"),
    (GRID_A2, "兼职网格员", "乙二（测试）", None),
    (GRID_B1, "网格长", "丙一（测试）", "13800000004"),
    (GRID_B1, "专职网格员", "丙二（测试）", "13800000005"),
]


@pytest.fixture
def staffed(owner):
    with owner.begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        c.execute(text("DELETE FROM grid_staff"))
        for grid, role, name, phone in STAFF:
            cipher, masked = VAULT.protect_phone(phone) if phone else (None, None)
            c.execute(
                text(
                    "INSERT INTO grid_staff (grid_id, role, name, phone_cipher, phone_masked) "
                    "SELECT id, :r, :n, :c, :m FROM grid WHERE code = :g"
                ),
                {"g": grid, "r": role, "n": name, "c": cipher, "m": masked},
            )
        c.execute(
            text(
                "UPDATE compound SET has_party_org = false, has_service_point = false, version = 1, "
                "property_mode = '物业公司', year_built = 1995 WHERE code = :a"
            ),
            {"a": COMPOUND_A},
        )
        c.execute(
            text("UPDATE compound SET has_party_org = true, has_service_point = true, version = 1 WHERE code = :b"),
            {"b": COMPOUND_B},
        )
        c.execute(text("UPDATE compound SET property_mode = NULL, version = 1 WHERE code = :c"), {"c": COMPOUND_C})


def audit_rows(owner, action):
    with owner.connect() as c:
        return c.execute(
            text("SELECT actor, object, result, detail FROM audit_log WHERE action = :a ORDER BY id"), {"a": action}
        ).all()


def test_staff_overview_gaps_and_caseload(clients, staffed, owner):
    r = clients["street_leader"].get("/api/staff")
    assert r.status_code == 200, r.text
    d = r.json()
    by = {g["code"]: g for g in d["grids"]}
    assert list(by) == [GRID_A1, GRID_A2, GRID_B1]
    assert [(g["households"], g["full_time"], g["caseload"], g["caseload_over"], g["gaps"]) for g in by.values()] == [
        (5, 1, 5.0, False, []),
        (0, 1, 0.0, False, ["no_leader"]),
        (40, 1, 40.0, True, []),
    ]
    assert by[GRID_A2]["roles"] == {"网格长": 0, "专职网格员": 1, "兼职网格员": 1, "网格指导员": 0, "信息员": 0}
    s = d["summary"]
    assert (
        s["grids"],
        s["staff"],
        s["grids_ok"],
        s["no_leader"],
        s["no_full_time"],
        s["caseload_over"],
        s["max_caseload"],
        s["ceiling"],
    ) == (3, 6, 1, [GRID_A2], [], [GRID_B1], 40.0, 30.0)
    people = by[GRID_A1]["people"]
    assert [(x["role"], x["name"], x["phone_masked"]) for x in people] == [
        ("网格长", "甲一（测试）", "138****0001"),
        ("专职网格员", "甲二（测试）", "138****0002"),
    ]
    assert d["names_shown"] is True and "1380000000" not in r.text
    assert audit_rows(owner, "read_personal")[-1].object == f"grid_staff:{STREET}"
    # only grids with a problem
    r = clients["admin"].get("/api/staff", params={"problems": True})
    assert [g["code"] for g in r.json()["grids"]] == [GRID_A2, GRID_B1]


def test_staff_names_only_for_personal_roles_and_scope(clients, staffed):
    for role in ("viewer", "planner"):
        d = clients[role].get("/api/staff").json()
        assert d["names_shown"] is False and all("people" not in g for g in d["grids"])
        assert "甲一" not in str(d) and d["summary"]["staff"] == 6
    d = clients["grid_worker"].get("/api/staff").json()  # a grid worker: its own grid
    assert [g["code"] for g in d["grids"]] == [GRID_A1] and len(d["grids"][0]["people"]) == 2
    d = clients["community_staff"].get("/api/staff", params={"code": GRID_A2}).json()
    assert [g["code"] for g in d["grids"]] == [GRID_A2]
    assert clients["community_staff"].get("/api/staff", params={"code": GRID_B1}).status_code == 404
    assert clients["grid_worker"].get("/api/staff", params={"code": GRID_A2}).status_code == 404
    d = clients["community_staff"].get("/api/staff", params={"code": STREET}).json()  # an ancestor: own node
    assert d["area"] == COMM_A and [g["code"] for g in d["grids"]] == [GRID_A1, GRID_A2]


def test_gap_map(clients, staffed):
    r = clients["viewer"].get("/api/staff/gaps")
    assert r.status_code == 200
    fc = r.json()
    assert [(f["id"], f["properties"]["gaps"], f["properties"]["caseload_over"]) for f in fc["features"]] == [
        (GRID_A2, ["no_leader"], False),
        (GRID_B1, [], True),
    ]
    assert fc["features"][0]["geometry"]["type"] == "Point"
    x, y = fc["features"][0]["geometry"]["coordinates"]
    assert 117.21 <= x <= 117.22 and 31.80 <= y <= 31.83  # inside grid A2
    assert "people" not in str(fc) and "乙一" not in str(fc)
    poly = clients["viewer"].get("/api/staff/gaps", params={"geometry": "polygon"}).json()
    assert {f["geometry"]["type"] for f in poly["features"]} == {"MultiPolygon"}
    assert clients["viewer"].get("/api/staff/gaps", params={"geometry": "hex"}).status_code == 422


def test_assign_edit_remove_staff_audited(clients, staffed, owner):
    cs = clients["community_staff"]
    r = cs.post(
        "/api/staff", json={"grid": GRID_A2, "role": "网格长", "name": "新网格长（测试）", "phone": "139-1234-5678"}
    )
    assert r.status_code == 201, r.text
    new = r.json()
    assert (
        new["phone_masked"] == "139****5678" and new["grid_code"] == GRID_A2 and new["updated_by"].startswith("t_comm")
    )
    assert clients["admin"].get("/api/staff", params={"code": GRID_A2}).json()["grids"][0]["gaps"] == []
    with owner.connect() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
        blob = c.execute(text("SELECT phone_cipher FROM grid_staff WHERE id = :i"), {"i": new["id"]}).scalar_one()
    assert b"13912345678" not in bytes(blob)
    r = cs.patch(f"/api/staff/{new['id']}", json={"role": "专职网格员", "phone": ""})
    assert r.status_code == 200 and r.json()["role"] == "专职网格员" and r.json()["phone_masked"] is None
    assert r.json()["changed"] == ["phone", "role"]
    r = cs.delete(f"/api/staff/{new['id']}")
    assert r.status_code == 200 and r.json()["removed"] is True
    rows = [a for a in audit_rows(owner, "staff_edit") if a.object == f"grid_staff:{new['id']}"]
    assert [(a.result, a.detail["op"]) for a in rows] == [("ok", "add"), ("ok", "edit"), ("ok", "remove")]
    assert rows[1].detail["changed"] == {"role": ["网格长", "专职网格员"], "phone": "removed"}
    assert "13912345678" not in str([a.detail for a in rows])


def test_staff_edit_refusals(clients, staffed, owner):
    body = {"grid": GRID_B1, "role": "网格长", "name": "越界（测试）"}
    assert clients["community_staff"].post("/api/staff", json=body).status_code == 404  # another community
    r = clients["street_leader"].post("/api/staff", json=body)
    assert r.status_code == 403 and "street_leader" in r.json()["detail"]
    assert clients["grid_worker"].post("/api/staff", json=body | {"grid": GRID_A1}).status_code == 403
    r = clients["admin"].post("/api/staff", json=body | {"role": "组长"})
    assert r.status_code == 422 and "role_unknown" in r.json()["detail"]
    r = clients["admin"].post("/api/staff", json=body | {"phone": "12345"})
    assert r.status_code == 422 and "phone_format" in r.json()["detail"]
    r = clients["admin"].post("/api/staff", json=body | {"grid": "340104001002009"})
    assert r.status_code == 404
    with owner.connect() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
        b_staff = c.execute(
            text(
                "SELECT s.id FROM grid_staff s JOIN grid g ON g.id = s.grid_id WHERE g.code = :g ORDER BY s.id LIMIT 1"
            ),
            {"g": GRID_B1},
        ).scalar_one()
    assert clients["community_staff"].patch(f"/api/staff/{b_staff}", json={"name": "x"}).status_code == 404
    assert clients["community_staff"].delete(f"/api/staff/{b_staff}").status_code == 404
    assert clients["community_staff_b"].delete(f"/api/staff/{b_staff}").status_code == 200
    denied = [a for a in audit_rows(owner, "staff_edit") if a.result == "denied"]
    assert {a.detail["status"] for a in denied} >= {403, 404}


def _xlsx(headers, rows) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(headers)
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _staff_names(owner, grid):
    with owner.connect() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
        return c.execute(
            text(
                "SELECT s.role, s.name FROM grid_staff s JOIN grid g ON g.id = s.grid_id "
                "WHERE g.code = :g ORDER BY s.id"
            ),
            {"g": grid},
        ).all()


MESSY = [" 网格编码 ", "角　色", "姓名＊", "手机号（必填）"]


def test_import_good_file_with_messy_headers(clients, staffed, owner):
    data = _xlsx(
        MESSY,
        [
            [GRID_A2, "网格长", "导入一（测试）", "13700000001"],
            [GRID_A2, "专职网格员", "导入二（测试）", 13700000002],  # a number cell
            [None, None, None, None],
            [GRID_A2, " 兼职网格员 ", "导入三（测试）", None],
        ],
    )
    r = clients["community_staff"].post(
        "/api/staff/import", files={"file": ("网格员.xlsx", data)}, data={"mode": "replace"}
    )
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["rows"], d["grids"], d["removed"], d["written"], d["gaps_after"]) == (3, 1, 2, 3, [])
    assert _staff_names(owner, GRID_A2) == [
        ("网格长", "导入一（测试）"),
        ("专职网格员", "导入二（测试）"),
        ("兼职网格员", "导入三（测试）"),
    ]
    assert len(_staff_names(owner, GRID_A1)) == 2  # grids not in the file are left alone
    a = audit_rows(owner, "import")[-1]
    assert a.result == "ok" and a.object == "grid_staff" and a.detail["rows"] == 3
    # dry run: reported, nothing written
    r = clients["community_staff"].post(
        "/api/staff/import", files={"file": ("x.xlsx", data)}, data={"mode": "append", "dry_run": "true"}
    )
    assert r.status_code == 200 and r.json()["written"] == 0 and len(_staff_names(owner, GRID_A2)) == 3


def test_import_bad_file_writes_nothing(clients, staffed, owner):
    before = {g: _staff_names(owner, g) for g in (GRID_A1, GRID_A2, GRID_B1)}
    data = _xlsx(
        ["网格编码", "角色", "姓名", "手机号"],
        [
            [GRID_A2, "网格长", "好行（测试）", "13700000001"],
            [GRID_B1, "网格长", "越界（测试）", None],  # another community: unknown to this account
            [GRID_A1, "队长", "角色错（测试）", "13700000003"],
            [GRID_A1, "信息员", "电话错（测试）", "1370000"],
        ],
    )
    r = clients["community_staff"].post("/api/staff/import", files={"file": ("bad.xlsx", data)})
    assert r.status_code == 422
    d = r.json()
    assert [(x["row"], x["rule"]) for x in d["rows"]] == [(3, "grid_unknown"), (4, "role_unknown"), (5, "phone_format")]
    assert d["error"] == "ImportRejected" and "nothing was written" in d["detail"]
    assert {g: _staff_names(owner, g) for g in before} == before
    assert audit_rows(owner, "import")[-1].result == "failed"
    r = clients["community_staff"].post(
        "/api/staff/import", files={"file": ("h.xlsx", _xlsx(["网格", "名字"], [[GRID_A1, "x"]]))}
    )
    assert r.status_code == 422 and "角色" in r.json()["detail"] and "手机号" in r.json()["detail"]
    r = clients["community_staff"].post("/api/staff/import", files={"file": ("s.csv", b"a,b\n")})
    assert r.status_code == 422 and "xlsx" in r.json()["detail"]
    r = clients["community_staff"].post("/api/staff/import", files={"file": ("e.xlsx", _xlsx(MESSY, []))})
    assert r.status_code == 422 and "no data rows" in r.json()["detail"]
    r = clients["street_leader"].post("/api/staff/import", files={"file": ("x.xlsx", data)})
    assert r.status_code == 403


def test_template_round_trip(clients, staffed, owner):
    r = clients["viewer"].get("/api/staff/template")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(r.content))
    ws = wb.worksheets[0]
    assert [c.value for c in ws[1]] == ["网格编码", "角色", "姓名", "手机号"]
    ws.append([GRID_B1, "信息员", "模板（测试）", "13700000009"])
    buf = io.BytesIO()
    wb.save(buf)
    r = clients["admin"].post("/api/staff/import", files={"file": ("t.xlsx", buf.getvalue())}, data={"mode": "append"})
    assert r.status_code == 200, r.text
    assert _staff_names(owner, GRID_B1)[-1] == ("信息员", "模板（测试）")


def test_compound_check_exact(clients, staffed):
    r = clients["viewer"].get("/api/compounds/check")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["rules"]["large_households"] == 5
    assert [(b["code"], b["rules"], b["households"]) for b in d["breaches"]] == [
        (COMPOUND_A, ["large_no_party_org", "large_no_service_point"], 5),
        (COMPOUND_C, ["old_no_property"], 0),
    ]
    a, b = d["communities"]
    assert (a["code"], a["name"], a["compounds"], a["old"], a["old_ratio"]) == (COMM_A, "东园社区", 2, 2, 1.0)
    assert {k: v["n"] for k, v in a["property_modes"].items()} == {"物业公司": 1, "业主自治": 0, "社区兜底": 0, "无": 1}
    assert (b["code"], b["compounds"], b["old_ratio"], b["households"]) == (COMM_B, 1, 0.0, 40)
    assert d["totals"]["old_ratio"] == round(2 / 3, 4)
    # a grid worker sees its community's compounds; households counted over the whole compound
    g = clients["grid_worker"].get("/api/compounds/check").json()
    assert [c["code"] for c in g["communities"]] == [COMM_A] and g["breaches"][0]["households"] == 5
    assert clients["community_staff"].get("/api/compounds/check", params={"code": COMM_B}).status_code == 404
    m = clients["viewer"].get("/api/compounds/breaches", params={"code": COMM_A}).json()
    assert [f["id"] for f in m["features"]] == [COMPOUND_A, COMPOUND_C]
    assert m["features"][1]["properties"]["rules"] == ["old_no_property"]
    assert clients["viewer"].get("/api/compounds/rules").json()["rules"][0]["label"].startswith("5户以上")


def test_compound_edit_scope_audit_and_version(clients, staffed, owner):
    cs = clients["community_staff"]
    c = cs.get(f"/api/compounds/{COMPOUND_A}").json()
    assert c["version"] == 1 and c["breaches"] == ["large_no_party_org", "large_no_service_point"]
    r = cs.patch(f"/api/compounds/{COMPOUND_A}", json={"version": 1, "has_party_org": True, "has_service_point": True})
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["breaches"], r.json()["changed"]) == (
        2,
        [],
        ["has_party_org", "has_service_point"],
    )
    # the same stale version again: 409, nothing changed
    r = cs.patch(f"/api/compounds/{COMPOUND_A}", json={"version": 1, "property_mode": ""})
    assert r.status_code == 409 and "version" in r.json()["detail"]
    r = cs.patch(f"/api/compounds/{COMPOUND_C}", json={"version": 1, "property_mode": "社区兜底"})
    assert r.status_code == 200 and r.json()["breaches"] == []
    assert clients["viewer"].get("/api/compounds/check").json()["breaches"] == []
    # another community's compound: 404 (not 403); roles without the edit right: 403
    assert cs.patch(f"/api/compounds/{COMPOUND_B}", json={"version": 1, "has_party_org": False}).status_code == 404
    assert cs.get("/api/compounds/3401040010020009").status_code == 404
    for role in ("street_leader", "grid_worker", "viewer", "planner"):
        r = clients[role].patch(f"/api/compounds/{COMPOUND_A}", json={"version": 2, "has_party_org": False})
        assert r.status_code == 403, role
    r = clients["admin"].patch(f"/api/compounds/{COMPOUND_B}", json={"version": 1, "property_mode": "开发商"})
    assert r.status_code == 422
    rows = audit_rows(owner, "compound_edit")
    ok = [a for a in rows if a.result == "ok"]
    assert [(a.object, sorted(a.detail["changes"])) for a in ok[-2:]] == [
        (f"compound:{COMPOUND_A}", ["has_party_org", "has_service_point"]),
        (f"compound:{COMPOUND_C}", ["property_mode"]),
    ]
    assert ok[-1].detail["changes"]["property_mode"] == [None, "社区兜底"]
    assert {a.detail["status"] for a in rows if a.result == "denied"} >= {403, 404, 409}
    with owner.connect() as c:
        who = c.execute(text("SELECT updated_by, version FROM compound WHERE code = :c"), {"c": COMPOUND_C}).one()
    assert who.updated_by.startswith("t_community_staff") and who.version == 2
