"""Boundary editing of grid edit sessions (POST /api/grids/sessions/{sid}/edit): draw, reshape, split,
merge, delete, paint (assign) and restore (undo/redo), against PostGIS on a community of compounds and
loose buildings; plus the pure geometry of :mod:`gisgov.gridding.shapes` and the outlines' coverage
simplification (no saw-teeth, no gap, no overlap, every building inside its grid)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.crs import transformer
from gisgov.gridding import plans, service, sessions
from gisgov.gridding.shapes import (
    EditRefused,
    atoms_inside,
    edit_geometry,
    give_to_neighbours,
    next_code,
    split_sides,
)
from gisgov.gridding.validate import OUTLINE_SIMPLIFY_M, raw_grid_polygons, simplify_outlines
from tests.grid_city import COMMUNITY, GK, STREET, X0, Y0, block_layout, lonlat

SETTINGS = Settings(login_rate_per_minute=1000)


def city():
    """6×4 compounds (80 m squares, 20 m streets); some compounds hold two buildings; loose buildings in
    the streets. ≈ 2,400 households: 5–7 grids."""
    rng = np.random.default_rng(7)
    spec = block_layout(6, 4, rng.integers(60, 140, 24))
    for k in (3, 8, 14):  # a second building in a few compounds (split compounds can happen)
        x0, y0, _x1, _y1, blds = spec.compounds[k]
        blds[0] = (x0 + 20, y0 + 40, blds[0][2], blds[0][3])
        blds.append((x0 + 60, y0 + 40, 30, 70))
    spec.loose = [(110.0, 60.0, 12, 25), (410.0, 260.0, 8, 17)]
    return spec


SPEC = city()


def metric(geom):
    t = transformer(4490, GK)
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])) - [X0, Y0])


def gj(geom_metric) -> dict:
    return shapely.geometry.mapping(lonlat(geom_metric))


@pytest.fixture(scope="module")
def db(db_factory):
    url = db_factory.create(prefix="gisgov_test_edit_ops")
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.begin() as conn:
        SPEC.load(conn)
    with eng.begin() as conn:
        v = service.propose_plan(conn, COMMUNITY, save=True, time_limit_s=3.0, method="heuristic")["version"]
        plans.activate(conn, COMMUNITY, v, force=True)
    yield url, eng
    eng.dispose()


@pytest.fixture(scope="module")
def app_eng(db):
    eng = app_engine(db[0])
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def client(db, app_eng):
    c = TestClient(create_app(SETTINGS, engine=app_eng))
    c.__enter__()
    c.headers["Authorization"] = f"Bearer {bearer_token(c, ensure_user(db[0], 'planner', STREET))}"
    yield c
    c.__exit__(None, None, None)


class Sess:
    """An open session and what the test knows of it."""

    def __init__(self, c: TestClient, db):
        self.c, self.eng = c, db[1]
        r = c.post("/api/grids/sessions", json={"community": COMMUNITY})
        assert r.status_code == 200, r.text
        self.id = r.json()["session"]
        self.revision = 0

    def stored(self) -> tuple[list, dict]:
        with self.eng.connect() as conn:
            codes, assign = conn.execute(
                text("SELECT codes, assignments FROM grid_edit_session WHERE id = :i"), {"i": self.id}
            ).one()
        return codes, assign

    def layers(self) -> dict:
        r = self.c.get(f"/api/grids/sessions/{self.id}/layers")
        assert r.status_code == 200, r.text
        return r.json()

    def points(self) -> dict[str, tuple[shapely.Point, str | None, int]]:
        """building code -> (metric point, grid, households)"""
        out = {}
        for f in self.layers()["buildings"]["features"]:
            pt = metric(shapely.geometry.shape(f["geometry"]))
            out[f["id"]] = (shapely.point_on_surface(pt), f["properties"]["grid"], f["properties"]["households"])
        return out

    def edit(self, body: dict, status: int = 200) -> dict:
        r = self.c.post(f"/api/grids/sessions/{self.id}/edit", json={"revision": self.revision, **body})
        assert r.status_code == status, r.text
        if status == 200:
            self.revision = r.json()["revision"]
        return r.json()

    def undo(self, answer: dict, before: tuple[list, dict]) -> None:
        # the undo body carries the revision right after the edit; a page undoing later sends its current one
        back = self.edit({**answer["undo"], "revision": self.revision})
        assert self.stored() == before, "restore gives back the exact previous state"
        assert set(back["added"]) == set(answer["removed"]) and set(back["removed"]) == set(answer["added"])

    def check_coverage(self, total: int) -> list[dict]:
        """No gap, no overlap between outlines; households conserved; every building in a grid."""
        lay = self.layers()
        grids = lay["grids"]
        assert sum(g["households"] for g in grids) == total
        assert all(f["properties"]["grid"] is not None for f in lay["buildings"]["features"])
        polys = [metric(shapely.geometry.shape(g["geometry"])) for g in grids if g["geometry"]]
        for i in range(len(polys)):
            for j in range(i + 1, len(polys)):
                assert shapely.intersection(polys[i], polys[j]).area < 1.0
        boundary = metric(shapely.geometry.shape(lay["boundary"]))
        # no gap beyond the coordinates' rounding (7 decimals ≈ 1 cm)
        assert shapely.buffer(shapely.difference(boundary, shapely.union_all(polys)), -0.02).area < 1.0
        report = self.c.get(f"/api/grids/sessions/{self.id}").json()
        assert not [b for b in report["breaks"] if b["rule"] in ("gap", "overlap", "building_no_grid")]
        return grids


TOTAL = int(sum(b[2] for comp in SPEC.compounds for b in comp[4]) + sum(b[2] for b in SPEC.loose))


def neighbours(s: Sess) -> tuple[str, str]:
    """Two grids sharing an edge."""
    grids = s.layers()["grids"]
    polys = {g["code"]: metric(shapely.geometry.shape(g["geometry"])) for g in grids}
    for a in polys:
        for b in polys:
            if a < b and shapely.intersection(polys[a], polys[b]).length > 30:
                return a, b
    raise AssertionError("no neighbours")


def test_draw_a_new_grid_and_undo(db, client):
    s = Sess(client, db)
    before = s.stored()
    pts = s.points()
    box = shapely.box(15, 15, 205, 105)  # two compounds of the first row and the loose building between
    inside = {b for b, (p, _, _) in pts.items() if box.contains(p)}
    assert len(inside) >= 3
    out = s.edit({"op": "draw", "geometry": gj(box)})
    new = out["added"][0]
    assert new.startswith(COMMUNITY) and len(new) == 15 and new not in before[0]
    assert set(out["changed"]) == {b for b in inside if pts[b][1] != new} and set(out["changed"].values()) == {new}
    assert out["codes"][-1] == new and out["removed"] == []
    row = next(g for g in out["grids"] if g["code"] == new)
    assert row["households"] == sum(pts[b][2] for b in inside)
    assert {"polsby_popper", "reock", "geometry", "breaks", "cannot_leave", "status"} <= set(row)
    assert {f["id"] for f in s.layers()["buildings"]["features"] if f["properties"]["grid"] == new} == inside
    s.check_coverage(TOTAL)
    s.undo(out, before)
    s.check_coverage(TOTAL)
    # a polygon over one of a compound's two buildings: the compound is reported split, not forced whole
    x0, y0, _, _, blds = SPEC.compounds[3]
    half = shapely.box(x0 + 5, y0 + 5, x0 + 35, y0 + 75)
    out = s.edit({"op": "draw", "geometry": gj(half)})
    assert out["split_compounds"] == [f"{COMMUNITY}0004"] and out["moved"]["buildings"] == 1
    assert out["moved"]["households"] == blds[0][2]
    s.undo(out, before)
    # nothing inside: refused, naming the rule
    r = s.edit({"op": "draw", "geometry": gj(shapely.box(1, 1, 10, 10))}, 400)
    assert "edit_select" in r["detail"]


def test_reshape_moves_exactly_the_units_across_a_shared_edge(db, client):
    s = Sess(client, db)
    before = s.stored()
    a, b = neighbours(s)
    pts = s.points()
    lay = s.layers()
    outline = {g["code"]: metric(shapely.geometry.shape(g["geometry"])) for g in lay["grids"]}
    # one compound of b touching a: a's outline grows over it
    comps = [f for f in lay["compounds"]["features"] if f["properties"]["grids"] == [b]]
    gained = None
    for f in comps:
        cg = metric(shapely.geometry.shape(f["geometry"]))
        if shapely.distance(cg, outline[a]) < 15:
            grown = shapely.union(outline[a], shapely.buffer(cg, 12, join_style="mitre"))
            if grown.geom_type == "Polygon" and not grown.interiors:
                gained = {k for k, (p, g, _) in pts.items() if g == b and grown.contains(p)}
                mine = {k for k, (p, g, _) in pts.items() if g == a}
                if gained and all(grown.contains(pts[k][0]) for k in mine):
                    break
    assert gained, "a compound of the neighbour next to the grid"
    h_a = {g["code"]: g["households"] for g in lay["grids"]}
    out = s.edit({"op": "reshape", "grid": a, "geometry": gj(grown)})
    assert set(out["changed"]) == gained and set(out["changed"].values()) == {a}
    rows = {g["code"]: g for g in out["grids"]}
    moved = sum(pts[k][2] for k in gained)
    assert rows[a]["households"] == h_a[a] + moved and rows[b]["households"] == h_a[b] - moved
    assert out["moved"]["buildings"] == len(gained) and out["moved"]["households"] == moved
    s.check_coverage(TOTAL)
    s.undo(out, before)
    # shrink: a's outline without one of its compounds: that unit goes to a neighbour, never to no grid
    lay = s.layers()
    outline = {g["code"]: metric(shapely.geometry.shape(g["geometry"])) for g in lay["grids"]}
    for f in lay["compounds"]["features"]:
        if f["properties"]["grids"] != [a]:
            continue
        cut = shapely.difference(outline[a], shapely.buffer(metric(shapely.geometry.shape(f["geometry"])), 11))
        if cut.geom_type == "Polygon" and cut.area > 0:
            lost = {k for k, (p, g, _) in pts.items() if g == a and not cut.contains(p)}
            if lost and len(lost) < sum(1 for v in pts.values() if v[1] == a):
                break
    out = s.edit({"op": "reshape", "grid": a, "geometry": gj(cut)})
    assert set(out["changed"]) == lost and a not in set(out["changed"].values())
    assert all(v is not None for v in out["changed"].values())
    s.check_coverage(TOTAL)
    s.undo(out, before)


def test_split_merge_delete_and_undo(db, client):
    s = Sess(client, db)
    start = s.stored()
    pts = s.points()
    # split the grid holding most buildings along a vertical street between two of its columns
    by = {}
    for k, (p, g, _) in pts.items():
        by.setdefault(g, []).append((k, p))
    g, members = max(by.items(), key=lambda kv: len({round(p.x) for _, p in kv[1]}))
    xs = sorted({round(p.x) for _, p in members})
    cut_x = (xs[0] + xs[1]) / 2 if len(xs) > 1 else None
    assert cut_x is not None
    line = shapely.LineString([(cut_x, -50), (cut_x, SPEC.height + 50)])
    left = {k for k, p in members if p.x < cut_x}
    right = {k for k, p in members if p.x > cut_x}
    hh = {k: pts[k][2] for k in pts}
    out = s.edit({"op": "split", "grid": g, "geometry": gj(line)})
    assert len(out["added"]) == 1
    new = out["added"][0]
    _keep, moved = (left, right) if sum(hh[k] for k in left) >= sum(hh[k] for k in right) else (right, left)
    assert set(out["changed"]) == moved and set(out["changed"].values()) == {new}
    s.check_coverage(TOTAL)
    after_split = s.stored()
    # a line that cuts nothing is refused with the rule
    r = s.edit({"op": "split", "grid": g, "geometry": gj(shapely.LineString([(1, 1), (5, 5)]))}, 400)
    assert "split_line" in r["detail"] and "分割线" in r["detail"]
    # merge the new grid back: one grid, the other removed
    out2 = s.edit({"op": "merge", "grid": g, "other": new})
    assert out2["removed"] == [new] and new not in out2["codes"]
    assert set(out2["changed"]) == moved and set(out2["changed"].values()) == {g}
    s.check_coverage(TOTAL)
    s.undo(out2, after_split)
    s.undo(out, start)
    # merging a grid with itself or with a grid it does not touch is refused
    assert "merge_neighbours" in s.edit({"op": "merge", "grid": g, "other": g}, 400)["detail"]
    lay = s.layers()
    polys = {x["code"]: metric(shapely.geometry.shape(x["geometry"])) for x in lay["grids"]}
    far = [c for c in polys if c != g and shapely.distance(polys[c], polys[g]) > 1]
    if far:
        assert "merge_neighbours" in s.edit({"op": "merge", "grid": g, "other": far[0]}, 400)["detail"]
    # delete: refused while the grid holds buildings; emptied by painting, it goes
    a, b = neighbours(s)
    r = s.edit({"op": "delete", "grid": a}, 400)
    assert "网格非空" in r["detail"] and "delete_empty" in r["detail"]
    mine = [k for k, (_, gg, _) in s.points().items() if gg == a]
    before_paint = s.stored()
    paint = s.edit({"op": "assign", "grid": b, "buildings": mine})
    assert set(paint["changed"]) == set(mine) and paint["moved"]["buildings"] == len(mine)
    before_delete = s.stored()
    gone = s.edit({"op": "delete", "grid": a})
    assert gone["removed"] == [a] and a not in gone["codes"] and len(gone["codes"]) == len(start[0]) - 1
    s.check_coverage(TOTAL)
    s.undo(gone, before_delete)
    assert a in [x["code"] for x in s.layers()["grids"]]
    s.undo(paint, before_paint)
    assert s.stored() == start
    s.check_coverage(TOTAL)


def test_lasso_paint_redo_and_save(db, client):
    s = Sess(client, db)
    a, _ = neighbours(s)
    pts = s.points()
    lasso = shapely.box(0, 0, SPEC.width / 3, SPEC.height / 2)
    inside = {k for k, (p, g, _) in pts.items() if lasso.contains(p) and g != a}
    body = {"op": "assign", "grid": a, "geometry": gj(lasso)}
    before = s.stored()
    out = s.edit(body)
    assert set(out["changed"]) == inside
    after = s.stored()
    s.undo(out, before)
    redo = s.edit(body)  # redo = the original body again
    assert s.stored() == after and redo["changed"] == out["changed"]
    # stale revision: 409, nothing changed
    r = client.post(f"/api/grids/sessions/{s.id}/edit", json={**body, "revision": s.revision - 1})
    assert r.status_code == 409 and r.json()["error"] == "SessionChanged"
    # grids the lasso emptied are deleted (a saved grid needs land), then the save is a draft whose grids
    # match the session
    for row in redo["grids"]:
        if row["households"] == 0:
            assert s.edit({"op": "delete", "grid": row["code"]})["removed"] == [row["code"]]
    report = client.get(f"/api/grids/sessions/{s.id}").json()
    r = client.post(f"/api/grids/sessions/{s.id}/save", json={"revision": s.revision, "note": "edited"})
    assert r.status_code == 200, r.text
    draft = client.get(f"/api/grids/plans/{COMMUNITY}/{r.json()['version']}").json()
    assert {f["id"]: f["properties"]["households"] for f in draft["features"]} == {
        g["code"]: g["households"] for g in report["grids"]
    }
    assert not [x for x in draft["breaks"] if x["rule"] in ("gap", "overlap", "assignment_mismatch")]


def test_refusals(db, client, app_eng):
    s = Sess(client, db)
    a, _ = neighbours(s)
    box = shapely.box(15, 15, 205, 105)
    # projected metres instead of lon/lat
    r = s.edit({"op": "draw", "geometry": shapely.geometry.mapping(shapely.box(X0, Y0, X0 + 200, Y0 + 100))}, 400)
    assert "edit_geometry" in r["detail"] and "WGS84" in r["detail"] and r["code"] == "edit_geometry"
    # latitude first
    swapped = shapely.transform(lonlat(box), lambda xy: xy[:, ::-1])
    r = s.edit({"op": "draw", "geometry": shapely.geometry.mapping(swapped)}, 400)
    assert "swapped" in r["detail"] and "经纬度" in r["detail"]
    # far away, self-intersecting, wrong type, malformed
    far = shapely.affinity.translate(lonlat(box), 1.0, 1.0)
    assert "edit_geometry" in s.edit({"op": "draw", "geometry": shapely.geometry.mapping(far)}, 400)["detail"]
    bow = shapely.Polygon([(10, 10), (200, 100), (200, 10), (10, 100)])
    assert "edit_geometry" in s.edit({"op": "draw", "geometry": gj(bow)}, 400)["detail"]
    line = gj(shapely.LineString([(0, 0), (100, 100)]))
    assert "Polygon" in s.edit({"op": "draw", "geometry": line}, 400)["detail"]
    assert s.edit({"op": "draw", "geometry": {"type": "Polygon", "coordinates": [[1, 2]]}}, 400)
    assert s.edit({"op": "draw", "geometry": {"type": "Polygon", "coordinates": "x"}}, 400)
    # unknown grid, unknown unit, extra fields
    assert "edit_grid" in s.edit({"op": "delete", "grid": "nope"}, 400)["detail"]
    s.edit({"op": "assign", "grid": a, "buildings": ["nope"]}, 422)
    s.edit({"op": "assign", "grid": a, "bogus": 1}, 422)
    s.edit({"op": "restore", "state": {"codes": 5}}, 400)
    s.edit({"op": "restore", "state": {"codes": [a], "assignments": {"x": a}}}, 400)
    s.edit({"op": "restore", "state": {"codes": [{"code": a, "exception": {"x": 1}}], "assignments": {}}}, 400)
    # another account's session is not found
    other = TestClient(create_app(SETTINGS, engine=app_eng))
    other.__enter__()
    try:
        other.headers["Authorization"] = f"Bearer {bearer_token(other, ensure_user(db[0], 'planner', COMMUNITY))}"
        r = other.post(f"/api/grids/sessions/{s.id}/edit", json={"op": "draw", "geometry": gj(box)})
        assert r.status_code == 404
    finally:
        other.__exit__(None, None, None)
    assert s.stored()[0] == Sess(client, db).stored()[0]  # nothing was changed by the refusals


# --- pure: shapes and outline simplification (no database) --------------------------------------


def test_edit_geometry_rules():
    ctx = SPEC.context()
    lon0, lat0, lon1, lat1 = ctx.to_lonlat(ctx.boundary).bounds
    kw = {"to_metric": ctx.to_metric, "bounds_lonlat": (lon0, lat0, lon1, lat1), "boundary": ctx.boundary}
    g = edit_geometry(gj(shapely.box(15, 15, 205, 105)), "Polygon", **kw)
    assert g.geom_type == "Polygon" and abs(g.area - 190 * 90) < 5
    with pytest.raises(EditRefused, match="swapped"):
        edit_geometry(
            shapely.geometry.mapping(shapely.transform(lonlat(shapely.box(0, 0, 9, 9)), lambda xy: xy[:, ::-1])),
            "Polygon",
            **kw,
        )
    with pytest.raises(EditRefused, match="degrees"):
        edit_geometry(shapely.geometry.mapping(shapely.box(5e5, 3.5e6, 5.1e5, 3.6e6)), "Polygon", **kw)
    with pytest.raises(EditRefused, match="LineString"):
        edit_geometry(gj(shapely.box(0, 0, 9, 9)), "LineString", **kw)
    assert EditRefused("x").status_code == 400


def test_units_inside_sides_and_neighbours():
    xy = np.array([[1.0, 1.0], [5.0, 5.0], [9.0, 1.0], [20.0, 20.0]])
    assert atoms_inside(xy, shapely.box(0, 0, 10, 10)).tolist() == [0, 1, 2]
    sides = split_sides(shapely.box(0, 0, 10, 10), shapely.LineString([(7, -1), (7, 11)]), xy[:3])
    assert [s.tolist() for s in sides] == [[0, 1], [2]]
    assert split_sides(shapely.box(0, 0, 10, 10), shapely.LineString([(7, -1), (7, 5)]), xy[:3]) == []
    # a chain 0-1-2-3 (grid 0 is 0,1; grid 1 is 2; grid 2 is 3): atoms 0 and 1 leave grid 0
    from gisgov.gridding.graph import Graph

    gr = Graph(4, np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([5.0, 5.0, 5.0]), np.zeros(3, bool), np.ones(3))
    to = give_to_neighbours(
        np.array([0, 1]),
        np.array([0, 0, 1, 2]),
        indptr=gr.indptr,
        nbr=gr.nbr,
        nbr_edge=gr.nbr_edge,
        length=gr.length,
        xy=xy,
        exclude=0,
    )
    assert to.tolist() == [1, 1]
    with pytest.raises(EditRefused):
        give_to_neighbours(
            np.array([0]),
            np.array([0, 0, 0, 0]),
            indptr=gr.indptr,
            nbr=gr.nbr,
            nbr_edge=gr.nbr_edge,
            length=gr.length,
            xy=xy,
            exclude=0,
        )
    assert next_code("340104001001", ["340104001001001", "340104001001004"]) == "340104001001005"
    assert next_code("340104001001", []) == "340104001001001"


def test_outlines_without_saw_teeth():
    """Loose buildings scattered between compounds: their Voronoi territories make jagged grid edges."""
    rng = np.random.default_rng(3)
    spec = block_layout(5, 4, rng.integers(60, 140, 20))
    spec.loose = [
        (float(x), float(y), 10, 20)
        for x, y in zip(rng.uniform(2, spec.width - 2, 60), rng.uniform(2, spec.height - 2, 60), strict=True)
    ]
    ctx = spec.context()
    # grids: vertical bands with a wavy border
    xy = ctx.atoms.xy
    x0, y0 = ctx.boundary.bounds[:2]
    ag = np.minimum((xy[:, 0] - x0 + 30 * np.sin((xy[:, 1] - y0) / 40)) // (spec.width / 4), 3).astype(np.int64)
    raw = raw_grid_polygons(ctx, ag, 4)
    simple = simplify_outlines(raw, OUTLINE_SIMPLIFY_M, xy, ag)
    n_raw = sum(shapely.get_num_coordinates(p) for p in raw)
    n_simple = sum(shapely.get_num_coordinates(p) for p in simple)
    assert n_simple < n_raw * 0.9, (n_raw, n_simple)
    for i in range(4):
        assert shapely.intersects_xy(simple[i], xy[ag == i, 0], xy[ag == i, 1]).all()
        for j in range(i + 1, 4):
            assert shapely.intersection(simple[i], simple[j]).area < 1.0
    assert abs(shapely.union_all(simple).area - ctx.boundary.area) < 1.0
    # the community boundary is kept as it is
    assert shapely.difference(ctx.boundary.boundary, shapely.union_all(simple).boundary.buffer(0.01)).length < 0.01
    assert sessions.DIGEST.startswith("md5(")
