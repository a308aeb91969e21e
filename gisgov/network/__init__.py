"""Walking network: graph from edge arrays, snapping along edges, access legs, exact distances."""

from gisgov.network.access import Access, building_access, snap_gates
from gisgov.network.graph import NetworkError, WalkGraph, build_graph, graph_from_edges
from gisgov.network.paths import (
    NodeDistances,
    PointReader,
    Sources,
    nearest_distances,
    node_distances,
    point_distances,
)
from gisgov.network.snap import (
    FLAG_BARRIER,
    FLAG_GATE,
    FLAG_LONG,
    FLAG_MINOR_COMPONENT,
    FLAG_NO_NETWORK,
    FLAG_REROUTED,
    FLAGS,
    Snap,
    flag_names,
    snap_points,
)

__all__ = [
    "FLAGS",
    "FLAG_BARRIER",
    "FLAG_GATE",
    "FLAG_LONG",
    "FLAG_MINOR_COMPONENT",
    "FLAG_NO_NETWORK",
    "FLAG_REROUTED",
    "Access",
    "NetworkError",
    "NodeDistances",
    "PointReader",
    "Snap",
    "Sources",
    "WalkGraph",
    "build_graph",
    "building_access",
    "flag_names",
    "graph_from_edges",
    "nearest_distances",
    "node_distances",
    "point_distances",
    "snap_gates",
    "snap_points",
]
