"""Small-cell suppression applied to the statistics documents (see :mod:`gisgov.security.suppress`).

The *universe* is the caller's whole area, cut into its finest cells (one per community × current
grid × compound of the buildings, :func:`gisgov.stats.queries.cells`). Every figure any statistics
page can show for this caller — the city, a street, a community, a grid, a compound, the part of a
compound inside a grid, a ``rest`` — is a union of those cells, and every way such a unit splits by
street, community, grid or compound is an additive relation an attacker can use. The statuses are
decided once over all of them (pure, deterministic), so the same figure is suppressed on every page
that shows it; a page then only looks its blocks up.

Sensitive columns: the number of people in any special group (``special.people``, with its
``per_1000``) and each of the 14 special groups' memberships (``special.groups``).

The service-circle summary (``/api/coverage/summary``) shows, per unit and per catalog rule, a
group's members (the same figure as ``special.groups``, with the same status: looked up here) and
how many of them live beyond the circle (:func:`beyond_statuses`). Those ``beyond`` counts and their
complements (members within the circle) are sub-counts of the group totals: they are protected over
the same cells and splits, together with ``total = beyond + within`` in every cell and with the
totals' statuses fixed, so the coverage page never shows a figure differently from the statistics
and no beyond count can be recovered by differencing units either.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gisgov.security import suppress
from gisgov.stats.units import CITY, Unit

PEOPLE = "__people__"  # the column of distinct special people
Atom = tuple[str, str, str]  # (community code, grid code or '', compound code or '')
Key = tuple[Atom, ...]
_DIMS: tuple[Callable[[Atom], str], ...] = (lambda a: a[0][:9], lambda a: a[0], lambda a: a[1], lambda a: a[2])


def key(atoms: Iterable[Atom]) -> Key:
    return tuple(sorted(atoms))


@dataclass
class Universe:
    """All cells of the caller's area, with the status of every (cell, column)."""

    k: int
    atoms: dict[Atom, dict[str, Any]] = field(default_factory=dict)  # atom → {"residents", PEOPLE, group codes…}
    status: dict[str, dict[Key, str]] = field(default_factory=dict)  # column → cell → status
    cells: list[Key] = field(default_factory=list)  # every cell a page can show (the closure)
    relations: list[suppress.Relation] = field(default_factory=list)  # cell = sum(parts) of every split
    residents: dict[Key, int] = field(default_factory=dict)  # residents of every cell (public)

    def cell(self, pred: Callable[[Atom], bool]) -> Key:
        return key(a for a in self.atoms if pred(a))

    def lookup(self, column: str, cell: Key) -> str | None:
        if not cell:
            return suppress.SHOWN  # no buildings: a structural zero
        return self.status.get(column, {}).get(cell)


def build(rows: list[dict[str, Any]], group_codes: list[str], k: int) -> Universe:
    """The universe from the rows of ``cells.sql`` and the statuses of every column."""
    u = Universe(k)
    for r in rows:
        a = (r["community_code"], r["grid_code"] or "", r["compound_code"] or "")
        d = u.atoms.setdefault(a, {"residents": 0, PEOPLE: 0})
        if r["kind"] == "cell":
            d["residents"] += int(r["residents"])
            d[PEOPLE] += int(r["n"])
        else:
            d[r["group_code"]] = d.get(r["group_code"], 0) + int(r["n"])
    cells, relations = _closure(list(u.atoms))
    residents = {c: sum(u.atoms[a]["residents"] for a in c) for c in cells}
    u.cells, u.relations, u.residents = cells, relations, residents
    for column in [PEOPLE, *group_codes]:
        values = {c: sum(u.atoms[a].get(column, 0) for a in c) for c in cells}
        if not any(suppress.small(v, residents[c], k) for c, v in values.items()):
            u.status[column] = dict.fromkeys(cells, suppress.SHOWN)
            continue
        u.status[column] = suppress.protect(values, residents, relations, cells, k)
    return u


