"""Chunking with the real MiniLM tokenizer, cleaning, and near-duplicate detection."""

from __future__ import annotations

from assistant.dedup import NearDuplicateIndex, SelectionReport
from assistant.embedding import Embedder
from ingest.chunking import Chunker
from ingest.cleaning import clean_document
from ingest.document_types import Block, ParsedDocument

SENTENCE = "The quarterly report describes revenue, costs and the outlook for the next year in detail. "


def _clean(*blocks: Block) -> tuple[ParsedDocument, SelectionReport]:
    return ParsedDocument("t", "text/plain", list(blocks)), SelectionReport()


def test_chunks_fit_the_model_and_point_into_the_text(embedder: Embedder) -> None:
    parsed, report = _clean(
        Block("Intro paragraph.\n\n" + SENTENCE * 40, page=1, section="Report"),
        Block("Unbroken" + "x" * 3000, page=2),  # no separators at all: must still be cut to fit
        Block("\x00\x01\x02\x03\x04\x05" * 50, page=3),  # garbage block: dropped
    )
    document = clean_document(parsed, "report.pdf", report, 0.05)
    chunks = Chunker(embedder, chunk_tokens=64, chunk_overlap=8).chunk(document)
    assert report.counts() == {"block:garbage": 1}
    assert len(chunks) > 5
    for chunk in chunks:
        assert document.text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.token_count == embedder.count_tokens(chunk.text) <= 64
    assert {c.page for c in chunks} == {1, 2}
    assert chunks[0].section == "Report" and chunks[0].text.startswith("Intro paragraph.")
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_chunk_size_is_capped_at_the_embedder_limit(embedder: Embedder) -> None:
    parsed, report = _clean(Block(SENTENCE * 100))
    chunks = Chunker(embedder, chunk_tokens=4000, chunk_overlap=20).chunk(clean_document(parsed, "a", report, 0.05))
    assert max(c.token_count for c in chunks) <= embedder.max_tokens
    assert len(chunks) >= 8


def test_near_duplicate_index_finds_small_edits_only() -> None:
    near = NearDuplicateIndex(threshold=0.8)
    near.add(("doc-a", 0), SENTENCE * 3 + "Signed by the board.", group="doc-a")
    assert near.find(SENTENCE * 3 + "Signed by the board!") == [("doc-a", 0)]
    assert near.find("A completely different text about the canteen menu and parking rules.") == []
    near.remove_group("doc-a")
    assert near.find(SENTENCE * 3 + "Signed by the board.") == [] and len(near) == 0
