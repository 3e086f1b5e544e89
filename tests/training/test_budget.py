"""`max_minutes`: a run stops in time, keeps the best checkpoint by validation loss, registers a working adapter."""

from __future__ import annotations

import json
import time
from pathlib import Path

from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS
from training.service import TrainingRequest, run_training


def test_time_budget_stops_and_registers_the_best_checkpoint(
    settings: Settings, sft_file: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    budget_min = 0.2
    options = {**FAST_OPTIONS, "max_steps": 100_000, "max_minutes": budget_min, "eval_steps": 3, "save_steps": 3,
               "save_total_limit": None, "learning_rate": 5e-2}  # fmt: skip
    started = time.monotonic()
    outcome = run_training(settings, TrainingRequest("sft", [sft_file], name="budget", options=options))
    wall = time.monotonic() - started
    budget = outcome.metrics["budget"]
    assert budget["stopped"] and 0 < budget["stopped_at_step"] == outcome.metrics["global_step"] < 100_000
    # the budget is the whole run's: training stopped early enough to leave the evaluation after it and saving
    # inside `max_minutes`, overrunning by at most one step (and the second evaluation's jitter)
    assert budget["stopped_after_s"] <= budget_min * 60
    assert outcome.metrics["wall_s"] <= wall <= budget_min * 60 + budget["last_step_s"] + 3.0

    # the registered adapter is the best checkpoint by validation loss, not merely the last state
    run_dir = outcome.run_dir
    evals = {e["step"]: e["eval_loss"] for e in json.loads((run_dir / "log_history.json").read_text())
             if "eval_loss" in e}  # fmt: skip
    best_step = min(evals, key=evals.__getitem__)
    assert budget["best_checkpoint"].endswith(f"checkpoint-{best_step}")
    assert outcome.metrics["global_step"] in evals  # the state at the stop was evaluated too
    assert outcome.adapter is not None
    registered = load_file(str(outcome.adapter.path / "adapter_model.safetensors"))
    best = load_file(str(Path(budget["best_checkpoint"]) / "adapter_model.safetensors"))
    assert registered.keys() == best.keys() and all(torch.equal(registered[k], best[k]) for k in best)

    # and it works: PEFT loads it on the base model and generates
    tokenizer = AutoTokenizer.from_pretrained(settings.models.lm)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(settings.models.lm), outcome.adapter.path)
    ids = tokenizer("How long is the warranty?", return_tensors="pt")["input_ids"]
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids.shape[1]


def test_dpo_precomputes_reference_log_probs_from_one_epoch_on(tmp_path: Path) -> None:
    from training.config import build_run_config
    from training.trainers import passes_over_data

    short = build_run_config("dpo", tmp_path, {"max_steps": 10, "per_device_train_batch_size": 2})
    assert passes_over_data(short, 100) == 0.2  # 20 of 100 pairs seen: a full reference pass would cost more
    assert passes_over_data(short, 20) == 1.0
    epochs = build_run_config("dpo", tmp_path, {"num_train_epochs": 2.0})
    assert passes_over_data(epochs, 1000) == 2.0
