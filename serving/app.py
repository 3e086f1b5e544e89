"""FastAPI app factory.

Contract: `create_app(settings, engine=None)` returns an app whose lifespan migrates the database, then loads the model
and starts the engine in the background (so `/health/live` answers at once and `/health` turns 200 when the engine is
ready). The app refuses to start when it would serve without keys beyond loopback (`serving.middleware`) or when a
route does not declare who may call it (`serving.access`). Heavy objects live on `app.state.assistant`
(`serving.state.AppState`) and reach routes through `Annotated` dependencies. An `engine` passed in (tests,
embedding in another process) is started instead of building one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from assistant.engine import GenerationEngine
from assistant.errors import AssistantError
from assistant.index.locking import IndexLock
from assistant.model_files import resolve_lm
from assistant.parts import Parts
from assistant.settings import Settings
from assistant.startup import import_model_libraries, start_up
from assistant.storage import Database
from serving import tracing
from serving.access import check_declared
from serving.admission import Admission
from serving.catalog import ModelCatalog
from serving.engines import make_engine
from serving.error_handlers import install_error_handlers
from serving.middleware import RequestId, check_exposure, configure_request_logs, install_guards
from serving.openapi_links import install_links
from serving.prometheus_metrics import Metrics, install_metrics
from serving.replica_sync import run_replica_sync
from serving.routes import (
    adapters,
    audit,
    auth_oidc,
    chat_completions,
    chats,
    documents,
    evaluations,
    feedback,
    health,
    jobs,
    keys,
    metrics,
    models,
    retrieve,
    rewards,
    sources,
)
from serving.routes.audit import AuditRecorder
from serving.services.adapter_service import AdapterService
from serving.services.answer_eval_service import EvaluationService
from serving.services.chat_service import ChatService
from serving.services.document_service import DocumentsService
from serving.services.feedback_service import FeedbackService, PreferenceImporter, PreferenceStore
from serving.services.job_service import JobMonitor, JobService, WorkerSupervisor
from serving.services.key_service import KeyStore, run_key_sync, stored_keys_exist
from serving.services.oidc_service import OIDCSignIn
from serving.services.retrieval_service import RetrievalService
from serving.services.source_service import SourcesService
from serving.state import AppState
from serving.web import install_web
from training.uploads import prune_expired

log = logging.getLogger(__name__)


def build_retrieval(parts: Parts, lock: IndexLock, metrics: Metrics) -> RetrievalService:
    """The retrieval service over the parts' retriever (searches take `lock`, which index writes hold)."""
    return RetrievalService(parts.retriever, parts.db, lock, metrics)


def build_documents(parts: Parts, lock: IndexLock) -> DocumentsService:
    """The documents service over the parts' ingest service (recovers an interrupted ingest under `lock`)."""
    from assistant.embedding import embedder_space
    from assistant.index.replication import IndexFollower, space_key
    from ingest.ingest_service import IngestService

    # Vectors other replicas stored in the shared database are read, not re-embedded by the recovery below.
    space = space_key(embedder_space(parts.settings, parts.embedder.dim))
    IndexFollower(parts.db, parts.index, lock, space).reconcile()
    with lock:
        ingest = IngestService.of(parts)
    sync_limit = int(parts.settings.server.sync_upload_mb * 1024 * 1024)
    documents = DocumentsService(ingest, parts.db, lock, sync_limit)
    documents.remove_stale_incoming()
    return documents


def build_store(parts: Parts, lock: IndexLock, metrics: Metrics) -> tuple[DocumentsService, RetrievalService]:
    """Documents and retrieval services over one data directory (the embedder and index are shared)."""
    return build_documents(parts, lock), build_retrieval(parts, lock, metrics)


def _wire_engine(state: AppState, engine: GenerationEngine) -> None:
    """Build the services that use the engine (again after an engine restart: none keeps a dead engine)."""
    state.engine = engine
    state.chat = ChatService(state.settings, engine, state.catalog, state.db, state.metrics, state.retrieval)
    state.evaluations = EvaluationService(state.settings, state.chat, state.admission)
    state.adapters = AdapterService.of(state.parts, engine)
    state.preference_importer = PreferenceImporter.of(state.parts, engine.render_chat)


