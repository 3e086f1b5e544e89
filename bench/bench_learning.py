"""Does retraining make grounded answers better, within a CPU budget? Through REST only, on the SQuAD half.

The shared SQuAD half (../shared/data/squad-v1.1-dev-part1.json, 24 articles) is split by article, seeded:
- `--absent-articles` articles are never uploaded: their questions measure abstention;
- every other article is uploaded as one document (POST /v1/documents, collection `squad`);
- of those, `--eval-articles` articles give the evaluation questions, never trained on; the rest give the training
  questions (a SQuAD-format file uploaded with POST /v1/training/files).
An SFT job (POST /v1/training/jobs, `data.collection=squad`: RAFT examples built with the server's retriever and
sources, gate on) trains an adapter on every question of the training articles with one option only,
`"hyperparameters": {"max_minutes": 15}` (issue 30: the product's defaults are what is measured; `--set KEY=JSON`
adds options for experiments and the report names them). Then the evaluation questions are asked through
/v1/chat/completions (retrieval on, greedy, the server's answer length) with the base model, with the naive RAG
peer (bench/bench_answers.py's recipe: the top-3 dense chunks in a plain "Answer from the context. Short answer only."
prompt, same model) and with the adapter: exact match, F1 and contains-answer (official SQuAD normalisation,
`assistant.answer_metrics`; citation markers like "[1]" are removed before scoring, they are scored by citation
accuracy: a cited source holds a gold answer), abstention on questions of the absent articles (the reply is the "I
don't know" answer), latency p50/p90; plus the job's wall time, the phases a client saw while it ran, its training
throughput and the gate's report. `--no-bf16` trains in float32 (the server gets ASSISTANT_TRAINING__CPU_BF16=off),
as on CPUs without AVX512-BF16 or AMX. With `--psft` a PSFT job on the same data runs too (side by side: held-out
F1, validation loss on shared alpaca records before/after, entropy). `--pt-then-sft`: a `pt` job on the training
articles' text (half the budget) then an SFT job from it (the other half), against the SFT job alone: held-out F1
and perplexity on paragraphs of the evaluation articles, which no job reads.

Goal (issue 30): adapter F1 >= 0.45 and >= 4x the base's, job wall time <= 16 minutes with `max_minutes: 15`,
latency p50 <= 3 s, and the base at or above the naive peer's F1.

`--documents-only` (issue 30): the training articles are uploaded as collection `squad` and the evaluation articles as
`squad-eval` (answered from, never trained on); beside the labeled-question job, a second SFT job gets no question at
all, `data: {source: collection, collection: squad}`: its questions are generated from the chunks and kept when they
pass the round-trip check (training/data/collection.py). Both adapters are asked the evaluation articles' real
questions; the report prints the share kept, 10 kept and 5 dropped samples, and the goal (F1 >= 2.5x the base's).
`--generate-only` runs that data step alone, in process (no server, no training): the training articles ingested with
the real embedder, questions generated and checked with the real retriever, beside the same check on the training
articles' real SQuAD questions (their answer in one of the top_k chunks of their own article).

    .venv/bin/python bench/bench_learning.py [--max-minutes 15] [--no-bf16] [--psft] [--pt-then-sft]
        [--dpo]   (DPO on the shared sharegpt pairs through a job; its gate reports held-out preference accuracy)
        [--documents-only]   (plus a job on questions generated from the training articles alone)
    .venv/bin/python bench/bench_learning.py --generate-only   (the generation and its round-trip check only, ~5 min)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from server_process import run_job, wait_ready  # bench/ is on sys.path when a bench script runs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None, help="Server data dir (default: a fresh temp dir).")
    parser.add_argument("--port", type=int, default=8796)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--absent-articles", type=int, default=3, help="Articles not uploaded (abstention).")
    parser.add_argument("--eval-articles", type=int, default=5, help="Uploaded articles never trained on.")
    parser.add_argument("--train-questions", type=int, default=None,
                        help="Cap on training questions (squad_limit; default: all).")  # fmt: skip
    parser.add_argument("--eval-questions", type=int, default=60, help="Questions of the evaluation articles asked.")
    parser.add_argument("--abstain-questions", type=int, default=20, help="Questions of the absent articles asked.")
    parser.add_argument(
        "--max-minutes", type=float, default=15.0, help="The job's wall-clock budget (its only option)."
    )
    parser.add_argument("--max-tokens", type=int, default=None, help="Answer length limit (default: the server's).")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="Extra job hyperparameter (experiments only: the must-show run passes none).")  # fmt: skip
    parser.add_argument("--no-bf16", action="store_true",
                        help="Train in float32 (ASSISTANT_TRAINING__CPU_BF16=off).")  # fmt: skip
    parser.add_argument("--no-peer", action="store_true", help="Skip the naive RAG peer's answers.")
    parser.add_argument("--pt-then-sft", action="store_true",
                        help="Also a pt job, then sft on it (half the budget each), vs sft alone.")  # fmt: skip
    parser.add_argument("--psft", action="store_true", help="Also train PSFT on the same data, side by side.")
    parser.add_argument("--psft-minutes", type=float, default=None, help="Budget of the SFT/PSFT comparison jobs.")
    parser.add_argument("--dpo", action="store_true", help="Also run DPO on the shared sharegpt pairs (held out).")
    parser.add_argument("--dpo-steps", type=int, default=240, help="DPO steps (the time budget usually stops first).")
    parser.add_argument("--dpo-minutes", type=float, default=10.0, help="The DPO job's wall-clock budget.")
    parser.add_argument("--dpo-max-length", type=int, default=320)
    parser.add_argument("--dpo-lr", type=float, default=5e-4)
    parser.add_argument("--alpaca-records", type=int, default=40, help="Alpaca records for the retention check.")
    parser.add_argument(
        "--documents-only",
        action="store_true",
        help="Also train on questions generated from the training articles alone (no labels).",
    )
    parser.add_argument(
        "--generate-only",
        action="store_true",
        help="Only generate and round-trip check questions of the training articles, in process.",
    )
    parser.add_argument("--generator", choices=("rules", "model", "both"), default="rules",
                        help="--generate-only: who writes the questions (both: side by side).")  # fmt: skip
    parser.add_argument("--max-questions", type=int, default=2000,
                        help="--generate-only: stop after this many generated questions.")  # fmt: skip
    parser.add_argument(
        "--real-questions",
        type=int,
        default=300,
        help="--generate-only: real training questions given the same round-trip check (baseline).",
    )
    return parser.parse_args()


# ---------------------------------------------------------------- data


def split_articles(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    articles = json.loads((DATA / "squad-v1.1-dev-part1.json").read_text())["data"]
    order = list(range(len(articles)))
    random.Random(args.seed).shuffle(order)
    absent = [articles[i] for i in order[: args.absent_articles]]
    evaluation = [articles[i] for i in order[args.absent_articles : args.absent_articles + args.eval_articles]]
    train = [articles[i] for i in order[args.absent_articles + args.eval_articles :]]
    return {"absent": absent, "eval": evaluation, "train": train}


def questions(articles: list[dict[str, Any]], limit: int, seed: int) -> list[dict[str, Any]]:
    items = [
        {"question": qa["question"], "answers": [a["text"] for a in qa["answers"]], "article": article["title"]}
        for article in articles
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
        if qa["answers"]
    ]
    random.Random(seed).shuffle(items)
    return items[:limit]


def article_text(article: dict[str, Any]) -> str:
    return "\n\n".join(p["context"] for p in article["paragraphs"])


def upload_documents(base: str, articles: list[dict[str, Any]], collection: str = "squad", ready: int = 0) -> float:
    """Upload the articles into `collection` and wait until `ready` + them are ready."""
    started = time.perf_counter()
    files = [("files", (f"{a['title']}.txt", article_text(a).encode())) for a in articles]
    response = httpx.post(f"{base}/v1/documents", files=files, data={"collection": collection}, timeout=3600)
    response.raise_for_status()
    wait_documents_ready(base, ready + len(articles))
    return time.perf_counter() - started


def wait_documents_ready(base: str, count: int, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = httpx.get(f"{base}/v1/documents", params={"limit": 500}, timeout=60).json()
        rows = listing.get("data", [])
        if len(rows) >= count and all(r.get("status", "ready") == "ready" for r in rows):
            return
        time.sleep(3)
    raise TimeoutError("documents not ready")


# ---------------------------------------------------------------- jobs


def extra_options(args: argparse.Namespace) -> dict[str, Any]:
    """`--set KEY=JSON` options (experiments); the must-show run gives none: the job gets `max_minutes` only."""
    return {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}


def train(
    base: str,
    method: str,
    file_id: str | None,
    args: argparse.Namespace,
    minutes: float,
    name: str | None = None,
    base_adapter: str | None = None,
) -> dict[str, Any]:
    """A job on the uploaded question file, or (file_id None) on questions generated from the collection alone."""
    data = ({"source": "file", "file_id": file_id, "collection": "squad"} if file_id
            else {"source": "collection", "collection": "squad"})  # fmt: skip
    spec = {
        "method": method,
        "name": name or f"bench-{method}",
        "data": data,
        "hyperparameters": {
            "max_minutes": minutes,
            **({"squad_limit": args.train_questions} if file_id and args.train_questions else {}),
            **extra_options(args),
        },
        "gate": True,
        **({"base_adapter": base_adapter} if base_adapter else {}),
    }
    job, seconds = run_job(base, spec)
    adapter = next(a for a in httpx.get(f"{base}/v1/adapters", timeout=60).json()["data"]
                   if a["id"] == job["metrics"]["adapter"])  # fmt: skip
    return {"job": job, "seconds": seconds, "adapter": adapter}


def dpo(base: str, args: argparse.Namespace) -> dict[str, Any]:
    """DPO on the shared sharegpt pairs; the job holds out 20% of the pairs by prompt and its gate scores the held-out
    preference accuracy of the base and of the adapter: the reward accuracy (the implicit DPO reward log p/p_base
    higher on the chosen side; the base itself scores 0.5) beside the likelihood accuracy (log p(chosen) >
    log p(rejected))."""
    upload = httpx.post(f"{base}/v1/training/files", timeout=120,
                        files={"file": ("dpo.json", (DATA / "dpo-sharegpt-300.json").read_bytes())}).json()  # fmt: skip
    spec = {
        "method": "dpo",
        "name": "bench-dpo",
        "data": {"source": "file", "file_id": upload["id"]},
        "hyperparameters": {
            "max_steps": args.dpo_steps,
            "max_minutes": args.dpo_minutes,
            "learning_rate": args.dpo_lr,
            "max_length": args.dpo_max_length,
            "per_device_train_batch_size": 2,
            "per_device_eval_batch_size": 4,
            "eval_steps": 10**5,
            "logging_steps": 5,
        },
        "gate": True,
    }
    job, seconds = run_job(base, spec)
    gate = job["metrics"].get("gate") or {}
    return {"job_s": seconds, "job_metrics": job["metrics"], "gate": gate}


# ---------------------------------------------------------------- asking


def ask(base: str, model: str, question: str, args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "temperature": 0,
        "collections": args.collections,
        **({"max_tokens": args.max_tokens} if args.max_tokens else {}),
    }
    started = time.perf_counter()
    response = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=600)
    response.raise_for_status()
    return response.json(), time.perf_counter() - started


def ask_peer(base: str, model: str, question: str, args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    """The naive RAG peer (bench/bench_answers.py's recipe): the top-3 dense chunks pasted into a plain "Answer from
    the context. Short answer only." prompt, the platform's retrieval off, same model, greedy."""
    from assistant.prompts import CONTEXT_INSTRUCTION

    started = time.perf_counter()
    query = {"query": question, "k": 3, "mode": "dense", "collections": args.collections}
    hits = httpx.post(f"{base}/v1/retrieve", json=query, timeout=600).json()["data"]
    context = "\n\n".join(hit["text"] for hit in hits)
    body = {
        "model": model,
        "messages": [{"role": "system", "content": CONTEXT_INSTRUCTION},
                     {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}"}],
        "temperature": 0,
        "max_tokens": args.max_tokens or 64,
        "use_retrieval": False,
    }  # fmt: skip
    response = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=600)
    response.raise_for_status()
    reply = response.json()
    reply["sources"] = [{"index": i + 1, "text": hit["text"]} for i, hit in enumerate(hits)]
    return reply, time.perf_counter() - started


def answer_scores(
    base: str, model: str, items: list[dict[str, Any]], args: argparse.Namespace, asker: Any = ask
) -> dict[str, Any]:
    from assistant.answer_metrics import (
        best_contains,
        best_exact_match,
        best_f1,
        cited_indices,
        cites_answer,
        strip_citations,
    )

    rows, samples = [], []
    for item in items:
        reply, seconds = asker(base, model, item["question"], args)
        text = reply["choices"][0]["message"]["content"]
        plain = strip_citations(text)
        sources = {s["index"]: s["text"] for s in reply.get("sources", [])}
        cited = [sources[n] for n in cited_indices(text) if n in sources]
        rows.append({
            "em": best_exact_match(plain, item["answers"]),
            "f1": best_f1(plain, item["answers"]),
            "contains": best_contains(text, item["answers"]),
            "cites": cites_answer(cited, item["answers"]),
            "cited_any": float(bool(cited)),
            "seconds": seconds,
        })  # fmt: skip
        samples.append({"question": item["question"], "gold": item["answers"][0], "reply": text})
    return {**summarize(rows), "samples": samples[:10]}


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    seconds = sorted(r["seconds"] for r in rows)
    out = {key: statistics.fmean(r[key] for r in rows) for key in rows[0] if key != "seconds"}
    out["latency_p50"] = statistics.median(seconds)
    out["latency_p90"] = seconds[min(len(seconds) - 1, int(0.9 * len(seconds)))]
    out["questions"] = len(rows)
    return out


def abstention(base: str, model: str, items: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, float]:
    from assistant.prompts import NO_SOURCES_ANSWER

    said = 0
    for item in items:
        reply, _ = ask(base, model, item["question"], args)
        text = reply["choices"][0]["message"]["content"]
        said += text.strip() == NO_SOURCES_ANSWER or "don't know" in text.lower()
    return {"abstention_rate": said / len(items), "questions": len(items)}


# ---------------------------------------------------------------- retention (PSFT vs SFT)


def served_model(data_dir: Path, adapter: Path | None) -> tuple[Any, Any]:
    """The server's base model (float32, eval mode) with `adapter` on it when given, and its tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.model_files import resolve_lm
    from assistant.settings import Settings

    model_dir = resolve_lm(Settings(data_dir=data_dir))
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    return AutoTokenizer.from_pretrained(model_dir), model.eval()


def alpaca_loss(data_dir: Path, adapter: Path | None, records: int) -> dict[str, float]:
    """Validation loss and entropy on shared alpaca records (out of domain), base or with an adapter."""
    import torch

    from training.data.dataset_formats import load_sft_examples
    from training.data.render import tokenize_chat

    tokenizer, model = served_model(data_dir, adapter)
    nll = entropy = tokens = 0.0
    for example in load_sft_examples([DATA / "sft-alpaca-999.json"])[:records]:
        encoded = tokenize_chat(tokenizer, example)
        ids = torch.tensor([encoded["input_ids"][:512]])
        labels = torch.tensor(encoded["labels"][:512])[1:]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        mask = labels != -100
        nll -= float(logp[mask].gather(1, labels[mask][:, None]).sum())
        entropy -= float((logp[mask].exp() * logp[mask]).sum())
        tokens += int(mask.sum())
    return {"loss": nll / max(tokens, 1), "entropy": entropy / max(tokens, 1)}


# ---------------------------------------------------------------- main


def generate_only(args: argparse.Namespace) -> None:
    """The documents-only data step in process: ingest the training articles, generate and check questions, and give
    the training articles' real questions the same check (the baseline)."""
    from assistant.answer_metrics import contains_answer
    from assistant.model_files import resolve_lm
    from assistant.parts import Parts
    from assistant.settings import Settings
    from ingest.ingest_service import IngestService
    from training.data.collection import questions_from_collection
    from training.data.model_questions import ModelQuestions
    from training.data.questions import RuleQuestions

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="assistant-bench-generate-"))
    folder = data_dir / "articles"
    folder.mkdir(parents=True, exist_ok=True)
    split = split_articles(args)
    for article in split["train"]:
        (folder / f"{article['title']}.txt").write_text(article_text(article))
    parts = Parts(Settings(data_dir=data_dir / "data"))
    args.top_k = parts.settings.retrieval.top_k
    started = time.perf_counter()
    IngestService.of(parts).ingest_paths([folder], collection="squad")
    ingest_s = time.perf_counter() - started
    generators: dict[str, Any] = {"rules": RuleQuestions()}
    if args.generator in ("model", "both"):
        generators["model"] = ModelQuestions(resolve_lm(parts.settings))
    if args.generator == "model":
        generators.pop("rules")
    compared = {}
    for label, generator in generators.items():
        _, generation = questions_from_collection(parts, "squad", generator, seed=args.seed,
                                                     max_questions=args.max_questions)  # fmt: skip
        compared[label] = generation
        print(f"\n== generator: {label}")
        print_generation(generation.to_dict())
        if label == "model":
            print(f"  the model wrote one question for {generator.written} of {generator.asked} answer spans; "
                  f"replies refused, e.g.: {generator.refused[:3]}")  # fmt: skip
        per = generation.seconds / max(generation.generated, 1)
        print(f"  {per:.2f} s per generated question, {generation.seconds / max(generation.kept, 1):.2f} s per kept")
    real = questions(split["train"], args.real_questions, args.seed)
    real_kept = 0
    for item in real:
        hits = parts.retriever.search(item["question"], k=args.top_k, collections=["squad"])
        own = [h for h in hits if Path(h.source).stem == item["article"]]
        real_kept += any(contains_answer(h.text, a) for h in own for a in item["answers"])
    print(f"\n{len(split['train'])} training articles ingested in {ingest_s:.0f} s; top_k {args.top_k}")
    for label, report_ in compared.items():
        print(f"{label:6}: generated {report_.generated}, kept {report_.kept} ({report_.kept_share:.1%}) in "
              f"{report_.seconds:.0f} s; dropped {dict(report_.dropped)}")  # fmt: skip
    share = real_kept / max(len(real), 1)
    print(f"baseline, the real SQuAD questions of the same articles: {real_kept} of {len(real)} ({share:.1%}) "
          f"find their answer in a top_{args.top_k} chunk of their article")  # fmt: skip
    results = {"generation": {k: g.to_dict() for k, g in compared.items()}, "ingest_s": ingest_s,
               "real_questions": len(real), "real_kept": real_kept}  # fmt: skip
    save(data_dir, results)
    print(f"full results: {data_dir / 'bench-learning.json'}")


