"""Which embedder runtime is fastest on this machine, measured once and remembered (models.embedder_backend=auto).

Contract: `measured_backend(settings, builders)` returns the name of the fastest runtime among `builders` ('torch',
'onnx', 'onnx-int8', and 'torch-bf16' where the CPU has bfloat16 instructions) and, when it just measured, the
embedder it built for it (None when the choice came from a record). The first builder is the float32 reference: a
runtime whose vectors on the sample texts fall below cosine `MIN_COSINE` (any text) or `MEAN_COSINE` (on average) of
the reference's is never chosen, so the choice changes speed, not the index's space (onnx equals torch to float
precision; bfloat16 autocast stays above 0.999; int8 weights about 0.99). The first call on
a machine times each runtime on the same chunk-sized texts (`SAMPLE_TEXTS`, after a warm-up batch; three interleaved
passes, the best of each) and records the result (only on a quiet machine, a 1-minute load average below its cores: a
busy machine's choice serves that process and is measured again next time), keyed by what decides the speed: the
model, the CPU model name, the vector instruction sets this process sees (AVX-512, AVX512-BF16, AMX, AVX2, read
through CPUID by torch, so a process whose CPUID is capped is another machine), the cores this process may use, and
the variables that limit the instruction sets the runtimes use (`ONEDNN_MAX_CPU_ISA`, `ATEN_CPU_CAPABILITY`, ...).
Records live in `<models_dir>/embedder-backends.json` (the data directory's) and in a per-user cache
(`$XDG_CACHE_HOME/assistant-platform/`, else `~/.cache/...`) so a new data directory on the same machine does not
measure again. Each record keeps the texts/s and cosine of every runtime; `models.embedder_backend` set to a runtime
overrides.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assistant.durable import write_atomic
from assistant.settings import Settings

log = logging.getLogger(__name__)

SAMPLE_TEXTS = 48
METHOD = "interleaved-best-of-3+fidelity-min-mean+int8"  # part of the key: earlier measurements are not reused
# A runtime is chosen only if its vectors stay this close to the float32 reference's on the sample texts: every
# text at least MIN_COSINE, and MEAN_COSINE on average. int8 weights (per channel) measure about 0.987 / 0.994 on
# real paragraphs; their recall equals float32's within 0.01 (bench/bench_retrieval.py).
MIN_COSINE = 0.98
MEAN_COSINE = 0.99
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
ISA_VARIABLES = (
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ATEN_CPU_CAPABILITY",
    "ORT_DISABLE_AVX512",
    "MKL_ENABLE_INSTRUCTIONS",
)
Built = Any  # an object with `embed(texts)` (an `assistant.embedding.Embedder`)


def _seen_flags() -> set[str] | None:
    """The instruction sets this process sees through CPUID (torch's cpuinfo), None when torch cannot tell."""
    try:
        import torch
    except ImportError:
        return None
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.8
    if get_capabilities is None:
        return None
    aliases = {"avx512f": "avx512_f"}
    capabilities = get_capabilities()
    return {flag for flag in FLAGS if capabilities.get(aliases.get(flag, flag))}


def _cpu() -> dict[str, Any]:
    name, flags = "unknown", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "unknown":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:  # not Linux: the CPU is known by its cores alone
        pass
    seen = _seen_flags()
    if seen is not None:  # what the runtimes will use: /proc/cpuinfo lists the hardware's, even when CPUID is capped
        flags = seen
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity else os.cpu_count() or 1
    return {"cpu": name, "flags": sorted(f for f in FLAGS if f in flags), "cores": cores}


def machine_key(model: str) -> str:
    """What the measurement depends on, as a short stable key (see the module contract)."""
    limits = {name: os.environ[name] for name in ISA_VARIABLES if name in os.environ}
    described = {"model": model, **_cpu(), "limits": limits, "method": METHOD}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


_SENTENCES = (
    "Employees accrue twenty days of paid leave per year, and unused days carry over until the end of March.",
    "The quarterly budget review compares each department's spending with the plan approved by the board.",
    "Backups of the customer database run every night at 02:00 and are kept for thirty days in a second region.",
    "In 1987 the company opened its first overseas office in Rotterdam, close to the port and the rail terminal.",
    "A purchase above 5,000 euros needs the written approval of a director before the order is placed.",
    "The onboarding checklist lists the laptop, the badge, the security training and a meeting with the mentor.",
    "Incidents are ranked from P1 to P4; a P1 outage pages the on-call engineer and the service owner at once.",
    "The river floods most springs, when melting snow from the northern mountains swells its upper tributaries.",
    "Photosynthesis converts light into chemical energy, stored as sugars that the plant later burns for growth.",
    "Visitors must sign in at the front desk, wear a visible badge and be accompanied in the laboratories.",
    "The treaty was signed by eleven states, although two of them never ratified it in their parliaments.",
    "Prices in the catalogue exclude value added tax, which is charged at the rate of the buyer's country.",
    "Remote work is allowed three days a week, provided the team agrees on the days everyone is in the office.",
    "The algorithm sorts the list in place, comparing adjacent items and swapping those in the wrong order.",
    "Expense reports are due within sixty days of the trip, with a receipt for every item above 25 euros.",
    "The museum's collection holds more than 40,000 prints, most of them donated by a single family in 1921.",
)


def sample_texts() -> list[str]:
    """Chunk-sized texts (about 150 words) of natural sentences in varied orders, the same on every machine.

    Natural text, not made-up tokens: a quantized runtime's fidelity on made-up words (cosine 0.988) is not what it
    gives on real paragraphs (0.994), and the choice must be made on what ingest will embed."""
    n = len(_SENTENCES)
    return [" ".join(_SENTENCES[(j * 5 + i * (1 + j % 3)) % n] for i in range(7))[:900] for j in range(SAMPLE_TEXTS)]


def _cache_files(settings: Settings) -> list[Path]:
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "assistant-platform"
    return [settings.models_dir / "embedder-backends.json", user / "embedder-backends.json"]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _texts_per_s(embedder: Built, texts: list[str]) -> float:
    """Texts per second of one timed pass (after a warm-up batch: first-call allocations are not the steady speed)."""
    embedder.embed(texts[:8])
    started = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - started)


