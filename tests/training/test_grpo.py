"""GRPO on the tiny model through the real GRPOTrainer: the mean reward of sampled answers rises on a toy reward;
the rule rewards score as documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS, TOPICS
from training.runs import TrainingRequest, run_training


def test_rule_rewards() -> None:
    from training.grpo import cites_source, grounded, length_reward

    prompt = "Sources:\n[1] Manual\nThe warranty lasts two years.\n\n[2] FAQ\nReset the router.\n\nQuestion: warranty?"
    assert cites_source(prompt, "Two years [1].") == 1.0
    assert cites_source(prompt, "Two years [3].") == 0.0  # cites a source the prompt does not have
    assert cites_source("Question: warranty?", "Two years [1].") == 0.0
    assert grounded(prompt, "warranty lasts forever") == pytest.approx(2 / 3)
    assert length_reward(10, 10, 64) == 1.0 and length_reward(42, 10, 64) == pytest.approx(0.5)


HALF = 256  # the tiny vocabulary has ~512 tokens: about half of the sampled tokens are below this id
NEW_QUESTIONS = ["Where is the invoice?", "Who pays the fee?", "What is in the manual?", "Is the light on?"]


def low_share(completion_ids: list[list[int]], **_: Any) -> list[float]:
    """Dense toy reward (group samples differ, so GRPO's advantages are not zero): the share of sampled token ids
    below `HALF`. The tiny model can move it: it only has to shift its output distribution towards low ids."""
    return [sum(t < HALF for t in ids) / max(len(ids), 1) for ids in completion_ids]


def toy_run(settings: Settings, tmp_path: Path, steps: int) -> Any:
    """GRPO with LoRA on the 8 topic questions (4 trained, 4 held out), the toy reward only.

    Why these settings: the reward is prompt-independent and dense, a constant learning rate of 1e-2 (LoRA on a
    randomly initialised 2-layer model) and 16 samples per step (4 prompts x 4) give the policy gradient enough
    signal; with 12 steps and a decaying 3e-3 the held-out reward stayed flat (0.62 -> 0.61), with 40 it reaches ~1.
    """
    from training.grpo import register_rule_reward

    register_rule_reward("low_share", low_share)
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": q}) + "\n" for q, _ in TOPICS))
    options = {k: v for k, v in FAST_OPTIONS.items() if k != "max_length"}
    options.update(rule_rewards=["low_share"], max_completion_length=8, max_steps=steps, learning_rate=1e-2,
                   lr_scheduler_type="constant", per_device_train_batch_size=16, num_generations=4,
                   lora_dropout=0.0, near_duplicate_threshold=1.0, grpo_eval_prompts=4, eval_split=0.5,
                   logging_steps=10)  # fmt: skip
    return run_training(settings, TrainingRequest("grpo", [data], name="rl", options=options))


def low_id_mass(model: Any, tokenizer: Any, questions: list[str]) -> float:
    """Exact expected toy reward of the first answer token: mean P(id < HALF | prompt) over `questions`."""
    import torch

    from training.data.render import render_prompt

    masses = []
    with torch.no_grad():
        for question in questions:
            prompt = render_prompt(tokenizer, [{"role": "user", "content": question}])
            ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
            probs = torch.softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
            masses.append(float(probs[:HALF].sum()))
    return sum(masses) / len(masses)


def test_grpo_moves_policy_towards_toy_reward(settings: Settings, tmp_path: Path, tiny_model_dir: Path) -> None:
    """Fast check (default suite): a few GRPO steps raise the exact expected reward on prompts never trained on."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.modeling import load_tokenizer

    outcome = toy_run(settings, tmp_path, steps=16)
    assert outcome.adapter is not None and outcome.adapter.method == "grpo"
    assert outcome.metrics["global_step"] == 16 and outcome.metrics["before"]["samples"] == 16
    tokenizer = load_tokenizer(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    before = low_id_mass(base, tokenizer, NEW_QUESTIONS)
    tuned = PeftModel.from_pretrained(base, str(outcome.adapter.path)).eval()
    after = low_id_mass(tuned, tokenizer, NEW_QUESTIONS)
    assert after > before + 0.05, (before, after)


@pytest.mark.slow
def test_grpo_raises_mean_reward_on_toy_reward(settings: Settings, tmp_path: Path) -> None:
    """The must-show: the mean toy reward of answers sampled (seeded) for the held-out prompts rises."""
    outcome = toy_run(settings, tmp_path, steps=40)
    before, after = outcome.metrics["before"], outcome.metrics["after"]
    assert before["samples"] == after["samples"] == 16  # 4 held-out prompts x 4 samples
    assert after["mean_reward"] > before["mean_reward"] + 0.2, (before, after)
    assert outcome.adapter is not None and outcome.adapter.method == "grpo"
