"""CLI commands for training LoRA adapters: `assistant train sft|dpo|psft`.

Contract: the commands only parse flags and delegate to `training.runner.run_training` (heavy imports happen inside
the command functions); the same flags exist on `python -m training.run` for `accelerate launch`. On success the
registered adapter (name, version, path, run dir, validation metrics) is printed as JSON; project errors print one
line and exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import ConfigOption, DataDirOption, build_settings, echo, user_errors

DataOpt = Annotated[list[Path], typer.Option("--data", "-d", help="Data file(s): JSON, JSONL, CSV, or a SQuAD JSON.")]
NameOpt = Annotated[str | None, typer.Option(help="Adapter name in the registry (default <method>-adapter).")]
BaseAdapterOpt = Annotated[
    str | None, typer.Option("--base-adapter", help="Continue from an adapter: registry name[:vN], id, or directory.")
]
RecipeOpt = Annotated[Path | None, typer.Option(help="YAML file of training options (config field: value).")]
OutputOpt = Annotated[Path | None, typer.Option(help="Run directory (default <data-dir>/runs/<name>-<method>-<time>).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Resume from the last checkpoint of the run directory.")]
EpochsOpt = Annotated[float | None, typer.Option(help="Training epochs (default 1).")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default 2e-4).")]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Stop after this many optimizer steps (overrides --epochs).")]
BatchOpt = Annotated[int | None, typer.Option(help="Examples per device per step (default 4).")]
AccumOpt = Annotated[int | None, typer.Option(help="Gradient accumulation steps (default 1).")]
MaxLenOpt = Annotated[int | None, typer.Option(help="Longest sequence in tokens; longer examples are dropped.")]
SplitOpt = Annotated[float | None, typer.Option(help="Validation share of the kept examples, in (0, 1).")]
EvalStepsOpt = Annotated[int | None, typer.Option(help="Evaluate every N steps (default 50).")]
SaveStepsOpt = Annotated[int | None, typer.Option(help="Checkpoint every N steps (default 50).")]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed (split, shuffling, LoRA init; default 42).")]
LoraROpt = Annotated[int | None, typer.Option("--lora-r", help="LoRA rank (default 16).")]
LoraAlphaOpt = Annotated[float | None, typer.Option(help="LoRA alpha (default 32).")]
LoraDropoutOpt = Annotated[float | None, typer.Option(help="LoRA dropout (default 0.05).")]
TargetsOpt = Annotated[
    str | None, typer.Option(help="Comma-separated LoRA target modules (default: per-architecture table).")
]
QLoraOpt = Annotated[bool, typer.Option("--load-in-4bit", help="QLoRA: 4-bit base model (needs bitsandbytes + CUDA).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Any config field as KEY=VALUE (repeatable).")]
JobOpt = Annotated[str | None, typer.Option(help="Job id to record with the adapter.")]
BetaOpt = Annotated[float | None, typer.Option(help="DPO KL strength beta (default 0.1).")]
EpsLowOpt = Annotated[float | None, typer.Option(help="PSFT lower clip epsilon, in (0, 1) (default 0.2).")]
EpsHighOpt = Annotated[float | None, typer.Option(help="PSFT upper clip epsilon (default 0.28).")]
RefreshOpt = Annotated[int | None, typer.Option(help="PSFT optimizer steps between old-policy snapshots (default 8).")]


def _train(method: str, common: dict[str, Any], flags: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Build settings and the request, run, print the adapter as JSON."""
    with user_errors():
        settings = build_settings(common.pop("config"), common.pop("data_dir"))
        from training.options import options_from_flags
        from training.runner import TrainingRequest, run_training

        options = options_from_flags(
            method, flags, common.pop("set") or [], common.pop("target_modules"), common.pop("load_in_4bit")
        )
        options.update({k: v for k, v in (extra or {}).items() if v})
        request = TrainingRequest(method=method, data_files=common.pop("data"), options=options, **common)
        outcome = run_training(settings, request)
    summary = outcome.summary()
    if summary is not None:
        echo(json.dumps(summary, indent=2))


