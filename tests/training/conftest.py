"""Fixtures of the training tests: small data files, settings on the tiny model, fast run options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assistant.settings import Settings

FAST_OPTIONS: dict[str, Any] = {
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "per_device_eval_batch_size": 4,
    "logging_steps": 1,
    "eval_steps": 1000,
    "save_steps": 1000,
    "lora_r": 8,
    "lora_alpha": 16,
    "max_length": 384,
    "eval_split": 0.25,
    "near_duplicate_threshold": 0.95,
    "dataloader_num_workers": 0,
}

TOPICS = [
    ("How long is the warranty?", "The warranty covers parts and labour for two years."),
    ("How do I reset the router?", "Hold the reset button for ten seconds until the light blinks."),
    ("How much paid leave do employees get?", "Employees accrue twenty days of paid leave per year."),
    ("When are invoices due?", "Invoices are due within thirty days."),
    ("What does the database store?", "The database stores documents, chunks, chats and feedback."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the late payment fee?", "Late payments incur a fee of two percent per month."),
    ("Which river runs through Paris?", "Paris is a city on the Seine."),
]


def sft_records(n: int = 8) -> list[dict[str, str]]:
    return [{"instruction": q, "input": "", "output": a} for q, a in TOPICS[:n]]


def preference_records() -> list[dict[str, Any]]:
    answers = [a for _, a in TOPICS]
    return [{"prompt": q, "chosen": a, "rejected": answers[(i + 3) % len(answers)]} for i, (q, a) in enumerate(TOPICS)]


def write_json(path: Path, records: Any) -> Path:
    path.write_text(json.dumps(records))
    return path


@pytest.fixture()
def settings(tmp_path: Path, tiny_model_dir: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", models={"lm": str(tiny_model_dir)})  # type: ignore[arg-type]


@pytest.fixture()
def sft_file(tmp_path: Path) -> Path:
    return write_json(tmp_path / "sft.json", sft_records())


@pytest.fixture()
def dpo_file(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in preference_records()))
    return path
