"""Load test: an asyncio httpx client against gisgov on 127.0.0.1, at several levels of concurrent
clients (default 50, 200 and 500), over a realistic mix signed in as the demo roles.

    python bench/load_test.py [--workers 1] [--levels 50,200,500] [--seconds 30] [--home DIR]
    python bench/load_test.py --url http://127.0.0.1:8000   # a demo already running (demo passwords)

Without ``--url`` it runs ``gisgov demo --workers N`` itself on a free port in ``--home`` (default a
temporary folder; the first run loads the synthetic sample city and computes its analyses, later runs
with the same --home reuse them), and stops the server and its database at the end.

Each client loops over the mix back to back (closed loop) for ``--seconds`` per level: dashboard
statistics, layer pages, the hierarchy tree, grid plan lists and the validation of the stored active
plan, the map page, coverage summaries, each signed in (bearer token, one sign-in per role) as the role
that would use it. Recorded per level: requests, errors (any 5xx, unexpected status, timeout or
connection error), req/s, p50/p95/p99 latency, and the latency of ``/health`` right after the level.
The section of this run (by worker count) is written into ``bench/results/load.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "load.md"
ROLES = {  # demo accounts (public passwords, see `gisgov demo`)
    "admin": ("demo_admin", "Demo-admin-2024"),
    "leader": ("demo_leader", "Demo-leader-2024"),
    "planner": ("demo_planner", "Demo-planner-2024"),
    "staff": ("demo_staff", "Demo-staff-2024"),
    "viewer": ("demo_viewer", "Demo-viewer-2024"),
    "grid": ("demo_grid", "Demo-grid-2024"),
}


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


def wait_up(base: str, proc: subprocess.Popen | None, timeout: float) -> None:
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


def sign_in(base: str) -> tuple[dict[str, str], dict[str, str]]:
    """Bearer tokens per role, and the codes to ask about (each role's scope)."""
    tokens, scope = {}, {}
    with httpx.Client(base_url=base, timeout=60) as c:
        for role, (user, pw) in ROLES.items():
            r = c.post("/api/auth/token", data={"username": user, "password": pw})
            r.raise_for_status()
            tokens[role] = r.json()["access_token"]
            scope[role] = c.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens[role]}"}).json()["scope"]
        street = scope["leader"]
        community = scope["staff"]
    return tokens, {"street": street, "community": community}


def warm_up(base: str, tokens: dict, mix: list, rounds: int) -> None:
    """Every route of the mix a few times, one at a time, before measuring: each worker loads what it
    keeps in memory (the coverage model is built on a worker's first coverage request) outside the levels."""
    with httpx.Client(base_url=base, timeout=600) as c:
        for _ in range(rounds):
            for _, role, method, path, payload in mix:
                c.request(method, path, json=payload, headers={"Authorization": f"Bearer {tokens[role]}"})


def the_mix(codes: dict[str, str]) -> list[tuple[float, str, str, str, dict | None]]:
    """(weight, role, method, path, json body)."""
    s, c = codes["street"], codes["community"]
    return [
        (3, "leader", "GET", "/api/stats", None),  # dashboard: city
        (3, "leader", "GET", f"/api/stats/street/{s}", None),  # dashboard: street
        (2, "viewer", "GET", "/api/layers/community?limit=50", None),  # layer pages
        (2, "staff", "GET", "/api/layers/building?limit=200", None),
        (2, "admin", "GET", "/api/layers/grid?limit=100&offset=0", None),
        (3, "staff", "GET", "/api/hierarchy", None),  # tree
        (2, "planner", "GET", f"/api/grids/plans/{c}", None),  # plan list
        (1, "planner", "POST", "/api/grids/validate", {"community": c}),  # validate the stored plan
        (1, "viewer", "GET", "/map", None),  # map page
        (2, "staff", "GET", f"/api/coverage/summary?level=community&code={c}", None),
        (1, "leader", "GET", f"/api/coverage/summary?level=street&code={s}", None),
        (1, "viewer", "GET", "/api/auth/me", None),
        (2, "grid", "GET", "/api/events?limit=50", None),  # a grid worker's event list
        (1, "staff", "GET", f"/api/events/stats?community={c}", None),  # event statistics
        (1, "leader", "GET", "/api/events/geojson", None),  # open events on the map
    ]


