"""Load a :class:`SampleCity` into PostGIS: COPY, one transaction, all or nothing.

The database must be empty (no street, community, grid, compound, building, household, resident,
facility, road or barrier rows) unless ``replace=True``, which first truncates those tables (and,
through CASCADE, whatever references them). Residents' ID numbers and phones are protected with
:class:`gisgov.security.pii.Vault` before they reach the database: HMAC hash + AES-GCM cipher +
last four characters, phone cipher + masked phone; the clear values are never sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import psycopg
import shapely

from gisgov.db.copy import copy_frame
from gisgov.db.engine import psycopg_conninfo
from gisgov.errors import GisgovError
from gisgov.sample.generate import SampleCity
from gisgov.security.pii import Vault

# tables a sample load fills (and `replace` truncates), parents first
TABLES = (
    "street",
    "community",
    "grid",
    "grid_staff",
    "compound",
    "building",
    "household",
    "resident",
    "resident_group",
    "facility",
    "road_node",
    "road_edge",
    "compound_gate",
    "barrier",
)
_CHUNK = 20000
_LOCK_KEY = 0x5A3C17  # advisory lock: one sample load at a time per database


class DatabaseNotEmpty(GisgovError):
    """The target database already holds data and replace was not asked for."""

    status_code = 409


def protect_residents(residents: pd.DataFrame, vault: Vault) -> pd.DataFrame:
    """id_hash, id_cipher, id_last4, phone_cipher, phone_masked (bytea as ``\\x`` hex) for each resident."""
    ids = residents["id_number"].astype(str).tolist()
    prot = vault.protect_ids(ids)
    phones = residents["phone"].tolist()
    ph = [vault.protect_phone(p) if isinstance(p, str) and p else None for p in phones]
    return pd.DataFrame(
        {
            "id_hash": ["\\x" + p.hash.hex() for p in prot],
            "id_cipher": ["\\x" + p.cipher.hex() for p in prot],
            "id_last4": [p.last4 for p in prot],
            "phone_cipher": [None if x is None else "\\x" + x[0].hex() for x in ph],
            "phone_masked": [None if x is None else x[1] for x in ph],
        },
        index=residents.index,
    )


def _ewkb(geoms, srid: int) -> np.ndarray:
    g = shapely.set_srid(np.asarray(geoms), srid)
    return shapely.to_wkb(g, hex=True, include_srid=True)


def _copy(cur: psycopg.Cursor, table: str, df: pd.DataFrame) -> None:
    copy_frame(cur, table, df, chunk=_CHUNK)


def _id_map(cur: psycopg.Cursor, table: str) -> dict[str, int]:
    cur.execute(f"SELECT code, id FROM {table}")
    return dict(cur.fetchall())


def existing_rows(cur: psycopg.Cursor) -> dict[str, int]:
    """Row counts of the sample tables that are not empty."""
    out = {}
    for t in TABLES:
        cur.execute(f"SELECT count(*) FROM {t}")
        n = cur.fetchone()[0]
        if n:
            out[t] = n
    return out


def load_city(
    url: str,
    city: SampleCity,
    *,
    replace: bool = False,
    vault: Vault | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Load the city into the database at ``url``; returns row counts per table."""
    step = on_stage or (lambda _s: None)
    vault = vault or Vault.from_settings()
    step("protect 加密身份证号")
    prot = protect_residents(city.residents, vault)
    with psycopg.connect(psycopg_conninfo(url)) as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute("SELECT value FROM gisgov_meta WHERE key = 'srid'")
        row = cur.fetchone()
        srid = int(row[0]) if row else 4490
        have = existing_rows(cur)
        if have and not replace:
            listing = ", ".join(f"{t}={n}" for t, n in have.items())
            raise DatabaseNotEmpty(
                f"数据库非空，未加载示例 database is not empty ({listing}); nothing was changed "
                "(rule: sample_requires_empty_database). Use --replace to truncate and load again."
            )
        if have:
            step("truncate 清空")
            cur.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        _load(cur, city, prot, srid, step)
        step("meta 元数据")
        meta = dict(city.meta, srid=srid)
        for key, value in (("dataset", meta), ("metric_srid", meta["metric_srid"])):
            cur.execute(
                "INSERT INTO gisgov_meta (key, value) VALUES (%s, %s::jsonb) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (key, json.dumps(value, ensure_ascii=False)),
            )
        step("analyze 统计")
        cur.execute(f"ANALYZE {', '.join(TABLES)}")
        counts = {}
        for t in TABLES:
            cur.execute(f"SELECT count(*) FROM {t}")
            counts[t] = cur.fetchone()[0]
    return counts


