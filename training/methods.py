"""The training methods: one row per method, the one table every other place reads.

Contract: `METHODS` maps a method's name to its `Method` row:
- `runner` and `config`: where its runner class and its config dataclass live (`"module:Class"`, imported on use by
  `runner_class(name)` and `config_class(name)`: reading the table imports neither TRL nor torch);
- `sources`: the job data sources it reads (`data.source` of a job: stored `preferences`, `feedback`, `chats`, or
  an uploaded `file`, or questions generated from a `collection`'s chunks); the first is the one it is usually given;
- `collection_data`: what a `collection` source gives it: `questions` generated from the chunks
  (`training.data.collection`) or the chunks' `text` itself;
- `kind`: the registry kind of what it trains (`lm`: a chat adapter; `reward`: a reward model, never served);
- `help`: the help of its `assistant train <name>` command;
- `flags`: the `train <name>` flags (`training.options.BY_NAME` keys), in order;
- `job_options`: the bounds of the options a job of this method may set beyond `training.option_bounds.COMMON`,
  and `no_options`: common options it has no field for;
- `budget_lr`: the learning rate a run bounded by `max_minutes` gets when it sets none (None: the project default;
  `training.config.budget_defaults`), and `budget_options` the other fields such a run gets when it sets none and
  its questions are real ones (a job on questions generated from a collection keeps the project defaults).
`METHOD_NAMES` is the tuple of names (the REST schema's choices, the CLI's commands, the console's list).
Adding a method: one row here and one module holding its runner (a `training.trainers.MethodRunner` subclass) and
its config dataclass.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from assistant.errors import UnprocessableError
from training.option_bounds import (
    BATCHING,
    DPO_OWN,
    GRPO_OWN,
    KTO_OWN,
    PSFT_OWN,
    RAFT,
    REWARD_OWN,
    SWEEP_OWN,
    Bound,
)

# `train <method>` flag groups (training.options.BY_NAME)
_SCHEDULE = ("epochs", "lr", "max_steps", "batch_size", "grad_accum")
_EVALUATION = ("eval_split", "eval_steps", "save_steps", "seed", "lora_r", "lora_alpha", "lora_dropout")
_COMMON = (*_SCHEDULE, "max_length", *_EVALUATION, "target_modules", "load_in_4bit")
_SELECTION = ("relevance_threshold", "relevance_top", "diversity_target", "diversity_method")
_GRPO = ("beta", "reward_model", "rule", "num_generations", "max_completion_length", "target_length")


@dataclass(frozen=True)
class Method:
    """One training method (see the module contract)."""

    name: str
    runner: str
    config: str
    sources: tuple[str, ...]
    help: str
    flags: tuple[str, ...] = _COMMON
    job_options: dict[str, Bound] = field(default_factory=dict)
    kind: str = "lm"
    no_options: frozenset[str] = frozenset()
    collection_data: str = "questions"
    budget_lr: float | None = None
    budget_options: dict[str, Any] = field(default_factory=dict)


# LoRA on a 135M model learns in a budget's few hundred steps only with the larger peak (bench_learning, SQuAD RAFT:
# 1e-3 reached held-out F1 0.59, 2e-4 0.30); the preference methods keep the project default.
_BUDGET_LR = 1e-3
# An SFT job on a budget learns more from more, shorter examples (bench_learning, SmolLM2-135M, 15-minute job on a
# 2-core CPU, F1 on the bench's 60 held-out questions / on 120): batches of 2 instead of 4 took 105 optimizer steps
# instead of 56 (F1 0.472 against 0.442 and 0.399 in two runs of batches of 4); training sources cut around the
# sentence holding the answer (`train_source_window`; the served sources stay whole) shorten the prompt from 657
# tokens to 330 with one sentence either side (177 steps, F1 0.487) and to about 220 with the answer's sentence alone
# (231 steps, F1 0.501 / 0.473, against 0.489 / 0.467 for one sentence either side at learning rate 2e-3); the bench
# itself then measured 244 steps and F1 0.515, 4.09x the base. On questions generated from the chunks (no labels)
# batches of 2 and cut sources measured F1 0.245 (1.94x) against 2.75x and 2.64x with batches of 4 and whole sources:
# more updates on rule-made questions fit their style, not real questions', so such a job keeps the project defaults.
_BUDGET_SFT = {"per_device_train_batch_size": 2, "train_source_window": 0}
SWEEP_METHODS = ("sft", "classify")  # the methods a sweep's trials can run


def _row(*rows: Method) -> dict[str, Method]:
    return {row.name: row for row in rows}


METHODS: dict[str, Method] = _row(
    Method("sft", "training.trainers:SFTRunner", "training.config:SFTRunConfig", ("preferences", "file", "collection"),
           "Supervised fine-tuning (LoRA; loss on the assistant's tokens; SQuAD files become RAG examples).",
           job_options={**RAFT, **BATCHING}, budget_lr=_BUDGET_LR, budget_options=_BUDGET_SFT),
    Method("dpo", "training.trainers:DPORunner", "training.config:DPORunConfig", ("preferences", "file"),
           "DPO on preference pairs (reference = the frozen base, adapter disabled).",
           (*_COMMON, "beta"), DPO_OWN),
    Method("psft", "training.trainers:PSFTRunner", "training.config:PSFTRunConfig",
           ("preferences", "file", "collection"),
           "Proximal SFT: clipped-ratio SFT against a periodically refreshed snapshot of the LoRA weights.",
           (*_COMMON, "eps_low", "eps_high", "refresh_steps"), {**RAFT, **BATCHING, **PSFT_OWN},
           budget_lr=_BUDGET_LR),
    Method("kto", "training.kto:KTORunner", "training.config:KTORunConfig", ("feedback", "file"),
           "KTO on unpaired thumbs up/down (label / kto_tag records, or preference pairs unpaired).",
           (*_COMMON, "beta", "desirable_weight", "undesirable_weight", *_SELECTION), KTO_OWN),
    Method("reward", "training.reward:RewardRunner", "training.config:RewardRunConfig", ("preferences", "file"),
           "A reward model (LoRA + score head) on preference pairs; registered with kind 'reward'.",
           (*_COMMON, *_SELECTION), REWARD_OWN, kind="reward"),
    Method("grpo", "training.grpo:GRPORunner", "training.config:GRPORunConfig", ("chats", "feedback", "file"),
           "GRPO (online RL) with LoRA on prompts; rewards from a reward model and/or rule rewards.",
           (*_SCHEDULE, *_EVALUATION, "target_modules", "load_in_4bit", *_GRPO), GRPO_OWN,
           no_options=frozenset({"max_length"})),  # GRPO bounds prompts and completions separately
    Method("classify", "training.classification:ClassifyRunner", "training.config:ClassifyRunConfig", ("file",),
           "Classification data (text,label CSV / JSONL) as SFT; label accuracy and macro-F1 before and after.",
           (*_COMMON, *_SELECTION), {"classify_eval_limit": Bound(int, 1, 100_000)}, budget_lr=_BUDGET_LR),
    Method("pt", "training.pretrain:PretrainRunner", "training.config:SFTRunConfig", ("collection", "file"),
           "Continued pretraining: causal LM loss on text (a collection's chunks, JSONL {text} or .txt), LoRA; "
           "held-out perplexity before and after.",
           job_options=BATCHING, collection_data="text", budget_lr=_BUDGET_LR),
    Method("sweep", "training.sweep:SweepRunner", "training.config:SweepRunConfig", ("file",),
           "Grid search over --grid-lr/--grid-batch-size/--grid-epochs/--grid-lora-r by validation loss; best "
           "registered.",
           (*_COMMON, "trial_method", "grid_lr", "grid_batch_size", "grid_epochs", "grid_lora_r"),
           {"sweep_method": Bound(str, choices=SWEEP_METHODS), **SWEEP_OWN}),
)  # fmt: skip
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)


def method(name: str) -> Method:
    """The row of `name`; a 422 naming the known methods otherwise."""
    if name not in METHODS:
        raise UnprocessableError(
            f"--method must be one of {METHOD_NAMES} (got {name!r})", param="method", code="invalid_training_config"
        )
    return METHODS[name]


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def runner_class(name: str) -> Any:
    """The `MethodRunner` subclass of the method (its module imported now)."""
    return _load(method(name).runner)


def config_class(name: str) -> Any:
    """The config dataclass of the method (TRL imported now)."""
    return _load(method(name).config)
