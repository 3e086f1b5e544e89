"""Continued pretraining (`method: pt`): a LoRA adapter trained with the causal LM loss on a collection's own text.

Contract: `PretrainRunner` reads plain text: JSONL records with a `text` field (a `data.source = "collection"` job
gets the collection's chunks written so by the worker) or `.txt`/`.md` files (one example per blank-line-separated
block). Every token of a text is a target (no prompt, no chat template), cut to `max_length`. The run's validation
split (`eval_split`) is held-out text of the collection: its perplexity before and after training is in the metrics
(`perplexity: {before, after}`, from the same evaluation as `before`/`after`). For the gate, each held-out text is
split in two at a sentence near its middle: the candidate must make the second half likelier given the first
(`training.gate` scores such `HeldOutExample`s). The adapter can be served alone or be the `base_adapter` of an SFT
job. Uses the SFT trainer and config (`training.config.SFTRunConfig`).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from training.data.records import ChatExample, DataValidationError
from training.gate import HeldOut, HeldOutExample
from training.trainers import SFTRunner

log = logging.getLogger(__name__)
_BLOCK = re.compile(r"\n\s*\n")


def read_texts(path: Path) -> list[str]:
    """The texts of a JSONL file of `{"text": ...}` records or of a plain text file (blank-line-separated blocks)."""
    if path.suffix.lower() != ".jsonl":
        return [block.strip() for block in _BLOCK.split(path.read_text(encoding="utf-8")) if block.strip()]
    texts = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataValidationError(f"{path}#{i}", "json", f"is not valid JSON ({exc.msg})") from exc
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise DataValidationError(f"{path}#{i}", "text", 'is missing (pt reads {"text": ...} records)')
        texts.append(text.strip())
    return texts


def split_for_gate(text: str) -> HeldOutExample:
    """The text cut at the sentence end nearest its middle: the first part is the prompt, the rest the answer."""
    ends = [m.end() for m in re.finditer(r"[.!?]\s+", text)]
    middle = len(text) // 2
    cut = min(ends, key=lambda e: abs(e - middle)) if ends else middle
    return HeldOutExample(text[:cut], text[cut:])


class PretrainRunner(SFTRunner):
    """Causal LM loss on every token of the texts (see the module contract)."""

    def load_examples(self) -> list[Any]:
        examples = []
        for path in map(Path, self.request.data_files):
            examples += [
                ChatExample(messages=({"role": "assistant", "content": text},), origin=f"{path.name}#{i}")
                for i, text in enumerate(read_texts(path))
            ]
        self.heldout.collections = [self.request.collection] if self.request.collection else None
        return examples

    def encode(self, example: Any) -> dict[str, Any]:
        limit = max((self.config.max_length or 1024) - 1, 1)
        ids = [*self.tokenizer(example.answer(), add_special_tokens=False)["input_ids"][:limit]]
        ids.append(self.tokenizer.eos_token_id)
        return {"input_ids": ids, "labels": list(ids)}

    def held_out_for_gate(self) -> HeldOut:
        limit = self.settings.training.gate_examples
        self.heldout.examples = [split_for_gate(e.answer()) for e in self.validation_examples[:limit]]
        return self.heldout

    def run(self) -> dict[str, Any]:
        metrics = super().run()
        before, after = metrics.get("before") or {}, metrics.get("after") or {}
        metrics["perplexity"] = {"before": before.get("perplexity"), "after": after.get("perplexity"),
                                 "heldout_texts": metrics.get("validation_examples", 0)}  # fmt: skip
        log.info("held-out perplexity on the collection: %s", metrics["perplexity"])
        return metrics
