"""`gisgov rollup`: a province's roll-up of its cities' aggregates (placeholder, filled in by the roll-up work)."""

from __future__ import annotations

import typer

from gisgov.cli import common

app = common.group("汇总 Province roll-up: export a city's aggregates, load them into a province instance.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="rollup")
