"""The per-method runners (SFT, PSFT, DPO): data preparation, the TRL trainer, evaluation, adapter output.

Contract: `MethodRunner.create(settings, request, config, base_adapter, callbacks)` returns the runner of
`request.method`; `run()` prepares and validates the data (selection report written to the run dir) and checks the
base adapter against the base model before loading anything heavy, then trains (resuming from the last checkpoint
when asked), evaluates before and after, saves the PEFT adapter to `<run_dir>/adapter` and writes the metrics files;
`register(registry, lineage, metrics)` puts the adapter into the registry. Trainers are TRL's `SFTTrainer` and
`DPOTrainer` (reference = the base with the adapter disabled, or a frozen copy of the base adapter) and
`training.psft.PSFTTrainer`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from assistant.models import resolve_lm
from assistant.settings import Settings
from training.data.formats import load_preference_examples, load_sft_examples
from training.data.rag import is_squad_file, load_squad_examples
from training.data.records import EmptyDatasetError
from training.data.relevance import refine_selection
from training.data.render import preference_length, render_preference, tokenize_chat
from training.data.selection import SelectionOptions, SelectionReport, select_examples, write_report
from training.evaluation import PerplexityCallback, language_model_metrics, write_metrics
from training.modeling import (
    base_fingerprint,
    check_adapter_base,
    load_base_model,
    load_tokenizer,
    lora_config,
    wrap_with_lora,
)
from training.registry import AdapterRecord, AdapterRegistry

log = logging.getLogger(__name__)


def final_evaluation(state: Any) -> dict[str, Any] | None:
    """The evaluation the trainer logged at its last step, if any."""
    for entry in reversed(state.log_history):
        if "eval_loss" in entry:
            return dict(entry) if entry.get("step") == state.global_step else None
    return None


class MethodRunner:
    """Shared flow of a training run; subclasses supply the data form and the trainer."""

    method: ClassVar[str] = ""
    runners: ClassVar[dict[str, type[MethodRunner]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        MethodRunner.runners[cls.method] = cls

    def __init__(self, settings: Settings, request: Any, config: Any, base_adapter: Any, callbacks: list[Any]) -> None:
        self.settings, self.request, self.config = settings, request, config
        self.base_adapter = base_adapter
        self.callbacks = callbacks
        self.run_dir = Path(config.output_dir)
        self.base_dir = resolve_lm(settings)
        self.fingerprint = base_fingerprint(self.base_dir)
        self.tokenizer = load_tokenizer(self.base_dir)
        self.report = SelectionReport()
        self.is_main_process = True

    @classmethod
    def create(cls, settings: Settings, request: Any, config: Any, base_adapter: Any, callbacks: list[Any]) -> Any:
        return cls.runners[request.method](settings, request, config, base_adapter, callbacks)

    # --- data -------------------------------------------------------------------------------------------------
    def load_examples(self) -> list[Any]:
        raise NotImplementedError

    def encode(self, example: Any) -> dict[str, Any]:
        raise NotImplementedError

    def length(self, example: Any, encoded: dict[str, Any]) -> int:
        raise NotImplementedError

    def selection_options(self) -> SelectionOptions:
        c = self.config
        return SelectionOptions(
            min_tokens=c.min_tokens,
            max_tokens=c.max_length or 10**9,
            near_duplicate_threshold=c.near_duplicate_threshold,
            eval_split=c.eval_split,
            seed=c.seed,
        )

    def prepare_data(self) -> tuple[Any, Any]:
        """Load, encode, select and split; EmptyDatasetError when nothing is left to train on."""
        from datasets import Dataset

        examples = self.load_examples()
        if not examples:
            raise EmptyDatasetError(f"the data files {self._files()} hold no records")
        encoded = [self.encode(e) for e in examples]
        by_id = {id(e): enc for e, enc in zip(examples, encoded, strict=True)}
        lengths = [self.length(e, enc) for e, enc in zip(examples, encoded, strict=True)]
        selection = select_examples(examples, lengths, self.selection_options())
        selection = refine_selection(selection, self.config, self.settings)  # issue 11: relevance, diversity
        self.report = selection.report
        write_report(selection.report, self.run_dir, {"data_files": self._files(), "method": self.method})
        if not selection.train:
            raise EmptyDatasetError(
                f"no training examples left after selection ({selection.report.summary()}); check the data or "
                f"loosen --min-tokens / --max-length"
            )
        train = Dataset.from_list([by_id[id(e)] for e in selection.train])
        val = Dataset.from_list([by_id[id(e)] for e in selection.validation]) if selection.validation else None
        return train, val

    def _files(self) -> list[str]:
        return [str(p) for p in self.request.data_files]

    # --- model and trainer --------------------------------------------------------------------------------------
    def check_base_adapter(self) -> None:
        if self.base_adapter is None:
            return
        record = self.base_adapter.record
        recorded = record.lineage.get("base_fingerprint") if record is not None else None
        check_adapter_base(self.base_adapter.path, self.base_dir, recorded)

    def build_model(self) -> Any:
        model = load_base_model(self.base_dir, self.config.load_in_4bit)
        path = self.base_adapter.path if self.base_adapter else None
        return wrap_with_lora(model, self.config, path)

    def build_trainer(self, model: Any, train: Any, val: Any) -> Any:
        raise NotImplementedError

    def evaluate(self, trainer: Any, val: Any, stage: str) -> dict[str, float]:
        raise NotImplementedError

    def checkpoint(self) -> str | None:
        if not self.request.resume or not self.run_dir.is_dir():
            return None
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(self.run_dir))
        if last is None:
            log.warning("--resume: no checkpoint in %s, starting from the beginning", self.run_dir)
        else:
            log.info("resuming from %s", last)
        return last

    # --- the run ------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        train, val = self.prepare_data()
        self.check_base_adapter()
        if val is None:
            from transformers import IntervalStrategy

            self.config.eval_strategy = IntervalStrategy.NO
        trainer = self.build_trainer(self.build_model(), train, val)
        self.is_main_process = trainer.accelerator.is_main_process
        before = self.evaluate(trainer, val, "before")
        result = trainer.train(resume_from_checkpoint=self.checkpoint())
        after = self.evaluate(trainer, val, "after")
        self.save_adapter(trainer)
        metrics = {
            "method": self.method,
            "before": before,
            "after": after,
            "train": dict(result.metrics),
            "global_step": trainer.state.global_step,
            "train_examples": len(train),
            "validation_examples": 0 if val is None else len(val),
        }
        if self.is_main_process:
            write_metrics(self.run_dir, metrics, trainer.state.log_history)
        return metrics

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"

    def save_adapter(self, trainer: Any) -> None:
        if trainer.accelerator.is_main_process:
            model = trainer.accelerator.unwrap_model(trainer.model)
            model.save_pretrained(str(self.adapter_dir), selected_adapters=["default"])
        trainer.accelerator.wait_for_everyone()

    def register(self, registry: AdapterRegistry, lineage: dict[str, Any], metrics: dict[str, Any]) -> AdapterRecord:
        parent = self.base_adapter.record if self.base_adapter else None
        return registry.register(
            self.request.adapter_name,
            self.adapter_dir,
            base_model=str(self.base_dir),
            method=self.method,
            lineage=lineage,
            metrics=metrics,
            parent_id=parent.id if parent else None,
            job_id=self.request.job_id,
        )


class SFTRunner(MethodRunner):
    """Supervised fine-tuning; loss on the assistant tokens only (labels prepared here, collated by TRL)."""

    method = "sft"
    trainer_class_name = "SFTTrainer"

    def load_examples(self) -> list[Any]:
        examples: list[Any] = []
        for path in self.request.data_files:
            if is_squad_file(Path(path)):
                examples += load_squad_examples(
                    Path(path), self.config.rag_distractors, self.config.seed, limit=self.config.squad_limit
                )
            else:
                examples += load_sft_examples([Path(path)])
        return examples

    def encode(self, example: Any) -> dict[str, Any]:
        return tokenize_chat(self.tokenizer, example)

    def length(self, example: Any, encoded: dict[str, Any]) -> int:
        return len(encoded["input_ids"])

    def trainer_class(self) -> Any:
        from trl import SFTTrainer

        return SFTTrainer

    def build_trainer(self, model: Any, train: Any, val: Any) -> Any:
        return self.trainer_class()(
            model=model,
            args=self.config,
            train_dataset=train,
            eval_dataset=val,
            processing_class=self.tokenizer,
            callbacks=[PerplexityCallback(), *self.callbacks],
        )

    def evaluate(self, trainer: Any, val: Any, stage: str) -> dict[str, float]:
        if val is None:
            return {}
        metrics = language_model_metrics(
            trainer.model, val, trainer.data_collator, self.config.per_device_eval_batch_size
        )
        log.info(
            "%s training: validation loss %.4f, perplexity %.3f, entropy %.3f",
            stage,
            metrics["loss"],
            metrics["perplexity"],
            metrics["entropy"],
        )
        return metrics


class PSFTRunner(SFTRunner):
    """Proximal SFT (see training.psft)."""

    method = "psft"

    def trainer_class(self) -> Any:
        from training.psft import PSFTTrainer

        return PSFTTrainer


class DPORunner(MethodRunner):
    """DPO on preference pairs rendered with the server's prompt template."""

    method = "dpo"

    def load_examples(self) -> list[Any]:
        return list(load_preference_examples([Path(p) for p in self.request.data_files]))

    def encode(self, example: Any) -> dict[str, Any]:
        return render_preference(self.tokenizer, example)

    def length(self, example: Any, encoded: dict[str, Any]) -> int:
        return preference_length(self.tokenizer, example)

    def build_model(self) -> Any:
        """A fresh LoRA is left to DPOTrainer (`peft_config`): its reference is then the base with the adapter
        disabled. A continued adapter comes wrapped; TRL then keeps a frozen copy of it ('ref') as the reference."""
        if self.base_adapter is not None:
            return super().build_model()
        model = load_base_model(self.base_dir, self.config.load_in_4bit)
        self.peft_config = lora_config(model, self.config)
        return model

    def build_trainer(self, model: Any, train: Any, val: Any) -> Any:
        from trl import DPOTrainer

        return DPOTrainer(
            model=model,
            ref_model=None,
            args=self.config,
            train_dataset=train,
            eval_dataset=val,
            processing_class=self.tokenizer,
            callbacks=list(self.callbacks),
            peft_config=getattr(self, "peft_config", None),
        )

    def evaluate(self, trainer: Any, val: Any, stage: str) -> dict[str, float]:
        if val is None or stage == "before":  # before training policy == reference: rewards are all zero
            return {}
        raw = final_evaluation(trainer.state) or trainer.evaluate()  # HF already evaluates at the last step
        metrics = {k.removeprefix("eval_"): float(v) for k, v in raw.items() if k.startswith("eval_")}
        log.info(
            "%s training: reward accuracy %.3f, margin %.4f",
            stage,
            metrics.get("rewards/accuracies", 0.0),
            metrics.get("rewards/margins", 0.0),
        )
        return metrics


import training.toolbox  # noqa: E402, F401 - registers the issue-11 runners (KTO, reward, GRPO, classify, sweep)