def _common(**values: Any) -> dict[str, Any]:
    keys = (
        "config",
        "data_dir",
        "data",
        "name",
        "base_adapter",
        "recipe",
        "output",
        "resume",
        "target_modules",
        "load_in_4bit",
        "set",
        "job_id",
    )
    common = {k: values[k] for k in keys}
    common["output_dir"] = common.pop("output")
    return common


def _flags(**values: Any) -> dict[str, Any]:
    from training.options import FLAGS, TOOLBOX_FLAGS

    return {flag.name: values.get(flag.name) for flag in (*FLAGS, *TOOLBOX_FLAGS)}


def sft(
    data: DataOpt,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    name: NameOpt = None,
    base_adapter: BaseAdapterOpt = None,
    recipe: RecipeOpt = None,
    output: OutputOpt = None,
    resume: ResumeOpt = False,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None,
    max_length: MaxLenOpt = None,
    eval_split: SplitOpt = None,
    eval_steps: EvalStepsOpt = None,
    save_steps: SaveStepsOpt = None,
    seed: SeedOpt = None,
    lora_r: LoraROpt = None,
    lora_alpha: LoraAlphaOpt = None,
    lora_dropout: LoraDropoutOpt = None,
    target_modules: TargetsOpt = None,
    load_in_4bit: QLoraOpt = False,
    set: SetOpt = None,
    job_id: JobOpt = None,
) -> None:
    """Supervised fine-tuning (LoRA; loss on the assistant's tokens; SQuAD files become RAG examples)."""
    values = locals()
    _train("sft", _common(**values), _flags(**values))


def psft(
    data: DataOpt,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    name: NameOpt = None,
    base_adapter: BaseAdapterOpt = None,
    recipe: RecipeOpt = None,
    output: OutputOpt = None,
    resume: ResumeOpt = False,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None,
    max_length: MaxLenOpt = None,
    eval_split: SplitOpt = None,
    eval_steps: EvalStepsOpt = None,
    save_steps: SaveStepsOpt = None,
    seed: SeedOpt = None,
    lora_r: LoraROpt = None,
    lora_alpha: LoraAlphaOpt = None,
    lora_dropout: LoraDropoutOpt = None,
    target_modules: TargetsOpt = None,
    load_in_4bit: QLoraOpt = False,
    set: SetOpt = None,
    job_id: JobOpt = None,
    eps_low: EpsLowOpt = None,
    eps_high: EpsHighOpt = None,
    refresh_steps: RefreshOpt = None,
) -> None:
    """Proximal SFT: clipped-ratio SFT against a periodically refreshed snapshot of the LoRA weights."""
    values = locals()
    _train("psft", _common(**values), _flags(**values))


def dpo(
    data: DataOpt,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    name: NameOpt = None,
    base_adapter: BaseAdapterOpt = None,
    recipe: RecipeOpt = None,
    output: OutputOpt = None,
    resume: ResumeOpt = False,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None,
    max_length: MaxLenOpt = None,
    eval_split: SplitOpt = None,
    eval_steps: EvalStepsOpt = None,
    save_steps: SaveStepsOpt = None,
    seed: SeedOpt = None,
    lora_r: LoraROpt = None,
    lora_alpha: LoraAlphaOpt = None,
    lora_dropout: LoraDropoutOpt = None,
    target_modules: TargetsOpt = None,
    load_in_4bit: QLoraOpt = False,
    set: SetOpt = None,
    job_id: JobOpt = None,
    beta: BetaOpt = None,
) -> None:
    """DPO on preference pairs (reference = the frozen base, adapter disabled)."""
    values = locals()
    _train("dpo", _common(**values), _flags(**values))


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    """Add the `train sft|dpo|psft|kto|reward|grpo|classify|sweep` commands to the root app."""
    from cli.toolbox_cmds import register_toolbox

    train_app = typer.Typer(help="Train LoRA adapters (SFT, DPO, PSFT) and register them.", no_args_is_help=True)
    train_app.command("sft")(sft)
    train_app.command("dpo")(dpo)
    train_app.command("psft")(psft)
    register_toolbox(train_app)
    app.add_typer(train_app, name="train")
