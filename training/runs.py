"""The training service, the package's entry point: one training job end to end: data -> selection -> model -> TRL
trainer (`training.trainers`) -> evaluation -> registry.

Contract: `train(parts, request)` runs a training (nothing registered yet) and returns a `TrainedRun` (the run dir,
metrics, lineage and what it held out for the gate, in memory); `register(parts, trained, gate)` puts its adapter
into the registry, with the gate's verdict when one was measured. The job worker calls the two with the gate between
them (so a cancelled or failed gate registers nothing); `run_training(settings, request, parts=...)` is both at once
for the CLI and scripts (it builds the process's `Parts` when none is given). Every part a run needs (database,
embedder, retriever, registry) comes from that one `Parts`. Everything that can be wrong
with the request (options, data files, records, an empty selection, a base adapter trained on another base) raises an
`AssistantError` before the first training step. It trains into the run directory (`request.output_dir`, default
`<runs_dir>/<name>-<method>-<timestamp>`; HF checkpoints every `save_steps`; `resume=True` continues from the last
checkpoint there, or of the newest run of that name and method), evaluates before and after (validation loss,
perplexity, token entropy; DPO reward accuracy and margins), writes metrics JSON and PNG curves, saves the PEFT
adapter and registers it (main process only) with its lineage. The returned `TrainingOutcome` names the adapter.
The lineage's `collections` is the sorted list of the document collections the training data came from (None when
unknown): `serving.catalog` lets a key use an adapter only when they lie within its scope.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from assistant.errors import InvalidRequestError
from assistant.parts import Parts
from assistant.settings import Settings
from training.config import RunFields, TrainingConfigError, build_run_config
from training.data.records import EmptyDatasetError
from training.data.selection import SelectionReport
from training.gate import HeldOut
from training.methods import METHODS, method
from training.option_bounds import LORA_R_DEFAULT
from training.progress import RunProgress
from training.registry import AdapterRecord, AdapterRegistry
from training.request import JobRequest

log = logging.getLogger(__name__)
HYPERPARAMETER_KEYS = (
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "max_length", "seed", "warmup_steps", "weight_decay", "lr_scheduler_type", "beta", "loss_type", "eps_low",
    "eps_high", "psft_refresh_steps", "disable_dropout",
)  # fmt: skip


@dataclass
class TrainingRequest:
    """One training job. `options` are config field values (e.g. learning_rate, lora_r, max_steps, beta)."""

    method: str
    data_files: list[Path]
    name: str | None = None
    base_adapter: str | None = None
    output_dir: Path | None = None
    resume: bool = False
    recipe: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    collection: str | None = None  # questions train on the server's sources over this collection (RAFT)
    holdout: bool = False  # keep a share of the data out of training for the gate (job runs; see training.gate)
    data_collections: list[str] | None = None  # collections the data files' records came from; None: unknown
    generated_questions: bool = False  # the questions were generated from a collection's chunks (no labels)

    @property
    def adapter_name(self) -> str:
        return self.name or f"{self.method}-adapter"

    @property
    def collections(self) -> list[str] | None:
        """The collections the training data came from (lineage `collections`): the RAG collection of question
        files, else what the job's stored data recorded; None when unknown."""
        if self.collection:
            return sorted({self.collection, *(self.data_collections or [])})
        return None if self.data_collections is None else sorted(set(self.data_collections))

    @classmethod
    def for_job(
        cls, job: JobRequest, data_file: Path, job_id: str, data_collections: list[str] | None, max_lora_rank: int
    ) -> TrainingRequest:
        """The run of a queued job: its request as stored, the data file the worker prepared, held-out data on, and
        a chat adapter's rank, when the job leaves it out, no larger than the engine serves (`engine.max_lora_rank`;
        a rank given is checked when the job is created)."""
        options = dict(job.hyperparameters)
        if METHODS[job.method].kind == "lm" and "lora_r" not in options:
            options["lora_r"] = min(LORA_R_DEFAULT, max_lora_rank)
        return cls(
            method=job.method,
            data_files=[data_file],
            name=job.name,
            base_adapter=job.base_adapter,
            options=options,
            job_id=job_id,
            collection=job.data.collection,
            holdout=True,
            data_collections=data_collections,
            generated_questions=job.data.source == "collection" and METHODS[job.method].collection_data == "questions",
        )


@dataclass
class TrainedRun:
    """A finished training, not registered yet: the runner (it registers), metrics, lineage and held-out data."""

    runner: Any
    run_dir: Path
    metrics: dict[str, Any]
    lineage: dict[str, Any]

    @property
    def heldout(self) -> HeldOut:
        """What the run kept out of training for the gate (in memory; never trained on)."""
        return self.runner.held_out_for_gate()

    @property
    def adapter_dir(self) -> Path:
        return Path(self.runner.adapter_dir)

    @property
    def kind(self) -> str:
        return METHODS[self.runner.method].kind


@dataclass
class TrainingOutcome:
    """What a finished run produced. `adapter` is None on non-main processes of a distributed run."""

    adapter: AdapterRecord | None
    run_dir: Path
    metrics: dict[str, Any]
    report: SelectionReport

    def summary(self) -> dict[str, Any] | None:
        """What the CLI entry points print: the registered adapter, its run directory and final metrics."""
        if self.adapter is None:
            return None
        return {
            "name": self.adapter.name,
            "version": self.adapter.version,
            "path": str(self.adapter.path),
            "run_dir": str(self.run_dir),
            "metrics": self.metrics["after"],
        }


