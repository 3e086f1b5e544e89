"""Serving throughput and latency: the platform (vLLM, continuous batching) vs a plain transformers server.

Both servers answer the same RAG chat requests on the same model with the same retrieval and prompt template:
- platform: `assistant serve` (FastAPI + vLLM async engine), streamed OpenAI chat completions;
- baseline: a FastAPI app that, per request, retrieves with the same `Retriever`, renders the same prompt, and calls
  transformers `model.generate` in a worker thread, streaming through `TextIteratorStreamer` (the common way to put an
  HF model behind an API).
They run one after the other (never together) on a data directory holding a SQuAD article collection. For each
concurrency level the script sends `--requests` streamed requests (at least twice the concurrency; every level asks
its own questions, so no full prompt is served from the prefix cache, only the shared system prompt) and prints
throughput (completion tokens/s and requests/s), completion tokens per request, time to first token p50/p95 and
request latency p50/p95. Both do the same work: the same prompt sources (`assistant.prompts.prompt_sources`) and
greedy generation up to `--max-tokens` or EOS; the platform's stop at the end of the answer line
(`answer.stop_at_newline`, a product default that shortens answers) is turned off here, else the platform would
produce fewer tokens per request than the baseline and tokens/s would not compare like with like.

    .venv/bin/python bench/bench_serving.py [--concurrency 1 8 32] [--max-tokens 32] [--data-dir DIR]

Admission control: requests beyond `server.max_concurrent_generations` running plus `server.max_queued_requests`
queued are answered 429 with Retry-After; each level reports how many were refused (and any other failure, which
must be 0), and the TTFT of the admitted ones.

LoRA overhead (`--lora-prompts N`, 12 by default, 0 skips it): a LoRA adapter of rank 8 on every projection, zero-
initialised as PEFT does (so it answers exactly what the base answers, token for token, while vLLM still runs every LoRA
matmul), is registered in the data directory; the same prompts are sent alternately to the base model and to the
adapter, one at a time, and the adapter/base latency ratio is printed — with the platform's LoRA ops
(serving/engines/lora_ops.py) and without them (vLLM's own CPU ops, plugin disabled through VLLM_PLUGINS), in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from server_process import wait_ready  # bench/ is on sys.path when a bench script runs

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "data" / "squad-v1.1-dev-part1.json"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def squad_questions(limit: int) -> tuple[list[tuple[str, str]], list[str]]:
    """(file name, paragraph text) of the first article's paragraphs, and questions about them."""
    article = json.loads(SQUAD.read_text())["data"][0]
    files = [(f"p{i:03d}.txt", p["context"]) for i, p in enumerate(article["paragraphs"])]
    questions = [qa["question"] for p in article["paragraphs"] for qa in p["qas"]]
    return files, questions[:limit]


