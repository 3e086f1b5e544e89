"""Training questions from a collection's own chunks (`data.source = "collection"` of an SFT/PSFT job): documents with
no labeled questions.

Contract: `questions_from_collection(parts, collection, ...)` reads the collection's chunks (of ready documents) from
the database, in a seeded order spread over the documents, asks a `training.data.questions.QuestionGenerator` (the
rule generator by default) for up to `per_chunk` questions each, and keeps only those that pass the round-trip check
against the job's real retriever (`parts.retriever`, as the server searches: `retrieval.top_k` hits over the
collection): the answer occurs in the chunk, the question is not a duplicate, the server would answer it (some hit
reaches `retrieval.relevance_threshold`), and the question retrieves its own chunk (by id, or a chunk of the same
text) within the top_k. Each dropped question counts under its reason (`DROP_REASONS`). It returns the kept questions
as `training.data.rag.SquadQuestion`s (the chunk as gold, the chunk's document as the document held-out splits go
by) and a `GenerationReport` (counts generated/kept/dropped by reason, kept by answer kind, samples), which the job
writes to its metrics and log. Generation stops at the `time.monotonic()` value `until` (keeping what it has) and
reports each chunk to `progress`. The RAFT examples are then built from the kept questions by `training.data.rag`
as for labeled questions. `write_qa_file` writes them as the question/answer JSONL the SFT runner reads.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from assistant.answer_metrics import contains_answer
from assistant.errors import UnprocessableError
from assistant.parts import Parts
from assistant.prompts import Source
from assistant.storage import Chunk, Document
from training.data.questions import Candidate, QuestionGenerator, RuleQuestions
from training.data.rag import ServingSources, SquadQuestion
from training.progress import RunProgress

log = logging.getLogger(__name__)
DROP_REASONS = ("answer_not_in_chunk", "duplicate_question", "not_served", "own_chunk_not_in_top_k")
PER_CHUNK = 2  # questions asked of each chunk: sentences spread over it, one question each
MAX_QUESTIONS = 20_000  # generation stops here even without a budget (each question costs one retrieval)
SAMPLES = 10


@dataclass(frozen=True)
class CollectionChunk:
    id: int
    text: str
    document: str  # the document's source (file name): held-out splits go by it
    title: str


@dataclass
class GenerationReport:
    """What generation made of a collection (see the module contract)."""

    collection: str
    generator: str
    top_k: int
    chunks: int = 0
    chunks_read: int = 0
    generated: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    kept_by_kind: dict[str, int] = field(default_factory=dict)
    stopped_by_budget: bool = False
    seconds: float = 0.0
    kept_samples: list[dict[str, Any]] = field(default_factory=list)
    dropped_samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kept_share(self) -> float:
        return round(self.kept / self.generated, 3) if self.generated else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kept_share": self.kept_share}

    def summary(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v) or "none"
        return (
            f"questions from collection {self.collection!r} ({self.generator}): {self.generated} generated from "
            f"{self.chunks_read} of {self.chunks} chunks, {self.kept} kept ({self.kept_share:.1%}), dropped: {reasons}"
            f"{'; stopped by the time budget' if self.stopped_by_budget else ''}"
        )


def collection_chunks(parts: Parts, collection: str) -> list[CollectionChunk]:
    """The chunks of the collection's ready documents, in storage order."""
    query = (
        select(Chunk.id, Chunk.text, Document.source, Document.title)
        .join(Document, Document.id == Chunk.document_id)
        .where(Chunk.collection == collection, Document.status == "ready")
        .order_by(Chunk.document_id, Chunk.ordinal)
    )
    with parts.db.session() as session:
        rows = session.execute(query).all()
    return [CollectionChunk(int(i), str(t), str(s), str(title or s)) for i, t, s, title in rows]


