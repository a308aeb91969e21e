"""Vector tiles (/tiles/{layer}/{z}/{x}/{y}.pbf) on the full sample city in a database of its own: one
community with an active grid plan and a saved draft (its grid codes renamed so the two can be told
apart), and one building's stored distance to a hospital. Tiles are decoded with mapbox-vector-tile."""

from __future__ import annotations

import mapbox_vector_tile
import pytest
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from sample_fixtures import SAMPLE_VAULT
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.api.queries import ALL, Scope
from gisgov.config import Settings
from gisgov.errors import InvalidInput
from gisgov.gridding import service
from gisgov.layers import Layer, Tiles, load_catalog
from gisgov.sample.load import load_city
from gisgov.tiles import BadTile, Tile, parse_tile, tile_bytes, tile_sql, tiles_covering
from gisgov.tiles.coords import lonlat_to_tile

MVT = "application/vnd.mapbox-vector-tile"
CAT = load_catalog(Settings().layers_dir)
PERSONAL_KEYS = {"id_hash", "id_cipher", "id_last4", "phone_cipher", "phone_masked", "gender", "birth_year"}


# -- pure tile arithmetic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("z", "x", "y"),
    [
        ("23", "0", "0"),
        ("-1", "0", "0"),
        ("2", "4", "0"),
        ("2", "0", "4"),
        ("a", "0", "0"),
        ("1.5", "0", "0"),
        ("3", "99999999999", "0"),
    ],
)
def test_bad_tile_addresses(z, x, y):
    with pytest.raises(BadTile) as exc:
        parse_tile(z, x, y)
    assert exc.value.status_code == 400


def test_tile_bounds_and_cover():
    assert Tile(0, 0, 0).bounds_lonlat() == pytest.approx((-180, -85.0511287798066, 180, 85.0511287798066))
    w, s, e, _n = Tile(1, 1, 0).bounds_lonlat()
    assert (w, e, s) == pytest.approx((0, 180, 0))
    box = (117.234, 31.840, 117.266, 31.860)
    for z in (15, 16, 17):
        ts = tiles_covering(box, z)
        x0, y0 = lonlat_to_tile(box[0], box[3], z)
        x1, y1 = lonlat_to_tile(box[2], box[1], z)
        assert len(ts) == (x1 - x0 + 1) * (y1 - y0 + 1)
        for t in ts:
            tw, ts_, te, tn = t.bounds_lonlat()
            assert tw <= box[2] and te >= box[0] and ts_ <= box[3] and tn >= box[1]


def test_catalog_tiles_section_is_checked():
    building = CAT.get("building")
    assert building.tiles is not None and building.tiles.links == ["grid", "compound"]
    assert CAT.get("resident").tiles is None
    raw = CAT.get("resident").model_dump()
    with pytest.raises(ValueError, match="personal"):
        Layer.model_validate({**raw, "tiles": {}})
    with pytest.raises(ValueError, match="not among its properties"):
        Layer.model_validate({**building.model_dump(), "tiles": {"fields": ["households"]}})
    with pytest.raises(ValueError, match="not levels it refers to"):
        Layer.model_validate({**building.model_dump(), "tiles": {"links": ["street"]}})
    with pytest.raises(ValueError):
        Tiles(min_zoom=16, max_zoom=12)
    assert InvalidInput  # the loader wraps these as InvalidInput naming the file


