"""The evaluation gate: is a candidate adapter measurably better than the version it would replace?

Contract: `run_gate(parts, base_dir, candidate, baseline, heldout)` loads the base model once, attaches the
candidate and the baseline adapter (the active version; None = the plain base model) under their own names, and
scores each on what the job held out (`HeldOut`, never trained on):
- `pairs`: `reward_accuracy` (share of pairs whose implicit reward log p(y)/p_base(y) is higher for the chosen side,
  the base model as reference, ties half: what DPO optimises and TRL logs as `rewards/accuracies`), `accuracy`
  (share of pairs where log p(chosen) > log p(rejected), summed over completion tokens + EOS, prompts rendered
  exactly as served) and `margin` (mean of that log-probability difference);
- `qa`: `exact_match` and `f1` (official SQuAD normalisation, `assistant.answer_metrics`) of greedy answers to
  questions whose sources come from the platform's retriever over the job's collections, through
  `assistant.prompts.prompt_sources` and the server's RAG template;
- `lm`: the mean log-probability per completion token of held-out SFT examples (when there is nothing else).
Held-out sets are split by group in the runner (`split_by_group`): pairs by prompt (one prompt never on both sides)
and questions by document (`split_by_group`). `passed` is true only when the candidate's primary score (QA F1, else
pair reward accuracy, else per-token log-probability) beats the baseline's by more than `training.gate_margin` and no
measured score is worse by more than `training.gate_tolerance`; an equal candidate fails. It is None when there was
nothing to measure; `reasons` say what failed; `improvement` names the primary score and its change. Nothing here
writes: the worker stores the result on the candidate's registry row (shown by `GET /v1/adapters`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from assistant.answer_metrics import best_exact_match, best_f1, strip_citations
from assistant.chat_template import encode, render_prompt
from assistant.parts import Parts
from training.progress import RunProgress

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class HeldOutPair:
    prompt: str  # the exact rendered prompt
    chosen: str
    rejected: str


@dataclass(frozen=True)
class QAItem:
    question: str
    answers: tuple[str, ...]
    document: str = ""  # the group the held-out split is made by


@dataclass(frozen=True)
class HeldOutExample:
    prompt: str  # the exact rendered prompt
    completion: str


@dataclass
class HeldOut:
    """What a run kept out of training for the gate; handed to it in memory (`training.runs.TrainedRun`)."""

    pairs: list[HeldOutPair] = field(default_factory=list)
    qa: list[QAItem] = field(default_factory=list)
    examples: list[HeldOutExample] = field(default_factory=list)
    collections: list[str] | None = None

    def empty(self) -> bool:
        return not (self.pairs or self.qa or self.examples)


# ---------------------------------------------------------------- held-out splits


def split_by_group(
    items: Sequence[T], key: Callable[[T], Hashable], share: float, seed: int | str, min_count: int = 1
) -> tuple[list[T], list[T]]:
    """Seeded split where every group (same `key`) lies wholly on one side; at least `min_count` items (whole groups)
    are held out, about `share` of them. All items train (nothing held out) when a split would leave no training."""
    groups: dict[Hashable, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    order = list(groups)
    random.Random(str(seed)).shuffle(order)
    target = max(min_count, round(len(items) * share))
    if target <= 0:
        return list(items), []
    held: set[int] = set()
    for group in order:
        if len(held) >= target:
            break
        held.update(groups[group])
    if len(held) >= len(items) or len(groups) < 2:
        log.warning("only %d items in %d groups: nothing held out for the gate", len(items), len(groups))
        return list(items), []
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


# ---------------------------------------------------------------- scoring


def completion_logprob(model: Any, tokenizer: Any, prompt: str, completion: str) -> float:
    """Sum of log p(completion tokens + EOS | prompt)."""
    return completion_logprob_and_count(model, tokenizer, prompt, completion)[0]


def completion_logprob_and_count(model: Any, tokenizer: Any, prompt: str, completion: str) -> tuple[float, int]:
    """Sum of log p(completion tokens + EOS | prompt) and the number of those tokens."""
    import torch

    prompt_ids = encode(tokenizer, prompt)
    answer_ids = [*encode(tokenizer, completion), tokenizer.eos_token_id]
    ids = torch.tensor([prompt_ids + answer_ids], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    total = float(logprobs.gather(1, torch.tensor(answer_ids, device=model.device)[:, None]).sum())
    return total, len(answer_ids)


def pair_logprobs(
    model: Any, tokenizer: Any, pairs: Sequence[HeldOutPair], tick: Callable[[], None] = lambda: None
) -> list[tuple[float, float]]:
    """(log p(chosen), log p(rejected)) per pair, each summed over the completion tokens + EOS; `tick` after each."""
    out = []
    for p in pairs:
        out.append((completion_logprob(model, tokenizer, p.prompt, p.chosen),
                    completion_logprob(model, tokenizer, p.prompt, p.rejected)))  # fmt: skip
        tick()
    return out


def pair_scores(model: Any, tokenizer: Any, pairs: Sequence[HeldOutPair]) -> dict[str, float]:
    """`pair_summary` of the model's log-probabilities on the pairs (no reference: no reward accuracy)."""
    return pair_summary(pair_logprobs(model, tokenizer, pairs))