async def run_level(base: str, tokens: dict, mix: list, clients: int, seconds: float, timeout: float) -> dict:  # noqa: ASYNC109
    weights = np.array([m[0] for m in mix], dtype=float)
    weights /= weights.sum()
    lat: list[float] = []
    by_path: dict[str, list[float]] = {}
    status: Counter = Counter()
    per_path_err: Counter = Counter()
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as http:

        async def client(i: int) -> None:
            rng = random.Random(i)
            await asyncio.sleep(rng.random() * min(2.0, seconds / 10))  # ramp up over the first seconds
            while time.monotonic() < stop_at:
                _, role, method, path, body = mix[int(np.searchsorted(np.cumsum(weights), rng.random()))]
                t = time.monotonic()
                try:
                    r = await http.request(method, path, json=body, headers={"Authorization": f"Bearer {tokens[role]}"})
                    code = r.status_code
                    if code >= 400:  # the error class from the body ({"detail": ..., "error": ...})
                        with contextlib.suppress(ValueError):
                            code = f"{code} {r.json().get('error', '')}".strip()
                except httpx.TimeoutException:
                    code = "timeout"
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                lat.append(time.monotonic() - t)
                by_path.setdefault(f"{method} {path.split('?')[0]}", []).append(lat[-1])
                status[code] += 1
                if code != 200:
                    per_path_err[(path.split("?")[0], code)] += 1

        t0 = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.monotonic() - t0
    t = time.monotonic()
    h = httpx.get(f"{base}/health", timeout=60)  # noqa: ASYNC210  (after the load: times one lone request)
    health_s = time.monotonic() - t
    a = np.array(lat) if lat else np.array([0.0])
    errors = sum(n for k, n in status.items() if k != 200)
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": errors,
        "wall": wall,
        "rps": len(lat) / wall,
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "health_s": health_s,
        "health_status": h.status_code,
        "status": dict(status),
        "errors_by_path": dict(per_path_err),
        "route_p50": {k: float(np.median(v)) for k, v in sorted(by_path.items())},
    }


