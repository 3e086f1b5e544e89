"""The job worker: a separate process that claims queued training jobs from the database and runs them.

Contract:
- `JobWorker.claim()` takes the oldest 'queued' job with one conditional UPDATE (two workers never take the same job)
  and marks it 'running' under this worker's id `host:pid`. On PostgreSQL the pick is `SELECT ... FOR UPDATE SKIP
  LOCKED`, so concurrent workers each take a different job at once instead of waiting on (and losing) the same row.
- `JobWorker(parts)` works with the process's one `Parts`, which it passes down (training, selection, RAG sources,
  the gate), so one job loads the embedder at most once.
- `JobWorker.execute(job_id)` validates the stored request back into `training.request.JobRequest`, writes the job's
  data as one file (stored preference pairs since a point, stored thumbs or prompts, or the uploaded file), trains
  (`training.runs.train`; the runner holds data out for the gate and hands it over in memory) with a callback that
  reports progress and metrics to the job row and stops the run when the job is cancelled, evaluates the candidate
  with `training.gate.run_gate` against the registry's active version, and only then registers it with the gate's
  verdict (`training.registry.AdapterRegistry` writes every adapter row; the worker writes none). A
  heartbeat thread updates the row every few seconds. With `data.source = "collection"` the data are questions
  generated from the collection's chunks (`training.data.collection`; the generation report goes to the job's
  metrics under `data.generation` and to the job log). Any error fails the job with its message; a failed or
  cancelled job registers nothing and changes nothing that is active. The job's log is `runs/jobs/<id>.log`.
- SIGTERM (the server stopping its worker) fails the running job as interrupted and exits.
- `python -m training.worker [--config FILE] [--data-dir DIR] [--once]` runs it (also `assistant worker`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from assistant.errors import AssistantError, UnprocessableError
from assistant.job_states import WORKER_WRITABLE, JobState, job_log_path
from assistant.parts import Parts
from assistant.settings import load_settings
from assistant.startup import start_up
from assistant.storage import Job, PreferencePair
from assistant.storage.queries import preference_filters
from training.data.feedback_data import STORED, source_collections, write_source
from training.gate import HeldOut, load_squad_qa, run_gate
from training.methods import METHODS
from training.progress import DATA_SHARE, GATE_SHARE, JobCancelled, RunProgress
from training.registry import AdapterRegistry
from training.request import JobData, JobRequest
from training.uploads import resolve_upload

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0


class WorkerStopped(BaseException):
    """Raised by the SIGTERM handler: the worker is being shut down."""


def _now() -> datetime:
    return datetime.now(UTC)


class JobWorker:
    def __init__(self, parts: Parts, worker_id: str | None = None) -> None:
        self.parts = parts  # the process's one Parts, passed down to training, selection, RAG sources and the gate
        self.settings = parts.settings
        self.db = parts.db
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"

    # ------------------------------------------------------------ claiming

    def claim(self) -> str | None:
        with self.db.session() as session:
            oldest = select(Job.id).where(Job.state == JobState.QUEUED).order_by(Job.created_at).limit(1)
            job_id = session.scalar(oldest.with_for_update(skip_locked=True))  # no FOR UPDATE on SQLite: ignored
            if job_id is None:
                return None
            taken = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.QUEUED)
                .values(
                    state=JobState.RUNNING, worker=self.worker_id, started_at=_now(), heartbeat_at=_now(), progress=0.0
                )
            )
        return job_id if taken.rowcount == 1 else None  # type: ignore[attr-defined]

    def run_once(self) -> bool:
        job_id = self.claim()
        if job_id is None:
            return False
        self.execute(job_id)
        return True

    def run_forever(self, poll_s: float = 1.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        log.info("worker %s waiting for jobs", self.worker_id)
        while not stop.is_set():
            if not self.run_once():
                stop.wait(poll_s)

    # ------------------------------------------------------------ running one job

    def execute(self, job_id: str) -> None:
        handler = self._job_log(job_id)
        beat = threading.Event()
        threading.Thread(target=self._heartbeat, args=(job_id, beat), daemon=True).start()
        try:
            result = self._run(job_id)
            self._finish(job_id, JobState.SUCCEEDED, metrics=result)
        except JobCancelled:
            phase = self._phase(job_id) or "starting"
            self._finish(job_id, JobState.CANCELLED, error=f"cancelled while {phase}; nothing was registered")
        except WorkerStopped:
            self._finish(job_id, JobState.FAILED, error="interrupted: the worker was stopped; nothing was registered")
            raise
        except AssistantError as exc:
            log.error("job %s failed: %s", job_id, exc.message)
            self._finish(job_id, JobState.FAILED, error=exc.message)
        except Exception as exc:
            log.exception("job %s failed", job_id)
            self._finish(job_id, JobState.FAILED, error=f"{type(exc).__name__}: {exc}")
        finally:
            beat.set()
            logging.getLogger().removeHandler(handler)
            handler.close()

    def _run(self, job_id: str) -> dict[str, Any]:
        from training.runs import TrainingRequest, register, train

        job = self._request(job_id)
        progress = JobProgress(self, job_id, job.hyperparameters.get("max_minutes"))
        progress.phase("building_data")
        job_dir = self.settings.runs_dir / "jobs" / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        generation = None
        collections: list[str] | None
        if job.data.source == "collection" and METHODS[job.method].collection_data == "text":
            data_file, collections = self._collection_text(job, job_dir)
        elif job.data.source == "collection":
            data_file, collections, generation = self._generated_questions(job, job_dir, progress)
        else:
            data_file, collections = self._data(job, job_dir)
        request = TrainingRequest.for_job(job, data_file, job_id, collections, self.settings.engine.max_lora_rank)
        trained = train(self.parts, request, [ProgressCallback(progress)], progress)
        if generation is not None:  # the data report says what generation made of the documents
            trained.metrics["data"] = {**trained.metrics.get("data", {}), "generation": generation}
        gated = job.gate and trained.kind == "lm"  # a reward model is not a chat adapter
        if gated:
            progress.phase("gating")
        gate = self._gate(job.name, trained.adapter_dir, trained.heldout, progress) if gated else None
        progress.phase("registering")  # the last cancel check: nothing is registered yet
        record = register(self.parts, trained, gate)
        assert record is not None
        logged = trained.run_dir / "log_history.json"
        history = _history(json.loads(logged.read_text())) if logged.is_file() else []
        return {
            **_scalars(trained.metrics),
            "adapter": record.identity,
            "adapter_id": record.id,
            "gate": gate,
            "history": history,
        }

    def _request(self, job_id: str) -> JobRequest:
        """The job's request as the service stored it, validated back into its one type."""
        with self.db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return JobRequest.model_validate(job.params)

    def _data(self, job: JobRequest, job_dir: Path) -> tuple[Path, list[str] | None]:
        """The job's data as one file for the runner, and the collections it came from (None: unknown). The runner
        alone holds data out for the gate."""
        data = job.data
        if data.source == "file":
            return resolve_upload(self.settings, str(data.file_id)), None
        if data.source in STORED:  # thumbs (kto) and served prompts (grpo)
            path = job_dir / f"{data.source}.jsonl"
            write_source(self.db, job.method, data.source, data.since, path)
            return path, source_collections(self.db, job.method, data.source, data.since)
        pairs, collections = self._stored_pairs(data)
        if not pairs:
            raise UnprocessableError("no stored preference pairs match this job's data selection", code="empty_dataset")
        path = job_dir / "pairs.jsonl"
        path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
        return path, collections

    def _collection_text(self, job: JobRequest, job_dir: Path) -> tuple[Path, list[str]]:
        """The collection's chunks as `{"text": ...}` JSONL (continued pretraining)."""
        from training.data.collection import collection_chunks

        name = str(job.data.collection)
        chunks = collection_chunks(self.parts, name)
        if not chunks:
            raise UnprocessableError(f"no chunks in collection {name!r}: upload documents to it first",
                                     param="data.collection", code="empty_dataset")  # fmt: skip
        path = job_dir / "chunks.jsonl"
        path.write_text("".join(json.dumps({"text": c.text}, ensure_ascii=False) + "\n" for c in chunks))
        return path, [name]

    def _generated_questions(
        self, job: JobRequest, job_dir: Path, progress: JobProgress
    ) -> tuple[Path, list[str], dict[str, Any]]:
        """Questions generated from the collection's chunks that pass the round-trip check against this worker's
        retriever (`training.data.collection`), as a question/answer file; generation gets half the data phase's
        share of the budget (the RAFT examples are built from it after). The report goes to the job row at once."""
        from training.data.collection import questions_from_collection, write_qa_file

        name = str(job.data.collection)
        share = progress.share_s(DATA_SHARE / 2)
        until = None if share is None else time.monotonic() + share
        seed = int(job.hyperparameters.get("seed", 42))
        generator = None
        if job.data.generator == "model":
            from assistant.model_files import resolve_lm
            from training.data.model_questions import ModelQuestions

            generator = ModelQuestions(resolve_lm(self.parts.settings))
        questions, report = questions_from_collection(
            self.parts, name, generator, seed=seed, until=until, progress=progress
        )
        generation = report.to_dict()
        (job_dir / "generation_report.json").write_text(json.dumps(generation, indent=1, ensure_ascii=False))
        self.update(progress.job_id, metrics={"data": {"generation": generation}})
        if not questions:
            raise UnprocessableError(
                f"no question generated from collection {name!r} passed the round-trip check ({report.summary()})",
                param="data.collection",
                code="empty_dataset",
            )
        return write_qa_file(questions, job_dir / "questions.jsonl"), [name], generation

    def _stored_pairs(self, data: JobData) -> tuple[list[dict[str, str]], list[str] | None]:
        """The selected pairs, and the union of the collections their sources came from (None if one is unknown)."""
        query = (
            select(PreferencePair)
            .where(*preference_filters(data.provenance, data.since))
            .order_by(PreferencePair.created_at, PreferencePair.id)
        )
        with self.db.session() as session:
            rows = list(session.scalars(query))
            pairs = [{"rendered_prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in rows]
            known = all(p.collections is not None for p in rows)
            collections = sorted({str(c) for p in rows for c in (p.collections or [])}) if known else None
        return pairs, collections

    def _gate(self, name: str, candidate: Path, heldout: HeldOut, progress: RunProgress) -> dict[str, Any]:
        """The candidate (not registered yet) against the active version of its name, on what the run held out,
        fitted to the gate's share of the budget."""
        from assistant.model_files import resolve_lm

        active = AdapterRegistry.of(self.parts).active(name)
        options = self.settings.training
        if options.gate_qa_file and not heldout.qa:
            heldout.qa = load_squad_qa(options.gate_qa_file, options.gate_qa_limit)
        return run_gate(
            self.parts,
            resolve_lm(self.settings),
            candidate,
            active.path if active else None,
            heldout,
            baseline_name=active.identity if active else "base",
            progress=progress,
            seconds=progress.share_s(GATE_SHARE),
        )

    # ------------------------------------------------------------ bookkeeping

    def update(self, job_id: str, **values: Any) -> str:
        """Write progress/metrics/heartbeat while the job is still this worker's and not final; returns its state.

        Compare-and-set: the UPDATE only applies `WHERE state IN ('running', 'cancelling') AND worker = me`, so a job
        the monitor already failed (or that was cancelled) is never written again. The caller sees the state
        ('cancelling': stop; anything final: the job was taken from this worker, stop too).
        """
        with self.db.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state.in_(WORKER_WRITABLE), Job.worker == self.worker_id)
                .values(**values)
            )
            state = session.scalar(select(Job.state).where(Job.id == job_id))
        return str(state)

    def _finish(
        self, job_id: str, state: JobState, metrics: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        """Final state, compare-and-set: a job marked failed by the monitor stays failed if this worker finishes."""
        values: dict[str, Any] = {"state": state, "finished_at": _now(), "error": error}
        if state == JobState.SUCCEEDED:
            values["progress"] = 1.0
        if metrics is not None:
            values["metrics"] = metrics
        with self.db.session() as session:
            changed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state.in_(WORKER_WRITABLE), Job.worker == self.worker_id)
                .values(**values)
            )
            current = session.scalar(select(Job.state).where(Job.id == job_id))
        if getattr(changed, "rowcount", 0) != 1:
            log.warning("job %s finished as %s here, but it is already %s: left as it is", job_id, state, current)
            return
        log.info("job %s %s%s", job_id, state, f": {error}" if error else "")

    def _phase(self, job_id: str) -> str | None:
        with self.db.session() as session:
            return session.scalar(select(Job.phase).where(Job.id == job_id))

    def _heartbeat(self, job_id: str, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                self.update(job_id, heartbeat_at=_now())
            except Exception:  # a busy database must not kill the heartbeat; the next beat retries
                log.warning("heartbeat for job %s failed", job_id, exc_info=True)

    def _job_log(self, job_id: str) -> logging.Handler:
        path = job_log_path(self.settings.runs_dir, job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        return handler


def _history(log_history: list[dict[str, Any]], limit: int = 500) -> list[dict[str, float]]:
    """The trainer's logged points (numeric values only), the newest `limit` of them."""
    return [{k: v for k, v in entry.items() if isinstance(v, int | float)} for entry in log_history[-limit:]]


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool | dict)}


