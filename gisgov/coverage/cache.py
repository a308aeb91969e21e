"""Service areas and gaps cached per computation run (the coverage page's heavy layers).

Drawing a category's service area and its gaps needs the walking model and seconds of geometry work;
the answer only changes when a new computation run is stored or the inputs change. This module keeps,
per (category, circle, profile) and **run key**, everything the coverage routes need to answer any
caller without the model:

- the whole city's dissolved service area (metric CRS, exact: what ``service_area`` computes);
- per building: id, community code, metric x/y, households, residents and the walking distance to the
  category (arrays; aggregates only, no per-person row);
- the category's facilities (id, name, kind, metric x/y).

The run key (:func:`run_key`) is a digest of the latest finished ``coverage_run`` (id and finish time),
the input fingerprints (:func:`gisgov.coverage.store.input_checksums`: roads, buildings, facilities,
households …) and the catalog checksum, so a new ``coverage compute`` (or a committed what-if, or a
changed facility) gives a new key and the old entries are never read again.

Answers are made per caller from the unscoped entry: the service area is cut to the caller's area
outline and counts its buildings only, gaps are grouped from the caller's buildings only
(:func:`gisgov.coverage.areas.gap_areas` on the entry's arrays, the same function and inputs as a fresh
computation, so the GeoJSON is identical). The finished GeoJSON text is kept too, per scope and display
tolerance, in a small LRU.

Entries live in an in-process LRU and, when a folder is given (the app uses ``<GISGOV_HOME>/cache/
coverage``), in ``.npz`` files (no pickles) written atomically, so the first request after a server start
reads them instead of loading the walking model. Filling an entry takes a per-key lock: concurrent first
requests compute once (:attr:`CoverageCache.computations` counts the fills).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from gisgov.coverage import areas as areas_mod
from gisgov.coverage import store
from gisgov.crs import WGS84, transformer

FORMAT = 1  # bump when the entry layout changes (old files are then ignored)
NEAR_FACTOR = 1.5  # "near": beyond the budget but within this multiple of it
DISTANCE_CLASSES = ("within", "near", "beyond")

Key = tuple[str, str, str, str]  # (run key, category, circle, profile)
AnswerKey = tuple[Any, ...]

RUN_SQL = "SELECT id, finished_at FROM coverage_run WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1"


def run_key(conn: Connection, catalog_checksum: str) -> str:
    """Digest of what the cached layers depend on: the latest finished run, the inputs and the catalog.
    Needs a transaction that sees the whole city (``system_scope``)."""
    row = conn.execute(text(RUN_SQL)).first()
    run = [int(row[0]), row[1].isoformat()] if row else None
    sums = store.input_checksums(conn)
    blob = json.dumps([FORMAT, run, sums, catalog_checksum], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class Entry:
    """One (run key, category, circle, profile): the unscoped material every answer is cut from."""

    key: Key
    epsg: int  # the model's metric CRS
    srid: int  # storage CRS
    category: str
    name_zh: str
    name_en: str
    budget_m: float
    width_m: float
    gap_radius_m: float
    method: str
    area: Any  # shapely geometry, metric
    ids: np.ndarray
    community: np.ndarray  # str
    x: np.ndarray
    y: np.ndarray
    households: np.ndarray
    residents: np.ndarray
    dist: np.ndarray  # walking distance to the category (inf: unreachable)
    fac_id: np.ndarray
    fac_name: np.ndarray
    fac_kind: np.ndarray
    fac_x: np.ndarray
    fac_y: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    # -- scoping -------------------------------------------------------------------------------------------
    def scope_mask(self, scope: str) -> np.ndarray:
        if not scope:
            return np.ones(len(self.ids), dtype=bool)
        return np.char.startswith(self.community.astype(str), scope)

    def distance_class(self) -> np.ndarray:
        """0 within the budget, 1 near (≤ NEAR_FACTOR × budget), 2 beyond or unreachable."""
        d = self.dist
        return np.where(d <= self.budget_m, 0, np.where(d <= self.budget_m * NEAR_FACTOR, 1, 2)).astype(np.int8)

    def to_srid(self, geoms: Any) -> gpd.GeoSeries:
        return gpd.GeoSeries(geoms, crs=self.epsg).to_crs(self.srid)

    # -- files ---------------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        meta = {
            "key": list(self.key),
            "epsg": self.epsg,
            "srid": self.srid,
            "category": self.category,
            "name_zh": self.name_zh,
            "name_en": self.name_en,
            "budget_m": self.budget_m,
            "width_m": self.width_m,
            "gap_radius_m": self.gap_radius_m,
            "method": self.method,
            "format": FORMAT,
        }
        wkb = np.frombuffer(shapely.to_wkb(self.area) if self.area is not None else b"", dtype=np.uint8)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                meta=np.array(json.dumps(meta, ensure_ascii=False)),
                area=wkb,
                ids=self.ids,
                community=self.community.astype(str),
                x=self.x,
                y=self.y,
                households=self.households,
                residents=self.residents,
                dist=self.dist,
                fac_id=self.fac_id,
                fac_name=self.fac_name.astype(str),
                fac_kind=self.fac_kind.astype(str),
                fac_x=self.fac_x,
                fac_y=self.fac_y,
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Entry | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("format") != FORMAT:
                    return None
                wkb = z["area"].tobytes()
                arrays = {k: z[k] for k in z.files if k not in ("meta", "area")}
        except (OSError, ValueError, KeyError):
            return None
        meta.pop("format")
        k0, k1, k2, k3 = (str(k) for k in meta.pop("key"))
        key = (k0, k1, k2, k3)
        return cls(key=key, area=shapely.from_wkb(wkb) if wkb else None, **meta, **arrays)


class CoverageCache:
    """In-process LRU of :class:`Entry` (and of finished GeoJSON texts), optionally backed by a folder."""

    def __init__(
        self, folder: Path | None = None, *, entries: int = 32, answers: int = 256, key_ttl_s: float = 2.0
    ) -> None:
        self.folder = Path(folder) if folder else None
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._answers: OrderedDict[AnswerKey, Any] = OrderedDict()
        self._max_entries, self._max_answers = entries, answers
        self._lock = threading.Lock()
        self._key_locks: dict[Key, threading.Lock] = {}
        self.computations = 0  # entries computed from the model (tests count them)
        self.file_reads = 0  # entries read from the folder
        self.last_key: str | None = None
        self.key_ttl_s = key_ttl_s
        self._run_lock = threading.Lock()
        self._run_memo: tuple[str, float, str] | None = None

    # -- the run key -----------------------------------------------------------------------------------------
    def run_key(self, conn: Connection, catalog_checksum: str) -> str:
        """:func:`run_key`, asked of the database at most once per ``key_ttl_s`` (concurrent requests share one
        query; a compute or a committed edit in this process calls :meth:`forget_run`, other processes' runs
        are seen within ``key_ttl_s``)."""
        with self._run_lock:
            memo = self._run_memo
            if memo is not None and memo[0] == catalog_checksum and time.monotonic() - memo[1] < self.key_ttl_s:
                return memo[2]
            k = run_key(conn, catalog_checksum)
            self._run_memo = (catalog_checksum, time.monotonic(), k)
            self.last_key = k
            return k

    def forget_run(self) -> None:
        with self._run_lock:
            self._run_memo = None

    # -- LRU helpers -----------------------------------------------------------------------------------------
    def _get(self, lru: OrderedDict[Any, Any], key: AnswerKey) -> Any:
        with self._lock:
            v = lru.get(key)
            if v is not None:
                lru.move_to_end(key)
            return v

    def _put(self, lru: OrderedDict[Any, Any], key: AnswerKey, value: Any, limit: int) -> None:
        with self._lock:
            lru[key] = value
            lru.move_to_end(key)
            while len(lru) > limit:
                lru.popitem(last=False)

    def _key_lock(self, key: Key) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _path(self, key: Key) -> Path | None:
        if self.folder is None:
            return None
        name = "-".join(hashlib.sha256(str(k).encode()).hexdigest()[:12] if i else k for i, k in enumerate(key))
        return self.folder / f"{name}.npz"

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._answers.clear()

    # -- entries -------------------------------------------------------------------------------------------
    def entry(self, key: Key, build: Callable[[], Entry]) -> Entry:
        """The entry for ``key`` (run key, category, circle, profile): from memory, the folder, or ``build``
        (called once however many threads ask at the same time)."""
        hit: Entry | None = self._get(self._entries, key)
        if hit is not None:
            return hit
        with self._key_lock(key):
            hit = self._get(self._entries, key)
            if hit is not None:
                return hit
            path = self._path(key)
            e = Entry.load(path) if path is not None and path.is_file() else None
            if e is not None and e.key == key:
                self.file_reads += 1
            else:
                e = build()
                self.computations += 1
                if path is not None:
                    self._store(path, e)
            self._put(self._entries, key, e, self._max_entries)
        with self._lock:
            self._key_locks.pop(key, None)
        return e

    def _store(self, path: Path, e: Entry) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            e.save(path)
            for old in (*path.parent.glob("*.npz"), *path.parent.glob("*.json")):
                if not old.name.startswith(e.key[0]):  # entries of older runs are never read again
                    old.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only or full disk: the in-process cache still works

    def answer(self, key: AnswerKey, make: Callable[[], Any], *, persist: bool = False) -> Any:
        """A finished answer (GeoJSON text, rows) per entry, scope and options, kept in the LRU; with
        ``persist`` (JSON answers whose ``key[0]`` is the run key) also in the folder."""
        hit = self._get(self._answers, key)
        if hit is not None:
            return hit
        path = None
        if persist and self.folder is not None:
            path = self.folder / f"{key[0]}-{hashlib.sha256(repr(key).encode()).hexdigest()[:16]}.json"
            try:
                hit = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                hit = None
            if hit is not None:
                self._put(self._answers, key, hit, self._max_answers)
                return hit
        v = make()
        self._put(self._answers, key, v, self._max_answers)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_text(json.dumps(v, ensure_ascii=False, default=float), encoding="utf-8")
                os.replace(tmp, path)
            except OSError:
                pass
        return v


def build_entry(svc: Any, conn: Connection, key: Key) -> Entry:
    """Compute an entry from the coverage service's model (loads it when needed: the slow path)."""
    _run, category, circle, profile = key
    with svc.reading(conn):
        cat = svc.catalog()
        c, rows, d, _f = svc.category_arrays(conn, category)
        budget = float(cat.budget_m(circle, profile))
        m = svc.model
        area = areas_mod.service_area(m, rows, budget, d)
        b = m.buildings
        f = m.facilities.iloc[rows]
        hh = pd.to_numeric(b["households"], errors="coerce").fillna(0).to_numpy(float)
        res = pd.to_numeric(b["residents"], errors="coerce").fillna(0).to_numpy(np.int64)
        return Entry(
            key=key,
            epsg=int(m.epsg),
            srid=int(store.storage_srid(conn)),
            category=c.code,
            name_zh=c.name_zh,
            name_en=c.name_en,
            budget_m=budget,
            width_m=float(m.params.area_width_m),
            gap_radius_m=float(m.params.gap_radius_m),
            method=str(m.method),
            area=area,
            ids=b["id"].to_numpy(np.int64),
            community=b["community"].astype("string").fillna("").to_numpy(dtype=str),
            x=b["x"].to_numpy(float),
            y=b["y"].to_numpy(float),
            households=hh,
            residents=res,
            dist=np.asarray(d, dtype=float),
            fac_id=f["id"].to_numpy(np.int64),
            fac_name=f["name"].astype("string").fillna("").to_numpy(dtype=str),
            fac_kind=f["kind"].astype("string").fillna("").to_numpy(dtype=str),
            fac_x=f["x"].to_numpy(float),
            fac_y=f["y"].to_numpy(float),
        )


