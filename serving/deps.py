"""The FastAPI dependencies routes use, in one place: the app state, the caller, and each service on `app.state`.

Contract: a route names what it needs as a parameter typed with one of the `...Dep` aliases here (`StateDep`,
`PrincipalDep`, `ChatDep`, `ChatHistoryDep`, `DocumentsDep`, `RetrievalDep`, `EvaluationsDep`, `SourcesDep`,
`RewardsDep`); the getter behind it answers 503 (`ServiceUnavailableError`) while the service is not ready, so a
route never sees None.
`require(service, what)` is the same 503 for a route that reaches an optional service on the state itself.
`require_api_key(request, state)` resolves the caller (`serving.auth.authenticate`); who may call a route is declared
with `serving.access.allow`, not here.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Request

from assistant.errors import ServiceUnavailableError
from serving.auth import authenticate
from serving.principal import Principal
from serving.services.answer_eval_service import EvaluationService
from serving.services.chat_history_service import ChatHistory
from serving.services.chat_service import ChatService
from serving.services.document_service import DocumentsService
from serving.services.retrieval_service import RetrievalService
from serving.services.reward_service import RewardService
from serving.services.source_service import SourcesService
from serving.state import AppState

T = TypeVar("T")


def require(service: T | None, what: str) -> T:
    """The service, or 503 while the server is still starting."""
    if service is None:
        raise ServiceUnavailableError(f"the {what} is not ready yet; retry shortly")
    return service


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.assistant
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def require_api_key(request: Request, state: StateDep) -> Principal:
    """The caller (a key, a console session, or the anonymous admin when no key exists); 401 otherwise."""
    return authenticate(state, request.headers.get("authorization"), request.headers.get("cookie"))


PrincipalDep = Annotated[Principal, Depends(require_api_key)]


def get_chat_service(state: StateDep) -> ChatService:
    if (dead := state.engine_dead_reason()) is not None:
        raise ServiceUnavailableError(f"the generation engine stopped: {dead}; it is being restarted, retry shortly")
    if not state.ready or state.chat is None:
        detail = f": {state.load_error}" if state.load_error else "; retry shortly"
        raise ServiceUnavailableError(f"the model is not loaded yet{detail}")
    return state.chat


def get_chat_history(state: StateDep) -> ChatHistory:
    return ChatHistory(state.db)


def get_documents(state: StateDep) -> DocumentsService:
    return require(state.documents, "document store")


def get_retrieval(state: StateDep) -> RetrievalService:
    return require(state.retrieval, "retriever")


def get_evaluations(state: StateDep) -> EvaluationService:
    if state.evaluations is None or state.engine_dead_reason() is not None:
        raise ServiceUnavailableError("the model is not loaded yet; retry shortly")
    return state.evaluations


def get_sources(state: StateDep) -> SourcesService:
    service = state.extras.get("sources")
    return require(service if isinstance(service, SourcesService) else None, "sources service")


async def get_rewards(state: StateDep) -> RewardService:
    """The reward scorer, made on first use on the event loop (one per server; it loads reward models lazily)."""
    service = state.extras.get("rewards")
    if not isinstance(service, RewardService):
        service = RewardService(state.parts, state.admission)
        state.extras["rewards"] = service
    return service


ChatDep = Annotated[ChatService, Depends(get_chat_service)]
ChatHistoryDep = Annotated[ChatHistory, Depends(get_chat_history)]
DocumentsDep = Annotated[DocumentsService, Depends(get_documents)]
RetrievalDep = Annotated[RetrievalService, Depends(get_retrieval)]
EvaluationsDep = Annotated[EvaluationService, Depends(get_evaluations)]
SourcesDep = Annotated[SourcesService, Depends(get_sources)]
RewardsDep = Annotated[RewardService, Depends(get_rewards)]