def _fidelity(built: dict[str, Built], texts: list[str]) -> dict[str, tuple[float, float]]:
    """Each runtime's least and mean cosine to the first (the float32 reference) over `texts`."""
    import numpy as np

    vectors = {name: embedder.embed(texts) for name, embedder in built.items()}
    reference = next(iter(vectors.values()))
    cosines = {name: np.sum(v * reference, axis=1) for name, v in vectors.items()}
    return {name: (round(float(c.min()), 5), round(float(c.mean()), 5)) for name, c in cosines.items()}


def _quiet() -> bool:
    """Whether the machine is quiet enough for a measurement worth keeping (1-minute load below the cores)."""
    try:
        return bool(os.getloadavg()[0] < _cpu()["cores"])
    except OSError:  # no load average on this platform: trust the interleaved best-of-3
        return True


def measured_backend(settings: Settings, builders: dict[str, Callable[[], Built]]) -> tuple[str, Built | None]:
    """The faster of `builders` (runtime name -> a function building its embedder), measured once (module contract)."""
    key = machine_key(settings.models.embedder)
    for path in _cache_files(settings):
        record = _read(path).get(key)
        if isinstance(record, dict) and record.get("backend") in builders:
            return str(record["backend"]), None
    texts = sample_texts()
    built = {name: build() for name, build in builders.items()}
    cosines = _fidelity(built, texts)
    # Interleaved, best of three: a burst of other work slows one pass, not one runtime's every pass.
    passes = [{name: _texts_per_s(embedder, texts) for name, embedder in built.items()} for _ in range(3)]
    speeds = {name: round(max(p[name] for p in passes), 1) for name in built}
    faithful = [name for name in built if cosines[name][0] >= MIN_COSINE and cosines[name][1] >= MEAN_COSINE]
    backend = max(faithful, key=lambda name: speeds[name])
    record = {
        "backend": backend,
        "texts_per_s": speeds,
        "min_cosine": {name: c[0] for name, c in cosines.items()},
        "mean_cosine": {name: c[1] for name, c in cosines.items()},
        **_cpu(),
    }
    record["measured_at"] = int(time.time())
    log.info("embedder runtime measured here: %s (texts/s %s, cosine to float32 %s)", backend, speeds, cosines)
    if not _quiet():  # a busy machine's figures would be kept for good: use them now, measure again next time
        log.info("the machine is busy (load average %.1f): the choice is not recorded", os.getloadavg()[0])
        return backend, built[backend]
    for path in _cache_files(settings):
        try:
            write_atomic(path, json.dumps({**_read(path), key: record}, indent=1, sort_keys=True))
        except OSError as exc:  # a read-only home or data directory: the choice holds for this process
            log.warning("could not record the embedder runtime choice in %s: %s", path, exc)
    return backend, built[backend]
