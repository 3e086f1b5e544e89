"""Feedback and preference pairs: ratings on stored responses become training pairs; curated pairs are imported.

Contract:
- The services return domain values (`FeedbackReceipt`, `PairPage` of `PairRecord`s, `ImportReport`); their REST
  JSON is made in `serving.rest_format`. `PreferenceStore.of(parts)`, `FeedbackService.of(parts)` and
  `PreferenceImporter.of(parts, render)` build them over one `Parts` (one store shared by the three).
- `FeedbackService.submit(response_id, rating, correction, comment, principal)` stores the feedback on a `ChatRecord`
  (404 if the id is unknown, or if another key created it and the caller is not an admin; 403 if its citations come
  from a collection the caller may not read). A thumbs-down with a correction becomes a pair (chosen = correction,
  rejected = the stored answer); a rating opposite to an earlier rating of another answer to the same rendered prompt
  becomes a pair too (chosen = the thumbs-up answer). Pairs keep the exact rendered prompt the model saw (retrieved
  context included) in `PreferencePair.prompt`, the conversation in `meta.messages`, and the collections of the cited
  sources in `PreferencePair.collections` (imported pairs: []).
  A pair made of two answers joins both answers' collections.
- `PreferenceImporter.import_file(path, source)` reads pairs in any format the training module reads
  (`training.data.dataset_formats.load_preference_examples`: prompt/chosen/rejected, conversations, sharegpt
  preference), renders each prompt with the serving template (no retrieval) and stores the new ones; pairs already
  stored (same rendered prompt, chosen and rejected) are counted as duplicates, not stored twice. A correction, comment
  or imported pair holding a control character (`serving.schemas.check_text`) is a 400 naming the field; an import file
  with one such pair stores nothing.
- `export(since, provenance)` yields the records a training job reads (`rendered_prompt`, `chosen`, `rejected`).
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from assistant.errors import InvalidRequestError, NotFoundError
from assistant.parts import Parts
from assistant.storage import ChatRecord, Database, Feedback, PreferencePair
from assistant.storage.queries import preference_filters
from serving.principal import ANONYMOUS, Principal
from serving.schemas import check_text, control_character_problem


def pair_hash(prompt: str, chosen: str, rejected: str) -> str:
    return hashlib.sha256("\x00".join((prompt, chosen, rejected)).encode()).hexdigest()


@dataclass(frozen=True)
class PairRecord:
    """A stored preference pair (a detached copy of its row)."""

    id: str
    provenance: str
    source: str | None
    prompt: str
    chosen: str
    rejected: str
    collections: list[Any] | None
    created_at: datetime

    @classmethod
    def from_row(cls, pair: PreferencePair) -> PairRecord:
        return cls(
            pair.id,
            pair.provenance,
            pair.source,
            pair.prompt,
            pair.chosen,
            pair.rejected,
            pair.collections,
            pair.created_at,
        )


@dataclass(frozen=True)
class PairPage:
    """One page of pairs, with the count of all stored pairs (`total`) and per provenance (`counts`)."""

    total: int
    counts: dict[str, int]
    pairs: list[PairRecord]


@dataclass(frozen=True)
class FeedbackReceipt:
    """Stored feedback and the ids of the preference pairs it made."""

    id: str
    response_id: str
    rating: int
    preference_pairs: list[str]


@dataclass(frozen=True)
class ImportReport:
    """What a preference import read (`records`), stored, and skipped as already stored (`duplicates`)."""

    source: str
    records: int
    stored: int

    @property
    def duplicates(self) -> int:
        return self.records - self.stored


def record_collections(record: ChatRecord) -> set[str]:
    """The collections a stored response's cited sources came from."""
    return {str(c["collection"]) for c in record.citations or [] if isinstance(c, dict) and c.get("collection")}


