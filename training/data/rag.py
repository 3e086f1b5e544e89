"""RAG training examples on the serving distribution (RAFT-style): the sources the server would show, the answer or
the abstention.

Contract:
- Questions come from SQuAD-format files (`read_squad`, the gold paragraph known) or question/answer JSONL files
  (`read_qa_file`: `question` + `answer`/`answers`, optional `document`), each with the document it is about.
- With a collection (`data.collection` of a job), `ServingSources(settings, collections, parts)` retrieves with the
  platform's own `Retriever` (of the process's `Parts`: as the server builds it, reranker included), turns hits into
  prompt sources through `assistant.prompts.prompt_sources` (the server's count, order and trimming); it returns None
  where the server would not generate (no hit reaches `retrieval.relevance_threshold`).
  `raft_examples(questions, sources, gold_probability, seed)` keeps the gold passage with probability
  `gold_probability` (the served sources; when retrieval missed it and the gold paragraph is known, it replaces the
  lowest-ranked source), otherwise drops every source holding the answer (refilled from the next hits); the target is
  the answer with the citation of the first source holding it (`grounded_answer`), or
  `assistant.prompts.NO_SOURCES_ANSWER` when no source holds it.
- Without a collection (a bare file from the CLI), `load_squad_examples` keeps the older form: the gold paragraph and
  `k` distractors from `BM25Distractors` over the file's own paragraphs, shuffled with a seeded RNG.
The examples carry their sources and are rendered later with `assistant.prompts.build_rag_messages`, exactly as the
server renders them. `training` never imports `ingest`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from assistant.answer_metrics import contains_answer
from assistant.errors import UnprocessableError
from assistant.parts import Parts
from assistant.prompts import (
    NO_SOURCES_ANSWER,
    Source,
    prompt_sources,
    query_window,
    sentence_window,
    split_sentences,
)
from assistant.qa_sets import load_squad
from assistant.settings import Settings
from training.data.records import ChatExample, DataValidationError
from training.progress import RunProgress

log = logging.getLogger(__name__)


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
    gold: Source | None  # the gold paragraph when known (SQuAD), None for question/answer files
    qid: str
    answers: tuple[str, ...] = ()  # every accepted answer (the first is the training target)
    document: str = ""  # the document the question is about: held-out splits are made by it

    @property
    def all_answers(self) -> tuple[str, ...]:
        return self.answers or (self.answer,)


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
        paragraphs = load_squad(path)
    except UnprocessableError as exc:
        raise DataValidationError(str(path), "data", f"is not a SQuAD v1.1 file ({exc.message})") from exc
    out: list[SquadQuestion] = []
    for paragraph in paragraphs:
        gold = Source(text=paragraph.context, title=paragraph.title.replace("_", " "))
        out.extend(
            SquadQuestion(item.question, item.answers[0], gold, item.id, item.answers, gold.title)
            for item in paragraph.items
            if not item.unanswerable
        )
    return out


def is_qa_file(path: Path) -> bool:
    """True for a JSONL file whose first record has `question` and `answer`/`answers` (and no chat/pair fields)."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with path.open(encoding="utf-8") as handle:
        first = next((line for line in handle if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and "question" in record and ("answer" in record or "answers" in record)


def read_qa_file(path: Path) -> list[SquadQuestion]:
    """Questions of a question/answer JSONL file (`answers` may be a list of strings or SQuAD answer objects)."""
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        origin = f"{path}#{i}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataValidationError(origin, "json", f"is not valid JSON ({exc.msg})") from exc
        raw = record.get("answers", record.get("answer"))
        items = raw if isinstance(raw, list) else [raw]
        answers = [str(a.get("text", "")) if isinstance(a, dict) else str(a or "") for a in items]
        answers = [a for a in answers if a.strip()]
        if not str(record.get("question", "")).strip() or not answers:
            raise DataValidationError(origin, "question" if not record.get("question") else "answer", "is missing")
        document = str(record.get("document") or record.get("title") or f"q{i}")
        qid = str(record.get("id", i))
        out.append(SquadQuestion(record["question"], answers[0], None, qid, tuple(answers), document))
    return out


def read_questions(path: Path) -> list[SquadQuestion]:
    """Questions of a SQuAD-format or question/answer JSONL file."""
    return read_squad(path) if is_squad_file(path) else read_qa_file(path)


def rag_example(item: SquadQuestion, retriever: DistractorRetriever, k: int, rng: random.Random) -> ChatExample:
    """Question + gold + k distractors (shuffled) -> the gold answer."""
    assert item.gold is not None
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
        unique = {q.gold.text: q.gold for q in read_squad(path) if q.gold is not None}
        retriever = BM25Distractors(list(unique.values()))
    return [rag_example(q, retriever, distractors, rng) for q in questions]


# ---------------------------------------------------------------- the serving distribution (RAFT)


class ServingSources:
    """The sources the server would put into the prompt for a question, over `collections` of the data directory."""

    def __init__(self, settings: Settings, collections: Sequence[str] | None, parts: Parts) -> None:
        self.settings = settings
        self.collections = list(collections) if collections else None
        self.retriever = parts.retriever  # the process's one retriever (its embedder loaded once per job)

    def hits(self, question: str, k: int | None = None) -> list[Any]:
        return self.retriever.search(question, k=k, collections=self.collections)

    def relevant(self, hits: Sequence[Any]) -> bool:
        """The chat service's check: some hit reaches the relevance threshold (else it answers without generating)."""
        threshold = self.settings.retrieval.relevance_threshold
        return bool(hits) and (threshold <= 0 or any((h.dense_score or 0.0) >= threshold for h in hits))

    def sources(self, question: str, hits: Sequence[Any]) -> list[Source]:
        return prompt_sources(question, hits, self.settings)

    def __call__(self, question: str) -> list[Source] | None:
        hits = self.hits(question)
        return self.sources(question, hits) if self.relevant(hits) else None


def holds_answer(source: Source, answers: Sequence[str]) -> bool:
    return any(contains_answer(source.text, a) for a in answers)


def grounded_answer(answer: str, sources: Sequence[Source], answers: Sequence[str]) -> str:
    """The target: the answer and the citation of the first source holding it, or the abstention when none does."""
    index = next((i for i, s in enumerate(sources, start=1) if holds_answer(s, answers)), None)
    return NO_SOURCES_ANSWER if index is None else f"{answer.strip()} [{index}]"


def _gold_hit(gold: Source) -> Any:
    from assistant.retrieval import Hit

    return Hit(chunk_id=-1, text=gold.text, document_id="", title=gold.title, source=gold.title, collection="",
               page=gold.page, section=gold.section, char_start=0, char_end=len(gold.text))  # fmt: skip


def raft_sources(item: SquadQuestion, serving: ServingSources, keep_gold: bool) -> list[Source] | None:
    """The served sources with the gold kept (injected when missed and known) or removed; None: not served."""
    top_k = serving.settings.retrieval.top_k
    hits = serving.hits(item.question)
    if not serving.relevant(hits):
        return None
    answers = item.all_answers
    if keep_gold:
        sources = serving.sources(item.question, hits)
        if not any(holds_answer(s, answers) for s in sources) and item.gold is not None:
            sources = serving.sources(item.question, [*hits[: top_k - 1], _gold_hit(item.gold)])
        return sources
    wider = serving.hits(item.question, k=2 * top_k + 2)
    without = [h for h in wider if not any(contains_answer(h.text, a) for a in answers)]
    return serving.sources(item.question, without) if without else None


def answer_window(text: str, question: str, answers: Sequence[str], around: int) -> str:
    """`text` cut to `around` sentences either side of the first sentence holding an answer, or of the one sharing
    most words with the question when none does (`assistant.prompts.query_window`); whole when a cut would lose an
    answer the text holds (one split across sentences)."""
    sentences = split_sentences(text)
    holding = next((i for i, sentence in enumerate(sentences) if any(contains_answer(sentence, a) for a in answers)),
                   None)  # fmt: skip
    if holding is None:
        held = any(contains_answer(text, a) for a in answers)
        return text.strip() if held else query_window(text, question, around)
    return sentence_window(sentences, holding, around)


def trimmed(sources: Sequence[Source], question: str, answers: Sequence[str], around: int) -> list[Source]:
    """The training sources cut by `answer_window` (titles and numbering unchanged)."""
    return [Source(answer_window(s.text, question, answers, around), s.title, s.section, s.page, s.chunk_id)
            for s in sources]  # fmt: skip


@dataclass
class RaftStats:
    with_gold: int = 0
    abstain: int = 0
    not_served: int = 0


def raft_examples(
    questions: Sequence[SquadQuestion],
    serving: ServingSources,
    gold_probability: float,
    seed: int,
    progress: RunProgress | None = None,
    until: float | None = None,
    window: int | None = None,
) -> tuple[list[ChatExample], RaftStats]:
    """One example per served question: sources as served (gold kept with `gold_probability`), answer or abstention;
    with `window`, each source cut by `answer_window`. Questions stop at the `time.monotonic()` value `until` (the
    data phase's share of a budget); each one is reported to `progress` (which may stop the run)."""
    rng = random.Random(seed)
    stats = RaftStats()
    out = []
    for done, item in enumerate(questions):
        if until is not None and done and time.monotonic() >= until:
            log.warning("RAG examples stopped by the time budget after %d of %d questions", done, len(questions))
            break
        if progress is not None:
            progress.advance(done, len(questions))
        sources = raft_sources(item, serving, rng.random() < gold_probability)
        if sources is None:
            stats.not_served += 1
            continue
        if window is not None:
            sources = trimmed(sources, item.question, item.all_answers, window)
        target = grounded_answer(item.answer, sources, item.all_answers)
        if target == NO_SOURCES_ANSWER:
            stats.abstain += 1
        else:
            stats.with_gold += 1
        messages = ({"role": "user", "content": item.question}, {"role": "assistant", "content": target})
        out.append(ChatExample(messages=messages, sources=tuple(sources), origin=f"rag:{item.qid}"))
    return out, stats
