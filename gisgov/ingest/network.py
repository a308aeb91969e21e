"""Walking network from line geometries: split at every shared vertex, number nodes, measure.

Pure computation on shapely arrays (used by road-file loads and the OSM import). A vertex becomes
a node when it ends a line or is shared by two or more lines (or twice by one line): each line is
cut there, so no edge hides a junction and nothing is silently unreachable. Lines that cross
without a shared vertex (bridges, tunnels) stay unconnected, as they should.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
FOOT_YES_VALUES = ("yes", "designated", "permissive", "official", "destination")


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


@dataclass(frozen=True)
class WalkProfile:
    """Which OSM ways the walking network uses (``layers/walk_profile.yaml``; see that file for the
    reasons of the default). A way is walkable when:

    1. its ``foot`` tag is in ``foot_yes`` (and, for a ``never`` highway, in ``foot_yes_on_never``);
    2. otherwise not when ``foot`` is in ``foot_no``, its ``highway`` is in ``never``, it carries
       ``motorroad=yes`` (机动车专用道) while ``motorroad_walkable`` is false, or its ``highway`` is in
       ``needs_foot_tag`` (walkable only when tagged so, e.g. cycleways);
    3. otherwise when its ``access`` is not in ``access_no``.
    """

    name: str = "default"
    foot_yes: frozenset[str] = frozenset(FOOT_YES_VALUES)
    foot_yes_on_never: frozenset[str] = frozenset({"yes", "designated"})
    foot_no: frozenset[str] = frozenset(NO_FOOT_VALUES)
    access_no: frozenset[str] = frozenset({"no", "private"})
    never: frozenset[str] = frozenset(NO_FOOT_HIGHWAY)
    needs_foot_tag: frozenset[str] = frozenset({"cycleway"})
    motorroad_walkable: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any], name: str | None = None) -> WalkProfile:
        known = {f for f in cls.__dataclass_fields__ if f != "name"}
        unknown = set(d) - known - {"name"}
        if unknown:
            raise ValueError(f"walk profile: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        kw: dict[str, Any] = {"name": str(d.get("name") or name or "custom")}
        for k in known:
            if k not in d:
                continue
            v = d[k]
            if k == "motorroad_walkable":
                if not isinstance(v, bool):
                    raise ValueError(f"walk profile: {k} must be true or false, got {v!r}")
                kw[k] = v
            else:
                if not isinstance(v, list):
                    raise ValueError(f"walk profile: {k} must be a list of tag values, got {v!r}")
                # YAML 1.1 reads unquoted yes/no as booleans: take them back as the OSM values
                kw[k] = frozenset(("yes" if x else "no") if isinstance(x, bool) else str(x).strip().lower() for x in v)
        return cls(**kw)

    def decide(
        self, highway: str | None, foot: str | None = None, access: str | None = None, motorroad: str | None = None
    ) -> tuple[bool, str]:
        """(walkable, reason): reason is one of ``foot_tag``, ``foot_no``, ``never``, ``motorroad``,
        ``no_foot_tag``, ``access_no``, ``default``."""
        h = (highway or "").strip().lower()
        f = (foot or "").strip().lower()
        a = (access or "").strip().lower()
        if f in self.foot_yes:
            if h in self.never and f not in self.foot_yes_on_never:
                return False, "never"
            return True, "foot_tag"
        if f in self.foot_no:
            return False, "foot_no"
        if h in self.never:
            return False, "never"
        if not self.motorroad_walkable and (motorroad or "").strip().lower() == "yes":
            return False, "motorroad"
        if h in self.needs_foot_tag:
            return False, "no_foot_tag"
        if a in self.access_no:
            return False, "access_no"
        return True, "default"


DEFAULT_WALK_PROFILE = "walk_profile.yaml"


def load_walk_profile(path: str | Path | None = None) -> WalkProfile:
    """The walking profile in ``path`` (YAML), or ``layers/walk_profile.yaml``."""
    import yaml

    from gisgov.config import get_settings

    p = Path(path) if path else get_settings().layers_dir / DEFAULT_WALK_PROFILE
    with open(p, encoding="utf-8") as fh:
        d = yaml.safe_load(fh) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{p.name}: a walk profile is a mapping of keys to lists")
    return WalkProfile.from_dict(d, name=p.stem)


def foot_allowed(
    highway: str | None,
    foot: str | None = None,
    access: str | None = None,
    motorroad: str | None = None,
    profile: WalkProfile | None = None,
) -> bool:
    """Walking allowed under ``profile`` (default: :class:`WalkProfile`'s built-in rules, the same
    as ``layers/walk_profile.yaml``)."""
    return (profile or WalkProfile()).decide(highway, foot, access, motorroad)[0]


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
