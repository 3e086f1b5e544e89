"""CLI commands for ingest, search, the index and retrieval evaluation (filled in with issue 3)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    """Add the ingest/search/index commands to the root app and `eval retrieval` to the eval group."""
