"""Toolbox benchmark on the default model (SmolLM2-135M-Instruct), CPU-sized: each method against its baseline.

Parts (all in one run unless `--parts` picks some), every figure next to its baseline and with its run time:
  kto       KTO on thumbs made from the shared sharegpt pairs (chosen = up, rejected = down) vs the base model:
            held-out preference accuracy (log p(chosen) > log p(rejected)) on pairs never trained on.
  reward    reward model (LoRA + score head) on the same training pairs: held-out pair accuracy, untrained head vs
            trained.
  classify  AG News (4 topics) as classification SFT: accuracy and macro-F1 (label-constrained argmax) before/after.
  sweep     a 2 x 1 grid over the learning rate on alpaca SFT: the results table (validation loss per trial).
  select    selection reports on the shared alpaca file: dedup/quality only, + relevance to an index of SQuAD
            paragraphs (top half), + diversity (k-center and cluster-balanced to 300).
  grpo      a short GRPO run with the reward model from `reward` (+ the length rule) on alpaca prompts: mean reward of
            sampled answers on held-out prompts before and after.

    .venv/bin/python bench/bench_toolbox.py [--parts kto reward ...] [--data-dir data] [--out bench/out/toolbox]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
PARTS = ("kto", "reward", "classify", "sweep", "select", "grpo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), help=f"Parts to run ({','.join(PARTS)}).")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data", help="Platform data dir (model, registry).")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "toolbox", help="Run dirs and results.")
    parser.add_argument("--pairs", type=int, default=300, help="sharegpt pairs used (split by prompt, seeded).")
    parser.add_argument("--heldout", type=int, default=40, help="Held-out pairs (whole prompts, never trained on).")
    parser.add_argument("--steps", type=int, default=30, help="Optimizer steps of the KTO and reward runs.")
    parser.add_argument("--batch-size", type=int, default=4, help="Per-device batch size of every run.")
    parser.add_argument("--max-length", type=int, default=384, help="Longest prompt + answer in tokens.")
    parser.add_argument(
        "--eval-max-length",
        type=int,
        default=1024,
        help="Longest held-out pair scored (KTO, reward): most sharegpt pairs exceed the training length.",
    )
    parser.add_argument("--agnews-train", type=int, default=240, help="AG News rows used for training.")
    parser.add_argument("--agnews-eval", type=int, default=100, help="AG News rows held out for accuracy/F1.")
    parser.add_argument("--classify-steps", type=int, default=60, help="Optimizer steps of the classification SFT.")
    parser.add_argument("--grpo-steps", type=int, default=8, help="GRPO optimizer steps.")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="Wall-clock budget of each training run (the run stops after the step that crosses it).",
    )
    parser.add_argument("--report", type=Path, default=None, help="Also write the results as a Markdown report.")
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace) -> Any:
    from assistant.settings import Settings

    return Settings(data_dir=args.data_dir)


def options(args: argparse.Namespace, steps: int, **extra: Any) -> dict[str, Any]:
    return {"max_steps": steps, "logging_steps": max(1, steps // 4), "eval_steps": 10**6, "save_steps": 10**6,
            "seed": 0, "dataloader_num_workers": 0, "max_length": args.max_length,
            "per_device_train_batch_size": args.batch_size,
            "learning_rate": 2e-4, **({"max_minutes": args.max_minutes} if args.max_minutes else {}),
            **extra}  # fmt: skip


def sizes(args: argparse.Namespace, steps: int, **extra: Any) -> dict[str, Any]:
    return {"steps": steps, "batch_size": args.batch_size, "max_length": args.max_length, **extra}


def data_counts(outcome: Any) -> dict[str, Any]:
    """Train/validation examples after selection (too long, duplicates and so on dropped), from the run's metrics."""
    m = outcome.metrics
    budget = m.get("budget") or {}
    return {"train_examples": m.get("train_examples"), "validation_examples": m.get("validation_examples"),
            "steps_done": m.get("global_step"), "stopped_by_budget": budget.get("stopped", False)}  # fmt: skip


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def sharegpt_split(args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """Split by prompt (seeded): every pair of a held-out prompt is held out, so no held-out prompt is trained on."""
    records = json.loads((SHARED / "dpo-sharegpt-300.json").read_text())[: args.pairs]
    groups: dict[str, list[Any]] = {}
    for record in records:
        groups.setdefault(json.dumps(record["conversations"], sort_keys=True), []).append(record)
    keys = sorted(groups)
    random.Random(0).shuffle(keys)
    train: list[Any] = []
    held: list[Any] = []
    for key in keys:
        (held if len(held) < args.heldout else train).extend(groups[key])
    return train, held


def heldout_pairs(tokenizer: Any, records: list[Any], max_length: int) -> list[Any]:
    from training.data.dataset_formats import parse_preference_record
    from training.data.render import preference_length, render_preference
    from training.gate import HeldOutPair

    pairs = []
    for i, record in enumerate(records):
        example = parse_preference_record(record, f"heldout#{i}")
        if preference_length(tokenizer, example) <= max_length:
            rendered = render_preference(tokenizer, example)
            pairs.append(HeldOutPair(rendered["prompt"], rendered["chosen"], rendered["rejected"]))
    return pairs


def part_kto(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from assistant.model_files import resolve_lm
    from training.gate import pair_scores
    from training.modeling import load_tokenizer
    from training.runs import TrainingRequest, run_training

    train, held = sharegpt_split(args)
    thumbs = write_jsonl(args.out / "kto-thumbs.jsonl", train)  # pairs unpaired by the KTO reader: up + down each
    started = time.time()
    outcome = run_training(settings, TrainingRequest("kto", [thumbs], name="bench-kto", output_dir=args.out / "kto",
                                                     options=options(args, args.steps, eval_split=0.1)))  # fmt: skip
    train_s = time.time() - started
    base_dir = resolve_lm(settings)
    tokenizer = load_tokenizer(base_dir)
    pairs = heldout_pairs(tokenizer, held, args.eval_max_length)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    before = pair_scores(base, tokenizer, pairs)
    assert outcome.adapter is not None
    after = pair_scores(PeftModel.from_pretrained(base, str(outcome.adapter.path)).eval(), tokenizer, pairs)
    return {"sizes": sizes(args, args.steps, train_pairs=len(train), thumbs=2 * len(train), heldout_pairs=len(held),
                           **data_counts(outcome)),
            "heldout_pairs": len(pairs), "base": before, "kto": after, "train_s": round(train_s, 1),
            "weights": outcome.metrics.get("kto_weights"), "total_s": round(time.time() - started, 1)}  # fmt: skip


def part_reward(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    from assistant.model_files import resolve_lm
    from training.modeling import load_tokenizer
    from training.reward import RewardScorer, load_reward_base, pair_accuracy
    from training.runs import TrainingRequest, run_training

    train, held = sharegpt_split(args)
    data = write_jsonl(args.out / "reward-pairs.jsonl", train)
    started = time.time()
    outcome = run_training(settings, TrainingRequest("reward", [data], name="bench-rm", output_dir=args.out / "rm",
                                                     options=options(args, args.steps, eval_split=0.1)))  # fmt: skip
    train_s = time.time() - started
    base_dir = resolve_lm(settings)
    tokenizer = load_tokenizer(base_dir)
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}
            for p in heldout_pairs(tokenizer, held, args.eval_max_length)]  # fmt: skip
    untrained = pair_accuracy(load_reward_base(base_dir, tokenizer.pad_token_id, 0), tokenizer, rows)
    assert outcome.adapter is not None
    trained = pair_accuracy(RewardScorer(base_dir, outcome.adapter.path).model, tokenizer, rows)
    return {"sizes": sizes(args, args.steps, train_pairs=len(train), heldout_pairs=len(held), **data_counts(outcome)),
            "heldout_pairs": len(rows), "untrained_head": untrained, "reward_model": trained,
            "adapter": f"{outcome.adapter.name}:v{outcome.adapter.version}", "train_s": round(train_s, 1),
            "total_s": round(time.time() - started, 1)}  # fmt: skip


def part_classify(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    import csv

    from training.runs import TrainingRequest, run_training

    rows = list(csv.DictReader((SHARED / "agnews-topics-627.csv").read_text().splitlines()))
    random.Random(0).shuffle(rows)
    rows = rows[: args.agnews_train + args.agnews_eval]
    data = write_jsonl(args.out / "agnews.jsonl", [{"text": r["text"], "label": r["label"]} for r in rows])
    split = args.agnews_eval / len(rows)
    started = time.time()
    outcome = run_training(settings, TrainingRequest("classify", [data], name="bench-agnews",
                                                     output_dir=args.out / "classify",
                                                     options=options(args, args.classify_steps, eval_split=split,
                                                                     learning_rate=5e-4)))  # fmt: skip
    before, after = outcome.metrics["before"], outcome.metrics["after"]
    keep = ("accuracy", "macro_f1", "examples", "loss")
    return {"sizes": sizes(args, args.classify_steps, rows=len(rows), learning_rate=5e-4, **data_counts(outcome)),
            "before": {k: before[k] for k in keep}, "after": {k: after[k] for k in keep},
            "per_label_f1_before": {k: v["f1"] for k, v in before["per_label"].items()},
            "per_label_f1_after": {k: v["f1"] for k, v in after["per_label"].items()},
            "total_s": round(time.time() - started, 1)}  # fmt: skip


def part_sweep(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    from training.runs import TrainingRequest, run_training

    records = json.loads((SHARED / "sft-alpaca-999.json").read_text())[:80]
    data = write_jsonl(args.out / "alpaca-80.jsonl", records)
    started = time.time()
    opts = options(args, 6, eval_split=0.2, sweep_learning_rates=[5e-5, 5e-4])
    outcome = run_training(settings, TrainingRequest("sweep", [data], name="bench-sweep", output_dir=args.out / "sweep",
                                                     options=opts))  # fmt: skip
    table = (outcome.run_dir / "sweep.md").read_text()
    return {
        "sizes": sizes(args, 6, alpaca_records=len(records), grid="learning_rate 5e-5, 5e-4"),
        "table": table,
        "best": outcome.metrics["best_hyperparameters"],
        "total_s": round(time.time() - started, 1),
    }


def part_select(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    import numpy as np

    from assistant.embedding import make_embedder
    from assistant.index.faiss_index import open_index
    from assistant.model_files import resolve_lm
    from training.config import build_run_config
    from training.data.dataset_formats import load_sft_examples
    from training.data.relevance import refine_selection
    from training.data.render import tokenize_chat
    from training.data.selection import SelectionOptions, select_examples
    from training.modeling import load_tokenizer

    started = time.time()
    squad = json.loads((SHARED / "squad-v1.1-dev-part1.json").read_text())
    paragraphs = [p["context"] for article in squad["data"] for p in article["paragraphs"]][:300]
    index_settings = settings.model_copy(update={"data_dir": args.out / "select-data"})
    embedder = make_embedder(index_settings)
    index = open_index(index_settings.index_dir, embedder.dim, 10**9)
    if len(index) == 0:
        index.add(embedder.embed(paragraphs), np.arange(len(paragraphs)))
        index.save()
    tokenizer = load_tokenizer(resolve_lm(settings))
    examples = load_sft_examples([SHARED / "sft-alpaca-999.json"])
    lengths = [len(tokenize_chat(tokenizer, e)["input_ids"]) for e in examples]
    reports = {}
    from assistant.parts import Parts

    parts = Parts(index_settings, embedder=embedder)  # the bench's one: selection embeds with the same model
    variants = {"dedup_quality_only": {}, "relevance_top_half": {"relevance_top_fraction": 0.5},
                "diversity_kcenter_300": {"diversity_target": 300},
                "diversity_clusters_300": {"diversity_target": 300, "diversity_method": "clusters"}}  # fmt: skip
    for name, extra in variants.items():
        t0 = time.time()
        config = build_run_config("sft", args.out / "select", {"eval_split": 0.05, **extra})
        selection = select_examples(examples, lengths, SelectionOptions(max_tokens=1024, eval_split=0.05))
        selection = refine_selection(selection, config, parts)
        report = selection.report
        reports[name] = {
            "total": report.total,
            "kept": report.kept,
            "train": report.train,
            "dropped": dict(report.dropped),
            "details": report.details,
            "s": round(time.time() - t0, 1),
        }
    reports["total_s"] = round(time.time() - started, 1)  # type: ignore[assignment]
    return reports


def part_grpo(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    from assistant.parts import Parts
    from training.registry import AdapterRegistry
    from training.runs import TrainingRequest, run_training

    try:
        AdapterRegistry.of(Parts(settings)).resolve("bench-rm")
        reward = {"reward_model": "bench-rm"}
    except Exception:  # no reward model yet: the rule rewards alone
        reward = {}
    records = [r for r in json.loads((SHARED / "sft-alpaca-999.json").read_text()) if not r.get("input")][:40]
    data = write_jsonl(args.out / "grpo-prompts.jsonl", [{"prompt": r["instruction"]} for r in records])
    opts = options(
        args,
        args.grpo_steps,
        eval_split=0.2,
        rule_rewards=["length"],
        target_length=24,
        max_completion_length=32,
        num_generations=4,
        grpo_eval_prompts=4,
        learning_rate=1e-4,
        **reward,
    )
    opts.pop("max_length")
    started = time.time()
    outcome = run_training(settings, TrainingRequest("grpo", [data], name="bench-grpo", output_dir=args.out / "grpo",
                                                     options=opts))  # fmt: skip
    return {"sizes": sizes(args, args.grpo_steps, prompts=len(records), heldout_prompts=4, samples_per_prompt=4,
                           max_completion_length=32, learning_rate=1e-4, **data_counts(outcome)),
            "rewards": ["reward_model"] * bool(reward) + ["length"], "before": outcome.metrics["before"],
            "after": outcome.metrics["after"], "steps": outcome.metrics["global_step"],
            "total_s": round(time.time() - started, 1)}  # fmt: skip


def _f(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def report_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(part, metric, baseline, after, sizes) rows, one per figure."""
    rows = []
    if "kto" in results:
        r = results["kto"]
        for key in ("accuracy", "margin"):
            rows.append(("kto", f"held-out preference {key}", f"base {_f(r['base'][key])}", _f(r["kto"][key]), r))
    if "reward" in results:
        r = results["reward"]
        for key in ("accuracy", "margin"):
            rows.append(("reward", f"held-out pair {key}", f"untrained head {_f(r['untrained_head'][key])}",
                         _f(r["reward_model"][key]), r))  # fmt: skip
    if "grpo" in results:
        r = results["grpo"]
        for key in sorted(r["after"]):
            if key.startswith("reward") or key == "mean_reward":
                rows.append(("grpo", f"held-out {key}", f"before {_f(r['before'][key])}", _f(r["after"][key]), r))
    if "classify" in results:
        r = results["classify"]
        for key in ("accuracy", "macro_f1", "loss"):
            rows.append(("classify", f"AG News {key}", f"before {_f(r['before'][key])}", _f(r["after"][key]), r))
    if "sweep" in results:
        r = results["sweep"]
        rows.append(("sweep", "best trial (lowest validation loss)", "-", json.dumps(r["best"]), r))
    if "select" in results:
        r = results["select"]
        for name, v in r.items():
            if isinstance(v, dict):
                rows.append(("select", name, f"total {v['total']}", f"kept {v['kept']} dropped {v['dropped']}", v))
    return [(part, metric, base, after, _sizes(r)) for part, metric, base, after, r in rows]


def _sizes(r: dict[str, Any]) -> str:
    sizes = dict(r.get("sizes") or {})
    seconds = r.get("wall_s", r.get("total_s", r.get("s")))
    return ", ".join(f"{k}={v}" for k, v in sizes.items()) + (f"; {seconds} s" if seconds is not None else "")


def report(results: dict[str, Any]) -> str:
    lines = ["# Toolbox bench (SmolLM2-135M-Instruct, CPU)", "",
             "| part | figure | baseline | after | sizes; run time |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    lines += [f"| {' | '.join(row)} |" for row in report_rows(results)]
    if "sweep" in results:
        lines += ["", "## Sweep table", "", results["sweep"]["table"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.parts = [p for item in args.parts for p in item.split(",") if p]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown parts {unknown}; known: {','.join(PARTS)}")
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = settings_for(args)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for part in args.parts:
        started = time.time()
        results[part] = globals()[f"part_{part}"](args, settings)
        results[part]["wall_s"] = round(time.time() - started, 1)
        results_path.write_text(json.dumps(results, indent=2))
        print(f"== {part} ({results[part]['wall_s']} s)\n{json.dumps(results[part], indent=2)}", flush=True)
    print(report(results))
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        raw = json.dumps(results, indent=2)
        args.report.write_text(f"{report(results)}\n## Raw results\n\n```json\n{raw}\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
