"""The closed loop on the default model, through the REST job API of a real server, in one run.

1. DPO: the sharegpt preference pairs (../shared/data/dpo-sharegpt-300.json) are split into train and held-out; the
   train part is imported (POST /v1/preferences), a DPO job trains on it (POST /v1/training/jobs, worker process),
   and held-out preference accuracy (log p(chosen) > log p(rejected), prompts rendered as served) is measured for
   the base model and the new adapter.
2. SFT: a SQuAD article is uploaded as documents; a SQuAD-format file of other questions on it is uploaded as
   training data (RAG examples: gold paragraph + distractors, rendered with the server's template) and an SFT job
   trains on it; held-out questions are then asked through /v1/chat/completions (retrieval on) with the base model
   and with the adapter, and exact match / F1 against the gold answers are compared.
Prints the figures and the run times. Sizes are flags: the defaults fit a few minutes per phase on a 2-core CPU.

    .venv/bin/python bench/bench_loop.py [--dpo-train 160 --dpo-heldout 100 --dpo-steps 40 --dpo-lr 5e-4]
                                         [--sft-train 64 --sft-heldout 24 --sft-steps 16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from server_process import run_job, wait_ready  # bench/ is on sys.path when a bench script runs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


# ---------------------------------------------------------------- DPO


def dpo_phase(base: str, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    records = json.loads((DATA / "dpo-sharegpt-300.json").read_text())
    random.Random(0).shuffle(records)
    train, heldout = records[: args.dpo_train], records[args.dpo_train : args.dpo_train + args.dpo_heldout]
    payload = "".join(json.dumps(r) + "\n" for r in train).encode()
    imported = httpx.post(f"{base}/v1/preferences", files={"file": ("train.jsonl", payload)}, timeout=120).json()
    spec = {
        "method": "dpo",
        "name": "bench-dpo",
        "data": {"source": "preferences", "provenance": "imported"},
        "hyperparameters": {
            "max_steps": args.dpo_steps,
            "learning_rate": args.dpo_lr,
            "beta": 0.1,
            "per_device_train_batch_size": 2,
            "max_length": args.max_length,
        },
        "gate": False,
    }
    job, seconds = run_job(base, spec)
    adapter = adapter_path(base, job["metrics"]["adapter"])
    accuracy = heldout_accuracy(data_dir, adapter, heldout, args.max_length)
    return {"imported": imported["stored"], "seconds": seconds, **accuracy, "job_metrics": job["metrics"]}


def adapter_path(base: str, identity: str) -> Path:
    listing = httpx.get(f"{base}/v1/adapters", timeout=60).json()["data"]
    return Path(next(a["path"] for a in listing if a["id"] == identity))


def heldout_accuracy(data_dir: Path, adapter: Path, records: list[dict[str, Any]], max_length: int) -> dict[str, Any]:
    """Preference accuracy on held-out pairs for the base model and the adapter (prompts rendered as served)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.model_files import resolve_lm
    from assistant.settings import Settings
    from training.data.dataset_formats import parse_preference_record
    from training.data.render import render_preference
    from training.gate import HeldOutPair, pair_scores

    model_dir = resolve_lm(Settings(data_dir=data_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pairs = []
    for i, record in enumerate(records):
        rendered = render_preference(tokenizer, parse_preference_record(record, f"heldout#{i}"))
        if len(tokenizer(rendered["prompt"] + rendered["chosen"])["input_ids"]) <= max_length:
            pairs.append(HeldOutPair(rendered["prompt"], rendered["chosen"], rendered["rejected"]))
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), str(adapter)
    )
    model.eval()
    with model.disable_adapter():
        base_scores = pair_scores(model, tokenizer, pairs)
    tuned_scores = pair_scores(model, tokenizer, pairs)
    return {"heldout_pairs": len(pairs), "base": base_scores, "adapter": tuned_scores}


# ---------------------------------------------------------------- SFT with retrieval


