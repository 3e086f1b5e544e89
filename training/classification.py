"""Classification data trained as SFT: `text,label` rows become chat examples; evaluation by label accuracy/macro-F1.

Contract:
- `load_classification_examples(paths)` reads `text,label` CSV and `{"text", "label"}` JSON/JSONL records (other
  columns are ignored), collects the label set (sorted; at least two labels) and turns every row into a
  `ChatExample`: a user turn from `classification_prompt(text, labels)` (which lists the label set) and the label as
  the assistant's answer. Empty texts or labels fail with the file, row and field named.
- `label_metrics(model, tokenizer, prompts, gold, labels)` predicts, for each rendered prompt, the label with the
  highest log p(label + EOS | prompt) (decoding constrained to the label set) and returns `accuracy`, `macro_f1`
  and per-label precision/recall/F1/support.
- `ClassifyRunner` (`method: classify`) is the SFT runner on such data; it reports these metrics on the validation
  split before and after training, next to the validation loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.dataset_formats import read_records
from training.data.records import ChatExample, DataValidationError, EmptyDatasetError
from training.data.render import prompt_messages, render_prompt
from training.trainers import SFTRunner

log = logging.getLogger(__name__)


def classification_prompt(text: str, labels: Sequence[str]) -> str:
    """The user turn of a classification example: the label set, then the text."""
    return (
        f"Classify the text into exactly one of these labels: {', '.join(labels)}.\n"
        f"Answer with the label only.\n\nText: {text.strip()}"
    )


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str
    origin: str


def read_labelled(paths: Sequence[Path]) -> list[LabelledText]:
    rows: list[LabelledText] = []
    for path in paths:
        for i, record in enumerate(read_records(Path(path))):
            origin = f"{path}#{i}"
            if not isinstance(record, dict):
                raise DataValidationError(origin, "record", "must be an object with 'text' and 'label'")
            for key in ("text", "label"):
                value = record.get(key)
                if value is None or not str(value).strip():
                    raise DataValidationError(origin, key, "is missing or empty")
            rows.append(LabelledText(str(record["text"]), str(record["label"]).strip(), origin))
    return rows


def label_set(rows: Sequence[LabelledText]) -> list[str]:
    labels = sorted({r.label for r in rows})
    if len(labels) < 2:
        raise EmptyDatasetError(f"classification needs at least two labels, the data has {labels}")
    return labels


def to_chat(row: LabelledText, labels: Sequence[str]) -> ChatExample:
    user = {"role": "user", "content": classification_prompt(row.text, labels)}
    return ChatExample(messages=(user, {"role": "assistant", "content": row.label}), origin=row.origin)


def load_classification_examples(paths: Sequence[Path]) -> tuple[list[ChatExample], list[str]]:
    rows = read_labelled(paths)
    if not rows:
        raise EmptyDatasetError(f"the data files {[str(p) for p in paths]} hold no records")
    labels = label_set(rows)
    return [to_chat(r, labels) for r in rows], labels


def predict_labels(model: Any, tokenizer: Any, prompts: Sequence[str], labels: Sequence[str]) -> list[str]:
    """argmax over the label set of log p(label + EOS | prompt), one forward per prompt (labels batched)."""
    import torch

    label_ids = [[*tokenizer(label, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id] for label in labels]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    predictions = []
    with torch.no_grad():
        for prompt in prompts:
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            rows = [prompt_ids + ids for ids in label_ids]
            width = max(len(r) for r in rows)
            ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            scores = []
            for row, target in enumerate(label_ids):
                positions = torch.arange(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(target), device=device)
                scores.append(float(logp[row, positions, torch.tensor(target, device=device)].sum()))
            predictions.append(labels[max(range(len(labels)), key=scores.__getitem__)])
    model.train(was_training)
    return predictions


def classification_scores(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-label precision/recall/F1/support."""
    per_label: dict[str, dict[str, float]] = {}
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": float(tp + fn)}
    accuracy = sum(g == p for g, p in zip(gold, predicted, strict=True)) / max(len(gold), 1)
    macro_f1 = sum(v["f1"] for v in per_label.values()) / len(labels)
    return {"accuracy": accuracy, "macro_f1": macro_f1, "examples": float(len(gold)), "per_label": per_label}


def label_metrics(model: Any, tokenizer: Any, prompts: Sequence[str], gold: Sequence[str],
                  labels: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    return classification_scores(gold, predict_labels(model, tokenizer, prompts, labels), labels)


class ClassifyRunner(SFTRunner):
    """SFT on `text,label` data with label accuracy and macro-F1 before and after."""

    def load_examples(self) -> list[Any]:
        examples, self.labels = load_classification_examples([Path(p) for p in self.request.data_files])
        return examples

    def encode(self, example: Any) -> dict[str, Any]:
        encoded = super().encode(example)
        prompt = render_prompt(self.tokenizer, prompt_messages(example.messages[:-1], example))
        return {**encoded, "cls_prompt": prompt, "cls_label": example.answer()}

    def prepare_data(self) -> tuple[Any, Any]:
        train, val = super().prepare_data()
        self.eval_items: list[tuple[str, str]] = []
        if val is not None:
            limit = self.config.classify_eval_limit or len(val)
            self.eval_items = list(zip(val["cls_prompt"][:limit], val["cls_label"][:limit], strict=True))
            val = val.remove_columns(["cls_prompt", "cls_label"])
        return train.remove_columns(["cls_prompt", "cls_label"]), val

    def evaluate(self, trainer: Any, val: Any, stage: str) -> dict[str, Any]:
        metrics: dict[str, Any] = dict(super().evaluate(trainer, val, stage))
        if self.eval_items:
            prompts, gold = zip(*self.eval_items, strict=True)
            scores = label_metrics(trainer.model, self.tokenizer, prompts, gold, self.labels)
            metrics.update(scores)
            log.info("%s training: label accuracy %.3f, macro-F1 %.3f", stage, scores["accuracy"], scores["macro_f1"])
        return metrics
