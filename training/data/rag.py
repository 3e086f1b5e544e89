"""RAG-style training examples: retrieved context per example (gold passage plus distractors, RAFT-style).

Contract: distractors come through the `DistractorRetriever` protocol (a callable `(query, k) -> list[Source]`), so
`training` never imports `ingest`. `BM25Distractors` is the default over an in-memory passage corpus (bm25s); when
the core retriever `assistant.retrieval` exists it can be wrapped the same way by the caller. `load_squad_examples`
turns a SQuAD v1.1 JSON file into `ChatExample`s: the question, its gold paragraph and `k` distractors (never the
gold paragraph itself) shuffled with a seeded RNG, answered by the first gold answer text. The examples carry their
sources and are rendered later with `assistant.prompts.build_rag_messages`, exactly as the server renders them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from assistant.prompts import Source
from training.data.records import ChatExample, DataValidationError


class DistractorRetriever(Protocol):
    """Anything that returns up to `k` passages for a query (best first)."""

    def __call__(self, query: str, k: int) -> list[Source]: ...


class BM25Distractors:
    """BM25 (bm25s) over a fixed list of passages."""

    def __init__(self, passages: Sequence[Source]) -> None:
        import bm25s

        self.passages = list(passages)
        self._bm25 = bm25s.BM25()
        self._bm25.index(
            bm25s.tokenize([p.text for p in self.passages], stopwords="en", show_progress=False), show_progress=False
        )

    def __call__(self, query: str, k: int) -> list[Source]:
        import bm25s

        k = min(k, len(self.passages))
        if k <= 0:
            return []
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        ids, _scores = self._bm25.retrieve(tokens, k=k, show_progress=False)
        return [self.passages[int(i)] for i in ids[0]]


@dataclass(frozen=True)
class SquadQuestion:
    question: str
    answer: str
    gold: Source
    qid: str


def is_squad_file(path: Path) -> bool:
    """True for a SQuAD-shaped JSON file (`{"data": [{"paragraphs": [...]}]}`)."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with path.open(encoding="utf-8") as handle:
        head = handle.read(4096)
    return '"paragraphs"' in head and '"data"' in head


def read_squad(path: Path) -> list[SquadQuestion]:
    """Every answerable question of a SQuAD v1.1 file with its gold paragraph (titled by the article)."""
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataValidationError(str(path), "data", "is not a SQuAD v1.1 file") from exc
    out: list[SquadQuestion] = []
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            gold = Source(text=paragraph.get("context", ""), title=str(article.get("title", "")).replace("_", " "))
            out.extend(_questions(paragraph, gold, f"{path}#data[{a}].paragraphs[{p}]"))
    return out


def _questions(paragraph: dict[str, Any], gold: Source, origin: str) -> list[SquadQuestion]:
    out = []
    for q, qa in enumerate(paragraph.get("qas", [])):
        answers = qa.get("answers") or []
        if "question" not in qa:
            raise DataValidationError(f"{origin}.qas[{q}]", "question", "is missing")
        if answers:
            out.append(SquadQuestion(qa["question"], str(answers[0].get("text", "")), gold, str(qa.get("id", q))))
    return out


def rag_example(item: SquadQuestion, retriever: DistractorRetriever, k: int, rng: random.Random) -> ChatExample:
    """Question + gold + k distractors (shuffled) -> the gold answer."""
    candidates = retriever(item.question, k + 1)
    distractors = [s for s in candidates if s.text != item.gold.text][:k]
    sources = [item.gold, *distractors]
    rng.shuffle(sources)
    messages = ({"role": "user", "content": item.question}, {"role": "assistant", "content": item.answer})
    return ChatExample(messages=messages, sources=tuple(sources), origin=f"squad:{item.qid}")


def load_squad_examples(
    path: Path,
    distractors: int = 3,
    seed: int = 42,
    retriever: DistractorRetriever | None = None,
    limit: int | None = None,
) -> list[ChatExample]:
    """RAG SFT examples from a SQuAD file; the default retriever is BM25 over the file's own paragraphs."""
    questions = read_squad(path)
    rng = random.Random(seed)
    if limit is not None and limit < len(questions):
        questions = rng.sample(questions, limit)
    if retriever is None:
        unique = {q.gold.text: q.gold for q in read_squad(path)}
        retriever = BM25Distractors(list(unique.values()))
    return [rag_example(q, retriever, distractors, rng) for q in questions]
