"""A reward model: LoRA on a sequence-classification head of the base model, trained on preference pairs.

Contract:
- `RewardRunner` (`method: reward`) renders each pair's prompt exactly as served (stored rendered prompts verbatim),
  loads the base as `AutoModelForSequenceClassification` with one label, adds LoRA with the score head in
  `modules_to_save` (trained in full and saved with the adapter), and trains TRL's `RewardTrainer` (Bradley-Terry
  loss). Evaluation before and after: held-out pair `accuracy` (share of validation pairs whose chosen answer scores
  higher) and mean `margin`. The adapter is registered with kind `reward`.
- `RewardScorer(base_dir, adapter_dir)` loads such an adapter and `score(prompts, answers)` returns one float per
  (rendered prompt, answer) pair: the score of `prompt + answer + EOS`, the text the model was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training.data.dataset_formats import load_preference_examples
from training.data.render import preference_length, render_preference
from training.modeling import lora_target_modules
from training.registry import AdapterRegistry
from training.trainers import MethodRunner

log = logging.getLogger(__name__)


def reward_lora_config(model: Any, run_config: Any) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=run_config.lora_r,
        lora_alpha=run_config.lora_alpha,
        lora_dropout=run_config.lora_dropout,
        target_modules=lora_target_modules(model.config.model_type, run_config.lora_target_modules),
        modules_to_save=["score"],
        bias="none",
        task_type="SEQ_CLS",
    )


def load_reward_base(base_dir: Path, pad_token_id: int, seed: int = 42) -> Any:
    """The base with a fresh one-output score head (seeded: the head is random until trained)."""
    import torch
    from transformers import AutoModelForSequenceClassification, set_seed

    set_seed(seed)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1, dtype=dtype)
    model.config.pad_token_id = pad_token_id
    return model


def score_texts(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 8, tick: Callable[[], None] = lambda: None
) -> list[float]:
    """The model's scalar score of each text (tokenized without special tokens, as served). A text longer than the
    model's context keeps its last tokens (the answer and its end, which the score reads), never an error."""
    import torch

    longest = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
    scores: list[float] = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts[start : start + batch_size]]
            if longest is not None:
                chunk = [ids[-longest:] for ids in chunk]
            width = max(len(ids) for ids in chunk)
            pad = tokenizer.pad_token_id
            ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in chunk], device=device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in chunk], device=device)
            scores += model(input_ids=ids, attention_mask=mask).logits[:, 0].float().tolist()
            tick()  # the job's progress (it may stop a cancelled run)
    model.train(was_training)
    return scores


def pair_accuracy(
    model: Any, tokenizer: Any, rows: Sequence[dict[str, str]], tick: Callable[[], None] = lambda: None
) -> dict[str, float]:
    eos = tokenizer.eos_token
    chosen = score_texts(model, tokenizer, [r["prompt"] + r["chosen"] + eos for r in rows], tick=tick)
    rejected = score_texts(model, tokenizer, [r["prompt"] + r["rejected"] + eos for r in rows], tick=tick)
    diffs = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return {"pairs": float(len(diffs)), "accuracy": sum(d > 0 for d in diffs) / len(diffs),
            "margin": sum(diffs) / len(diffs)}  # fmt: skip


class RewardRunner(MethodRunner):
    """Reward model on preference pairs (TRL RewardTrainer)."""

    def load_examples(self) -> list[Any]:
        return list(load_preference_examples([Path(p) for p in self.request.data_files]))

    def encode(self, example: Any) -> dict[str, Any]:
        return render_preference(self.tokenizer, example)

    def length(self, example: Any, encoded: dict[str, Any]) -> int:
        return preference_length(self.tokenizer, example)

    def build_model(self) -> Any:
        from peft import PeftModel, get_peft_model

        model = load_reward_base(self.base_dir, self.tokenizer.pad_token_id, self.config.seed)
        if self.base_adapter is not None:
            return PeftModel.from_pretrained(model, str(self.base_adapter.path), is_trainable=True)
        return get_peft_model(model, reward_lora_config(model, self.config))

    def build_trainer(self, model: Any, train: Any, val: Any) -> Any:
        from trl import RewardTrainer

        self.eval_rows = [] if val is None else [val[i] for i in range(len(val))]
        return RewardTrainer(
            model=model,
            args=self.config,
            train_dataset=train,
            eval_dataset=val,
            processing_class=self.tokenizer,
            callbacks=list(self.callbacks),
        )

    def evaluate(self, trainer: Any, val: Any, stage: str) -> dict[str, float]:
        if not getattr(self, "eval_rows", None):
            return {}
        metrics = pair_accuracy(trainer.model, self.tokenizer, self.eval_rows, self.progress.advance)
        log.info("%s training: held-out pair accuracy %.3f, margin %.4f", stage, metrics["accuracy"], metrics["margin"])
        return metrics


class RewardScorer:
    """A registered reward model loaded for scoring (CPU or GPU, no gradients)."""

    def __init__(self, base_dir: Path, adapter_dir: Path) -> None:
        from peft import PeftModel

        from training.modeling import load_tokenizer

        self.tokenizer = load_tokenizer(base_dir)
        base = load_reward_base(base_dir, self.tokenizer.pad_token_id)
        self.model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()

    def score(self, prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
        """Scores of (rendered prompt, answer) pairs."""
        eos = self.tokenizer.eos_token
        return score_texts(self.model, self.tokenizer, [p + a + eos for p, a in zip(prompts, answers, strict=True)])

    @classmethod
    def from_registry(cls, registry: AdapterRegistry, ref: str, base_dir: Path) -> RewardScorer:
        from assistant.errors import UnprocessableError

        record = registry.resolve(ref)
        if record.kind != "reward":
            raise UnprocessableError(f"adapter {ref!r} is a {record.kind} adapter, not a reward model", param="model")
        return cls(base_dir, record.path)
