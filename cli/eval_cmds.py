"""CLI command for answer evaluation: `assistant eval answers FILE`.

Contract: builds the server's own parts in-process (database, catalog, engine, document store, retrieval and
`ChatService`) and asks every question of a SQuAD v1.1/v2.0 JSON or question/answer JSONL file through the exact
chat path (`serving.services.answer_eval_service.AnswerEvaluator`), against the documents already ingested in the data
directory. Prints the metrics table and writes report.json, report.md and curves.png into `--out` (default
`<data_dir>/runs/evaluations/cli-<time>`). Project errors print one line and exit 1. The questions answered so far
show on stderr as they are answered (`cli.terminal_progress`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import ConfigOption, DataDirOption, build_settings, echo, run_async, user_errors
from cli.terminal_progress import TerminalProgress


def eval_answers(
    file: Annotated[Path, typer.Argument(help="SQuAD v1.1/v2.0 JSON, or JSONL of {question, answers|answer}.")],
    collection: Annotated[
        str | None, typer.Option("--collection", help="Collection to search (default: all; an item may name its own).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Base model or adapter (NAME or NAME@vN).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N questions.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for report.json, report.md, curves.png.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Answer quality through the chat path: EM, F1, contains, citation accuracy, grounding, abstention, latency."""
    with user_errors(), TerminalProgress() as progress:
        settings = build_settings(config, data_dir)
        from assistant.errors import NotFoundError
        from assistant.qa_sets import load_qa_file

        if not file.is_file():
            raise NotFoundError(f"question file {file} does not exist")
        items = load_qa_file(file)[:limit]
        folder = out or settings.runs_dir / "evaluations" / time.strftime("cli-%Y%m%d-%H%M%S")
        report = run_async(lambda: _evaluate(settings, items, model, collection, str(file), progress))
    from serving.services.answer_eval_service import write_report

    files = write_report(folder, report)
    _print(report["metrics"])
    echo(f"report: {files['markdown']} ({', '.join(sorted(files))})")


async def _evaluate(settings, items, model, collection, name, progress) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from assistant.index.locking import IndexLock
    from assistant.model_files import resolve_lm
    from assistant.parts import Parts
    from serving.app import build_retrieval
    from serving.catalog import ModelCatalog
    from serving.engines import make_engine
    from serving.prometheus_metrics import Metrics
    from serving.services.answer_eval_service import AnswerEvaluator, build_report
    from serving.services.chat_service import ChatService

    parts = Parts(settings)
    db = parts.db
    catalog = ModelCatalog.of(parts)
    engine = make_engine(settings.engine, resolve_lm(settings), catalog.base_name)
    await engine.start()
    try:
        metrics = Metrics()
        retrieval = build_retrieval(parts, IndexLock(), metrics)
        chat = ChatService(settings, engine, catalog, db, metrics, retrieval)
        model = model or catalog.base_name
        chat.catalog.resolve(model)
        retrieval.scope([collection] if collection else None, _anonymous())
        done = [0]

        def answered(_result: Any) -> None:
            done[0] += 1
            progress.update("questions", done[0], len(items))

        results = await AnswerEvaluator(chat).run(items, model, collection, on_result=answered)
        params = {"file": name, "model": model, "collection": collection, "limit": len(items)}
        return build_report(results, params)
    finally:
        await engine.shutdown()
        parts.close()


def _anonymous() -> Any:
    from serving.principal import ANONYMOUS

    return ANONYMOUS


def _print(metrics: dict[str, Any]) -> None:
    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    abstention, latency = metrics["abstention"], metrics["latency_s"]
    counts = f"answerable {metrics['answerable']}, unanswerable {metrics['unanswerable']}"
    echo(f"questions {metrics['questions']} ({counts})")
    echo(f"exact match        {fmt(metrics['exact_match'])}")
    echo(f"F1                 {fmt(metrics['f1'])}")
    echo(f"contains answer    {fmt(metrics['contains'])}")
    echo(f"citation accuracy  {fmt(metrics['citation_accuracy'])}  ({metrics['answered_with_sources']} with sources)")
    echo(f"grounding          {fmt(metrics['grounding'])}")
    echo(f"abstention P / R   {fmt(abstention['precision'])} / {fmt(abstention['recall'])}")
    echo(f"latency p50 / p95  {fmt(latency['p50'])} / {fmt(latency['p95'])} s")


def register(eval_app: typer.Typer) -> None:
    """Add `answers` to the eval group."""
    eval_app.command("answers")(eval_answers)