def pair_summary(
    scored: Sequence[tuple[float, float]], reference: Sequence[tuple[float, float]] | None = None
) -> dict[str, float]:
    """`accuracy` and `margin` of a model's own log-probabilities; given the reference model's (the base), also
    `reward_accuracy`: the share of pairs whose implicit DPO reward log p/p_ref is higher on the chosen side (TRL's
    `rewards/accuracies`), a tie counting half, so that the reference scored against itself gets exactly 0.5."""
    diffs = [chosen - rejected for chosen, rejected in scored]
    scores = {
        "pairs": len(diffs),
        "accuracy": sum(d > 0 for d in diffs) / len(diffs),
        "margin": sum(diffs) / len(diffs),
    }
    if reference is not None:
        rewards = [d - (chosen - rejected) for d, (chosen, rejected) in zip(diffs, reference, strict=True)]
        wins = sum(1.0 if r > REWARD_TIE else 0.5 if r >= -REWARD_TIE else 0.0 for r in rewards)
        scores["reward_accuracy"] = wins / len(rewards)
    return scores


# Reward differences within this many nats are ties: the reference scored against itself gives exactly 0.
REWARD_TIE = 1e-6


def example_scores(
    model: Any, tokenizer: Any, examples: Sequence[HeldOutExample], tick: Callable[[], None] = lambda: None
) -> dict[str, float]:
    total, tokens = 0.0, 0
    for example in examples:
        logp, n = completion_logprob_and_count(model, tokenizer, example.prompt, example.completion)
        total, tokens = total + logp, tokens + n
        tick()
    return {"examples": len(examples), "logprob_per_token": total / max(tokens, 1)}


def qa_scores(
    answer: Callable[[str], str], items: Sequence[QAItem], tick: Callable[[], None] = lambda: None
) -> dict[str, float]:
    em = f1 = 0.0
    for item in items:
        prediction = strip_citations(answer(item.question))  # scored as the benchmarks score: markers aside
        em += best_exact_match(prediction, item.answers)
        f1 += best_f1(prediction, item.answers)
        tick()
    return {"questions": len(items), "exact_match": em / len(items), "f1": f1 / len(items)}


# ---------------------------------------------------------------- models


class GateModels:
    """The base model once, with the candidate and baseline adapters attached by name."""

    def __init__(self, base_dir: Path, candidate: Path, baseline: Path | None) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(base_dir)
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        self.model = PeftModel.from_pretrained(base, str(candidate), adapter_name="candidate").eval()
        if baseline is not None:
            self.model.load_adapter(str(baseline), adapter_name="baseline")
        self.has_baseline = baseline is not None

    def is_base(self, which: str) -> bool:
        return which == "base" or (which == "baseline" and not self.has_baseline)

    def use(self, which: str) -> Any:
        """A context in which the model is `which`: 'candidate', 'baseline' (the base when there is none) or 'base'."""
        from contextlib import nullcontext

        if self.is_base(which):
            return self.model.disable_adapter()
        self.model.set_adapter(which)
        return nullcontext()

    def generate(self, prompt: str, max_new_tokens: int = 48) -> str:
        import torch

        ids = torch.tensor([encode(self.tokenizer, prompt)])
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        return str(self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)).strip()


