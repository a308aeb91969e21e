"""How many ID numbers fit what an output reveals (re-identification risk of masked IDs).

A citizen ID number (居民身份证号, GB 11643-1999) is 18 characters::

    RRRRRR YYYYMMDD SSS C
    region birth    seq check (ISO 7064 MOD 11-2 over the first 17; the 17th digit is odd for men)

An output that shows a masked ID next to other fields narrows the number down. The attacker is
assumed to know the region code (it follows from the address), and whatever else the output shows:
the birth year or full birth date, the gender, and the visible last characters of the mask.
:func:`id_candidates` counts, exactly, the valid numbers consistent with all of that. Outputs are
designed so the count stays at or above :data:`MIN_CANDIDATES`:

* last four + birth year: ~33 candidates (365 days x 1 sequence / 11 check values) — too few;
* no ID characters + birth year + gender: ~182,500 candidates — what gisgov exports show.

Pure functions: no database, no I/O.
"""

from __future__ import annotations

import calendar
from collections import Counter
from datetime import date

from gisgov.domain.idcard import CHECK_CHARS as CHECK
from gisgov.domain.idcard import WEIGHTS

MIN_CANDIDATES = 1000
DEFAULT_YEARS = (1900, 2025)


def _dates(years: range) -> list[str]:
    out = []
    for y in years:
        for m in range(1, 13):
            for d in range(1, calendar.monthrange(y, m)[1] + 1):
                out.append(f"{y:04d}{m:02d}{d:02d}")
    return out


def id_candidates(
    region: str,
    *,
    birth_year: int | None = None,
    birth_date: date | None = None,
    gender: str | None = None,
    visible: str = "",
    years: tuple[int, int] = DEFAULT_YEARS,
) -> int:
    """Number of valid ID numbers with this 6-digit ``region`` consistent with what is revealed.

    ``birth_year`` / ``birth_date``: shown in the output (the date wins when both are given);
    ``gender``: '男' / '女' (or 'm' / 'f') when shown; ``visible``: the unmasked LAST characters of the
    ID in the output (``'002X'`` for ``**************002X``, ``''`` when none); ``years``: the
    birth years considered possible when no birth year is shown (inclusive).
    """
    if len(region) != 6 or not region.isdigit():
        raise ValueError(f"region must be a 6-digit code, got {region!r}")
    visible = (visible or "").upper()
    if len(visible) > 18:
        raise ValueError("at most 18 visible characters")
    # constraint per position (0-based) from the visible tail
    fixed = {18 - len(visible) + k: ch for k, ch in enumerate(visible)}
    if any(fixed.get(i, region[i]) != region[i] for i in range(6)):
        return 0
    r_sum = sum(int(region[i]) * WEIGHTS[i] for i in range(6))
    if birth_date is not None:
        dates = [birth_date.strftime("%Y%m%d")]
    elif birth_year is not None:
        dates = _dates(range(birth_year, birth_year + 1))
    else:
        dates = _dates(range(years[0], years[1] + 1))
    date_res: Counter[int] = Counter()
    for d in dates:
        if all(fixed.get(6 + j, d[j]) == d[j] for j in range(8)):
            date_res[sum(int(d[j]) * WEIGHTS[6 + j] for j in range(8)) % 11] += 1
    g = None if gender is None else {"男": 1, "m": 1, "male": 1, "女": 0, "f": 0, "female": 0}[str(gender).lower()]
    seq_res: Counter[int] = Counter()
    for s in range(1000):
        t = f"{s:03d}"
        if any(fixed.get(14 + j, t[j]) != t[j] for j in range(3)):
            continue
        if g is not None and int(t[2]) % 2 != g:
            continue
        seq_res[sum(int(t[j]) * WEIGHTS[14 + j] for j in range(3)) % 11] += 1
    want = fixed.get(17)
    total = 0
    for rd, nd in date_res.items():
        for rs, ns in seq_res.items():
            if want is None or CHECK[(r_sum + rd + rs) % 11] == want:
                total += nd * ns
    return total


def revealed_tail(masked: str | None) -> str:
    """The characters of a masked ID an output shows at its end (``'002X'`` for
    ``**************002X``; ``''`` for ``******************`` or nothing)."""
    if not masked:
        return ""
    tail = masked.rstrip()
    k = len(tail)
    while k > 0 and tail[k - 1] != "*":
        k -= 1
    return tail[k:]


def safe(count: int, k: int = MIN_CANDIDATES) -> bool:
    return count >= k
