"""Gridding units: a compound (小区) kept whole, or — when a compound alone exceeds the household
(or people) maximum — each of its buildings; plus loose buildings (楼栋 outside any compound)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gisgov.gridding.graph import Graph, contract
from gisgov.gridding.rules import GridRules
from gisgov.gridding.territory import Atoms, Compounds


@dataclass
class Units:
    atoms: list[np.ndarray]  # atom indices of each unit
    of_atom: np.ndarray  # unit of each atom (-1 = not a unit here, e.g. in a locked grid)
    kind: np.ndarray  # 'compound' | 'building'
    code: np.ndarray  # compound code or building code
    compound: np.ndarray  # compound index or -1
    households: np.ndarray
    people: np.ndarray
    groups: np.ndarray
    xy: np.ndarray
    graph: Graph
    split_compounds: list[int] = field(default_factory=list)
    #: per unit: some of its people are estimated (households × household size)
    people_estimated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def n(self) -> int:
        return len(self.atoms)


def build_units(
    atoms: Atoms, compounds: Compounds, atom_graph: Graph, rules: GridRules, *, active: np.ndarray | None = None
) -> Units:
    """Group ``atoms`` (only those in ``active``) into units and contract the atom graph onto them."""
    act = np.ones(atoms.n, bool) if active is None else np.asarray(active, bool)
    groups: list[list[int]] = []
    kind: list[str] = []
    code: list[Any] = []
    comp: list[int] = []
    split: list[int] = []
    by_comp: dict[int, list[int]] = {}
    for a in np.flatnonzero(act).tolist():
        c = int(atoms.compound[a])
        if c >= 0:
            by_comp.setdefault(c, []).append(int(a))
        else:
            groups.append([int(a)])
            kind.append("building")
            code.append(atoms.code[a])
            comp.append(-1)
    for c in sorted(by_comp):
        members = by_comp[c]
        h = int(atoms.households[members].sum())
        p = int(atoms.people[members].sum())
        whole = rules.keep_compounds_whole and (h <= rules.max_households and p <= rules.max_people)
        if whole or len(members) == 1:
            groups.append(members)
            kind.append("compound")
            code.append(compounds.code[c])
            comp.append(c)
        else:
            split.append(c)
            for a in members:
                groups.append([a])
                kind.append("building")
                code.append(atoms.code[a])
                comp.append(c)
    # deterministic order: west→east then north→south of the first atom
    order = sorted(range(len(groups)), key=lambda u: (atoms.xy[groups[u][0], 0], -atoms.xy[groups[u][0], 1], code[u]))
    unit_atoms = [np.asarray(groups[u], dtype=np.int64) for u in order]
    of_atom = np.full(atoms.n, -1, dtype=np.int64)
    for u, g in enumerate(unit_atoms):
        of_atom[g] = u
    k = len(unit_atoms)
    hh = np.array([atoms.households[g].sum() for g in unit_atoms], dtype=np.int64)
    pp = np.array([atoms.people[g].sum() for g in unit_atoms], dtype=np.int64)
    gg = (
        np.stack([atoms.groups[g].sum(0) for g in unit_atoms])
        if k
        else np.zeros((0, atoms.groups.shape[1]), dtype=np.int64)
    )
    xy = np.array([atoms.xy[g].mean(0) for g in unit_atoms]) if k else np.zeros((0, 2))
    est_atom = np.asarray(atoms.people_estimated, dtype=bool)
    est = (
        np.array([bool(est_atom[g].any()) for g in unit_atoms], dtype=bool)
        if len(est_atom) == atoms.n
        else np.zeros(k, dtype=bool)
    )
    # contract the atom graph over active atoms
    ok = (of_atom[atom_graph.ei] >= 0) & (of_atom[atom_graph.ej] >= 0)
    sub = Graph(
        atoms.n,
        atom_graph.ei[ok],
        atom_graph.ej[ok],
        atom_graph.length[ok],
        atom_graph.crossing[ok],
        atom_graph.weight[ok],
    )
    safe = np.where(of_atom >= 0, of_atom, 0)
    ug = contract(sub, safe, k) if k else Graph.empty(0)
    return Units(
        unit_atoms,
        of_atom,
        np.array([kind[u] for u in order], dtype=object),
        np.array([code[u] for u in order], dtype=object),
        np.array([comp[u] for u in order], dtype=np.int64),
        hh,
        pp,
        gg,
        xy,
        ug,
        sorted(split),
        est,
    )
