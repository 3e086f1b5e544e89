"""Embedding backends: the ONNX export gives torch's vectors, int8 is kept apart, `index rebuild` migrates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assistant.embedding import (
    EmbedderMismatchError,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    cpu_has_bf16,
    make_embedder,
)
from assistant.settings import Settings

TEXTS = ["backups run nightly and are kept for thirty days", "paid leave is twenty days per year", "x", ""]


@pytest.fixture(scope="module")
def torch_embedder(tmp_path_factory: pytest.TempPathFactory) -> SentenceTransformerEmbedder:
    embedder = make_embedder(Settings(data_dir=tmp_path_factory.mktemp("t"), models={"embedder_backend": "torch"}))
    assert isinstance(embedder, SentenceTransformerEmbedder)
    return embedder


def test_onnx_vectors_equal_torch(torch_embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    onnx = make_embedder(Settings(data_dir=tmp_path, models={"embedder_backend": "onnx"}))
    assert isinstance(onnx, OnnxEmbedder)
    assert (tmp_path / "models" / "all-minilm-l6-v2-onnx" / "model.onnx").is_file()  # exported once, in the data dir
    expected, got = torch_embedder.embed(TEXTS), onnx.embed(TEXTS)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.min(np.sum(expected * got, axis=1)) > 0.9999
    assert onnx.max_tokens == torch_embedder.max_tokens == 254
    assert onnx.count_tokens("hello world") == torch_embedder.count_tokens("hello world") == 2
    assert onnx.count_tokens_many(TEXTS) == torch_embedder.count_tokens_many(TEXTS)  # the chunker's helpers
    assert onnx.token_starts(TEXTS[0]) == torch_embedder.token_starts(TEXTS[0]) != []
    long_text = "word " * 600  # truncated at the model's max length by both
    assert float(onnx.embed([long_text])[0] @ torch_embedder.embed([long_text])[0]) > 0.9999


def test_int8_is_close_but_its_own_space(torch_embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    fp32 = Settings(data_dir=tmp_path, models={"embedder_backend": "torch"})
    make_embedder(fp32)  # records the fp32 space for this data directory
    assert json.loads((tmp_path / "index" / "embedder.json").read_text())["precision"] == "fp32"
    make_embedder(Settings(data_dir=tmp_path, models={"embedder_backend": "onnx"}))  # same space: accepted
    int8_settings = Settings(data_dir=tmp_path, models={"embedder_backend": "onnx-int8"})
    with pytest.raises(EmbedderMismatchError, match="assistant index rebuild"):
        make_embedder(int8_settings)
    int8 = make_embedder(int8_settings, check_space=False)
    similarity = np.sum(int8.embed(TEXTS[:2]) * torch_embedder.embed(TEXTS[:2]), axis=1)
    assert np.all(similarity > 0.8) and np.all(similarity < 0.99999)
    # int8 weights per channel, activation products in float32: within the bounds 'auto' requires on natural text
    # (an all-ops per-tensor export measured 0.95 and would fail here)
    from assistant.embedder_choice import MEAN_COSINE, MIN_COSINE, sample_texts

    texts = sample_texts()
    vectors = int8.embed(texts)
    cosines = np.sum(vectors * torch_embedder.embed(texts), axis=1)
    assert cosines.min() >= MIN_COSINE and cosines.mean() >= MEAN_COSINE
    # one quantization scale per text: a text's vector does not depend on the texts embedded with it
    assert np.array_equal(vectors[3], int8.embed([texts[3]])[0])
    assert np.array_equal(int8.embed(["x", texts[3], "word " * 300])[1], vectors[3])


def test_index_rebuild_migrates_to_a_new_embedder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import app

    monkeypatch.delenv("ASSISTANT_CONFIG", raising=False)
    runner, data = CliRunner(), ["--data-dir", str(tmp_path / "data")]
    doc = tmp_path / "backup.md"
    doc.write_text("# Backups\n\nDaily backups are kept for thirty days in the vault.\n")
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDER_BACKEND", "onnx")
    assert runner.invoke(app, ["ingest", str(doc), *data]).exit_code == 0
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDER_BACKEND", "onnx-int8")
    refused = runner.invoke(app, ["search", "how long are backups kept", *data])
    assert refused.exit_code != 0 and "index rebuild" in refused.output
    rebuilt = runner.invoke(app, ["index", "rebuild", *data])
    assert rebuilt.exit_code == 0 and "re-embedding" in rebuilt.output, rebuilt.output
    found = runner.invoke(app, ["search", "how long are backups kept", *data])
    assert found.exit_code == 0 and "backup.md" in found.output, found.output
    # The index now holds the int8 embedder's vectors.
    from ingest.ingest_service import IngestService

    settings = Settings(data_dir=tmp_path / "data", models={"embedder_backend": "onnx-int8"})
    service = IngestService.open(settings)
    ids = service.index.ids()
    from assistant.storage.orm import Chunk

    with service.db.session() as session:
        texts = [session.get(Chunk, int(i)).text for i in ids]  # type: ignore[union-attr]
    stored = np.stack([service.index.vectors(ids)[int(i)] for i in ids])
    assert np.allclose(stored, service.embedder.embed(texts), atol=1e-5)


def test_onnx_counting_and_embedding_in_parallel_threads(tmp_path: Path) -> None:
    """Ingest counts tokens in one thread while another embeds: the tokenizer state must not leak between them."""
    from concurrent.futures import ThreadPoolExecutor

    onnx = make_embedder(Settings(data_dir=tmp_path, models={"embedder_backend": "onnx"}))
    texts = [f"paragraph {i} " + "words " * (i % 300) for i in range(48)]
    expected = onnx.embed(texts)
    long_text = "word " * 2000

    def count_many() -> int:
        return sum(onnx.count_tokens(long_text) for _ in range(300))

    with ThreadPoolExecutor(6) as pool:
        counts = [pool.submit(count_many) for _ in range(3)]
        vectors = [pool.submit(onnx.embed, texts) for _ in range(6)]
        assert all(f.result() == 300 * 2000 for f in counts)
        assert all(np.allclose(v.result(), expected, atol=1e-5) for v in vectors)


def test_length_sorted_batches_return_rows_in_input_order(tmp_path: Path) -> None:
    """Batches are formed by length (less padding); each row must still be its own text's vector, equal to embedding
    that text alone (no padding at all)."""
    onnx = make_embedder(Settings(data_dir=tmp_path, models={"embedder_backend": "onnx"}))
    assert isinstance(onnx, OnnxEmbedder)
    onnx.batch_size = 2
    texts = [TEXTS[1], "word " * 300, TEXTS[0] * 3, "", "short", TEXTS[0], "x y " * 40]
    batched = onnx.embed(texts)
    alone = np.stack([onnx.embed([text])[0] for text in texts])
    assert np.abs(batched - alone).max() < 1e-4
    assert np.max(np.triu(alone @ alone.T, 1)) < 0.999  # distinct texts, distinct rows: a mix-up would show


def test_auto_measures_the_runtimes_once_per_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """'auto' on a CPU times every runtime once, records the speeds and cosines, picks the fastest of those within
    the fidelity bounds, and later reads the record; a machine whose instruction sets are limited (the AVX2 code path
    forced) is measured as its own machine."""
    import assistant.embedder_choice as choice

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    timed: list[str] = []
    real = choice._texts_per_s

    def counting(embedder: object, texts: list[str]) -> float:
        timed.append(type(embedder).__name__)
        return real(embedder, texts)

    monkeypatch.setattr(choice, "_texts_per_s", counting)
    monkeypatch.setattr(choice, "_quiet", lambda: False)  # a busy machine: used now, not recorded
    busy = make_embedder(Settings(data_dir=tmp_path / "busy"))
    runtimes = 4 if cpu_has_bf16() else 3  # torch-bf16 is a candidate where the CPU has bfloat16 instructions
    torch_like = ["SentenceTransformerEmbedder"] * 3 * (runtimes - 2)
    assert sorted(timed) == ["OnnxEmbedder"] * 6 + torch_like  # onnx and onnx-int8; three interleaved passes
    assert not (tmp_path / "cache" / "assistant-platform" / "embedder-backends.json").exists()
    monkeypatch.setattr(choice, "_quiet", lambda: True)
    timed.clear()
    first = make_embedder(Settings(data_dir=tmp_path / "a"))
    assert len(timed) == 3 * runtimes and busy is not first
    records = json.loads((tmp_path / "cache" / "assistant-platform" / "embedder-backends.json").read_text())
    (record,) = records.values()
    expected = {"onnx", "onnx-int8", "torch", *(["torch-bf16"] if runtimes == 4 else [])}
    assert set(record["texts_per_s"]) == expected and all(v > 0 for v in record["texts_per_s"].values())
    assert min(record["min_cosine"][name] for name in expected - {"onnx-int8"}) > 0.999  # float32-exact or bf16
    assert 0.95 < record["min_cosine"]["onnx-int8"] < 0.9999  # quantized: close, not equal
    faithful = [n for n in expected if record["min_cosine"][n] >= 0.98 and record["mean_cosine"][n] >= 0.99]
    winner = max(faithful, key=record["texts_per_s"].get)  # recomputed from the record's own figures
    assert record["backend"] == winner
    assert type(first).__name__ == ("OnnxEmbedder" if winner.startswith("onnx") else "SentenceTransformerEmbedder")
    assert getattr(first, "bf16", False) == (winner == "torch-bf16")
    second = make_embedder(Settings(data_dir=tmp_path / "b"))  # a new data directory on the same machine
    assert len(timed) == 3 * runtimes and type(second) is type(first)  # read from the record, nothing timed
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    make_embedder(Settings(data_dir=tmp_path / "c"))
    assert len(timed) == 6 * runtimes  # the AVX2 code path is another machine
    assert len(json.loads((tmp_path / "cache" / "assistant-platform" / "embedder-backends.json").read_text())) == 2
