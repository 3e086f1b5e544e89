"""Answer-quality metrics: the one home of SQuAD's official answer scoring and the grounding checks built on it.

Contract:
- `normalize_answer` is SQuAD v1.1's official normalisation (lower case, punctuation, articles and extra whitespace
  removed); `exact_match` and `f1` compare one prediction with one gold answer after it; the `best_*` helpers take the
  maximum over several gold answers, as the official script does.
- `contains_answer`: a normalised gold answer appears inside the normalised prediction.
- `grounding`: the share of the prediction's normalised tokens that occur in the given source texts (1.0 for an empty
  prediction: nothing ungrounded was said).
- `cites_answer`: some cited source text contains a normalised gold answer.
Every function is pure and works on plain strings, so serving, training, the gate and the benchmarks share it.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's official normalisation: lower case, no punctuation, articles or extra whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str) -> float:
    """Token-level F1 between the normalised prediction and gold answer (official SQuAD v1.1 definition)."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred or not gold:
        return float(pred == gold)
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def contains_answer(prediction: str, truth: str) -> float:
    gold = normalize_answer(truth)
    return float(bool(gold) and f" {gold} " in f" {normalize_answer(prediction)} ")


def best_exact_match(prediction: str, truths: Sequence[str]) -> float:
    return max((exact_match(prediction, t) for t in truths), default=0.0)


def best_f1(prediction: str, truths: Sequence[str]) -> float:
    return max((f1(prediction, t) for t in truths), default=0.0)


def best_contains(prediction: str, truths: Sequence[str]) -> float:
    return max((contains_answer(prediction, t) for t in truths), default=0.0)


def grounding(prediction: str, sources: Iterable[str]) -> float:
    """Share of the prediction's normalised tokens found among the sources' normalised tokens."""
    tokens = normalize_answer(prediction).split()
    if not tokens:
        return 1.0
    vocabulary: set[str] = set()
    for text in sources:
        vocabulary.update(normalize_answer(text).split())
    return sum(token in vocabulary for token in tokens) / len(tokens)


def cites_answer(cited_texts: Iterable[str], truths: Sequence[str]) -> float:
    """1.0 when some cited source holds a gold answer (citation accuracy), else 0.0."""
    return float(any(best_contains(text, truths) for text in cited_texts))
