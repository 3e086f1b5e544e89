"""The command-line flags of a training run, shared by `assistant train ...` and `python -m training.launch`.

Contract: a `Flag` names a shortcut flag, the config field it sets, the type its text is parsed to and how it is
given (`kind`); its help text and default are the config field's own (`flag_help`, `flag_default`: the
`field(metadata={"help": ...})` of the method's config dataclass in `training.config` and the default a run gets,
project defaults included), so both commands describe an option in one place. `METHOD_FLAGS` lists the flags of
each `train <method>` command, in order (the `flags` of its `training.methods.METHODS` row); a flag of another method
is refused. `options_from_flags(values)` turns parsed flag values (None = not given)
plus `--set KEY=VALUE` pairs into the `TrainingRequest.options` dict (config field -> value); any config field of
the method can be set with `--set`. Importing this module is cheap: `training.config` (TRL) is imported on use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from training.methods import METHODS


@dataclass(frozen=True)
class Flag:
    """`--<name>` sets the config field `field`; `kind` is 'value' (one value of `type`), 'switch' (on when given),
    'list' (comma-separated values of `type`) or 'repeat' (repeatable, one value of `type` each)."""

    name: str
    field: str
    type: type
    kind: str = "value"

    @property
    def option(self) -> str:
        return f"--{self.name.replace('_', '-')}"


FLAGS: tuple[Flag, ...] = (
    Flag("epochs", "num_train_epochs", float),
    Flag("lr", "learning_rate", float),
    Flag("max_steps", "max_steps", int),
    Flag("batch_size", "per_device_train_batch_size", int),
    Flag("grad_accum", "gradient_accumulation_steps", int),
    Flag("max_length", "max_length", int),
    Flag("eval_split", "eval_split", float),
    Flag("eval_steps", "eval_steps", int),
    Flag("save_steps", "save_steps", int),
    Flag("seed", "seed", int),
    Flag("lora_r", "lora_r", int),
    Flag("lora_alpha", "lora_alpha", float),
    Flag("lora_dropout", "lora_dropout", float),
    Flag("beta", "beta", float),
    Flag("eps_low", "eps_low", float),
    Flag("eps_high", "eps_high", float),
    Flag("refresh_steps", "psft_refresh_steps", int),
)
TOOLBOX_FLAGS: tuple[Flag, ...] = (  # issue 11 (given with `--set` on `python -m training.launch`)
    Flag("relevance_threshold", "relevance_threshold", float),
    Flag("relevance_top", "relevance_top_fraction", float),
    Flag("diversity_target", "diversity_target", int),
    Flag("diversity_method", "diversity_method", str),
    Flag("desirable_weight", "desirable_weight", float),
    Flag("undesirable_weight", "undesirable_weight", float),
    Flag("reward_model", "reward_model", str),
    Flag("num_generations", "num_generations", int),
    Flag("max_completion_length", "max_completion_length", int),
    Flag("target_length", "target_length", int),
    Flag("trial_method", "sweep_method", str),
)
# Flags whose value is not one scalar: `options_from_flags` takes the first two as arguments; the others are applied
# after `--set` (`list_options`).
SHAPED_FLAGS: tuple[Flag, ...] = (
    Flag("target_modules", "lora_target_modules", str, "list"),
    Flag("load_in_4bit", "load_in_4bit", bool, "switch"),
    Flag("rule", "rule_rewards", str, "repeat"),
    Flag("grid_lr", "sweep_learning_rates", float, "list"),
    Flag("grid_batch_size", "sweep_batch_sizes", int, "list"),
    Flag("grid_epochs", "sweep_epochs", float, "list"),
    Flag("grid_lora_r", "sweep_lora_ranks", int, "list"),
)
BY_NAME: dict[str, Flag] = {flag.name: flag for flag in (*FLAGS, *TOOLBOX_FLAGS, *SHAPED_FLAGS)}

METHOD_FLAGS: dict[str, tuple[str, ...]] = {name: m.flags for name, m in METHODS.items()}


def flag_help(method: str, flag: Flag) -> str:
    """The help text of the config field `flag` sets, for `train <method>` (whitespace collapsed)."""
    from training.config import config_field

    return " ".join(str(config_field(method, flag.field).metadata.get("help", "")).split())


def flag_default(method: str, flag: Flag) -> Any:
    """The value a `train <method>` run uses when the flag (and recipe, `--set`) leaves the field alone."""
    from training.config import field_default

    return field_default(method, flag.field)


def parse_set(pairs: Iterable[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; values are parsed as YAML scalars/lists (`3`, `1e-4`, `true`, `[q_proj, v_proj]`)."""
    from training.config import TrainingConfigError

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
    from training.config import TrainingConfigError

    options: dict[str, Any] = {}
    for flag in (*FLAGS, *TOOLBOX_FLAGS):
        value = values.get(flag.name)
        if value is None:
            continue
        if flag.name not in METHOD_FLAGS.get(method, ()):
            raise TrainingConfigError(flag.name, f"does not apply to `train {method}`")
        options[flag.field] = flag.type(value)
    if target_modules:
        options["lora_target_modules"] = split_list(target_modules, str)
    if load_in_4bit:
        options["load_in_4bit"] = True
    options.update(parse_set(set_pairs))
    return options


def list_options(values: dict[str, Any]) -> dict[str, Any]:
    """Config field values of the 'list' and 'repeat' flags given (not `--target-modules`, an argument of
    `options_from_flags`); they win over `--set`."""
    options: dict[str, Any] = {}
    for flag in SHAPED_FLAGS:
        value = values.get(flag.name)
        if flag.name in ("target_modules", "load_in_4bit") or not value:
            continue
        parsed = split_list(value, flag.type) if flag.kind == "list" else value
        if parsed:
            options[flag.field] = parsed
    return options


def split_list(text: str, kind: type) -> list[Any]:
    """`a, b,c` -> [kind('a'), kind('b'), kind('c')] (empty items dropped)."""
    return [kind(v.strip()) for v in text.split(",") if v.strip()]