def rag_answerer(parts: Parts, models: GateModels, collections: Sequence[str] | None) -> Callable[[str], str]:
    """Answers a question the way the server does: retrieve, the server's sources, the RAG prompt, greedy decoding."""
    from assistant.prompts import build_rag_messages
    from training.data.rag import ServingSources

    sources_for = ServingSources(parts.settings, collections, parts)

    def answer(question: str) -> str:
        sources = sources_for(question)
        if sources is None:  # the server answers this without generating
            from assistant.prompts import NO_SOURCES_ANSWER

            return NO_SOURCES_ANSWER
        messages = build_rag_messages([{"role": "user", "content": question}], sources)
        return models.generate(render_prompt(models.tokenizer, messages))

    return answer


# ---------------------------------------------------------------- the gate


CHECKED = {
    "qa": ("f1", "exact_match"),
    "pairs": ("reward_accuracy", "accuracy", "margin"),
    "lm": ("logprob_per_token",),
}
# The first present is the primary score; pairs scored without a reference have no reward accuracy.
PRIMARY = (("qa", "f1"), ("pairs", "reward_accuracy"), ("pairs", "accuracy"), ("lm", "logprob_per_token"))


def decide(
    candidate: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]], margin: float, tolerance: float
) -> tuple[bool | None, list[str], dict[str, Any] | None]:
    """(passed, reasons, improvement): see the module contract."""
    reasons = [
        f"{family}.{key} {candidate[family][key]:.4f} is worse than the baseline's {baseline[family][key]:.4f}"
        for family, keys in CHECKED.items()
        if family in candidate
        for key in keys
        if key in candidate[family] and candidate[family][key] < baseline[family][key] - tolerance
    ]
    family, key = next(((f, k) for f, k in PRIMARY if k in candidate.get(f, {})), (None, None))
    if family is None or key is None:
        return None, ["no held-out pairs, questions or examples: nothing was compared"], None
    delta = candidate[family][key] - baseline[family][key]
    improvement = {"metric": f"{family}.{key}", "candidate": candidate[family][key],
                   "baseline": baseline[family][key], "delta": delta, "margin": margin}  # fmt: skip
    if not delta > margin:
        reasons.append(
            f"{family}.{key} {candidate[family][key]:.4f} does not beat the baseline's {baseline[family][key]:.4f} "
            f"by more than the margin {margin}"
        )
    return not reasons, reasons, improvement