async def _new_engine(state: AppState) -> GenerationEngine:
    model_dir = await asyncio.to_thread(resolve_lm, state.settings)
    return make_engine(state.settings.engine, model_dir, state.catalog.base_name)


async def _load(state: AppState, engine: GenerationEngine | None) -> None:
    """Open the document store, start the engine, and mark the app ready (or record why it failed)."""
    try:
        await asyncio.to_thread(import_model_libraries)  # before the engine and the embedder load side by side
        store = asyncio.to_thread(build_store, state.parts, state.index_lock, state.metrics)
        if engine is None:
            engine = await _new_engine(state)
        started = time.perf_counter()
        (state.documents, state.retrieval), _ = await asyncio.gather(store, engine.start())
        _wire_engine(state, engine)
        state.preferences = PreferenceStore.of(state.parts)
        state.feedback = FeedbackService.of(state.parts)
        state.ready = True
        log.info("ready in %.1f s; serving '%s'", time.perf_counter() - started, state.catalog.base_name)
    except AssistantError as exc:
        state.load_error = exc.message
        log.error("the server could not start: %s", exc.message)
    except Exception as exc:
        state.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("the server could not start")


async def _watch_engine(state: AppState) -> None:
    """Lifespan task: when the engine dies, answer 503 at once, then restart it or exit (`engine.on_failure`).

    Every request that needs the engine reads `state.ready` first, so from the moment the death is seen no request
    reaches the dead engine; `/health` says 503 with the reason until a new engine serves.
    """
    settings = state.settings.engine
    restarts = 0
    while True:
        await asyncio.sleep(settings.watchdog_s)
        engine = state.engine
        reason = state.engine_dead_reason()
        if reason is None or engine is None:
            continue
        state.ready = False
        state.load_error = f"the generation engine stopped: {reason}"
        state.extras["engine_restarts"] = restarts
        log.error("%s", state.load_error)
        if settings.on_failure == "exit" or restarts >= settings.max_restarts:
            log.error("exiting so the supervisor restarts the server (engine.on_failure=%s, %d restarts made)",
                      settings.on_failure, restarts)  # fmt: skip
            os.kill(os.getpid(), signal.SIGTERM)
            return
        restarts += 1
        await _restart_engine(state, engine, restarts)


async def _restart_engine(state: AppState, dead: GenerationEngine, attempt: int) -> None:
    with contextlib.suppress(Exception):  # what is left of the dead engine: its own shutdown may fail too
        await dead.shutdown()
    try:
        engine = await _new_engine(state)
        await engine.start()
    except Exception as exc:
        state.load_error = f"the generation engine stopped and could not be restarted: {exc}"
        log.exception("engine restart %d failed; exiting so the supervisor restarts the server", attempt)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _wire_engine(state, engine)
    state.extras["engine_restarts"] = attempt
    state.load_error = None
    state.ready = True
    log.warning("engine restarted (%d of at most %d)", attempt, state.settings.engine.max_restarts)


async def _retention(settings: Settings, db: Database, interval_s: float = 3600.0) -> None:
    """Delete expired training uploads and run directories (`training.retention_days`) now and every hour."""
    while True:
        try:
            await asyncio.to_thread(prune_expired, settings, db)
        except Exception:  # a locked file or a busy database must not stop the server's background tasks
            log.exception("retention pass failed")
        await asyncio.sleep(interval_s)


def _sources(state: AppState) -> SourcesService:
    """The directory sources service, on `state.extras["sources"]`: it syncs through the documents' ingest service."""
    service = SourcesService(state.settings, state.db, lambda: state.documents.ingest if state.documents else None)
    state.extras["sources"] = service
    return service


