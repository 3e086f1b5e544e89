"""Grounded answer quality on the developers' SQuAD half, through REST only, against the naive peer, in one run.

A real server (`assistant serve`, default model SmolLM2-135M-Instruct) gets the SQuAD half's 913 paragraphs uploaded
as documents (POST /v1/documents, collection 'squad'; skipped when a reused --data-dir has them). The same N seeded
questions are then asked
  (a) to the platform with its default settings: POST /v1/chat/completions, retrieval on, greedy;
  (b) to the naive peer recipe: the top-3 dense paragraphs from POST /v1/retrieve (mode=dense) pasted into a plain
      "Answer from the context. Short answer only." prompt, `use_retrieval: false`, same model, greedy, max_tokens 64;
and both are scored with the platform's answer evaluation (`serving.services.answer_eval_service.score_reply`: EM, F1,
contains-answer, citation accuracy, latency). `--variants` restarts the server once per prompt/source/stop variant
(settings through ASSISTANT_* variables, the source count through the request's top_k) and prints one row each.

    .venv/bin/python bench/bench_answers.py [--questions 100] [--seed 0] [--variants] [--data-dir DIR]

Baseline (issue 10, 150 questions, before this work): platform F1 0.073, naive peer F1 0.089, 6.5 s median.
Measured 2026-11-22 (`--questions 30 --variants --only 0`, shared 2-core CPU under heavy load, one run):
platform defaults F1 0.071, contains 0.100, p50/p95 3.89/7.31 s; naive peer F1 0.125, contains 0.233, 5.07/8.87 s;
former settings (original prompt, top-5, 256 tokens) F1 0.072, contains 0.133, 5.67/25.54 s.
Measured 2026-12-04 (`--questions 150 --variants --only 12`, seed 0): "context" style (the default then) F1 0.087,
contains 0.200, p50 5.07 s; naive peer F1 0.093, contains 0.267, 5.45 s; "example" style (the default since)
F1 0.095, contains 0.227, 5.42 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from server_process import wait_ready  # bench/ is on sys.path when a bench script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SQUAD = ROOT.parent / "shared" / "data" / "squad-v1.1-dev-part1.json"
COLLECTION = "squad"
PEER_SYSTEM = "Answer from the context. Short answer only."
BASELINE = {"platform F1": 0.073, "naive peer F1": 0.089, "platform latency p50 (s)": 6.5}


@dataclass
class Variant:
    """Server settings (ASSISTANT_* variables) plus the request's top_k; `env` None = the platform's defaults."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    top_k: int | None = None


# The settings before this work, then the measured alternatives (see the module docstring).
OLD = {
    "ASSISTANT_ANSWER__PROMPT_STYLE": "original",
    "ASSISTANT_ANSWER__MAX_TOKENS": "256",
    "ASSISTANT_ANSWER__STOP_AT_NEWLINE": "false",
    "ASSISTANT_ANSWER__SOURCE_ORDER": "best_first",
}
SHORT = {**OLD, "ASSISTANT_ANSWER__PROMPT_STYLE": "short"}
STOPPED = {**SHORT, "ASSISTANT_ANSWER__MAX_TOKENS": "64", "ASSISTANT_ANSWER__STOP_AT_NEWLINE": "true"}
VARIANTS = [
    Variant("before: original prompt, top-5, 256 tokens", OLD, 5),
    Variant("short-answer prompt, top-5", SHORT, 5),
    Variant("short + stop at newline, 64 tokens, top-5", STOPPED, 5),
    Variant("short + stop, top-3", STOPPED, 3),
    Variant("short + stop, top-2", STOPPED, 2),
    Variant("short + stop, top-3, best last", {**STOPPED, "ASSISTANT_ANSWER__SOURCE_ORDER": "best_last"}, 3),
    Variant("short + stop, top-3, window ±1", {**STOPPED, "ASSISTANT_ANSWER__SOURCE_WINDOW": "1"}, 3),
    Variant("short + stop, top-5, window ±1", {**STOPPED, "ASSISTANT_ANSWER__SOURCE_WINDOW": "1"}, 5),
    Variant("plain prompt + stop, top-3", {**STOPPED, "ASSISTANT_ANSWER__PROMPT_STYLE": "plain"}, 3),
    Variant("context prompt, unnumbered sources", {"ASSISTANT_ANSWER__PROMPT_STYLE": "unnumbered"}, None),
    Variant(
        "context prompt, unnumbered, no newline stop",
        {"ASSISTANT_ANSWER__PROMPT_STYLE": "unnumbered", "ASSISTANT_ANSWER__STOP_AT_NEWLINE": "false"},
        None,
    ),
    Variant(
        "context prompt (numbered), no newline stop",
        {"ASSISTANT_ANSWER__PROMPT_STYLE": "context", "ASSISTANT_ANSWER__STOP_AT_NEWLINE": "false"},
        None,
    ),
    Variant("context prompt, no worked example (the default before)", {"ASSISTANT_ANSWER__PROMPT_STYLE": "context"}),
    Variant(
        "context prompt + worked example, top-5",
        {"ASSISTANT_ANSWER__PROMPT_STYLE": "example"},
        5,
    ),
    Variant("platform defaults", {}, None),
]


