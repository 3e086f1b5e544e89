"""A job's phases, budget and cancel on the real worker and job service (tiny model, SQLite): the job JSON moves
through every phase; `max_minutes` bounds the whole job however large the validation set; cancel ends the job within
10 s in data building and in evaluation, registers nothing, and leaves the worker ready for the next job."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import pytest

from assistant.parts import Parts
from assistant.settings import Settings
from serving.rest_format import job_body
from serving.services.job_service import JobService
from tests.training.conftest import FAST_OPTIONS, sft_records
from training.progress import PHASES
from training.request import JobData, JobRequest
from training.worker import JobWorker

JOB_OPTIONS = {k: v for k, v in FAST_OPTIONS.items() if k not in ("save_steps", "dataloader_num_workers")}
WORDS = ["warranty", "router", "invoice", "leave", "payment", "river", "capital", "database", "fee", "light",
         "reset", "claim", "serial"]  # fmt: skip


def many_pairs(count: int) -> list[dict[str, str]]:
    """Distinct preference pairs (prompt, chosen, rejected)."""
    return [{"prompt": r["instruction"], "chosen": r["output"], "rejected": f"Nothing is known about note {i}."}
            for i, r in enumerate(many_records(count))]  # fmt: skip


def many_records(count: int) -> list[dict[str, str]]:
    """Distinct instruction records (no two near duplicates), each a few dozen tokens."""
    out = []
    for i in range(count):
        topic = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 5, 7))
        question = f"Record {i}: what does note {i * 7919 % 100_003} say about {topic}?"
        answer = f"Note {i} says {topic} item {i % 997} is settled."
        out.append({"instruction": question, "input": "", "output": answer})
    return out


class Job:
    """One job through the job service and a real worker running in a thread."""

    def __init__(
        self, settings: Settings, records: list[dict[str, str]], options: dict[str, Any], method: str = "sft"
    ) -> None:
        self.parts = Parts(settings)
        self.service = JobService.of(self.parts)
        upload = self.service.save_upload("data.json", json.dumps(records).encode())
        request = JobRequest(method=method, name="phased", data=JobData(source="file", file_id=upload.id),
                             hyperparameters=options)  # fmt: skip
        self.id = self.service.create(request).id
        self.worker = JobWorker(self.parts)
        self.thread = threading.Thread(target=self.worker.run_once, daemon=True)
        self.seen: list[str] = []

    def start(self) -> Job:
        self.thread.start()
        return self

    def body(self) -> dict[str, Any]:
        body = job_body(self.service.get(self.id))
        if body["phase"] and (not self.seen or self.seen[-1] != body["phase"]):
            self.seen.append(body["phase"])
        return body

    def wait(self, done: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.body()
            if done(body):
                return body
            time.sleep(0.05)
        raise TimeoutError(f"job {self.id}: {self.body()}")

    def registered(self) -> int:
        from assistant.storage import Adapter

        with self.parts.db.session() as session:
            return session.query(Adapter).count()


@pytest.mark.slow
def test_the_job_json_moves_through_every_phase(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # as the worker process logs (assistant.startup)
    job = Job(settings, sft_records(), {**JOB_OPTIONS, "max_steps": 4}).start()
    final = job.wait(lambda b: b["state"] in ("succeeded", "failed", "cancelled"), timeout=300)
    assert final["state"] == "succeeded", final["error"]
    assert final["phase_progress"]["phases"] == list(PHASES)  # the row keeps the phases in the order they ran
    assert final["phase"] == "registering" and final["metrics"]["gate"] is not None
    assert job.seen == [p for p in PHASES if p in job.seen]  # what a client polling saw came in that order
    log = "\n".join(job.service.get(job.id, tail=400).log_tail or [])
    assert all(f"phase {p}" in log for p in PHASES)  # a log line per phase
    assert "step 1/4" in log and "step 4/4" in log  # and per logging step (logging_steps 1)


@pytest.mark.slow
def test_a_large_validation_file_stays_within_the_budget(settings: Settings) -> None:
    budget_min = 0.5
    options = {**JOB_OPTIONS, "max_steps": 100_000, "eval_split": 0.5, "max_minutes": budget_min, "eval_steps": 20}
    job = Job(settings, many_records(4000), options)
    started = time.monotonic()
    job.start()
    final = job.wait(lambda b: b["state"] in ("succeeded", "failed", "cancelled"), timeout=600)
    wall = time.monotonic() - started
    assert final["state"] == "succeeded", final["error"]
    metrics = final["metrics"]
    last_step = metrics["budget"]["last_step_s"] or 0.0
    assert wall <= budget_min * 60 + last_step + 8.0, (wall, metrics)  # the whole job, not only training
    validation = metrics["validation_examples"]
    assert metrics["before"]["examples"] == metrics["after"]["examples"] == validation  # the same, fitted set
    assert validation < 2000 * 0.9  # about 2000 were split off: the evaluations scored what fitted the budget
    assert final["phase_progress"]["phases"] == list(PHASES)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["building_data", "evaluating_before"])
def test_cancel_ends_the_job_within_10_s_in_every_long_phase(settings: Settings, phase: str) -> None:
    records = many_records(20_000 if phase == "building_data" else 3000)
    options = {**JOB_OPTIONS, "max_steps": 5, "eval_split": 0.6 if phase == "evaluating_before" else 0.1}
    job = Job(settings, records, options).start()
    job.wait(lambda b: b["phase"] == phase, timeout=300)
    asked = time.monotonic()
    assert job.service.cancel(job.id).state == "cancelling"
    final = job.wait(lambda b: b["state"] in ("succeeded", "failed", "cancelled"), timeout=60)
    assert time.monotonic() - asked <= 10.0
    assert final["state"] == "cancelled" and final["error"] == f"cancelled while {phase}; nothing was registered"
    assert job.registered() == 0
    job.thread.join(timeout=10)
    assert not job.thread.is_alive()  # the worker is free: it takes the next job
    upload = job.service.save_upload("next.json", json.dumps(sft_records()).encode())
    data = JobData(source="file", file_id=upload.id)
    queued = job.service.create(JobRequest(method="sft", data=data, hyperparameters=JOB_OPTIONS)).id
    assert job.worker.claim() == queued


@pytest.mark.slow
def test_cancel_during_dpos_reference_pass_ends_the_job_within_10_s(settings: Settings) -> None:
    """TRL computes the reference log-probs of every pair when the trainer is built (after the pairs are encoded,
    before any step), where no trainer callback runs: part of building the data."""
    pairs = 1500
    options = {**JOB_OPTIONS, "max_steps": pairs, "per_device_train_batch_size": 2}  # >= one pass: precomputed
    job = Job(settings, many_pairs(pairs), options, method="dpo").start()

    def encoded(body: dict[str, Any]) -> bool:  # every training pair encoded (a fifth is held out for the gate)
        count = body["phase_progress"] or {}
        return body["phase"] == "building_data" and bool(count.get("total")) and count["done"] == count["total"]

    job.wait(encoded, timeout=300)
    time.sleep(3.0)  # the model is built and the reference pass over ~1,100 pairs has begun
    asked = time.monotonic()
    assert job.service.cancel(job.id).state == "cancelling"
    final = job.wait(lambda b: b["state"] in ("succeeded", "failed", "cancelled"), timeout=300)
    assert time.monotonic() - asked <= 10.0, final
    assert final["state"] == "cancelled" and final["error"] == "cancelled while building_data; nothing was registered"
    assert job.registered() == 0
    job.thread.join(timeout=10)
    assert not job.thread.is_alive()
