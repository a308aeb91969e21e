"""Re-importing changed boundaries and buildings (issue 11, item 7): ``--update`` replaces records whose code is
already in the database — versioned (``feature_history``), audited, all or nothing, children re-checked.

Before, the only answer to a corrected boundary was ``code_exists`` (delete by hand, load again)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import shapely
from auth_helpers import signed_in_client
from ingest_helpers import COMM_A, COMM_A_BOX, COMM_B, COMM_B_BOX, bowtie, gdf, load_city, snapshot
from shapely.geometry import box
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.config import Settings, get_settings
from gisgov.ingest.loader import UsageError, load_file

CP = f"{COMM_A}0001"  # a compound in community A
B1, B2 = f"{COMM_A}00001", f"{COMM_A}00002"
CP_BOX = (117.2025, 31.8045, 117.2060, 31.8065)
SETTINGS = Settings(secret_key="update-test-secret-key-1", home=Path(tempfile.mkdtemp(prefix="gisgov-upd-test-")))


@pytest.fixture
def city(db_factory, tmp_path):
    """Street, communities A and B, compound 0001 in A with two buildings (loaded by the real loader)."""
    url = db_factory.create()
    eng = create_engine(url, poolclass=pool.NullPool)
    load_city(eng, tmp_path)
    p = tmp_path / "小区.geojson"
    gdf([{"小区编码": CP, "小区名称": "翠竹园", "geometry": box(*CP_BOX)}]).to_file(p, driver="GeoJSON")
    assert load_file(p, "compound", engine=eng).status == "loaded"
    b = tmp_path / "楼栋.geojson"
    gdf(
        [
            {"楼栋编码": B1, "层数": 6, "geometry": box(117.2030, 31.8050, 117.2035, 31.8055)},
            {"楼栋编码": B2, "层数": 6, "geometry": box(117.2050, 31.8055, 117.2055, 31.8060)},
        ]
    ).to_file(b, driver="GeoJSON")
    rep = load_file(b, "building", engine=eng)
    assert rep.status == "loaded", [i.line() for i in rep.rejected]
    yield url, eng
    eng.dispose()


def communities(path: Path, a_geom, *, name_a: str = "东园社区", extra: list[dict] | None = None) -> Path:
    gdf(
        [
            {"社区编码": COMM_A, "社区名称": name_a, "geometry": a_geom},
            {"社区编码": COMM_B, "社区名称": "西湖社区", "geometry": box(*COMM_B_BOX)},
            *(extra or []),
        ]
    ).to_file(path, driver="GeoJSON")
    return path


def history(eng, level: str, code: str) -> list:
    with eng.connect() as c:
        return c.execute(
            text(
                "SELECT version, attrs, ST_AsText(geom), changed_by, source FROM feature_history "
                "WHERE level = :l AND code = :c ORDER BY id"
            ),
            {"l": level, "c": code},
        ).all()


def audits(eng, obj: str) -> list:
    with eng.connect() as c:
        return c.execute(
            text("SELECT actor, action, result, detail FROM audit_log WHERE object = :o ORDER BY id"), {"o": obj}
        ).all()


def geom_of(eng, table: str, code: str):
    with eng.connect() as c:
        return shapely.from_wkt(
            c.execute(text(f"SELECT ST_AsText(geom) FROM {table} WHERE code = :c"), {"c": code}).scalar()
        )


def test_update_a_community_boundary(city, tmp_path):
    _, eng = city
    old = geom_of(eng, "community", COMM_A)
    # the surveyors moved A's west edge 300 m east (nothing of A's lies there) and renamed it
    new_a = box(COMM_A_BOX[0] + 0.003, *COMM_A_BOX[1:])
    p = communities(tmp_path / "社区_修正.geojson", new_a, name_a="东园新村社区")
    # without --update: rejected as before, pointing at --update
    rep = load_file(p, "community", engine=eng)
    assert rep.status == "rejected"
    assert {i.rule for i in rep.rejected} == {"code_exists"} and "--update" in rep.rejected[0].message
    rep = load_file(p, "community", engine=eng, update=True, actor="cli:planner")
    assert rep.status == "loaded", [i.line() for i in rep.rejected]
    assert rep.counts["updated"] == 1 and rep.counts["unchanged"] == 1 and rep.counts["written"] == 0
    # new geometry and name stored
    assert shapely.equals_exact(geom_of(eng, "community", COMM_A), shapely.MultiPolygon([new_a]), 1e-9)
    with eng.connect() as c:
        assert c.execute(text("SELECT name FROM community WHERE code = :c"), {"c": COMM_A}).scalar() == "东园新村社区"
    # the previous version kept, with who and from which file
    (h,) = history(eng, "community", COMM_A)
    assert h[0] == 1 and h[1]["name"] == "东园社区" and h[3] == "cli:planner" and h[4] == "社区_修正.geojson"
    assert shapely.equals_exact(shapely.from_wkt(h[2]), old, 1e-9)
    assert history(eng, "community", COMM_B) == []  # unchanged: no version
    # audited in the same transaction
    (a,) = audits(eng, f"community:{COMM_A}")
    assert a[0] == "cli:planner" and a[1] == "import" and a[3]["op"] == "update" and a[3]["version"] == 1
    assert set(a[3]["changed"]) == {"name", "geom"}
    # a second update: version 2; the history is append-only
    rep = load_file(communities(tmp_path / "v3.geojson", box(*COMM_A_BOX)), "community", engine=eng, update=True)
    assert rep.status == "loaded" and rep.counts["updated"] == 1
    assert [h[0] for h in history(eng, "community", COMM_A)] == [1, 2]
    with eng.begin() as c, pytest.raises(Exception, match="append-only"):
        c.execute(text("DELETE FROM feature_history"))


def test_update_leaving_a_building_outside_its_compound(city, tmp_path):
    _, eng = city
    p = tmp_path / "小区_缩小.geojson"
    # the compound redrawn smaller: building 2 (117.2050–55) is left outside
    gdf([{"小区编码": CP, "小区名称": "翠竹园", "geometry": box(117.2025, 31.8045, 117.2045, 31.8065)}]).to_file(
        p, driver="GeoJSON"
    )
    before = snapshot(eng)
    rep = load_file(p, "compound", engine=eng, update=True)
    assert rep.status == "rejected"
    (out,) = rep.rejected
    assert out.rule == "child_outside" and out.value == B2 and CP in out.record and "--repair" in out.message
    assert snapshot(eng) == before and history(eng, "compound", CP) == []
    # --repair: the update goes through, building 2 leaves the compound (no other holds it), reported
    rep = load_file(p, "compound", engine=eng, update=True, repair=True)
    assert rep.status == "loaded", [i.line() for i in rep.rejected]
    (moved,) = [i for i in rep.repaired if i.rule == "child_outside"]
    assert moved.value == B2
    with eng.connect() as c:
        rows = dict(
            c.execute(
                text(
                    "SELECT b.code, p.code FROM building b LEFT JOIN compound p ON p.id = b.compound_id ORDER BY b.code"
                )
            ).all()
        )
    assert rows == {B1: CP, B2: None}


def test_update_of_a_community_orphaning_its_buildings_is_rejected(city, tmp_path):
    _, eng = city
    # A redrawn without its south-west corner, where its compound and buildings stand
    cut = shapely.difference(box(*COMM_A_BOX), box(117.20, 31.80, 117.207, 31.807))
    p = communities(tmp_path / "社区.geojson", cut)
    before = snapshot(eng)
    for repair in (False, True):  # buildings belong to A by their code: --repair cannot move them
        rep = load_file(p, "community", engine=eng, update=True, repair=repair)
        assert rep.status == "rejected"
        assert {(i.rule, i.value) for i in rep.rejected} == {
            ("child_outside", CP),
            ("child_outside", B1),
            ("child_outside", B2),
        }
    assert snapshot(eng) == before


def test_update_with_a_bad_record_changes_nothing(city, tmp_path):
    _, eng = city
    p = communities(
        tmp_path / "社区.geojson",
        box(COMM_A_BOX[0] + 0.003, *COMM_A_BOX[1:]),
        extra=[{"社区编码": "340104001003", "社区名称": "蝴蝶社区", "geometry": bowtie(117.21, 31.81, 0.001)}],
    )
    before = snapshot(eng)
    with eng.connect() as c:
        n_audit = c.execute(text("SELECT count(*) FROM audit_log")).scalar()
    rep = load_file(p, "community", engine=eng, update=True)
    assert rep.status == "rejected" and [i.rule for i in rep.rejected] == ["geom_invalid"]
    assert snapshot(eng) == before
    assert history(eng, "community", COMM_A) == []
    with eng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM audit_log")).scalar() == n_audit


def test_update_a_building_footprint_reestimates_households(city, tmp_path):
    _, eng = city
    with eng.connect() as c:
        hh0, est0 = c.execute(
            text("SELECT households, households_estimated FROM building WHERE code = :c"), {"c": B1}
        ).one()
    assert est0
    b = tmp_path / "楼栋.geojson"
    gdf([{"楼栋编码": B1, "geometry": box(117.2030, 31.8050, 117.2040, 31.8055)}]).to_file(b, driver="GeoJSON")
    rep = load_file(b, "building", engine=eng, update=True)
    assert rep.status == "loaded" and rep.counts["updated"] == 1, [i.line() for i in rep.rejected]
    with eng.connect() as c:
        floors, hh, est = c.execute(
            text("SELECT floors, households, households_estimated FROM building WHERE code = :c"), {"c": B1}
        ).one()
    assert floors == 6  # not in the file: kept
    assert est and hh == pytest.approx(2 * hh0, rel=0.1)  # the footprint doubled
    (h,) = history(eng, "building", B1)
    assert h[1]["households"] == hh0


def test_update_overlapping_a_neighbour_is_checked_like_a_new_record(city, tmp_path):
    _, eng = city
    p = communities(tmp_path / "社区.geojson", box(COMM_A_BOX[0], COMM_A_BOX[1], COMM_A_BOX[2] + 0.001, COMM_A_BOX[3]))
    rep = load_file(p, "community", engine=eng, update=True)
    assert rep.status == "rejected" and {i.rule for i in rep.rejected} == {"sibling_overlap"}


def test_update_is_refused_where_it_means_nothing(city, tmp_path):
    _, eng = city
    with pytest.raises(UsageError):
        load_file(tmp_path / "x.geojson", "road", engine=eng, update=True)


def test_cli_update(city, tmp_path, monkeypatch):
    from gisgov.cli.main import app

    url, eng = city
    monkeypatch.setenv("GISGOV_DATABASE_URL", url)
    monkeypatch.setenv("GISGOV_SECRET_KEY", "cli-test-secret-key-0001")
    monkeypatch.setenv("GISGOV_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    p = communities(tmp_path / "社区.geojson", box(COMM_A_BOX[0] + 0.003, *COMM_A_BOX[1:]))
    runner = CliRunner()
    r = runner.invoke(app, ["load", str(p), "--level", "community"])
    assert r.exit_code == 1 and "code_exists" in r.output
    r = runner.invoke(app, ["load", str(p), "--level", "community", "--update"])
    assert r.exit_code == 0, r.output
    assert "updated=1" in r.output
    (a,) = audits(eng, f"community:{COMM_A}")
    assert a[0].startswith("cli:")
    get_settings.cache_clear()


def test_api_update_and_header_row(city, tmp_path):
    url, eng = city
    p = communities(tmp_path / "社区.geojson", box(COMM_A_BOX[0] + 0.003, *COMM_A_BOX[1:]))
    with signed_in_client(SETTINGS, url, role="admin") as c:
        r = c.post("/api/import", data={"level": "community"}, files={"file": ("社区.geojson", p.read_bytes())})
        assert r.status_code == 422 and r.json()["issues"][-1]["rule"] == "code_exists"
        r = c.post(
            "/api/import",
            data={"level": "community", "update": "true"},
            files={"file": ("社区.geojson", p.read_bytes())},
        )
        assert r.status_code == 200, r.text
        assert r.json()["counts"]["updated"] == 1
        # header_row reaches the roster reader: a title row above the header
        roster = tmp_path / "名册.csv"
        roster.write_text(
            f"东园社区居民名册（2024年）,,,\n楼栋编码,户号,姓名,联系电话\n{B1},101,张三,13900001111\n",
            encoding="utf-8",
        )
        r = c.post(
            "/api/import",
            data={"level": "resident", "header_row": "3"},
            files={"file": ("名册.csv", roster.read_bytes())},
        )
        assert r.status_code == 422 and r.json()["status"] == "rejected"  # row 3 is data, not the header
        r = c.post(
            "/api/import",
            data={"level": "resident", "header_row": "2"},
            files={"file": ("名册.csv", roster.read_bytes())},
        )
        assert r.status_code == 200, r.text
        r = c.post("/api/import", data={"level": "resident", "header_row": "0"}, files={"file": ("名册.csv", b"x")})
        assert r.status_code == 422
    (a,) = audits(eng, f"community:{COMM_A}")
    assert a[0] == "t_admin_all" and a[3]["op"] == "update"