async def _activate(state: AppState, name: str, version: int, force: bool) -> None:
    if state.adapters is not None:
        await state.adapters.activate(name, version, force)


def create_app(settings: Settings, engine: GenerationEngine | None = None) -> FastAPI:
    # no keys beyond loopback (settings or database): refuse to start unless allowed on purpose
    check_exposure(settings, lambda: stored_keys_exist(settings.resolved_database_url))
    app_metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_declared(app)  # again: routes or mounts added after create_app returned
        start_up(settings)
        tracing.configure(settings)  # chat spans, exported over OTLP/HTTP when server.otlp_endpoint is set
        configure_request_logs(settings)  # request ids (and trace ids) in every log record; JSON lines if asked
        parts = Parts(settings)
        db = await asyncio.to_thread(lambda: parts.db)  # migrated
        catalog = ModelCatalog.of(parts)
        state = AppState(settings=settings, parts=parts, db=db, catalog=catalog, metrics=app_metrics)
        server = settings.server
        state.admission = Admission(server.max_concurrent_generations, server.max_queued_requests, app_metrics)
        state.started_at = time.time()
        app.state.assistant = state
        state.extras["keys"] = key_store = KeyStore(db)  # issued keys, before the first request is answered
        if settings.oidc is not None:  # console sign-in: the provider client and the session cookies' key
            state.extras["oidc"] = OIDCSignIn.of(settings)
        await asyncio.to_thread(key_store.refresh)
        state.jobs = JobService.of(parts)
        monitor = JobMonitor(settings, db, activate=lambda *args: _activate(state, *args))
        await asyncio.to_thread(monitor.fail_orphans)  # jobs a crash or a restart left 'running'
        supervisor = WorkerSupervisor(settings)
        state.extras["worker"] = supervisor  # `/health` shows its status
        if settings.training.run_worker:
            supervisor.start()
        tasks = [
            asyncio.create_task(_load(state, engine)),
            asyncio.create_task(monitor.run()),
            asyncio.create_task(_retention(settings, db)),
            asyncio.create_task(run_replica_sync(state)),  # other replicas' index changes and activations
            asyncio.create_task(_sources(state).run()),  # scheduled and file-event syncs of directory sources
            asyncio.create_task(run_key_sync(key_store, server.key_sync_s)),  # keys issued/revoked through any replica
            asyncio.create_task(_watch_engine(state)),  # a dead engine: 503, then a restart or an exit
        ]
        try:
            yield
        finally:
            if state.evaluations is not None:
                await state.evaluations.shutdown()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(supervisor.stop)
            if state.engine is not None:
                await state.engine.shutdown()
            parts.close()
            tracing.shutdown()  # flush the last spans

    app = FastAPI(
        title="Assistant platform",
        version="0.1.0",
        description="Grounded chat over your documents (OpenAI-compatible), with LoRA adapters trained from feedback.",
        lifespan=lifespan,
        docs_url=None,  # /docs is served by serving.web from vendored Swagger UI files (no CDN)
        redoc_url=None,
    )
    install_error_handlers(app)
    install_metrics(app, app_metrics)
    install_guards(app, settings)
    app.add_middleware(AuditRecorder, fastapi_app=app)  # outermost: refusals by the guards are recorded too
    app.add_middleware(RequestId)  # around everything: each request's id in its logs, audit row and answer
    # Each router (or route) declares who may call it (serving/access.py); a route without a declaration refuses to
    # start the app rather than being served open.
    for module in (
        health,
        models,
        chat_completions,
        chats,
        documents,
        retrieve,
        feedback,
        adapters,
        jobs,
        metrics,
        evaluations,
        rewards,
        keys,
        audit,
        auth_oidc,
    ):
        app.include_router(module.router)
    app.include_router(sources.router)  # directory sources (admins)
    if settings.oidc is not None:  # console sign-in through the company's identity provider
        app.include_router(auth_oidc.sign_in_router)
    install_web(app)  # the console at / (assets under /static)
    check_declared(app)
    install_links(app)
    return app
