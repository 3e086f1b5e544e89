"""Helpers every CLI command uses: the global options, settings construction, logging, and error reporting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from assistant.errors import AssistantError
from assistant.settings import Settings, load_settings
from assistant.startup import start_up

T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML settings file (ASSISTANT_* environment variables override it).",
        envvar="ASSISTANT_CONFIG",
        show_envvar=True,
    ),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (database, index, models, adapters).")
]


def build_settings(config: Path | None = None, data_dir: Path | None = None, **overrides: Any) -> Settings:
    """Settings for a command: YAML file, then environment, then the command's explicit flags; then `start_up`."""
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = load_settings(config, **overrides)
    start_up(settings)
    return settings


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn project errors into a one-line message and exit code 1 instead of a traceback."""
    try:
        yield
    except AssistantError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from exc


def echo(text: str) -> None:
    """Command output (results go to stdout; logs go to stderr)."""
    typer.echo(text)


def run_async(factory: Callable[[], Any]) -> Any:
    import asyncio

    return asyncio.run(factory())