def section(args, rows: list[dict], command: str) -> str:
    cpu = os.cpu_count()
    lines = [
        f"## workers {args.workers}",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}` on {platform.machine()}, "
        f"{cpu} cores (client and server on the same machine), Python {platform.python_version()}; "
        f"{args.seconds:.0f} s per level, closed loop (each client sends its next request when the last answered), "
        f"client timeout {args.timeout:.0f} s; pool per worker: GISGOV_POOL_SIZE + GISGOV_POOL_OVERFLOW "
        f"(defaults 20 + 0 since the load-test fixes; the sections below say which ran), pool wait GISGOV_POOL_TIMEOUT_S (default 60 s). Machine load average during the run "
        f"(1 min, other work included): {args.load_before:.1f} before, {os.getloadavg()[0]:.1f} after.",
        "",
        "| clients | requests | errors | req/s | p50 | p95 | p99 | max | /health right after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['clients']} | {r['requests']:,} | **{r['errors']}** | {r['rps']:.1f} | {r['p50']:.2f} s | "
            f"{r['p95']:.2f} s | **{r['p99']:.2f} s** | {r['max']:.2f} s | "
            f"{r['health_s'] * 1000:.0f} ms ({r['health_status']}) |"
        )
    errs = [r for r in rows if r["errors"]]
    lines.append("")
    lines.append(
        f"Median latency per route at {rows[0]['clients']} client(s): "
        + ", ".join(f"`{k}` {v:.2f} s" for k, v in rows[0]["route_p50"].items())
        + "."
    )
    lines.append("")
    if errs:
        for r in errs:
            lines.append(
                f"Errors at {r['clients']} clients: status {r['status']}; by route "
                + ", ".join(f"{p} {c}: {n}" for (p, c), n in r["errors_by_path"].items())
                + "."
            )
    else:
        lines.append("No errors at any level (every answer 200).")
    lines.append("")
    return "\n".join(lines)


def write_results(text: str, workers: int) -> None:
    head = (
        "# Load tests: concurrent signed-in users\n\n"
        "Two tests. `bench/load_locust.py` (locust, issue 14): users with think time, each with an account of its\n"
        "own, doing what the pages ask for; its sections come first, one per user count. `bench/load_test.py`\n"
        "(below them): a closed loop of clients sending the next request as soon as the last one answered, the\n"
        "sections `workers N` (measured before the load fixes of issue 14 — Nagle's algorithm on multi-worker\n"
        "connections, answer caches, JIT, connection pools — unless dated later).\n\n"
    )
    closed = (
        "## Closed loop (`bench/load_test.py`)\n\n"
        "`bench/load_test.py`: an asyncio httpx client against `gisgov demo` (synthetic sample city) on 127.0.0.1.\n"
        "Mix: dashboard statistics (city, street), layer pages (community, building, grid), hierarchy tree, grid plan\n"
        "list and validation of the stored active plan, map page, coverage summaries (community, street), /api/auth/me,\n"
        "events (a grid worker's list, statistics, the map layer); signed in as the demo leader, planner, community\n"
        "staff, viewer, grid worker and admin (one bearer token per role). Each route is called a few times one by one\n"
        "before the levels (warm-up: a worker builds its in-memory coverage model on its first coverage request).\n"
        "Requests queue for a database connection (FIFO, `GISGOV_POOL_TIMEOUT_S` 60 s) instead of failing.\n"
        "Errors: any 5xx (503 included), unexpected status, timeout or connection error.\n\n"
    )
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else head
    # the locust summary and sections (bench/load_locust.py) are kept as they are, first
    summary = re.findall(r"(?s)## Summary \(locust.*?(?=\n<!-- locust )", old)
    locust = summary + re.findall(r"(?s)<!-- locust \d+ -->.*?<!-- /locust \d+ -->\n?", old)
    rest = re.sub(r"(?s)<!-- locust \d+ -->.*?<!-- /locust \d+ -->\n?", "", old)
    parts = re.split(r"(?m)^(?=## workers )", rest)
    body = {int(re.match(r"## workers (\d+)", p).group(1)): p for p in parts[1:]}
    body[workers] = text
    RESULTS.write_text(
        head
        + "".join(s.rstrip() + "\n\n" for s in locust)
        + closed
        + "".join(body[k].rstrip() + "\n\n" for k in sorted(body)),
        encoding="utf-8",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running demo (127.0.0.1 only); default: start one")
    ap.add_argument("--workers", type=int, default=1, help="gisgov demo --workers (when starting it)")
    ap.add_argument("--levels", default="50,200,500")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument(
        "--timeout",
        type=float,
        default=150,
        help="client timeout (s); above GISGOV_POOL_TIMEOUT_S so a queued request is not counted as a client timeout",
    )
    ap.add_argument("--home", type=Path, help="GISGOV_HOME of the demo it starts (default: a temporary folder)")
    ap.add_argument("--no-write", action="store_true", help="print the results only")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    args.load_before = os.getloadavg()[0]
    proc = None
    tmp = None
    if args.url:
        base = args.url.rstrip("/")
        host = httpx.URL(base).host
        if host not in ("127.0.0.1", "localhost"):
            raise SystemExit("only 127.0.0.1: this is a load generator")
    else:
        if args.home is None:
            tmp = tempfile.TemporaryDirectory(prefix="gisgov-load-")
            args.home = Path(tmp.name)
        args.home.mkdir(parents=True, exist_ok=True)
        os.chmod(args.home, 0o755)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = args.home / "demo-load.log"
        proc = start_demo(args.home, args.workers, port, log)
        print(f"starting gisgov demo --workers {args.workers} on {base} (log {log}) …", flush=True)
    try:
        wait_up(base, proc, timeout=3600)
        tokens, codes = sign_in(base)
        mix = the_mix(codes)
        warm_up(base, tokens, mix, rounds=2 * args.workers)
        rows = []
        for n in levels:
            r = asyncio.run(run_level(base, tokens, mix, n, args.seconds, args.timeout))
            rows.append(r)
            print(
                f"{n:4d} clients: {r['requests']:6d} requests, {r['errors']} errors, {r['rps']:.1f} req/s, "
                f"p50 {r['p50']:.2f} s p95 {r['p95']:.2f} s p99 {r['p99']:.2f} s; /health {r['health_s'] * 1000:.0f} ms"
                + (f"; {r['status']} {r['errors_by_path']}" if r["errors"] else ""),
                flush=True,
            )
            time.sleep(2)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            env = {k: v for k, v in os.environ.items() if not k.startswith("GISGOV_")}
            subprocess.run(
                [sys.executable, "-m", "gisgov.cli.main", "db", "down"],
                env={**env, "GISGOV_HOME": str(args.home)},
                capture_output=True,
                cwd=str(REPO),
            )
        if tmp is not None:
            tmp.cleanup()
    command = (
        f"python bench/load_test.py --workers {args.workers} --levels {args.levels} --seconds {args.seconds:g}"
        + (" --url URL" if args.url else "")
    )
    if not args.no_write:
        write_results(section(args, rows, command.strip()), args.workers)
        print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
