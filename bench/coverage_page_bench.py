"""Coverage page load time, end to end over HTTP (issue 12 item 5: the page loads in ≤ 1 s on the sample city).

What the page asks for when it opens (``web/coverage/coverage.js``): the catalog, then at once the community
and grid outlines (/api/layers/community, /api/layers/grid), the service area and gaps (display tolerance 2 m),
the buildings by distance class, the category's facilities and the per-community figures; the suggested sites
(POST /api/coverage/site) come after the layers and are timed apart. Each request is timed on the client; the
page total is the wall time from the catalog request to the last layer answer (six connections at once, as a
browser does).

Three situations, each against a real uvicorn process started here:

1. ``cold``: a server started with an empty cache folder (the first load computes the walking model, the
   distances and the service areas);
2. ``restart``: the server stopped and started again on the same ``GISGOV_HOME`` (the first load after a
   start reads the cached entries from ``<home>/cache/coverage``: no walking model is loaded);
3. ``warm``: the same server, five more loads, median per request and of the totals.

Run (makes a database ``gisgov_bench_covpage_*`` with the sample city on the server, computes and stores
coverage, drops it at the end)::

    python bench/coverage_page_bench.py --server postgresql+psycopg://USER:PASS@127.0.0.1:PORT/postgres

Without ``--server``, the embedded test cluster (``GISGOV_TEST_HOME``, default ``.gisgov-test``) is the server.
The server connects as the app role with the test suite's password (the role is cluster-wide: never
point this at a production cluster). Results: ``bench/results/coverage_page.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "bench_coverage_admin", "Bench-coverage-2024"
CATEGORY, CIRCLE, PROFILE = "gb_health_centre", "c10", "standard"
APP_ROLE, APP_PASSWORD = "gisgov_app", "gisgov-app-test-password-1"  # the test suite's: the role is cluster-wide

SERVER = """
import sys
import uvicorn
from sqlalchemy import create_engine
from gisgov.api.app import create_app
from gisgov.config import Settings
url, port, home = sys.argv[1], int(sys.argv[2]), sys.argv[3]
app = create_app(Settings(host="127.0.0.1", port=port, home=home, login_rate_per_minute=10000),
                 engine=create_engine(url, pool_size=8, max_overflow=4, pool_pre_ping=True))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


def page_requests() -> list[tuple[str, str]]:
    q = f"category={CATEGORY}&circle={CIRCLE}&profile={PROFILE}"
    return [
        ("outlines: communities", "/api/layers/community?limit=5000"),
        ("outlines: grids", "/api/layers/grid?limit=10000"),
        ("service area", f"/api/coverage/areas?{q}&tolerance_m=2"),
        ("gaps", f"/api/coverage/gaps?{q}&tolerance_m=2"),
        ("buildings by distance", f"/api/coverage/buildings?{q}"),
        ("facilities", f"/api/coverage/facilities?{q}"),
        ("figures per community", f"/api/coverage/communities?{q}"),
    ]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, app_url: str, home: Path) -> None:
        self.app_url, self.home = app_url, home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, self.app_url, str(self.port), str(self.home)], cwd=ROOT, env=env
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)


def token(base: str) -> str:
    r = httpx.post(f"{base}/api/auth/token", data={"username": USER, "password": PASSWORD}, timeout=30)
    r.raise_for_status()
    return str(r.json()["access_token"])


def load_page(base: str, bearer: str) -> dict[str, float]:
    """One page load: the catalog, then the layers six at a time; times in ms (and ``total``, ``sites``)."""
    headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json", "Accept-Encoding": "gzip"}
    out: dict[str, float] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=300) as c:

        def get(item: tuple[str, str]) -> tuple[str, float, int]:
            t = time.perf_counter()
            r = c.get(item[1])
            r.raise_for_status()
            return item[0], (time.perf_counter() - t) * 1000, len(r.content)

        t0 = time.perf_counter()
        name, ms, _ = get(("catalog", "/api/coverage/catalog"))
        out[name] = ms
        with ThreadPoolExecutor(6) as pool:
            for name, ms, _size in pool.map(get, page_requests()):
                out[name] = ms
        out["total"] = (time.perf_counter() - t0) * 1000
        t = time.perf_counter()
        r = c.post(
            "/api/coverage/site",
            json={"category": CATEGORY, "circle": CIRCLE, "profile": PROFILE, "k": 3},
            headers={"Content-Type": "application/json"},
        )
        r.raise_for_status()
        out["suggested sites (after the layers)"] = (time.perf_counter() - t) * 1000
    return out


