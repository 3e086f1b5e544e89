"""Training configurations: TRL's `SFTConfig`/`DPOConfig` extended with LoRA, data-selection and PSFT fields.

Contract: `SFTRunConfig`, `PSFTRunConfig` and `DPORunConfig` are dataclasses (so `HfArgumentParser` and YAML recipes
work on them) whose `__post_init__` runs TRL's own checks and then the cross-field checks of this project; a bad
value raises `TrainingConfigError` naming the flag to change. `lora_target_modules(model_type, override)` picks the
LoRA target modules per architecture from `LORA_TARGETS` (keyed on `config.model_type`). `build_run_config(method,
output_dir, overrides)` builds the config of a method from a dict of field values, refusing unknown keys.
The config class of a method is its row's `config` in `training.methods.METHODS`
(`config_class(method)`). `config_field(method, name)` and `field_default(method, name)` give a field's help
(`metadata["help"]`, the one help text of the `train` options) and the value a run gets when nothing sets it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import DPOConfig, GRPOConfig, KTOConfig, RewardConfig, SFTConfig

from assistant.errors import UnprocessableError
from training.cpu_speed import cpu_bf16_supported
from training.methods import SWEEP_METHODS, config_class
from training.methods import method as method_row
from training.option_bounds import LORA_R_DEFAULT

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

    lora_r: int = field(
        default=LORA_R_DEFAULT,
        metadata=_help("LoRA rank (a served adapter's is bounded by the server's engine.max_lora_rank)."),
    )
    lora_alpha: float = field(default=32.0, metadata=_help("LoRA scaling numerator (scale = alpha / r)."))
    lora_dropout: float = field(default=0.05, metadata=_help("Dropout on the LoRA input, in [0, 1)."))
    lora_target_modules: list[str] | None = field(
        default=None, metadata=_help("Modules to adapt; default from the per-architecture table.")
    )
    lora_layers: int | None = field(
        default=None,
        metadata=_help(
            "Adapt only the top N decoder layers (PEFT layers_to_transform; None = every layer, the default). The "
            "backward pass then stops at the lowest adapted layer: a cheaper step that learns less per example."
        ),
    )
    load_in_4bit: bool = field(default=False, metadata=_help("QLoRA: 4-bit base (needs bitsandbytes and CUDA)."))
    eval_split: float = field(default=0.1, metadata=_help("Share of the kept examples held out for validation."))
    min_tokens: int = field(default=4, metadata=_help("Examples with fewer tokens are dropped."))
    near_duplicate_threshold: float = field(default=0.9, metadata=_help("MinHash Jaccard for near duplicates."))
    rag_distractors: int = field(default=3, metadata=_help("Distractor passages per RAG (SQuAD) example."))
    squad_limit: int | None = field(default=None, metadata=_help("Use at most this many SQuAD questions."))
    gold_probability: float = field(
        # measured (bench_learning, SmolLM2-135M, 15-min job): 0.8 taught over-abstention (answerable held-out
        # questions answered "I don't know", F1 0.079); 0.95 kept abstention on absent articles and doubled F1 (0.142)
        default=0.95,
        metadata=_help(
            "RAG examples over a collection: share of questions trained with the gold passage among the served "
            "sources; the others get only the other sources and learn the abstention answer."
        ),
    )
    train_source_window: int | None = field(
        default=None,
        metadata=_help(
            "RAG examples over a collection: cut each training source to this many sentences either side of the "
            "sentence holding the answer (or, in a source without it, of the sentence sharing most words with the "
            "question): shorter prompts, more examples per minute; None = the sources as served."
        ),
    )
    max_minutes: float | None = field(
        default=None,
        metadata=_help(
            "Wall-clock budget of a run in minutes (from data preparation on): training stops cleanly at the first "
            "step end past it, evaluates that state, and the best checkpoint by validation loss is kept and registered."
        ),
    )
    relevance_threshold: float | None = field(
        default=None, metadata=_help("Keep examples whose cosine similarity to the indexed documents is >= this.")
    )
    relevance_top_fraction: float | None = field(
        default=None, metadata=_help("Keep this top share of examples by similarity to the indexed documents.")
    )
    diversity_target: int | None = field(
        default=None, metadata=_help("Keep at most this many examples, chosen for diversity over embeddings.")
    )
    diversity_method: str = field(
        default="kcenter", metadata=_help("Diversity sampling: 'kcenter' (greedy k-center) or 'clusters' (k-means).")
    )

    def check_run_fields(self) -> None:
        checks = [
            ("lora_r", self.lora_r >= 1, "must be >= 1"),
            ("lora_alpha", self.lora_alpha > 0, "must be > 0"),
            ("lora_dropout", 0 <= self.lora_dropout < 1, "must be in [0, 1)"),
            ("lora_layers", self.lora_layers is None or self.lora_layers >= 1, "must be >= 1"),
            ("eval_split", 0 < self.eval_split < 1, "must be in (0, 1)"),
            ("min_tokens", self.min_tokens >= 1, "must be >= 1"),
            ("near_duplicate_threshold", 0 < self.near_duplicate_threshold <= 1, "must be in (0, 1]"),
            ("rag_distractors", self.rag_distractors >= 0, "must be >= 0"),
            ("gold_probability", 0 <= self.gold_probability <= 1, "must be in [0, 1]"),
            ("train_source_window", self.train_source_window is None or self.train_source_window >= 0, "must be >= 0"),
            ("max_minutes", self.max_minutes is None or self.max_minutes > 0, "must be > 0"),
        ]
        for flag, ok, problem in checks:
            if not ok:
                raise TrainingConfigError(flag, f"{problem} (got {getattr(self, flag)!r})")
        check_selection_fields(self)
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
    # LoRA adapts every decoder layer (`lora_layers` None). Measured on SmolLM2-135M, 2-core CPU, the 12-minute RAG job
    # of bench/bench_learning.py: the top 8 layers only trained 1.7x the tokens/s (167 vs 96 steps) but reached
    # held-out F1 0.27 against 0.60 with every layer (validation loss 0.81 vs 0.56): the cheaper step learned far less.
    # SFT/PSFT batches stay padded (TRL's default): on CPU a padding-free row needs a block-diagonal attention mask,
    # which sends SDPA to its slow masked path (RAG job: 511 tokens/s padded vs 324 padding-free, bf16, same data);
    # `padding_free: true` pays off with FlashAttention's variable-length kernels on a GPU.
}


# A run bounded by `max_minutes` (a job's usual shape on CPU: a few hundred steps at most) gets these for the fields it
# does not set, and its method row's `budget_lr` as learning rate. The rate decays linearly with the time left
# (`training.budget`), so the schedule ends with the budget on any CPU. Validation loss is measured before and after
# training only: evaluations during training cost one evaluation's share of the budget each (three of 45-90 s in a
# 15-minute job) and the decayed schedule's last state is the one to keep; asking for `eval_steps` brings them back.
BUDGET_DEFAULTS: dict[str, Any] = {"eval_strategy": "no"}


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def config_fields(method: str) -> set[str]:
    return {f.name for f in dataclasses.fields(config_class(method))}


def config_field(method: str, name: str) -> dataclasses.Field[Any]:
    """The dataclass field `name` of the method's config (its `metadata["help"]` is the option's help text)."""
    fields = {f.name: f for f in dataclasses.fields(config_class(method))}
    if name not in fields:
        raise TrainingConfigError(name, f"is not an option of `train {method}`")
    return fields[name]


def field_default(method: str, name: str) -> Any:
    """The value a run of `method` gets for the field when nothing sets it: the project default
    (`PROJECT_DEFAULTS`), else the dataclass default."""
    if name in PROJECT_DEFAULTS:
        return PROJECT_DEFAULTS[name]
    field_ = config_field(method, name)
    if field_.default is not dataclasses.MISSING:
        return field_.default
    if field_.default_factory is not dataclasses.MISSING:
        return field_.default_factory()
    return None


def budget_defaults(method: str, given: dict[str, Any], generated_questions: bool = False) -> dict[str, Any]:
    """The defaults of a run bounded by `max_minutes` (`BUDGET_DEFAULTS`, the method row's `budget_lr` and, unless
    its questions were generated from a collection, `budget_options`) for the fields `given` leaves unset."""
    if not given.get("max_minutes"):
        return {}
    chosen = {k: v for k, v in BUDGET_DEFAULTS.items() if k not in given}
    if "eval_steps" in given or "eval_strategy" in given:
        chosen.pop("eval_strategy", None)  # evaluations asked for: they run (and the best checkpoint is kept)
    row = method_row(method)
    if row.budget_lr is not None and "learning_rate" not in given:
        chosen["learning_rate"] = row.budget_lr
    if not generated_questions:
        chosen.update({k: v for k, v in row.budget_options.items() if k not in given})
    return chosen


def build_run_config(
    method: str,
    output_dir: Path,
    overrides: dict[str, Any] | None = None,
    cpu_bf16: bool | None = None,
    generated_questions: bool = False,
) -> Any:
    """The method's config with project defaults (and `budget_defaults` under `max_minutes`), then `overrides`
    (unknown keys are refused by name). `cpu_bf16` forces bfloat16 autocast on a CPU run on or off (None: on where
    the CPU has bfloat16 instructions); `generated_questions`: the run's questions come from a collection's chunks."""
    config_type = config_class(method)  # an unknown method: 422 naming the known ones
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    defaults = {k: v for k, v in PROJECT_DEFAULTS.items() if k in config_fields(method)}  # GRPO has no max_length
    values = {**defaults, **budget_defaults(method, given, generated_questions), **given}
    unknown = sorted(set(values) - config_fields(method))
    if unknown:
        raise TrainingConfigError(unknown[0], f"is not an option of `train {method}`")
    if not _cuda_available():
        # bfloat16 autocast where the CPU has bfloat16 instructions (about 2x the tokens/s), float32 where it would be
        # emulated; transformers accepts bf16 on CPU only with use_cpu
        values.setdefault("bf16", cpu_bf16_supported() if cpu_bf16 is None else cpu_bf16)
        if values["bf16"]:
            values.setdefault("use_cpu", True)
        values.setdefault("dataloader_pin_memory", False)
    try:
        return config_type(output_dir=str(output_dir), **values)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, TrainingConfigError):
            raise
        raise TrainingConfigError("config", f"is invalid: {exc}") from exc


# --- KTO, reward model, GRPO, classification SFT, sweep -------------------------------------------------------------


def check_selection_fields(run: Any) -> None:
    """Relevance and diversity selection options (all optional)."""
    if run.relevance_threshold is not None and not -1 <= run.relevance_threshold <= 1:
        raise TrainingConfigError("relevance_threshold", f"must be a cosine in [-1, 1] (got {run.relevance_threshold})")
    if run.relevance_top_fraction is not None and not 0 < run.relevance_top_fraction <= 1:
        raise TrainingConfigError("relevance_top_fraction", f"must be in (0, 1] (got {run.relevance_top_fraction})")
    if run.diversity_target is not None and run.diversity_target < 2:
        raise TrainingConfigError("diversity_target", f"must be >= 2 (got {run.diversity_target})")
    if run.diversity_method not in ("kcenter", "clusters"):
        raise TrainingConfigError("diversity_method", f"must be 'kcenter' or 'clusters' (got {run.diversity_method!r})")


@dataclass
class KTORunConfig(RunFields, KTOConfig):
    """KTO with LoRA on unpaired thumbs up/down; class weights default to balancing the two classes."""

    desirable_weight: float | None = field(  # type: ignore[assignment]
        default=None, metadata=_help("Weight of desirable examples (default: from the data, classes balanced).")
    )
    undesirable_weight: float | None = field(  # type: ignore[assignment]
        default=None, metadata=_help("Weight of undesirable examples (default: from the data, classes balanced).")
    )

    def __post_init__(self) -> None:
        KTOConfig.__post_init__(self)
        self.check_run_fields()
        if self.beta <= 0:
            raise TrainingConfigError("beta", f"must be > 0 (got {self.beta})")
        for flag in ("desirable_weight", "undesirable_weight"):
            value = getattr(self, flag)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise TrainingConfigError(flag, f"must be a positive number (got {value})")
        if self.per_device_train_batch_size < 2:
            raise TrainingConfigError("per_device_train_batch_size", "must be >= 2 for KTO (its KL term needs it)")


@dataclass
class RewardRunConfig(RunFields, RewardConfig):
    """A reward model: LoRA on a sequence-classification head (the score head trained in full) on preference pairs."""

    def __post_init__(self) -> None:
        RewardConfig.__post_init__(self)
        self.check_run_fields()


RULE_REWARDS = ("cites_source", "length", "grounded")


@dataclass
class GRPORunConfig(RunFields, GRPOConfig):
    """GRPO with LoRA: rewards from a registered reward model and/or rule rewards."""

    num_generations: int | None = field(default=4, metadata=_help("Answers sampled per prompt (a GRPO group)."))
    max_completion_length: int | None = field(default=64, metadata=_help("Longest sampled answer in tokens."))
    reward_model: str | None = field(
        default=None, metadata=_help("Registered reward model (name[:vN] or id) scoring the sampled answers.")
    )
    rule_rewards: list[str] = field(
        default_factory=list, metadata=_help(f"Rule rewards to add: {RULE_REWARDS} or a registered one.")
    )
    target_length: int = field(default=64, metadata=_help("The 'length' rule: best answer length in tokens."))
    grpo_eval_prompts: int = field(
        default=8, metadata=_help("Held-out prompts whose mean reward is measured before and after training.")
    )

    def __post_init__(self) -> None:
        GRPOConfig.__post_init__(self)
        self.check_run_fields()
        if not isinstance(self.rule_rewards, list) or not all(isinstance(r, str) for r in self.rule_rewards):
            raise TrainingConfigError("rule_rewards", f"must be a list of rule names (got {self.rule_rewards!r})")
        if not self.rule_rewards and not self.reward_model:
            raise TrainingConfigError("reward_model", "or --set rule_rewards=[...] is needed: GRPO needs a reward")
        if self.target_length < 1:
            raise TrainingConfigError("target_length", f"must be >= 1 (got {self.target_length})")
        if self.grpo_eval_prompts < 0:
            raise TrainingConfigError("grpo_eval_prompts", f"must be >= 0 (got {self.grpo_eval_prompts})")


@dataclass
class ClassifyRunConfig(SFTRunConfig):
    """Classification data (`text,label`) trained as SFT; evaluated by label accuracy and macro-F1."""

    classify_eval_limit: int | None = field(
        default=None, metadata=_help("Score at most this many validation examples before and after training.")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.classify_eval_limit is not None and self.classify_eval_limit < 1:
            raise TrainingConfigError("classify_eval_limit", f"must be >= 1 (got {self.classify_eval_limit})")


@dataclass
class SweepRunConfig(ClassifyRunConfig):
    """A grid search over learning rate, batch size, epochs and LoRA rank, chosen by validation loss."""

    sweep_method: str = field(default="sft", metadata=_help(f"Method of each trial, one of {SWEEP_METHODS}."))
    sweep_learning_rates: list[float] = field(default_factory=lambda: [1e-4, 3e-4], metadata=_help("Grid: LRs."))
    sweep_batch_sizes: list[int] = field(
        default_factory=list, metadata=_help("Grid: batch sizes (default: --batch-size).")
    )
    sweep_epochs: list[float] = field(default_factory=list, metadata=_help("Grid: epochs (default: --epochs)."))
    sweep_lora_ranks: list[int] = field(default_factory=list, metadata=_help("Grid: LoRA ranks (default: --lora-r)."))
    sweep_max_trials: int = field(default=16, metadata=_help("Refuse grids larger than this many trials."))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sweep_method not in SWEEP_METHODS:
            raise TrainingConfigError("sweep_method", f"must be one of {SWEEP_METHODS} (got {self.sweep_method!r})")
        grids = {
            "sweep_learning_rates": (self.sweep_learning_rates, lambda v: 0 < v < 1),
            "sweep_batch_sizes": (self.sweep_batch_sizes, lambda v: v >= 1 and float(v).is_integer()),
            "sweep_epochs": (self.sweep_epochs, lambda v: v > 0),
            "sweep_lora_ranks": (self.sweep_lora_ranks, lambda v: v >= 1 and float(v).is_integer()),
        }
        for flag, (values, ok) in grids.items():
            if not isinstance(values, list) or not all(isinstance(v, int | float) and ok(v) for v in values):
                raise TrainingConfigError(flag, f"must be a list of valid values (got {values!r})")
        if self.trial_count() > self.sweep_max_trials:
            raise TrainingConfigError(
                "sweep_max_trials", f"is {self.sweep_max_trials}: the grid has {self.trial_count()}"
            )
        if self.trial_count() < 1 or not self.sweep_learning_rates:
            raise TrainingConfigError("sweep_learning_rates", "must list at least one learning rate")

    def trial_count(self) -> int:
        sizes = [len(v) or 1 for v in (self.sweep_learning_rates, self.sweep_batch_sizes, self.sweep_epochs,
                                       self.sweep_lora_ranks)]  # fmt: skip
        return math.prod(sizes)
