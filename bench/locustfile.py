"""Locust scenario for gisgov (issue 14, item 3): leaders browsing the dashboard and maps, planners editing
grids, each virtual user signed in as an account of its own (role and area), with think time.

Run through ``bench/load_locust.py`` (starts the server, makes the accounts, runs locust headless and
writes ``bench/results/load.md``); by hand::

    GISGOV_LOAD_ACCOUNTS=accounts.json locust -f bench/locustfile.py --headless -u 200 -r 20 -t 3m \
        --host http://127.0.0.1:8000

``GISGOV_LOAD_ACCOUNTS``: a JSON list of {"username", "password", "role", "scope"} (load_locust.py writes it).
What each user does is what the pages ask for, captured from the pages in a browser (the dashboard's first
load: who-am-I, the coverage catalog, open events, city statistics and outlines, context layers, 16 building
tiles; the map page; a drill-down to a street or community with its outlines, event and special-group
panels; the coverage page's community and grid layers). Planners open an edit session on their community,
move buildings between grids (each move re-checks both grids), read the session's full report and the plan
list, and now and then save the session as a draft.

Every answer is checked: status 200 (a move may be refused with 400 when a rule forbids it, counted apart),
and **no row outside the account's area**: every hierarchy code in a JSON answer (keys ``code``,
``community_code``, ``street_code``, ``grid_code``, ``building_code``, ``compound_code``, ``scope``) must lie
inside the account's area or above it (its street above a community, say); tiles are decoded and their
features' codes checked the same way. A violation fails the request ("cross-scope") and is counted in the
summary file (``GISGOV_LOAD_SUMMARY``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import threading
import time
from pathlib import Path

from locust import HttpUser, between, events, task

ACCOUNTS = json.loads(Path(os.environ["GISGOV_LOAD_ACCOUNTS"]).read_text(encoding="utf-8"))
_next: dict[str, itertools.count] = {}
_lock = threading.Lock()
COUNTS: dict = {"cross_scope": 0, "checked_answers": 0, "checked_codes": 0, "refused_moves": 0, "saves": 0}
SIGN_INS: list[float] = []  # seconds per sign-in (argon2 verification on the server), reported on their own
SAVES = os.environ.get("GISGOV_LOAD_SAVES", "1") != "0"  # 0: planners never save (to measure what saves cost)
TILE_MAX_AGE_S = 60  # the tiles' Cache-Control: private, max-age=60
CODE_KEYS = {"code", "community_code", "street_code", "grid_code", "building_code", "compound_code"}


def account(kind: str) -> dict:
    pool = [a for a in ACCOUNTS if a["kind"] == kind]
    with _lock:
        n = next(_next.setdefault(kind, itertools.count()))
    return pool[n % len(pool)]


def codes_in(doc, out: list[str]) -> list[str]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in CODE_KEYS and isinstance(v, str) and v.isdigit() and len(v) >= 9:
                out.append(v)
            elif isinstance(v, dict | list):
                codes_in(v, out)
    elif isinstance(doc, list):
        for v in doc:
            codes_in(v, out)
    return out


def outside(scope: str, codes: list[str]) -> list[str]:
    """Codes neither inside the area nor above it. Grid codes (15 digits) are not prefixes of building or
    compound codes, so a grid-bound account is not run here."""
    return [c for c in codes if not (c.startswith(scope) or scope.startswith(c))]


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


class Browsing(HttpUser):
    abstract = True
    kind = ""

    def on_start(self) -> None:
        a = account(self.kind)
        self.scope = a["scope"]
        r = self.client.post(
            "/api/auth/token", data={"username": a["username"], "password": a["password"]}, name="POST /api/auth/token"
        )
        r.raise_for_status()
        with _lock:
            SIGN_INS.append(r.elapsed.total_seconds())
        self.client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        self.box = tuple(a["bbox"])
        self.children = a.get("children", [])
        self.tiles_z15 = self._tiles(15, 16)
        self.tile_seen: dict[tuple, float] = {}

    def _tiles(self, z: int, n: int) -> list[tuple[int, int, int]]:
        minx, miny, maxx, maxy = self.box
        cx, cy = tile_xy((minx + maxx) / 2, (miny + maxy) / 2, z)
        side = int(math.sqrt(n))
        return [(z, cx - side // 2 + i, cy - side // 2 + j) for i in range(side) for j in range(side)]

    # ---- checked requests ---------------------------------------------------------------------------
    def get(self, url: str, name: str | None = None, *, check: bool = True) -> dict | list | None:
        with self.client.get(url, name=name or url.split("?")[0], catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
                return None
            if not check or not r.headers.get("content-type", "").startswith(("application/json", "application/geo")):
                r.success()
                return None
            doc = r.json()
            self.check_scope(r, doc)
            return doc

    def check_scope(self, r, doc) -> None:
        codes = codes_in(doc, [])
        bad = outside(self.scope, codes)
        with _lock:
            COUNTS["checked_answers"] += 1
            COUNTS["checked_codes"] += len(codes)
            if bad:
                COUNTS["cross_scope"] += 1
        if bad:
            r.failure(f"cross-scope: {len(bad)} code(s) outside {self.scope!r}, e.g. {bad[:3]}")
        else:
            r.success()

    def tile(self, layer: str, z: int, x: int, y: int) -> None:
        # as the browser does: a tile answered with Cache-Control max-age=60 is not asked for again meanwhile
        now = time.monotonic()
        if now - self.tile_seen.get((layer, z, x, y), -1e9) < TILE_MAX_AGE_S:
            return
        self.tile_seen[(layer, z, x, y)] = now
        with self.client.get(
            f"/tiles/{layer}/{z}/{x}/{y}.pbf", name=f"GET /tiles/{layer}/z/x/y", catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
                return
            if r.content and random.random() < 0.25:  # decode one tile in four (the client shares the cores)
                import mapbox_vector_tile

                decoded = mapbox_vector_tile.decode(r.content)
                codes = [
                    str(f["properties"].get(k))
                    for lyr in decoded.values()
                    for f in lyr["features"]
                    for k in CODE_KEYS
                    if f["properties"].get(k)
                ]
                bad = outside(self.scope, codes)
                with _lock:
                    COUNTS["checked_answers"] += 1
                    COUNTS["checked_codes"] += len(codes)
                    COUNTS["cross_scope"] += bool(bad)
                if bad:
                    r.failure(f"cross-scope tile: {bad[:3]}")
                    return
            r.success()

    # ---- what the pages ask for ---------------------------------------------------------------------
    def open_dashboard(self, stats_path: str) -> None:
        self.get("/dashboard", check=False)
        self.get("/api/auth/me")
        self.get("/api/coverage/catalog")
        self.get("/api/events/geojson")
        self.get(stats_path, name="GET /api/stats[/level/code]")
        self.get(
            stats_path + "/features" if stats_path != "/api/stats" else "/api/stats/features",
            name="GET /api/stats[/level/code]/features",
        )
        minx, miny, maxx, maxy = self.box
        self.get(f"/api/context?bbox={minx:.6f},{miny:.6f},{maxx:.6f},{maxy:.6f}&zoom=13", name="GET /api/context")
        for z, x, y in self.tiles_z15:
            self.tile("building", z, x, y)
        level = "street" if len(self.scope) == 9 else "community"
        self.unit_panels(level, self.scope)

    def unit_panels(self, level: str, code: str) -> None:
        """What the dashboard asks for with every unit it shows (its events, staff, compounds and
        special-group panels: dashboard.js loadIndicators)."""
        events = {
            "street": f"/api/dashboard/events?street={code}",
            "community": f"/api/events/stats?community={code}",
            "grid": f"/api/events/stats?grid={code}",
        }[level]
        self.get(events, name=events.split("?")[0])
        self.get(f"/api/staff/gaps?geometry=polygon&code={code}", name="GET /api/staff/gaps")
        self.get(f"/api/compounds/breaches?code={code[:12]}", name="GET /api/compounds/breaches")
        self.get("/api/special/summary")

    def drill_down(self) -> None:
        if not self.children:
            return
        level, code = random.choice(self.children)
        self.get(f"/api/stats/{level}/{code}", name="GET /api/stats/{level}/{code}")
        self.get(f"/api/stats/{level}/{code}/features", name="GET /api/stats/{level}/{code}/features")
        self.unit_panels(level, code)

    def coverage_layers(self) -> None:
        self.get("/api/layers/community?limit=5000", name="GET /api/layers/community")
        self.get("/api/layers/grid?limit=10000", name="GET /api/layers/grid")


class Leader(Browsing):
    """A street leader (街道领导): opens the dashboard, drills down, looks at the map. Think time 10–30 s
    (reading a dashboard page or a map before the next click)."""

    weight = 7
    kind = "leader"
    wait_time = between(10, 30)

    def on_start(self) -> None:
        super().on_start()
        # the unit the dashboard opens on: the account's street or community (no city page below admin)
        self.stats_path = f"/api/stats/{'street' if len(self.scope) == 9 else 'community'}/{self.scope}"
        self.open_dashboard(self.stats_path)

    @task(4)
    def drill(self) -> None:
        self.drill_down()

    @task(2)
    def dashboard(self) -> None:
        self.open_dashboard(self.stats_path)

    @task(1)
    def map_page(self) -> None:
        self.get("/map", check=False)

    @task(1)
    def layers(self) -> None:
        self.coverage_layers()

    @task(1)
    def tree(self) -> None:
        self.get("/api/hierarchy")


class Viewer(Leader):
    """A viewer (只读) bound to a street: the same pages, special groups suppressed."""

    weight = 4
    kind = "viewer"


class Staff(Leader):
    """Community staff (社区工作人员): the same pages over their community."""

    weight = 6
    kind = "staff"


class Planner(Browsing):
    """A planner (规划人员) bound to a community: an edit session, moves, reports, plan list; saves a draft
    about once every 40 actions. Think time 5–15 s (looking at the map and the counts between edits)."""

    weight = 3
    kind = "planner"
    wait_time = between(5, 15)

    def on_start(self) -> None:
        super().on_start()
        self.get("/grids/editor", check=False)
        self.get("/api/auth/me")
        self.open_session()

    def open_session(self) -> None:
        with self.client.post(
            "/api/grids/sessions", json={"community": self.scope}, name="POST /api/grids/sessions", catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
                self.sid, self.grids = None, []
                return
            doc = r.json()
            self.check_scope(r, doc)
        self.sid, self.grids = doc["session"], doc["grids"]
        page = self.get("/api/layers/building?limit=1000", name="GET /api/layers/building") or {}
        self.buildings = [f["properties"]["code"] for f in page.get("features", []) if f.get("properties")]

    @task(6)
    def move(self) -> None:
        if not self.sid or not self.grids or not self.buildings:
            return
        body = {"building": random.choice(self.buildings), "to": random.choice(self.grids)}
        with self.client.post(
            f"/api/grids/sessions/{self.sid}/move",
            json=body,
            name="POST /api/grids/sessions/{sid}/move",
            catch_response=True,
        ) as r:
            if r.status_code == 400:  # a rule refused the move (counted, not an error)
                with _lock:
                    COUNTS["refused_moves"] += 1
                r.success()
            elif r.status_code != 200:
                r.failure(f"status {r.status_code}")
            else:
                self.check_scope(r, r.json())

    @task(2)
    def report(self) -> None:
        if self.sid:
            self.get(f"/api/grids/sessions/{self.sid}", name="GET /api/grids/sessions/{sid}")

    @task(2)
    def plans(self) -> None:
        self.get(f"/api/grids/plans/{self.scope}", name="GET /api/grids/plans/{community}")

    @task(1)
    def save(self) -> None:
        if not self.sid or not SAVES or random.random() > 0.25:  # about one save in 40 actions
            return
        with self.client.post(
            f"/api/grids/sessions/{self.sid}/save",
            json={"note": "负载测试 load test"},
            name="POST /api/grids/sessions/{sid}/save",
            catch_response=True,
        ) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
                return
            r.success()
        with _lock:
            COUNTS["saves"] += 1  # the page goes on editing in the same session


@events.quitting.add_listener
def _write_summary(environment, **_kw) -> None:
    path = os.environ.get("GISGOV_LOAD_SUMMARY")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({**COUNTS, "sign_ins_s": SIGN_INS}, f)
