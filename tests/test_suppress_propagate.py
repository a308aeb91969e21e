"""The worklist interval propagation of small-cell suppression reaches the same bounds as sweeping every
relation until a sweep changes nothing (the plain definition of the fixed point, written out here)."""

from __future__ import annotations

import random

import pytest

from gisgov.security import suppress


def sweep_until_stable(relations, lo, hi):
    """The reference: all relations in order, again and again, until nothing narrows."""
    while True:
        changed = False
        for rel in relations:
            t, parts = rel.total, rel.parts
            for p in parts:  # one relation at a time, recomputing the sums (slow and obviously right)
                others_lo = sum(lo[q] for q in parts if q != p)
                others_hi = sum(hi[q] for q in parts if q != p)
                if lo[t] - others_hi > lo[p]:
                    lo[p], changed = lo[t] - others_hi, True
                if hi[t] - others_lo < hi[p]:
                    hi[p], changed = hi[t] - others_lo, True
            if sum(lo[p] for p in parts) > lo[t]:
                lo[t], changed = sum(lo[p] for p in parts), True
            if sum(hi[p] for p in parts) < hi[t]:
                hi[t], changed = sum(hi[p] for p in parts), True
        if not changed:
            return lo, hi


def two_way_table(rng: random.Random, rows: int, cols: int):
    """A unit split two ways (compounds × grids, as the stats pages show it): every row total and column
    total is the sum of its cells, the unit the sum of the rows and of the columns. Intervals start as a
    page would leave them: some cells exact, some "<5", some never shown."""
    cells = {(r, c): rng.choice([0, 1, 2, 3, 7, 12, 30]) for r in range(rows) for c in range(cols)}
    values = dict(cells)
    rel = []
    for r in range(rows):
        values[("row", r)] = sum(cells[r, c] for c in range(cols))
        rel.append(suppress.Relation(("row", r), tuple((r, c) for c in range(cols))))
    for c in range(cols):
        values[("col", c)] = sum(cells[r, c] for r in range(rows))
        rel.append(suppress.Relation(("col", c), tuple((r, c) for r in range(rows))))
    values["unit"] = sum(cells.values())
    rel.append(suppress.Relation("unit", tuple(("row", r) for r in range(rows))))
    rel.append(suppress.Relation("unit", tuple(("col", c) for c in range(cols))))
    lo, hi = {}, {}
    for key, v in values.items():
        kind = rng.random()
        if kind < 0.45:
            lo[key], hi[key] = v, v
        elif kind < 0.7 and v < 5:
            lo[key], hi[key] = 0, 4
        else:
            lo[key], hi[key] = 0, 2_000  # above any value here: the truth is always inside
    return values, rel, lo, hi


@pytest.mark.parametrize("seed", range(40))
def test_worklist_reaches_the_same_bounds_as_sweeping(seed):
    rng = random.Random(seed)
    values, rel, lo, hi = two_way_table(rng, rng.randint(2, 6), rng.randint(2, 6))
    rng.shuffle(rel)
    want = sweep_until_stable(rel, dict(lo), dict(hi))
    got = suppress.propagate(rel, dict(lo), dict(hi))
    assert got == want
    for key, v in values.items():  # and the truth always stays inside what is known
        assert got[0][key] <= v <= got[1][key]


def test_a_chain_that_needs_several_passes_is_followed_to_the_end():
    # the unit is shown exact, every cell but one is exact: the unknown cell is pinned only after the row
    # and column totals are narrowed first, whatever order the relations come in
    rel = [
        suppress.Relation("unit", ("r0", "r1")),
        suppress.Relation("r1", ("b", "c")),
        suppress.Relation("r0", ("a",)),
    ]
    lo = {"unit": 10, "r0": 0, "r1": 0, "a": 4, "b": 0, "c": 3}
    hi = {"unit": 10, "r0": 99, "r1": 99, "a": 4, "b": 99, "c": 3}
    got_lo, got_hi = suppress.propagate(rel, lo, hi)
    assert (got_lo["b"], got_hi["b"]) == (3, 3)  # 10 − 4 − 3
    assert (got_lo["r1"], got_hi["r1"]) == (6, 6)
