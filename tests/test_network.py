"""Walking graph, snapping with position along the edge, exact distances on hand-computed networks."""

from __future__ import annotations

import heapq
import itertools

import numpy as np
import pandas as pd
import pytest
import shapely

from gisgov.network import (
    FLAG_GATE,
    FLAG_LONG,
    FLAG_MINOR_COMPONENT,
    FLAG_REROUTED,
    Access,
    Sources,
    build_graph,
    building_access,
    nearest_distances,
    snap_points,
)
from gisgov.network.graph import NetworkError

EPSG = 4547  # any metric CRS: these tests work in local metres


def make_graph(edges, oneway=None, foot=None):
    """edges: list of (source, target, [(x, y), ...])."""
    geoms = np.array([shapely.LineString(c) for _, _, c in edges], dtype=object)
    return build_graph(
        np.array([e[0] for e in edges]),
        np.array([e[1] for e in edges]),
        shapely.length(geoms),
        geoms,
        epsg=EPSG,
        edge_ids=np.arange(100, 100 + len(edges)),
        oneway_foot=oneway,
        foot=foot,
    )


def dist_to(g, fx, fy, bx, by, **kw):
    fs = snap_points(g, np.asarray(fx, float), np.asarray(fy, float))
    bs = snap_points(g, np.asarray(bx, float), np.asarray(by, float), **kw)
    d, src = nearest_distances(g, Sources(fs.edge, fs.offset, fs.leg), Access.from_snap(bs))
    return d, src, bs


# --- a line -----------------------------------------------------------------------------------

LINE = [(1, 2, [(0, 0), (100, 0)]), (2, 3, [(100, 0), (200, 0)]), (3, 4, [(200, 0), (300, 0)])]


def test_line_distance_uses_position_along_edge():
    g = make_graph(LINE)
    d, src, bs = dist_to(g, [250], [10], [40], [-5])
    assert bs.edge[0] == 0 and bs.offset[0] == pytest.approx(40) and bs.leg[0] == pytest.approx(5)
    # 5 (leg) + 60 (to node 2) + 100 (to node 3) + 50 (along to the facility) + 10 (its leg)
    assert d[0] == pytest.approx(225.0)
    assert src[0] == 0


def test_nearest_of_several_facilities_and_cap():
    g = make_graph(LINE)
    d, src, _ = dist_to(g, [250, 0], [10, 20], [40, 290], [-5, 0])
    assert d[0] == pytest.approx(5 + 40 + 20)  # the facility at x=0 (leg 20)
    assert src[0] == 1
    assert d[1] == pytest.approx(40 + 10)  # x=290 → x=250 on the same edge
    fs = snap_points(g, np.array([0.0]), np.array([20.0]))
    bs = snap_points(g, np.array([290.0]), np.array([0.0]))
    dd, ss = nearest_distances(g, Sources(fs.edge, fs.offset, fs.leg), Access.from_snap(bs), limit=200)
    assert np.isinf(dd[0]) and ss[0] == -1  # 310 m is beyond a 200 m cap


def test_oneway_foot_edge_is_respected():
    # middle edge walkable only 3 → 2 (source 3, target 2): from x=40 one cannot walk east
    edges = [LINE[0], (3, 2, [(200, 0), (100, 0)]), LINE[2]]
    g = make_graph(edges, oneway=np.array([False, True, False]))
    d, _, _ = dist_to(g, [250], [10], [40], [-5])
    assert np.isinf(d[0])
    d, _, _ = dist_to(g, [40], [-5], [250], [10])  # the other way round is fine
    assert d[0] == pytest.approx(225.0)


def test_foot_false_edges_are_left_out_and_counted():
    g = make_graph(LINE, foot=np.array([True, False, True]))
    assert g.report["edges_not_foot"] == 1
    assert g.report["components"] == 2
    d, _, _ = dist_to(g, [250], [10], [40], [-5])
    assert np.isinf(d[0])


