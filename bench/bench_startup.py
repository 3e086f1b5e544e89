"""Start-up and single-stream speed of the server on the default model, measured through the real CLI and API.

Starts `assistant serve` as a subprocess (fresh data dir unless --data-dir), measures the time until `/health` is
ready (including the one-time GGUF conversion when the data dir is new), then asks "What is the capital of France?"
with the official openai client, non-streaming and streaming, and prints time to first token and decode tokens/s.

    .venv/bin/python bench/bench_startup.py [--data-dir DIR] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai
from server_process import wait_ready  # bench/ is on sys.path when a bench script runs

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def measure(client: openai.OpenAI, model: str, max_tokens: int) -> dict[str, float | str]:
    start = time.perf_counter()
    full = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=max_tokens, temperature=0)
    total = time.perf_counter() - start
    start = time.perf_counter()
    first, pieces = None, 0
    stream = client.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=max_tokens, temperature=0, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - start
            pieces += 1
    stream_total = time.perf_counter() - start
    tokens = full.usage.completion_tokens if full.usage else 0
    ttft = first or stream_total
    return {
        "answer": full.choices[0].message.content or "",
        "completion_tokens": tokens,
        "latency_s": total,
        "ttft_s": ttft,
        "decode_tok_s": (tokens - 1) / max(stream_total - ttft, 1e-9),
        "end_to_end_tok_s": tokens / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None, help="data dir (default: a new temporary one)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="assistant-bench-"))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    cmd = [sys.executable, "-m", "cli.main", "serve", "--data-dir", str(data_dir), "--port", str(args.port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{args.port}"
    try:
        ready = wait_ready(base_url, proc)
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused")
        model = client.models.list().data[0].id
        measure(client, model, 8)  # warm-up
        result = measure(client, model, args.max_tokens)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print(f"data dir               {data_dir}")
    print(f"time to ready          {ready:.1f} s")
    for key, value in result.items():
        print(f"{key:22} {value:.3f}" if isinstance(value, float) else f"{key:22} {value!r}")


if __name__ == "__main__":
    main()