# ---------------------------------------------------------------- data


def load_squad(questions: int, seed: int) -> tuple[list[tuple[str, str]], list[Any]]:
    """(file name, paragraph) documents of the whole half, and `questions` seeded QAItems drawn from all of it."""
    from assistant.qa_sets import load_qa_file

    data = json.loads(SQUAD.read_text())
    docs = [
        (f"{article['title']}-{i:03d}.txt", paragraph["context"])
        for article in data["data"]
        for i, paragraph in enumerate(article["paragraphs"])
    ]
    items = load_qa_file(SQUAD)
    return docs, random.Random(seed).sample(items, questions)


def upload(base: str, docs: list[tuple[str, str]]) -> float:
    listing = httpx.get(f"{base}/v1/documents", params={"collection": COLLECTION, "limit": 1000}, timeout=60).json()
    if len(listing["data"]) >= len(docs):
        return 0.0
    started = time.perf_counter()
    for i in range(0, len(docs), 100):
        files = [("files", (name, text.encode())) for name, text in docs[i : i + 100]]
        response = httpx.post(f"{base}/v1/documents", files=files, data={"collection": COLLECTION}, timeout=1800)
        response.raise_for_status()
    return time.perf_counter() - started


# ---------------------------------------------------------------- asking


def ask_platform(base: str, model: str, item: Any, top_k: int | None) -> Any:
    from serving.services.answer_eval_service import score_reply

    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": item.question}],
        "temperature": 0,
        "collections": [COLLECTION],
    }
    if top_k is not None:
        body["top_k"] = top_k
    started = time.perf_counter()
    reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=600).json()
    latency = time.perf_counter() - started
    choice = reply["choices"][0]
    return score_reply(
        item,
        choice["message"]["content"],
        [s["text"] for s in reply["sources"]],
        latency,
        reply["retrieval"],
        finish_reason=choice["finish_reason"],
        completion_tokens=reply["usage"]["completion_tokens"],
    )


def ask_peer(base: str, model: str, item: Any) -> Any:
    """The naive recipe: top-3 dense paragraphs in a plain prompt, the platform's retrieval off."""
    from serving.services.answer_eval_service import score_reply

    started = time.perf_counter()
    query = {"query": item.question, "k": 3, "mode": "dense", "collections": [COLLECTION]}
    hits = httpx.post(f"{base}/v1/retrieve", json=query, timeout=600).json()["data"]
    context = "\n\n".join(hit["text"] for hit in hits)
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": PEER_SYSTEM},
            {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {item.question}"},
        ],
        "temperature": 0,
        "max_tokens": 64,
        "use_retrieval": False,
    }
    reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=600).json()
    latency = time.perf_counter() - started
    choice = reply["choices"][0]
    return score_reply(
        item,
        choice["message"]["content"],
        [hit["text"] for hit in hits],
        latency,
        "peer",
        finish_reason=choice["finish_reason"],
        completion_tokens=reply["usage"]["completion_tokens"],
    )


