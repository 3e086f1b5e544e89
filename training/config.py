"""Training configurations: TRL's `SFTConfig`/`DPOConfig` extended with LoRA, data-selection and PSFT fields.

Contract: `SFTRunConfig`, `PSFTRunConfig` and `DPORunConfig` are dataclasses (so `HfArgumentParser` and YAML recipes
work on them) whose `__post_init__` runs TRL's own checks and then the cross-field checks of this project; a bad
value raises `TrainingConfigError` naming the flag to change. `lora_target_modules(model_type, override)` picks the
LoRA target modules per architecture from `LORA_TARGETS` (keyed on `config.model_type`). `build_run_config(method,
output_dir, overrides)` builds the config of a method from a dict of field values, refusing unknown keys.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import DPOConfig, SFTConfig

from assistant.errors import UnprocessableError

_DENSE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_TARGETS: dict[str, list[str]] = {
    "llama": _DENSE,
    "qwen2": _DENSE,
    "qwen3": _DENSE,
    "mistral": _DENSE,
    "gemma": _DENSE,
    "gemma2": _DENSE,
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}
METHODS = ("sft", "dpo", "psft")


class TrainingConfigError(UnprocessableError):
    """A training option is invalid; `param` is the flag to change."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"--{flag.replace('_', '-')} {problem}", param=flag, code="invalid_training_config")


def lora_target_modules(model_type: str, override: list[str] | None = None) -> list[str]:
    """Target modules for an architecture; an explicit override wins."""
    if override:
        return list(override)
    if model_type not in LORA_TARGETS:
        raise TrainingConfigError(
            "lora_target_modules", f"must be given for model type '{model_type}' (known: {sorted(LORA_TARGETS)})"
        )
    return list(LORA_TARGETS[model_type])


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class RunFields:
    """Fields shared by every method: LoRA, quantization and data selection."""

    lora_r: int = field(default=16, metadata=_help("LoRA rank."))
    lora_alpha: float = field(default=32.0, metadata=_help("LoRA scaling numerator (scale = alpha / r)."))
    lora_dropout: float = field(default=0.05, metadata=_help("Dropout on the LoRA input, in [0, 1)."))
    lora_target_modules: list[str] | None = field(
        default=None, metadata=_help("Modules to adapt; default from the per-architecture table.")
    )
    load_in_4bit: bool = field(default=False, metadata=_help("QLoRA: 4-bit base (needs bitsandbytes and CUDA)."))
    eval_split: float = field(default=0.1, metadata=_help("Share of the kept examples held out for validation."))
    min_tokens: int = field(default=4, metadata=_help("Examples with fewer tokens are dropped."))
    near_duplicate_threshold: float = field(default=0.9, metadata=_help("MinHash Jaccard for near duplicates."))
    rag_distractors: int = field(default=3, metadata=_help("Distractor passages per RAG (SQuAD) example."))
    squad_limit: int | None = field(default=None, metadata=_help("Use at most this many SQuAD questions."))
    gold_probability: float = field(
        default=0.8,
        metadata=_help(
            "RAG examples over a collection: share of questions trained with the gold passage among the served "
            "sources; the others get only the other sources and learn the abstention answer."
        ),
    )
    max_minutes: float | None = field(
        default=None,
        metadata=_help(
            "Wall-clock budget of a run in minutes (from data preparation on): training stops cleanly at the first "
            "step end past it, evaluates that state, and the best checkpoint by validation loss is kept and registered."
        ),
    )

    def check_run_fields(self) -> None:
        checks = [
            ("lora_r", self.lora_r >= 1, "must be >= 1"),
            ("lora_alpha", self.lora_alpha > 0, "must be > 0"),
            ("lora_dropout", 0 <= self.lora_dropout < 1, "must be in [0, 1)"),
            ("eval_split", 0 < self.eval_split < 1, "must be in (0, 1)"),
            ("min_tokens", self.min_tokens >= 1, "must be >= 1"),
            ("near_duplicate_threshold", 0 < self.near_duplicate_threshold <= 1, "must be in (0, 1]"),
            ("rag_distractors", self.rag_distractors >= 0, "must be >= 0"),
            ("gold_probability", 0 <= self.gold_probability <= 1, "must be in [0, 1]"),
            ("max_minutes", self.max_minutes is None or self.max_minutes > 0, "must be > 0"),
        ]
        for flag, ok, problem in checks:
            if not ok:
                raise TrainingConfigError(flag, f"{problem} (got {getattr(self, flag)!r})")
        max_length = getattr(self, "max_length", None)
        if max_length is not None and max_length <= self.min_tokens:
            raise TrainingConfigError("max_length", f"must be larger than --min-tokens ({self.min_tokens})")