def squad_split(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """One article: its paragraphs (documents), train questions (SQuAD file), held-out questions."""
    data = json.loads((DATA / "squad-v1.1-dev-part1.json").read_text())
    article = data["data"][args.article]
    qas = [(p, qa) for p in article["paragraphs"] for qa in p["qas"]]
    random.Random(1).shuffle(qas)
    heldout = [qa for _, qa in qas[: args.sft_heldout]]
    held_ids = {qa["id"] for qa in heldout}
    paragraphs = []
    for paragraph in article["paragraphs"]:
        keep = [qa for qa in paragraph["qas"] if qa["id"] not in held_ids]
        if keep:
            paragraphs.append({"context": paragraph["context"], "qas": keep})
    train = {"version": "1.1", "data": [{"title": article["title"], "paragraphs": paragraphs}]}
    return article, heldout, train


def sft_phase(base: str, args: argparse.Namespace) -> dict[str, Any]:
    article, heldout, train = squad_split(args)
    files = [
        ("files", (f"{article['title']}-{i:03d}.txt", p["context"].encode()))
        for i, p in enumerate(article["paragraphs"])
    ]
    httpx.post(f"{base}/v1/documents", files=files, data={"collection": "squad"}, timeout=600).raise_for_status()
    upload = httpx.post(
        f"{base}/v1/training/files", timeout=60, files={"file": ("squad-train.json", json.dumps(train).encode())}
    ).json()
    spec = {
        "method": "sft",
        "name": "bench-sft",
        "data": {"source": "file", "file_id": upload["id"]},
        "hyperparameters": {
            "max_steps": args.sft_steps,
            "learning_rate": 2e-4,
            "squad_limit": args.sft_train,
            "rag_distractors": 1,
            "per_device_train_batch_size": 2,
            "max_length": args.max_length,
        },
        "gate": False,
    }
    job, seconds = run_job(base, spec)
    base_model = httpx.get(f"{base}/v1/models", timeout=60).json()["data"][0]["id"]
    scores = {name: qa_through_api(base, name, heldout) for name in (base_model, job["metrics"]["adapter"])}
    return {
        "seconds": seconds,
        "heldout_questions": len(heldout),
        "base": scores[base_model],
        "adapter": scores[job["metrics"]["adapter"]],
        "job_metrics": job["metrics"],
    }


def qa_through_api(base: str, model: str, heldout: list[dict[str, Any]]) -> dict[str, float]:
    from assistant.answer_metrics import best_exact_match, best_f1

    em = f1 = 0.0
    for qa in heldout:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": qa["question"]}],
            "max_tokens": 32,
            "temperature": 0,
            "collections": ["squad"],
        }
        answer = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300).json()["choices"][0]["message"][
            "content"
        ]
        golds = [a["text"] for a in qa["answers"]]
        em += best_exact_match(answer, golds)
        f1 += best_f1(answer, golds)
    return {"exact_match": em / len(heldout), "f1": f1 / len(heldout)}


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--port", type=int, default=8795)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--dpo-train", type=int, default=160)
    parser.add_argument("--dpo-heldout", type=int, default=100)
    parser.add_argument("--dpo-steps", type=int, default=40)
    parser.add_argument("--dpo-lr", type=float, default=5e-4)
    parser.add_argument("--article", type=int, default=0)
    parser.add_argument("--sft-train", type=int, default=64)
    parser.add_argument("--sft-heldout", type=int, default=24)
    parser.add_argument("--sft-steps", type=int, default=16)
    parser.add_argument("--skip", choices=["dpo", "sft"], default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="assistant-bench-loop-"))
    # Two sources per prompt when serving, as in the SFT examples (gold + one distractor): train as you serve.
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "ASSISTANT_RETRIEVAL__TOP_K": "2",
    }
    cmd = [sys.executable, "-m", "cli.main", "serve", "--data-dir", str(data_dir), "--port", str(args.port)]
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "server.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{args.port}"
    results: dict[str, Any] = {}
    try:
        wait_ready(base, proc)
        if args.skip != "dpo":
            results["dpo"] = dpo_phase(base, data_dir, args)
        if args.skip != "sft":
            results["sft"] = sft_phase(base, args)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    report(results)
    (data_dir / "bench-loop.json").write_text(json.dumps(results, indent=2, default=str))


def report(results: dict[str, Any]) -> None:
    print("\nmodel: SmolLM2-135M-Instruct (default), jobs through POST /v1/training/jobs, worker process")
    if "dpo" in results:
        r = results["dpo"]
        print(f"DPO  {r['imported']} imported pairs, job {r['seconds']:.0f} s, {r['heldout_pairs']} held-out pairs")
        print(f"     preference accuracy  base {r['base']['accuracy']:.3f}  adapter {r['adapter']['accuracy']:.3f}")
        print(f"     mean log-prob margin base {r['base']['margin']:.3f}  adapter {r['adapter']['margin']:.3f}")
    if "sft" in results:
        r = results["sft"]
        print(f"SFT  job {r['seconds']:.0f} s, {r['heldout_questions']} held-out questions answered with retrieval")
        print(f"     exact match  base {r['base']['exact_match']:.3f}  adapter {r['adapter']['exact_match']:.3f}")
        print(f"     F1           base {r['base']['f1']:.3f}  adapter {r['adapter']['f1']:.3f}")


if __name__ == "__main__":
    main()
