"""Vector index: the `VectorIndex` protocol and its FAISS implementation (ids are chunk row ids).

Contract: see `assistant.index.vector_index` for the protocol and `assistant.index.faiss_index` for the on-disk format.
"""

from assistant.index.faiss_index import INDEX_FILE, FaissIndex, open_index
from assistant.index.vector_index import SearchResult, VectorIndex

__all__ = ["INDEX_FILE", "FaissIndex", "SearchResult", "VectorIndex", "open_index"]
