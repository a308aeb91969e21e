"""Resident ID numbers (居民身份证号码, GB 11643-1999): format and check character, in one place.

An ID number is 18 characters::

    RRRRRR YYYYMMDD SSS C
    region birth    seq check (ISO 7064 MOD 11-2 over the first 17; the 17th digit is odd for men)

The check character is ``CHECK_CHARS[sum(d_i * WEIGHTS[i]) % 11]``, with ``WEIGHTS[i] = 2**(17-i) mod 11``.
Every module that checks, builds or counts ID numbers uses these (the vault, re-identification counts,
roster imports, the sample city). Pure: no database, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# ISO 7064 MOD 11-2 weights of the first 17 characters (2**(17-i) mod 11)
WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
# check character for a weighted sum ≡ 0, 1, …, 10 (mod 11)
CHECK_CHARS = "10X98765432"
# format: region (no leading 0), birth date 1800–2099 with a plausible month/day, sequence, check character
ID_PATTERN = r"^[1-9]\d{5}(18|19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d{3}[\dX]$"

_W = np.array(WEIGHTS, dtype=np.int64)
_C = np.frombuffer(CHECK_CHARS.encode("ascii"), dtype=np.uint8)


def check_digit(first17: str) -> str:
    """The check character (``0``–``9`` or ``X``) of the first 17 digits of an ID number."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError(f"需要17位数字 need 17 digits, got {len(first17)} characters")
    return CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True)) % 11]


def check_digits_ok(ids: Iterable[str]) -> np.ndarray:
    """Vectorised: True where a string is 17 ASCII digits followed by its right check character
    (upper-case ``X``). Anything else (wrong length, non-digits, lower-case ``x``) is False."""
    values = list(ids)
    ok = np.array([len(v) == 18 and v.isascii() and v[:17].isdigit() for v in values], dtype=bool)
    if ok.any():
        b = np.frombuffer("".join(v for v, k in zip(values, ok, strict=True) if k).encode("ascii"), dtype=np.uint8)
        b = b.reshape(-1, 18)
        sums = ((b[:, :17].astype(np.int64) - 48) * _W).sum(axis=1) % 11
        ok[np.flatnonzero(ok)] = _C[sums] == b[:, 17]
    return ok
