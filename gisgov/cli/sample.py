"""`gisgov sample`: write the synthetic sample city (示例城, 合成数据) to a GeoPackage and load it.

Exit codes (:mod:`gisgov.cli.common`): 0 done, 1 refused (database not empty, nothing changed), 2 usage error,
3 database unavailable.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gisgov.cli import common

console = common.LazyConsole()


def sample(
    seed: int | None = typer.Option(
        None,
        help="Random seed: the same seed and scale always give the same city (default: the sample's fixed seed).",
    ),
    scale: float = typer.Option(
        1.0, min=0.02, max=5.0, help="Size factor: 1.0 ≈ 12 communities, 200 compounds, 160,000 residents."
    ),
    out: Path = typer.Option(None, help="GeoPackage to write (default GISGOV_HOME/sample_city.gpkg)."),
    replace: bool = typer.Option(
        False,
        "--replace/--no-replace",
        help="Truncate the hierarchy, network and facility tables first if they hold data.",
    ),
    load: bool = typer.Option(True, "--load/--no-load", help="Load into the database (--no-load: GeoPackage only)."),
    from_gpkg: Path = typer.Option(
        None, "--from-gpkg", exists=True, dir_okay=False, help="Load this sample GeoPackage instead of generating one."
    ),
) -> None:
    """示例城 Generate the synthetic sample city (合成数据, labelled synthetic), write it to a GeoPackage and load it."""
    from gisgov.sample.generate import DEFAULT_SEED
    from gisgov.sample.load import DatabaseNotEmpty
    from gisgov.sample.service import build_and_load

    console.print("[bold yellow]⚠ 合成示例数据 synthetic sample data[/] — 非真实人口 not real people or places")
    url = None
    if load:
        from gisgov.db import migrate

        url = common.database_url(migrated=False)  # loading the sample migrates (one line, exit 3 if down)
        migrate.upgrade(url)
    try:
        build_and_load(
            url,
            seed=DEFAULT_SEED if seed is None else seed,
            scale=scale,
            out=out,
            replace=replace,
            load=load,
            from_gpkg=from_gpkg,
            console=console.get(),
        )
    except DatabaseNotEmpty as exc:
        console.print(f"[red]已拒绝 refused:[/] {exc}")
        raise typer.Exit(common.EXIT_REJECTED) from exc


def register(app: typer.Typer) -> None:
    app.command("sample")(sample)
