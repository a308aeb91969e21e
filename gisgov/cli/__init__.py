"""The `gisgov` command line (typer)."""