@dataclass
class BaseAdapter:
    path: Path
    record: AdapterRecord | None


def load_recipe(path: Path | None) -> dict[str, Any]:
    """Config field values from a YAML recipe file (flat mapping)."""
    if path is None:
        return {}
    import yaml

    if not Path(path).is_file():
        raise TrainingConfigError("recipe", f"file {path} does not exist")
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise TrainingConfigError("recipe", f"file {path} must hold a mapping of option: value")
    return data


def run_dir_for(settings: Settings, request: TrainingRequest) -> Path:
    """The run directory: explicit, the newest matching one when resuming, else a fresh timestamped one."""
    if request.output_dir is not None:
        return Path(request.output_dir)
    prefix = f"{request.adapter_name}-{request.method}-"
    if request.resume:
        previous = sorted(p for p in settings.runs_dir.glob(f"{prefix}*") if p.is_dir())
        if previous:
            return previous[-1]
    return settings.runs_dir / f"{prefix}{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_request(request: TrainingRequest) -> None:
    method(request.method)
    if not request.data_files:
        raise InvalidRequestError("no training data: pass at least one --data FILE", param="data")
    for path in request.data_files:
        if not Path(path).is_file():
            raise InvalidRequestError(f"data file {path} does not exist", param="data")


def _cpu_bf16(settings: Settings) -> bool | None:
    """`training.cpu_bf16`: None (auto: where the CPU has bfloat16 instructions), or forced on or off."""
    choice = settings.training.cpu_bf16
    return None if choice == "auto" else choice == "on"


def resolve_base_adapter(ref: str | None, registry: AdapterRegistry) -> BaseAdapter | None:
    """A registry reference (name, name:vN, id) or a PEFT directory."""
    if ref is None:
        return None
    if Path(ref).is_dir():
        return BaseAdapter(Path(ref), None)
    record = registry.resolve(ref)
    return BaseAdapter(record.path, record)


def hyperparameters(config: Any) -> dict[str, Any]:
    keys = [*HYPERPARAMETER_KEYS, *(f.name for f in dataclasses.fields(RunFields))]
    return {k: _json_safe(getattr(config, k)) for k in keys if hasattr(config, k)}


def _json_safe(value: Any) -> Any:
    if isinstance(value, Enum):
        return _json_safe(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


def versions() -> dict[str, str]:
    return {pkg: importlib.metadata.version(pkg) for pkg in ("torch", "transformers", "trl", "peft")}


def train(
    parts: Parts, request: TrainingRequest, callbacks: list[Any] | None = None, progress: RunProgress | None = None
) -> TrainedRun:
    """Validate and train one adapter (see the module docstring); nothing is registered. `progress` is the job's
    (phases, the budget's clock counted from its start, the cancel check)."""
    from training.trainers import MethodRunner

    check_request(request)
    run_dir = run_dir_for(parts.settings, request)
    overrides = {**load_recipe(request.recipe), **request.options}
    bf16 = _cpu_bf16(parts.settings)
    config = build_run_config(request.method, run_dir, overrides, bf16, request.generated_questions)
    base_adapter = resolve_base_adapter(request.base_adapter, AdapterRegistry.of(parts))
    runner = MethodRunner.create(parts, request, config, base_adapter, callbacks or [])
    runner.progress = progress or RunProgress()
    started = time.time()
    metrics = runner.run()
    return TrainedRun(runner, run_dir, metrics, build_lineage(parts.settings, request, runner, config, started))


def register(parts: Parts, trained: TrainedRun, gate: dict[str, Any] | None = None) -> AdapterRecord | None:
    """Register the trained adapter (main process only; None elsewhere)."""
    if not trained.runner.is_main_process:
        return None
    return trained.runner.register(AdapterRegistry.of(parts), trained.lineage, trained.metrics, gate)  # type: ignore[no-any-return]


def run_training(
    settings: Settings,
    request: TrainingRequest,
    callbacks: list[Any] | None = None,
    parts: Parts | None = None,
    progress: RunProgress | None = None,
) -> TrainingOutcome:
    """Train and register one adapter (no gate): the CLI's and scripts' entry point. `parts` is the process's own
    (built here from `settings` when not given); `progress` gets the run's phases (the CLI shows them)."""
    parts = parts or Parts(settings)
    trained = train(parts, request, callbacks, progress)
    record = register(parts, trained)
    return TrainingOutcome(record, trained.run_dir, trained.metrics, trained.runner.report)


def build_lineage(settings: Settings, request: TrainingRequest, runner: Any, config: Any, started: float) -> dict:
    parent = runner.base_adapter
    return {
        "base_model": str(runner.base_dir),
        "base_model_name": settings.models.lm,
        "base_fingerprint": runner.fingerprint,
        "method": request.method,
        "data_files": [{"path": str(Path(p).resolve()), "sha256": file_sha256(Path(p))} for p in request.data_files],
        "hyperparameters": hyperparameters(config),
        "selection": {
            "kept": runner.report.kept,
            "dropped": runner.report.dropped,
            "train": runner.report.train,
            "validation": runner.report.validation,
        },
        "parent": None if parent is None else {"path": str(parent.path), "id": parent.record and parent.record.id},
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "duration_s": round(time.time() - started, 2),
        "run_dir": str(Path(config.output_dir).resolve()),
        "job_id": request.job_id,
        "collections": request.collections,  # the key name serving.catalog reads: keep it
        "versions": versions(),
    }


__all__ = ["EmptyDatasetError", "TrainedRun", "TrainingOutcome", "TrainingRequest", "register", "run_training", "train"]
