"""bfloat16 embedding on CPU: vectors close to float32 on real text, batches in order, chosen only when faithful;
a process with an AVX2-only CPUID (bench/cpuid_avx2.c) is another machine to the runtime choice."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assistant.embedding import SentenceTransformerEmbedder, cpu_has_bf16, make_embedder
from assistant.settings import Settings
from ingest.retrieval_eval import load_squad

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[SentenceTransformerEmbedder, SentenceTransformerEmbedder]:
    data = tmp_path_factory.mktemp("bf16")
    fp32 = make_embedder(Settings(data_dir=data, models={"embedder_backend": "torch"}))
    bf16 = make_embedder(Settings(data_dir=data, models={"embedder_backend": "torch-bf16"}))
    assert isinstance(fp32, SentenceTransformerEmbedder) and isinstance(bf16, SentenceTransformerEmbedder)
    return fp32, bf16


def test_bf16_vectors_match_fp32_on_real_text(pair: tuple, shared_data: Path) -> None:
    """SQuAD paragraphs and questions: every bf16 vector within cosine 0.99 of its float32 vector, and the questions
    find the same paragraph first."""
    if not cpu_has_bf16():
        pytest.skip("this CPU has no bfloat16 instructions: torch-bf16 is emulated here and never chosen by auto")
    fp32, bf16 = pair
    corpus = load_squad(shared_data / "squad-v1.1-dev-part1.json", 60)
    paragraphs = [p.text for p in corpus.passages[:120]]
    questions = [q.text for q in corpus.questions]
    expected, got = fp32.embed(paragraphs + questions), bf16.embed(paragraphs + questions)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(expected * got, axis=1)
    assert cosine.min() >= 0.99
    assert cosine.mean() < 0.99999  # the bf16 path really ran (float32 would give 1.0 to float precision)
    n = len(paragraphs)
    top_fp32 = np.argmax(expected[n:] @ expected[:n].T, axis=1)
    top_bf16 = np.argmax(got[n:] @ got[:n].T, axis=1)
    assert np.mean(top_fp32 == top_bf16) >= 0.95


def test_bf16_batches_keep_each_text_its_row(pair: tuple) -> None:
    """sentence-transformers sorts a call's texts by length into batches: every row is still its own text's vector
    (equal, to bf16 precision, to embedding that text alone without padding)."""
    _fp32, bf16 = pair
    bf16.batch_size = 2
    texts = ["paid leave is twenty days per year", "word " * 300, "backups run nightly " * 5, "", "short", "x y " * 40]
    batched = bf16.embed(texts)
    alone = np.stack([bf16.embed([text])[0] for text in texts])
    assert np.min(np.sum(batched * alone, axis=1)) > 0.995
    assert np.array_equal(np.argmax(batched @ alone.T, axis=1), np.arange(len(texts)))  # no row mixed up


def test_auto_never_picks_an_unfaithful_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fastest runtime is chosen only when its vectors stay within MIN_COSINE of the float32 reference: a runtime
    that is fastest but returns other texts' vectors is passed over, and the record says why."""
    import assistant.embedder_choice as choice

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(choice, "_quiet", lambda: True)
    reference = make_embedder(Settings(data_dir=tmp_path / "d", models={"embedder_backend": "torch"}))

    class Shuffled:
        """Instant, but each row is the next text's vector (a broken runtime)."""

        def __init__(self) -> None:
            self.cache: dict[str, np.ndarray] = {}

        def embed(self, texts: list[str]) -> np.ndarray:
            missing = [t for t in texts if t not in self.cache]
            if missing:
                self.cache.update(zip(missing, reference.embed(missing), strict=True))
            return np.stack([self.cache[t] for t in texts[1:] + texts[:1]])

    broken = Shuffled()
    broken.embed(choice.sample_texts())  # warm: the broken runtime is the fastest
    settings = Settings(data_dir=tmp_path / "d")
    backend, built = choice.measured_backend(settings, {"torch": lambda: reference, "broken": lambda: broken})
    assert backend == "torch" and built is reference
    (record,) = json.loads((settings.models_dir / "embedder-backends.json").read_text()).values()
    assert record["texts_per_s"]["broken"] > record["texts_per_s"]["torch"]
    assert record["min_cosine"]["torch"] == 1.0 and record["min_cosine"]["broken"] < choice.MIN_COSINE


CAPPED = """
import json, sys
sys.path.insert(0, sys.argv[1])
from numpy._core._multiarray_umath import __cpu_features__ as numpy_features
import onnxruntime, torch
from assistant.embedder_choice import _cpu, machine_key
from assistant.embedding import cpu_has_bf16
print(json.dumps({"numpy_avx512f": numpy_features["AVX512F"], "numpy_avx2": numpy_features["AVX2"],
                  "flags": _cpu()["flags"], "bf16": cpu_has_bf16(), "key": machine_key("m"),
                  "aten": torch.backends.cpu.get_cpu_capability()}))
"""


def test_avx2_only_cpuid_is_another_machine(tmp_path: Path) -> None:
    """bench/cpuid_avx2.c preloaded: numpy and torch see AVX2 without AVX-512 or bf16, and the runtime choice keys the
    process as another machine (its flags come from CPUID, not /proc/cpuinfo)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if "avx512f" not in flags or "cpuid_fault" not in flags or compiler is None:
        pytest.skip("needs a Linux CPU with AVX-512 and CPUID faulting, and a C compiler")
    library = tmp_path / "cpuid_avx2.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(ROOT / "bench" / "cpuid_avx2.c")])

    def probe(preload: str | None) -> dict:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **({"LD_PRELOAD": preload} if preload else {})}
        done = subprocess.run(
            [sys.executable, "-c", CAPPED, str(ROOT)], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    native, capped = probe(None), probe(str(library))
    assert native["numpy_avx512f"] and "avx512f" in native["flags"]
    assert capped["numpy_avx2"] and not capped["numpy_avx512f"]
    assert "avx2" in capped["flags"] and not any(f.startswith(("avx512", "amx")) for f in capped["flags"])
    assert capped["aten"] == "AVX2" and capped["bf16"] is False
    assert capped["key"] != native["key"]
