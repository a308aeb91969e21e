"""Walking network from line geometries: split at every shared vertex, number nodes, measure.

Pure computation on shapely arrays (used by road-file loads and the OSM import). A vertex becomes
a node when it ends a line or is shared by two or more lines (or twice by one line): each line is
cut there, so no edge hides a junction and nothing is silently unreachable. Lines that cross
without a shared vertex (bridges, tunnels) stay unconnected, as they should.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from gisgov.crs import WGS84, metric_epsg_for_bounds, transformer

ARTERIAL = {
    "motorway",
    "motorway_link",
    "trunk",
    "trunk_link",
    "primary",
    "primary_link",
    "secondary",
    "secondary_link",
}
LOCAL = {
    "tertiary",
    "tertiary_link",
    "residential",
    "unclassified",
    "living_street",
    "service",
    "road",
    "track",
    "busway",
}
PATH = {
    "footway",
    "path",
    "pedestrian",
    "steps",
    "cycleway",
    "bridleway",
    "corridor",
    "trail",
    "elevator",
    "platform",
    "crossing",
}
NO_FOOT_HIGHWAY = {"motorway", "motorway_link", "construction", "proposed", "raceway", "bus_guideway", "abandoned"}
NO_FOOT_VALUES = {"no", "private", "use_sidepath"}


def highway_class(highway: str | None) -> str:
    """OSM ``highway`` value → road_edge.class (arterial / local / path / other)."""
    h = (highway or "").strip().lower()
    if h in ARTERIAL:
        return "arterial"
    if h in LOCAL:
        return "local"
    if h in PATH:
        return "path"
    return "other"


def foot_allowed(highway: str | None, foot: str | None = None, access: str | None = None) -> bool:
    """Walking allowed: not a motorway (or similar), not ``foot=no``, not ``access=no`` unless foot says yes."""
    h = (highway or "").strip().lower()
    f = (foot or "").strip().lower()
    a = (access or "").strip().lower()
    if f in ("yes", "designated", "permissive", "official", "destination"):
        return h not in ("motorway", "motorway_link") or f in ("yes", "designated")
    if f in NO_FOOT_VALUES or h in NO_FOOT_HIGHWAY:
        return False
    return a not in ("no", "private")


@dataclass
class Network:
    node_xy: np.ndarray  # (n_nodes, 2) lon/lat
    source: np.ndarray  # node index per edge
    target: np.ndarray
    line: np.ndarray  # index of the input line each edge comes from
    geoms: np.ndarray  # LineString per edge (lon/lat)
    length_m: np.ndarray


def split_lines(lines: np.ndarray, *, decimals: int = 9) -> Network:
    """Cut LineStrings at shared vertices. ``lines`` must be LineStrings in lon/lat."""
    lines = np.asarray(lines, dtype=object)
    coords, li = shapely.get_coordinates(lines, return_index=True)
    if not len(coords):
        empty = np.array([], dtype=np.int64)
        return Network(np.empty((0, 2)), empty, empty, empty, np.array([], dtype=object), np.array([]))
    key = np.round(coords, decimals)
    # drop consecutive duplicate vertices within a line
    keep = np.ones(len(key), dtype=bool)
    keep[1:] = ~((li[1:] == li[:-1]) & np.all(key[1:] == key[:-1], axis=1))
    coords, key, li = coords[keep], key[keep], li[keep]
    uniq, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    start = np.ones(len(li), dtype=bool)
    start[1:] = li[1:] != li[:-1]
    end = np.ones(len(li), dtype=bool)
    end[:-1] = li[1:] != li[:-1]
    is_node = start | end | (counts[inv] >= 2)
    # a line with fewer than two vertices left is dropped
    n_per_line = np.bincount(li, minlength=len(lines))
    valid_vertex = n_per_line[li] >= 2
    is_node &= valid_vertex
    # segment ids: a new segment starts at every node vertex that does not end its line
    seg_starts = is_node & ~end & valid_vertex
    seg_after = np.cumsum(seg_starts) - 1  # segment of the part after each vertex
    idx = np.arange(len(li))
    body = valid_vertex & ~end  # vertices followed by more of their segment
    closing = valid_vertex & is_node & ~start  # node vertices that close the segment before them
    prev_seg = np.empty_like(seg_after)
    prev_seg[0] = seg_after[0]
    prev_seg[1:] = seg_after[:-1]
    ri = np.concatenate([idx[body], idx[closing]])
    rs = np.concatenate([seg_after[body], prev_seg[closing]])
    order = np.lexsort((ri, rs))
    ri, rs = ri[order], rs[order]
    _, dense, seg_len = np.unique(rs, return_inverse=True, return_counts=True)
    dense = dense.ravel()
    first_pos = np.concatenate([[0], np.cumsum(seg_len)[:-1]])
    geoms = np.asarray(shapely.linestrings(coords[ri], indices=dense), dtype=object)
    first_v = ri[first_pos]
    last_v = ri[first_pos + seg_len - 1]
    node_of_unique = np.full(len(uniq), -1, dtype=np.int64)
    node_vertices_unique = np.unique(inv[is_node])
    node_of_unique[node_vertices_unique] = np.arange(len(node_vertices_unique))
    src = node_of_unique[inv[first_v]]
    tgt = node_of_unique[inv[last_v]]
    line_of = li[first_v]
    node_xy = uniq[node_vertices_unique].astype(float)
    return Network(node_xy, src, tgt, line_of, geoms, lengths_m(geoms))


def lengths_m(geoms: np.ndarray) -> np.ndarray:
    """Length of lon/lat lines in metres, measured in the metric CRS of their extent."""
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return np.array([], dtype=float)
    epsg = metric_epsg_for_bounds(tuple(shapely.total_bounds(geoms)))
    tr = transformer(WGS84, epsg)
    projected = shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return shapely.length(projected)


def largest_component_share(n_nodes: int, source: np.ndarray, target: np.ndarray) -> float:
    """Share of nodes in the largest connected component (undirected)."""
    if n_nodes == 0:
        return 0.0
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = coo_matrix((np.ones(len(source)), (source, target)), shape=(n_nodes, n_nodes))
    _, labels = connected_components(m, directed=False)
    return float(np.bincount(labels).max() / n_nodes)