def spread(items: Sequence[T], key: Callable[[T], Hashable]) -> list[T]:
    """The items round-robin over their groups (documents): any prefix samples across the groups."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    queues = list(groups.values())
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def fit_to_budget(models: GateModels, answer: Any, heldout: HeldOut, seconds: float | None) -> HeldOut:
    """The held-out sets cut to what fits `seconds`: the time of one item under each model that scores it sets how
    many items of each family (sampled across documents) fit; None: every item. Questions are timed on the candidate
    and on the baseline apart: the base answers a question at length where a trained adapter answers in a few words,
    so the candidate's time twice would undercount the baseline's pass (a 15-minute job's gate ran 123 s of its 90)."""
    qa, pairs, examples = spread(heldout.qa, lambda q: q.document), list(heldout.pairs), list(heldout.examples)
    if seconds is None:
        return HeldOut(pairs, qa, examples, heldout.collections)
    families = [f for f in (qa, pairs, [] if (qa or pairs) else examples) if f]
    per_family = seconds / max(len(families), 1)
    if qa:
        one_question = [
            _item_s(models, which, lambda: qa_scores(answer, qa[:1])) for which in ("candidate", "baseline")
        ]
        qa = qa[: _fitting(per_family, one_question)]
    if pairs:  # the base's reference, the candidate and the baseline score each pair alike (log-probabilities)
        one_pair = _item_s(models, "candidate", lambda: pair_logprobs(models.model, models.tokenizer, pairs[:1]))
        pairs = pairs[: _fitting(per_family, [one_pair] * 3)]
    if examples and not (qa or pairs):
        one_example = _item_s(models, "candidate", lambda: example_scores(models.model, models.tokenizer, examples[:1]))
        examples = examples[: _fitting(per_family, [one_example] * 2)]
    log.info("gate sets fitted to %.0f s: %d questions, %d pairs, %d examples", seconds, len(qa), len(pairs),
             len(examples))  # fmt: skip
    return HeldOut(pairs, qa, examples, heldout.collections)


def _item_s(models: GateModels, which: str, score_one: Callable[[], Any]) -> float:
    """Seconds `score_one` takes under model `which` (at least a millisecond)."""
    with models.use(which):
        started = time.monotonic()
        score_one()
        return max(time.monotonic() - started, 1e-3)


def _fitting(seconds: float, per_pass: Sequence[float]) -> int:
    """How many items the passes (one item's seconds in each) can score in `seconds` (at least one)."""
    return max(1, int(seconds / sum(per_pass)))


def run_gate(
    parts: Parts,
    base_dir: Path,
    candidate: Path,
    baseline: Path | None,
    heldout: HeldOut,
    baseline_name: str = "base",
    progress: RunProgress | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """Score candidate and baseline on the held-out data (fitted to `seconds`); see the module contract."""
    progress = progress or RunProgress()
    models = GateModels(base_dir, candidate, baseline)
    scores: dict[str, dict[str, dict[str, float]]] = {"candidate": {}, "baseline": {}}
    settings = parts.settings
    answer = rag_answerer(parts, models, heldout.collections) if heldout.qa else None
    heldout = fit_to_budget(models, answer, heldout, seconds)
    lm_only = not heldout.qa and not heldout.pairs
    progress.advance(0, total=2 * len(heldout.qa) + 3 * len(heldout.pairs) + 2 * len(heldout.examples) * lm_only)
    tick = progress.advance
    reference = None
    if heldout.pairs:  # the base model's, once: the reference of every reward accuracy
        with models.use("base"):
            reference = pair_logprobs(models.model, models.tokenizer, heldout.pairs, tick)
    for which in ("candidate", "baseline"):
        with models.use(which):
            if heldout.qa and answer is not None:
                scores[which]["qa"] = qa_scores(answer, heldout.qa, tick)
            if reference is not None:  # the base is not scored twice
                base = models.is_base(which)
                own = reference if base else pair_logprobs(models.model, models.tokenizer, heldout.pairs, tick)
                scores[which]["pairs"] = pair_summary(own, reference)
            if lm_only and heldout.examples:
                scores[which]["lm"] = example_scores(models.model, models.tokenizer, heldout.examples, tick)
    options = settings.training
    passed, reasons, improvement = decide(
        scores["candidate"], scores["baseline"], options.gate_margin, options.gate_tolerance
    )
    result = {
        "baseline": baseline_name,
        "candidate": scores["candidate"],
        "baseline_metrics": scores["baseline"],
        "evaluated": passed is not None,
        "passed": passed,
        "reasons": reasons,
        "improvement": improvement,
        "margin": options.gate_margin,
        "tolerance": options.gate_tolerance,
    }
    verdict = {True: "passed", False: "failed", None: "not evaluated"}[passed]
    log.info("gate %s vs %s: %s %s", candidate, baseline_name, verdict, reasons)
    return result


def load_squad_qa(path: Path, limit: int) -> list[QAItem]:
    """The first `limit` answerable questions (evenly over the articles) of a SQuAD-format file."""
    from assistant.qa_sets import load_squad

    items = [
        QAItem(item.question, item.answers, paragraph.title)
        for paragraph in load_squad(path)
        for item in paragraph.items
        if not item.unanswerable
    ]
    step = max(1, len(items) // limit)
    return items[::step][:limit]
