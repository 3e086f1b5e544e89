"""Data selection before training: dedup, quality and length filters, a seeded train/validation split, a report.

Contract: `select_examples(examples, token_lengths, options)` keeps examples in input order, drops exact duplicates
(sha256 of the normalised text) and near duplicates (MinHash LSH on word 3-shingles, Jaccard >= threshold; both from
`assistant.dedup`, the home ingest uses too),
empty or garbled ones and those outside the token-length bounds, then splits the rest with a seeded shuffle. The
`SelectionReport` counts what was kept and why the rest was dropped; `write_report` logs it and writes it as JSON.
Token lengths are measured by the caller with the model's tokenizer on the exact rendered sequence.
"""

from __future__ import annotations

import json
import logging
import random
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from assistant.dedup import NearDuplicateIndex, content_hash, normalised
from training.data.records import ChatExample, Example, PreferenceExample

log = logging.getLogger(__name__)
E = TypeVar("E", ChatExample, PreferenceExample)


@dataclass(frozen=True)
class SelectionOptions:
    """Knobs of the selection step (names match the training flags)."""

    min_tokens: int = 4
    max_tokens: int = 1024
    near_duplicate_threshold: float = 0.9
    eval_split: float = 0.1
    seed: int = 42
    min_alnum_ratio: float = 0.25
    num_perm: int = 128


@dataclass
class SelectionReport:
    """What the selection kept and dropped, with reasons."""

    total: int = 0
    kept: int = 0
    train: int = 0
    validation: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_examples: dict[str, list[str]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # per-step facts (relevance scores, diversity clusters)

    def drop(self, reason: str, origin: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        samples = self.dropped_examples.setdefault(reason, [])
        if len(samples) < 5:
            samples.append(origin)

    def summary(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())) or "none"
        return (
            f"data selection: {self.total} records, kept {self.kept} (train {self.train}, validation "
            f"{self.validation}); dropped: {reasons}"
        )


@dataclass
class Selection(Generic[E]):
    train: list[E]
    validation: list[E]
    report: SelectionReport


def example_hash(example: Example) -> str:
    return content_hash(normalised(example.text()))


def quality_problem(example: Example, min_alnum_ratio: float) -> str | None:
    """'empty' or 'garbled' when the example should not be trained on, else None."""
    texts = [m["content"] for m in _all_turns(example)] + [example.answer()]
    if any(not t.strip() for t in texts):
        return "empty"
    joined = "".join(texts)
    if "\ufffd" in joined or any(unicodedata.category(c) == "Cc" and c not in "\n\r\t" for c in joined):
        return "garbled"
    alnum = sum(c.isalnum() for c in joined)
    return "garbled" if alnum < min_alnum_ratio * len(joined.replace(" ", "")) else None


def _all_turns(example: Example) -> Sequence[dict[str, str]]:
    # A pair's rejected side is not checked: a garbled answer is exactly what a thumbs-down teaches the model to avoid.
    return example.messages if isinstance(example, ChatExample) else example.prompt


def drop_reason(example: Example, length: int, options: SelectionOptions) -> str | None:
    problem = quality_problem(example, options.min_alnum_ratio)
    if problem:
        return problem
    if length < options.min_tokens:
        return "too_short"
    if length > options.max_tokens:
        return "too_long"
    return None


def select_examples(examples: Sequence[E], token_lengths: Sequence[int], options: SelectionOptions) -> Selection[E]:
    """Filter and split; see the module docstring for the order of the checks."""
    report = SelectionReport(total=len(examples))
    hashes: set[str] = set()
    near = NearDuplicateIndex(options.near_duplicate_threshold, options.num_perm, verify=True)
    kept: list[E] = []
    for example, length in zip(examples, token_lengths, strict=True):
        reason = drop_reason(example, length, options)
        digest = example_hash(example) if reason is None else ""
        if reason is None and digest in hashes:
            reason = "exact_duplicate"
        if reason is None and near.check_and_add(len(kept), example.text()):
            reason = "near_duplicate"
        if reason:
            report.drop(reason, example.origin)
            continue
        hashes.add(digest)
        kept.append(example)
    train, validation = split(kept, options.eval_split, options.seed)
    report.kept, report.train, report.validation = len(kept), len(train), len(validation)
    return Selection(train, validation, report)


def split(examples: Sequence[E], eval_split: float, seed: int) -> tuple[list[E], list[E]]:
    """Seeded shuffle, then the last `eval_split` share (at least one when there are two or more) is validation."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = 0 if eval_split <= 0 or len(order) < 2 else max(1, round(len(order) * eval_split))
    n_val = min(n_val, len(order) - 1)
    cut = len(order) - n_val
    return [examples[i] for i in order[:cut]], [examples[i] for i in order[cut:]]


def write_report(report: SelectionReport, run_dir: Path, extra: dict[str, Any] | None = None) -> Path:
    """Log the summary and write `data_report.json` into the run directory."""
    log.info(report.summary())
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "data_report.json"
    payload = {**asdict(report), **(extra or {}), "counts_by_reason": dict(Counter(report.dropped))}
    path.write_text(json.dumps(payload, indent=2))
    return path