# -- answers made from an entry ----------------------------------------------------------------------------


def scope_polygon(conn: Connection, e: Entry, scope: str) -> Any:
    """The caller's area outline in the entry's metric CRS (None: everywhere; empty when unknown)."""
    if not scope:
        return None
    g = store.area_geometry(conn, scope)
    if g is None:
        return shapely.Polygon()
    tr = transformer(e.srid, e.epsg)
    return shapely.transform(g, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _display(geoms: np.ndarray, tolerance_m: float) -> np.ndarray:
    if tolerance_m <= 0 or len(geoms) == 0:
        return geoms
    return shapely.simplify(geoms, tolerance_m, preserve_topology=True)


def _text(gdf: gpd.GeoDataFrame, tolerance_m: float) -> str:
    out = gdf.to_crs(WGS84)
    if tolerance_m > 0 and len(out):  # display copies: 1e-6° ≈ 0.1 m is plenty
        out["geometry"] = shapely.set_precision(out.geometry.to_numpy(), 1e-6)
    return str(out.to_json(drop_id=True, na="null"))


def area_frame(e: Entry, clip: Any, scope: str, tolerance_m: float = 0.0) -> gpd.GeoDataFrame:
    """What ``CoverageService.service_area`` answers for the whole category (same columns and values)."""
    inside = e.scope_mask(scope)
    geom = e.area
    if clip is not None and geom is not None:
        geom = shapely.intersection(geom, clip)
    geoms = _display(np.array([geom], dtype=object), tolerance_m)
    df = pd.DataFrame(
        [{"facility_id": None, "buildings_in": int(((e.dist <= e.budget_m) & inside).sum()), "geometry": geoms[0]}]
    )
    df["category"], df["name_zh"], df["name_en"] = e.category, e.name_zh, e.name_en
    df["circle"], df["profile"], df["budget_m"] = e.key[2], e.key[3], e.budget_m
    df["width_m"], df["method"] = e.width_m, e.method
    return gpd.GeoDataFrame(df, geometry=e.to_srid(df["geometry"].to_numpy()))


def gap_table(e: Entry, within: np.ndarray, clip: Any) -> pd.DataFrame:
    """Gap areas of the buildings beyond the budget among ``within`` (metric; ``building_ids`` kept)."""
    b = pd.DataFrame({"id": e.ids, "x": e.x, "y": e.y, "households": e.households})
    lite = SimpleNamespace(buildings=b, params=SimpleNamespace(gap_radius_m=e.gap_radius_m))
    g = areas_mod.gap_areas(lite, e.dist, e.budget_m, within=within, area=e.area)  # type: ignore[arg-type]
    if clip is not None and len(g):
        g["geometry"] = [shapely.intersection(x, clip) if x is not None else None for x in g["geometry"]]
    return g


def gaps_frame(
    e: Entry, clip: Any, scope: str, within: np.ndarray | None = None, tolerance_m: float = 0.0
) -> gpd.GeoDataFrame:
    """What ``CoverageService.gaps`` answers (same columns and values)."""
    g = gap_table(e, e.scope_mask(scope) if within is None else within, clip)
    g = g.drop(columns=["building_ids"]) if "building_ids" in g else g
    g["category"], g["circle"], g["profile"], g["budget_m"] = e.category, e.key[2], e.key[3], e.budget_m
    geoms = g["geometry"].to_numpy() if len(g) else np.array([], dtype=object)
    return gpd.GeoDataFrame(g.drop(columns=["geometry"]), geometry=e.to_srid(_display(geoms, tolerance_m)))


def geojson_text(gdf: gpd.GeoDataFrame, tolerance_m: float) -> str:
    return _text(gdf, tolerance_m)


def community_rows(e: Entry, scope: str, names: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Figures per community of the caller's area for the entry's category, circle and profile:
    buildings, households and residents (within and beyond), the covered share, and the gap areas
    (grouped from each community's own beyond buildings)."""
    inside = e.scope_mask(scope)
    within = e.dist <= e.budget_m
    df = pd.DataFrame(
        {
            "community": e.community[inside],
            "buildings": 1,
            "buildings_in": within[inside].astype(int),
            "households": e.households[inside],
            "households_in": np.where(within, e.households, 0.0)[inside],
            "residents": e.residents[inside],
            "residents_in": np.where(within, e.residents, 0)[inside],
        }
    )
    gaps = gap_table(e, inside & ~within, None)
    gap_count: dict[str, int] = {}
    if len(gaps):
        pos = pd.Series(np.arange(len(e.ids)), index=e.ids)
        for ids in gaps["building_ids"]:
            for c in set(e.community[pos.reindex(ids).to_numpy()].tolist()):
                gap_count[c] = gap_count.get(c, 0) + 1
    out = []
    for code, r in df.groupby("community", sort=True).sum().iterrows():
        if not code:
            continue
        name, street = names.get(str(code), (str(code), ""))
        hh, hin = float(r["households"]), float(r["households_in"])
        out.append(
            {
                "code": str(code),
                "name": name,
                "street_name": street,
                "buildings": int(r["buildings"]),
                "buildings_in": int(r["buildings_in"]),
                "households": hh,
                "households_in": hin,
                "households_beyond": hh - hin,
                "residents": int(r["residents"]),
                "residents_in": int(r["residents_in"]),
                "share_households": (hin / hh) if hh else None,
                "share_residents": (int(r["residents_in"]) / int(r["residents"])) if int(r["residents"]) else None,
                "gaps": gap_count.get(str(code), 0),
            }
        )
    return out


def facilities_frame(e: Entry, clip: Any) -> gpd.GeoDataFrame:
    """The category's facilities (points; names and kinds only) within the caller's area widened by the
    circle's walking distance (facilities that can serve it), everywhere for a city-wide caller."""
    pts = np.asarray(shapely.points(e.fac_x, e.fac_y), dtype=object) if len(e.fac_x) else np.array([], dtype=object)
    keep = np.ones(len(e.fac_id), dtype=bool)
    if clip is not None and len(pts):
        keep = shapely.intersects(shapely.buffer(clip, e.budget_m), pts)
    df = pd.DataFrame(
        {
            "id": e.fac_id[keep],
            "name": e.fac_name[keep],
            "kind": e.fac_kind[keep],
            "category": e.category,
        }
    )
    return gpd.GeoDataFrame(df, geometry=e.to_srid(np.asarray(pts, dtype=object)[keep]))


def building_classes(e: Entry, scope: str) -> dict[int, tuple[int, float | None]]:
    """Building id → (distance class, distance in metres or None) for the caller's area."""
    inside = e.scope_mask(scope)
    cls = e.distance_class()
    d = np.where(np.isfinite(e.dist), np.round(e.dist, 0), np.nan)
    return {
        int(i): (int(c), None if np.isnan(v) else float(v))
        for i, c, v in zip(e.ids[inside], cls[inside], d[inside], strict=True)
    }
