"""The worker's gate wiring, on the tiny model: an SFT job on stored feedback corrections (the pairs' preferred side)
holds pairs out by prompt, trains on the rest, and stores the gate's report on the candidate's registry row."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.parts import Parts
from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS, TOPICS


@pytest.mark.slow
def test_sft_job_on_corrections_is_gated_and_the_report_stored(settings: Settings, tmp_path: Path) -> None:
    import hashlib
    import json

    from assistant.storage import Adapter, Database, Job, PreferencePair
    from training.worker import JobWorker

    db = Database(settings.resolved_database_url)
    db.migrate()
    answers = [a for _, a in TOPICS]
    with db.session() as session:
        for i, (question, answer) in enumerate(TOPICS * 2):  # every prompt twice: the split must keep them together
            prompt = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
            rejected = answers[(i + 3) % len(answers)] + (" again" if i >= len(TOPICS) else "")
            session.add(PreferencePair(prompt=prompt, chosen=answer, rejected=rejected, provenance="feedback",
                                       content_hash=hashlib.sha256(f"{i}".encode()).hexdigest()))  # fmt: skip
        job = Job(kind="sft", params={"method": "sft", "name": "fix", "data": {"source": "preferences"},
                                      "hyperparameters": {**FAST_OPTIONS, "max_steps": 2}})  # fmt: skip
        session.add(job)
        session.flush()
        job_id = job.id
    assert JobWorker(Parts(settings)).run_once()  # claims the job (queued -> running) and runs it
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == "succeeded", job.error
        row = session.query(Adapter).one()
        gate = row.gate
    assert gate is not None and gate == job.metrics["gate"] and gate["baseline"] == "base"
    assert "pairs" in gate["candidate"] and gate["improvement"]["metric"] == "pairs.reward_accuracy"
    assert gate["passed"] in (True, False) and "margin" in gate
    stored = [json.loads(line) for line in (settings.runs_dir / "jobs" / job_id / "pairs.jsonl").open()]
    assert len(stored) == 2 * len(TOPICS)  # the worker writes every pair; the runner alone holds some out
    held = gate["candidate"]["pairs"]["pairs"]
    report = json.loads((Path(row.lineage["run_dir"]) / "data_report.json").read_text())
    assert report["total"] + held == 2 * len(TOPICS) and held >= settings.training.gate_min_pairs
    assert held % 2 == 0  # whole prompts only (each appears twice)
    assert row.lineage["collections"] is None  # these pairs were stored without their collections: unknown
