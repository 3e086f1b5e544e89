"""GRPO on the tiny model through the real GRPOTrainer: the mean reward of sampled answers rises on a toy reward;
the rule rewards score as documented."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS, TOPICS
from training.runner import TrainingRequest, run_training


def test_rule_rewards() -> None:
    from training.grpo import cites_source, grounded, length_reward

    prompt = "Sources:\n[1] Manual\nThe warranty lasts two years.\n\n[2] FAQ\nReset the router.\n\nQuestion: warranty?"
    assert cites_source(prompt, "Two years [1].") == 1.0
    assert cites_source(prompt, "Two years [3].") == 0.0  # cites a source the prompt does not have
    assert cites_source("Question: warranty?", "Two years [1].") == 0.0
    assert grounded(prompt, "warranty lasts forever") == pytest.approx(2 / 3)
    assert length_reward(10, 10, 64) == 1.0 and length_reward(42, 10, 64) == pytest.approx(0.5)


def common_tokens(model_dir: Path, prompts: list[str], top: int = 10) -> set[int]:
    """The tokens the base model samples most often for these prompts rendered as served: the toy reward pays for
    them (a dense reward, so GRPO has a signal from the first step)."""
    import torch
    from transformers import AutoModelForCausalLM

    from training.data.records import ChatExample
    from training.data.render import prompt_messages, render_prompt
    from training.modeling import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    counts: Counter[int] = Counter()
    for prompt in prompts:
        turn = ({"role": "user", "content": prompt},)
        text = render_prompt(tokenizer, prompt_messages(turn, ChatExample(turn)))
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = model.generate(ids, do_sample=True, max_new_tokens=8, top_k=0, num_return_sequences=4,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        counts.update(out[:, ids.shape[1] :].flatten().tolist())
    return {token for token, _ in counts.most_common(top)}


@pytest.mark.slow
def test_grpo_raises_mean_reward_on_toy_reward(settings: Settings, tmp_path: Path) -> None:
    from training.grpo import register_rule_reward

    questions = [q for q, _ in TOPICS]
    tokens = common_tokens(Path(settings.models.lm), questions)

    def toy_share(completion_ids: list[list[int]], **_: Any) -> list[float]:
        return [sum(t in tokens for t in ids) / max(len(ids), 1) for ids in completion_ids]

    register_rule_reward("toy_share", toy_share)
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in questions * 2))
    options = {k: v for k, v in FAST_OPTIONS.items() if k != "max_length"}
    options.update(rule_rewards=["toy_share"], max_completion_length=8, max_steps=8, learning_rate=1e-2,
                   per_device_train_batch_size=8, num_generations=4, lora_dropout=0.0, eval_split=0.25,
                   near_duplicate_threshold=1.0, grpo_eval_prompts=4)  # fmt: skip
    outcome = run_training(settings, TrainingRequest("grpo", [data], name="rl", options=options))
    before, after = outcome.metrics["before"], outcome.metrics["after"]
    assert before["samples"] == after["samples"] == 8  # 2 held-out prompts x 4 samples
    assert after["mean_reward"] > before["mean_reward"] + 0.05, (before, after)
    assert outcome.adapter is not None and outcome.adapter.method == "grpo"
