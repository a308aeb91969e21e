"""Generate → GeoPackage → PostGIS, with rich progress bars (used by `gisgov sample` and `gisgov demo`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gisgov.config import get_settings
from gisgov.db.engine import psycopg_conninfo
from gisgov.sample.generate import DEFAULT_SEED, LAYERS, SampleCity, generate_city
from gisgov.sample.gpkg import read_gpkg, write_gpkg
from gisgov.sample.load import DatabaseNotEmpty, existing_rows, load_city
from gisgov.security.pii import Vault

GENERATE_STAGES = 5
LOAD_STAGES = 9
LAYER_ZH = {
    "streets": "街道",
    "communities": "社区",
    "compounds": "小区",
    "buildings": "楼栋",
    "households": "户",
    "residents": "居民",
    "resident_groups": "特殊人群",
    "facilities": "设施",
    "road_nodes": "路网节点",
    "road_edges": "路段",
    "compound_gates": "小区出入口",
    "barriers": "障碍(河流)",
}
LAYER_TABLE = {
    "streets": "street",
    "communities": "community",
    "compounds": "compound",
    "buildings": "building",
    "households": "household",
    "residents": "resident",
    "resident_groups": "resident_group",
    "facilities": "facility",
    "road_nodes": "road_node",
    "road_edges": "road_edge",
    "compound_gates": "compound_gate",
    "barriers": "barrier",
}


@dataclass
class SampleResult:
    path: Path
    city: SampleCity
    db_counts: dict[str, int] | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def default_path() -> Path:
    return get_settings().home_abs / "sample_city.gpkg"


def refuse_if_not_empty(url: str) -> None:
    """Fail fast (before generating) when a load without replace would be refused anyway."""
    with psycopg.connect(psycopg_conninfo(url)) as conn, conn.cursor() as cur:
        have = existing_rows(cur)
    if have:
        listing = ", ".join(f"{t}={n}" for t, n in have.items())
        raise DatabaseNotEmpty(
            f"数据库非空，未加载示例 database is not empty ({listing}); nothing was changed "
            "(rule: sample_requires_empty_database). Use --replace to truncate and load again."
        )


def build_and_load(
    url: str | None,
    *,
    seed: int = DEFAULT_SEED,
    scale: float = 1.0,
    out: Path | None = None,
    replace: bool = False,
    load: bool = True,
    from_gpkg: Path | None = None,
    vault: Vault | None = None,
    console: Console | None = None,
) -> SampleResult:
    """Generate the sample city (or read ``from_gpkg``), write it to ``out``, load it into ``url``."""
    console = console or Console()
    if load and url and not replace:
        refuse_if_not_empty(url)
    seconds: dict[str, float] = {}
    progress = Progress(
        TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    with progress:
        t0 = time.perf_counter()
        if from_gpkg:
            task = progress.add_task("读取 read GeoPackage", total=1)
            city = read_gpkg(from_gpkg)
            progress.update(task, completed=1)
            path = Path(from_gpkg)
        else:
            gen = progress.add_task("生成 generate", total=GENERATE_STAGES)
            city = generate_city(seed, scale, on_stage=_stepper(progress, gen, "生成 generate"))
            progress.update(gen, completed=GENERATE_STAGES, description="生成 generate ✓")
            seconds["generate"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            path = Path(out) if out else default_path()
            wr = progress.add_task("写出 write GeoPackage", total=len(LAYERS))
            write_gpkg(city, path, on_layer=_stepper(progress, wr, "写出 write"))
            progress.update(wr, completed=len(LAYERS), description="写出 write GeoPackage ✓")
            seconds["write_gpkg"] = time.perf_counter() - t1
        db_counts = None
        if load and url:
            t2 = time.perf_counter()
            ld = progress.add_task("加载 load PostGIS", total=LOAD_STAGES + (1 if replace else 0))
            db_counts = load_city(url, city, replace=replace, vault=vault, on_stage=_stepper(progress, ld, "加载 load"))
            progress.update(ld, completed=progress.tasks[ld].total, description="加载 load PostGIS ✓")
            seconds["load"] = time.perf_counter() - t2
        seconds["total"] = time.perf_counter() - t0
    result = SampleResult(path=path, city=city, db_counts=db_counts, seconds=seconds)
    console.print(summary_table(result))
    return result


def _stepper(progress: Progress, task, label: str):
    state = {"n": 0}

    def step(stage: str) -> None:
        if state["n"]:
            progress.advance(task)
        state["n"] += 1
        progress.update(task, description=f"{label}: {stage}")

    return step


def summary_table(result: SampleResult) -> Table:
    m = result.city.meta
    t = Table(title=f"{m.get('name', '示例城')} — seed {m.get('seed')}, scale {m.get('scale')}  ⚠ 合成数据 synthetic")
    t.add_column("layer 图层")
    t.add_column("中文")
    t.add_column("GeoPackage", justify="right")
    t.add_column("PostGIS", justify="right")
    for name in LAYERS:
        db = "" if result.db_counts is None else f"{result.db_counts.get(LAYER_TABLE[name], 0):,}"
        t.add_row(name, LAYER_ZH[name], f"{len(getattr(result.city, name)):,}", db)
    under = "; ".join(
        f"{u['name']} 缺 missing {'、'.join(u.get('missing_zh', u['missing']))}" for u in m.get("under_served", [])
    )
    hard = "; ".join(
        f"{c['name']} 夹心小区 stranded compound {c['compound_code']} ({c['households']} 户 households)"
        for c in m.get("grid_challenges", [])
    )
    t.caption = (
        f"file: {result.path}   time: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
        + (f"\n服务不足社区 under-served: {under}" if under else "")
        + (f"\n网格划分难点 hard to grid: {hard}" if hard else "")
    )
    return t
