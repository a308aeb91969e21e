"""Small-cell suppression of sensitive counts for aggregate-only roles (pure: no database, no HTTP).

Roles without ``read_personal`` (planner 规划人员, viewer 只读) see special-group figures (特殊人群:
all 14 groups of table ``special_group`` are sensitive, and the number of people in any of them) only
as aggregates that cannot single anyone out:

- **Primary suppression.** A sensitive count below ``k`` (``GISGOV_SMALL_CELL_K``, default 5) is shown
  as the string ``"<5"`` (generally ``f"<{k}"``).
- **Zeros.** A zero is shown as ``0`` only when it is *structural*: the cell has no residents at all,
  so the count cannot be anything else (and the resident count is public anyway). Any other zero is
  shown as ``"<5"`` too: "nobody in this compound is under community correction" is itself a
  disclosure about every resident, and telling 0 apart from 1–4 narrows the range an attacker
  differences against. This is the usual practice of statistical offices (structural zeros only).
- **Complementary suppression.** A suppressed cell must not be recoverable from the totals the API
  shows: the unit's total equals the sum of its children (+ ``rest``), a compound equals the sum of its
  parts in each grid, and so on. For every such relation :func:`protect` runs interval reasoning as an
  attacker would (every shown figure exact, ``"<5"`` = 0…k-1, a complementary cell = k…residents, a
  figure never shown = 0…residents, nothing above the cell's resident count) until nothing changes;
  while any cell with fewer than ``k`` is pinned to one value, the smallest shown cell next to it
  (in a relation with it) is suppressed as well (``f"≥{k}"``, shown as a range, because that is all an
  attacker could learn about it anyway). With exactly one suppressed child under a shown total this is
  the classic rule: the next-smallest child goes too (or the total, when no child is left).
- **Consistency.** The statuses are computed once over the caller's whole area (all cells, all
  relations), never per page, so a cell suppressed on one page is suppressed on every page that
  shows it; the decision is deterministic (ties broken by the cell's key).

Limits: the reasoning is interval propagation over the relations, not a full linear program over all
of them at once, and relations *between* columns (a person in several groups) are not modelled —
the per-group counts are memberships and the people count is distinct people, so they have no exact
sum relation in the output. Roles with ``read_personal`` see exact numbers within their scope.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SHOWN = "shown"
PRIMARY = "primary"  # below k: "<k"
COMPLEMENT = "complement"  # suppressed so that a primary cannot be recovered: "≥k"
HIDDEN = "hidden"  # never shown on any page (e.g. the part of a compound outside every grid)


@dataclass(frozen=True)
class Relation:
    """``total = sum(parts)`` over disjoint parts (one additive relation the API exposes)."""

    total: Hashable
    parts: tuple[Hashable, ...]


def small(value: int, residents: int, k: int) -> bool:
    """A sensitive count that must be suppressed: below k, unless it is a structural zero."""
    return residents > 0 and value < k


def label(value: int, status: str, k: int) -> int | str | None:
    """What a cell shows: the number, ``"<k"``, ``"≥k"`` (or ``None`` for a cell never shown)."""
    if status == SHOWN:
        return int(value)
    if status == PRIMARY:
        return f"<{k}"
    if status == COMPLEMENT:
        return f"≥{k}"
    return None


def initial(values: Mapping[Any, Any], residents: Mapping[Any, Any], shown: Iterable[Any], k: int) -> dict[Any, Any]:
    """Primary statuses: cells on some page are SHOWN or PRIMARY; the others HIDDEN."""
    on_page = set(shown)
    return {
        c: (HIDDEN if c not in on_page else PRIMARY if small(v, residents.get(c, 0), k) else SHOWN)
        for c, v in values.items()
    }


def bounds(status: str, value: int, residents: int, k: int) -> tuple[int, int]:
    """What an attacker knows about one cell from the page alone."""
    res = max(int(residents), 0)
    if res == 0:
        return 0, 0
    if status == SHOWN:
        return int(value), int(value)
    if status == PRIMARY:
        return 0, min(k - 1, res)
    if status == COMPLEMENT:
        return min(k, res), res
    return 0, res


def _tighten(t: int, parts: list[int], lo: list[int], hi: list[int]) -> list[int]:
    """One pass of ``total = sum(parts)`` over the intervals (cells by position; in place); the cells it
    narrowed."""
    changed = []
    sum_lo = sum(lo[p] for p in parts)
    sum_hi = sum(hi[p] for p in parts)
    if sum_lo > lo[t]:
        lo[t] = sum_lo
        changed.append(t)
    if sum_hi < hi[t]:
        hi[t] = sum_hi
        changed.append(t)
    for p in parts:
        new_lo = lo[t] - (sum_hi - hi[p])
        new_hi = hi[t] - (sum_lo - lo[p])
        if new_lo > lo[p]:
            sum_lo += new_lo - lo[p]
            lo[p] = new_lo
            changed.append(p)
        if new_hi < hi[p]:
            sum_hi -= hi[p] - new_hi
            hi[p] = new_hi
            changed.append(p)
    return changed


@dataclass(frozen=True)
class Indexed:
    """The relations with their cells by position (``cells[i]``), and per cell the relations naming it:
    built once per column, so the propagation hashes no cell key (a tuple of codes) in its loop."""

    cells: tuple[Hashable, ...]
    rels: tuple[tuple[int, list[int]], ...]
    by_cell: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, relations: Sequence[Relation], cells: Iterable[Hashable] = ()) -> Indexed:
        pos: dict[Hashable, int] = {}
        for c in cells:
            pos.setdefault(c, len(pos))
        for rel in relations:
            for c in (rel.total, *rel.parts):
                pos.setdefault(c, len(pos))
        rels = tuple((pos[r.total], [pos[p] for p in r.parts]) for r in relations)
        by_cell: list[list[int]] = [[] for _ in pos]
        for i, (t, parts) in enumerate(rels):
            for c in (t, *parts):
                by_cell[c].append(i)
        return cls(tuple(pos), rels, tuple(tuple(b) for b in by_cell))


def _settle(ix: Indexed, lo: list[int], hi: list[int]) -> None:
    """The worklist propagation over positions (in place)."""
    n = len(ix.rels)
    queue = deque(range(n))
    queued = [True] * n
    steps, limit = 0, 10_000 * max(n, 1)
    while queue:
        i = queue.popleft()
        queued[i] = False
        steps += 1
        if steps > limit:
            raise RuntimeError("interval propagation did not settle")  # cannot happen: integers only shrink
        t, parts = ix.rels[i]
        for c in _tighten(t, parts, lo, hi):
            for j in ix.by_cell[c]:
                if not queued[j]:
                    queued[j] = True
                    queue.append(j)


def propagate(
    relations: Sequence[Relation],
    lo: dict[Any, Any],
    hi: dict[Any, Any],
    *,
    index: Indexed | None = None,
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """Tighten every cell's interval with every relation until nothing changes (in place; returned).

    A worklist (as constraint propagation does it, AC-3): every relation once, then again only the
    relations of a cell that narrowed. Each pass only narrows integer intervals, so any order reaches
    the same fixed point as sweeping all relations until a sweep changes nothing (what this did before,
    much slower on a city's 15 columns; ``tests/test_suppress_propagate.py`` checks both agree), and it
    always ends. ``index``: :meth:`Indexed.of` of ``relations`` (and of every key of ``lo``), when the
    caller has it."""
    ix = index if index is not None else Indexed.of(relations, lo)
    lo_l = [lo[c] for c in ix.cells]
    hi_l = [hi[c] for c in ix.cells]
    _settle(ix, lo_l, hi_l)
    for c, a, b in zip(ix.cells, lo_l, hi_l, strict=True):
        lo[c], hi[c] = a, b
    return lo, hi


def exposed(
    values: Mapping[Any, Any],
    residents: Mapping[Any, Any],
    status: Mapping[Any, Any],
    relations: Sequence[Relation],
    k: int,
    *,
    index: Indexed | None = None,
) -> list[Any]:
    """Cells below k (not structural zeros) that an attacker can pin to a single value, by key."""
    lo, hi = {}, {}
    for c, v in values.items():
        lo[c], hi[c] = bounds(status[c], v, residents.get(c, 0), k)
    propagate(relations, lo, hi, index=index)
    return sorted(c for c, v in values.items() if small(v, residents.get(c, 0), k) and lo[c] == hi[c])


def _neighbours(relations: Sequence[Relation]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for rel in relations:
        cells = (rel.total, *rel.parts)
        for c in cells:
            out.setdefault(c, set()).update(cells)
    return out


def protect(
    values: Mapping[Any, Any], residents: Mapping[Any, Any], relations: Sequence[Relation], shown: Iterable[Any], k: int
) -> dict[Any, Any]:
    """Status of every cell (SHOWN, PRIMARY, COMPLEMENT, HIDDEN) for one column of counts.

    ``values``: the true count of every cell (key → int; keys must be orderable); ``residents``: its
    residents (public; 0 = structural zero); ``relations``: the additive relations among cells; ``shown``:
    the cells that appear on some page. Every cell named by a relation must be in ``values``."""
    status = initial(values, residents, shown, k)
    near = _neighbours(relations)
    index = Indexed.of(relations, values)
    # the classic rule first (cheap): a shown total with exactly one suppressed part
    for rel in relations:
        if status[rel.total] != SHOWN:
            continue
        hidden = [p for p in rel.parts if status[p] != SHOWN and residents.get(p, 0) > 0]
        if len(hidden) == 1:
            _add_complement(rel.parts, hidden[0], values, residents, status)
    for _ in range(len(values) + 1):
        pinned = exposed(values, residents, status, relations, k, index=index)
        if not pinned:
            return status
        added = False
        for cell in pinned:
            added |= _add_complement(near.get(cell, ()), cell, values, residents, status)
        if not added:  # nothing shown is left next to the pinned cells: widen the search one ring
            ring = set().union(*(near.get(c, set()) for p in pinned for c in near.get(p, ())))
            if not _add_complement(ring, pinned[0], values, residents, status):
                raise RuntimeError(f"cannot protect cell {pinned[0]!r}")  # every related cell already hidden
    raise RuntimeError("suppression did not settle")


def _add_complement(
    candidates: Iterable[Any],
    cell: Any,
    values: Mapping[Any, Any],
    residents: Mapping[Any, Any],
    status: dict[Any, Any],
) -> bool:
    """Suppress the smallest shown, non-structural cell among ``candidates`` (not ``cell``)."""
    pool = [(values[c], c) for c in candidates if c != cell and status.get(c) == SHOWN and residents.get(c, 0) > 0]
    if not pool:
        return False
    status[min(pool)[1]] = COMPLEMENT
    return True