# -- the city ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def city(db_factory, sample_city):
    url = db_factory.create(prefix="gisgov_test_tiles")
    load_city(url, sample_city, vault=SAMPLE_VAULT)
    owner = create_engine(url, poolclass=pool.NullPool)
    with owner.connect() as c:
        a, b = c.execute(text("SELECT code FROM community ORDER BY code LIMIT 2")).scalars().all()
    with owner.begin() as c:
        service.plan_and_activate(c, a, time_limit_s=2.0)
    with owner.begin() as c:
        draft = service.propose_plan(c, a, save=True, time_limit_s=1.0, seed=5)["version"]
        c.execute(
            text(
                "UPDATE grid g SET code = g.community_code || '9' || right(g.code, 2) FROM grid_plan p "
                "WHERE p.id = g.plan_id AND p.community_code = :a AND p.version = :v"
            ),
            {"a": a, "v": draft},
        )
    with owner.begin() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
        bld = c.execute(
            text(
                "SELECT b.id, b.code, ST_X(b.pos) AS lon, ST_Y(b.pos) AS lat, g.code AS grid FROM building b "
                "JOIN grid_current() g ON g.id = b.grid_id WHERE b.community_code = :a ORDER BY b.code LIMIT 1"
            ),
            {"a": a},
        ).one()
        other = c.execute(
            text(
                "SELECT code, ST_X(pos) AS lon, ST_Y(pos) AS lat FROM building WHERE community_code = :b ORDER BY code LIMIT 1"
            ),
            {"b": b},
        ).one()
        c.execute(
            text(
                "INSERT INTO coverage_budget (profile, circle, minutes, distance_m) VALUES "
                "('standard', 'c5', 5, 300), ('standard', 'c10', 10, 500) ON CONFLICT DO NOTHING"
            )
        )
        c.execute(
            text(
                # an upsert: building_access is a view whose insert trigger replaces the building's value
                "INSERT INTO building_access (building_id, category_code, distance_m) VALUES (:b, 'yiyuan', 412.4)"
            ),
            {"b": bld.id},
        )
        active = (
            c.execute(
                text(
                    "SELECT g.code FROM grid g JOIN grid_plan p ON p.id = g.plan_id "
                    "WHERE p.community_code = :a AND p.status = 'active'"
                ),
                {"a": a},
            )
            .scalars()
            .all()
        )
    eng = app_engine(url)
    app = create_app(Settings(login_rate_per_minute=1000), engine=eng)
    users = {
        "admin": ensure_user(url, "admin", ""),
        "staff_a": ensure_user(url, "community_staff", a),
        "planner": ensure_user(url, "planner", a[:9]),
        "viewer": ensure_user(url, "viewer", a),
    }
    with TestClient(app) as client:
        tokens = {k: bearer_token(client, u) for k, u in users.items()}
        yield {
            "client": client,
            "tokens": tokens,
            "owner": owner,
            "a": a,
            "b": b,
            "draft": draft,
            "building": bld,
            "other": other,
            "active": sorted(active),
        }
    eng.dispose()
    owner.dispose()


def get(city, who: str, url: str, **params):
    return city["client"].get(url, params=params, headers={"Authorization": f"Bearer {city['tokens'][who]}"})


def decode(r) -> dict:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MVT
    return mapbox_vector_tile.decode(r.content) if r.content else {}


def features(r, layer: str) -> list[dict]:
    return decode(r).get(layer, {}).get("features", [])


def tile_of(lon: float, lat: float, z: int) -> str:
    x, y = lonlat_to_tile(lon, lat, z)
    return f"{z}/{x}/{y}"