def _closure(atoms: list[Atom]) -> tuple[list[Key], list[suppress.Relation]]:
    """Every cell reachable by splitting the area (and each part) by street, community, grid and
    compound, with the relation ``cell = sum(parts)`` of every split into two or more parts."""
    seen: set[Key] = set()
    relations: list[suppress.Relation] = []
    todo = [key(atoms)] if atoms else []
    while todo:
        cell = todo.pop()
        if cell in seen:
            continue
        seen.add(cell)
        for dim in _DIMS:
            groups: dict[str, list[Atom]] = defaultdict(list)
            for a in cell:
                groups[dim(a)].append(a)
            if len(groups) < 2:
                continue
            parts = tuple(key(v) for _, v in sorted(groups.items()))
            relations.append(suppress.Relation(cell, parts))
            todo.extend(p for p in parts if p not in seen)
    return sorted(seen), relations


# -- the cells of one page ---------------------------------------------------------------------------

_UNIT_PRED: dict[str, Callable[[str | None], Callable[[Atom], bool]]] = {
    CITY: lambda code: lambda a: True,
    "street": lambda code: lambda a: a[0][:9] == code,
    "community": lambda code: lambda a: a[0] == code,
    "grid": lambda code: lambda a: a[1] == code,
    "compound": lambda code: lambda a: a[2] == code,
}


def page_cells(u: Universe, unit: Unit, child_codes: list[str]) -> tuple[Key, dict[str, Key], Key]:
    """(the unit's cell, each listed child's cell, the rest's cell) in the universe."""
    inside = _UNIT_PRED[unit.level](unit.code)
    total = [a for a in u.atoms if inside(a)]
    kids: dict[str, Key] = {}
    if unit.child is not None:
        of_child = _UNIT_PRED[unit.child]
        for code in child_codes:
            pred = of_child(code)
            kids[code] = key(a for a in total if pred(a))
    used = {a for c in kids.values() for a in c}
    return key(total), kids, key(a for a in total if a not in used)


def apply_block(u: Universe, s: dict[Any, Any], cell: Key) -> None:
    """Replace the sensitive figures of one indicator block (in place) by what this caller may see."""
    special = s["special"]
    st = u.lookup(PEOPLE, cell)
    if st != suppress.SHOWN:
        special["people"] = suppress.label(special["people"], st or suppress.HIDDEN, u.k)
        special["per_1000"] = None
    groups = special["groups"]
    for g, n in list(groups.items()):
        st = u.lookup(g, cell)
        if st != suppress.SHOWN:
            groups[g] = suppress.label(n, st or suppress.HIDDEN, u.k)


def apply(u: Universe, unit: Unit, doc: dict[str, Any]) -> dict[str, Any]:
    """The statistics document with small cells suppressed (in place; returned)."""
    items = doc["children"]["items"]
    total, kids, rest = page_cells(u, unit, [c["code"] for c in items])
    apply_block(u, doc["stats"], total)
    for c in items:
        apply_block(u, c["stats"], kids[c["code"]])
    if doc["children"]["rest"] is not None:
        apply_block(u, doc["children"]["rest"], rest)
    return doc


# -- the service-circle summary: beyond counts as sub-counts of the group totals -----------------------


def unit_cell(u: Universe, level: str, code: str) -> Key:
    """The cell of one street / community / grid / compound (its buildings inside the area)."""
    return u.cell(_UNIT_PRED[level](str(code)))


def unit_cells(u: Universe) -> set[Key]:
    """The cells of every street, community, grid and compound of the area (what coverage pages show)."""
    out: set[Key] = set()
    dims: tuple[tuple[str, Callable[[Atom], str]], ...] = (
        ("street", lambda a: a[0][:9]),
        ("community", lambda a: a[0]),
        ("grid", lambda a: a[1]),
        ("compound", lambda a: a[2]),
    )
    for level, dim in dims:
        for code in {dim(a) for a in u.atoms} - {""}:
            out.add(unit_cell(u, level, code))
    return out


def group_values(u: Universe, group: str) -> dict[Key, int]:
    """Members of ``group`` in every cell of the universe."""
    return {c: sum(u.atoms[a].get(group, 0) for a in c) for c in u.cells}


