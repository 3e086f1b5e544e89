"""CLI commands for serving and models: `serve`, `chat`, `models list|prepare|check`, `config show`."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from cli.common import ConfigOption, DataDirOption, build_settings, echo, run_async, user_errors

models_app = typer.Typer(help="List, prepare and check the configured models.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the settings.", no_args_is_help=True)


def serve(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default: server.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default: server.port).")] = None,
) -> None:
    """Start the OpenAI-compatible server (FastAPI + uvicorn) on the configured model."""
    import uvicorn

    from serving.app import create_app

    with user_errors():
        settings = build_settings(config, data_dir)
        settings.server.host = host or settings.server.host  # the app checks the address it is really bound to
        app = create_app(settings)
        uvicorn.run(
            app,
            host=settings.server.host,
            port=port or settings.server.port,
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=10,
        )


def chat(
    message: Annotated[str, typer.Argument(help="What to ask.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    model: Annotated[str | None, typer.Option(help="Base model name or adapter (NAME or NAME@vN).")] = None,
    system: Annotated[str | None, typer.Option(help="An extra system message.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens to generate.")] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="0 = greedy.")] = 0.0,
    retrieval: Annotated[bool, typer.Option(help="Ground the answer in the ingested documents (RAG).")] = True,
    collection: Annotated[
        list[str] | None, typer.Option(help="Retrieve only from this collection (repeatable).")
    ] = None,
) -> None:
    """Ask one question from the terminal, through the same engine, retrieval and chat service as the server."""
    with user_errors():
        settings = build_settings(config, data_dir)
        options = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "use_retrieval": retrieval,
            "collections": collection or None,
        }
        run_async(lambda: _chat_once(settings, message, model, system, options))


async def _chat_once(settings, message, model, system, options) -> None:  # type: ignore[no-untyped-def]
    import sys

    from assistant.index.locking import IndexLock
    from assistant.model_files import resolve_lm
    from assistant.parts import Parts
    from serving.app import build_retrieval
    from serving.catalog import ModelCatalog
    from serving.engines import make_engine
    from serving.prometheus_metrics import Metrics
    from serving.schemas import ChatCompletionRequest
    from serving.services.chat_service import ChatService

    parts = Parts(settings)
    db = parts.db
    catalog = ModelCatalog.of(parts)
    engine = make_engine(settings.engine, resolve_lm(settings), catalog.base_name)
    await engine.start()
    try:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": message}]
        request = ChatCompletionRequest.model_validate(
            {"model": model or catalog.base_name, "messages": messages, **options}
        )
        metrics = Metrics()
        retrieval = build_retrieval(parts, IndexLock(), metrics) if options["use_retrieval"] else None
        service = ChatService(settings, engine, catalog, db, metrics, retrieval)
        prepared = await service.prepare(request)
        async for piece in service.answer_stream(prepared):  # text pieces, then the finished Answer
            if isinstance(piece, str):
                sys.stdout.write(piece)
                sys.stdout.flush()
        sys.stdout.write(f"\n[response id: {prepared.id}]\n")
        for citation in prepared.citations():
            where = ", ".join(
                str(x) for x in (citation["section"], citation["page"] and f"page {citation['page']}") if x
            )
            sys.stdout.write(f"[{citation['index']}] {citation['title'] or citation['source']} {where}\n")
    finally:
        await engine.shutdown()
        parts.close()


@models_app.command("list")
def models_list(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Show the configured models and whether each is ready (converts nothing)."""
    from assistant.model_files import model_report

    with user_errors():
        for info in model_report(build_settings(config, data_dir)):
            state = "ready" if info.ready else "MISSING"
            echo(f"{info.role:9} {info.configured:28} {state:8} {info.path or ''}  {info.detail}")


@models_app.command("prepare")
def models_prepare(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Convert/locate every configured model now (the default LM is converted once from its GGUF file)."""
    from assistant.model_files import model_report

    with user_errors():
        rows = model_report(build_settings(config, data_dir), prepare=True)
        for info in rows:
            echo(f"{info.role:9} {'ready' if info.ready else 'MISSING':8} {info.path or info.detail}")
        if not all(info.ready for info in rows):
            raise typer.Exit(code=1)


@models_app.command("check")
def models_check(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    prompt: Annotated[str, typer.Option(help="Prompt for the smoke test.")] = "What is the capital of France?",
) -> None:
    """Prepare the models, then load the LM and the embedder and run one generation and one embedding."""
    with user_errors():
        settings = build_settings(config, data_dir)
        run_async(lambda: _check_models(settings, prompt))


async def _check_models(settings, prompt: str) -> None:  # type: ignore[no-untyped-def]
    from assistant.engine import SamplingOptions
    from assistant.model_files import resolve_embedder, resolve_lm, served_model_name
    from serving.engines import make_engine

    engine = make_engine(settings.engine, resolve_lm(settings), served_model_name(settings))
    await engine.start()
    try:
        text = ""
        rendered = engine.render_chat([{"role": "user", "content": prompt}])
        async for chunk in engine.generate(f"check-{uuid.uuid4().hex}", rendered, SamplingOptions(32, 0.0)):
            text += chunk.text
        echo(f"lm ok: {prompt!r} -> {text.strip()!r}")
    finally:
        await engine.shutdown()
    from sentence_transformers import SentenceTransformer

    vector = SentenceTransformer(str(resolve_embedder(settings)), device="cpu").encode(["hello"])
    echo(f"embedder ok: dimension {vector.shape[1]}")


@config_app.command("show")
def config_show(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Print the effective settings as YAML (API keys only as their sha256 digests)."""
    import yaml

    with user_errors():
        settings = build_settings(config, data_dir)
        echo(yaml.safe_dump(settings.safe_dump(), sort_keys=False))


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(chat)
    app.add_typer(models_app, name="models")
    app.add_typer(config_app, name="config")
