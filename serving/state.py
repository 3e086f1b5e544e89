"""What the app keeps on `app.state` (the dependencies routes use to reach it are in `serving.deps`).

Contract: `AppState` is filled by the lifespan; until the engine is loaded `ready` is False and routes that need the
engine answer 503 (so `/health` can report liveness while a large model is still loading).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assistant.engine import GenerationEngine
from assistant.index.locking import IndexLock
from assistant.parts import Parts
from assistant.settings import Settings
from assistant.storage import Database
from serving.admission import Admission
from serving.catalog import ModelCatalog
from serving.prometheus_metrics import Metrics
from serving.services.adapter_service import AdapterService
from serving.services.answer_eval_service import EvaluationService
from serving.services.chat_service import ChatService
from serving.services.document_service import DocumentsService
from serving.services.feedback_service import FeedbackService, PreferenceImporter, PreferenceStore
from serving.services.job_service import JobService
from serving.services.retrieval_service import RetrievalService


@dataclass
class AppState:
    settings: Settings
    parts: Parts
    db: Database
    catalog: ModelCatalog
    metrics: Metrics
    engine: GenerationEngine | None = None
    chat: ChatService | None = None
    documents: DocumentsService | None = None
    retrieval: RetrievalService | None = None
    adapters: AdapterService | None = None
    feedback: FeedbackService | None = None
    preferences: PreferenceStore | None = None
    preference_importer: PreferenceImporter | None = None
    jobs: JobService | None = None
    admission: Admission | None = None
    evaluations: EvaluationService | None = None
    index_lock: IndexLock = field(default_factory=IndexLock)
    ready: bool = False
    load_error: str | None = None
    started_at: float = 0.0
    extras: dict[str, object] = field(default_factory=dict)

    def engine_dead_reason(self) -> str | None:
        """Why the serving engine stopped, or None: read on every request, so a death is a 503 from the moment the
        engine reports it, not from the watchdog's next look."""
        return self.engine.dead_reason() if self.ready and self.engine is not None else None