def test_parallel_edges_take_the_shorter():
    edges = [(1, 2, [(0, 0), (100, 0)]), (1, 2, [(0, 0), (50, 80), (100, 0)]), (2, 3, [(100, 0), (200, 0)])]
    g = make_graph(edges)
    assert g.report["parallel_arcs_merged"] == 2
    d, _, _ = dist_to(g, [200], [0], [0], [0])
    assert d[0] == pytest.approx(200.0)


def test_bad_edge_is_named():
    geoms = np.array([shapely.LineString([(0, 0), (1, 0)])], dtype=object)
    with pytest.raises(NetworkError, match=r"road_edge 7: length_m -1.*edge_length"):
        build_graph(np.array([1]), np.array([2]), np.array([-1.0]), geoms, epsg=EPSG, edge_ids=np.array([7]))


# --- same edge --------------------------------------------------------------------------------


def test_two_buildings_on_the_same_edge_as_the_facility():
    g = make_graph([(1, 2, [(0, 0), (100, 0)]), (2, 3, [(100, 0), (100, 100)])])
    d, _, bs = dist_to(g, [50], [3], [20, 90], [-4, 2])
    assert list(bs.edge) == [0, 0]
    assert d[0] == pytest.approx(30 + 4 + 3)  # along the edge, not via a node (would be 77)
    assert d[1] == pytest.approx(40 + 2 + 3)


def test_same_edge_oneway_direction():
    g = make_graph(
        [(1, 2, [(0, 0), (100, 0)]), (2, 1, [(100, 0), (100, 50), (0, 50), (0, 0)])], oneway=np.array([True, True])
    )
    # facility at x=20 on the first edge, building at x=60 on it: cannot walk back west along the
    # one-way edge; must go round the loop: 40 + 200 + 20
    d, _, _ = dist_to(g, [20], [0], [60], [0])
    assert d[0] == pytest.approx(40 + 200 + 20)
    d, _, _ = dist_to(g, [60], [0], [20], [0])
    assert d[0] == pytest.approx(40)


# --- a street grid with a river and one bridge ---------------------------------------------------


def river_grid():
    """5 × 5 grid, 100 m blocks; a river between y=205 and y=215 crossed only at x=400."""
    edges, nid = [], lambda i, j: i * 10 + j
    for i in range(5):
        for j in range(5):
            x, y = 100 * j, 100 * i
            if j < 4:
                edges.append((nid(i, j), nid(i, j + 1), [(x, y), (x + 100, y)]))
            if i < 4 and not (i == 2 and j < 4):
                edges.append((nid(i, j), nid(i + 1, j), [(x, y), (x, y + 100)]))
    river = shapely.box(-100, 205, 500, 215)
    return make_graph(edges), np.array([river], dtype=object)


def test_river_grid_routes_over_the_bridge():
    g, river = river_grid()
    assert g.report["components"] == 1
    d, _, _ = dist_to(g, [0], [310], [0], [195], barriers=river)
    assert d[0] == pytest.approx(5 + 400 + 100 + 400 + 10)


def test_snap_does_not_cross_the_river():
    g, river = river_grid()
    d, _, bs = dist_to(g, [0], [310], [150], [218], barriers=river)
    assert bs.flags[0] & FLAG_REROUTED
    assert bs.y[0] == pytest.approx(300) and bs.leg[0] == pytest.approx(82)
    assert d[0] == pytest.approx(82 + 50 + 100 + 10)
    # without the barrier layer the building would snap across the water (the pandana error)
    d2, _, bs2 = dist_to(g, [0], [310], [150], [218])
    assert bs2.y[0] == pytest.approx(200) and d2[0] == pytest.approx(18 + 250 + 100 + 400 + 10)


# --- components, long snaps, gates -----------------------------------------------------------------


