"""Vector tiles against GeoJSON: every building tile at z=15..17 covering the sample city, fetched from
a separate load process (a thread pool of httpx clients, signed in with a bearer token), and the same
tiles' areas as GeoJSON from ``/api/layers/building?bbox=…`` (one page per tile bbox), interleaved.

Each round: the tile data version is moved (a no-op write on a tracked table, as the database owner), so
every worker's tile cache misses; then, in the load process,

- ``cold``: every tile once, first fetch after the data change (the tile cache cannot answer; PostgreSQL's
  buffers are warm, as on a running server);
- ``geojson``: the same areas as GeoJSON (first in odd rounds, after the cold tiles in even ones);
- ``warm``: every tile again, ``--warm-passes`` times (with several server workers a tile is cached only
  in the worker that drew it: the passes fill the others); the LAST pass is recorded, with its share of
  cache hits (the ``X-Tile-Cache`` header).

    python bench/tiles_bench.py --url http://127.0.0.1:8804          # a server already running
    python bench/tiles_bench.py --home DIR [--workers 2]              # starts `gisgov demo` itself

The version move needs the owner's database URL: ``--db-url``, else the one gisgov resolves from the
environment (``GISGOV_HOME``, ``GISGOV_DB_NAME``). Recorded: per kind p50/p99 latency (ms), answers/s,
bytes per answer, errors, cache hits; the load average before and after; written to
``bench/results/tiles.md``. Targets (issue 12): buildings p50 <= 20 ms and >= 500 tiles/s on a 2-core
machine.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gisgov.tiles import tiles_covering  # noqa: E402

RESULTS = REPO / "bench" / "results" / "tiles.md"
USER, PASSWORD = "demo_admin", "Demo-admin-2024"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(home: Path, workers: int, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GISGOV_")}
    env.update({"GISGOV_HOME": str(home), "GISGOV_LOGIN_RATE_PER_MINUTE": "100"})
    return subprocess.Popen(
        [sys.executable, "-m", "gisgov.cli.main", "demo", "--workers", str(workers), "--port", str(port)],
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
        start_new_session=True,
    )


def wait_up(base: str, proc: subprocess.Popen | None, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the demo exited with {proc.returncode} before answering")
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{base}/health did not answer within {timeout:.0f} s")


def city_bbox(base: str, token: str) -> tuple[float, float, float, float]:
    """The lon/lat box of every community outline."""
    r = httpx.get(
        f"{base}/api/layers/community", params={"limit": 1000}, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    r.raise_for_status()
    import shapely
    from shapely.geometry import shape

    minx, miny, maxx, maxy = shapely.total_bounds([shape(f["geometry"]) for f in r.json()["features"]])
    return (float(minx), float(miny), float(maxx), float(maxy))


def _fetch_all(base: str, token: str, urls: list[str], concurrency: int) -> dict:
    """In the load process: fetch every URL once with ``concurrency`` threads (one client each)."""
    import threading

    local = threading.local()

    def client() -> httpx.Client:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        return c

    def one(url: str) -> tuple[float, int, int, bool]:
        t0 = time.perf_counter()
        try:
            r = client().get(url)
            return time.perf_counter() - t0, r.status_code, len(r.content), r.headers.get("x-tile-cache") == "hit"
        except httpx.HTTPError:
            return time.perf_counter() - t0, 0, 0, False

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        out = list(pool.map(one, urls))
    wall = time.perf_counter() - t0
    lat = np.array([o[0] for o in out]) * 1000
    return {
        "n": len(urls),
        "wall": wall,
        "rps": len(urls) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "bytes": float(np.mean([o[2] for o in out])),
        "errors": sum(1 for o in out if o[1] != 200),
        "hits": sum(1 for o in out if o[3]) / len(out),
    }


def _load_process(conn, base: str, token: str, jobs: list[tuple[str, list[str]]], concurrency: int) -> None:
    conn.send([(kind, _fetch_all(base, token, urls, concurrency)) for kind, urls in jobs])
    conn.close()


def bump_version(db_url: str) -> int:
    """Move the tile data version (a no-op write on a tracked table, committed): every cached tile misses."""
    from sqlalchemy import create_engine, pool, text

    eng = create_engine(db_url, poolclass=pool.NullPool)
    try:
        with eng.begin() as c:
            c.execute(text("UPDATE coverage_budget SET distance_m = distance_m WHERE false"))
        with eng.connect() as c:
            return int(c.execute(text("SELECT n FROM tile_version")).scalar_one())
    finally:
        eng.dispose()


def run_in_load_process(base: str, token: str, jobs: list[tuple[str, list[str]]], concurrency: int) -> list:
    """The jobs run one after the other in a SEPARATE process (the server's CPU is not the client's)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_load_process, args=(child, base, token, jobs, concurrency))
    proc.start()
    out = parent.recv()
    proc.join()
    return out


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running gisgov (demo accounts); without it a demo is started")
    ap.add_argument("--home", type=Path, help="GISGOV_HOME for the demo this script starts")
    ap.add_argument("--workers", type=int, default=2, help="gisgov demo --workers when starting it")
    ap.add_argument("--db-url", help="owner URL of the server's database (to move the tile data version)")
    ap.add_argument("--zooms", default="15,16,17")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (medians)")
    ap.add_argument("--warm-passes", type=int, default=3, help="warm passes per round (the last is recorded)")
    ap.add_argument("--concurrency", type=int, default=8, help="threads of the load process")
    ap.add_argument("--server-note", default="", help="how the server was started (for the results file)")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/tiles.md")
    args = ap.parse_args()

    if args.db_url is None:
        if args.home is not None:
            os.environ["GISGOV_HOME"] = str(args.home)
        from gisgov.db.engine import database_url

        args.db_url = database_url(start=False)
    proc = None
    base = args.url
    if base is None:
        if args.home is None:
            raise SystemExit("--url or --home")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_demo(args.home, args.workers, port, args.home / "tiles-bench.log")
    kinds = ("cold", "warm", "geojson")
    rounds: dict[str, list[dict]] = {k: [] for k in kinds}
    try:
        wait_up(base, proc)
        token = httpx.post(f"{base}/api/auth/token", data={"username": USER, "password": PASSWORD}, timeout=60).json()[
            "access_token"
        ]
        bbox = city_bbox(base, token)
        zooms = [int(z) for z in args.zooms.split(",")]
        tiles = [t for z in zooms for t in tiles_covering(bbox, z)]
        tile_urls = [f"/tiles/building/{t}.pbf" for t in tiles]
        geo_urls = []
        for t in tiles:
            w, s, e, n = t.bounds_lonlat()
            geo_urls.append(f"/api/layers/building?bbox={w:.7f},{s:.7f},{e:.7f},{n:.7f}&limit=10000")
        print(f"{len(tiles)} tiles at z={args.zooms} over {bbox}; load average {loadavg()}", flush=True)
        run_in_load_process(base, token, [("warm-up", tile_urls + geo_urls)], args.concurrency)
        before = loadavg()
        for i in range(args.rounds):
            version = bump_version(args.db_url)
            jobs = [("cold", tile_urls), ("geojson", geo_urls)]
            if i % 2 == 0:
                jobs.reverse()
            jobs += [("warm", tile_urls)] * args.warm_passes
            results = run_in_load_process(base, token, jobs, args.concurrency)
            last_warm = [r for k, r in results if k == "warm"][-1]
            for kind, res in [(k, r) for k, r in results if k != "warm"] + [("warm", last_warm)]:
                rounds[kind].append(res)
                print(
                    f"round {i + 1} (data version {version}) {kind:8s} p50 {res['p50']:6.1f} ms  "
                    f"p99 {res['p99']:6.1f} ms  {res['rps']:6.0f}/s  {res['bytes'] / 1024:6.1f} KiB  "
                    f"errors {res['errors']}  cache hits {res['hits']:.0%}",
                    flush=True,
                )
        after = loadavg()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    med = {
        k: {m: statistics.median(r[m] for r in v) for m in ("p50", "p99", "rps", "bytes", "hits")}
        for k, v in rounds.items()
    }
    errors = {k: sum(r["errors"] for r in v) for k, v in rounds.items()}

    def verdict(k: str) -> str:
        m = med[k]
        ok = m["p50"] <= 20 and m["rps"] >= 500
        return f"**{'met' if ok else 'not met'}** (p50 {m['p50']:.1f} ms, {m['rps']:.0f} tiles/s)"

    server = (
        f"started by the script (`gisgov demo --workers {args.workers}`)"
        if args.url is None
        else f"{base}{' — ' + args.server_note if args.server_note else ''}"
    )
    lines = [
        "# Vector tiles against GeoJSON (buildings)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores (server, PostgreSQL and the load "
        f"process on the same machine), Python {platform.python_version()}; server {server}.",
        f"{len(tiles)} building tiles at z={args.zooms} covering the sample city, fetched by {args.concurrency} "
        "threads of a separate process (signed in, bearer token); the same areas as GeoJSON "
        "(`/api/layers/building?bbox=<tile bbox>&limit=10000`, not cached by the server). Each round first moves "
        "the tile data version (every cached tile misses), then: **cold** = every tile once (first fetch after the "
        f"data change), **geojson** (before or after cold, alternating), **warm** = every tile again, {args.warm_passes} "
        "passes, the last recorded (hits = its share answered from the tile cache). "
        f"Medians of {args.rounds} rounds.",
        f"Load average (1/5/15 min) before: {before}; after: {after}.",
        "",
        "| kind | p50 ms | p99 ms | answers/s | mean size KiB | cache hits | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in kinds:
        m = med[k]
        hits = f"{m['hits']:.0%}" if k != "geojson" else "–"
        lines.append(
            f"| {k} | {m['p50']:.1f} | {m['p99']:.1f} | {m['rps']:.0f} | {m['bytes'] / 1024:.1f} | {hits} | "
            f"{errors[k]} |"
        )
    lines += [
        "",
        f"Target p50 <= 20 ms and >= 500 tiles/s — cold tiles: {verdict('cold')}; warm tiles: {verdict('warm')}.",
        f"Cold tiles vs GeoJSON: {med['geojson']['p50'] / med['cold']['p50']:.1f}× lower p50, "
        f"{med['cold']['rps'] / med['geojson']['rps']:.1f}× the throughput, "
        f"{med['geojson']['bytes'] / max(med['cold']['bytes'], 1):.1f}× smaller answers.",
        "",
        "Rerun: `python bench/tiles_bench.py --url http://127.0.0.1:<port>` against `gisgov serve --workers 2` "
        "(or `--home <GISGOV_HOME with the demo city> --workers 2` to start a demo).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
