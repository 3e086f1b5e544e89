"""CLI command `assistant export ADAPTER --merged DIR | --adapter-only DIR` (see `training.export`).

Contract: ADAPTER is a registry reference (name, name:vN, id) or a PEFT directory; exactly one of `--merged` /
`--adapter-only` is given. Prints what was written as JSON; project errors print one line and exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import ConfigOption, DataDirOption, build_settings, echo, user_errors


def export(
    adapter: Annotated[str, typer.Argument(help="Adapter: registry name[:vN], id, or a PEFT directory.")],
    merged: Annotated[
        Path | None, typer.Option("--merged", help="Write a merged safetensors model (+ tokenizer, Modelfile) here.")
    ] = None,
    adapter_only: Annotated[
        Path | None, typer.Option("--adapter-only", help="Copy the PEFT adapter with its base fingerprint here.")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Export an adapter as a merged model (vLLM, Ollama) or as a PEFT adapter."""
    with user_errors():
        from assistant.errors import InvalidRequestError

        if (merged is None) == (adapter_only is None):
            raise InvalidRequestError("give exactly one of --merged DIR or --adapter-only DIR", param="output")
        settings = build_settings(config, data_dir)
        from assistant.model_files import resolve_lm
        from assistant.parts import Parts
        from training.export import export_adapter_only, export_merged, resolve_export_source
        from training.registry import AdapterRegistry

        registry = None if Path(adapter).is_dir() else AdapterRegistry.of(Parts(settings))
        source, record = resolve_export_source(adapter, registry)
        if merged is not None:
            out = export_merged(source, resolve_lm(settings), merged, record)
        else:
            assert adapter_only is not None
            out = export_adapter_only(source, resolve_lm(settings), adapter_only, record)
    echo(json.dumps({"adapter": str(source), "output": str(out), "files": sorted(p.name for p in out.iterdir())}))


def register(app: typer.Typer) -> None:
    app.command("export")(export)
