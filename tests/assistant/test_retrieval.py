"""Retrieval: fusion and metrics units, and the Retriever over real FAISS and MiniLM with each database's keyword
search (SQLite FTS5, PostgreSQL full-text search: the `db_url` fixture runs a test once per engine)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from assistant.errors import InvalidRequestError
from assistant.index import FaissIndex, open_index
from assistant.parts import make_keyword_search
from assistant.retrieval import Retriever
from assistant.retrieval.bm25 import fts_query
from assistant.retrieval.fusion import min_max, order, reciprocal_rank_fusion, weighted_fusion
from assistant.retrieval.ranking_metrics import score_rankings
from assistant.retrieval.rerank import make_reranker
from assistant.settings import Settings
from assistant.storage.db import Database
from assistant.storage.orm import Chunk, Document
from tests.fixtures.retrieval_env import make_settings, shared_embedder

CORPUS = {
    ("hr", "holidays.txt"): [
        "Every employee gets twenty-five days of paid leave per year.",
        "Unused leave days expire at the end of March.",
    ],
    ("hr", "travel.txt"): ["Travel expenses are reimbursed within two weeks after the receipts are uploaded."],
    ("it", "backup.txt"): [
        "Backups of the file servers run every night at two o'clock.",
        "Daily backups are kept for thirty days in the vault.",
    ],
    ("it", "laptops.txt"): ["Laptops are replaced every three years by the IT desk."],
}


def test_reciprocal_rank_fusion_and_weighted_fusion() -> None:
    dense, sparse = [(1, 0.9), (2, 0.8), (3, 0.1)], [(3, 12.0), (1, 4.0)]
    fused = order(reciprocal_rank_fusion([dense, sparse], rrf_k=60))
    assert [chunk_id for chunk_id, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert min_max([(1, 2.0), (2, 2.0)]) == {1: 1.0, 2: 1.0}
    weighted = weighted_fusion(dense, sparse, dense_weight=0.5)
    assert weighted[3] == pytest.approx(0.5 * 0 + 0.5 * 1.0) and weighted[2] == pytest.approx(0.5 * 0.875)


def test_metrics_count_first_occurrence_only() -> None:
    scores = score_rankings([["a", "a", "b"], ["x", "y", "z"], ["c"]], ["b", "q", "c"])
    assert scores.recall_at_1 == pytest.approx(1 / 3)
    assert scores.recall_at_5 == pytest.approx(2 / 3)
    assert scores.mrr_at_10 == pytest.approx((1 / 2 + 1) / 3)


def test_fts_query_quotes_tokens_and_drops_stop_words() -> None:
    assert fts_query('What is the "backup" OR NEAR(policy)?') == '"backup" OR "near" OR "policy"'
    assert fts_query("the of and") == ""


def _build(tmp_path: Path, db_url: str | None = None, **retrieval: object) -> tuple[Settings, Database, FaissIndex]:
    """Rows and vectors written directly through the core storage (no ingest package)."""
    settings = make_settings(tmp_path / "data", retrieval=dict(retrieval))
    settings = settings.model_copy(update={"database_url": db_url})
    db = Database(settings.resolved_database_url)
    db.migrate()
    index = open_index(settings.index_dir, shared_embedder().dim, 100)
    next_id = 1
    with db.session() as session:
        for (collection, source), texts in CORPUS.items():
            document = Document(collection=collection, source=source, title=source, content_hash=source, status="ready")
            session.add(document)
            session.flush()
            for ordinal, text in enumerate(texts):
                session.add(
                    Chunk(
                        id=next_id + ordinal,
                        document_id=document.id,
                        collection=collection,
                        ordinal=ordinal,
                        text=text,
                        content_hash=hashlib.sha256(text.encode()).hexdigest(),  # 64 chars: PostgreSQL checks
                        char_start=0,
                        char_end=len(text),
                    )
                )
            index.add(shared_embedder().embed(texts), np.arange(next_id, next_id + len(texts)))
            next_id += len(texts)
    return settings, db, index


def test_modes_collection_filter_and_citation_fields(tmp_path: Path, db_url: str) -> None:
    settings, db, index = _build(tmp_path, db_url)
    retriever = Retriever(settings, db, index, shared_embedder(), keyword=make_keyword_search(db))
    for mode in ("hybrid", "dense", "bm25"):
        top = retriever.search("how long are backups kept", k=3, mode=mode)[0]
        assert top.text == "Daily backups are kept for thirty days in the vault.", mode
    hybrid = retriever.search("how long are backups kept", k=3)[0]
    assert hybrid.dense_score and hybrid.bm25_score and hybrid.fused_score == hybrid.score
    assert (hybrid.source, hybrid.collection, hybrid.char_start, hybrid.char_end) == ("backup.txt", "it", 0, 52)
    hr_only = retriever.search("how long are backups kept", k=5, collections=["hr"])
    assert hr_only and {hit.collection for hit in hr_only} == {"hr"}
    with pytest.raises(InvalidRequestError):
        retriever.search("backups", mode="fuzzy")


def test_weighted_fusion_and_max_per_document(tmp_path: Path, db_url: str) -> None:
    settings, db, index = _build(tmp_path, db_url, fusion="weighted", max_per_document=1)
    hits = Retriever(settings, db, index, shared_embedder(), keyword=make_keyword_search(db)).search(
        "backups kept every night", k=4
    )
    assert len({hit.document_id for hit in hits}) == len(hits)
    assert hits[0].source == "backup.txt"


def test_processing_documents_are_invisible(tmp_path: Path, db_url: str) -> None:
    settings, db, index = _build(tmp_path, db_url)
    with db.session() as session:
        for document in session.query(Document).filter(Document.source == "backup.txt"):
            document.status = "processing"
    retriever = Retriever(settings, db, index, shared_embedder(), keyword=make_keyword_search(db))
    assert "backup.txt" not in {hit.source for hit in retriever.search("backups kept", k=10)}
    assert not retriever.keyword.search("backups kept", k=10, collections=["it", "hr"])


def test_rerank_with_a_tiny_cross_encoder(tmp_path: Path) -> None:
    from tests.fixtures.tiny_cross_encoder import build_tiny_cross_encoder

    model_dir = build_tiny_cross_encoder(tmp_path / "cross-encoder")
    settings, db, index = _build(tmp_path, rerank_k=4)
    settings = settings.model_copy(update={"models": settings.models.model_copy(update={"reranker": str(model_dir)})})
    reranker = make_reranker(settings)
    assert reranker is not None
    hits = Retriever(settings, db, index, shared_embedder(), reranker, keyword=make_keyword_search(db)).search(
        "backups kept", k=4
    )
    scores = [hit.rerank_score for hit in hits]
    assert all(score is not None for score in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    expected = reranker.score("backups kept", [hit.text for hit in hits])
    assert scores == pytest.approx(expected)


def test_keyword_search_drops_very_common_terms_only_when_rarer_ones_remain(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The speed rule on the real engine: a term in most chunks is skipped when two rarer terms remain, kept else."""
    from assistant.retrieval import keyword

    monkeypatch.setattr(keyword, "SMALL_COLLECTION", 0)
    db = Database(db_url)
    db.migrate()
    with db.session() as session:
        session.add(Document(id="doc-1", collection="c", source="s.txt", content_hash="h", status="ready"))
        session.flush()
        for i in range(40):
            words = "company policy " + ("router reset" if i == 3 else f"topic{i}") + (" warranty" if i == 5 else "")
            session.add(Chunk(document_id="doc-1", collection="c", ordinal=i, text=words, content_hash=str(i)))
    search = make_keyword_search(db)
    assert isinstance(search, keyword.CommonTermPruning)
    assert search.selective_tokens(["company", "router", "warranty"]) == ["router", "warranty"]
    assert search.selective_tokens(["company", "router"]) == ["company", "router"]  # too few rarer terms
    hits = search.search("company router warranty", k=5)
    assert {chunk_id for chunk_id, _ in hits} == {4, 6}  # only chunks with a rare term are scored


