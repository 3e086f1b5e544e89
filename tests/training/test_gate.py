"""The gate: held-out splits by prompt and by document, the margin rule, and the real gate on the tiny model
refusing a candidate equal to its baseline and accepting one trained to prefer the chosen answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS, preference_records
from training.gate import HeldOut, HeldOutPair, QAItem, decide, run_gate, split_by_group, split_pairs_by_prompt


def test_pairs_are_split_by_prompt() -> None:
    pairs = [{"rendered_prompt": f"prompt {i % 7}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(40)]
    for seed in range(5):
        train, held = split_pairs_by_prompt(pairs, 0.2, 2, seed)
        assert len(train) + len(held) == 40 and len(held) >= 8
        assert {p["rendered_prompt"] for p in train}.isdisjoint({p["rendered_prompt"] for p in held})
    assert split_pairs_by_prompt(pairs, 0.2, 2, "job-1") == split_pairs_by_prompt(pairs, 0.2, 2, "job-1")
    # a single prompt cannot be split: everything trains, the gate has no pairs
    same = [{"rendered_prompt": "p", "chosen": "c", "rejected": str(i)} for i in range(5)]
    assert split_pairs_by_prompt(same, 0.5, 1, 0) == (same, [])


def test_questions_are_split_by_document() -> None:
    items = [QAItem(f"q{i}", ("a",), f"doc{i % 5}") for i in range(50)]
    train, held = split_by_group(items, lambda q: q.document, 0.15, 42)
    assert held and {q.document for q in train}.isdisjoint({q.document for q in held})
    assert len(held) == 10  # whole documents: 2 of the 5 reach the 15% target of 8 questions


def test_margin_rule() -> None:
    base = {"qa": {"f1": 0.30, "exact_match": 0.2}, "pairs": {"accuracy": 0.5, "margin": 0.1}}
    equal, reasons, improvement = decide(base, base, margin=0.01, tolerance=0.0)
    assert equal is False and "does not beat" in reasons[0] and improvement and improvement["metric"] == "qa.f1"
    better = {"qa": {"f1": 0.35, "exact_match": 0.2}, "pairs": {"accuracy": 0.5, "margin": 0.1}}
    assert decide(better, base, 0.01, 0.0)[0] is True
    assert decide(better, base, 0.05, 0.0)[0] is False  # +0.05 is not more than a margin of 0.05
    worse_pairs = {"qa": {"f1": 0.35, "exact_match": 0.2}, "pairs": {"accuracy": 0.4, "margin": 0.1}}
    passed, reasons, _ = decide(worse_pairs, base, 0.01, 0.0)
    assert passed is False and "pairs.accuracy" in reasons[0]
    assert decide(worse_pairs, base, 0.01, 0.1)[0] is True  # within the tolerance
    assert decide({}, {}, 0.01, 0.0)[0] is None


def zero_lora(model_dir: Path, out_dir: Path) -> Path:
    """A LoRA adapter with B = 0: the model it makes is exactly the base model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(base, config).save_pretrained(out_dir)
    return out_dir


def held_out_pairs(tokenizer_dir: Path) -> list[HeldOutPair]:
    from transformers import AutoTokenizer

    from training.data.formats import parse_preference_record
    from training.data.render import render_preference

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    records = preference_records()
    return [HeldOutPair(**render_preference(tokenizer, parse_preference_record(r, str(i))))
            for i, r in enumerate(records)]  # fmt: skip


def test_real_gate_refuses_a_candidate_equal_to_the_base(
    settings: Settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    heldout = HeldOut(pairs=held_out_pairs(tiny_model_dir))
    equal = run_gate(settings, tiny_model_dir, zero_lora(tiny_model_dir, tmp_path / "zero"), None, heldout)
    base_scores = equal["baseline_metrics"]["pairs"]
    assert equal["candidate"]["pairs"] == base_scores and 0 < base_scores["accuracy"] < 1.0
    assert equal["passed"] is False and "does not beat" in equal["reasons"][0]


@pytest.mark.slow
def test_real_gate_accepts_a_candidate_trained_to_prefer_chosen(
    settings: Settings, tiny_model_dir: Path, dpo_file: Path, tmp_path: Path
) -> None:
    from training.service import TrainingRequest, run_training

    heldout = HeldOut(pairs=held_out_pairs(tiny_model_dir))
    base_scores = run_gate(settings, tiny_model_dir, zero_lora(tiny_model_dir, tmp_path / "zero"), None, heldout)[
        "baseline_metrics"
    ]["pairs"]

    options = {**FAST_OPTIONS, "max_steps": 15, "learning_rate": 2e-2, "beta": 0.5, "eval_split": 0.2}
    trained = run_training(settings, TrainingRequest("dpo", [dpo_file], name="pref", options=options))
    assert trained.adapter is not None
    better = run_gate(settings, tiny_model_dir, trained.adapter.path, None, heldout)
    assert better["candidate"]["pairs"]["accuracy"] > base_scores["accuracy"] + settings.training.gate_margin
    assert better["passed"] is True and better["reasons"] == [] and better["improvement"]["delta"] > 0
    # the same candidate against itself as the active version: equal again, refused
    again = run_gate(settings, tiny_model_dir, trained.adapter.path, trained.adapter.path, heldout, "pref@v1")
    assert again["passed"] is False and again["baseline"] == "pref@v1"
    json.dumps(better)  # stored as JSON on the registry row
