"""Training benchmark on the default model (SmolLM2-135M-Instruct): does SFT/DPO help, and at what cost.

In one run, each phase in its own subprocess (so peak memory is per phase):
  1. `sft`   : LoRA SFT through `training.runs.run_training` on SQuAD-derived RAG examples (question + gold paragraph
               + distractors, rendered with the server's prompt); validation perplexity on the held-out split before
               and after (it must fall).
  1b. `sft_before`, `sft_today`: the same run with former job configurations, float32 and every position scored
               as then (before: padding-free, top-8-layer LoRA; today: the issue's job, padded, LoRA on every
               layer, so `sft` vs `sft_today` isolates bf16 and the answer-only logits): tokens/s, peak memory and
               validation loss side by side with the defaults.
  2. `plain` : a plain TRL `SFTTrainer` with default settings (full fine-tuning, loss on all tokens) on the same
               examples for the same number of steps, for tokens/s and peak memory side by side.
  3. `dpo`   : LoRA DPO on the sharegpt preference pairs; held-out reward accuracy and margin after training.
Defaults are sized for a 2-core CPU (a few minutes); scale up on a GPU with the flags, e.g.
    .venv/bin/python bench/bench_train.py --sft-steps 300 --squad-limit 4000 --distractors 3 --max-length 1024 ...

    .venv/bin/python bench/bench_train.py [--data-dir data] [--out bench/out/train]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


PHASE_NAMES = ("sft", "sft_before", "sft_today", "plain", "dpo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data", help="Platform data dir (model, registry).")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "train", help="Run directories here.")
    parser.add_argument("--phase", choices=list(PHASE_NAMES), help="Run one phase only (internal).")
    parser.add_argument("--phases", default=",".join(PHASE_NAMES), help="Phases to run, comma-separated.")
    parser.add_argument("--squad-limit", type=int, default=300, help="SQuAD questions to draw.")
    parser.add_argument("--distractors", type=int, default=1, help="Distractor passages per RAG example.")
    parser.add_argument("--max-length", type=int, default=384, help="Longest SFT sequence in tokens.")
    parser.add_argument("--sft-steps", type=int, default=12, help="LoRA SFT optimizer steps.")
    parser.add_argument("--plain-steps", type=int, default=2, help="Plain TRL SFT steps (throughput only).")
    parser.add_argument("--batch-size", type=int, default=2, help="SFT batch size.")
    parser.add_argument("--eval-examples", type=int, default=20, help="Held-out SFT examples (approximate).")
    parser.add_argument("--dpo-steps", type=int, default=16, help="DPO optimizer steps.")
    parser.add_argument("--dpo-max-length", type=int, default=384, help="Longest DPO prompt + completion.")
    parser.add_argument("--dpo-batch-size", type=int, default=2, help="DPO pairs per step.")
    parser.add_argument("--dpo-lr", type=float, default=2e-4, help="DPO learning rate.")
    parser.add_argument("--sft-lr", type=float, default=5e-4, help="SFT learning rate.")
    return parser.parse_args(argv)


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def settings_for(args: argparse.Namespace) -> Any:
    from assistant.settings import Settings

    return Settings(data_dir=args.data_dir)


def common_options(args: argparse.Namespace, steps: int) -> dict[str, Any]:
    return {
        "max_steps": steps,
        "logging_steps": max(1, steps // 5),
        "eval_steps": 10**6,
        "save_steps": 10**6,
        "seed": 0,
        "dataloader_num_workers": 0,
    }


def tokens_per_second(log_history: list[dict[str, Any]]) -> tuple[float, float]:
    tokens = max((e.get("num_tokens", 0) for e in log_history), default=0)
    runtime = next((e["train_runtime"] for e in log_history if "train_runtime" in e), float("nan"))
    return float(tokens), tokens / runtime


# Former job configurations, each run as it ran then: float32 and TRL scoring every position on CPU.
# "today": the original job (padded batches, LoRA on every decoder layer: today's defaults but for bf16 and
# the answer-only logits, so `sft` vs `sft_today` isolates those two);
# "before": the defaults until then (padding-free, LoRA on the top 8 layers only).
FORMER = {
    "sft_today": {"padding_free": False, "lora_layers": 10**3, "bf16": False},
    "sft_before": {"padding_free": True, "bf16": False, "lora_layers": 8},
}


def phase_former(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The same LoRA SFT run with a former job configuration."""
    import training.trainers

    training.trainers.score_labelled_positions_only = lambda: False  # TRL's own CPU behaviour: every position
    return phase_sft(args, FORMER[name], name)


