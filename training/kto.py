"""KTO (Kahneman-Tversky optimisation) on unpaired feedback: every thumbs up or down is one training example.

Contract:
- `load_kto_examples(paths)` reads unpaired feedback in the forms people have it: TRL's `{prompt, completion, label}`
  (prompt a string or a conversation), LLaMA-Factory's `kto_tag` (alpaca `instruction/input/output` or a
  `messages`/`conversations` list ending with the answer), the thumbs export of this platform
  (`{rendered_prompt, completion, label}`: the exact prompt the server built), and preference pairs, unpaired
  (chosen = thumbs up, rejected = thumbs down). A label is a bool, or 1/-1, "true"/"false", "up"/"down".
- `KTORunner` renders each prompt exactly as served (a stored rendered prompt is used verbatim), trains TRL's
  `KTOTrainer` with LoRA (reference = the base with the adapter disabled), and sets `desirable_weight` /
  `undesirable_weight` from the class counts when not given, so that weight x count is equal for both classes
  (the KTO paper's recommended ratio range [1, 4/3] starts at 1). Evaluation before and after: on the validation
  examples, mean log p(completion + EOS | prompt) of desirable minus undesirable completions (`logp_gap`); training
  should widen it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.dataset_formats import _completion, _conversation, _string, parse_sft_record, read_records
from training.data.records import DataValidationError, EmptyDatasetError, Message, check_conversation
from training.data.render import encode, prompt_messages, render_prompt
from training.trainers import PreferenceRunner

log = logging.getLogger(__name__)
_TRUE = {"true", "1", "up", "yes", "+1", "good", "desirable"}
_FALSE = {"false", "0", "-1", "down", "no", "bad", "undesirable"}


@dataclass(frozen=True)
class KTOExample:
    """A prompt (conversation ending with a user turn, or the server's rendered prompt) and one rated answer."""

    prompt: tuple[Message, ...]
    completion: str
    label: bool
    sources: None = None
    origin: str = ""
    rendered_prompt: str | None = None

    def text(self) -> str:
        """For dedup: the label, a digest of the prompt and the answer (the shared prompt must not make two
        differently rated answers to it look like near duplicates)."""
        digest = hashlib.sha1("\n".join(m["content"] for m in self.prompt).encode()).hexdigest()[:16]
        return f"{'up' if self.label else 'down'} p{digest} {self.completion}"

    def answer(self) -> str:
        # A thumbs-down answer is not quality-checked: a garbled answer is exactly what it teaches to avoid.
        return self.completion if self.label else self.prompt[-1]["content"]


def parse_label(value: Any, origin: str, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (1, -1, 0):
        return value > 0
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise DataValidationError(origin, field, f"must be true/false (or 1/-1, up/down), not {value!r}")


def parse_kto_record(record: Any, origin: str) -> list[KTOExample]:
    """One record -> one example (unpaired) or two (a preference pair)."""
    if not isinstance(record, dict):
        raise DataValidationError(origin, "record", "must be a JSON object")
    if "chosen" in record and "rejected" in record:
        from training.data.dataset_formats import parse_preference_record

        pair = parse_preference_record(record, origin)
        return [
            KTOExample(pair.prompt, pair.chosen, True, origin=f"{origin}:up", rendered_prompt=pair.rendered_prompt),
            KTOExample(
                pair.prompt, pair.rejected, False, origin=f"{origin}:down", rendered_prompt=pair.rendered_prompt
            ),
        ]
    field = "label" if "label" in record else "kto_tag" if "kto_tag" in record else None
    if field is None:
        raise DataValidationError(origin, "label", "is missing (expected 'label' or 'kto_tag', or chosen/rejected)")
    label = parse_label(record[field], origin, field)
    if "completion" in record:
        completion = _completion(record, "completion", origin)
        if "rendered_prompt" in record:
            rendered = _string(record, "rendered_prompt", origin)
            return [KTOExample(({"role": "user", "content": rendered},), completion, label, None, origin, rendered)]
        if "prompt" not in record:
            raise DataValidationError(origin, "prompt", "is missing")
        raw = record["prompt"]
        prompt = [{"role": "user", "content": raw}] if isinstance(raw, str) else _conversation(raw, origin, "prompt")
        check_conversation(prompt, origin, "prompt", last_role="user")
        return [KTOExample(tuple(prompt), completion, label, origin=origin)]
    chat = parse_sft_record({k: v for k, v in record.items() if k != field}, origin)  # LLaMA-Factory form
    return [KTOExample(chat.messages[:-1], chat.answer(), label, origin=origin)]


def load_kto_examples(paths: Sequence[Path]) -> list[KTOExample]:
    examples: list[KTOExample] = []
    for path in paths:
        for i, record in enumerate(read_records(Path(path))):
            examples += parse_kto_record(record, f"{path}#{i}")
    return examples


def class_weights(labels: Sequence[bool], desirable: float | None, undesirable: float | None) -> tuple[float, float]:
    """Weights making weight x count equal for both classes (the larger class keeps weight 1); given ones win."""
    n_up, n_down = sum(labels), len(labels) - sum(labels)
    if n_up == 0 or n_down == 0:
        raise EmptyDatasetError(
            f"KTO needs both thumbs up and thumbs down among the training examples (got {n_up} up, {n_down} down)"
        )
    auto_up, auto_down = (1.0, n_up / n_down) if n_up >= n_down else (n_down / n_up, 1.0)
    return (desirable if desirable is not None else auto_up, undesirable if undesirable is not None else auto_down)


def render_kto(tokenizer: Any, example: KTOExample) -> dict[str, Any]:
    if example.rendered_prompt is not None:
        prompt = example.rendered_prompt
    else:
        prompt = render_prompt(tokenizer, prompt_messages(example.prompt, example))  # type: ignore[arg-type]
    return {"prompt": prompt, "completion": example.completion, "label": example.label}


def logp_gap(
    model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], tick: Callable[[], None] = lambda: None
) -> dict[str, float]:
    """Mean log p(completion + EOS | prompt) of desirable rows minus that of undesirable rows; `tick` after each row
    (the job's progress: it may stop a cancelled run)."""
    from training.gate import completion_logprob

    was_training = model.training
    model.eval()
    up: list[float] = []
    down: list[float] = []
    for row in rows:
        (up if row["label"] else down).append(completion_logprob(model, tokenizer, row["prompt"], row["completion"]))
        tick()
    model.train(was_training)
    mean_up = sum(up) / len(up) if up else float("nan")
    mean_down = sum(down) / len(down) if down else float("nan")
    return {"desirable_logp": mean_up, "undesirable_logp": mean_down, "logp_gap": mean_up - mean_down}


class KTORunner(PreferenceRunner):
    """KTO with LoRA on unpaired thumbs up/down."""

    def load_examples(self) -> list[Any]:
        return load_kto_examples([Path(p) for p in self.request.data_files])

    def encode(self, example: Any) -> dict[str, Any]:
        return render_kto(self.tokenizer, example)

    def length(self, example: Any, encoded: dict[str, Any]) -> int:
        return len(encode(self.tokenizer, encoded["prompt"])) + len(encode(self.tokenizer, encoded["completion"])) + 1

    def prepare_data(self) -> tuple[Any, Any]:
        train, val = super().prepare_data()
        up, down = class_weights(train["label"], self.config.desirable_weight, self.config.undesirable_weight)
        self.config.desirable_weight, self.config.undesirable_weight = up, down
        n_up = sum(train["label"])
        self.weights = {"desirable": up, "undesirable": down,
                        "counts": {"desirable": n_up, "undesirable": len(train) - n_up}}  # fmt: skip
        log.info("KTO: %d desirable, %d undesirable; weights %.3f / %.3f", sum(train["label"]),
                 len(train) - sum(train["label"]), up, down)  # fmt: skip
        return train, val

    def run(self) -> dict[str, Any]:
        metrics = super().run()
        metrics["kto_weights"] = self.weights
        return metrics

    def build_trainer(self, model: Any, train: Any, val: Any) -> Any:
        from trl import KTOTrainer

        self.eval_rows = [] if val is None else [val[i] for i in range(len(val))]
        return KTOTrainer(**self.trainer_arguments(model, train, val))

    def evaluate(self, trainer: Any, val: Any, stage: str) -> dict[str, float]:
        if val is None or not self.eval_rows:
            return {}
        metrics = logp_gap(trainer.model, self.tokenizer, self.eval_rows, self.progress.advance)
        log.info("%s training: desirable - undesirable log p = %.4f", stage, metrics["logp_gap"])
        return metrics
