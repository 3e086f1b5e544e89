"""Retrieval over ingested chunks: dense (FAISS), BM25 (SQLite FTS5), fusion, optional rerank, diversity.

Contract: `Retriever.search(query, k, collections, mode)` returns `Hit`s best-first, each carrying everything a
citation needs (chunk id, text, document id/title/source, page, section, character offsets) and its scores.
Only chunks of documents in status 'ready' are ever returned.
"""

from assistant.retrieval.hits import Hit
from assistant.retrieval.retriever import Retriever, SearchMode

__all__ = ["Hit", "Retriever", "SearchMode"]