def phase_sft(args: argparse.Namespace, extra: dict[str, Any] | None = None, name: str = "sft") -> dict[str, Any]:
    """LoRA SFT with the project defaults (padded batches, LoRA on every layer, bf16 autocast where the CPU has it,
    loss logits at the answer positions only)."""
    from training.runs import TrainingRequest, run_training

    squad = SHARED / "squad-v1.1-dev-part1.json"
    eval_split = min(0.5, args.eval_examples / max(args.squad_limit * 0.6, 1))
    options = {
        **common_options(args, args.sft_steps),
        "squad_limit": args.squad_limit,
        "learning_rate": args.sft_lr,
        "rag_distractors": args.distractors,
        "max_length": args.max_length,
        "eval_split": eval_split,
        "per_device_train_batch_size": args.batch_size,
        "per_device_eval_batch_size": 4,
        **(extra or {}),
    }
    request = TrainingRequest("sft", [squad], name="bench-squad-sft", output_dir=args.out / name, options=options)
    outcome = run_training(settings_for(args), request)
    history = json.loads((args.out / name / "log_history.json").read_text())
    tokens, tps = tokens_per_second(history)
    return {
        "before": outcome.metrics["before"],
        "after": outcome.metrics["after"],
        "train_tokens": tokens,
        "tokens_per_s": tps,
        "train_runtime_s": outcome.metrics["train"]["train_runtime"],
        "examples": {
            "train": outcome.report.train,
            "validation": outcome.report.validation,
            "dropped": outcome.report.dropped,
        },
    }


