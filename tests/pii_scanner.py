"""Scanner for personal data in clear: 18-character ID numbers (GB 11643-1999, with a valid check
character and a plausible birth date) and 11-digit mainland mobile numbers (1[3-9]xxxxxxxxx).

    from pii_scanner import assert_no_clear_pii, find_clear_pii
    assert_no_clear_pii(response.text, where="GET /api/layers/resident")

Masked forms (``110101********4514``, ``138****5678``) and longer digit runs (21-digit household
codes, coordinates' decimals) do not match. The check character is computed here independently
of ``gisgov.security.pii`` so the scanner is an oracle of its own.
"""

from __future__ import annotations

import re
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"

# not preceded by a digit or a decimal point, not followed by a digit
ID_RE = re.compile(r"(?<![0-9.])([1-9][0-9]{16}[0-9Xx])(?![0-9])")
MOBILE_RE = re.compile(r"(?<![0-9.])(1[3-9][0-9]{9})(?![0-9])")


def id_check_char(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS)) % 11]


def looks_like_id(value: str) -> bool:
    """True for an 18-character string that is a well-formed ID number (date and check character)."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not date(1880, 1, 1) <= born <= date(2100, 12, 31):
        return False
    return id_check_char(value[:17]) == value[17].upper()


def find_clear_pii(text: str) -> list[tuple[str, str]]:
    """(kind, value) for every clear ID number ('id') and mobile number ('mobile') in ``text``."""
    found = [("id", m.group(1)) for m in ID_RE.finditer(text) if looks_like_id(m.group(1))]
    found += [("mobile", m.group(1)) for m in MOBILE_RE.finditer(text)]
    return found


def assert_no_clear_pii(text: str | bytes, where: str = "") -> None:
    """Fail (AssertionError naming the kind and a masked sample) if ``text`` holds a clear ID or mobile."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    found = find_clear_pii(text)
    if found:
        sample = ", ".join(f"{kind} {value[:3]}…{value[-2:]}" for kind, value in found[:5])
        raise AssertionError(f"clear personal data{' in ' + where if where else ''}: {len(found)} hit(s): {sample}")
