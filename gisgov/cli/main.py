"""Entry point of the `gisgov` command."""

from __future__ import annotations

import typer

from gisgov.cli import db

app = typer.Typer(
    help="gisgov: 基层网格化治理 GIS 平台 (grassroots grid-governance GIS on PostGIS).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")


def _register_optional() -> None:
    """Command groups that live in their own modules register here."""
    import importlib

    for mod, name in [
        ("gisgov.cli.sample", None),
        ("gisgov.cli.serve", None),
        ("gisgov.cli.demo", None),
        ("gisgov.cli.load", None),
        ("gisgov.cli.coverage", None),
        ("gisgov.cli.grids", None),
    ]:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
            continue
        m.register(app)


_register_optional()

if __name__ == "__main__":
    app()