def prepare_data(data_dir: Path, files: list[tuple[str, str]]) -> None:
    folder = data_dir / "corpus"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files:
        (folder / name).write_text(text)
    subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(folder), "--data-dir", str(data_dir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


# ---------------------------------------------------------------- load generator


async def one_request(
    client: httpx.AsyncClient, question: str, max_tokens: int, model: str = "bench"
) -> tuple[float, float, int, int]:
    """(ttft, latency, completion tokens, HTTP status) of one streamed request; a refused one has status 429."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return 0.0, time.perf_counter() - start, 0, response.status_code
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            payload = json.loads(line[6:])
            if first is None and any(c["delta"].get("content") for c in payload.get("choices", [])):
                first = time.perf_counter() - start
            if payload.get("usage"):
                tokens = payload["usage"]["completion_tokens"]
    latency = time.perf_counter() - start
    return first or latency, latency, tokens, 200


async def run_level(
    base_url: str, questions: list[str], concurrency: int, requests: int, max_tokens: int
) -> dict[str, float]:
    semaphore = asyncio.Semaphore(concurrency)

    async def bounded(client: httpx.AsyncClient, i: int) -> tuple[float, float, int, int]:
        async with semaphore:
            return await one_request(client, questions[1 + i % (len(questions) - 1)], max_tokens)

    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        await one_request(client, questions[0], 4)  # warm-up, on a question the level does not ask again
        start = time.perf_counter()
        results = await asyncio.gather(*(bounded(client, i) for i in range(requests)))
        wall = time.perf_counter() - start
    admitted = [r for r in results if r[3] == 200]
    ttfts, latencies, tokens, _ = zip(*admitted, strict=True) if admitted else ((), (), (), ())
    return {
        "refused_429": sum(r[3] == 429 for r in results),
        "failed": sum(r[3] not in (200, 429) for r in results),
        "tok_s": sum(tokens) / wall,
        "req_s": len(admitted) / wall,
        "tokens_per_request": sum(tokens) / max(len(admitted), 1),
        "ttft_p50": percentile(list(ttfts), 0.5),
        "ttft_p95": percentile(list(ttfts), 0.95),
        "lat_p50": percentile(list(latencies), 0.5),
        "lat_p95": percentile(list(latencies), 0.95),
    }


# ---------------------------------------------------------------- servers


def start_server(
    kind: str, data_dir: Path, port: int, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **(extra_env or {}),
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
        "ASSISTANT_MODELS__SERVED_NAME": "bench",
        "ASSISTANT_RETRIEVAL__RELEVANCE_THRESHOLD": "0",
        "ASSISTANT_ANSWER__STOP_AT_NEWLINE": "false",  # same generated length as the baseline (see the docstring)
    }
    if kind == "platform":
        cmd = [sys.executable, "-m", "cli.main", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    else:
        cmd = [sys.executable, __file__, "--baseline-server", "--data-dir", str(data_dir), "--port", str(port)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def baseline_app(data_dir: Path) -> Any:
    """FastAPI + transformers generate per request, with the platform's retrieval and prompt template."""
    import torch
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    from assistant.embedding import make_embedder
    from assistant.index import open_index
    from assistant.model_files import resolve_lm
    from assistant.parts import make_keyword_search
    from assistant.prompts import build_rag_messages, prompt_sources
    from assistant.retrieval import Retriever
    from assistant.settings import Settings
    from assistant.storage import Database

    settings = Settings(data_dir=data_dir)
    model_dir = resolve_lm(settings)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    db = Database(settings.resolved_database_url)
    embedder = make_embedder(settings)
    retriever = Retriever(
        settings, db, open_index(settings.index_dir, embedder.dim, 10**9), embedder, keyword=make_keyword_search(db)
    )
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any]) -> StreamingResponse:
        history = body["messages"]
        hits = retriever.search(history[-1]["content"])
        sources = prompt_sources(history[-1]["content"], hits, settings)
        prompt = tokenizer.apply_chat_template(
            build_rag_messages(history, sources), tokenize=False, add_generation_prompt=True
        )
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {**inputs, "max_new_tokens": body.get("max_tokens", 32), "do_sample": False, "streamer": streamer}
        threading.Thread(target=lambda: model.generate(**kwargs), daemon=True).start()

        def events() -> Any:
            generated = ""
            for text in streamer:
                generated += text
                yield f"data: {json.dumps({'choices': [{'delta': {'content': text}}]})}\n\n"
            usage = {"completion_tokens": len(tokenizer(generated, add_special_tokens=False)["input_ids"]) + 1}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


# ---------------------------------------------------------------- LoRA overhead

VLLM_OWN_PLUGINS = "lora_filesystem_resolver,lora_hf_hub_resolver"  # every general plugin but the platform's