def phase_plain(args: argparse.Namespace) -> dict[str, Any]:
    """TRL's SFTTrainer with its defaults (full fine-tuning, all-token loss) on the same rendered conversations."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from assistant.model_files import resolve_lm
    from training.data.rag import load_squad_examples
    from training.data.render import chat_messages

    squad = SHARED / "squad-v1.1-dev-part1.json"
    examples = load_squad_examples(squad, args.distractors, seed=0, limit=args.squad_limit)
    dataset = Dataset.from_list([{"messages": chat_messages(e)} for e in examples])
    config = SFTConfig(output_dir=str(args.out / "plain"), max_steps=args.plain_steps, report_to="none",
                       bf16=False if not _cuda() else None, logging_steps=max(1, args.plain_steps // 4),
                       save_strategy="no", dataloader_pin_memory=_cuda())  # fmt: skip
    trainer = SFTTrainer(model=str(resolve_lm(settings_for(args))), args=config, train_dataset=dataset)
    result = trainer.train()
    tokens, tps = tokens_per_second(trainer.state.log_history)
    return {
        "train_tokens": tokens,
        "tokens_per_s": tps,
        "train_runtime_s": result.metrics["train_runtime"],
        "batch_size": config.per_device_train_batch_size,
        "max_length": config.max_length,
    }


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _cpu_bf16() -> bool:
    from training.cpu_speed import cpu_bf16_supported

    return cpu_bf16_supported() and not _cuda()


def phase_dpo(args: argparse.Namespace) -> dict[str, Any]:
    from training.runs import TrainingRequest, run_training

    options = {
        **common_options(args, args.dpo_steps),
        "max_length": args.dpo_max_length,
        "eval_split": 0.2,
        "per_device_train_batch_size": args.dpo_batch_size,
        "per_device_eval_batch_size": 4,
        "learning_rate": args.dpo_lr,
    }
    request = TrainingRequest(
        "dpo", [SHARED / "dpo-sharegpt-300.json"], name="bench-dpo", output_dir=args.out / "dpo", options=options
    )
    outcome = run_training(settings_for(args), request)
    after = outcome.metrics["after"]
    return {
        "reward_accuracy": after.get("rewards/accuracies"),
        "reward_margin": after.get("rewards/margins"),
        "eval_loss": after.get("loss"),
        "train_runtime_s": outcome.metrics["train"]["train_runtime"],
        "examples": {"train": outcome.report.train, "validation": outcome.report.validation},
    }


PHASES = {
    "sft": phase_sft,
    "sft_before": lambda args: phase_former(args, "sft_before"),
    "sft_today": lambda args: phase_former(args, "sft_today"),
    "plain": phase_plain,
    "dpo": phase_dpo,
}


def run_phase(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    result = PHASES[args.phase](args)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["peak_memory_mb"] = round(peak_memory_mb(), 1)
    (args.out / f"{args.phase}.json").write_text(json.dumps(result, indent=2))


def main() -> None:
    args = parse_args()
    if args.phase:
        run_phase(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    from assistant.model_files import resolve_lm

    print(f"model: {resolve_lm(settings_for(args))}")
    results = {}
    for phase in args.phases.split(","):
        cmd = [sys.executable, __file__, "--phase", phase, *sys.argv[1:]]
        subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        results[phase] = json.loads((args.out / f"{phase}.json").read_text())
    report(results, args.out)


def report(results: dict[str, Any], out: Path) -> None:
    sft = results["sft"]
    print("\n== SFT (LoRA, SQuAD RAG, held-out split; project defaults) ==")
    print(f"examples: {sft['examples']}")
    print(
        f"validation perplexity: before {sft['before']['perplexity']:.3f} -> after {sft['after']['perplexity']:.3f}"
        f"  (loss {sft['before']['loss']:.4f} -> {sft['after']['loss']:.4f}; "
        f"entropy {sft['before']['entropy']:.3f} -> {sft['after']['entropy']:.3f})"
    )
    print("\n== throughput and memory (same data) ==")
    print(f"{'run':<52}{'tokens/s':>10}{'peak MB':>10}{'tokens':>10}{'wall s':>8}{'val loss':>10}")
    rows = [
        ("ours now: all-layer LoRA, padded, bf16*, answer logits", "sft"),
        ("ours before: top-8 LoRA, padding-free, fp32", "sft_before"),
        ("issue's job: all-layer LoRA, padded, fp32", "sft_today"),
    ]
    for label, key in rows:
        if key in results:
            r = results[key]
            print(f"{label:<52}{r['tokens_per_s']:>10.1f}{r['peak_memory_mb']:>10.0f}{r['train_tokens']:>10.0f}"
                  f"{r['train_runtime_s']:>8.0f}{r['after']['loss']:>10.4f}")  # fmt: skip
    for key in ("sft_before", "sft_today"):
        if key in results:
            ratio = sft["tokens_per_s"] / results[key]["tokens_per_s"]
            print(f"tokens/s now / {key}: {ratio:.2f}x (same examples, same steps)")
    print(f"* bf16 autocast on this CPU: {_cpu_bf16()} (AVX512-BF16 or AMX-BF16); float32 otherwise")
    if "plain" in results:
        plain = results["plain"]
        print(f"{'TRL SFTTrainer defaults (full FT)':<52}{plain['tokens_per_s']:>10.1f}"
              f"{plain['peak_memory_mb']:>10.0f}{plain['train_tokens']:>10.0f}")  # fmt: skip
    if "dpo" in results:
        dpo = results["dpo"]
        print("\n== DPO (LoRA, sharegpt pairs, held-out) ==")
        print(f"examples: {dpo['examples']}; reward accuracy {dpo['reward_accuracy']:.3f}, "
              f"margin {dpo['reward_margin']:.4f}")  # fmt: skip
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    print(f"\nsummary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
