"""CLI commands of the rest of the toolbox (issue 11): `assistant train kto|reward|grpo|classify|sweep`.

Contract: the same common flags as `train sft` (data, name, base adapter, recipe, output, resume, LoRA, schedule,
`--set KEY=VALUE`) plus each method's own flags, and relevance/diversity data selection on every command; they
delegate to `training.runner.run_training` through `cli.train_cmds._train` and print the registered adapter as JSON.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import ConfigOption, DataDirOption
from cli.train_cmds import (
    AccumOpt,
    BaseAdapterOpt,
    BatchOpt,
    BetaOpt,
    DataOpt,
    EpochsOpt,
    EvalStepsOpt,
    JobOpt,
    LoraAlphaOpt,
    LoraDropoutOpt,
    LoraROpt,
    LrOpt,
    MaxLenOpt,
    MaxStepsOpt,
    NameOpt,
    OutputOpt,
    QLoraOpt,
    RecipeOpt,
    ResumeOpt,
    SaveStepsOpt,
    SeedOpt,
    SetOpt,
    SplitOpt,
    TargetsOpt,
    _common,
    _flags,
    _train,
)  # fmt: skip

RelThresholdOpt = Annotated[float | None, typer.Option(help="Keep examples with cosine >= this to indexed documents.")]
RelTopOpt = Annotated[float | None, typer.Option(help="Keep this top share of examples by relevance to the documents.")]
DivTargetOpt = Annotated[int | None, typer.Option(help="Keep at most this many examples, chosen for diversity.")]
DivMethodOpt = Annotated[str | None, typer.Option(help="Diversity sampling: kcenter (default) or clusters.")]
DesirableOpt = Annotated[float | None, typer.Option(help="KTO weight of thumbs-up examples (default: balanced).")]
UndesirableOpt = Annotated[float | None, typer.Option(help="KTO weight of thumbs-down examples (default: balanced).")]
RewardModelOpt = Annotated[str | None, typer.Option(help="Registered reward model (name[:vN]) scoring answers.")]
RuleOpt = Annotated[list[str] | None, typer.Option("--rule", help="Rule reward: cites_source, grounded, length.")]
GenerationsOpt = Annotated[int | None, typer.Option(help="Answers sampled per prompt (default 4).")]
CompletionOpt = Annotated[int | None, typer.Option(help="Longest sampled answer in tokens (default 64).")]
TargetLenOpt = Annotated[int | None, typer.Option(help="Best answer length for the 'length' rule (default 64).")]
TrialMethodOpt = Annotated[str | None, typer.Option(help="Method of each trial: sft (default) or classify.")]
GridOpt = Annotated[str | None, typer.Option(help="Comma-separated values.")]


def _grid(text: str | None, kind: type) -> list[float] | None:
    return [kind(v) for v in text.split(",") if v.strip()] if text else None


def kto(
    data: DataOpt, config: ConfigOption = None, data_dir: DataDirOption = None, name: NameOpt = None,
    base_adapter: BaseAdapterOpt = None, recipe: RecipeOpt = None, output: OutputOpt = None, resume: ResumeOpt = False,
    epochs: EpochsOpt = None, lr: LrOpt = None, max_steps: MaxStepsOpt = None, batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None, max_length: MaxLenOpt = None, eval_split: SplitOpt = None,
    eval_steps: EvalStepsOpt = None, save_steps: SaveStepsOpt = None, seed: SeedOpt = None, lora_r: LoraROpt = None,
    lora_alpha: LoraAlphaOpt = None, lora_dropout: LoraDropoutOpt = None, target_modules: TargetsOpt = None,
    load_in_4bit: QLoraOpt = False, set: SetOpt = None, job_id: JobOpt = None, beta: BetaOpt = None,
    desirable_weight: DesirableOpt = None, undesirable_weight: UndesirableOpt = None,
    relevance_threshold: RelThresholdOpt = None, relevance_top: RelTopOpt = None,
    diversity_target: DivTargetOpt = None, diversity_method: DivMethodOpt = None,
) -> None:  # fmt: skip
    """KTO on unpaired thumbs up/down (label / kto_tag records, or preference pairs unpaired)."""
    values = locals()
    _train("kto", _common(**values), _flags(**values))


def reward(
    data: DataOpt, config: ConfigOption = None, data_dir: DataDirOption = None, name: NameOpt = None,
    base_adapter: BaseAdapterOpt = None, recipe: RecipeOpt = None, output: OutputOpt = None, resume: ResumeOpt = False,
    epochs: EpochsOpt = None, lr: LrOpt = None, max_steps: MaxStepsOpt = None, batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None, max_length: MaxLenOpt = None, eval_split: SplitOpt = None,
    eval_steps: EvalStepsOpt = None, save_steps: SaveStepsOpt = None, seed: SeedOpt = None, lora_r: LoraROpt = None,
    lora_alpha: LoraAlphaOpt = None, lora_dropout: LoraDropoutOpt = None, target_modules: TargetsOpt = None,
    load_in_4bit: QLoraOpt = False, set: SetOpt = None, job_id: JobOpt = None,
    relevance_threshold: RelThresholdOpt = None, relevance_top: RelTopOpt = None,
    diversity_target: DivTargetOpt = None, diversity_method: DivMethodOpt = None,
) -> None:  # fmt: skip
    """A reward model (LoRA + score head) on preference pairs; registered with kind 'reward'."""
    values = locals()
    _train("reward", _common(**values), _flags(**values))


def grpo(
    data: DataOpt, config: ConfigOption = None, data_dir: DataDirOption = None, name: NameOpt = None,
    base_adapter: BaseAdapterOpt = None, recipe: RecipeOpt = None, output: OutputOpt = None, resume: ResumeOpt = False,
    epochs: EpochsOpt = None, lr: LrOpt = None, max_steps: MaxStepsOpt = None, batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None, eval_split: SplitOpt = None, eval_steps: EvalStepsOpt = None,
    save_steps: SaveStepsOpt = None, seed: SeedOpt = None, lora_r: LoraROpt = None, lora_alpha: LoraAlphaOpt = None,
    lora_dropout: LoraDropoutOpt = None, target_modules: TargetsOpt = None, load_in_4bit: QLoraOpt = False,
    set: SetOpt = None, job_id: JobOpt = None, beta: BetaOpt = None, reward_model: RewardModelOpt = None,
    rule: RuleOpt = None, num_generations: GenerationsOpt = None, max_completion_length: CompletionOpt = None,
    target_length: TargetLenOpt = None,
) -> None:  # fmt: skip
    """GRPO (online RL) with LoRA on prompts; rewards from a reward model and/or rule rewards."""
    values = locals()
    _train("grpo", _common(**values), _flags(**values), {"rule_rewards": rule})


def classify(
    data: DataOpt, config: ConfigOption = None, data_dir: DataDirOption = None, name: NameOpt = None,
    base_adapter: BaseAdapterOpt = None, recipe: RecipeOpt = None, output: OutputOpt = None, resume: ResumeOpt = False,
    epochs: EpochsOpt = None, lr: LrOpt = None, max_steps: MaxStepsOpt = None, batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None, max_length: MaxLenOpt = None, eval_split: SplitOpt = None,
    eval_steps: EvalStepsOpt = None, save_steps: SaveStepsOpt = None, seed: SeedOpt = None, lora_r: LoraROpt = None,
    lora_alpha: LoraAlphaOpt = None, lora_dropout: LoraDropoutOpt = None, target_modules: TargetsOpt = None,
    load_in_4bit: QLoraOpt = False, set: SetOpt = None, job_id: JobOpt = None,
    relevance_threshold: RelThresholdOpt = None, relevance_top: RelTopOpt = None,
    diversity_target: DivTargetOpt = None, diversity_method: DivMethodOpt = None,
) -> None:  # fmt: skip
    """Classification data (text,label CSV / JSONL) as SFT; label accuracy and macro-F1 before and after."""
    values = locals()
    _train("classify", _common(**values), _flags(**values))


def sweep(
    data: DataOpt, config: ConfigOption = None, data_dir: DataDirOption = None, name: NameOpt = None,
    base_adapter: BaseAdapterOpt = None, recipe: RecipeOpt = None, output: OutputOpt = None, resume: ResumeOpt = False,
    epochs: EpochsOpt = None, lr: LrOpt = None, max_steps: MaxStepsOpt = None, batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None, max_length: MaxLenOpt = None, eval_split: SplitOpt = None,
    eval_steps: EvalStepsOpt = None, save_steps: SaveStepsOpt = None, seed: SeedOpt = None, lora_r: LoraROpt = None,
    lora_alpha: LoraAlphaOpt = None, lora_dropout: LoraDropoutOpt = None, target_modules: TargetsOpt = None,
    load_in_4bit: QLoraOpt = False, set: SetOpt = None, job_id: JobOpt = None, trial_method: TrialMethodOpt = None,
    grid_lr: GridOpt = None, grid_batch_size: GridOpt = None, grid_epochs: GridOpt = None,
    grid_lora_r: GridOpt = None,
) -> None:  # fmt: skip
    """Grid search over --grid-lr/--grid-batch-size/--grid-epochs/--grid-lora-r by validation loss; best registered."""
    values = locals()
    grids = {
        "sweep_learning_rates": _grid(grid_lr, float),
        "sweep_batch_sizes": _grid(grid_batch_size, int),
        "sweep_epochs": _grid(grid_epochs, float),
        "sweep_lora_ranks": _grid(grid_lora_r, int),
    }
    _train("sweep", _common(**values), _flags(**values), grids)


def register_toolbox(train_app: typer.Typer) -> None:
    for command in (kto, reward, grpo, classify, sweep):
        train_app.command(command.__name__)(command)
