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
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from gisgov.security import suppress
from gisgov.stats.units import CITY, Unit

PEOPLE = "__people__"  # the column of distinct special people
Atom = tuple[str, str, str]  # (community code, grid code or '', compound code or '')
Key = tuple[Atom, ...]
_DIMS = (lambda a: a[0][:9], lambda a: a[0], lambda a: a[1], lambda a: a[2])


def key(atoms) -> Key:
    return tuple(sorted(atoms))


@dataclass
class Universe:
    """All cells of the caller's area, with the status of every (cell, column)."""

    k: int
    atoms: dict[Atom, dict] = field(default_factory=dict)  # atom → {"residents", PEOPLE, group codes…}
    status: dict[str, dict[Key, str]] = field(default_factory=dict)  # column → cell → status

    def cell(self, pred) -> Key:
        return key(a for a in self.atoms if pred(a))

    def lookup(self, column: str, cell: Key) -> str | None:
        if not cell:
            return suppress.SHOWN  # no buildings: a structural zero
        return self.status.get(column, {}).get(cell)


def build(rows: list[dict], group_codes: list[str], k: int) -> Universe:
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

_UNIT_PRED = {
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


def apply_block(u: Universe, s: dict, cell: Key) -> None:
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


def apply(u: Universe, unit: Unit, doc: dict) -> dict:
    """The statistics document with small cells suppressed (in place; returned)."""
    items = doc["children"]["items"]
    total, kids, rest = page_cells(u, unit, [c["code"] for c in items])
    apply_block(u, doc["stats"], total)
    for c in items:
        apply_block(u, c["stats"], kids[c["code"]])
    if doc["children"]["rest"] is not None:
        apply_block(u, doc["children"]["rest"], rest)
    return doc
