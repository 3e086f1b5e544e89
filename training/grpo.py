"""Online RL with GRPO and LoRA: answers sampled for served prompts, rewarded by a reward model and rule rewards.

Contract:
- Prompts come from stored chats or feedback (the exact rendered prompts, retrieved sources included; see
  `training.data.feedback_data`) or a file: `{rendered_prompt}` verbatim, `{prompt}` (a string or a conversation ending
  with a user turn) or any SFT record (its prompt part), rendered through the serving template.
- Rewards (summed, TRL weights 1 each unless `reward_weights` is set): `reward_model` (a registered adapter of
  kind `reward`, scoring prompt + answer + EOS as it was trained) and the rule rewards in `rule_rewards`:
  `cites_source` (1 when the answer cites [n] with n a source of the prompt; 0 otherwise, also when the prompt has
  no sources), `grounded` (share of the answer's words of 4+ letters that occur in the prompt) and `length`
  (1 - |tokens - target_length| / max(target_length, max_completion_length), floored at 0).
- Training is TRL's `GRPOTrainer` with a LoRA `peft_config` (generation through the trainer's own `generate` on CPU;
  `use_vllm` may be set on a GPU). Before and after training the mean reward of answers sampled (seeded) for the
  held-out prompts is measured (`mean_reward`, and per reward function).
- PPO is not offered: TRL 1.16 ships no PPO trainer (it was removed from `trl` and is not in `trl.experimental`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.dataset_formats import _conversation, _string, parse_sft_record, read_records
from training.data.records import DataValidationError, Message, check_conversation
from training.data.render import encode, prompt_messages, render_prompt
from training.trainers import PreferenceRunner

log = logging.getLogger(__name__)
_CITATION = re.compile(r"\[(\d+)\]")
_SOURCE_LINE = re.compile(r"^\[(\d+)\] ", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z]{4,}")


@dataclass(frozen=True)
class PromptExample:
    """A prompt to sample answers for (a conversation ending with a user turn, or the server's rendered text)."""

    prompt: tuple[Message, ...]
    sources: None = None
    origin: str = ""
    rendered_prompt: str | None = None

    def text(self) -> str:
        return self.rendered_prompt or "\n".join(m["content"] for m in self.prompt)

    def answer(self) -> str:
        return self.prompt[-1]["content"]


def parse_prompt_record(record: Any, origin: str) -> PromptExample:
    if not isinstance(record, dict):
        raise DataValidationError(origin, "record", "must be a JSON object")
    if "rendered_prompt" in record:
        rendered = _string(record, "rendered_prompt", origin)
        if not rendered.strip():
            raise DataValidationError(origin, "rendered_prompt", "is empty")
        return PromptExample(({"role": "user", "content": rendered},), origin=origin, rendered_prompt=rendered)
    if "prompt" in record:
        raw = record["prompt"]
        prompt = [{"role": "user", "content": raw}] if isinstance(raw, str) else _conversation(raw, origin, "prompt")
        check_conversation(prompt, origin, "prompt", last_role="user")
        return PromptExample(tuple(prompt), origin=origin)
    chat = parse_sft_record(record, origin)
    return PromptExample(chat.messages[:-1], origin=origin)


def load_prompt_examples(paths: Sequence[Path]) -> list[PromptExample]:
    examples: list[PromptExample] = []
    for path in paths:
        examples += [parse_prompt_record(r, f"{path}#{i}") for i, r in enumerate(read_records(Path(path)))]
    return examples


# ---------------------------------------------------------------- rewards


def cites_source(prompt: str, completion: str) -> float:
    sources = {int(n) for n in _SOURCE_LINE.findall(prompt)}
    cited = {int(n) for n in _CITATION.findall(completion)}
    return 1.0 if sources and cited and cited <= sources else 0.0


def grounded(prompt: str, completion: str) -> float:
    words = [w.lower() for w in _WORD.findall(completion)]
    if not words:
        return 0.0
    vocabulary = {w.lower() for w in _WORD.findall(prompt)}
    return sum(w in vocabulary for w in words) / len(words)


def length_reward(tokens: int, target: int, longest: int) -> float:
    return max(0.0, 1.0 - abs(tokens - target) / max(target, longest))


def _cites_source_reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    return [cites_source(p, c) for p, c in zip(prompts, completions, strict=True)]


def _grounded_reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    return [grounded(p, c) for p, c in zip(prompts, completions, strict=True)]


def _length_factory(target: int, longest: int) -> Callable[..., list[float]]:
    def length_reward_rule(completion_ids: list[list[int]], **_: Any) -> list[float]:
        return [length_reward(len(ids), target, longest) for ids in completion_ids]

    return length_reward_rule


# name -> factory(target_length, max_completion_length) -> a TRL reward function. `register_rule_reward` adds one.
RULE_FACTORIES: dict[str, Callable[[int, int], Callable[..., list[float]]]] = {
    "cites_source": lambda target, longest: _cites_source_reward,
    "grounded": lambda target, longest: _grounded_reward,
    "length": _length_factory,
}


def register_rule_reward(name: str, function: Callable[..., list[float]]) -> None:
    """Make `function` (TRL reward signature: prompts, completions, completion_ids keywords) a named rule."""
    RULE_FACTORIES[name] = lambda target, longest: function


def rule_reward_functions(names: Sequence[str], target: int, longest: int) -> list[Callable[..., list[float]]]:
    """TRL reward functions for the named rules; unknown names fail (before any training step)."""
    from training.config import TrainingConfigError

    unknown = sorted(set(names) - set(RULE_FACTORIES))
    if unknown:
        raise TrainingConfigError("rule_rewards", f"has unknown rules {unknown} (known: {sorted(RULE_FACTORIES)})")
    return [RULE_FACTORIES[name](target, longest) for name in names]


def reward_model_function(scorer: Any) -> Callable[..., list[float]]:
    def reward_model(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        return scorer.score(prompts, completions)

    return reward_model


# ---------------------------------------------------------------- the runner


class GRPORunner(PreferenceRunner):
    """GRPO with LoRA on served prompts."""

    def load_examples(self) -> list[Any]:
        return load_prompt_examples([Path(p) for p in self.request.data_files])

    def encode(self, example: Any) -> dict[str, Any]:
        if example.rendered_prompt is not None:
            return {"prompt": example.rendered_prompt}
        return {"prompt": render_prompt(self.tokenizer, prompt_messages(example.prompt, example))}

    def length(self, example: Any, encoded: dict[str, Any]) -> int:
        return len(encode(self.tokenizer, encoded["prompt"]))

    def selection_options(self) -> Any:
        from training.data.selection import SelectionOptions

        c = self.config  # GRPO has no max_length: prompts are bounded by the model, answers by max_completion_length
        return SelectionOptions(min_tokens=c.min_tokens, max_tokens=10**9,
                                near_duplicate_threshold=c.near_duplicate_threshold, eval_split=c.eval_split,
                                seed=c.seed)  # fmt: skip

    def reward_functions(self) -> list[Callable[..., list[float]]]:
        """Built before the model: a missing or wrong reward model fails before any step."""
        if not hasattr(self, "_rewards"):
            c = self.config
            functions = rule_reward_functions(c.rule_rewards, c.target_length, c.max_completion_length or 256)
            if c.reward_model:
                from training.registry import AdapterRegistry
                from training.reward import RewardScorer

                scorer = RewardScorer.from_registry(AdapterRegistry.of(self.parts), c.reward_model, self.base_dir)
                functions.insert(0, reward_model_function(scorer))
            self._rewards = functions
        return self._rewards

    def check_base_adapter(self) -> None:
        super().check_base_adapter()
        self.reward_functions()

    def build_trainer(self, model: Any, train: Any, val: Any) -> Any:
        from transformers import IntervalStrategy
        from trl import GRPOTrainer

        self.config.eval_strategy = IntervalStrategy.NO  # held-out prompts are scored by `evaluate`, not the trainer
        limit = self.config.grpo_eval_prompts
        self.eval_prompts = [] if val is None else list(val["prompt"][:limit])
        arguments = self.trainer_arguments(model, train, None)  # held-out prompts are scored by `evaluate`
        del arguments["eval_dataset"]
        return GRPOTrainer(reward_funcs=list(self.reward_functions()), **arguments)  # type: ignore[arg-type]

    def evaluate(self, trainer: Any, val: Any, stage: str) -> dict[str, float]:
        if not getattr(self, "eval_prompts", None):
            return {}
        completions, ids = sample_answers(trainer.model, self.tokenizer, self.eval_prompts, self.config)
        prompts = [p for p in self.eval_prompts for _ in range(self.config.num_generations)]
        metrics = mean_rewards(self.reward_functions(), prompts, completions, ids)
        log.info("%s training: mean reward of sampled answers %.4f", stage, metrics["mean_reward"])
        return metrics


def sample_answers(
    model: Any, tokenizer: Any, prompts: Sequence[str], config: Any
) -> tuple[list[str], list[list[int]]]:
    """`num_generations` seeded samples per prompt at the training temperature."""
    import torch

    torch.manual_seed(config.seed)
    was_training = model.training
    model.eval()
    texts, all_ids = [], []
    device = next(model.parameters()).device
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]], device=device)
            out = model.generate(
                input_ids=ids.repeat(config.num_generations, 1),
                attention_mask=torch.ones_like(ids).repeat(config.num_generations, 1),
                do_sample=True,
                temperature=config.temperature,
                top_p=1.0,
                top_k=0,
                max_new_tokens=config.max_completion_length or 256,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            for row in out[:, ids.shape[1] :].tolist():
                row = row[: row.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in row else row
                all_ids.append(row)
                texts.append(tokenizer.decode(row, skip_special_tokens=True))
    model.train(was_training)
    return texts, all_ids


def mean_rewards(functions: Sequence[Callable[..., list[float]]], prompts: list[str], completions: list[str],
                 ids: list[list[int]]) -> dict[str, float]:  # fmt: skip
    metrics: dict[str, float] = {}
    total = [0.0] * len(completions)
    for function in functions:
        values = function(prompts=prompts, completions=completions, completion_ids=ids)
        metrics[f"reward/{function.__name__}"] = sum(values) / len(values)
        total = [t + v for t, v in zip(total, values, strict=True)]
    metrics["mean_reward"] = sum(total) / len(total)
    metrics["samples"] = float(len(total))
    return metrics
