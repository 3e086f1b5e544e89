"""Answer evaluation through the exact chat path: questions with gold answers in, EM/F1, grounding, abstention out.

Contract:
- `AnswerEvaluator(chat).run(items, model, collection, principal, on_result)` asks every `QAItem` (see
  `assistant.qa_sets`) as a one-turn chat through `ChatService.prepare` + `complete`, exactly as
  `POST /v1/chat/completions` would, greedy (temperature 0) so a run is reproducible, with the platform's defaults
  for everything else; an item's own `collection` wins over `collection`. Each reply is scored with
  `assistant.answer_metrics` (`score_reply`), and `on_result` sees every result as it comes (progress, curves).
- `summarize(results)`: exact match, F1 and contains-answer over the answerable questions (the reply without its
  `[n]` markers; an abstention scores 0); citation accuracy (a cited source holds a gold answer; cited = the sources
  the reply marks `[n]`, all the sources shown when it marks none) and grounding (share of the reply's tokens found in
  those sources) over answerable questions answered with sources; abstention precision/recall on the unanswerable
  ones; latency p50/p95 (prepare + generate, seconds) over all.
- `write_report(folder, report)` writes `report.json`, `report.md` and, when there are at least two answerable
  questions, `curves.png` (running EM/F1 per answered question).
- `EvaluationService` is the REST side (`POST /v1/evaluations`): `start()` validates the file, model and collection
  (4xx before anything runs) and runs the evaluation as a background task of the server's event loop; its state (an
  `EvaluationRun`: status, progress, running metrics, curve, then the report) is a JSON file under
  `<data_dir>/runs/evaluations/ID/` rewritten after every question, so `get(id)` works during the run and after a
  restart; a run a restart interrupted is marked failed. The service returns `EvaluationRun` records; the JSON is
  made in `serving.rest_format`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from assistant import answer_metrics as m
from assistant.durable import write_atomic
from assistant.errors import NotFoundError, RateLimitedError, UnprocessableError
from assistant.qa_sets import QAItem, parse_qa_file
from assistant.settings import Settings
from serving.admission import Admission, Lease
from serving.principal import ANONYMOUS, Principal
from serving.schemas import ChatCompletionRequest
from serving.services.chat_service import ChatService

log = logging.getLogger(__name__)
FINAL = ("succeeded", "failed", "cancelled")


@dataclass
class QuestionResult:
    """One question's reply and its scores (None where a score does not apply)."""

    id: str
    question: str
    answers: list[str]
    unanswerable: bool
    reply: str
    retrieval: str
    latency_s: float
    abstained: bool
    exact_match: float | None = None
    f1: float | None = None
    contains: float | None = None
    citation_correct: float | None = None
    grounding: float | None = None
    cited: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0


