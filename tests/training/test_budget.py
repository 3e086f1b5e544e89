"""`max_minutes`: a run stops in time, keeps the best checkpoint by validation loss, registers a working adapter."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest

from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS
from training.runs import TrainingRequest, run_training


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


def test_a_budgeted_run_defaults_to_a_larger_rate_and_no_evaluation_while_training(tmp_path: Path) -> None:
    from transformers import IntervalStrategy

    from training.config import build_run_config

    budgeted = build_run_config("sft", tmp_path, {"max_minutes": 15})
    assert budgeted.learning_rate == 1e-3 and budgeted.eval_strategy == IntervalStrategy.NO
    unbounded = build_run_config("sft", tmp_path, {})
    assert unbounded.learning_rate == 2e-4 and unbounded.eval_strategy == IntervalStrategy.STEPS
    asked = build_run_config("sft", tmp_path, {"max_minutes": 15, "eval_steps": 20, "learning_rate": 3e-4})
    assert asked.learning_rate == 3e-4 and asked.eval_strategy == IntervalStrategy.STEPS and asked.eval_steps == 20
    assert build_run_config("dpo", tmp_path, {"max_minutes": 15}).learning_rate == 2e-4  # preference methods keep it
    assert build_run_config("sft", tmp_path, {}, cpu_bf16=False).bf16 is False  # training.cpu_bf16 = off
    assert build_run_config("sft", tmp_path, {"bf16": False}, cpu_bf16=True).bf16 is False  # the job's own wins
    # more, shorter examples on a budget: batches of 2 and training sources cut to the answer's sentence (sft only)
    assert (budgeted.per_device_train_batch_size, budgeted.train_source_window) == (2, 0)
    assert (unbounded.per_device_train_batch_size, unbounded.train_source_window) == (4, None)
    own = build_run_config("sft", tmp_path, {"max_minutes": 15, "per_device_train_batch_size": 8})
    assert (own.per_device_train_batch_size, own.train_source_window) == (8, 0)
    psft = build_run_config("psft", tmp_path, {"max_minutes": 15})
    assert (psft.per_device_train_batch_size, psft.train_source_window) == (4, None)  # not measured: unchanged
    generated = build_run_config("sft", tmp_path, {"max_minutes": 15}, generated_questions=True)
    assert (generated.per_device_train_batch_size, generated.train_source_window) == (4, None)
    assert generated.learning_rate == 1e-3  # the budget's rate still applies


class _RateLog:
    """Records (time, learning rate) at every optimizer step: the optimizer's own value, not the trainer's log."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def __getattr__(self, name: str) -> object:  # the other TrainerCallback events: nothing to do
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_step_end(self, args: object, state: object, control: object, **kwargs: object) -> None:
        optimizer = kwargs["optimizer"]
        self.points.append((time.monotonic(), float(optimizer.param_groups[0]["lr"])))  # type: ignore[attr-defined]


def test_the_learning_rate_decays_with_the_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF's own linear schedule over a real optimizer, a controlled clock: the rate is the peak times the smaller of
    the schedule's multiplier (by steps) and the share of the training window left."""
    import torch
    from transformers import TrainingArguments, get_linear_schedule_with_warmup

    from training import budget as budget_module

    clock = [1000.0]
    monkeypatch.setattr(budget_module.time, "monotonic", lambda: clock[0])
    callback = budget_module.TimeBudgetCallback(max_minutes=10, started=clock[0])  # deadline at 1600
    clock[0] = 1100.0  # data and the evaluation before training took 100 s: a 500 s training window
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    total_steps = 40  # a step count that would end the schedule long before the budget (step 20 = half)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, total_steps)
    args = TrainingArguments(output_dir="/tmp/unused", report_to="none", use_cpu=True)
    callback.on_train_begin(args, None, None, lr_scheduler=scheduler)
    for step in range(1, 30):
        clock[0] = 1100.0 + 10.0 * step  # 10 s a step
        optimizer.step()
        scheduler.step()
        by_steps = max(0.0, (total_steps - step) / total_steps)
        by_time = max(0.0, (1600.0 - clock[0]) / 500.0)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * min(by_steps, by_time)), step
    cosine = TrainingArguments(output_dir="/tmp/unused", report_to="none", use_cpu=True, lr_scheduler_type="cosine")
    untouched = get_linear_schedule_with_warmup(optimizer, 0, total_steps)
    lambdas = list(untouched.lr_lambdas)
    callback.on_train_begin(cosine, None, None, lr_scheduler=untouched)  # another schedule is left as asked
    assert untouched.lr_lambdas == lambdas


def test_a_budgeted_run_ends_with_its_rate_spent(settings: Settings, sft_file: Path) -> None:
    rates = _RateLog()
    options = {**FAST_OPTIONS, "max_steps": 100_000, "max_minutes": 0.3}
    for key in ("eval_steps", "save_steps"):
        options.pop(key)  # the budgeted defaults: no evaluation while training
    outcome = run_training(settings, TrainingRequest("sft", [sft_file], name="decay", options=options), [rates])
    assert outcome.metrics["budget"]["stopped"] and rates.points
    assert outcome.metrics["validation_examples"] > 0 and "loss" in outcome.metrics["after"]
    assert all(b[1] <= a[1] for a, b in itertools.pairwise(rates.points))  # never rises
    assert rates.points[0][1] <= 1e-3 and rates.points[-1][1] <= 0.25e-3  # the budgeted default, nearly spent
