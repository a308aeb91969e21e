"""Grid sizing benchmark: gisgov vs PySAL spopt MaxPHeuristic vs GerryChain recursive_tree_part on the
same synthetic lattice communities (units of 20–119 households, ≈2.4 people per household), plus a
100,000-household street and (optionally) every community of the sample city.

    python bench/gridding_bench.py [--sizes 20 45 70] [--spopt-max 2025] [--sample-url URL]
                                   [--out bench/results/gridding.md]

Needs (benchmark only): spopt, libpysal<4.15 (Python 3.11), gerrychain.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy import text

from gisgov.gridding.feasibility import k_range
from gisgov.gridding.graph import pieces
from gisgov.gridding.heuristic import local_search, recursive_partition, relabel_dense
from gisgov.gridding.metrics import polsby_popper
from gisgov.gridding.rules import GridRules
from gisgov.gridding.synthetic import lattice

R = GridRules()


def quality(L, labels) -> dict:
    labels = relabel_dense(np.asarray(labels))
    k = int(labels.max()) + 1
    H = np.bincount(labels, weights=L.households, minlength=k)
    P = np.bincount(labels, weights=L.people, minlength=k)
    within_h = (R.min_households <= H) & (R.max_households >= H)
    within = within_h & (R.max_people >= P)
    adj = L.graph.adj()
    contiguous = sum(1 for g in range(k) if len(pieces(adj, np.flatnonzero(labels == g).tolist())) == 1)
    polys = [shapely.union_all(L.cells[labels == g], grid_size=0.01) for g in range(k)]
    return {
        "grids": k,
        "within_hh": float(within_h.mean()),
        "within": float(within.mean()),
        "contiguous": contiguous / k,
        "pp": float(np.mean(polsby_popper(polys))),
    }


def run_gisgov(L, seed=0):
    t = time.perf_counter()
    lab, _ = recursive_partition(L.graph, L.households, L.people, R, seed=seed)
    lab, _ = local_search(L.graph, L.households, L.people, R, lab, seed=seed)
    return lab, time.perf_counter() - t


def run_spopt(L):
    import geopandas as gpd
    import libpysal
    from spopt.region import MaxPHeuristic

    gdf = gpd.GeoDataFrame({"households": L.households, "people": L.people}, geometry=list(L.cells))
    w = libpysal.weights.Rook.from_dataframe(gdf, use_index=False, silence_warnings=True)
    np.random.seed(0)
    t = time.perf_counter()
    m = MaxPHeuristic(gdf, w, ["households"], "households", R.min_households, top_n=2)
    m.solve()
    return np.asarray(m.labels_), time.perf_counter() - t


def run_gerrychain(L):
    import networkx as nx
    from gerrychain import Graph
    from gerrychain.partition import recursive_tree_part

    G = nx.Graph()
    for i in range(L.graph.n):
        G.add_node(i, households=int(L.households[i]))
    G.add_edges_from(zip(L.graph.ei.tolist(), L.graph.ej.tolist(), strict=False))
    H = float(L.households.sum())
    k = int(round(H / R.target_households))
    eps = (R.max_households - R.min_households) / (R.max_households + R.min_households)  # 0.25 → 300–500
    G = Graph.from_networkx(G)
    t = time.perf_counter()
    part = recursive_tree_part(G, range(k), H / k, "households", eps, rng=0)
    secs = time.perf_counter() - t
    ids = {v: int(G.node_data(v).get("__networkx_node__", v)) if hasattr(G, "node_data") else v for v in part}
    labels = np.zeros(L.graph.n, dtype=np.int64)
    for v, g in part.items():
        labels[ids[v]] = g
    return labels, secs


def fmt(q, secs):
    if q is None:
        return "| – | – | – | – | – |"
    return (
        f"| {secs:.2f} | {q['grids']} | {100 * q['within_hh']:.1f}% / {100 * q['within']:.1f}% | "
        f"{100 * q['contiguous']:.0f}% | {q['pp']:.3f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 45, 70], help="lattice sides (units = side²)")
    ap.add_argument("--spopt-max", type=int, default=2025, help="largest unit count given to spopt")
    ap.add_argument("--street-side", type=int, default=38, help="lattice side of the ~100,000-household street")
    ap.add_argument("--sample-url", default=None, help="database with the sample city loaded (optional)")
    ap.add_argument("--out", default="bench/results/gridding.md")
    ap.add_argument(
        "--sample-only",
        action="store_true",
        help="run only the sample-city section and replace it in --out (the lattice results are kept)",
    )
    a = ap.parse_args()
    if a.sample_only:
        if not a.sample_url:
            ap.error("--sample-only needs --sample-url")
        out = Path(a.out)
        old = out.read_text(encoding="utf-8") if out.exists() else ""
        head = old.split("\n## Sample city")[0].rstrip("\n").split("\n") if old else []
        lines = head + sample_city(
            a.sample_url, command=" ".join("$SAMPLE_URL" if x.startswith("postgresql") else x for x in sys.argv)
        )
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return
    lines = [
        "# Grid sizing benchmark (网格划分)",
        "",
        "Command: `python "
        + " ".join("$SAMPLE_URL" if x.startswith("postgresql") else x for x in sys.argv)
        + "`"
        + (" (SAMPLE_URL = a database loaded with `gisgov sample`)" if a.sample_url else ""),
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, 2 shared CPU cores; "
        "times are wall-clock seconds of the partition only (units and adjacency given to every method).",
        "",
        "Synthetic lattice communities: square units, households uniform 20–119, people 2.0–2.8 per household "
        "(so the 1,000-people bound binds). Rules 300–500 households, ≤ 1,000 people.",
        "",
        "| units | method | seconds | grids | within 300–500 hh / and ≤ 1000 people | contiguous | mean Polsby–Popper |",
        "|---|---|---|---|---|---|---|",
    ]
    for side in a.sizes:
        L = lattice(side, seed=1)
        n = side * side
        kmin, kmax = k_range(int(L.households.sum()), int(L.people.sum()), R)
        print(f"{n} units, {L.households.sum()} households, k {kmin}-{kmax}", flush=True)
        lab, s = run_gisgov(L)
        lines.append(f"| {n} | **gisgov** (tree bipartition + local search) {fmt(quality(L, lab), s)}")
        print("  gisgov", s, flush=True)
        lab, s = run_gerrychain(L)
        lines.append(f"| {n} | GerryChain recursive_tree_part (k fixed, ε=0.25) {fmt(quality(L, lab), s)}")
        print("  gerrychain", s, flush=True)
        if n <= a.spopt_max:
            lab, s = run_spopt(L)
            lines.append(f"| {n} | spopt MaxPHeuristic (threshold 300) {fmt(quality(L, lab), s)}")
            print("  spopt", s, flush=True)
        else:
            lines.append(f"| {n} | spopt MaxPHeuristic | not run (> {a.spopt_max} units: minutes to hours) | | | | |")
    L = lattice(a.street_side, seed=2)
    lab, s = run_gisgov(L)
    q = quality(L, lab)
    lines += [
        "",
        f"## A street of {L.households.sum():,} households ({a.street_side**2} units)",
        "",
        f"gisgov: {s:.2f} s, {q['grids']} grids, {100 * q['within']:.1f}% within both bounds, "
        f"{100 * q['contiguous']:.0f}% contiguous, mean Polsby–Popper {q['pp']:.3f}.",
    ]
    if a.sample_url:
        lines += sample_city(a.sample_url)
    Path(a.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def sample_city(url: str, command: str | None = None) -> list[str]:
    from sqlalchemy import create_engine, pool

    from gisgov.gridding import service
    from gisgov.gridding.io import load_context

    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.connect() as conn:
        meta = conn.execute(text("SELECT value FROM gisgov_meta WHERE key = 'dataset'")).scalar() or {}
    ch = meta.get("grid_challenges") or []
    counts = meta.get("counts", {})
    hard = (
        "; ".join(
            f"{c['community_code']} ({c['reason']} compound {c['compound_code']}, {c['households']} households)"
            for c in ch
        )
        or "none"
    )
    out = [
        "",
        "## Sample city, every community (`gisgov grids propose --all --closest`, time limit 10 s)",
        "",
        f"Sample seed {meta.get('seed')}, scale {meta.get('scale')}: {counts.get('compounds')} compounds, "
        f"{counts.get('households')} households. Deliberately hard (`gisgov_meta.dataset.grid_challenges`): {hard}."
        + (f" Section re-run alone: `python {command}`." if command else ""),
        "",
        "| community | units | households | people | feasible with whole compounds? | result | grids | within bounds |"
        " split compounds | method | optimal proven | seconds | validate ms | move ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    with eng.connect() as conn:
        for c in service.communities(conn):
            f = service.feasibility(conn, c)
            t = time.perf_counter()
            p = service.propose_plan(conn, c, closest=True, time_limit_s=10.0)
            secs = time.perf_counter() - t
            ctx = load_context(conn, c)
            from gisgov.gridding.validate import PlanInput, validate

            t = time.perf_counter()
            polys = [
                ctx.to_metric(shapely.from_geojson(__import__("json").dumps(ft["geometry"])))
                for ft in p["geojson"]["features"]
            ]
            rep = validate(ctx, PlanInput([ft["id"] for ft in p["geojson"]["features"]], None, polys))
            assert rep["summary"]["within_bounds"] == p["report"]["summary"]["within_bounds"]
            vms = (time.perf_counter() - t) * 1000
            from gisgov.gridding.incremental import PlanEditor

            ed = PlanEditor(ctx, PlanInput([ft["id"] for ft in p["geojson"]["features"]], _atom_grid_of(ctx, p)))
            a0 = int(np.flatnonzero(ctx.atoms.building_id >= 0)[0])
            g0 = int(ed.atom_grid[a0])
            nb = [int(ed.atom_grid[o]) for o in ctx.graph.neighbors(a0) if ed.atom_grid[o] != g0] or [g0]
            t = time.perf_counter()
            ed.move(ed.codes[nb[0]], building=str(ctx.atoms.code[a0]))
            mms = (time.perf_counter() - t) * 1000
            s = p["report"]["summary"]
            splits = sum(1 for b in p["report"]["breaks"] if b["rule"] == "split_compound")
            why = "yes" if f["feasible"] else "no: " + ", ".join(sorted({x["rule"] for x in f["findings"]}))
            out.append(
                f"| {c} | {f['units']} | {f['households']} | {f['people']} | {why} | {p['status']} | {s['grids']} | "
                f"{s['within_bounds']}/{s['grids']} | {splits} | {p['method']} | {'yes' if p['optimal'] else 'no'} | "
                f"{secs:.1f} | {vms:.0f} | {mms:.0f} |"
            )
            print(out[-1], flush=True)
    return out


def _atom_grid_of(ctx, p) -> np.ndarray:
    """Atom labels of a proposal, by building position in the proposed polygons."""
    from gisgov.gridding.validate import assign_by_polygons

    polys = [
        ctx.to_metric(shapely.from_geojson(__import__("json").dumps(ft["geometry"]))) for ft in p["geojson"]["features"]
    ]
    ag, _ = assign_by_polygons(ctx, polys)
    return ag


if __name__ == "__main__":
    main()
