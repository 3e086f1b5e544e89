"""The evaluation gate: is a candidate adapter better than the version it would replace?

Contract: `run_gate(settings, candidate, baseline, pairs, qa=None)` loads the base model once, attaches the candidate
and the baseline adapter (the active version; None = the plain base model) under their own names, and scores each
on held-out preference pairs and, when given, on a held-out QA set answered with retrieval:
- pairs: `accuracy` (share of pairs where log p(chosen) > log p(rejected), summed over completion tokens + EOS,
  prompts rendered exactly as served) and `margin` (mean of that log-probability difference);
- QA: `exact_match` and `f1` (official SQuAD normalisation) of greedy answers to questions whose sources come from
  the platform's retriever, rendered through the server's RAG template.
`passed` is true when the candidate is not worse than the baseline on any measured score by more than
`training.gate_tolerance` (None when there was nothing to measure); `reasons` say what failed. Nothing here
writes: the worker stores the result on the candidate's registry row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.answer_metrics import best_exact_match, best_f1
from assistant.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldOutPair:
    prompt: str  # the exact rendered prompt
    chosen: str
    rejected: str


@dataclass(frozen=True)
class QAItem:
    question: str
    answers: tuple[str, ...]


# ---------------------------------------------------------------- scoring


def completion_logprob(model: Any, tokenizer: Any, prompt: str, completion: str) -> float:
    """Sum of log p(completion tokens + EOS | prompt)."""
    import torch

    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = [*tokenizer(completion, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    ids = torch.tensor([prompt_ids + answer_ids], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return float(logprobs.gather(1, torch.tensor(answer_ids, device=model.device)[:, None]).sum())


def pair_scores(model: Any, tokenizer: Any, pairs: Sequence[HeldOutPair]) -> dict[str, float]:
    diffs = [
        completion_logprob(model, tokenizer, p.prompt, p.chosen)
        - completion_logprob(model, tokenizer, p.prompt, p.rejected)
        for p in pairs
    ]
    return {"pairs": len(diffs), "accuracy": sum(d > 0 for d in diffs) / len(diffs), "margin": sum(diffs) / len(diffs)}


def qa_scores(answer: Callable[[str], str], items: Sequence[QAItem]) -> dict[str, float]:
    em = f1 = 0.0
    for item in items:
        prediction = answer(item.question)
        em += best_exact_match(prediction, item.answers)
        f1 += best_f1(prediction, item.answers)
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

    def use(self, which: str) -> Any:
        """A context in which the model is `which` ('candidate', 'baseline' or the base when no baseline)."""
        from contextlib import nullcontext

        if which == "baseline" and not self.has_baseline:
            return self.model.disable_adapter()
        self.model.set_adapter(which)
        return nullcontext()

    def generate(self, prompt: str, max_new_tokens: int = 48) -> str:
        import torch

        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
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


def rag_answerer(settings: Settings, models: GateModels) -> Callable[[str], str]:
    """Answers a question the way the server does: retrieve, render the RAG prompt, generate greedily."""
    from assistant.embedding import make_embedder
    from assistant.index import open_index
    from assistant.prompts import Source, build_rag_messages
    from assistant.retrieval import Retriever
    from assistant.storage import Database

    embedder = make_embedder(settings)
    index = open_index(settings.index_dir, embedder.dim, settings.ingest.approximate_after)
    retriever = Retriever(settings, Database(settings.resolved_database_url), index, embedder)

    def answer(question: str) -> str:
        hits = retriever.search(question)
        sources = [Source(h.text, h.title or h.source, h.section, h.page) for h in hits]
        messages = build_rag_messages([{"role": "user", "content": question}], sources)
        prompt = models.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return models.generate(str(prompt))

    return answer


# ---------------------------------------------------------------- the gate


def _compare(
    candidate: dict[str, float], baseline: dict[str, float], keys: Sequence[str], tolerance: float
) -> list[str]:
    return [
        f"{key} {candidate[key]:.4f} < {baseline[key]:.4f} of the baseline"
        for key in keys
        if candidate[key] < baseline[key] - tolerance
    ]


def run_gate(
    settings: Settings,
    base_dir: Path,
    candidate: Path,
    baseline: Path | None,
    pairs: Sequence[HeldOutPair],
    qa: Sequence[QAItem] = (),
    baseline_name: str = "base",
) -> dict[str, Any]:
    """Score candidate and baseline; see the module contract."""
    models = GateModels(base_dir, candidate, baseline)
    result: dict[str, Any] = {"baseline": baseline_name, "candidate": {}, "baseline_metrics": {}, "reasons": []}
    tolerance = settings.training.gate_tolerance
    answer = rag_answerer(settings, models) if qa else None
    for which, key in (("candidate", "candidate"), ("baseline", "baseline_metrics")):
        with models.use(which):
            if pairs:
                result[key]["pairs"] = pair_scores(models.model, models.tokenizer, pairs)
            if answer is not None:
                result[key]["qa"] = qa_scores(answer, qa)
    if pairs:
        result["reasons"] += _compare(
            result["candidate"]["pairs"], result["baseline_metrics"]["pairs"], ("accuracy", "margin"), tolerance
        )
    if answer is not None:
        result["reasons"] += _compare(result["candidate"]["qa"], result["baseline_metrics"]["qa"], ("f1",), tolerance)
    result["evaluated"] = bool(pairs) or answer is not None
    result["passed"] = (not result["reasons"]) if result["evaluated"] else None
    if not result["evaluated"]:
        result["reasons"].append("no held-out pairs or QA set: nothing was compared")
    log.info(
        "gate %s vs %s: %s %s", candidate, baseline_name, "passed" if result["passed"] else "failed", result["reasons"]
    )
    return result


def load_squad_qa(path: Path, limit: int) -> list[QAItem]:
    """The first `limit` questions (evenly over the articles) of a SQuAD-format file."""
    import json

    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    items = [
        QAItem(qa["question"], tuple(a["text"] for a in qa["answers"]))
        for article in data
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
        if qa["answers"]
    ]
    step = max(1, len(items) // limit)
    return items[::step][:limit]