def _geo(df, srid: int):
    return df if df.crs is None or df.crs.to_epsg() == srid else df.to_crs(srid)


def _load(cur: psycopg.Cursor, city: SampleCity, prot: pd.DataFrame, srid: int, step) -> None:
    step("hierarchy 街道/社区/小区")
    st = _geo(city.streets, srid)
    _copy(cur, "street", pd.DataFrame({"code": st["code"], "name": st["name"], "geom": _ewkb(st.geometry, srid)}))
    cm = _geo(city.communities, srid)
    _copy(
        cur,
        "community",
        pd.DataFrame(
            {
                "code": cm["code"],
                "street_code": cm["street_code"],
                "name": cm["name"],
                "class": cm["class"],
                "kind": cm["kind"],
                "rule_set": cm["rule_set"],
                "geom": _ewkb(cm.geometry, srid),
            }
        ),
    )
    cp = _geo(city.compounds, srid)
    _copy(
        cur,
        "compound",
        pd.DataFrame(
            {
                "code": cp["code"],
                "community_code": cp["community_code"],
                "name": cp["name"],
                "year_built": cp["year_built"],
                "property_mode": cp["property_mode"],
                "has_party_org": cp["has_party_org"],
                "geom": _ewkb(cp.geometry, srid),
            }
        ),
    )
    compound_id = _id_map(cur, "compound")

    step("buildings 楼栋")
    b = _geo(city.buildings, srid)
    _copy(
        cur,
        "building",
        pd.DataFrame(
            {
                "code": b["code"],
                "community_code": b["community_code"],
                "compound_id": b["compound_code"].map(compound_id),
                "name": b["name"],
                "address": b["address"],
                "floors": b["floors"],
                "units": b["units"],
                "households": b["households"],
                "year_built": b["year_built"],
                "geom": _ewkb(b.geometry, srid),
            }
        ),
    )
    cur.execute("SELECT code, encode(ST_AsEWKB(pos), 'hex') FROM building")
    pos = dict(cur.fetchall())

    step("households 户")
    hh = city.households
    _copy(cur, "household", hh[["code", "building_code", "door_no", "residence"]])
    household_id = _id_map(cur, "household")

    step("residents 居民")
    r = city.residents
    hcode = r["household_code"]
    bcode = hcode.str.slice(0, 17)
    _copy(
        cur,
        "resident",
        pd.DataFrame(
            {
                "household_id": hcode.map(household_id),
                "name": r["name"],
                "gender": r["gender"],
                "birth_year": r["birth_year"],
                "role": r["role"],
                **{c: prot[c] for c in prot.columns},
                "geom": bcode.map(pos),
            }
        ),
    )
    cur.execute("CREATE TEMP TABLE _sample_group (id_hash bytea, group_code text) ON COMMIT DROP")
    no_to_hash = pd.Series(prot["id_hash"].to_numpy(), index=r["resident_no"].to_numpy())
    g = city.resident_groups
    _copy(
        cur, "_sample_group", pd.DataFrame({"id_hash": g["resident_no"].map(no_to_hash), "group_code": g["group_code"]})
    )
    cur.execute(
        "INSERT INTO resident_group (resident_id, group_code) "
        "SELECT r.id, t.group_code FROM _sample_group t JOIN resident r ON r.id_hash = t.id_hash"
    )

    step("facilities 设施")
    f = _geo(city.facilities, srid)
    _copy(
        cur,
        "facility",
        pd.DataFrame(
            {c: f[c] for c in ("code", "name", "category_code", "kind", "community_code", "address", "source")}
            | {"geom": _ewkb(f.geometry, srid)}
        ),
    )

    step("network 路网")
    n = _geo(city.road_nodes, srid)
    _copy(cur, "road_node", pd.DataFrame({"id": n["id"], "geom": _ewkb(n.geometry, srid)}))
    e = _geo(city.road_edges, srid)
    _copy(
        cur,
        "road_edge",
        pd.DataFrame(
            {
                "source": e["source"],
                "target": e["target"],
                "class": e["class"],
                "name": e["name"],
                "length_m": e["length_m"],
                "geom": _ewkb(e.geometry, srid),
            }
        ),
    )
    gt = _geo(city.compound_gates, srid)
    _copy(
        cur,
        "compound_gate",
        pd.DataFrame(
            {
                "compound_id": gt["compound_code"].map(compound_id),
                "node_id": gt["node_id"],
                "name": gt["name"],
                "geom": _ewkb(gt.geometry, srid),
            }
        ),
    )
    br = _geo(city.barriers, srid)
    _copy(cur, "barrier", pd.DataFrame({"kind": br["kind"], "name": br["name"], "geom": _ewkb(br.geometry, srid)}))
