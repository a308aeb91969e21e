"""The coverage service: keeps the model in memory and answers the CLI and the API.

The walking graph and the building snaps are built once and reused across requests; they are
rebuilt only when an input's fingerprint changes (road_edge, building, compound_gate, barrier …);
a changed facility table only re-snaps the facilities. Distances come from PostGIS
(``building_access``) when the stored run matches the current facilities and catalog, otherwise
they are computed in memory (and reported as not stored).

The model is one per process and shared by every caller, so it is loaded from the WHOLE city: the
web app widens the request's transaction with ``gisgov.api.deps.system_scope`` before calling the
service (the per-building resident and special-group counts it loads are aggregates), and
:meth:`CoverageService.ensure_model` refuses a connection whose ``gisgov.scope`` is narrower. What a
caller gets back is limited to its area with the ``scope`` arguments (a code prefix: '' = all) or
:class:`ScopedCoverage`; no per-person row ever leaves the service.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from gisgov.coverage import areas as areas_mod
from gisgov.coverage import siting, store, whatif
from gisgov.coverage.catalog import Catalog, default_catalog_path, load_catalog
from gisgov.coverage.figures import (
    LEVELS,
    Figures,
    UnitIndex,
    figure_arrays,
    group_figures,
    with_shares,
)
from gisgov.coverage.model import NETWORK, CoverageModel, DistanceTable
from gisgov.db.data_version import data_version
from gisgov.errors import InvalidInput, NotFound


class SharedLock:
    """A reentrant read/write lock. ``with lock:`` holds it alone (cache fills, recomputes, edits: they
    wait for the readers to finish); ``with lock.shared():`` lets any number of readers in at once.
    A thread that holds it (shared or alone) re-enters freely; a shared hold cannot be upgraded
    (:class:`CoverageService` fills its caches before it starts reading). Writers go first: a reader
    arriving while a writer waits lets it in."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._depth = 0
        self._waiting = 0
        self._local = threading.local()

    def holds(self) -> bool:
        """This thread holds the lock, shared or alone."""
        return self._writer == threading.get_ident() or getattr(self._local, "reads", 0) > 0

    def reading(self) -> bool:
        """This thread holds the lock shared only (caches must not be refilled now)."""
        return self._writer != threading.get_ident() and getattr(self._local, "reads", 0) > 0

    def __enter__(self) -> SharedLock:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
                return self
            if getattr(self._local, "reads", 0):
                raise RuntimeError("a shared hold cannot be upgraded: fill the caches before reading")
            self._waiting += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._writer, self._depth = me, 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._writer = None
                self._cond.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        reads = getattr(self._local, "reads", 0)
        if reads or self._writer == threading.get_ident():  # nested, or inside this thread's own hold
            self._local.reads = reads + 1
            try:
                yield
            finally:
                self._local.reads -= 1
            return
        with self._cond:
            while self._writer is not None or self._waiting:
                self._cond.wait()
            self._readers += 1
        self._local.reads = 1
        try:
            yield
        finally:
            self._local.reads = 0
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()


def _locked(fn):
    """Hold the service alone (computes and edits change the shared model)."""
    import functools

    @functools.wraps(fn)
    def wrapper(self, *a, **kw):
        with self._lock:
            return fn(self, *a, **kw)

    return wrapper


def _reads(figures: bool = False):
    """A read of the shared model: caches are filled first (the service held alone, briefly when they
    are current), then the read runs with the lock shared, so reads run concurrently."""
    import functools

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(self, conn, *a, **kw):
            with self.reading(conn, figures=figures):
                return fn(self, conn, *a, **kw)

        return wrapper

    return deco


STRUCTURE_KEYS = ("edges", "buildings", "gates", "barriers", "households", "residents", "groups")


@dataclass
class ComputeResult:
    run_id: int
    method: str
    buildings: int
    facilities: int
    categories: int
    rows_written: int
    seconds: dict
    snap: dict
    components: pd.DataFrame
    problems: pd.DataFrame


MODEL_FORMAT = 1  # bump when CoverageModel / WalkGraph change shape: older persisted models are then ignored


def _default_model_dir() -> Path | None:
    try:
        from gisgov.config import get_settings

        return get_settings().home_abs / "cache" / "coverage-model"
    except Exception:  # no settings (bare library use): nothing persisted
        return None


