"""The job worker: a separate process that claims queued training jobs from the database and runs them.

Contract:
- `JobWorker.claim()` takes the oldest 'queued' job with one conditional UPDATE (two workers never take the same job)
  and marks it 'running' under this worker's id `host:pid`. On PostgreSQL the pick is `SELECT ... FOR UPDATE SKIP
  LOCKED`, so concurrent workers each take a different job at once instead of waiting on (and losing) the same row.
- `JobWorker.execute(job_id)` prepares the data (stored preference pairs since a point, split into training pairs and
  the gate's held-out pairs, or an uploaded file), runs `training.service.run_training` with a callback that reports
  progress and metrics to the job row and stops the run when the job is cancelled, then evaluates the candidate with
  `training.gate.run_gate` against the active version and stores the result on the candidate's registry row. A
  heartbeat thread updates the row every few seconds. Any error fails the job with its message; a failed or
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from assistant.adapters import AdapterStatus, versioned_name
from assistant.errors import AssistantError, UnprocessableError
from assistant.jobs import WORKER_WRITABLE, JobState, job_log_path
from assistant.parts import Parts
from assistant.settings import Settings, load_settings
from assistant.startup import start_up
from assistant.storage import Adapter, Database, Job, PreferencePair
from assistant.storage.queries import preference_filters
from training.gate import HeldOut, HeldOutPair, load_squad_qa, run_gate, split_pairs_by_prompt
from training.uploads import resolve_upload

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0


class JobCancelled(Exception):
    """Raised from the training callback when the job was cancelled."""


class WorkerStopped(BaseException):
    """Raised by the SIGTERM handler: the worker is being shut down."""


def _now() -> datetime:
    return datetime.now(UTC)


class JobWorker:
    def __init__(self, settings: Settings, db: Database, worker_id: str | None = None) -> None:
        self.settings = settings
        self.db = db
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
            self._finish(job_id, JobState.CANCELLED, error="cancelled while training; nothing was registered")
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
        from training.service import TrainingRequest, run_training

        params = self._params(job_id)
        job_dir = self.settings.runs_dir / "jobs" / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        train_file, heldout = self._data(params, job_dir, job_id)
        request = TrainingRequest(
            method=params["method"],
            data_files=[train_file],
            name=params.get("name"),
            base_adapter=params.get("base_adapter"),
            options=dict(params.get("hyperparameters") or {}),
            job_id=job_id,
            collection=(params.get("data") or {}).get("collection"),
            holdout=not heldout,  # an uploaded file: the runner holds out (pairs by prompt, questions by document)
        )
        outcome = run_training(self.settings, request, callbacks=[ProgressCallback(self, job_id)])
        assert outcome.adapter is not None
        identity = f"{outcome.adapter.name}@v{outcome.adapter.version}"
        gated = params.get("gate", True) and outcome.adapter.kind == "lm"  # a reward model is not a chat adapter
        gate = self._gate(outcome.adapter, heldout, outcome.run_dir) if gated else None
        logged = outcome.run_dir / "log_history.json"
        history = _history(json.loads(logged.read_text())) if logged.is_file() else []
        return {
            **_scalars(outcome.metrics),
            "adapter": identity,
            "adapter_id": outcome.adapter.id,
            "gate": gate,
            "history": history,
        }

    def _params(self, job_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return dict(job.params)

    def _data(self, params: dict[str, Any], job_dir: Path, job_id: str) -> tuple[Path, list[HeldOutPair]]:
        data = params.get("data") or {}
        if data.get("source") == "file":
            return resolve_upload(self.settings, str(data.get("file_id"))), []
        if data.get("source") in ("feedback", "chats"):  # issue 11: thumbs (kto) and served prompts (grpo)
            from training.data.feedback import write_source

            path = job_dir / f"{data['source']}.jsonl"
            write_source(self.db, params["method"], data["source"], data.get("since"), path)
            return path, []
        pairs = self._stored_pairs(data)
        if not pairs:
            raise UnprocessableError("no stored preference pairs match this job's data selection", code="empty_dataset")
        train, heldout = self._split(pairs, job_id)
        path = job_dir / "pairs.jsonl"
        path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in train))
        return path, [HeldOutPair(p["rendered_prompt"], p["chosen"], p["rejected"]) for p in heldout]

    def _stored_pairs(self, data: dict[str, Any]) -> list[dict[str, str]]:
        query = (
            select(PreferencePair)
            .where(*preference_filters(data.get("provenance"), data.get("since")))
            .order_by(PreferencePair.created_at, PreferencePair.id)
        )
        with self.db.session() as session:
            return [
                {"rendered_prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}
                for p in session.scalars(query)
            ]

    def _split(self, pairs: list[dict[str, str]], job_id: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """Seeded split by prompt: the gate's held-out pairs are never trained on, nor are their prompts."""
        options = self.settings.training
        return split_pairs_by_prompt(pairs, options.gate_holdout, options.gate_min_pairs, job_id)

    def _gate(self, record: Any, pairs: list[HeldOutPair], run_dir: Path) -> dict[str, Any]:
        from assistant.models import resolve_lm

        active = self._active_version(record.name)
        heldout = HeldOut.load(run_dir)  # what the run held out (questions by document, pairs by prompt, examples)
        heldout.pairs += pairs
        options = self.settings.training
        if options.gate_qa_file and not heldout.qa:
            heldout.qa = load_squad_qa(options.gate_qa_file, options.gate_qa_limit)
        result = run_gate(
            self.settings,
            resolve_lm(self.settings),
            record.path,
            Path(active[1]) if active else None,
            heldout,
            baseline_name=active[0] if active else "base",
        )
        with self.db.session() as session:
            row = session.get(Adapter, record.id)
            assert row is not None
            row.gate = result
        return result

    def _active_version(self, name: str) -> tuple[str, str] | None:
        with self.db.session() as session:
            row = session.scalars(
                select(Adapter).where(Adapter.name == name, Adapter.status == AdapterStatus.ACTIVE)
            ).first()
            return (versioned_name(row.name, row.version), row.path) if row else None

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


class ProgressCallback:
    """A transformers `TrainerCallback` reporting progress and metrics to the job row; stops on cancellation."""

    def __new__(cls, worker: JobWorker, job_id: str) -> Any:
        from transformers import TrainerCallback

        class _Progress(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
                latest = {k: v for k, v in (logs or {}).items() if isinstance(v, int | float)}
                # the history lets a client draw curves while the job runs (the web console's charts)
                history = _history(state.log_history)
                worker.update(job_id, metrics={"step": state.global_step, **latest, "history": history})

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                progress = state.global_step / state.max_steps if state.max_steps else 0.0
                if worker.update(job_id, progress=min(progress, 0.99)) != JobState.RUNNING:
                    raise JobCancelled(job_id)  # cancelled, or failed by the monitor: stop, register nothing

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
    worker = JobWorker(settings, Parts(settings).db)
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
