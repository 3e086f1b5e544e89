"""The bounds of the options a training job may set: the types, ranges and choices `training.job_options` checks.

Contract: a `Bound` says what one option accepts and `problem(value)` why a value is refused (None: accepted).
`COMMON_OPTIONS` and `SELECTION` apply to every method; the groups named after a method (`RAFT`, `BATCHING`,
`PSFT_OWN`, `DPO_OWN`, ...) are what `training.methods.METHODS` rows add for their method.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

LORA_R_DEFAULT = 16  # the LoRA rank a run gets when nothing sets it (training.config.RunFields.lora_r)
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,199}$")


@dataclass(frozen=True)
class Bound:
    """The type and the closed range (or the choices) one option accepts."""

    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    max_items: int = 64
    item: Bound | None = None  # a list of numbers (a sweep grid): each item within this bound

    def problem(self, value: Any) -> str | None:
        """Why `value` is not acceptable, or None."""
        if self.kind is list:
            return self._list_problem(value)
        if self.kind is str and not self.choices:  # a name (e.g. a registry reference)
            ok = isinstance(value, str) and _REFERENCE.fullmatch(value)
            return None if ok else "must be a name of letters, digits and '._@:-' (at most 200 characters)"
        if self.kind is str:
            return None if value in self.choices else f"must be one of {list(self.choices)}"
        if self.kind is bool:
            return None if isinstance(value, bool) else "must be true or false"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a{'n integer' if self.kind is int else ' number'}"
        if self.kind is int and (isinstance(value, float) and not value.is_integer()):
            return "must be an integer"
        if not math.isfinite(value):
            return "must be a finite number"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            return f"must be between {self.low:g} and {self.high:g}"
        return None

    def _list_problem(self, value: Any) -> str | None:
        if self.item is not None:
            if not isinstance(value, list) or not 1 <= len(value) <= self.max_items:
                return f"must be a list of 1 to {self.max_items} values"
            for index, item in enumerate(value):
                problem = self.item.problem(item)
                if problem is not None:
                    return f"item {index} {problem}"
            return None
        if not isinstance(value, list) or not 1 <= len(value) <= self.max_items:
            return f"must be a list of 1 to {self.max_items} module names"
        if not all(isinstance(item, str) and _MODULE_NAME.fullmatch(item) for item in value):
            return "must hold module names such as 'q_proj' (letters, digits, '_' and '.')"
        return None


COMMON_OPTIONS: dict[str, Bound] = {
    "learning_rate": Bound(float, 1e-8, 1.0),
    "num_train_epochs": Bound(float, 0.01, 100),
    "max_steps": Bound(int, 1, 100_000),
    "per_device_train_batch_size": Bound(int, 1, 256),
    "per_device_eval_batch_size": Bound(int, 1, 256),
    "gradient_accumulation_steps": Bound(int, 1, 1024),
    "max_length": Bound(int, 16, 32_768),
    "warmup_steps": Bound(float, 0, 100_000),  # a ratio of the steps when below 1 (transformers)
    "weight_decay": Bound(float, 0, 1),
    "max_grad_norm": Bound(float, 0, 100),
    "lr_scheduler_type": Bound(str, choices=("linear", "cosine", "constant", "constant_with_warmup")),
    "logging_steps": Bound(int, 1, 100_000),
    "eval_steps": Bound(int, 1, 100_000),
    "seed": Bound(int, 0, 2**31 - 1),
    "lora_r": Bound(int, 1, 256),
    "lora_alpha": Bound(float, 0.01, 4096),
    "lora_dropout": Bound(float, 0, 0.99),
    "lora_target_modules": Bound(list),
    "lora_layers": Bound(int, 1, 1024),  # adapt only the top N decoder layers (faster steps)
    "eval_split": Bound(float, 0.01, 0.9),
    "min_tokens": Bound(int, 1, 4096),
    "near_duplicate_threshold": Bound(float, 0.01, 1),
    "rag_distractors": Bound(int, 0, 20),
    "squad_limit": Bound(int, 1, 1_000_000),
    "max_minutes": Bound(float, 0.1, 10_000),  # wall-clock budget; the best checkpoint so far is registered
}
RAFT = {"gold_probability": Bound(float, 0, 1), "train_source_window": Bound(int, 0, 20)}
SELECTION = {  # relevance / diversity selection (training/data/relevance.py), any method
    "relevance_threshold": Bound(float, -1, 1),
    "relevance_top_fraction": Bound(float, 0.001, 1),
    "diversity_target": Bound(int, 2, 1_000_000),
    "diversity_method": Bound(str, choices=("kcenter", "clusters")),
}

BATCHING = {"padding_free": Bound(bool)}  # SFT/PSFT: padded batches (the default) or padding-free ones
PSFT_OWN = {
    "disable_dropout": Bound(bool),
    "eps_low": Bound(float, 0.01, 0.99),
    "eps_high": Bound(float, 0.01, 10),
    "psft_refresh_steps": Bound(int, 1, 100_000),
}
DPO_OWN = {"beta": Bound(float, 0.001, 10)}
KTO_OWN = {
    "beta": Bound(float, 0.001, 10),
    "desirable_weight": Bound(float, 0.01, 100),
    "undesirable_weight": Bound(float, 0.01, 100),
    "loss_type": Bound(str, choices=("kto", "apo_zero_unpaired")),
}
REWARD_OWN = {"center_rewards_coefficient": Bound(float, 0, 1)}
GRPO_OWN = {
    "beta": Bound(float, 0, 10),
    "reward_model": Bound(str),
    "rule_rewards": Bound(list, max_items=3),
    "target_length": Bound(int, 1, 4096),
    "num_generations": Bound(int, 2, 64),
    "max_completion_length": Bound(int, 1, 4096),
    "temperature": Bound(float, 0.01, 2),
    "grpo_eval_prompts": Bound(int, 0, 256),
}
SWEEP_OWN = {  # `sweep_method`'s choices are the methods a sweep can run: the sweep row adds them (training.methods)
    "sweep_max_trials": Bound(int, 1, 16),
    "classify_eval_limit": Bound(int, 1, 100_000),
    # the grid: each list bounded like the single option it sweeps; the product is bounded in `_check_grid`
    "sweep_learning_rates": Bound(list, item=COMMON_OPTIONS["learning_rate"], max_items=8),
    "sweep_batch_sizes": Bound(list, item=COMMON_OPTIONS["per_device_train_batch_size"], max_items=8),
    "sweep_epochs": Bound(list, item=COMMON_OPTIONS["num_train_epochs"], max_items=8),
    "sweep_lora_ranks": Bound(list, item=COMMON_OPTIONS["lora_r"], max_items=8),
}
SWEEP_GRID = {"sweep_learning_rates": 2, "sweep_batch_sizes": 1, "sweep_epochs": 1, "sweep_lora_ranks": 1}  # defaults
MAX_TRIALS = 16