def prepare(args: argparse.Namespace) -> tuple[str, str | None]:
    """The owner URL of the database to use, and the name to drop afterwards (None: keep it)."""
    from sqlalchemy import create_engine, pool, text

    from gisgov.coverage.service import CoverageService
    from gisgov.security import accounts

    drop = None
    url = None
    if url is None:
        server = args.server
        if server is None:
            from gisgov.db.cluster import EmbeddedCluster

            c = EmbeddedCluster(Path(os.environ.get("GISGOV_TEST_HOME", ROOT / ".gisgov-test")), db_name="postgres")
            c.init()
            c.start()
            server = c.url("postgres")
        import psycopg
        from sqlalchemy.engine import make_url

        from gisgov.db import migrate
        from gisgov.sample import generate_city
        from gisgov.sample.load import load_city
        from gisgov.security.pii import Vault

        drop = f"gisgov_bench_covpage_{uuid.uuid4().hex[:8]}"
        libpq = server.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE \"{drop}\" TEMPLATE template0 ENCODING 'UTF8'")
        url = make_url(server).set(database=drop).render_as_string(hide_password=False)
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        migrate.upgrade(url)
        t = time.perf_counter()
        load_city(url, generate_city(seed=20241123, scale=1.0), vault=Vault(hashlib.sha256(b"bench").digest()))
        print(f"sample city loaded in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.begin() as conn:
            if conn.execute(text("SELECT 1 FROM app_user WHERE username = :u"), {"u": USER}).first() is None:
                accounts.add_user(conn, USER, PASSWORD, "admin", "")
        with eng.begin() as conn:
            r = CoverageService().compute(conn)
        print(f"coverage computed: run {r.run_id}", file=sys.stderr)
    finally:
        eng.dispose()
    return url, drop


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    names = ["catalog", *(n for n, _ in page_requests()), "total", "suggested sites (after the layers)"]
    head = "| request | " + " | ".join(r[0] for r in rows) + " |\n|---|" + "---:|" * len(rows) + "\n"
    body = ""
    for n in names:
        label = "**page total (catalog → last layer)**" if n == "total" else n
        body += f"| {label} | " + " | ".join(f"{r[1][n]:,.0f}" for r in rows) + " |\n"
    return head + body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", help="owner URL of a server's postgres database (a sample-city database is made)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "coverage_page.md"))
    args = ap.parse_args()

    from gisgov.db.approle import app_url_from_owner, grant_login

    url, drop = prepare(args)
    grant_login(url, APP_ROLE, APP_PASSWORD)
    app_url = app_url_from_owner(url, APP_ROLE, APP_PASSWORD)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            with Server(app_url, home) as s:
                cold = load_page(s.base, token(s.base))
            with Server(app_url, home) as s:
                bearer = token(s.base)
                restart = load_page(s.base, bearer)
                warm_runs = [load_page(s.base, bearer) for _ in range(args.runs)]
    finally:
        if drop:
            import psycopg

            server = url.rsplit("/", 1)[0] + "/postgres"
            with psycopg.connect(server.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)')
    warm = {k: statistics.median(r[k] for r in warm_runs) for k in warm_runs[0]}
    rows = [
        ("first load, empty cache (ms)", cold),
        ("first load after a restart (ms)", restart),
        (f"warm, median of {args.runs} (ms)", warm),
    ]
    cmd = "python bench/coverage_page_bench.py" + (" --server …" if args.server else "")
    text = (
        "# Coverage page load (issue 12 item 5: ≤ 1 s on the sample city)\n\n"
        f"Command: `{cmd}` (see the script's docstring). Sample city (seed 20241123, scale 1.0), category "
        f"`{CATEGORY}` (社区卫生服务中心), circle `{CIRCLE}`, profile `{PROFILE}`, signed in as a city-wide admin; "
        "uvicorn (1 worker) on 127.0.0.1, client timings over HTTP, the layers fetched six at a time after the "
        "catalog as the page does. Measured "
        f"{time.strftime('%Y-%m-%d %H:%M')} on {platform.node() and 'this machine'} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}).\n\n"
        + table(rows)
        + "\nThe first column computes everything (walking model, distances, service area) on the first request; "
        "the second is the first load after a server start with the cache files of the first run present under "
        "`GISGOV_HOME/cache/coverage` (no walking model is loaded); suggested sites are fetched after the layers "
        "are drawn and cached per computation run as well.\n"
    )
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