def test_disconnected_building_is_reported():
    g = make_graph([*LINE, (8, 9, [(5000, 5000), (5100, 5000)])])
    assert g.report["components"] == 2 and g.report["minor_component_edges"] == 1
    comps = g.components_table()
    assert list(comps["nodes"]) == [4, 2] and bool(comps["main"].iloc[0])
    d, _, bs = dist_to(g, [250], [10], [40, 5050], [-5, 4990])
    assert bs.flags[1] & FLAG_MINOR_COMPONENT and not bs.flags[0] & FLAG_MINOR_COMPONENT
    assert np.isinf(d[1]) and np.isfinite(d[0])


def test_long_snap_flagged():
    g = make_graph(LINE)
    bs = snap_points(g, np.array([50.0, 50.0]), np.array([200.0, 20.0]), max_snap_m=150)
    assert bs.flags[0] & FLAG_LONG and not bs.flags[1] & FLAG_LONG


def test_compound_buildings_go_through_gates():
    # street along y=0; a walled compound x 0..100, y 10..110 with one gate at (90, 10);
    # a second street at x=-20 is nearest to the building at (5, 60) but lies outside the wall.
    g = make_graph([(1, 2, [(-20, 0), (200, 0)]), (1, 3, [(-20, 0), (-20, 200)])])
    compound = shapely.box(0, 10, 100, 110)
    bx, by = np.array([5.0, 150.0]), np.array([60.0, 50.0])
    bs = snap_points(g, bx, by)
    assert bs.edge[0] == 1  # the side street
    gates = pd.DataFrame({"id": [55], "compound_id": [7], "x": [90.0], "y": [10.0], "node_id": [None]})
    acc, bs2 = building_access(
        g, bs, bx, by, np.array([7, -1]), gates=gates, compound_geoms=pd.Series([compound], index=[7])
    )
    assert bs2.flags[0] & FLAG_GATE and not bs2.flags[1] & FLAG_GATE
    fs = snap_points(g, np.array([190.0]), np.array([0.0]))
    d, _ = nearest_distances(g, Sources(fs.edge, fs.offset, fs.leg), acc)
    inner = np.hypot(85, 50)
    assert d[0] == pytest.approx(inner + 10 + 100)  # to the gate, its leg to the street, along it
    assert d[1] == pytest.approx(50 + 40)


# --- brute force -----------------------------------------------------------------------------------


def _random_network(rng, n=15, step=80.0):
    xs = np.arange(n) * step
    jitter = rng.uniform(-15, 15, size=(n, n, 2))
    pos = {(i, j): (xs[j] + jitter[i, j, 0], xs[i] + jitter[i, j, 1]) for i in range(n) for j in range(n)}
    edges = []
    for (i, j), p in pos.items():
        for di, dj in ((0, 1), (1, 0)):
            q = (i + di, j + dj)
            if q in pos and rng.random() > 0.15:
                mid = ((p[0] + pos[q][0]) / 2 + rng.uniform(-10, 10), (p[1] + pos[q][1]) / 2 + rng.uniform(-10, 10))
                edges.append((i * 100 + j, q[0] * 100 + q[1], [p, mid, pos[q]]))
    oneway = rng.random(len(edges)) < 0.1
    return edges, oneway