def test_keyword_search_follows_chunk_updates_and_deletes(db_url: str) -> None:
    """The keyword index is kept by the database itself (FTS5 triggers, a generated tsvector column): an updated
    chunk is found by its new words only, a deleted one not at all; tokens are OR-ed and stemmed."""

    db = Database(db_url)
    db.migrate()
    with db.session() as session:
        session.add(Document(id="doc-1", collection="c", source="s.txt", content_hash="h", status="ready"))
        session.flush()
        for i, words in enumerate(["the router was reset twice", "warranty claims need receipts", "lunch menu"]):
            session.add(Chunk(id=i + 1, document_id="doc-1", collection="c", text=words, content_hash=str(i)))
    search = make_keyword_search(db)
    assert [chunk_id for chunk_id, _ in search.search("resetting routers", k=5)] == [1]  # stemmed
    hits = search.search("router warranty? -(NEAR)", k=5)  # OR of tokens; no input is query syntax
    assert {chunk_id for chunk_id, _ in hits} == {1, 2} and all(score > 0 for _, score in hits)
    with db.session() as session:
        chunk = session.get(Chunk, 1)
        assert chunk is not None
        chunk.text = "the printer jammed"
    assert search.search("router", k=5) == []
    assert [chunk_id for chunk_id, _ in search.search("printer", k=5)] == [1]
    with db.session() as session:
        session.execute(sa.delete(Chunk).where(Chunk.id == 2))
    assert search.search("warranty", k=5) == []
    assert search.search("the of and", k=5) == []
    db.dispose()