def register_zero_adapter(data_dir: Path) -> str:
    """A rank-8 LoRA on every projection, B = 0 as PEFT initialises it (same answers as the base), registered."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from assistant.model_files import resolve_lm
    from assistant.settings import Settings
    from assistant.storage import Database
    from training.registry import AdapterRegistry

    settings = Settings(data_dir=data_dir)
    db = Database(settings.resolved_database_url)
    registry = AdapterRegistry(db, settings.adapters_dir)
    if registry.next_version("overhead") > 1:
        return "overhead"
    db.migrate()
    base = AutoModelForCausalLM.from_pretrained(resolve_lm(settings), dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=targets, task_type="CAUSAL_LM"))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        registry.register("overhead", Path(tmp), base_model="bench", method="sft", lineage={}, metrics={})
    return "overhead"


async def alternate(base_url: str, questions: list[str], adapter: str, max_tokens: int) -> dict[str, float]:
    """Each question to the base then to the adapter, one request at a time: latency and TTFT medians, ratios."""
    rows: dict[str, list[tuple[float, float, int, int]]] = {"bench": [], adapter: []}
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        for model in rows:
            await one_request(client, questions[0], 4, model)  # warm-up (loads the adapter)
        for question in questions:
            for model in rows:
                rows[model].append(await one_request(client, question, max_tokens, model))
    base, lora = rows["bench"], rows[adapter]
    same_tokens = sum(b[2] == a[2] for b, a in zip(base, lora, strict=True))
    return {
        "base_lat_p50": percentile([r[1] for r in base], 0.5),
        "lora_lat_p50": percentile([r[1] for r in lora], 0.5),
        "base_ttft_p50": percentile([r[0] for r in base], 0.5),
        "lora_ttft_p50": percentile([r[0] for r in lora], 0.5),
        "ratio": percentile([a[1] / b[1] for b, a in zip(base, lora, strict=True)], 0.5),
        "same_length": same_tokens / len(base),
    }


def bench_lora(data_dir: Path, port: int, questions: list[str], max_tokens: int) -> dict[str, dict[str, float]]:
    adapter = register_zero_adapter(data_dir)
    results = {}
    for label, env in (("platform ops", {}), ("vLLM CPU ops", {"VLLM_PLUGINS": VLLM_OWN_PLUGINS})):
        proc = start_server("platform", data_dir, port, env)
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc)
            results[label] = asyncio.run(alternate(f"http://127.0.0.1:{port}", questions, adapter, max_tokens))
            print(f"lora overhead ({label}) done", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    return results


def print_lora(results: dict[str, dict[str, float]], count: int) -> None:
    print(f"\nLoRA overhead: {count} identical prompts, alternately base and adapter (rank 8, all projections)")
    header = f"{'ops':13} {'base p50':>9} {'lora p50':>9} {'ttft base':>10} {'ttft lora':>10}"
    print(f"{header} {'ratio':>6} {'same len':>9}")
    for label, r in results.items():
        print(
            f"{label:13} {r['base_lat_p50']:9.3f} {r['lora_lat_p50']:9.3f} {r['base_ttft_p50']:10.3f} "
            f"{r['lora_ttft_p50']:10.3f} {r['ratio']:6.2f} {r['same_length']:9.2f}"
        )


# ---------------------------------------------------------------- main


def bench_server(
    kind: str, data_dir: Path, port: int, args: argparse.Namespace, questions: list[str]
) -> dict[int, dict[str, float]]:
    proc = start_server(kind, data_dir, port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        print(f"{kind}: ready in {wait_ready(base_url, proc):.1f} s", flush=True)
        results, asked = {}, 0
        for concurrency in args.concurrency:
            # each level asks questions no earlier level asked: a repeated prompt would be a full prefix-cache hit for
            # the platform (not for the baseline) and inflate its throughput
            requests = max(args.requests, 2 * concurrency)
            level = questions[asked : asked + requests + 1]
            asked += requests + 1
            results[concurrency] = asyncio.run(run_level(base_url, level, concurrency, requests, args.max_tokens))
            print(f"{kind}: concurrency {concurrency} done", flush=True)
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=8, help="requests per level (at least 2x the concurrency)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--lora-prompts", type=int, default=12, help="prompts for the LoRA overhead (0: skip it)")
    parser.add_argument("--skip-load", action="store_true", help="only the LoRA overhead, not the load levels")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        import uvicorn

        uvicorn.run(baseline_app(args.data_dir), host="127.0.0.1", port=args.port, log_level="warning")
        return
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="assistant-bench-serving-"))
    files, questions = squad_questions(200)
    if not (data_dir / "assistant.db").exists():
        prepare_data(data_dir, files)
    lora = bench_lora(data_dir, args.port, questions[: args.lora_prompts], args.max_tokens) if args.lora_prompts else {}
    if args.skip_load:
        print_lora(lora, args.lora_prompts)
        return
    table = {kind: bench_server(kind, data_dir, args.port, args, questions) for kind in ("platform", "baseline")}
    print(f"\nmodel: default (SmolLM2-135M-Instruct), max_tokens {args.max_tokens}, RAG over {len(files)} paragraphs")
    header = f"{'server':9} {'conc':>4} {'tok/s':>8} {'req/s':>6} {'tok/req':>7} {'ttft p50':>9} {'ttft p95':>9}"
    print(f"{header} {'lat p50':>8} {'lat p95':>8} {'429s':>5} {'failed':>6}")
    for kind, levels in table.items():
        for concurrency, r in levels.items():
            print(
                f"{kind:9} {concurrency:>4} {r['tok_s']:8.1f} {r['req_s']:6.2f} {r['tokens_per_request']:7.1f} "
                f"{r['ttft_p50']:9.3f} {r['ttft_p95']:9.3f} "
                f"{r['lat_p50']:8.3f} {r['lat_p95']:8.3f} {r['refused_429']:>5} {r['failed']:>6}"
            )
    for concurrency in args.concurrency:
        ratio = table["platform"][concurrency]["tok_s"] / table["baseline"][concurrency]["tok_s"]
        print(f"throughput ratio platform/baseline at concurrency {concurrency}: {ratio:.2f}x")
    if lora:
        print_lora(lora, args.lora_prompts)


if __name__ == "__main__":
    main()
