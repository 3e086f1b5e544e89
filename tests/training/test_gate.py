"""The gate: held-out splits by prompt and by document, the margin rule, and the real gate on the tiny model
refusing a candidate equal to its baseline and accepting one trained to prefer the chosen answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assistant.parts import Parts
from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS, preference_records
from training.gate import (
    HeldOut,
    HeldOutPair,
    QAItem,
    decide,
    fit_to_budget,
    qa_scores,
    run_gate,
    split_by_group,
)


def split_pairs_by_prompt(pairs: list[dict[str, str]], share: float, min_pairs: int, seed: int | str) -> Any:
    """What the runner does with a job's pairs (`MethodRunner.hold_out_pairs`): whole prompts on one side."""
    return split_by_group(pairs, lambda p: p["rendered_prompt"], share, seed, min_pairs)


def test_qa_scores_answers_without_their_citation_markers() -> None:
    """A trained adapter answers "span [n]": the gate scores the span, as the benchmarks do (the marker is not a word
    of the answer), so exact match is not zero for every citing model."""
    items = [QAItem("Who won?", ("Denver Broncos",)), QAItem("Where?", ("Levi's Stadium", "Santa Clara"))]
    replies = {"Who won?": "Denver Broncos [1]", "Where?": "in Santa Clara [2][3]"}
    scores = qa_scores(lambda q: replies[q], items)
    assert scores["exact_match"] == 0.5  # the first exactly, the second has an extra "in"
    assert scores["f1"] == pytest.approx((1.0 + 2 * (2 / 3) * 1.0 / (2 / 3 + 1.0)) / 2)


class _TimedModels:
    """Routing stand-in for `GateModels`: which model is in use, so an answer can take that model's time."""

    def __init__(self) -> None:
        self.active = "candidate"

    def use(self, which: str) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def using() -> Any:
            before, self.active = self.active, which
            try:
                yield
            finally:
                self.active = before

        return using()


def test_gate_questions_fit_the_time_of_both_models() -> None:
    """The baseline (the base model) answers at length and takes longer than the candidate: the count of questions
    that fits is set by both models' times, so the gate's two passes stay inside its seconds."""
    import time

    models = _TimedModels()
    item_s = {"candidate": 0.01, "baseline": 0.05}

    def answer(question: str) -> str:
        time.sleep(item_s[models.active])
        return "x"

    items = [QAItem(f"q{i}", ("x",), document=f"d{i % 4}") for i in range(40)]
    seconds = 0.6
    fitted = fit_to_budget(models, answer, HeldOut([], items, [], None), seconds)  # type: ignore[arg-type]
    per_item = item_s["candidate"] + item_s["baseline"]
    assert 1 <= len(fitted.qa) <= int(seconds / per_item)  # 10 at most; the candidate's time twice would give 30
    assert len(fitted.qa) >= int(seconds / (per_item * 1.5))  # sleeps overrun a little, never by half
    assert {q.document for q in fitted.qa} == {"d0", "d1", "d2", "d3"}  # sampled across documents
    started = time.monotonic()
    for which in ("candidate", "baseline"):
        with models.use(which):
            qa_scores(answer, fitted.qa)
    assert time.monotonic() - started <= seconds * 1.3
    assert len(fit_to_budget(models, answer, HeldOut([], items, [], None), None).qa) == 40  # no budget: every one


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


def test_pairs_are_decided_on_reward_accuracy_and_checked_on_likelihood() -> None:
    base = {"pairs": {"reward_accuracy": 0.5, "accuracy": 0.45, "margin": -10.0}}
    rewarded = {"pairs": {"reward_accuracy": 0.65, "accuracy": 0.45, "margin": -4.0}}
    passed, reasons, improvement = decide(rewarded, base, 0.01, 0.0)
    assert passed is True and improvement and improvement["metric"] == "pairs.reward_accuracy"
    assert improvement["delta"] == pytest.approx(0.15)
    less_likely = {"pairs": {"reward_accuracy": 0.65, "accuracy": 0.40, "margin": -4.0}}
    passed, reasons, _ = decide(less_likely, base, 0.01, 0.0)
    assert passed is False and "pairs.accuracy 0.4000 is worse" in reasons[0]
    # scored without a reference (no reward accuracy): the likelihood accuracy decides
    plain = {"pairs": {"accuracy": 0.6, "margin": 1.0}}
    assert decide(plain, {"pairs": {"accuracy": 0.5, "margin": 0.0}}, 0.01, 0.0)[2]["metric"] == "pairs.accuracy"


