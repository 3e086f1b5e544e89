"""CLI commands for directory sources: `assistant sources add|list|sync|remove`.

Contract: `register(app)` adds the `sources` group. `add DIR --collection C [--delete mirror|keep] [--name N]
[--interval S]` registers a folder and prints the dry-run diff of its first sync (nothing is ingested); `sync NAME`
applies it (`--dry-run`: prints the diff only, without loading the embedder or taking the data directory's writer
lock); `list` shows every source with its status and last counts; `remove NAME [--delete-documents]`. `--json`
prints the same JSON as the REST API (`serving.rest_format`). `sync` exits 1 when any file failed (the others are
still synced). Like `assistant ingest`, a real sync writes the data directory, so it is refused beside a running
server (use `POST /v1/sources/{id}/sync` there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.common import ConfigOption, DataDirOption, build_settings, echo, user_errors

if TYPE_CHECKING:
    from ingest.directory_sources import SyncReport

JsonOption = Annotated[bool, typer.Option("--json", help="Print the REST API's JSON.")]


def add(
    directory: Annotated[Path, typer.Argument(help="The folder to keep in sync (recursively).")],
    collection: Annotated[str, typer.Option("--collection", help="Collection its documents go to.")] = "default",
    delete: Annotated[
        str, typer.Option("--delete", help="A file deleted from the folder: 'mirror' deletes it, 'keep' keeps it.")
    ] = "mirror",
    name: Annotated[str | None, typer.Option("--name", help="The source's name (default: the folder's).")] = None,
    interval: Annotated[
        float | None, typer.Option("--interval", help="Seconds between scheduled syncs while a server runs.")
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register a folder as a source and show what its first sync would do (nothing is ingested yet)."""
    settings = build_settings(config, data_dir)
    with user_errors():
        from assistant.parts import Parts
        from ingest.directory_sources import SourceRegistry, SourceSyncer

        registry = SourceRegistry(settings, Parts(settings).db)
        record = registry.create(directory, collection, name=name, delete_policy=delete, interval_s=interval)
        preview = SourceSyncer(registry, None).plan(record.id)
    if as_json:
        from serving.rest_format import source_body, sync_body

        _print_json({**source_body(record), "preview": sync_body(preview)})
        return
    echo(f"source {record.name} ({record.id}): {record.path} -> collection {record.collection!r}, delete={delete}")
    _print_report(preview)
    echo(f"run `assistant sources sync {record.name}` to apply it")


def list_sources(as_json: JsonOption = False, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """List the sources with their status and the last sync's counts."""
    settings = build_settings(config, data_dir)
    with user_errors():
        from assistant.parts import Parts
        from ingest.directory_sources import SourceRegistry

        records = SourceRegistry(settings, Parts(settings).db).records()
    if as_json:
        from serving.rest_format import source_list_body

        _print_json(source_list_body(records))
        return
    for r in records:
        when = r.last_sync_at.strftime("%Y-%m-%d %H:%M:%S UTC") if r.last_sync_at else "never synced"
        counts = " ".join(f"{k}={v}" for k, v in r.counts.items() if v)
        echo(f"{r.name:<20} {r.status:<8} {r.collection:<16} {r.delete_policy:<6} {when}  {counts}  {r.path}")
        if r.last_error:
            echo(f"    last error: {r.last_error}")
    if not records:
        echo("no sources (add one with `assistant sources add DIR --collection C`)")


def sync(
    name: Annotated[str, typer.Argument(help="The source's name or id.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diff; change nothing.")] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Sync a source: new and changed files ingested, deleted ones removed under its delete policy."""
    settings = build_settings(config, data_dir)
    with user_errors():
        from assistant.parts import Parts
        from ingest.directory_sources import SourceRegistry, SourceSyncer
        from ingest.ingest_service import IngestService

        parts = Parts(settings)
        registry = SourceRegistry(settings, parts.db)
        if dry_run:
            report = SourceSyncer(registry, None).plan(name)
        else:
            report = SourceSyncer(registry, IngestService.of(parts)).sync(name)
    if as_json:
        from serving.rest_format import sync_body

        _print_json(sync_body(report))
    else:
        _print_report(report)
    if report.failed:
        raise typer.Exit(code=1)


def remove(
    name: Annotated[str, typer.Argument(help="The source's name or id.")],
    delete_documents: Annotated[
        bool, typer.Option("--delete-documents", help="Also delete the documents it synced.")
    ] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Forget a source (its documents stay unless --delete-documents)."""
    settings = build_settings(config, data_dir)
    with user_errors():
        from assistant.parts import Parts
        from ingest.directory_sources import SourceRegistry, SourceSyncer
        from ingest.ingest_service import IngestService

        parts = Parts(settings)
        ingest = IngestService.of(parts) if delete_documents else None
        record, deleted = SourceSyncer(SourceRegistry(settings, parts.db), ingest).remove(name, delete_documents)
    echo(f"removed source {record.name}; {deleted} documents deleted")


def _print_report(report: SyncReport) -> None:
    for label, paths in (("added", report.added), ("changed", report.changed), ("deleted", report.deleted)):
        for path in paths:
            echo(f"{label:<9} {path}")
    for path in report.kept:
        echo(f"kept      {path}  (gone from the folder; delete policy 'keep')")
    for failure in report.failed:
        echo(f"failed    {failure['path']}: {failure['error']}")
    counts = ", ".join(f"{v} {k}" for k, v in report.counts().items())
    echo(f"{'dry run (nothing changed)' if report.dry_run else 'synced'}: {counts} ({report.seconds:.1f} s)")


def _print_json(body: dict[str, Any]) -> None:
    echo(json.dumps(body, indent=2))


def register(app: typer.Typer) -> None:
    """Add the `sources` command group to the root app."""
    sources_app = typer.Typer(help="Folders kept in sync with a collection.", no_args_is_help=True)
    sources_app.command("add")(add)
    sources_app.command("list")(list_sources)
    sources_app.command("sync")(sync)
    sources_app.command("remove")(remove)
    app.add_typer(sources_app, name="sources")