class CoverageService:
    """``model_dir``: where the built model (graph, snaps, buildings) is persisted, keyed by the input
    fingerprints, so that the first request after a start reads it instead of rebuilding it (default:
    GISGOV_HOME/cache/coverage-model; ``False`` = never persisted). The files are pickles written and read
    by this service only: the folder must be writable by the service's user alone (like secret.key)."""

    def __init__(self, catalog_path: str | Path | None = None, *, model_dir: str | Path | bool | None = None):
        self.catalog_path = Path(catalog_path) if catalog_path else None
        self.model_dir: Path | None = (
            None
            if model_dir is False
            else _default_model_dir()
            if model_dir is None or model_dir is True
            else Path(model_dir)
        )
        self.model_loads = 0  # how many times the model came from the persisted file
        self._lock = SharedLock()
        self._catalog: Catalog | None = None
        self._catalog_stamp = None
        self.model: CoverageModel | None = None
        self.groups: pd.DataFrame | None = None
        self._struct_key = None
        self._fac_key = None
        self._table: DistanceTable | None = None
        self._table_key: tuple[Any, ...] | None = None
        self.table_stored = False
        self._figs: tuple | None = None
        # the data version (gisgov.db.data_version) at the last read that found the caches current
        self._checked_version: int | None = None
        self._model_version: int | None = None  # data version at which the model last matched its inputs
        self.model_checks = 0  # times ensure_model fingerprinted the inputs (tests)
        self._has_version: bool | None = None
        self.input_checks = 0  # how many reads fingerprinted the inputs (tests check an unchanged version skips it)
        self.builds = 0  # how many times the graph was built (tests check it is reused)
        self.build_seconds: dict[str, float] = {}  # the last build: reading PostGIS, graph + snaps

    # -- catalog and model ------------------------------------------------------------------------
    def _catalog_stamp_now(self) -> tuple[Path, tuple | None]:
        path = Path(self.catalog_path or default_catalog_path())
        return path, ((str(path), os.stat(path).st_mtime_ns) if path.exists() else None)

    def catalog(self) -> Catalog:
        path, stamp = self._catalog_stamp_now()
        if self._catalog is None or stamp != self._catalog_stamp:
            if self._lock.reading():  # changed since the read began: read it, keep the cached one
                return load_catalog(path)
            self._catalog = load_catalog(path)
            self._catalog_stamp = stamp
        return self._catalog

    def _current(self, conn: Connection, figures: bool) -> bool:
        """The caches a read needs match the database and the catalog (nothing is changed here)."""
        if self.model is None or self._table is None or self._catalog is None:
            return False
        if self._catalog_stamp_now()[1] != self._catalog_stamp:
            return False
        # nothing committed since the inputs were last found matching: no need to fingerprint them again
        version = data_version(conn)
        if version == self._checked_version:
            return not figures or (self._figs is not None and self._figs[0] is self._table)
        cat = self._catalog
        self.input_checks += 1
        sums = store.input_checksums(conn)
        skey = (*tuple(sums[k] for k in STRUCTURE_KEYS), cat.network, cat.distance_cap_m)
        if skey != self._struct_key or sums["facilities"] != self._fac_key:
            return False
        run = store.latest_run(conn)
        if (run["id"] if run else None, self._fac_key, cat.checksum) != self._table_key:
            return False
        self._checked_version = version
        return not figures or (self._figs is not None and self._figs[0] is self._table)

    def _version_of(self, conn: Connection) -> int | None:
        """The committed data version, or None on a schema older than migration 0017 (tests of the upgrade
        path run this service on one): the model is then checked against its inputs every time."""
        if self._has_version is None:
            self._has_version = bool(conn.execute(text("SELECT to_regclass('tile_version') IS NOT NULL")).scalar())
        return data_version(conn) if self._has_version else None

    def ensure_model(self, conn: Connection, progress=None) -> CoverageModel:
        if self._lock.reading() and self.model is not None:
            return self.model  # filled before the read began (see reading())
        # nothing committed since the model was last found matching its inputs (and the same catalog): no
        # need to fingerprint them again (~130 ms on the sample city, on every special-group summary)
        version = self._version_of(conn)
        if (
            self.model is not None
            and version is not None
            and version == self._model_version
            and self._catalog_stamp_now()[1] == self._catalog_stamp
        ):
            return self.model
        with self._lock:
            self.model_checks += 1
            sums = store.input_checksums(conn)
            cat = self.catalog()
            skey = (*tuple(sums[k] for k in STRUCTURE_KEYS), cat.network, cat.distance_cap_m)
            if self.model is None or skey != self._struct_key:
                _check_whole_city(conn)
            if self.model is None or skey != self._struct_key:
                t0 = time.perf_counter()
                pkey = self._persist_key(conn, skey)
                kept = self._read_model(pkey)
                if kept is not None:
                    self.model, self.groups, fac_key = kept
                    self.model_loads += 1
                    self.build_seconds = {"read_model": time.perf_counter() - t0}
                    if fac_key != sums["facilities"]:
                        self.model.set_facilities(store.load_facilities(conn))
                else:
                    city = store.load_city(conn)
                    t1 = time.perf_counter()
                    if len(city.buildings) == 0:
                        raise NotFound("no buildings in the database: load a city first (gisgov sample / gisgov load)")
                    self.model = CoverageModel(city, cat.network, cat.distance_cap_m, progress=progress)
                    self.groups = city.groups
                    t2 = time.perf_counter()
                    self._write_model(pkey, sums["facilities"])
                    self.build_seconds = {
                        "load_city": t1 - t0,
                        "model": t2 - t1,
                        "persist_model": time.perf_counter() - t2,
                    }
                self.builds += 1
                self._struct_key, self._fac_key = skey, sums["facilities"]
                self._table_key = None
                self._checked_version = None  # the caches changed: the next read checks the inputs
            elif sums["facilities"] != self._fac_key:
                self.model.set_facilities(store.load_facilities(conn))
                self._fac_key = sums["facilities"]
                self._table_key = None
                self._checked_version = None  # the caches changed: the next read checks the inputs
            self._sums = sums
            self._model_version = version
            return self.model

    # -- the persisted model ---------------------------------------------------------------------------
    def _persist_key(self, conn: Connection, skey: tuple[Any, ...]) -> str:
        import hashlib

        where = conn.execute(text("SELECT current_database(), inet_server_port()")).one()
        raw = repr((MODEL_FORMAT, tuple(where), skey))
        return hashlib.sha256(raw.encode()).hexdigest()

    def _model_path(self, key: str) -> Path | None:
        return None if self.model_dir is None else self.model_dir / f"{key[:32]}.pickle"

    def _read_model(self, key: str) -> tuple[Any, Any, Any] | None:
        """(model, groups, facilities fingerprint) persisted for these inputs, or None."""
        import pickle

        path = self._model_path(key)
        if path is None or not path.exists():
            return None
        try:
            with open(path, "rb") as f:
                state = pickle.load(f)
        except Exception:  # unreadable or from another version: rebuilt and overwritten
            return None
        if not isinstance(state, dict) or state.get("key") != key or state.get("format") != MODEL_FORMAT:
            return None
        return state["model"], state["groups"], state["facilities"]

    def _write_model(self, key: str, fac_key: str) -> None:
        """Persist the model just built (caches dropped: rebuilt on first use); old files are removed."""
        import copy
        import pickle

        path = self._model_path(key)
        if path is None or self.model is None:
            return
        m = copy.copy(self.model)
        m.__dict__.pop("_reader", None)
        if m.graph is not None:
            g = copy.copy(m.graph)
            for name in [k for k in g.__dict__ if isinstance(getattr(type(g), k, None), functools.cached_property)]:
                g.__dict__.pop(name)
            m.graph = g
        state = {"format": MODEL_FORMAT, "key": key, "facilities": fac_key, "model": m, "groups": self.groups}
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                pickle.dump(state, f, protocol=5)
            os.replace(tmp, path)
            for old in path.parent.glob("*.pickle"):
                if old != path and old.stat().st_mtime < path.stat().st_mtime - 1:
                    old.unlink(missing_ok=True)
        except OSError:  # a read-only or full disk: the model is only kept in memory
            return

    def table(self, conn: Connection) -> DistanceTable:
        """Distances for every catalog category: stored ones when current, else computed in memory."""
        if self._lock.reading() and self._table is not None:
            return self._table  # filled before the read began (see reading())
        with self._lock:
            model = self.ensure_model(conn)
            cat = self.catalog()
            run = store.latest_run(conn)
            key = (run["id"] if run else None, self._fac_key, cat.checksum)
            if self._table is not None and key == self._table_key:
                return self._table
            t = None
            if (
                run
                and run["catalog_checksum"] == cat.checksum
                and run["inputs_checksum"].get("facilities") == self._fac_key
            ):
                t = store.load_table(conn, model, cat.category_codes)
            self.table_stored = t is not None
            if t is None:
                t = model.compute(cat)
            self._table, self._table_key, self._figs = t, key, None
            return t

    def figures(self, conn: Connection) -> tuple[Figures, pd.DataFrame]:
        """Figures of the current distances (arrays; long rows on demand) and the special groups."""
        if self._lock.reading():
            t = self.table(conn)
            if self._figs is not None and self._figs[0] is t:
                return self._figs[1], self._figs[2]
            return self._figures_of(t)[1:]  # an edit replaced the table since the fill: computed, not kept
        with self._lock:
            t = self.table(conn)
            if self._figs is None or self._figs[0] is not t:
                if getattr(self, "_units_for", None) is not self.model:
                    self._units, self._units_for = UnitIndex.build(self.model.buildings), self.model
                self._figs = self._figures_of(t)
            return self._figs[1], self._figs[2]

    def _figures_of(self, t: DistanceTable) -> tuple:
        cat = self.catalog()
        b = self.model.buildings
        index = self._units if getattr(self, "_units_for", None) is self.model else UnitIndex.build(b)
        return (t, figure_arrays(b, t, cat, index=index), group_figures(b, self.groups, t, cat))

    @contextmanager
    def reading(self, conn: Connection, *, figures: bool = False) -> Iterator[CoverageService]:
        """A consistent read of the shared model. Holding the service shared, it checks that the caches the
        read needs (model, distances and, with ``figures``, the figures) are current; only when they are
        not does it hold the service alone to fill them. The body then runs with the service shared:
        reads overlap, and only fills, computes and edits wait for each other."""
        with ExitStack() as stack:
            outermost = not self._lock.holds()
            stack.enter_context(self._lock.shared())
            if outermost and not self._current(conn, figures):
                stack.close()
                with self._lock:  # double-checked: the first filler does the work, the others find it done
                    self.table(conn)
                    if figures:
                        self.figures(conn)
                stack.enter_context(self._lock.shared())
            yield self

    # -- compute and store ------------------------------------------------------------------------------
    @_locked
    def compute(self, conn: Connection, categories: list[str] | None = None, progress=None) -> ComputeResult:
        t0 = time.perf_counter()
        cat = self.catalog()
        built = self.builds
        model = self.ensure_model(conn, progress=progress)
        steps = dict(self.build_seconds) if self.builds != built else {}
        codes = [cat.category(c).code for c in categories] if categories else cat.category_codes
        table = model.compute(cat, codes, progress=progress)

        def step(name: str, t: float) -> float:
            now = time.perf_counter()
            steps[name] = now - t
            return now

        t = time.perf_counter()
        srid = store.storage_srid(conn)
        run_id = store.start_run(conn, cat, model.method, codes, self._sums)
        store.write_budgets(conn, cat)
        store.write_snaps(conn, model, srid)
        t = step("write_snaps", t)
        n = store.write_access(conn, model, table, run_id)
        t = step("write_access", t)
        full = table if categories is None else (store.load_table(conn, model, cat.category_codes) or table)
        b = model.buildings
        if getattr(self, "_units_for", None) is not model:
            self._units, self._units_for = UnitIndex.build(b), model
        figs = None
        if categories is None or full is not table:
            figs = figure_arrays(b, full, cat, index=self._units)
            gfig = group_figures(b, self.groups, full, cat)
            t = step("figures", t)
            store.write_figures(conn, figs, gfig, run_id)
        else:
            fig = figure_arrays(b, table, cat, categories=codes, standards=[], index=self._units)
            t = step("figures", t)
            store.write_figures(conn, fig, None, run_id, items=codes)
        t = step("write_figures", t)
        secs = dict(table.seconds, **steps, total=time.perf_counter() - t0)
        summary = model.snap_summary()
        store.finish_run(conn, run_id, {"seconds": secs, "snap": summary})
        self._table_key = None
        self._checked_version = None  # the caches changed: the next read checks the inputs
        if figs is not None and full.categories == cat.category_codes:
            # what the first read would rebuild: kept, keyed by this run (valid once it commits)
            self._table, self._table_key, self._figs = full, (run_id, self._fac_key, cat.checksum), (full, figs, gfig)
            self.table_stored = True
        comps = model.graph.components_table() if model.graph is not None else pd.DataFrame()
        return ComputeResult(
            run_id,
            model.method,
            len(model.buildings),
            len(model.facilities),
            len(codes),
            n,
            secs,
            summary,
            comps,
            model.problem_buildings(),
        )

    # -- area selection -----------------------------------------------------------------------------------
    def scope_mask(self, scope: str = "") -> np.ndarray:
        """Buildings in a caller's area: community code under the prefix ``scope`` ('' = all)."""
        b = self.model.buildings
        if not scope:
            return np.ones(len(b), dtype=bool)
        return b["community"].astype("string").str.startswith(scope).fillna(False).to_numpy(dtype=bool)

    def within(self, level: str | None, code: str | None, scope: str = "") -> np.ndarray:
        b = self.model.buildings
        inside = self.scope_mask(scope)
        if not level and not code:
            return inside
        if level not in LEVELS:
            raise InvalidInput(f"未知层级 level {level!r} is not one of {', '.join(LEVELS)} (rule: level_known)")
        m = (b[level].astype("string") == str(code)).fillna(False).to_numpy(dtype=bool) & inside
        if not m.any():
            raise NotFound(f"{level} {code!r} has no buildings (rule: area_has_buildings)")
        return m

    def scope_polygon(self, conn: Connection, scope: str = ""):
        """The caller's area (street or community outline) in the model's metric CRS; None = everywhere."""
        if not scope:
            return None
        g = store.area_geometry(conn, scope)
        if g is None:
            return shapely.Polygon()
        from gisgov.crs import transformer

        tr = transformer(self._srid(conn), self.model.epsg)
        return shapely.transform(g, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))

    # -- reading ------------------------------------------------------------------------------------------
    @_reads(figures=True)
    def summary(self, conn: Connection, level: str, code: str, profile: str | None = None) -> dict:
        cat = self.catalog()
        fig, gfig = self.figures(conn)
        if level not in LEVELS:
            raise InvalidInput(f"未知层级 level {level!r} is not one of {', '.join(LEVELS)} (rule: level_known)")
        f = fig.frame(level, str(code))
        if f.empty:
            raise NotFound(f"{level} {code!r} has no buildings or no coverage figures (rule: area_has_buildings)")
        if profile:
            cat.profile(profile)
            f = f[f.profile == profile]
        f = with_shares(f)
        g = gfig[(gfig.level == level) & (gfig.code == str(code))] if len(gfig) else gfig
        names = {c.code: (c.name_zh, c.name_en) for c in cat.categories}
        names.update({s.code: (s.name_zh, s.name_en) for s in cat.standards})
        counts = self.facility_counts()
        missing = {
            s.code: sorted({c for _, cats in s.tiers for c in cats if counts.get(c, 0) == 0}) for s in cat.standards
        }
        rows = []
        for r in f.itertuples(index=False):
            zh, en = names.get(r.item, (r.item, r.item))
            item, circle = str(r.item), str(r.circle)
            extra: dict[str, Any]
            if r.item_kind == "category":
                extra = {"facilities": counts.get(item, 0), "no_facility": counts.get(item, 0) == 0}
            else:
                gone = [c for c, _ in cat.standard(item).requirements(circle) if c in missing.get(item, [])]
                extra = {"no_facility": bool(gone), "no_facility_categories": sorted(set(gone))}
            rows.append(
                {
                    "item_kind": r.item_kind,
                    "item": r.item,
                    "name_zh": zh,
                    "name_en": en,
                    "profile": r.profile,
                    "circle": r.circle,
                    "budget_m": cat.budget_m(r.circle, r.profile),
                    "buildings": int(r.buildings),
                    "buildings_in": int(r.buildings_in),
                    "households": float(r.households),
                    "households_in": float(r.households_in),
                    "residents": int(r.residents),
                    "residents_in": int(r.residents_in),
                    "share_buildings": _num(r.share_buildings),
                    "share_households": _num(r.share_households),
                    "share_residents": _num(r.share_residents),
                    **extra,
                }
            )
        groups = (
            [
                {k: (v.item() if hasattr(v, "item") else v) for k, v in r._asdict().items()}
                for r in g.itertuples(index=False)
            ]
            if len(g)
            else []
        )
        return {
            "level": level,
            "code": str(code),
            "method": self._table.method,
            "stored": self.table_stored,
            "rows": rows,
            "special_groups": groups,
            "network": self.model.snap_summary(),
        }

    def facility_counts(self) -> dict[str, int]:
        """Facilities of each catalog category in the loaded data (0 = "no facility of this category in
        the data", 无此类设施数据: its 0 % is missing data, not a gap)."""
        cat, m = self.catalog(), self.model
        assert m is not None  # a read fills it first
        return {c.code: int(len(m.category_rows(c))) for c in cat.categories}

    def facility_counts_stored(self, conn: Connection) -> dict[str, int]:
        """:meth:`facility_counts` from the facility table (no walking graph loaded): for the catalog."""
        f = store.load_facilities(conn)
        probe = pd.DataFrame({"category_code": f["category_code"], "kind": f["kind"]}).reset_index(drop=True)
        return {c.code: int(c.facility_mask(probe).sum()) for c in self.catalog().categories}

    def category_arrays(self, conn: Connection, category: str):
        cat = self.catalog()
        c = cat.category(category)
        t = self.table(conn)
        j = t.col(c.code)
        return c, self.model.category_rows(c), t.dist[:, j].astype(float), t.fac[:, j].astype(np.int64)

    @_reads()
    def service_area(
        self,
        conn: Connection,
        category: str,
        circle: str,
        profile: str = "standard",
        facility_id: int | None = None,
        scope: str = "",
    ) -> gpd.GeoDataFrame:
        """The dissolved service area; with ``scope`` clipped to that area and counting its buildings only."""
        cat = self.catalog()
        c, rows, d, _ = self.category_arrays(conn, category)
        budget = cat.budget_m(circle, profile)
        m = self.model
        inside = self.scope_mask(scope)
        clip = self.scope_polygon(conn, scope)
        feats = []
        if facility_id is not None:
            r = self._facility_row(facility_id)
            if r not in set(rows.tolist()):
                raise NotFound(f"facility {facility_id} is not a {c.code} facility (rule: facility_in_category)")
            d1, _ = m.distances_from_rows(np.array([r]))
            geom = areas_mod.service_area(m, np.array([r]), budget, d1)
            feats.append(
                {
                    "facility_id": int(facility_id),
                    "buildings_in": int(((d1 <= budget) & inside).sum()),
                    "geometry": geom,
                }
            )
        else:
            geom = areas_mod.service_area(m, rows, budget, d)
            feats.append({"facility_id": None, "buildings_in": int(((d <= budget) & inside).sum()), "geometry": geom})
        if clip is not None:
            for f in feats:
                if f["geometry"] is not None:
                    f["geometry"] = shapely.intersection(f["geometry"], clip)
        df = pd.DataFrame(feats)
        df["category"], df["name_zh"], df["name_en"] = c.code, c.name_zh, c.name_en
        df["circle"], df["profile"], df["budget_m"] = circle, profile, budget
        df["width_m"], df["method"] = m.params.area_width_m, m.method
        return gpd.GeoDataFrame(df, geometry=m.geoseries(df["geometry"].to_numpy(), self._srid(conn)))

    @_reads()
    def gaps(
        self,
        conn: Connection,
        category: str,
        circle: str,
        profile: str = "standard",
        level: str | None = None,
        code: str | None = None,
        scope: str = "",
    ) -> gpd.GeoDataFrame:
        """Gap areas formed by the buildings beyond the circle in the area (and in ``scope``)."""
        cat = self.catalog()
        c, rows, d, _ = self.category_arrays(conn, category)
        budget = cat.budget_m(circle, profile)
        served = areas_mod.service_area(self.model, rows, budget, d)
        g = areas_mod.gap_areas(self.model, d, budget, within=self.within(level, code, scope), area=served)
        clip = self.scope_polygon(conn, scope)
        if clip is not None and len(g):
            g["geometry"] = [shapely.intersection(x, clip) if x is not None else None for x in g["geometry"]]
        g = g.drop(columns=["building_ids"]) if "building_ids" in g else g
        g["category"], g["circle"], g["profile"], g["budget_m"] = c.code, circle, profile, budget
        geoms = g["geometry"].to_numpy() if len(g) else np.array([], dtype=object)
        return gpd.GeoDataFrame(g.drop(columns=["geometry"]), geometry=self.model.geoseries(geoms, self._srid(conn)))

    @_reads()
    def buildings_frame(self, conn: Connection, category: str, scope: str = "") -> gpd.GeoDataFrame:
        """Buildings (points) with their distance to the category, for maps (only those in ``scope``)."""
        _c, _rows, d, f = self.category_arrays(conn, category)
        m = self.model
        b = m.buildings
        lon, lat = m.to_lonlat(b["x"].to_numpy(), b["y"].to_numpy(), self._srid(conn))
        fid = m.facility_ids(f)
        out = gpd.GeoDataFrame(
            {
                "id": b["id"].to_numpy(),
                "code": b.get("code"),
                "households": b.get("households"),
                "distance_m": np.where(np.isfinite(d), np.round(d, 1), np.nan),
                "facility_id": np.where(fid >= 0, fid, -1),
            },
            geometry=gpd.points_from_xy(lon, lat),
            crs=self._srid(conn),
        )
        return out[self.scope_mask(scope)].reset_index(drop=True) if scope else out

    @_reads()
    def facilities_frame(self, conn: Connection, category: str | None = None) -> gpd.GeoDataFrame:
        m = self.model
        f = m.facilities
        rows = np.arange(len(f)) if category is None else self.model.category_rows(self.catalog().category(category))
        lon, lat = m.to_lonlat(f["x"].to_numpy()[rows], f["y"].to_numpy()[rows], self._srid(conn))
        out = f.iloc[rows][["id", "name", "category_code", "kind"]].reset_index(drop=True)
        return gpd.GeoDataFrame(out, geometry=gpd.points_from_xy(lon, lat), crs=self._srid(conn))

    # -- siting ------------------------------------------------------------------------------------------------
    @_reads()
    def site(
        self,
        conn: Connection,
        category: str,
        *,
        k: int | None = 3,
        circle: str = "c15",
        profile: str = "standard",
        level: str | None = None,
        code: str | None = None,
        candidates: str = "buildings",
        points: list[tuple[float, float]] | None = None,
        scope: str = "",
    ) -> dict:
        cat = self.catalog()
        c, _rows, d, _ = self.category_arrays(conn, category)
        budget = cat.budget_m(circle, profile)
        m = self.model
        assert m is not None  # filled by category_arrays
        within = self.within(level, code, scope)
        srid = self._srid(conn)
        warnings: list[str] = []
        dropped = 0
        if points:
            xy = [
                whatif.position(m, p[0], p[1], srid, what=f"候选点 candidate points[{i}]") for i, p in enumerate(points)
            ]
            cx, cy = np.array([p[0] for p in xy], dtype=float), np.array([p[1] for p in xy], dtype=float)
            kinds, ids = np.array(["point"] * len(cx)), np.arange(len(cx))
            if m.method == NETWORK:
                legs = m._snap(cx, cy).leg
                off = np.flatnonzero(~(legs <= m.params.max_access_m))
                if len(off) == len(cx):
                    raise InvalidInput(
                        f"候选点均不在步行路网上 every candidate point is off the walking network (nearest walkable "
                        f"street more than {m.params.max_access_m:.0f} m away, setting network.max_access_m) "
                        "(rule: off_network)"
                    )
                if len(off):
                    keep = np.setdiff1d(np.arange(len(cx)), off)
                    cx, cy, kinds, ids = cx[keep], cy[keep], kinds[keep], ids[keep]
                    dropped = len(off)
                    warnings.append(
                        f"{len(off)} 个候选点不在步行路网上，未参与选址 {len(off)} candidate point(s) off the walking "
                        f"network left out: points[{', '.join(str(int(i)) for i in off[:10])}] (rule: off_network)"
                    )
        elif candidates == "buildings":
            idx = np.flatnonzero(within)
            cx, cy = m.buildings["x"].to_numpy()[idx], m.buildings["y"].to_numpy()[idx]
            kinds, ids = np.array(["building"] * len(idx)), m.buildings["id"].to_numpy()[idx]
        elif candidates == "nodes":
            if m.method != NETWORK:
                raise InvalidInput("缺少步行路网 candidates=nodes needs a walking network (rule: network_required)")
            b = m.buildings[within]
            pad = budget
            x0, x1 = b["x"].min() - pad, b["x"].max() + pad
            y0, y1 = b["y"].min() - pad, b["y"].max() + pad
            g = m.graph
            assert g is not None
            ends = shapely.get_point(g.geoms, 0)
            ex, ey = shapely.get_x(ends), shapely.get_y(ends)
            first = pd.Series(np.arange(g.n_edges)).groupby(g.u).first()
            nx, ny = ex[first.to_numpy()], ey[first.to_numpy()]
            ok = (nx >= x0) & (nx <= x1) & (ny >= y0) & (ny <= y1)
            cx, cy = nx[ok], ny[ok]
            kinds, ids = np.array(["node"] * ok.sum()), g.node_ids[first.index.to_numpy()[ok]]
        else:
            raise InvalidInput(
                f"候选点来源无效 candidates {candidates!r} must be buildings, nodes or a list of points (rule: candidate_source)"
            )
        res = siting.site(m, d, budget, demand_mask=within, candidates=(cx, cy), k=k)
        lon, lat = m.to_lonlat(np.asarray(cx)[res.sites], np.asarray(cy)[res.sites], srid)
        sites = [
            {
                "rank": i + 1,
                "kind": str(kinds[s]),
                "id": int(ids[s]),
                "lon": float(lo),
                "lat": float(la),
                "households_gained": float(hg),
                "buildings_gained": int(bg),
            }
            for i, (s, lo, la, hg, bg) in enumerate(
                zip(res.sites, lon, lat, res.gain_households, res.gain_buildings, strict=False)
            )
        ]
        return {
            "category": c.code,
            "name_zh": c.name_zh,
            "name_en": c.name_en,
            "circle": circle,
            "profile": profile,
            "budget_m": budget,
            "problem": res.problem,
            "k": k,
            "solver": res.method,
            "optimal": res.optimal,
            "level": level,
            "code": code,
            "candidates": int(len(cx)),
            "sites": sites,
            "demand_buildings": res.demand_buildings,
            "demand_households": res.demand_households,
            "covered_buildings": res.covered_buildings,
            "covered_households": res.covered_households,
            "uncoverable_buildings": res.uncoverable_buildings,
            "off_network_candidates": res.off_network + dropped,
            "warnings": warnings,
            "seconds": res.seconds,
            "method": m.method,
        }

    # -- what-if ---------------------------------------------------------------------------------------------
    def _facility_row(self, facility_id: int) -> int:
        ids = self.model.facilities["id"].to_numpy()
        hit = np.flatnonzero(ids == facility_id)
        if len(hit) == 0:
            raise NotFound(f"facility {facility_id} not found (rule: facility_exists)")
        return int(hit[0])

    def _srid(self, conn: Connection) -> int:
        return store.storage_srid(conn)

    @_locked
    def whatif(
        self,
        conn: Connection,
        category: str,
        op: str,
        *,
        facility_id: int | None = None,
        lon: float | None = None,
        lat: float | None = None,
        commit: bool = False,
        level: str | None = None,
        code: str | None = None,
        name: str | None = None,
        kind: str | None = None,
        scope: str = "",
    ) -> dict:
        t0 = time.perf_counter()
        cat = self.catalog()
        c, rows, d, f = self.category_arrays(conn, category)
        m = self.model
        assert m is not None  # filled by category_arrays
        srid = self._srid(conn)
        xy = None
        if op in ("add", "move"):
            if lon is None or lat is None:
                raise InvalidInput(f"缺少经纬度 what-if {op} needs lon and lat (rule: position_required)")
            xy = whatif.position(m, lon, lat, srid)
        if op in ("move", "remove") and facility_id is None:
            raise InvalidInput(f"缺少设施编号 what-if {op} needs facility_id (rule: facility_required)")
        if op == "add":
            w = whatif.add(m, c.code, d, f, *xy)
        elif op == "remove":
            w = whatif.remove(m, c.code, rows, d, f, self._facility_row(facility_id))
        elif op == "move":
            w = whatif.move(m, c.code, rows, d, f, self._facility_row(facility_id), *xy)
        else:
            raise InvalidInput(f"模拟操作无效 what-if op {op!r} must be add, move or remove (rule: whatif_op)")
        compute_ms = w.seconds["total"] * 1000
        within = self.within(level, code, scope)
        inside = self.scope_mask(scope)
        hh = pd.to_numeric(m.buildings["households"], errors="coerce").fillna(0).to_numpy(float)
        rows_out = []
        for b in cat.budgets().itertuples():
            bi, ai = (d <= b.distance_m) & within, (w.after <= b.distance_m) & within
            rows_out.append(
                {
                    "profile": b.profile,
                    "circle": b.circle,
                    "budget_m": float(b.distance_m),
                    "buildings_before": int(bi.sum()),
                    "buildings_after": int(ai.sum()),
                    "households_before": float(hh[bi].sum()),
                    "households_after": float(hh[ai].sum()),
                }
            )
        out = {
            "op": op,
            "category": c.code,
            "name_zh": c.name_zh,
            "name_en": c.name_en,
            "facility_id": facility_id,
            "changed_buildings": int(inside[w.changed].sum()),
            "changed_in_area": int(within[w.changed].sum()),
            "compute_ms": round(compute_ms, 2),
            "figures": rows_out,
            "committed": False,
            "method": m.method,
            "level": level,
            "code": code,
            "access_m": None if w.new_snap is None or m.method != NETWORK else round(float(w.new_snap.leg[0]), 1),
            "warnings": w.warnings,
        }
        if commit:
            out.update(self._commit(conn, c, op, facility_id, lon, lat, name, srid, kind))
            out["committed"] = True
            if scope:
                out["buildings_updated"] = None  # a city-wide count: not for an area-bound caller
        out["total_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return out

    def _commit(self, conn, c, op, facility_id, lon, lat, name, srid, kind=None) -> dict:
        """Write the edit, then recompute every service category that selects the facility (only those)."""
        cat = self.catalog()
        m = self.model
        assert m is not None
        table = self.table(conn)
        sel = c.select[0]
        if op == "add":
            if kind is None:  # the category's first Chinese kind keyword, if it names one
                kind = next((k for k in sel.kinds if any("\u4e00" <= ch <= "\u9fff" for ch in k)), None)
            elif not c.facility_mask(pd.DataFrame({"category_code": [sel.category], "kind": [kind]}))[0]:
                raise InvalidInput(
                    f"设施类型不属于该类别 kind {kind!r} is not selected by category {c.code!r} (rule: kind_in_category)"
                )
            code = f"WHATIF-{uuid.uuid4().hex[:10]}"
            facility_id = store.insert_facility(
                conn,
                code=code,
                name=name or f"新增{c.name_zh}",
                category_code=sel.category,
                kind=kind,
                lon=float(lon),
                lat=float(lat),
                srid=srid,
            )
            probe = pd.DataFrame({"category_code": [sel.category], "kind": [kind]})
        else:
            r = self._facility_row(facility_id)
            probe = m.facilities.iloc[[r]][["category_code", "kind"]].reset_index(drop=True)
            if op == "move":
                store.move_facility(conn, facility_id, float(lon), float(lat), srid)
            else:
                store.delete_facility(conn, facility_id)
        affected = [k.code for k in cat.categories if k.facility_mask(probe)[0]]
        old_ids = m.facility_ids(table.fac.ravel().astype(np.int64)).reshape(table.fac.shape)
        m.set_facilities(store.load_facilities(conn, srid))  # the model follows the database
        sums = store.input_checksums(conn)
        self._fac_key = sums["facilities"]
        self._checked_version = None  # the caches changed: the next read checks the inputs
        fpos = pd.Series(np.arange(len(m.facilities)), index=m.facilities["id"].to_numpy())
        fac = np.asfortranarray(fpos.reindex(old_ids.ravel()).fillna(-1).to_numpy(np.int32).reshape(old_ids.shape))
        new_table = DistanceTable(table.categories, table.dist.copy(order="F"), fac, table.method, dict(table.seconds))
        changed: set[int] = set()
        for k in affected:
            j = new_table.col(k)
            d, f = m.distances_from_rows(m.category_rows(cat.category(k)))
            changed |= set(np.flatnonzero(d != new_table.dist[:, j].astype(float)).tolist())
            new_table.dist[:, j], new_table.fac[:, j] = d, f
        run_id = store.start_run(conn, cat, m.method, affected, sums, {"whatif": op, "facility_id": int(facility_id)})
        n = store.write_access(conn, m, new_table, run_id, affected)
        stds = [s.code for s in cat.standards if any(k in cats for _, cats in s.tiers for k in affected)]
        b = m.buildings
        fig = figure_arrays(b, new_table, cat, categories=affected, standards=stds)
        gfig = group_figures(b, self.groups, new_table, cat)
        gfig = gfig[gfig["category"].isin(affected)] if len(gfig) else gfig
        store.write_figures(conn, fig, gfig, run_id, items=affected + stds)
        store.finish_run(conn, run_id, {"changed_buildings": len(changed), "rows_written": n})
        self._table, self._figs = new_table, None
        self._table_key = (run_id, self._fac_key, cat.checksum)
        self.table_stored = True
        return {
            "facility_id": int(facility_id),
            "run_id": run_id,
            "categories_updated": affected,
            "buildings_updated": len(changed),
        }


class ScopedCoverage:
    """The service seen from one area (code prefix ``scope``): what the map page and the API routes use
    for area-bound callers. Every method that returns buildings, areas or figures gets ``scope``."""

    _SCOPED = ("service_area", "gaps", "buildings_frame", "site", "whatif")

    def __init__(self, svc: CoverageService, scope: str):
        self._svc, self.scope = svc, scope

    def __getattr__(self, name):
        attr = getattr(self._svc, name)
        if name in self._SCOPED:
            import functools

            return functools.partial(attr, scope=self.scope)
        return attr


def _check_whole_city(conn: Connection) -> None:
    """The shared model must not depend on who triggered its load: refuse a narrowed ``gisgov.scope``."""
    scope, bypass = store.scope_setting(conn)
    if scope not in (None, "*") and (scope != "" or not bypass):
        raise RuntimeError(
            "coverage model loaded under a narrowed gisgov.scope; widen the transaction "
            "(gisgov.api.deps.system_scope) first"
        )


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def default_service() -> CoverageService:
    """A new service for one command line run (the web app keeps its own on ``app.state.coverage``,
    made in the app's lifespan); nothing is shared through this module."""
    return CoverageService()


def demo_step(url: str, console) -> None:
    """`gisgov demo` step: compute and store coverage for the loaded city (all categories)."""
    from gisgov.db.engine import make_engine

    eng = make_engine(url)
    try:
        with eng.begin() as conn:
            res = default_service().compute(conn)
        console.print(
            f"[green]✓[/] 便民服务圈 service circles: {res.categories} categories × {res.buildings} buildings "
            f"({res.method}, {res.seconds.get('total', 0):.1f} s, run {res.run_id})"
        )
    finally:
        eng.dispose()
