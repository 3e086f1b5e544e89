"""The command-line flags of a training run, shared by `assistant train ...` and `python -m training.run`.

Contract: `FLAGS` maps each shortcut flag to the config field it sets, its type and its help text;
`options_from_flags(values)` turns parsed flag values (None = not given) plus `--set KEY=VALUE` pairs into the
`TrainingRequest.options` dict (config field -> value). Any config field of the method can be set with `--set`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from training.config import TrainingConfigError


@dataclass(frozen=True)
class Flag:
    name: str
    field: str
    type: type
    help: str


FLAGS: tuple[Flag, ...] = (
    Flag("epochs", "num_train_epochs", float, "Training epochs (default 1)."),
    Flag("lr", "learning_rate", float, "Peak learning rate (default 2e-4)."),
    Flag("max_steps", "max_steps", int, "Stop after this many optimizer steps (overrides --epochs)."),
    Flag("batch_size", "per_device_train_batch_size", int, "Examples per device per step (default 4)."),
    Flag("grad_accum", "gradient_accumulation_steps", int, "Gradient accumulation steps (default 1)."),
    Flag("max_length", "max_length", int, "Longest sequence in tokens; longer examples are dropped (default 1024)."),
    Flag("eval_split", "eval_split", float, "Share of examples held out for validation, in (0, 1) (default 0.1)."),
    Flag("eval_steps", "eval_steps", int, "Evaluate every N steps (default 50)."),
    Flag("save_steps", "save_steps", int, "Checkpoint every N steps (default 50)."),
    Flag("seed", "seed", int, "Random seed for the split, shuffling and LoRA init (default 42)."),
    Flag("lora_r", "lora_r", int, "LoRA rank (default 16)."),
    Flag("lora_alpha", "lora_alpha", float, "LoRA alpha (default 32)."),
    Flag("lora_dropout", "lora_dropout", float, "LoRA dropout (default 0.05)."),
    Flag("beta", "beta", float, "DPO/KTO/GRPO: KL strength beta (default 0.1; GRPO 0)."),
    Flag("eps_low", "eps_low", float, "PSFT only: lower clip epsilon (default 0.2)."),
    Flag("eps_high", "eps_high", float, "PSFT only: upper clip epsilon (default 0.28)."),
    Flag("refresh_steps", "psft_refresh_steps", int, "PSFT only: steps between old-policy snapshots (default 8)."),
)
PSFT_ONLY = {"eps_low", "eps_high", "psft_refresh_steps"}
DPO_ONLY = {"beta"}
BETA_METHODS = ("dpo", "kto", "grpo")  # issue 11: KTO and GRPO have a KL beta too
TOOLBOX_FLAGS: tuple[Flag, ...] = (  # issue 11 (given with `--set` on `python -m training.run`)
    Flag("relevance_threshold", "relevance_threshold", float, "Keep examples with cosine >= this to the documents."),
    Flag("relevance_top", "relevance_top_fraction", float, "Keep this top share of examples by document relevance."),
    Flag("diversity_target", "diversity_target", int, "Keep at most this many examples, chosen for diversity."),
    Flag("diversity_method", "diversity_method", str, "Diversity sampling: kcenter (default) or clusters."),
    Flag("desirable_weight", "desirable_weight", float, "KTO: weight of thumbs-up examples (default: balanced)."),
    Flag("undesirable_weight", "undesirable_weight", float, "KTO: weight of thumbs-down examples (default: balanced)."),
    Flag("reward_model", "reward_model", str, "GRPO: registered reward model (name[:vN]) scoring sampled answers."),
    Flag("num_generations", "num_generations", int, "GRPO: answers sampled per prompt (default 4)."),
    Flag("max_completion_length", "max_completion_length", int, "GRPO: longest sampled answer (default 64)."),
    Flag("target_length", "target_length", int, "GRPO 'length' rule: best answer length in tokens (default 64)."),
    Flag("trial_method", "sweep_method", str, "Sweep: method of each trial, sft (default) or classify."),
)


def parse_set(pairs: Iterable[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; values are parsed as YAML scalars/lists (`3`, `1e-4`, `true`, `[q_proj, v_proj]`)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise TrainingConfigError("set", f"expects KEY=VALUE, got {pair!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def options_from_flags(
    method: str,
    values: dict[str, Any],
    set_pairs: Iterable[str] = (),
    target_modules: str | None = None,
    load_in_4bit: bool = False,
) -> dict[str, Any]:
    """Config field values from the flags actually given; method-specific flags are refused on other methods."""
    options: dict[str, Any] = {}
    for flag in (*FLAGS, *TOOLBOX_FLAGS):
        value = values.get(flag.name)
        if value is None:
            continue
        if (flag.field in PSFT_ONLY and method != "psft") or (flag.field in DPO_ONLY and method not in BETA_METHODS):
            raise TrainingConfigError(flag.name, f"does not apply to `train {method}`")
        options[flag.field] = flag.type(value)
    if target_modules:
        options["lora_target_modules"] = [m.strip() for m in target_modules.split(",") if m.strip()]
    if load_in_4bit:
        options["load_in_4bit"] = True
    options.update(parse_set(set_pairs))
    return options