class PreferenceStore:
    """Insert-if-new and listing of preference pairs."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def of(cls, parts: Parts) -> PreferenceStore:
        """The store over `parts.db`, built once per `Parts` (the feedback service and the importer share it)."""
        return parts.attach("preferences", lambda p: cls(p.db))

    def add(
        self,
        prompt: str,
        chosen: str,
        rejected: str,
        provenance: str,
        source: str | None,
        meta: dict[str, Any],
        collections: Sequence[str] | None = None,
    ) -> str | None:
        """Store a pair unless an identical one exists; returns the new pair's id or None."""
        digest = pair_hash(prompt, chosen, rejected)
        with self.db.session() as session:
            if session.scalar(select(PreferencePair.id).where(PreferencePair.content_hash == digest)):
                return None
            pair = PreferencePair(
                prompt=prompt,
                chosen=chosen,
                rejected=rejected,
                content_hash=digest,
                provenance=provenance,
                source=source,
                meta=meta,
                collections=sorted(set(collections or [])),
            )
            session.add(pair)
            session.flush()
            return pair.id

    def list(self, provenance: str | None, since: int | None, limit: int, offset: int) -> PairPage:
        """Pairs (oldest first) of one provenance created at or after Unix time `since`, with counts."""
        query = select(PreferencePair).where(*preference_filters(provenance, since))
        with self.db.session() as session:
            counts = dict(
                session.execute(
                    select(PreferencePair.provenance, func.count()).group_by(PreferencePair.provenance)
                ).all()
            )
            rows = session.scalars(
                query.order_by(PreferencePair.created_at, PreferencePair.id).limit(limit).offset(offset)
            ).all()
        return PairPage(sum(counts.values()), counts, [PairRecord.from_row(p) for p in rows])

    def export(self, since: int | None = None, provenance: str | None = None) -> builtins.list[dict[str, str]]:
        query = select(PreferencePair).where(*preference_filters(provenance, since))
        with self.db.session() as session:
            rows = session.scalars(query.order_by(PreferencePair.created_at, PreferencePair.id)).all()
            return [{"rendered_prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "id": p.id} for p in rows]


class FeedbackService:
    """Stores ratings of stored responses and turns them into preference pairs (see the module contract)."""

    def __init__(self, db: Database, store: PreferenceStore) -> None:
        self.db = db
        self.store = store

    @classmethod
    def of(cls, parts: Parts) -> FeedbackService:
        return cls(parts.db, PreferenceStore.of(parts))

    def submit(
        self,
        response_id: str,
        rating: int,
        correction: str | None,
        comment: str | None,
        principal: Principal = ANONYMOUS,
    ) -> FeedbackReceipt:
        if correction is not None and not correction.strip():
            raise InvalidRequestError("correction is empty; omit it or give the corrected answer", param="correction")
        for field, text in (("correction", correction), ("comment", comment)):
            if text is not None:
                check_text(text, field)
        with self.db.session() as session:
            record = session.get(ChatRecord, response_id)
            if record is None or (record.owner != principal.owner and not principal.is_admin):
                raise NotFoundError(f"no stored response has the id {response_id}", param="response_id")
            principal.check_collections(sorted(record_collections(record)) or None)
            feedback = Feedback(chat_id=response_id, rating=rating, correction=correction, comment=comment)
            session.add(feedback)
            session.flush()
            feedback_id = feedback.id
            prompt, answer, messages = record.prompt, record.answer, record.messages
            collections = record_collections(record)
        pairs = self._pairs_from(response_id, prompt, answer, messages, rating, correction, collections)
        return FeedbackReceipt(feedback_id, response_id, rating, pairs)

    def _pairs_from(
        self,
        response_id: str,
        prompt: str,
        answer: str,
        messages: list[Any],
        rating: int,
        correction: str | None,
        collections: set[str],
    ) -> list[str]:
        meta = {"chat_id": response_id, "messages": messages}
        made = []
        if rating < 0 and correction and correction.strip() != answer.strip():
            made.append(self.store.add(prompt, correction, answer, "feedback", response_id, meta, sorted(collections)))
        for other_answer, other_id, other_collections in self._opposite_answers(prompt, response_id, rating):
            chosen, rejected = (answer, other_answer) if rating > 0 else (other_answer, answer)
            source, joined = f"{response_id},{other_id}", sorted(collections | other_collections)
            made.append(self.store.add(prompt, chosen, rejected, "feedback", source, meta, joined))
        return [pair_id for pair_id in made if pair_id]

    def _opposite_answers(self, prompt: str, response_id: str, rating: int) -> list[tuple[str, str, set[str]]]:
        """Other answers to the same rendered prompt that were rated the opposite way, with their collections."""
        query = (
            select(ChatRecord)
            .join(Feedback, Feedback.chat_id == ChatRecord.id)
            .where(ChatRecord.prompt == prompt, ChatRecord.id != response_id, Feedback.rating == -rating)
            .distinct()
        )
        with self.db.session() as session:
            return [(r.answer, r.id, record_collections(r)) for r in session.scalars(query).all() if r.answer.strip()]


class PreferenceImporter:
    """Imports preference files through the training module's format readers."""

    def __init__(self, store: PreferenceStore, render: Callable[[Sequence[dict[str, str]]], str]) -> None:
        self.store = store
        self.render = render

    @classmethod
    def of(cls, parts: Parts, render: Callable[[Sequence[dict[str, str]]], str]) -> PreferenceImporter:
        """The importer into `PreferenceStore.of(parts)`; `render` is the serving chat template."""
        return cls(PreferenceStore.of(parts), render)

    def import_file(self, path: Path, source: str) -> ImportReport:
        from assistant.prompts import build_rag_messages
        from training.data.dataset_formats import load_preference_examples

        examples = load_preference_examples([path])
        for example in examples:  # the whole file is refused before any pair is stored
            origin = example.origin.replace(str(path), source)  # the uploaded name, not the server's temp path
            _check_pair_text(origin, example.prompt, example.chosen, example.rejected)
        stored = 0
        for example in examples:
            sources = list(example.sources) if example.sources is not None else None
            prompt = self.render(build_rag_messages([dict(m) for m in example.prompt], sources))
            meta = {"messages": [dict(m) for m in example.prompt], "origin": example.origin}
            if self.store.add(prompt, example.chosen, example.rejected, "imported", source, meta, []):
                stored += 1
        return ImportReport(source, len(examples), stored)


def _check_pair_text(origin: str, prompt: Sequence[Any], chosen: str, rejected: str) -> None:
    fields = [(f"prompt[{i}].content", str(m["content"])) for i, m in enumerate(prompt)]
    for field, text in [*fields, ("chosen", chosen), ("rejected", rejected)]:
        problem = control_character_problem(text)
        if problem:
            raise InvalidRequestError(f"{origin}: {field}: {problem}", param="file")
