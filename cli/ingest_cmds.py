"""CLI commands for ingest, search, the index and retrieval evaluation.

Contract: `register(app, eval_app)` adds `ingest PATH...`, `search QUERY`, `index rebuild|check` to the root app and
`retrieval` to the eval group. Every command builds the settings with `cli.common.build_settings`, imports its heavy
modules inside the function, reports project errors as one line with exit code 1, and prints results to stdout.
`ingest` exits 1 when any file failed (the others are still ingested); `index check` exits 1 when inconsistent.
Long work (ingest, index rebuild, eval retrieval) shows its progress on stderr (`cli.terminal_progress`); a failing file
is named there, with its reason, as soon as it fails; the result lines on stdout are printed at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import ConfigOption, DataDirOption, build_settings, echo, user_errors
from cli.terminal_progress import TerminalProgress

if TYPE_CHECKING:
    from ingest.ingest_service import IngestProgress
    from ingest.results import FileResult

CollectionOption = Annotated[str, typer.Option("--collection", help="Collection the documents belong to.")]
SHARED_SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-v1.1-dev-part1.json"


def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, folders (recursive) or glob patterns to ingest.")],
    collection: CollectionOption = "default",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Ingest documents (PDF, DOCX, HTML, Markdown, TXT, CSV, JSON/JSONL) into the index."""
    settings = build_settings(config, data_dir)
    with user_errors(), TerminalProgress() as progress:
        from assistant.parts import Parts
        from ingest.ingest_service import IngestService

        service = IngestService.of(Parts(settings))
        report = service.ingest_paths(paths, collection, lambda event: show_ingest(progress, event))
    for result in report.files:
        echo(result_line(result))
    dropped = report.selection.counts()
    echo(
        f"{report.counts()} in {report.seconds:.1f} s; {report.chunks} chunks"
        + (f"; dropped {dropped}" if dropped else "")
    )
    if report.failed:
        raise typer.Exit(code=1)


def show_ingest(progress: TerminalProgress, event: IngestProgress, stage: str = "ingest") -> None:
    """One more file done or chunks embedded: a failure is named at once, the bar counts files (with the chunks
    embedded and stored)."""
    if event.result is not None and event.result.error:
        progress.note(result_line(event.result))
    chunks = f"{event.chunks_embedded} chunks embedded, {event.chunks} stored"
    progress.update(stage, event.files_done, event.files_total, chunks)


def result_line(result: FileResult) -> str:
    """A file's outcome as `ingest` prints it: status, source, then chunks or the error."""
    detail = f"error {result.status_code}: {result.error}" if result.error else f"{result.chunks} chunks"
    return f"{result.status:<10} {result.source}  ({detail})"


def search(
    query: Annotated[str, typer.Argument(help="The question or keywords to search for.")],
    k: Annotated[int | None, typer.Option("--k", help="Hits to return (default retrieval.top_k).")] = None,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, dense or bm25.")] = "hybrid",
    collection: Annotated[
        list[str] | None, typer.Option("--collection", help="Restrict to this collection (repeatable).")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show the chunks a query retrieves, with scores and citation data."""
    settings = build_settings(config, data_dir)
    with user_errors():
        from assistant.parts import Parts

        hits = Parts(settings).retriever.search(query, k=k, collections=collection or None, mode=mode)
    for rank, hit in enumerate(hits, start=1):
        where = ", ".join(part for part in (f"p. {hit.page}" if hit.page else "", hit.section or "") if part)
        echo(
            f"[{rank}] {hit.score:.4f}  {hit.title} ({hit.source}{', ' + where if where else ''}) "
            f"chars {hit.char_start}-{hit.char_end}  chunk {hit.chunk_id}"
        )
        echo(f"    {hit.text[:300]}")
    if not hits:
        echo("no hits")


def index_rebuild(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Rebuild the vector index from the chunk rows (exact or HNSW by size; compacts deletions)."""
    settings = build_settings(config, data_dir)
    with user_errors(), TerminalProgress() as progress:
        from assistant.embedding import EmbedderMismatchError, record_embedder_space
        from assistant.parts import Parts
        from ingest.ingest_service import IngestService

        parts, reembed = Parts(settings), False
        try:
            _ = parts.embedder  # refused when the index holds vectors of another embedder
        except EmbedderMismatchError as exc:  # a new embedder: re-embed every chunk, then record its space
            echo(f"{exc.message.split(': mixing')[0]}: re-embedding every chunk")
            parts, reembed = Parts(settings, check_embedder_space=False), True
        service = IngestService.of(parts)
        report = service.rebuild_index(reembed, lambda done, total: progress.update("embed", done, total, "chunks"))
        record_embedder_space(settings, parts.embedder.dim)
    echo(report.summary())


def index_check(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Check that the vector index and the chunk rows agree (exit code 1 when they do not)."""
    settings = build_settings(config, data_dir)
    with user_errors():
        from assistant.parts import Parts
        from ingest.ingest_service import IngestService

        service = IngestService.of(Parts(settings), read_only=True)  # works beside a running writer
        report = service.check_index()
    echo(report.summary())
    if not report.ok:
        raise typer.Exit(code=1)


def eval_retrieval(
    squad: Annotated[Path, typer.Option("--squad", help="SQuAD v1.1 JSON file (paragraphs = corpus).")] = SHARED_SQUAD,
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate a seeded sample of N questions.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Recall@1/5/10, MRR@10 and nDCG@10 of dense, BM25 and hybrid retrieval on a SQuAD file (temporary index)."""
    settings = build_settings(config, data_dir)
    with user_errors(), TerminalProgress() as progress:
        from ingest.retrieval_eval import run_squad_evaluation

        if not squad.is_file():
            from assistant.errors import NotFoundError

            raise NotFoundError(f"SQuAD file {squad} does not exist")
        scores = run_squad_evaluation(settings, squad, limit, on_progress=progress.update)
    echo(f"{'mode':<8}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'MRR@10':>8}{'nDCG@10':>9}  queries")
    for mode, s in scores.items():
        echo(
            f"{mode:<8}{s.recall_at_1:>8.3f}{s.recall_at_5:>8.3f}{s.recall_at_10:>8.3f}{s.mrr_at_10:>8.3f}"
            f"{s.ndcg_at_10:>9.3f}  {s.queries}"
        )


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    """Add the ingest/search/index commands to the root app and `eval retrieval` to the eval group."""
    app.command("ingest")(ingest)
    app.command("search")(search)
    index_app = typer.Typer(help="Inspect and maintain the vector index.", no_args_is_help=True)
    index_app.command("rebuild")(index_rebuild)
    index_app.command("check")(index_check)
    app.add_typer(index_app, name="index")
    eval_app.command("retrieval")(eval_retrieval)