# ---------------------------------------------------------------- server


class Server:
    def __init__(self, data_dir: Path, port: int, env: dict[str, str]) -> None:
        self.base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "cli.main", "serve", "--data-dir", str(data_dir), "--port", str(port)]
        full_env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
            "ASSISTANT_TRAINING__RUN_WORKER": "false",
            **env,
        }
        self.log = (data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(cmd, env=full_env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        wait_ready(self.base, self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.log.close()

    def model(self) -> str:
        return str(httpx.get(f"{self.base}/v1/models", timeout=60).json()["data"][0]["id"])


def run_questions(label: str, items: list[Any], ask: Any) -> dict[str, Any]:
    from serving.services.answer_eval_service import summarize

    results = []
    for i, item in enumerate(items, start=1):
        results.append(ask(item))
        if i % 25 == 0:
            print(f"  {label}: {i}/{len(items)}", flush=True)
    return {"metrics": summarize(results), "results": [asdict(r) for r in results]}


# ---------------------------------------------------------------- report


def row(name: str, metrics: dict[str, Any]) -> str:
    def f(value: Any) -> str:
        return "  n/a" if value is None else f"{value:.3f}"

    latency = metrics["latency_s"]
    return (
        f"| {name} | {f(metrics['f1'])} | {f(metrics['exact_match'])} | {f(metrics['contains'])} | "
        f"{f(metrics['citation_accuracy'])} | {f(metrics['grounding'])} | {latency['p50']:.2f} | {latency['p95']:.2f} |"
    )


def print_table(rows: list[tuple[str, dict[str, Any]]], questions: int) -> None:
    print(f"\n{questions} SQuAD questions (seeded sample, greedy), model SmolLM2-135M-Instruct, through REST")
    print("| variant | F1 | EM | contains | citation acc. | grounding | p50 s | p95 s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, metrics in rows:
        print(row(name, metrics))
    print("baseline (issue 10, 150 questions): " + ", ".join(f"{k} {v}" for k, v in BASELINE.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="Question sample seed (variants were chosen on seed 1).")
    parser.add_argument("--variants", action="store_true", help="Compare the prompt/source/stop variants too.")
    parser.add_argument("--only", nargs="*", type=int, default=None, help="With --variants: only these (0-based).")
    parser.add_argument("--data-dir", type=Path, default=None, help="Reuse a data dir (documents uploaded once).")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--out", type=Path, default=None, help="Write all results as JSON here.")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="assistant-bench-answers-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    docs, items = load_squad(args.questions, args.seed)
    rows: list[tuple[str, dict[str, Any]]] = []
    results: dict[str, Any] = {}
    out = args.out or data_dir / "bench-answers.json"
    try:
        with Server(data_dir, args.port, {}) as server:
            seconds = upload(server.base, docs)
            print(f"{len(docs)} paragraphs uploaded in {seconds:.0f} s" if seconds else "documents already uploaded")
            model = server.model()
            platform = lambda it: ask_platform(server.base, model, it, None)  # noqa: E731
            results["platform"] = run_questions("platform", items, platform)
            rows.append(("platform (defaults)", results["platform"]["metrics"]))
            results["peer"] = run_questions("naive peer", items, lambda it: ask_peer(server.base, model, it))
            rows.append(("naive peer", results["peer"]["metrics"]))
        if args.variants:
            chosen = VARIANTS[:-1] if args.only is None else [VARIANTS[i] for i in args.only]
            for variant in chosen:
                with Server(data_dir, args.port, variant.env) as server:
                    name = f"variant: {variant.name}"
                    ask = lambda it, s=server, v=variant: ask_platform(s.base, model, it, v.top_k)  # noqa: E731
                    results[name] = run_questions(name, items, ask)
                    rows.append((name, results[name]["metrics"]))
                    print(row(name, results[name]["metrics"]), flush=True)
    finally:  # a failed variant still leaves the rows measured so far
        print_table(rows, len(items))
        out.write_text(json.dumps(results, indent=2))
        print(f"results: {out}")


if __name__ == "__main__":
    main()
