"""`gisgov rollup`: a province's roll-up of its cities' aggregates (省级汇总).

    gisgov rollup export --out 340104.json.gz [--city-code 340104]   # on a city's instance
    gisgov rollup load 340104.json.gz 340105.json.gz                 # on the province instance
    gisgov rollup show [--json]                                      # province totals and per-city rows

The database is the configured one (GISGOV_DATABASE_URL, else the embedded cluster).
"""

from __future__ import annotations

from pathlib import Path

import typer

from gisgov.cli import common

app = common.group("汇总 Province roll-up: export a city's aggregates, load them into a province instance.")
console = common.LazyConsole()


@app.command("export")
def export_cmd(
    out: Path = typer.Option(..., "--out", help="输出文件 output file (.json or .json.gz)"),
    city_code: str | None = typer.Option(
        None, "--city-code", help="城市代码 city code (default: the dataset's county code)"
    ),
    small_cell_k: int | None = typer.Option(
        None, "--k", min=2, help="特殊人群小数抑制阈值 small-count threshold (default: the server's small_cell_k)"
    ),
) -> None:
    """导出本市汇总 Export this city's aggregates (per street and community) for the province."""
    from sqlalchemy import text

    from gisgov.config import get_settings
    from gisgov.coverage.catalog import default_catalog_path, load_catalog
    from gisgov.db.engine import make_engine
    from gisgov.errors import GisgovError
    from gisgov.rollup import export

    cat_path = default_catalog_path()
    catalog = load_catalog(cat_path) if cat_path.exists() else None
    k = small_cell_k or max(get_settings().small_cell_k, 2)
    eng = make_engine(common.database_url())
    try:
        with eng.connect() as conn, conn.begin():
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            doc = export.build(conn, city_code=city_code, small_cell_k=k, catalog=catalog)
        path = export.write(doc, out)
    except GisgovError as exc:
        raise common.error(exc) from None
    finally:
        eng.dispose()
    m = doc["manifest"]
    typer.echo(
        f"已导出 exported {m['city_code']} {m['city_name']}: {m['units']} units, k={m['small_cell_k']}, "
        f"coverage {'yes' if m['coverage'] else 'no'}, {path.stat().st_size:,} bytes → {path} ({m['checksum'][:19]}…)"
    )


@app.command("load")
def load_cmd(
    files: list[Path] = typer.Argument(..., help="各市导出文件 the cities' export files"),
) -> None:
    """载入各市汇总 Load cities' exports into this (province) instance; each file all or nothing."""
    from gisgov.db.engine import make_engine
    from gisgov.errors import GisgovError
    from gisgov.rollup import load

    eng = make_engine(common.database_url())
    failed: list[tuple[Path, GisgovError]] = []
    try:
        for f in files:
            try:
                doc = load.read(f)
                with eng.begin() as conn:
                    res = load.load(conn, doc)
            except GisgovError as exc:
                failed.append((f, exc))
                typer.echo(f"拒绝 refused {f.name}: {' '.join(str(exc).split())}", err=True)
                continue
            if res.unchanged:
                typer.echo(f"未变 unchanged {res.city_code} {res.city_name}: this export ({res.exported_at}) is loaded")
            else:
                was = f", replaced the export of {res.replaced}" if res.replaced else ""
                typer.echo(
                    f"已载入 loaded {res.city_code} {res.city_name} ({res.exported_at}): "
                    f"{res.units} units, {res.figures} figures{was}"
                )
    finally:
        eng.dispose()
    if failed:
        raise typer.Exit(common.exit_code_for(failed[0][1]))


def _fmt(v: object) -> str:
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.1%}"
    return "–" if v is None else str(v)


@app.command("show")
def show_cmd(as_json: bool = typer.Option(False, "--json", help="JSON 输出 print JSON")) -> None:
    """省级汇总 The province totals and each city's row (exact sums; shares recomputed from the sums)."""
    import json

    from gisgov.db.engine import make_engine
    from gisgov.rollup import load

    eng = make_engine(common.database_url())
    try:
        with eng.connect() as conn:
            view = load.province(conn)
    finally:
        eng.dispose()
    if as_json:
        typer.echo(json.dumps(view, ensure_ascii=False, indent=2))
        return
    from rich.table import Table

    cols = [
        ("households", "户数 households"),
        ("residents", "人口 residents"),
        ("buildings", "楼栋 buildings"),
        ("grids", "网格 grids"),
        ("staff.total", "网格人员 staff"),
        ("special.people", "特殊人群 special"),
    ]
    t = Table(title="省级汇总 Province roll-up", show_lines=False)
    for head in ("城市 city", "导出时间 exported", "街道/社区 streets/communities", *(h for _, h in cols)):
        t.add_column(head, justify="left" if "city" in head or "exported" in head else "right")
    t.add_column("60岁以上 aged 60+", justify="right")
    t.add_column("完整生活圈 complete circle", justify="right")
    for r in view["cities"]:
        f, s = r["figures"], r["shares"]
        t.add_row(
            f"{r['city_code']} {common.escape(r['name'])}",
            r["exported_at"][:19],
            f"{r['streets']}/{r['communities']}",
            *(_fmt(f.get(k)) for k, _ in cols),
            _fmt(s.get("elderly_share")),
            _fmt(s.get("coverage.complete.share")),
        )
    p = view["province"]
    t.add_row(
        "[bold]全省 province[/bold]",
        f"{p['cities']} cities",
        f"{p['streets']}/{p['communities']}",
        *(_fmt(p["figures"].get(k)) for k, _ in cols),
        _fmt(p["shares"].get("elderly_share")),
        _fmt(p["shares"].get("coverage.complete.share")),
    )
    console.print(t)
    for note in view["notes"]:
        console.print(note)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="rollup")