def test_keyword_search_refuses_unsupported_databases() -> None:
    from types import SimpleNamespace

    from assistant.errors import ServiceUnavailableError

    # Only the dialect name is consulted; no driver for another engine is installed here.
    oracle = SimpleNamespace(engine=SimpleNamespace(dialect=SimpleNamespace(name="oracle")))
    with pytest.raises(ServiceUnavailableError, match="sqlite and postgresql"):
        make_keyword_search(oracle)  # type: ignore[arg-type]


def test_keyword_search_weighs_rare_terms_above_repeated_common_ones(db_url: str) -> None:
    """Term rarity counts on both engines (BM25's idf on FTS5; idf-weighted ts_rank_cd on PostgreSQL): one mention of
    a rare word beats three of a word most chunks have."""

    db = Database(db_url)
    db.migrate()
    texts = ["policy policy policy notes", "warranty notes", "policy and warranty"] + [
        f"policy number {i}" for i in range(12)
    ]
    with db.session() as session:
        session.add(Document(id="doc-1", collection="c", source="s.txt", content_hash="h", status="ready"))
        session.flush()
        for i, words in enumerate(texts):
            session.add(Chunk(id=i + 1, document_id="doc-1", collection="c", text=words, content_hash=str(i)))
    ranked = [chunk_id for chunk_id, _ in make_keyword_search(db).search("policy warranty", k=3)]
    assert set(ranked[:2]) == {2, 3} and ranked[2] == 1  # the two chunks with "warranty" first
    db.dispose()


@pytest.mark.postgres
def test_postgres_bm25_scores_match_an_independent_computation(postgres_url: str) -> None:
    """The SQL BM25 on PostgreSQL equals Okapi BM25 computed here from the texts (words that stem to themselves)."""
    import math

    from assistant.retrieval.pg_fulltext import K1, B, PostgresFullTextSearch

    texts = ["router router reset", "warranty card", "router warranty warranty warranty terms", "lunch menu today"]
    texts += [f"filler text number {i}" for i in range(6)]
    db = Database(postgres_url)
    db.migrate()
    with db.session() as session:
        session.add(Document(id="doc-1", collection="c", source="s.txt", content_hash="h", status="ready"))
        session.flush()
        for i, words in enumerate(texts):
            session.add(Chunk(id=i + 1, document_id="doc-1", collection="c", text=words, content_hash=str(i)))
    search = PostgresFullTextSearch(db)
    assert search.ranking == "bm25"
    terms, avgdl = ["router", "warranty"], sum(map(len, texts)) / len(texts)

    def bm25(text: str) -> float:
        score = 0.0
        for term in terms:
            df = sum(term in t.split() for t in texts)
            idf = math.log(1 + (len(texts) - df + 0.5) / (df + 0.5))
            tf = text.split().count(term)
            score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(text) / avgdl))
        return score

    expected = sorted(((i + 1, bm25(t)) for i, t in enumerate(texts) if bm25(t) > 0), key=lambda p: -p[1])
    got = search.search("router warranty", k=10)
    assert [chunk_id for chunk_id, _ in got] == [chunk_id for chunk_id, _ in expected]
    assert [score for _, score in got] == pytest.approx([score for _, score in expected], rel=1e-6)
    db.dispose()