def beyond_statuses(
    u: Universe, group: str, beyond: dict[str, dict[Atom, int]], shown: set[Key]
) -> dict[str, dict[Key, str]]:
    """Status of every cell's ``beyond`` count, for each rule (key → beyond per atom) of one group.

    The group's totals keep their statuses (those of the statistics, fixed); per cell
    ``total = beyond + within``, and beyond and within each add up over every split of the area. A
    beyond count is ``"<k"`` when small; ``"≥k"`` when its total is suppressed (it must not narrow a
    suppressed total) or when it is chosen as a complement (a small beyond or within count elsewhere,
    or a suppressed total, would otherwise be pinned); the within counts are never shown but are
    protected as sensitive cells too (a small within count must not follow from total − beyond).
    When no shown figure is left to complement, the beyond count is left out (``None``). Cells not
    shown on any coverage page (``shown``) are never shown."""
    k = u.k
    total = group_values(u, group)
    t_status = u.status.get(group) or dict.fromkeys(u.cells, suppress.SHOWN)
    values: dict[Any, Any] = {}
    residents: dict[Any, Any] = {}
    status: dict[Any, Any] = {}
    free: set[Any] = set()
    relations: list[suppress.Relation] = []
    for c in u.cells:
        values[("T", "", c)], residents[("T", "", c)], status[("T", "", c)] = total[c], u.residents[c], t_status[c]
    for r in sorted(beyond):
        per_atom = beyond[r]
        for c in u.cells:
            b = sum(per_atom.get(a, 0) for a in c)
            if not 0 <= b <= total[c]:
                raise ValueError(f"beyond count {b} of {r} outside 0…{total[c]} (inputs out of step)")
            res = u.residents[c]
            bc, wc = ("B", r, c), ("W", r, c)
            values[bc], values[wc] = b, total[c] - b
            residents[bc] = residents[wc] = res
            if c not in shown:
                status[bc] = suppress.HIDDEN
            elif suppress.small(b, res, k):
                status[bc] = suppress.PRIMARY
            elif t_status[c] != suppress.SHOWN:
                status[bc] = suppress.COMPLEMENT
            else:
                status[bc] = suppress.SHOWN
            status[wc] = suppress.HIDDEN
            free.add(bc)
            relations.append(suppress.Relation(("T", "", c), (bc, wc)))
        for col in ("B", "W"):
            relations.extend(
                suppress.Relation((col, r, rel.total), tuple((col, r, p) for p in rel.parts)) for rel in u.relations
            )
    status = protect_fixed(values, residents, relations, status, free, k)
    return {r: {c: status[("B", r, c)] for c in u.cells} for r in beyond}


def protect_fixed(
    values: dict[Any, Any],
    residents: dict[Any, Any],
    relations: list[suppress.Relation],
    status: dict[Any, Any],
    free: set[Any],
    k: int,
) -> dict[Any, Any]:
    """Like :func:`gisgov.security.suppress.protect`, from given statuses of which only the ``free``
    cells may change: while a small cell can be pinned, the smallest shown free cell next to it
    becomes a complement (``"≥k"``); when none is left, a suppressed free cell next to it is left out
    altogether (a range ``0…residents``). Deterministic (ties broken by key)."""
    status = dict(status)
    near: dict[Any, Any] = defaultdict(set)
    for rel in relations:
        cells = (rel.total, *rel.parts)
        for c in cells:
            near[c].update(cells)

    def escalate(candidates: Iterable[Any]) -> bool:
        live = [c for c in candidates if c in free and residents.get(c, 0) > 0]
        pool = [(values[c], c) for c in live if status[c] == suppress.SHOWN]
        if pool:
            status[min(pool)[1]] = suppress.COMPLEMENT
            return True
        pool = sorted(c for c in live if status[c] in (suppress.PRIMARY, suppress.COMPLEMENT))
        if pool:
            status[pool[0]] = suppress.HIDDEN
            return True
        return False

    for _ in range(2 * len(free) + 2):  # every round raises at least one free cell (at most twice)
        pinned = suppress.exposed(values, residents, status, relations, k)
        if not pinned:
            return status
        added = False
        for cell in pinned:
            added |= escalate(near.get(cell, ()))
        if not added:
            ring = set().union(*(near.get(c, set()) for p in pinned for c in near.get(p, ())))
            if not escalate(ring):
                raise RuntimeError(f"cannot protect cell {pinned[0]!r}")
    raise RuntimeError("suppression did not settle")
