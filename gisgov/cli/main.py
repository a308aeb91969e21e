"""Entry point of the `gisgov` command."""

from __future__ import annotations

from gisgov.cli import common, db
from gisgov.plugins import optional_modules

app = common.group("gisgov: 基层网格化治理 GIS 平台 (grassroots grid-governance GIS on PostGIS).")
app.add_typer(db.app, name="db")


CLI_MODULES = [
    "gisgov.cli.sample",
    "gisgov.cli.serve",
    "gisgov.cli.demo",
    "gisgov.cli.load",
    "gisgov.cli.coverage",
    "gisgov.cli.grids",
    "gisgov.cli.users",
    "gisgov.cli.audit",
    "gisgov.cli.events",
    "gisgov.cli.governance",
    "gisgov.cli.special",
    "gisgov.cli.rollup",
]


def _register_optional() -> None:
    """Command groups that live in their own modules register here."""
    for mod in optional_modules(CLI_MODULES):
        mod.register(app)


_register_optional()

if __name__ == "__main__":
    app()
