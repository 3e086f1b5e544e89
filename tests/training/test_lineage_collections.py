"""The collections a job's stored data came from (an adapter's lineage `collections`, which `serving.catalog` checks
against a key's scope): the union over the pairs or the chats a job reads, None as soon as one is unknown."""

from __future__ import annotations

import hashlib
from pathlib import Path

from assistant.parts import Parts
from assistant.settings import Settings
from assistant.storage import ChatRecord, Chunk, Document, Feedback, PreferencePair
from training.data.feedback_data import source_collections
from training.request import JobData
from training.worker import JobWorker


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_pairs_union_their_collections_and_one_unknown_makes_it_unknown(tmp_path: Path) -> None:
    worker = JobWorker(Parts(Settings(data_dir=tmp_path)))
    with worker.db.session() as session:
        for i, collections in enumerate([["hr", "legal"], ["hr"], []]):
            session.add(PreferencePair(prompt=f"p{i}", chosen="c", rejected="r", content_hash=_digest(f"p{i}"),
                                       collections=collections))  # fmt: skip
    pairs, collections = worker._stored_pairs(JobData())
    assert len(pairs) == 3 and collections == ["hr", "legal"]
    with worker.db.session() as session:  # a pair stored before collections were recorded
        session.add(PreferencePair(prompt="old", chosen="c", rejected="r", content_hash=_digest("old")))
    assert worker._stored_pairs(JobData())[1] is None


def test_chats_give_the_collections_of_the_chunks_they_retrieved(tmp_path: Path) -> None:
    db = Parts(Settings(data_dir=tmp_path)).db
    with db.session() as session:
        ids = {}
        for name in ("hr", "legal"):
            document = Document(collection=name, source=f"{name}.txt", content_hash=_digest(name))
            session.add(document)
            session.flush()
            chunk = Chunk(document_id=document.id, collection=name, text=name, content_hash=_digest(name))
            session.add(chunk)
            session.flush()
            ids[name] = chunk.id
        rated = ChatRecord(id="chat-1", model="m", messages=[], prompt="p1", retrieved_chunk_ids=[ids["hr"]])
        unrated = ChatRecord(id="chat-2", model="m", messages=[], prompt="p2", retrieved_chunk_ids=[ids["legal"]])
        session.add_all([rated, unrated])
        session.flush()
        session.add(Feedback(chat_id="chat-1", rating=1))
    assert source_collections(db, "kto", "feedback", None) == ["hr"]  # thumbs: the rated chats only
    assert source_collections(db, "grpo", "chats", None) == ["hr", "legal"]  # every served prompt
    with db.session() as session:  # a chunk retrieved then deleted: where it came from is unknown now
        session.add(ChatRecord(id="chat-3", model="m", messages=[], prompt="p3", retrieved_chunk_ids=[999_999]))
    assert source_collections(db, "grpo", "chats", None) is None
