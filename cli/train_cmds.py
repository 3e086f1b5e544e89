"""CLI commands for training LoRA adapters (filled in with issue 4)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    """Add the `train sft|dpo|psft` commands to the root app."""
