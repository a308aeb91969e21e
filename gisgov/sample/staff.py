"""Synthetic grid staff (一格三员, 合成 synthetic): one 网格长 (grid leader), one 专职网格员
(full-time grid worker) and one or two 兼职网格员 (part-time grid workers) per grid.

:func:`synthetic_staff` is pure: grid codes in, a DataFrame out; :func:`staff_active_grids` writes them
for the demo (the sample side of the grid step, so the planner never imports the sample city). Each grid's staff are drawn from a generator seeded by the
grid code, so the same grid always gets the same people whatever else changes. Names carry the
「（合成）」 label like every made-up name of the sample city; phones are made up in clear here and
must be protected (:meth:`gisgov.security.pii.Vault.protect_phone`) before they reach a database.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gisgov.domain.staff import ROLE_EN as _ROLE_EN
from gisgov.sample import names as nm

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from gisgov.gridding.service import StaffedGrids
    from gisgov.security.pii import Vault

ROLES = ("网格长", "专职网格员", "兼职网格员")
ROLE_EN = {r: _ROLE_EN[r] for r in ROLES}
LABEL = "（合成）"
SOURCE = "gisgov demo（合成 synthetic）"


def _rng(code: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{code}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _name(rng: np.random.Generator) -> str:
    sur_p = nm.SURNAME_WEIGHTS / nm.SURNAME_WEIGHTS.sum()
    male = rng.random() < 0.5
    pool = nm.GIVEN_MALE if male else nm.GIVEN_FEMALE
    given = "".join(nm.pick_chars(rng, pool, 1 if rng.random() < 0.3 else 2))
    return str(nm.pick_chars(rng, nm.SURNAMES, 1, sur_p)[0]) + given + LABEL


def _phone(rng: np.random.Generator) -> str:
    return nm.MOBILE_PREFIXES[rng.integers(len(nm.MOBILE_PREFIXES))] + f"{rng.integers(0, 10**8):08d}"


def synthetic_staff(grid_codes, *, seed: int = 0) -> pd.DataFrame:
    """Columns grid_code, role, name, phone (clear, synthetic): 3–4 people per grid."""
    rows = []
    for code in grid_codes:
        rng = _rng(str(code), seed)
        roles = ["网格长", "专职网格员"] + ["兼职网格员"] * int(rng.integers(1, 3))
        for role in roles:
            rows.append({"grid_code": str(code), "role": role, "name": _name(rng), "phone": _phone(rng)})
    return pd.DataFrame(rows, columns=["grid_code", "role", "name", "phone"])


STAFF_NOTE = "网格员为合成数据 grid staff are synthetic (一格三员: 网格长, 专职网格员, 兼职网格员)"


def staff_active_grids(conn: Connection, vault: Vault | None = None, *, seed: int = 0) -> StaffedGrids:
    """Give every active grid without staff synthetic staff (一格三员: 网格长, 专职网格员, 1–2
    兼职网格员); phones stored as ciphertext + masked form only. Returns counts of grids and people."""
    from sqlalchemy import text

    from gisgov.gridding.service import StaffedGrids
    from gisgov.security.pii import Vault

    grids = conn.execute(
        text("""
        SELECT g.id, g.code FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active'
        WHERE NOT EXISTS (SELECT 1 FROM grid_staff s WHERE s.grid_id = g.id) ORDER BY g.code""")
    ).all()
    if not grids:
        return StaffedGrids(grids=0, staff=0)
    vault = vault or Vault.from_settings()
    ids = {code: gid for gid, code in grids}
    staff = synthetic_staff([code for _, code in grids], seed=seed)
    rows = []
    for r in staff.itertuples():
        cipher, masked = vault.protect_phone(str(r.phone))
        rows.append({"g": ids[r.grid_code], "role": r.role, "name": r.name, "c": cipher, "m": masked})
    conn.execute(
        text(
            "INSERT INTO grid_staff (grid_id, role, name, phone_cipher, phone_masked) VALUES (:g, :role, :name, :c, :m)"
        ),
        rows,
    )
    conn.execute(
        text("""INSERT INTO gisgov_meta (key, value) VALUES ('grid_staff', CAST(:v AS jsonb))
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"""),
        {"v": json.dumps({"synthetic": True, "source": SOURCE, "note": STAFF_NOTE}, ensure_ascii=False)},
    )
    return StaffedGrids(grids=len(grids), staff=len(rows))