def test_reward_accuracy_by_hand() -> None:
    from training.gate import pair_summary

    reference = [(-10.0, -12.0), (-5.0, -5.0), (-8.0, -7.0), (-3.0, -4.0)]
    # rewards (chosen - ref) - (rejected - ref): +1, 0 (a tie), +2, -3
    scored = [(-9.0, -12.0), (-5.0, -5.0), (-6.0, -7.0), (-6.0, -4.0)]
    summary = pair_summary(scored, reference)
    assert summary["reward_accuracy"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    assert summary["accuracy"] == pytest.approx(2 / 4) and summary["margin"] == pytest.approx((3 + 0 + 1 - 2) / 4)
    assert pair_summary(reference, reference)["reward_accuracy"] == 0.5  # the reference against itself: chance
    assert "reward_accuracy" not in pair_summary(scored)


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

    from training.data.dataset_formats import parse_preference_record
    from training.data.render import render_preference

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    records = preference_records()
    return [HeldOutPair(**render_preference(tokenizer, parse_preference_record(r, str(i))))
            for i, r in enumerate(records)]  # fmt: skip


def test_real_gate_refuses_a_candidate_equal_to_the_base(
    settings: Settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    heldout = HeldOut(pairs=held_out_pairs(tiny_model_dir))
    equal = run_gate(Parts(settings), tiny_model_dir, zero_lora(tiny_model_dir, tmp_path / "zero"), None, heldout)
    base_scores = equal["baseline_metrics"]["pairs"]
    assert equal["candidate"]["pairs"] == base_scores and 0 < base_scores["accuracy"] < 1.0
    assert base_scores["reward_accuracy"] == 0.5 and equal["improvement"]["metric"] == "pairs.reward_accuracy"
    assert equal["passed"] is False and "does not beat" in equal["reasons"][0]


@pytest.mark.slow
def test_real_gate_accepts_a_candidate_trained_to_prefer_chosen(
    settings: Settings, tiny_model_dir: Path, dpo_file: Path, tmp_path: Path
) -> None:
    from training.runs import TrainingRequest, run_training

    heldout = HeldOut(pairs=held_out_pairs(tiny_model_dir))
    base_scores = run_gate(
        Parts(settings), tiny_model_dir, zero_lora(tiny_model_dir, tmp_path / "zero"), None, heldout
    )["baseline_metrics"]["pairs"]

    options = {**FAST_OPTIONS, "max_steps": 15, "learning_rate": 2e-2, "beta": 0.5, "eval_split": 0.2}
    trained = run_training(settings, TrainingRequest("dpo", [dpo_file], name="pref", options=options))
    assert trained.adapter is not None
    better = run_gate(Parts(settings), tiny_model_dir, trained.adapter.path, None, heldout)
    assert better["candidate"]["pairs"]["accuracy"] > base_scores["accuracy"] + settings.training.gate_margin
    # the reward accuracy against an independent computation: the base and the candidate loaded separately
    rewards = [
        (candidate_chosen - candidate_rejected) - (base_chosen - base_rejected)
        for (base_chosen, base_rejected), (candidate_chosen, candidate_rejected) in zip(
            separate_logprobs(tiny_model_dir, None, heldout.pairs),
            separate_logprobs(tiny_model_dir, trained.adapter.path, heldout.pairs),
            strict=True,
        )
    ]
    expected = sum(1.0 if r > 1e-4 else 0.5 if r > -1e-4 else 0.0 for r in rewards) / len(rewards)
    assert better["candidate"]["pairs"]["reward_accuracy"] == pytest.approx(expected) and expected > 0.5
    assert better["passed"] is True and better["reasons"] == [] and better["improvement"]["delta"] > 0
    # the same candidate against itself as the active version: equal again, refused
    again = run_gate(Parts(settings), tiny_model_dir, trained.adapter.path, trained.adapter.path, heldout, "pref@v1")
    assert again["passed"] is False and again["baseline"] == "pref@v1"
    json.dumps(better)  # stored as JSON on the registry row


def separate_logprobs(model_dir: Path, adapter: Path | None, pairs: list[HeldOutPair]) -> list[tuple[float, float]]:
    """(log p(chosen), log p(rejected)) from a model loaded on its own, scored token by token with plain torch."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = (PeftModel.from_pretrained(model, str(adapter)) if adapter else model).eval()

    def logprob(prompt: str, completion: str) -> float:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt_ids + answer_ids])).logits[0].double()
        logprobs = torch.log_softmax(logits, dim=-1)
        return sum(float(logprobs[len(prompt_ids) - 1 + i, t]) for i, t in enumerate(answer_ids))

    return [(logprob(p.prompt, p.chosen), logprob(p.prompt, p.rejected)) for p in pairs]
