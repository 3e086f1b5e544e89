"""Answer-quality metrics: the one home of SQuAD's official answer scoring and the grounding checks built on it.

Contract:
- `normalize_answer` is SQuAD v1.1's official normalisation (lower case, punctuation, articles and extra whitespace
  removed); `exact_match` and `f1` compare one prediction with one gold answer after it; the `best_*` helpers take the
  maximum over several gold answers, as the official script does.
- `contains_answer`: a normalised gold answer appears inside the normalised prediction.
- `grounding`: the share of the prediction's normalised tokens that occur in the given source texts (1.0 for an empty
  prediction: nothing ungrounded was said).
- `cites_answer`: some cited source text contains a normalised gold answer; `cited_indices` reads the `[n]` markers of
  a reply and `strip_citations` removes them (an answer is scored without its citation markers).
- `supporting_source`: the 1-based number of the source that best supports an answer (the first whose text contains
  the normalised answer, else the one holding the largest share of its tokens; None when no source shares a token):
  the server cites it when the model cited nothing.
- `is_abstention`: the reply is the platform's fixed "don't know" answer or says it does not know;
  `abstention_scores` gives precision/recall of abstaining on unanswerable questions.
- `percentile` (nearest-rank on sorted values) and `latency_summary` (p50/p95/mean) aggregate latencies.
Every function is pure and works on plain strings, so serving, training, the gate and the benchmarks share it.
"""

from __future__ import annotations

import collections
import math
import re
import string
from collections.abc import Iterable, Sequence

from assistant.prompts import NO_SOURCES_ANSWER

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


def supporting_source(answer: str, sources: Sequence[str]) -> int | None:
    """The number (1-based, prompt order) of the source that best supports `answer`, None when none shares a word."""
    normalised = normalize_answer(answer)
    if not normalised:
        return None
    for number, text in enumerate(sources, start=1):
        if f" {normalised} " in f" {normalize_answer(text)} ":
            return number
    shares = [grounding(answer, [text]) for text in sources]
    best = max(range(len(shares)), key=lambda i: (shares[i], -i), default=None)
    return None if best is None or shares[best] == 0 else best + 1


def cites_answer(cited_texts: Iterable[str], truths: Sequence[str]) -> float:
    """1.0 when some cited source holds a gold answer (citation accuracy), else 0.0."""
    return float(any(best_contains(text, truths) for text in cited_texts))


_CITATION = re.compile(r"\[(\d{1,3})\]")
_DONT_KNOW = re.compile(
    r"\b(i\s+(do\s+not|don'?t|cannot|can'?t)\s+(know|tell|say|answer|find)"
    r"|(no|not\s+enough)\s+information"
    r"|(is|are)\s+not\s+(mentioned|stated|given|provided|specified)"
    r"|(do|does)\s+not\s+(contain|mention|say|provide|specify)"
    r"|(unknown|not\s+known|unanswerable))\b",
    re.IGNORECASE,
)


def cited_indices(reply: str) -> list[int]:
    """The source numbers a reply cites with `[n]` markers, in order of first appearance."""
    seen: list[int] = []
    for match in _CITATION.finditer(reply):
        number = int(match.group(1))
        if number not in seen:
            seen.append(number)
    return seen


def strip_citations(reply: str) -> str:
    """The reply without its `[n]` citation markers."""
    return " ".join(_CITATION.sub(" ", reply).split())


def is_abstention(reply: str) -> bool:
    """The reply is the platform's fixed "don't know" answer, or says that it does not know."""
    text = reply.replace("\u2019", "'").strip()
    return text == NO_SOURCES_ANSWER or bool(_DONT_KNOW.search(text))


def abstention_scores(abstained: Sequence[bool], unanswerable: Sequence[bool]) -> dict[str, float | int | None]:
    """Precision (abstentions that were right) and recall (unanswerable questions abstained on); None when undefined."""
    pairs = list(zip(abstained, unanswerable, strict=True))
    both = sum(a and u for a, u in pairs)
    abstentions = sum(a for a, _ in pairs)
    unanswerables = sum(u for _, u in pairs)
    return {
        "abstentions": abstentions,
        "unanswerable": unanswerables,
        "precision": both / abstentions if abstentions else None,
        "recall": both / unanswerables if unanswerables else None,
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of `values`; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(seconds, 50),
        "p95": percentile(seconds, 95),
        "mean": sum(seconds) / len(seconds) if seconds else math.nan,
    }