def _brute_force(g, bsnap, fsnap):
    """Independent check: split every edge at all snap points, then plain heapq Dijkstra per building."""
    stops: dict[int, list] = {}
    for kind, s in (("b", bsnap), ("f", fsnap)):
        for k in range(len(s)):
            stops.setdefault(int(s.edge[k]), []).append((float(s.offset[k]), (kind, k)))
    adj: dict = {}

    def arc(a, b, w):
        adj.setdefault(a, []).append((b, w))

    for e in range(g.n_edges):
        pts = [(0.0, ("n", int(g.u[e]))), *sorted(stops.get(e, [])), (float(g.length[e]), ("n", int(g.v[e])))]
        for (t0, a), (t1, b) in itertools.pairwise(pts):
            arc(a, b, t1 - t0)
            if not g.oneway[e] or t1 == t0:  # a zero-length step back is no walk against a one-way
                arc(b, a, t1 - t0)
    out = np.full((len(bsnap), len(fsnap)), np.inf)
    for k in range(len(bsnap)):
        dist = {("b", k): 0.0}
        heap = [(0.0, ("b", k))]
        while heap:
            d, a = heapq.heappop(heap)
            if d > dist.get(a, np.inf):
                continue
            if a[0] == "f":
                out[k, a[1]] = d + bsnap.leg[k] + fsnap.leg[a[1]]
            for b, w in adj.get(a, []):
                if d + w < dist.get(b, np.inf):
                    dist[b] = d + w
                    heapq.heappush(heap, (d + w, b))
    return out


def test_brute_force_agrees_on_10000_pairs():
    rng = np.random.default_rng(42)
    edges, oneway = _random_network(rng)
    g = make_graph(edges, oneway=oneway)
    b = rng.uniform(-20, 1140, size=(200, 2))
    f = rng.uniform(-20, 1140, size=(50, 2))
    bs = snap_points(g, b[:, 0], b[:, 1])
    fs = snap_points(g, f[:, 0], f[:, 1])
    brute = _brute_force(g, bs, fs)
    acc = Access.from_snap(bs)
    ours = np.column_stack(
        [nearest_distances(g, Sources(fs.edge[[j]], fs.offset[[j]], fs.leg[[j]]), acc)[0] for j in range(len(fs))]
    )
    assert ours.shape == (200, 50)
    both = np.isfinite(brute) & np.isfinite(ours)
    assert np.array_equal(np.isfinite(brute), np.isfinite(ours))
    assert both.sum() > 5000
    assert np.max(np.abs(ours[both] - brute[both])) <= 1.0
    # and the multi-source pass gives the minimum over all facilities, with the right facility
    d, src = nearest_distances(g, Sources(fs.edge, fs.offset, fs.leg), acc)
    best = brute.min(axis=1)
    assert np.array_equal(np.isinf(d), np.isinf(best))
    fin = np.isfinite(best)
    assert np.max(np.abs(d[fin] - best[fin])) <= 1.0
    assert np.all(np.abs(brute[np.flatnonzero(fin), src[fin]] - best[fin]) <= 1.0)


def test_fast_nearest_edge_equals_rtree_nearest():
    """The k-d tree of edge pieces finds the same (exact) nearest distance and position as an R-tree."""
    rng = np.random.default_rng(5)
    edges, oneway = _random_network(rng)
    g = make_graph(edges, oneway=oneway)
    x, y = rng.uniform(-300, 1400, 20000), rng.uniform(-300, 1400, 20000)
    s = snap_points(g, x, y)
    pts = shapely.points(x, y)
    (pi, _ei), dist = g.tree.query_nearest(pts, all_matches=False, return_distance=True)
    ref = np.empty(len(x))
    ref[pi] = dist
    assert np.allclose(s.leg, ref, atol=1e-6)
    # the snap point lies on the chosen edge at the reported offset
    on = shapely.line_interpolate_point(g.geoms[s.edge], s.offset * g.geom_length[s.edge] / g.length[s.edge])
    assert np.allclose(shapely.get_x(on), s.x, atol=1e-6) and np.allclose(shapely.get_y(on), s.y, atol=1e-6)
    assert shapely.distance(g.geoms[s.edge], shapely.points(s.x, s.y)).max() < 1e-6
    # far points (beyond what the piece test can prove) still get the exact answer via the R-tree
    far = snap_points(g, np.array([50000.0]), np.array([-40000.0]))
    (_, _e1), d1 = g.tree.query_nearest(shapely.points([50000.0], [-40000.0]), return_distance=True)
    assert far.leg[0] == pytest.approx(d1[0])