def score_reply(
    item: QAItem, reply: str, sources: Sequence[str], latency_s: float, retrieval: str = "rag", **extra: Any
) -> QuestionResult:
    """Score one reply given the texts of the sources it was shown, in prompt order (source [n] = sources[n-1])."""
    abstained = m.is_abstention(reply)
    result = QuestionResult(
        item.id, item.question, list(item.answers), item.unanswerable, reply, retrieval, latency_s, abstained, **extra
    )
    if item.unanswerable:
        return result
    answer = "" if abstained else m.strip_citations(reply)
    result.exact_match = m.best_exact_match(answer, item.answers)
    result.f1 = m.best_f1(answer, item.answers)
    result.contains = m.best_contains(answer, item.answers)
    if sources and not abstained:
        result.cited = [i for i in m.cited_indices(reply) if 1 <= i <= len(sources)]
        cited = [sources[i - 1] for i in result.cited] or list(sources)
        result.citation_correct = m.cites_answer(cited, item.answers)
        result.grounding = m.grounding(answer, cited)
    return result


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def summarize(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """The aggregate metrics of a run (see the module contract)."""
    answerable = [r for r in results if not r.unanswerable]
    with_sources = [r for r in answerable if r.citation_correct is not None]
    return {
        "questions": len(results),
        "answerable": len(answerable),
        "unanswerable": len(results) - len(answerable),
        "exact_match": _mean([r.exact_match for r in answerable]),
        "f1": _mean([r.f1 for r in answerable]),
        "contains": _mean([r.contains for r in answerable]),
        "answered_with_sources": len(with_sources),
        "citation_accuracy": _mean([r.citation_correct for r in with_sources]),
        "grounding": _mean([r.grounding for r in with_sources]),
        "abstention": m.abstention_scores([r.abstained for r in results], [r.unanswerable for r in results]),
        "latency_s": m.latency_summary([r.latency_s for r in results]),
        "ran_to_length_limit": _mean([float(r.finish_reason == "length") for r in results]),
        "mean_completion_tokens": _mean([float(r.completion_tokens) for r in results]),
    }


class RunningCurve:
    """Running EM/F1 after each answerable question: the curve of a run."""

    def __init__(self) -> None:
        self.points: list[dict[str, float]] = []
        self._em = self._f1 = 0.0

    def add(self, result: QuestionResult) -> None:
        if result.unanswerable or result.f1 is None or result.exact_match is None:
            return
        self._em += result.exact_match
        self._f1 += result.f1
        n = len(self.points) + 1
        self.points.append({"answered": n, "exact_match": self._em / n, "f1": self._f1 / n})


# ---------------------------------------------------------------- running


class AnswerEvaluator:
    """Asks questions through the chat service and scores the replies."""

    def __init__(self, chat: ChatService, max_tokens: int | None = None, admission: Admission | None = None) -> None:
        self.chat = chat
        self.max_tokens = max_tokens
        self.admission = admission  # the server's: each question takes a generation slot like any user's chat

    async def ask(self, item: QAItem, model: str, collection: str | None, principal: Principal) -> QuestionResult:
        collections = item.collection or collection
        request = ChatCompletionRequest.model_validate(
            {
                "model": model,
                "messages": [{"role": "user", "content": item.question}],
                "temperature": 0,
                "max_tokens": self.max_tokens,
                "collections": [collections] if collections else None,
            }
        )
        started = time.perf_counter()
        prepared = await self.chat.prepare(request, principal)
        lease = await self._slot() if prepared.fixed_answer is None else None
        try:
            answer = await self.chat.answer(prepared)
        finally:
            if lease is not None:
                lease.release()
        latency = time.perf_counter() - started
        return score_reply(
            item,
            answer.text,
            [s["text"] for s in prepared.sources()],
            latency,
            prepared.retrieval,
            finish_reason=answer.finish_reason,
            completion_tokens=answer.completion_tokens,
        )

    async def _slot(self) -> Lease | None:
        """A generation slot; an evaluation waits for one (retrying after a full queue's 429) rather than fail."""
        while self.admission is not None:
            try:
                return await self.admission.acquire()
            except RateLimitedError as exc:
                await asyncio.sleep(exc.retry_after)
        return None

    async def run(
        self,
        items: Sequence[QAItem],
        model: str,
        collection: str | None = None,
        principal: Principal = ANONYMOUS,
        on_result: Callable[[QuestionResult], Any] | None = None,
    ) -> list[QuestionResult]:
        results = []
        for item in items:
            result = await self.ask(item, model, collection, principal)
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results


def build_report(
    results: Sequence[QuestionResult], params: dict[str, Any], curve: RunningCurve | None = None
) -> dict[str, Any]:
    if curve is None:
        curve = RunningCurve()
        for result in results:
            curve.add(result)
    return {
        "object": "evaluation.report",
        "params": params,
        "metrics": summarize(results),
        "curve": curve.points,
        "results": [asdict(r) for r in results],
    }


# ---------------------------------------------------------------- reports


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_report(report: dict[str, Any]) -> str:
    metrics, params = report["metrics"], report["params"]
    abstention, latency = metrics["abstention"], metrics["latency_s"]
    rows = [
        (
            "questions (answerable / unanswerable)",
            f"{metrics['questions']} ({metrics['answerable']} / {metrics['unanswerable']})",
        ),
        ("exact match", _fmt(metrics["exact_match"])),
        ("F1", _fmt(metrics["f1"])),
        ("contains answer", _fmt(metrics["contains"])),
        (
            f"citation accuracy ({metrics['answered_with_sources']} answered with sources)",
            _fmt(metrics["citation_accuracy"]),
        ),
        ("grounding", _fmt(metrics["grounding"])),
        (f"abstention precision ({abstention['abstentions']} abstentions)", _fmt(abstention["precision"])),
        (f"abstention recall ({abstention['unanswerable']} unanswerable)", _fmt(abstention["recall"])),
        ("latency p50 / p95 (s)", f"{_fmt(latency['p50'])} / {_fmt(latency['p95'])}"),
        ("replies cut at max_tokens", _fmt(metrics["ran_to_length_limit"])),
    ]
    lines = [
        "# Answer evaluation",
        "",
        f"File `{params.get('file')}`, model `{params.get('model')}`, collection `{params.get('collection')}`.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        "## Worst answers (answerable, lowest F1)",
        "",
        "| question | gold | reply | F1 |",
        "|---|---|---|---|",
    ]
    answerable = [r for r in report["results"] if not r["unanswerable"]]
    for r in sorted(answerable, key=lambda r: r["f1"])[:10]:
        reply = r["reply"].replace("|", "\\|").replace("\n", " ")[:160]
        lines.append(f"| {r['question']} | {r['answers'][0]} | {reply} | {r['f1']:.2f} |")
    return "\n".join(lines) + "\n"


def plot_curve(points: Sequence[dict[str, float]], path: Path) -> Path | None:
    """Running EM and F1 against the number of answered questions, as a PNG (None when under two points)."""
    if len(points) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = [p["answered"] for p in points]
    ax.plot(x, [p["f1"] for p in points], label="F1")
    ax.plot(x, [p["exact_match"] for p in points], label="exact match")
    ax.set(xlabel="answerable questions asked", ylabel="running mean", ylim=(0, 1), title="Answer quality")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_report(folder: Path, report: dict[str, Any]) -> dict[str, str]:
    """report.json, report.md and curves.png in `folder`; returns the files written by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"json": folder / "report.json", "markdown": folder / "report.md"}
    write_atomic(files["json"], json.dumps(report, indent=2))
    write_atomic(files["markdown"], markdown_report(report))
    curve = plot_curve(report["curve"], folder / "curves.png")
    if curve is not None:
        files["curves"] = curve
    return {kind: str(path) for kind, path in files.items()}


# ---------------------------------------------------------------- the REST job


@dataclass
class EvaluationRun:
    """One evaluation run inside the server: its progress, running metrics and curve, then its report and files.

    Stored as `evaluation.json` in its folder (`asdict`), rewritten after every question; `report` (with the
    per-question `results`) is there once the run has succeeded."""

    id: str
    status: str  # running | succeeded | failed | cancelled
    params: dict[str, Any] = field(default_factory=dict)  # file, model, collection, limit
    total: int = 0
    done: int = 0
    progress: float = 0.0
    metrics: dict[str, Any] | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    report: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)  # kind (json, markdown, curves) -> path
    error: str | None = None
    created_at: int = 0
    finished_at: int | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EvaluationRun:
        """A run read back from its stored state (keys it does not know, like an older file's `object`, ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in state.items() if key in known})

    def without_results(self) -> EvaluationRun:
        """The run with its report's per-question results left out (the summary view)."""
        if not self.report:
            return self
        return replace(self, report={k: v for k, v in self.report.items() if k != "results"})


def _read_run(path: Path) -> EvaluationRun | None:
    """An evaluation's stored state, or None (logged) when the file is damaged: it is skipped, never fatal."""
    try:
        state = json.loads(path.read_text())
        if isinstance(state, dict) and isinstance(state.get("id"), str) and isinstance(state.get("status"), str):
            return EvaluationRun.from_state(state)
        raise ValueError("not an evaluation state")
    except (OSError, ValueError, TypeError) as exc:
        log.warning("skipping the damaged evaluation file %s: %s", path, exc)
        return None


class EvaluationService:
    """Evaluation runs inside the server: started over REST, run as background tasks, stored as JSON files; the
    methods return `EvaluationRun` records (the JSON is made in `serving.rest_format`)."""

    def __init__(self, settings: Settings, chat: ChatService, admission: Admission | None = None) -> None:
        self.chat = chat
        self.admission = admission
        self.max_running = settings.server.max_concurrent_evaluations
        self.folder = settings.runs_dir / "evaluations"
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.fail_interrupted()

    def _state_path(self, run_id: str) -> Path:
        return self.folder / Path(run_id).name / "evaluation.json"

    def _save(self, run: EvaluationRun) -> None:
        write_atomic(self._state_path(run.id), json.dumps(asdict(run)))  # old or new after a crash, never half

    def fail_interrupted(self) -> list[str]:
        """Runs left 'queued'/'running' by a previous server process are marked failed."""
        failed = []
        for path in sorted(self.folder.glob("*/evaluation.json")) if self.folder.is_dir() else []:
            run = _read_run(path)
            if run is None:  # one damaged file must not stop the server from becoming ready
                continue
            if run.status not in FINAL:
                run.status, run.error = "failed", "interrupted: the server stopped during the run"
                self._save(run)
                failed.append(run.id)
        return failed

    def start(
        self,
        filename: str,
        data: bytes,
        model: str | None = None,
        collection: str | None = None,
        limit: int | None = None,
        principal: Principal = ANONYMOUS,
    ) -> EvaluationRun:
        """Validate and start a run (4xx before anything runs); the run as started, without its report."""
        running = [task for task in self._tasks.values() if not task.done()]
        if len(running) >= self.max_running:
            raise RateLimitedError(
                f"{len(running)} evaluation(s) running, the limit (server.max_concurrent_evaluations); retry when "
                "it has finished",
                retry_after=30,
            )
        items = parse_qa_file(filename, data)[:limit]
        model = model or self.chat.catalog.base_name
        self.chat.catalog.resolve(model, principal)  # 404 for an unknown model, before anything runs
        if self.chat.retrieval is not None:
            named = sorted({c for c in [collection, *(i.collection for i in items)] if c})
            self.chat.retrieval.scope(named or None, principal)  # 404 unknown / 403 not readable
        run = EvaluationRun(
            f"eval-{uuid.uuid4().hex[:20]}",
            "running",
            params={"file": filename, "model": model, "collection": collection, "limit": limit},
            total=len(items),
            created_at=int(time.time()),
        )
        self._save(run)
        self._tasks[run.id] = asyncio.create_task(self._run(run, items, principal))
        return replace(run)  # a copy: the task goes on updating its own

    async def _run(self, run: EvaluationRun, items: Sequence[QAItem], principal: Principal) -> None:
        results: list[QuestionResult] = []
        curve = RunningCurve()

        def on_result(result: QuestionResult) -> None:
            results.append(result)
            curve.add(result)
            run.done, run.progress, run.metrics = len(results), len(results) / len(items), summarize(results)
            run.curve = list(curve.points)
            self._save(run)

        try:
            params = run.params
            await AnswerEvaluator(self.chat, admission=self.admission).run(
                items, params["model"], params["collection"], principal, on_result
            )
            report = build_report(results, params, curve)
            run.files = await asyncio.to_thread(write_report, self._state_path(run.id).parent, report)
            run.status, run.report = "succeeded", report
        except asyncio.CancelledError:
            run.status, run.error = "cancelled", "the server stopped during the run"
            raise
        except Exception as exc:  # the run fails, the server goes on
            log.exception("evaluation %s failed", run.id)
            run.status, run.error = "failed", f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
        finally:
            run.finished_at = int(time.time())
            self._save(run)
            self._tasks.pop(run.id, None)

    def get(self, run_id: str, with_results: bool = True) -> EvaluationRun:
        path = self._state_path(run_id)
        if not path.is_file():
            raise NotFoundError(f"no evaluation {run_id}", param="evaluation_id")
        run = _read_run(path)
        if run is None:
            raise UnprocessableError(f"the stored state of evaluation {run_id} is damaged (see the server log)")
        return run if with_results else run.without_results()

    def file(self, run_id: str, kind: str) -> Path:
        path = self.get(run_id, with_results=False).files.get(kind)
        if not path or not Path(path).is_file():
            raise NotFoundError(f"evaluation {run_id} has no {kind} file (yet)", param="kind")
        return Path(path)

    def list_runs(self, limit: int = 50) -> list[EvaluationRun]:
        """The newest runs first (damaged files skipped); the routes show them without their reports."""
        paths = sorted(self.folder.glob("*/evaluation.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        runs = (_read_run(p) for p in paths[:limit])
        return [run for run in runs if run is not None]

    async def shutdown(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