def round_trip(serving: ServingSources, chunk: CollectionChunk, candidate: Candidate) -> tuple[str | None, Any]:
    """The reason the question fails the check (None: it passes) and the hits it retrieved."""
    if not contains_answer(chunk.text, candidate.answer):
        return "answer_not_in_chunk", []
    hits = serving.hits(candidate.question, k=serving.settings.retrieval.top_k)
    if not serving.relevant(hits):
        return "not_served", hits
    if not any(h.chunk_id == chunk.id or h.text == chunk.text for h in hits):
        return "own_chunk_not_in_top_k", hits
    return None, hits


def questions_from_collection(
    parts: Parts,
    collection: str,
    generator: QuestionGenerator | None = None,
    per_chunk: int = PER_CHUNK,
    seed: int = 42,
    until: float | None = None,
    progress: RunProgress | None = None,
    max_questions: int = MAX_QUESTIONS,
) -> tuple[list[SquadQuestion], GenerationReport]:
    """Questions of the collection's chunks that pass the round-trip check (see the module contract)."""
    generator = generator or RuleQuestions()
    serving = ServingSources(parts.settings, [collection], parts)
    chunks = collection_chunks(parts, collection)
    if not chunks:
        raise UnprocessableError(f"no chunks in collection {collection!r}: upload documents to it first",
                                 param="data.collection", code="empty_dataset")  # fmt: skip
    random.Random(seed).shuffle(chunks)  # a budget that stops early still covers many documents
    report = GenerationReport(collection, generator.name, parts.settings.retrieval.top_k, chunks=len(chunks))
    started, seen = time.monotonic(), set()
    kept: list[SquadQuestion] = []
    kinds: Counter[str] = Counter()
    for chunk in chunks:
        if until is not None and report.chunks_read and time.monotonic() >= until:
            report.stopped_by_budget = True
            break
        if report.generated >= max_questions:
            break
        report.chunks_read += 1
        if progress is not None:
            progress.advance(report.chunks_read, len(chunks))
        for candidate in generator(chunk.text, per_chunk):
            report.generated += 1
            key = candidate.question.lower()
            reason, hits = ("duplicate_question", []) if key in seen else round_trip(serving, chunk, candidate)
            seen.add(key)
            if reason is not None:
                report.dropped[reason] += 1
                if sum(d["reason"] == reason for d in report.dropped_samples) < SAMPLES // 2:  # every reason seen
                    report.dropped_samples.append(_sample(chunk, candidate, reason, hits))
                continue
            kinds[candidate.kind] += 1
            kept.append(_question(chunk, candidate, len(kept)))
            if len(report.kept_samples) < SAMPLES:
                report.kept_samples.append(_sample(chunk, candidate, None, hits))
    report.kept, report.kept_by_kind = len(kept), dict(kinds.most_common())
    report.seconds = round(time.monotonic() - started, 2)
    log.info("%s", report.summary())
    for sample in report.kept_samples[:3] + report.dropped_samples[:3]:
        log.info("question sample: %s", json.dumps(sample, ensure_ascii=False))
    return kept, report


def _question(chunk: CollectionChunk, candidate: Candidate, n: int) -> SquadQuestion:
    gold = Source(text=chunk.text, title=chunk.title)
    return SquadQuestion(candidate.question, candidate.answer, gold, f"gen{n}-c{chunk.id}", (candidate.answer,),
                         chunk.document)  # fmt: skip


def _sample(chunk: CollectionChunk, candidate: Candidate, reason: str | None, hits: Any) -> dict[str, Any]:
    ids = [h.chunk_id for h in hits]
    return {
        "question": candidate.question,
        "answer": candidate.answer,
        "kind": candidate.kind,
        "chunk_id": chunk.id,
        "document": chunk.document,
        **({"reason": reason, "retrieved": ids} if reason else {"rank": ids.index(chunk.id) + 1 if chunk.id in ids
                                                                 else None}),
    }  # fmt: skip


def write_qa_file(questions: list[SquadQuestion], path: Path) -> Path:
    """The questions as question/answer JSONL (`training.data.rag.read_qa_file` reads it back)."""
    lines = (
        json.dumps({"id": q.qid, "question": q.question, "answers": list(q.all_answers), "document": q.document},
                   ensure_ascii=False)
        for q in questions
    )  # fmt: skip
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
