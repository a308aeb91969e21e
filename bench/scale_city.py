"""Scale city: a parametrised synthetic city generated and loaded into PostGIS for the scaling curves.

Two generators, both existing ones (no third generator):

* ``district`` (and any ``--generator sample``): the sample-city generator (:mod:`gisgov.sample`) at a
  scale past the command's limit of 5, loaded with :func:`gisgov.sample.load.load_city` (COPY, one
  transaction, residents' ID numbers protected). Per-person rows: ~1,000,000 residents ≈ 400k
  households ≈ 15k buildings at scale 6.
* ``city`` (and any ``--generator grid``): the coverage benchmark city (:mod:`bench.coverage_city`,
  100 m street grid, a river with bridges, uniform buildings) turned into PostGIS rows: streets,
  communities, grids and compounds as boxes, buildings as points, road nodes and edges, facilities,
  households and residents. Loaded with COPY in one transaction. Residents are minimal rows (a
  household and a synthetic name, no ID number or phone: those need the key and are what made
  per-person loading slow); ``--people counts`` loads only each building's household count
  (``building.households``; coverage then weighs residents as 0).

The database must be a scratch one (everything is truncated). Example::

    GISGOV_HOME=/tmp/scale gisgov db up && GISGOV_HOME=/tmp/scale gisgov db migrate
    GISGOV_HOME=/tmp/scale python bench/scale_city.py --preset city
    GISGOV_HOME=/tmp/scale python bench/scale_city.py --buildings 100000 --residents 300000

Synthetic data, not real people or places.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coverage_city import EPSG, X0, Y0, bench_city

from gisgov.crs import transformer
from gisgov.db.engine import database_url, psycopg_conninfo
from gisgov.sample.load import TABLES

PRESETS = {
    "district": dict(generator="sample", residents=1_000_000),
    "city": dict(generator="grid", buildings=1_000_000, residents=3_000_000, streets=225, communities=3600),
}
PERSONS_PER_HOUSEHOLD = 2.6


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the district: the sample-city generator past scale 5 ---------------------------------------------------


def sample_city(residents: int, seed: int):
    """The sample city at the scale that gives about ``residents`` residents (~165k per unit of scale)."""
    from gisgov.sample import generate as gen

    scale = residents / 165_000
    rng = np.random.default_rng(seed)
    plan = gen.plan_city(rng, scale)
    net = gen.build_network(plan.lines)
    old = plan.compounds.set_index("code")["old"]
    bld = plan.buildings.assign(old=plan.buildings["compound_code"].map(old).to_numpy())
    people = gen.make_people(rng, bld)
    fac, under = gen.place_facilities(rng, plan, net)
    return gen._assemble(rng, seed, scale, plan, net, people, fac, under, lambda s: log(s))


def load_sample(url: str, residents: int, seed: int) -> dict:
    from gisgov.sample.load import load_city

    t = time.perf_counter()
    city = sample_city(residents, seed)
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    counts = load_city(url, city, replace=True, on_stage=log)
    return dict(generate_s=gen_s, load_s=time.perf_counter() - t, counts=counts)


# -- the grid city: the coverage benchmark city as PostGIS rows ---------------------------------------------


def _boxes(x0, y0, x1, y1) -> np.ndarray:
    return shapely.multipolygons(shapely.box(x0, y0, x1, y1).reshape(-1, 1))


def _hexwkb(geoms: np.ndarray, to_ll, srid: int) -> np.ndarray:
    def f(c: np.ndarray) -> np.ndarray:
        lon, lat = to_ll.transform(c[:, 0], c[:, 1])
        return np.column_stack([lon, lat])

    g = shapely.set_srid(shapely.transform(np.asarray(geoms), f), srid)
    return shapely.to_wkb(g, hex=True, include_srid=True)


def _copy(cur: psycopg.Cursor, table: str, df: pd.DataFrame, chunk: int = 200_000) -> None:
    cols = ", ".join(df.columns)
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as cp:
        for s in range(0, len(df), chunk):
            buf = io.StringIO()
            df.iloc[s : s + chunk].to_csv(buf, index=False, header=False, na_rep="")
            cp.write(buf.getvalue())


def grid_city_rows(buildings: int, residents: int, streets: int, communities: int, seed: int) -> dict:
    """The benchmark city's arrays plus the hierarchy boxes, as frames ready to COPY (metric x/y)."""
    side = max(12, int(round(math.sqrt(buildings / 5.0))))  # ~5 buildings per 100 m block
    s_side = max(1, int(round(math.sqrt(streets))))
    c_per = max(1, int(round(math.sqrt(communities) / s_side)))  # communities per street side
    c_side = s_side * c_per
    g_side = c_side * 3  # 3 × 3 grids per community
    bc = bench_city(buildings, side, seed=seed, streets=s_side, communities=c_side, grids=g_side)
    b = bc.buildings
    size = (side - 1) * 100.0
    x0, y0 = X0, Y0

    def binned(x, y, k):
        cx = np.clip(((x - x0) / size * k).astype(int), 0, k - 1)
        cy = np.clip(((y - y0) / size * k).astype(int), 0, k - 1)
        return cx, cy

    # hierarchy from positions (codes regenerated so they nest: street 9, community 12, grid 15, building 17)
    bx, by = b["x"].to_numpy(), b["y"].to_numpy()
    ccx, ccy = binned(bx, by, c_side)
    com = ccy * c_side + ccx
    gcx, gcy = binned(bx, by, g_side)
    grd = gcy * g_side + gcx
    k_side = max(1, side // 3)  # ~300 m compounds, cut by community boundaries
    kx, ky = binned(bx, by, k_side)
    in_compound = b["compound"].notna().to_numpy()

    st_i = np.arange(s_side * s_side)
    street = pd.DataFrame({"i": st_i, "code": [f"340104{i + 1:03d}" for i in st_i]})
    street["name"] = [f"合成{i + 1}街道 Synthetic street {i + 1}" for i in st_i]
    w = size / s_side
    street["geom"] = list(
        _boxes(
            x0 + (st_i % s_side) * w,
            y0 + (st_i // s_side) * w,
            x0 + (st_i % s_side + 1) * w,
            y0 + (st_i // s_side + 1) * w,
        )
    )
    cm_i = np.arange(c_side * c_side)
    cmx, cmy = cm_i % c_side, cm_i // c_side
    cm_street = (cmy // c_per) * s_side + cmx // c_per
    cm_rank = (cmy % c_per) * c_per + cmx % c_per
    cw = size / c_side
    community = pd.DataFrame(
        {
            "code": [f"{street['code'][s]}{r + 1:03d}" for s, r in zip(cm_street, cm_rank, strict=True)],
            "street_code": street["code"].to_numpy()[cm_street],
            "name": [f"合成社区{i + 1} Synthetic community {i + 1}" for i in cm_i],
            "geom": list(_boxes(x0 + cmx * cw, y0 + cmy * cw, x0 + (cmx + 1) * cw, y0 + (cmy + 1) * cw)),
        }
    )
    gr_i = np.arange(g_side * g_side)
    grx, gry = gr_i % g_side, gr_i // g_side
    gr_com = (gry // 3) * c_side + grx // 3
    gw = size / g_side
    grid = pd.DataFrame(
        {
            "code": [
                f"{community['code'][c]}{(y % 3) * 3 + x % 3 + 1:03d}" for c, x, y in zip(gr_com, grx, gry, strict=True)
            ],
            "community_code": community["code"].to_numpy()[gr_com],
            "geom": list(_boxes(x0 + grx * gw, y0 + gry * gw, x0 + (grx + 1) * gw, y0 + (gry + 1) * gw)),
        }
    )
    # compounds: a ~300 m cell cut by its community; only where buildings are in one
    kkey = com.astype(np.int64) * (k_side * k_side) + ky * k_side + kx
    used = np.unique(kkey[in_compound])
    kc, kcell = np.divmod(used, k_side * k_side)
    kw = size / k_side
    ckx, cky = kc % c_side, kc // c_side
    kxx, kyy = kcell % k_side, kcell // k_side
    cx0 = np.maximum(x0 + kxx * kw, x0 + ckx * cw)
    cy0 = np.maximum(y0 + kyy * kw, y0 + cky * cw)
    cx1 = np.minimum(x0 + (kxx + 1) * kw, x0 + (ckx + 1) * cw)
    cy1 = np.minimum(y0 + (kyy + 1) * kw, y0 + (cky + 1) * cw)
    rank = pd.Series(kc).groupby(kc).cumcount().to_numpy()
    compound = pd.DataFrame(
        {
            "code": [f"{community['code'][c]}{r + 1:04d}" for c, r in zip(kc, rank, strict=True)],
            "community_code": community["code"].to_numpy()[kc],
            "name": [f"合成小区{i + 1} Synthetic compound {i + 1}" for i in range(len(used))],
            "geom": list(_boxes(cx0, cy0, cx1, cy1)),
        }
    )
    compound_id = np.where(in_compound, np.searchsorted(used, kkey) + 1, -1)  # ids 1.. in COPY order
    # buildings: codes within their community, households from the resident total
    rng = np.random.default_rng(seed + 1)
    res = rng.multinomial(residents, np.full(buildings, 1.0 / buildings)) if residents else np.zeros(buildings, int)
    hh = np.ceil(res / PERSONS_PER_HOUSEHOLD).astype(np.int64)
    brank = pd.Series(com).groupby(com).cumcount().to_numpy()
    bcode = community["code"].to_numpy()[com].astype(object) + pd.Series(brank + 1).map("{:05d}".format).to_numpy()
    building = pd.DataFrame(
        {
            "code": bcode,
            "community_code": community["code"].to_numpy()[com],
            "compound_id": pd.Series(compound_id).where(compound_id > 0).astype("Int64"),
            "grid_id": pd.Series(grd + 1).astype("Int64"),
            "households": hh,
            "households_estimated": True,
            "pos": shapely.points(bx, by),
        }
    )
    g = bc.graph
    node_ids = np.arange(len(bc.node_x))
    used_nodes = np.unique(np.concatenate([g.node_ids[g.u], g.node_ids[g.v]]))
    road_node = pd.DataFrame(
        {"id": used_nodes + 1, "geom": shapely.points(bc.node_x[used_nodes], bc.node_y[used_nodes])}
    )
    del node_ids
    road_edge = pd.DataFrame(
        {
            "source": g.node_ids[g.u] + 1,
            "target": g.node_ids[g.v] + 1,
            "oneway_foot": g.oneway,
            "length_m": np.round(g.length, 3),
            "geom": g.geoms,
        }
    )
    f = bc.facilities
    facility = pd.DataFrame(
        {
            "code": [f"SYN-{i}" for i in f["id"]],
            "name": f["name"],
            "category_code": f["category_code"],
            "kind": f["kind"],
            "source": "synthetic scale city",
            "geom": shapely.points(f["x"].to_numpy(), f["y"].to_numpy()),
        }
    )
    return dict(
        street=street.drop(columns=["i"]),
        community=community,
        grid=grid,
        compound=compound,
        building=building,
        road_node=road_node,
        road_edge=road_edge,
        facility=facility,
        barrier=pd.DataFrame(
            {"kind": ["river"], "name": ["合成河 Synthetic river"], "geom": list(bc.barriers.geometry)}
        ),
        groups=bc.groups,
        residents=res,
        households=hh,
    )


def load_grid_city(url: str, rows: dict, people: str) -> dict:
    to_ll = transformer(EPSG, 4490)
    t0 = time.perf_counter()
    with psycopg.connect(psycopg_conninfo(url)) as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT value FROM gisgov_meta WHERE key = 'srid'")
        r = cur.fetchone()
        srid = int(r[0]) if r else 4490
        to_ll = transformer(EPSG, srid)
        cur.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        # synthetic rows are consistent by construction (boxes nest, points lie in their boxes): the row
        # triggers (containment checks, derived positions) and FK checks are skipped for the load
        cur.execute("SET LOCAL session_replication_role = replica")
        for table in (
            "street",
            "community",
            "grid",
            "compound",
            "building",
            "road_node",
            "road_edge",
            "facility",
            "barrier",
        ):
            df = rows[table].copy()
            gcol = "pos" if table == "building" else "geom"
            df[gcol] = _hexwkb(df[gcol].to_numpy(), to_ll, srid)
            t = time.perf_counter()
            _copy(cur, table, df)
            log(f"{table}: {len(df):,} rows {time.perf_counter() - t:.1f} s")
        n_res = 0
        if people == "rows":
            b = rows["building"]
            hh = rows["households"]
            bi = np.repeat(np.arange(len(b)), hh)
            rank = np.arange(len(bi)) - np.repeat(np.cumsum(hh) - hh, hh)
            hcodes = b["code"].to_numpy()[bi].astype(object) + pd.Series(rank + 1).map("{:04d}".format).to_numpy()
            t = time.perf_counter()
            _copy(cur, "household", pd.DataFrame({"code": hcodes, "building_code": b["code"].to_numpy()[bi]}))
            log(f"household: {len(hcodes):,} rows {time.perf_counter() - t:.1f} s")
            # residents of each building spread over its households (ids 1.. in COPY order after RESTART IDENTITY)
            res = rows["residents"]
            first = np.cumsum(hh) - hh  # first household row of each building (0-based)
            rb = np.repeat(np.arange(len(b)), res)
            rrank = np.arange(len(rb)) - np.repeat(np.cumsum(res) - res, res)
            hid = first[rb] + rrank % np.maximum(hh[rb], 1) + 1
            t = time.perf_counter()
            with cur.copy("COPY resident (household_id, name) FROM STDIN") as cp:
                step = 500_000
                for s in range(0, len(hid), step):
                    cp.write("".join(f"{h}\t合成居民\n" for h in hid[s : s + step].tolist()))
            n_res = len(hid)
            log(f"resident: {n_res:,} rows {time.perf_counter() - t:.1f} s")
            cur.execute("SELECT min(id), max(id), count(*) FROM household")
            mn, mx, n = cur.fetchone()
            if (mn, mx, n) != (1, len(hcodes), len(hcodes)):
                raise RuntimeError(f"household ids not 1..n: {(mn, mx, n)}")
        cur.execute(
            "INSERT INTO gisgov_meta (key, value) VALUES ('dataset', %s::jsonb) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (json.dumps({"name": "scale city (synthetic)", "generator": "bench/scale_city.py"}),),
        )
        cur.execute(
            "INSERT INTO gisgov_meta (key, value) VALUES ('metric_srid', %s::jsonb) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (json.dumps(EPSG),),
        )
    t = time.perf_counter()
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
        conn.execute(f"ANALYZE {', '.join(TABLES)}")
    log(f"analyze {time.perf_counter() - t:.1f} s")
    return dict(load_s=time.perf_counter() - t0, residents=n_res)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--generator", choices=["grid", "sample"], default="grid")
    ap.add_argument("--buildings", type=int, default=10_000)
    ap.add_argument("--residents", type=int, default=None, help="default: 3 per building")
    ap.add_argument("--streets", type=int, default=None, help="grid generator: number of streets (a square)")
    ap.add_argument("--communities", type=int, default=None, help="grid generator: number of communities")
    ap.add_argument("--people", choices=["rows", "counts"], default="rows")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--url", default=None, help="database URL (default: the GISGOV_HOME database)")
    a = ap.parse_args(argv)
    p = dict(
        generator=a.generator,
        buildings=a.buildings,
        residents=a.residents,
        streets=a.streets,
        communities=a.communities,
    )
    if a.preset:
        p.update(PRESETS[a.preset])
    url = a.url or database_url(start=True)
    t0 = time.perf_counter()
    if p["generator"] == "sample":
        out = load_sample(url, p["residents"] or 1_000_000, a.seed)
        out["buildings"] = out["counts"]["building"]
        out["residents"] = out["counts"]["resident"]
    else:
        n = p["buildings"]
        residents = p["residents"] if p["residents"] is not None else 3 * n
        streets = p["streets"] or max(1, round(n / 4500))
        communities = p["communities"] or max(4, round(n / 280))
        t = time.perf_counter()
        rows = grid_city_rows(n, residents, streets, communities, a.seed)
        gen_s = time.perf_counter() - t
        log(f"generated in {gen_s:.1f} s")
        out = load_grid_city(url, rows, a.people)
        out.update(generate_s=gen_s, buildings=n, residents=out["residents"] or 0)
    out["total_s"] = time.perf_counter() - t0
    log(json.dumps({k: v for k, v in out.items() if k != "counts"}))
    return out


if __name__ == "__main__":
    main()