@dataclass
class SFTRunConfig(RunFields, SFTConfig):
    """Supervised fine-tuning with LoRA; loss on the assistant tokens only."""

    def __post_init__(self) -> None:
        SFTConfig.__post_init__(self)
        self.check_run_fields()


@dataclass
class PSFTRunConfig(SFTRunConfig):
    """Proximal SFT: the clipped-ratio objective against a periodically refreshed snapshot of the LoRA weights."""

    eps_low: float = field(
        default=0.2,
        metadata=_help(
            "Lower clip bound 1 - eps_low. With SFT's positive advantage it never changes the loss or the gradient "
            "(min(r, clip(r, 1 - eps_low, 1 + eps_high)) = r when r < 1 - eps_low); only the share of tokens below "
            "it is logged (psft/below_low_fraction)."
        ),
    )
    eps_high: float = field(
        default=0.28, metadata=_help("Upper clip: tokens with ratio > 1 + eps_high get no gradient.")
    )
    psft_refresh_steps: int = field(default=8, metadata=_help("Optimizer steps between old-policy snapshots."))
    disable_dropout: bool = field(
        default=True,
        metadata=_help(
            "Set every dropout (LoRA's included) to 0 while training, as TRL's DPO/GRPO do, so the ratio is exactly 1 "
            "right after a snapshot refresh."
        ),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.eps_low < 1:
            raise TrainingConfigError("eps_low", f"must be in (0, 1) (got {self.eps_low})")
        if not (self.eps_high > 0 and math.isfinite(self.eps_high)):
            raise TrainingConfigError("eps_high", f"must be a positive number (got {self.eps_high})")
        if self.psft_refresh_steps < 1:
            raise TrainingConfigError("psft_refresh_steps", f"must be >= 1 (got {self.psft_refresh_steps})")


@dataclass
class DPORunConfig(RunFields, DPOConfig):
    """DPO with LoRA; the reference is the frozen base (adapter disabled), no second model copy."""

    def __post_init__(self) -> None:
        DPOConfig.__post_init__(self)
        self.check_run_fields()
        if self.beta <= 0:
            raise TrainingConfigError("beta", f"must be > 0 (got {self.beta})")


CONFIG_CLASSES: dict[str, type[SFTRunConfig] | type[DPORunConfig]] = {
    "sft": SFTRunConfig,
    "psft": PSFTRunConfig,
    "dpo": DPORunConfig,
}

# Defaults of this project that differ from TRL's (small-data LoRA runs with evaluation and checkpoints).
PROJECT_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-4,
    "num_train_epochs": 1.0,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 4,
    "logging_steps": 5,
    "eval_strategy": "steps",
    "eval_steps": 50,
    "save_strategy": "steps",
    "save_steps": 50,
    "save_total_limit": 2,
    "report_to": "none",
    "max_length": 1024,
    "dataset_num_proc": None,
    "seed": 42,
    "gradient_checkpointing": False,
}


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def config_fields(method: str) -> set[str]:
    return {f.name for f in dataclasses.fields(CONFIG_CLASSES[method])}


def build_run_config(method: str, output_dir: Path, overrides: dict[str, Any] | None = None) -> Any:
    """The method's config with project defaults, then `overrides` (unknown keys are refused by name)."""
    if method not in CONFIG_CLASSES:
        raise TrainingConfigError("method", f"must be one of {METHODS} (got {method!r})")
    values = {**PROJECT_DEFAULTS, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    unknown = sorted(set(values) - config_fields(method))
    if unknown:
        raise TrainingConfigError(unknown[0], f"is not an option of `train {method}`")
    if not _cuda_available():
        values.setdefault("bf16", False)  # TRL defaults to bf16, which a CPU run refuses
        values.setdefault("dataloader_pin_memory", False)
    try:
        return CONFIG_CLASSES[method](output_dir=str(output_dir), **values)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, TrainingConfigError):
            raise
        raise TrainingConfigError("config", f"is invalid: {exc}") from exc