def test_building_tile_holds_the_building_with_public_fields(city):
    b = city["building"]
    r = get(city, "admin", f"/tiles/building/{tile_of(b.lon, b.lat, 16)}.pbf")
    assert r.headers["cache-control"] == "private, max-age=60" and r.headers["etag"]
    tile = decode(r)
    assert list(tile) == ["building"]
    feats = tile["building"]["features"]
    extent = tile["building"]["extent"]
    by_code = {f["properties"]["code"]: f for f in feats}
    assert b.code in by_code
    props = by_code[b.code]["properties"]
    assert props["grid"] == b.grid
    detail = get(city, "admin", f"/api/building/{b.code}").json()["properties"]
    assert props["households"] == detail["households"] and props["residents"] == detail["residents"]
    assert props.get("compound") == detail.get("compound_code"), (props, detail)
    for f in feats:
        assert set(f["properties"]) <= {"code", "name", "grid", "compound", "floors", "households", "residents"}
        assert not set(f["properties"]) & PERSONAL_KEYS
        ring = f["geometry"]["coordinates"][0]
        ring = ring[0] if isinstance(ring[0][0], list) else ring
        buf = CAT.get("building").tiles.buffer
        assert all(-buf <= x <= extent + buf and -buf <= y <= extent + buf for x, y in ring)
    # a conditional request for the same tile: 304
    again = city["client"].get(
        r.url, headers={"Authorization": f"Bearer {city['tokens']['admin']}", "If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304


def test_empty_tiles(city):
    b = city["building"]
    far = get(city, "admin", "/tiles/building/16/32768/32768.pbf")  # the Gulf of Guinea
    assert far.status_code == 200 and far.content == b"" and far.headers["content-type"] == MVT
    below = get(city, "admin", f"/tiles/building/{tile_of(b.lon, b.lat, 10)}.pbf")  # below the min zoom (14)
    assert below.status_code == 200 and below.content == b""
    at_min = get(city, "admin", f"/tiles/building/{tile_of(b.lon, b.lat, 14)}.pbf")
    assert features(at_min, "building")


@pytest.mark.parametrize(
    "path", ["23/0/0", "15/0/32768", "15/32768/0", "x/1/1", "1/1/1.5", "-1/0/0", "2/0/99999999999"]
)
def test_bad_tiles_answer_400(city, path):
    r = get(city, "admin", f"/tiles/building/{path}.pbf")
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "BadTile"


@pytest.mark.parametrize("layer", ["nope", "resident", "road", "community", "Building", "coverage%00"])
def test_unknown_personal_or_untiled_layers_answer_404(city, layer):
    r = get(city, "admin", f"/tiles/{layer}/15/27054/13323.pbf")
    assert r.status_code in (404, 422), r.text
    if layer != "coverage%00":
        assert r.status_code == 404


def test_scope_a_community_sees_none_of_its_neighbours_buildings(city):
    o = city["other"]
    path = f"/tiles/building/{tile_of(o.lon, o.lat, 17)}.pbf"
    everyone = [f["properties"]["code"] for f in features(get(city, "admin", path), "building")]
    assert o.code in everyone
    mine = [f["properties"]["code"] for f in features(get(city, "staff_a", path), "building")]
    assert o.code not in mine
    assert all(c.startswith(city["a"]) for c in mine)
    # the coverage layer is scoped the same way
    cov = [
        f["properties"]["code"]
        for f in features(get(city, "staff_a", path.replace("building", "coverage"), category="yiyuan"), "coverage")
    ]
    assert all(c.startswith(city["a"]) for c in cov) and o.code not in cov


def _grid_codes(city, who: str, **params) -> set[str]:
    b = city["building"]
    path = f"/tiles/grid/{tile_of(b.lon, b.lat, 13)}.pbf"
    r = get(city, who, path, **params)
    return {f["properties"]["code"] for f in features(r, "grid") if f["properties"]["code"].startswith(city["a"])}


def test_grid_tiles_draw_the_active_plan_unless_a_plan_is_asked(city):
    active = _grid_codes(city, "admin")
    assert active == set(city["active"])
    assert not any(c[12] == "9" for c in active)
    draft = _grid_codes(city, "planner", plan=city["draft"], community=city["a"])
    assert draft and all(c[12] == "9" for c in draft)
    # the draft's counts come from its own assignments
    b = city["building"]
    r = get(city, "planner", f"/tiles/grid/{tile_of(b.lon, b.lat, 13)}.pbf", plan=city["draft"], community=city["a"])
    assert sum(f["properties"]["households"] for f in features(r, "grid")) > 0


def test_plans_need_the_planner_permission_and_the_area(city):
    b = city["building"]
    path = f"/tiles/grid/{tile_of(b.lon, b.lat, 13)}.pbf"
    assert get(city, "viewer", path, plan=city["draft"], community=city["a"]).status_code == 403
    assert get(city, "staff_a", path, plan=city["draft"], community=city["a"]).status_code == 403
    assert get(city, "planner", path, plan=999, community=city["a"]).status_code == 404
    outside = "340104002001" if not city["a"].startswith("340104002") else "340104001001"
    assert get(city, "planner", path, plan=1, community=outside).status_code == 404
    assert get(city, "planner", path, plan=city["draft"]).status_code == 422
    assert get(city, "planner", path.replace("grid", "building"), plan=1, community=city["a"]).status_code == 422


def test_coverage_tile_carries_the_stored_distance(city):
    b = city["building"]
    path = f"/tiles/coverage/{tile_of(b.lon, b.lat, 16)}.pbf"
    props = {
        f["properties"]["code"]: f["properties"]
        for f in features(get(city, "admin", path, category="yiyuan"), "coverage")
    }
    assert props[b.code]["distance_m"] == 412 and "within" not in props[b.code]
    c5 = {
        f["properties"]["code"]: f["properties"]
        for f in features(get(city, "admin", path, category="yiyuan", circle="c5"), "coverage")
    }
    assert c5[b.code]["within"] is False and c5[b.code]["budget_m"] == 300
    c10 = {
        f["properties"]["code"]: f["properties"]
        for f in features(get(city, "admin", path, category="yiyuan", circle="c10"), "coverage")
    }
    assert c10[b.code]["within"] is True
    assert all(not set(p) & {"households", "residents", "name"} for p in c10.values())
    assert get(city, "admin", path).status_code == 422
    assert get(city, "admin", path, category="nothing").status_code == 422
    assert get(city, "admin", path, category="yiyuan", circle="c99").status_code == 422


def test_feature_cap_and_the_spatial_index(city):
    b = city["building"]
    x, y = lonlat_to_tile(b.lon, b.lat, 15)
    t = Tile(15, x, y)
    layer = CAT.get("building")
    capped = layer.model_copy(update={"tiles": layer.tiles.model_copy(update={"max_features": 2})})
    with city["owner"].connect() as c:
        c.execute(text("SELECT set_config('gisgov.scope', '*', false)"))
        body, cut = tile_bytes(c, CAT, capped, t, ALL)
        assert cut and len(mapbox_vector_tile.decode(body)["building"]["features"]) == 2
        body, cut = tile_bytes(c, CAT, layer, t, Scope(area=city["a"]))
        assert not cut
        sql, params = tile_sql(CAT, layer, t, ALL, srid=4490)
        plan = "\n".join(c.execute(text("EXPLAIN " + sql), params).scalars())
    assert "building_geom_gix" in plan, plan