def print_generation(generation: dict[str, Any]) -> None:
    """The share kept by the round-trip check, the reasons, 10 kept and 5 dropped samples."""
    print(f"generated {generation['generated']} questions from {generation['chunks_read']} of {generation['chunks']} "
          f"chunks in {generation['seconds']:.0f} s; kept {generation['kept']} ({generation['kept_share']:.1%}) by "
          f"the round-trip check (own chunk within top_{generation['top_k']}, answer in it)")  # fmt: skip
    print(f"  dropped: {generation['dropped']}; kept by answer kind: {generation['kept_by_kind']}")
    for sample in generation["kept_samples"][:10]:
        print(f"  kept    [{sample['kind']}] {sample['question']} -> {sample['answer']} (rank {sample['rank']})")
    for sample in generation["dropped_samples"][:5]:
        print(f"  dropped [{sample['reason']}] {sample['question']} -> {sample['answer']}")


def adapter_results(
    base: str,
    trained: dict[str, Any],
    eval_items: list[dict[str, Any]],
    absent: list[dict[str, Any]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """A trained job's figures: its wall time, metrics, gate, the phases seen, and its adapter's answers."""
    name = trained["adapter"]["id"]
    return {
        "job_s": trained["seconds"],
        "job_metrics": trained["job"]["metrics"],
        "phases_seen": trained["job"].get("phases_seen"),
        "gate": trained["adapter"]["gate"],
        "scores": answer_scores(base, name, eval_items, args),
        "abstention": abstention(base, name, absent, args),
        "adapter_path": trained["adapter"]["path"],
        "adapter_id": name,
    }


def heldout_perplexity(data_dir: Path, adapter: Path | None, articles: list[dict[str, Any]], limit: int = 60) -> float:
    """Perplexity of the base (or base + adapter) on paragraphs of articles no job read (the evaluation articles)."""
    import math

    import torch

    tokenizer, model = served_model(data_dir, adapter)
    paragraphs = [p["context"] for a in articles for p in a["paragraphs"]]
    random.Random(0).shuffle(paragraphs)
    nll = tokens = 0.0
    for text in paragraphs[:limit]:
        ids = torch.tensor([tokenizer(text)["input_ids"][:512]])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss
        nll += float(loss) * (ids.shape[1] - 1)
        tokens += ids.shape[1] - 1
    return math.exp(nll / max(tokens, 1))


def main() -> None:
    args = parse_args()
    if args.generate_only:
        generate_only(args)
        return
    split_layout = args.documents_only or args.pt_then_sft  # the evaluation articles in a collection never trained on
    args.collections = ["squad", "squad-eval"] if split_layout else ["squad"]
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="assistant-bench-learning-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        **({"ASSISTANT_TRAINING__CPU_BF16": "off"} if args.no_bf16 else {}),
    }
    cmd = [sys.executable, "-m", "cli.main", "serve", "--data-dir", str(data_dir), "--port", str(args.port)]
    with (data_dir / "server.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{args.port}"
    split = split_articles(args)
    eval_items = questions(split["eval"], args.eval_questions, args.seed)
    absent_items = questions(split["absent"], args.abstain_questions, args.seed)
    train_file = {"version": "1.1", "data": split["train"]}
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()},
                               "articles": {k: [a["title"] for a in v] for k, v in split.items()},
                               "train_questions": len(questions(split["train"], 10**9, args.seed))}  # fmt: skip
    try:
        results["ready_s"] = wait_ready(base, proc)
        if split_layout:
            results["upload_s"] = upload_documents(base, split["train"])
            results["upload_s"] += upload_documents(base, split["eval"], "squad-eval", ready=len(split["train"]))
        else:
            results["upload_s"] = upload_documents(base, split["train"] + split["eval"])
        print(f"documents uploaded in {results['upload_s']:.0f} s", flush=True)
        base_model = httpx.get(f"{base}/v1/models", timeout=60).json()["data"][0]["id"]
        results["base"] = answer_scores(base, base_model, eval_items, args)
        results["base_abstention"] = abstention(base, base_model, absent_items, args)
        print(f"base: {short(results['base'])}", flush=True)
        if not args.no_peer:
            results["peer"] = answer_scores(base, base_model, eval_items, args, ask_peer)
            print(f"naive peer: {short(results['peer'])}", flush=True)
        save(data_dir, results)
        upload = httpx.post(f"{base}/v1/training/files", timeout=120,
                            files={"file": ("squad-train.json", json.dumps(train_file).encode())}).json()  # fmt: skip
        methods = ["sft", "psft"] if args.psft else ["sft"]
        for method in methods:
            trained = train(base, method, upload["id"], args, args.psft_minutes or args.max_minutes)
            results[method] = adapter_results(base, trained, eval_items, absent_items, args)
            print(f"{method}: {short(results[method]['scores'])}", flush=True)
            save(data_dir, results)
        if args.documents_only:
            trained = train(base, "sft", None, args, args.max_minutes, name="bench-documents")
            results["documents"] = adapter_results(base, trained, eval_items, absent_items, args)
            print(f"documents only: {short(results['documents']['scores'])}", flush=True)
            save(data_dir, results)
        if args.pt_then_sft:
            half = args.max_minutes / 2
            pretrained = train(base, "pt", None, args, half, name="bench-pt")
            results["pt"] = {"job_s": pretrained["seconds"], "job_metrics": pretrained["job"]["metrics"],
                             "adapter_path": pretrained["adapter"]["path"]}  # fmt: skip
            trained = train(base, "sft", upload["id"], args, half, name="bench-pt-sft",
                            base_adapter=pretrained["adapter"]["id"])  # fmt: skip
            results["pt_sft"] = adapter_results(base, trained, eval_items, absent_items, args)
            print(f"pt then sft: {short(results['pt_sft']['scores'])}", flush=True)
            save(data_dir, results)
        if args.dpo:
            results["dpo"] = dpo(base, args)
            print(f"dpo: {results['dpo']}", flush=True)
            save(data_dir, results)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    if args.psft:
        results["retention"] = {"base": alpaca_loss(data_dir, None, args.alpaca_records)}
        for method in ("sft", "psft"):
            results["retention"][method] = alpaca_loss(data_dir, Path(results[method]["adapter_path"]),
                                                       args.alpaca_records)  # fmt: skip
    if args.pt_then_sft:
        adapters = {"base": None, "sft": results["sft"]["adapter_path"], "pt": results["pt"]["adapter_path"],
                    "pt_sft": results["pt_sft"]["adapter_path"]}  # fmt: skip
        results["perplexity"] = {
            name: heldout_perplexity(data_dir, None if path is None else Path(path), split["eval"])
            for name, path in adapters.items()
        }
    save(data_dir, results)
    report(results, args, data_dir)