class JobProgress(RunProgress):
    """A job's phases on its row (`phase`, `phase_progress`; the training share of `progress`); a report finds the
    job cancelled (or taken from this worker by the monitor) and raises `JobCancelled`. The budget counts from the
    moment the worker took the job."""

    def __init__(self, worker: JobWorker, job_id: str, max_minutes: float | None) -> None:
        super().__init__(max_minutes)
        self.worker, self.job_id = worker, job_id
        self.state = str(JobState.RUNNING)

    def publish(self, snapshot: dict[str, Any]) -> None:
        values: dict[str, Any] = {"phase": self.name, "phase_progress": snapshot, "heartbeat_at": _now()}
        if self.name == "training" and self.total:
            values["progress"] = min(self.done / self.total, 0.99)
        self.state = self.worker.update(self.job_id, **values)

    def check(self) -> None:
        if self.state != JobState.RUNNING:
            raise JobCancelled(self.job_id)  # cancelled, or failed by the monitor: stop, register nothing


class ProgressCallback:
    """A transformers `TrainerCallback` reporting training steps to the job's `JobProgress` (which stops the run when
    the job is cancelled), and logged metrics to the row and the job log (a line per logging step)."""

    def __new__(cls, progress: JobProgress) -> Any:
        from transformers import TrainerCallback

        worker, job_id = progress.worker, progress.job_id

        class _Progress(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
                latest = {k: v for k, v in (logs or {}).items() if isinstance(v, int | float)}
                log.info("step %d/%d: %s", state.global_step, state.max_steps,
                         ", ".join(f"{k} {v:.4g}" for k, v in latest.items()))  # fmt: skip
                # the history lets a client draw curves while the job runs (the web console's charts)
                history = _history(state.log_history)
                worker.update(job_id, metrics={"step": state.global_step, **latest, "history": history})

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                progress.advance(state.global_step, state.max_steps or None)

        return _Progress()


def on_sigterm(signum: int, frame: Any) -> None:
    raise WorkerStopped()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.worker", description="Run queued training jobs.")
    parser.add_argument("--config", type=Path, default=None, help="YAML settings file.")
    parser.add_argument("--data-dir", type=Path, default=None, help="Data directory (overrides the settings).")
    parser.add_argument("--once", action="store_true", help="Run at most one queued job, then exit.")
    parser.add_argument("--poll", type=float, default=1.0, help="Seconds between looks at the job table.")
    args = parser.parse_args(argv)
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    settings = load_settings(args.config, **overrides)
    start_up(settings)
    worker = JobWorker(Parts(settings))
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if args.once:
            worker.run_once()
        else:
            worker.run_forever(args.poll)
    except WorkerStopped:
        log.info("worker stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