def short(scores: dict[str, Any]) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in scores.items() if isinstance(v, float))


def save(data_dir: Path, results: dict[str, Any]) -> None:
    """Written after every phase, so a long run cut short still leaves its figures."""
    (data_dir / "bench-learning.json").write_text(json.dumps(results, indent=2, default=str))


def report(results: dict[str, Any], args: argparse.Namespace, data_dir: Path) -> None:
    print("\nmodel: SmolLM2-135M-Instruct (default), everything through REST; machine shared, timings noisy")
    counts = {k: len(v) for k, v in results["articles"].items()}
    print(
        f"articles: {counts['train']} trained on ({results['train_questions']} questions), {counts['eval']} evaluated "
        f"(uploaded, never trained on), {counts['absent']} not uploaded; the jobs' only option: max_minutes "
        f"{args.max_minutes}{' ' + str(extra_options(args)) if args.set else ''}; bf16 autocast "
        f"{'off' if args.no_bf16 else 'auto'}"
    )
    rows = [("base", results["base"], results["base_abstention"])]
    if "peer" in results:
        rows.append(("peer", results["peer"], None))
    labels = {"sft": "sft", "psft": "psft", "documents": "docs", "pt_sft": "pt+sft"}
    rows += [(label, results[key]["scores"], results[key]["abstention"]) for key, label in labels.items()
             if key in results]  # fmt: skip
    print(f"{'model':7} {'EM':>6} {'F1':>6} {'contains':>9} {'cite acc':>9} {'abstain':>8} {'p50 s':>7} {'p90 s':>7}")
    for name, s, a in rows:
        abstain = f"{a['abstention_rate']:8.3f}" if a else f"{'-':>8}"
        print(f"{name:7} {s['em']:6.3f} {s['f1']:6.3f} {s['contains']:9.3f} {s['cites']:9.3f} "
              f"{abstain} {s['latency_p50']:7.2f} {s['latency_p90']:7.2f}")  # fmt: skip
    base_f1 = max(results["base"]["f1"], 1e-9)
    if "peer" in results:
        ok = results["base"]["f1"] >= results["peer"]["f1"]
        print(f"base F1 {results['base']['f1']:.3f} vs naive peer {results['peer']['f1']:.3f}: "
              f"{'at or above' if ok else 'BELOW'} the peer")  # fmt: skip
    for key in ("sft", "psft", "documents", "pt_sft"):
        if key not in results:
            continue
        r = results[key]
        m = r["job_metrics"]
        gate = r["gate"] or {}
        ratio = r["scores"]["f1"] / base_f1
        print(f"{labels[key]}: job wall {r['job_s'] / 60:.1f} min (training run {m.get('wall_s', 0) / 60:.1f} min, "
              f"{m.get('global_step')} steps, {m.get('train_examples')} examples, {m.get('tokens_per_s')} tokens/s, "
              f"peak RSS {m.get('peak_rss_mb')} MB), F1 x{ratio:.2f} the base's; "
              f"gate passed={gate.get('passed')}")  # fmt: skip
        seen = " -> ".join(f"{p['phase']}@{p['at_s']:.0f}s" for p in r.get("phases_seen") or [])
        print(f"      phases seen: {seen}")
        print(f"      budget: {m.get('budget')}")
        if key == "sft":
            goal = (r["scores"]["f1"] >= 0.45 and ratio >= 4 and r["job_s"] <= 960
                    and r["scores"]["latency_p50"] <= 3)  # fmt: skip
            print(f"      goal (F1 >= 0.45, >= 4x base, job <= 16 min, p50 <= 3 s): {'met' if goal else 'NOT met'}")
        if key == "documents":
            print_generation(m["data"]["generation"])
            goal = ratio >= 2.5 and r["job_s"] <= 960
            print(f"      goal (F1 >= 2.5x base, job <= 16 min): {'met' if goal else 'NOT met'}")
    if "perplexity" in results:
        ppl = results["perplexity"]
        pt = results["pt"]["job_metrics"]
        print(f"pt: job wall {results['pt']['job_s'] / 60:.1f} min, {pt.get('global_step')} steps; its own held-out "
              f"perplexity {pt.get('perplexity')}")  # fmt: skip
        print("held-out perplexity on the evaluation articles' paragraphs (never trained on): "
              + ", ".join(f"{name} {value:.2f}" for name, value in ppl.items()))  # fmt: skip
    if "retention" in results:
        for name, v in results["retention"].items():
            print(f"alpaca retention {name:5}: loss {v['loss']:.4f} entropy {v['entropy']:.4f}")
    if "dpo" in results:
        d = results["dpo"]
        gate = d["gate"] or {}
        before = (gate.get("baseline_metrics") or {}).get("pairs", {})
        after = (gate.get("candidate") or {}).get("pairs", {})
        m = d["job_metrics"]
        print(f"dpo: held-out pairs {before.get('pairs')}; job wall {d['job_s'] / 60:.1f} min, "
              f"{m.get('global_step')} steps, {m.get('train_examples')} pairs, {m.get('tokens_per_s')} tokens/s, "
              f"peak RSS {m.get('peak_rss_mb')} MB")  # fmt: skip
        for key, label in (("reward_accuracy", "reward accuracy (log p/p_base)"),
                           ("accuracy", "likelihood accuracy (log p)"), ("margin", "mean log p margin")):  # fmt: skip
            was, now = before.get(key, float("nan")), after.get(key, float("nan"))
            print(f"      {label:31} base {was:8.3f} -> adapter {now:8.3f}")
        gain = after.get("reward_accuracy", 0.0) - before.get("reward_accuracy", 0.0)
        print(
            f"      goal (held-out preference accuracy +10 points): {'met' if gain >= 0.1 else 'NOT met'} "
            f"({100 * gain:+.1f} points; gate passed={gate.get('passed')})"
        )
    print(f"full results: {data_dir / 'bench-learning.json'}")


if __name__ == "__main__":
    main()
