"""The trainers of each method (SFT, PSFT, DPO): data preparation, the TRL trainer, evaluation, adapter output.

Contract: `MethodRunner.create(settings, request, config, base_adapter, callbacks)` returns the runner of
`request.method`; `run()` prepares and validates the data (selection report written to the run dir) and checks the
base adapter against the base model before loading anything heavy, then trains (resuming from the last checkpoint
when asked), evaluates before and after, saves the PEFT adapter to `<run_dir>/adapter` and writes the metrics files;
`register(registry, lineage, metrics)` puts the adapter into the registry. Trainers are TRL's `SFTTrainer` and
`DPOTrainer` (reference = the base with the adapter disabled, or a frozen copy of the base adapter) and
`training.psft.PSFTTrainer`.

SFT/PSFT data: chat/instruction files; SQuAD-format or question/answer JSONL files, which with a collection
(`request.collection`) become RAFT examples over the server's retriever and sources (`training.data.rag`) with the
questions of a share of the documents held out for the gate; preference files (feedback corrections: the exact stored
prompt and the correction as target). What the run keeps out for the gate (`training.gate.HeldOut`: questions of
held-out documents, else validation examples) is written to `<run_dir>/gate_heldout.json`. `max_minutes` bounds the
run's wall time (`training.budget`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from assistant.model_files import resolve_lm
from assistant.parts import Parts
from training.budget import TimeBudgetCallback, enable_best_checkpoint
from training.cpu_speed import score_labelled_positions_only
from training.data.dataset_formats import load_preference_examples, load_sft_examples
from training.data.rag import (
    ServingSources,
    is_qa_file,
    is_squad_file,
    load_squad_examples,
    raft_examples,
    read_questions,
)
from training.data.records import ChatExample, EmptyDatasetError, PreferenceExample
from training.data.relevance import refine_selection
from training.data.render import (
    preference_length,
    prompt_messages,
    render_preference,
    render_prompt,
    tokenize_chat,
    tokenize_completion,
)
from training.data.selection import SelectionOptions, SelectionReport, select_examples, write_report
from training.gate import HeldOut, HeldOutExample, HeldOutPair, QAItem, split_by_group
from training.lm_metrics import PerplexityCallback, language_model_metrics, write_metrics
from training.methods import METHODS, runner_class
from training.modeling import (
    base_fingerprint,
    check_adapter_base,
    load_base_model,
    load_tokenizer,
    lora_config,
    wrap_with_lora,
)
from training.progress import DATA_SHARE, EVAL_SHARE, GATE_SHARE, REGISTER_S, RunProgress
from training.registry import AdapterRecord, AdapterRegistry

log = logging.getLogger(__name__)


def final_evaluation(state: Any) -> dict[str, Any] | None:
    """The evaluation the trainer logged at its last step, if any."""
    for entry in reversed(state.log_history):
        if "eval_loss" in entry:
            return dict(entry) if entry.get("step") == state.global_step else None
    return None


def tokens_per_second(log_history: list[dict[str, Any]], train_metrics: dict[str, Any]) -> float | None:
    """Training tokens (TRL's `num_tokens`: prompt and completion, no padding) per second of the training loop."""
    tokens = max((entry.get("num_tokens", 0) for entry in log_history), default=0)
    runtime = train_metrics.get("train_runtime")
    return round(tokens / runtime, 1) if tokens and runtime else None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class MethodRunner:
    """Shared flow of a training run; subclasses supply the data form and the trainer."""

    def __init__(self, parts: Parts, request: Any, config: Any, base_adapter: Any, callbacks: list[Any]) -> None:
        self.parts, self.settings = parts, parts.settings  # the process's one Parts: db, retriever, registry
        settings = parts.settings
        self.request, self.config = request, config
        self.method: str = request.method  # the row of training.methods.METHODS this run was created from
        self.base_adapter = base_adapter
        self.callbacks = callbacks
        self.run_dir = Path(config.output_dir)
        self.base_dir = resolve_lm(settings)
        self.fingerprint = base_fingerprint(self.base_dir)
        self.tokenizer = load_tokenizer(self.base_dir)
        self.report = SelectionReport()
        self.is_main_process = True
        self.heldout = HeldOut()
        self.validation_examples: list[Any] = []
        self.started = time.monotonic()
        self.budget: TimeBudgetCallback | None = None
        self.progress = RunProgress()  # the job's, set by training.runs.train: phases, clock, cancel check
        self.data_until: float | None = None
        self.data_stats: dict[str, Any] = {}

    @classmethod
    def create(cls, parts: Parts, request: Any, config: Any, base_adapter: Any, callbacks: list[Any]) -> Any:
        """The runner of `request.method`: the class its `training.methods.METHODS` row names."""
        return runner_class(request.method)(parts, request, config, base_adapter, callbacks)

    # --- data -------------------------------------------------------------------------------------------------
    def load_examples(self) -> list[Any]:
        raise NotImplementedError

    def hold_out_pairs(self, pairs: list[PreferenceExample]) -> list[PreferenceExample]:
        """In a job run, a share of the preference pairs (whole prompts: one prompt never on both sides) is kept out
        of training for the gate (`self.heldout.pairs`); the rest is returned."""
        if not self.request.holdout or not pairs:
            return pairs
        options = self.settings.training
        train, held = split_by_group(pairs, self.prompt_text, options.gate_holdout, self.config.seed,
                                     options.gate_min_pairs)  # fmt: skip
        self.heldout.pairs += [HeldOutPair(**render_preference(self.tokenizer, p)) for p in held]
        return train

    def prompt_text(self, example: PreferenceExample) -> str:
        """The prompt as served: what the held-out split groups by."""
        return render_preference(self.tokenizer, example)["prompt"]

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
        examples = examples[: self.encode_within_budget(examples)]
        encoded = self.encoded
        by_id = {id(e): enc for e, enc in zip(examples, encoded, strict=True)}
        lengths = [self.length(e, enc) for e, enc in zip(examples, encoded, strict=True)]
        selection = select_examples(examples, lengths, self.selection_options())
        selection = refine_selection(selection, self.config, self.parts)  # relevance, diversity
        self.report = selection.report
        self.validation_examples = list(selection.validation)
        extra = {"data_files": self._files(), "method": self.method, **self.data_stats}
        write_report(selection.report, self.run_dir, extra)
        if not selection.train:
            raise EmptyDatasetError(
                f"no training examples left after selection ({selection.report.summary()}); check the data or "
                f"loosen --min-tokens / --max-length"
            )
        train = Dataset.from_list([by_id[id(e)] for e in selection.train])
        val = Dataset.from_list([by_id[id(e)] for e in selection.validation]) if selection.validation else None
        return train, val

    def encode_within_budget(self, examples: list[Any]) -> int:
        """Encode into `self.encoded` until the data phase's share of the budget is spent; how many were encoded."""
        self.encoded: list[dict[str, Any]] = []
        for example in examples:
            if self.encoded and self.data_time_up():
                log.warning("data building stopped by the time budget after %d of %d records", len(self.encoded),
                            len(examples))  # fmt: skip
                break
            self.encoded.append(self.encode(example))
            self.progress.advance(total=len(examples))
        return len(self.encoded)

    def data_time_up(self) -> bool:
        """Whether building the data has used its share of the budget (`DATA_SHARE`)."""
        return self.data_until is not None and time.monotonic() >= self.data_until

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
    def held_out_for_gate(self) -> HeldOut:
        """What the gate scores when nothing more specific was held out: validation examples as served prompts."""
        return self.heldout

    def setup_budget(self, val: Any) -> None:
        """The training phase's stop (its deadline set once the evaluation before training is measured)."""
        if self.config.max_minutes is None:
            return
        self.budget = TimeBudgetCallback(self.config.max_minutes, self.started)
        self.callbacks = [*self.callbacks, self.budget]
        if val is not None:
            enable_best_checkpoint(self.config)

    def training_deadline(self, eval_s: float) -> None:
        """Training stops early enough for the evaluation after it (as long as the one before), the gate (a job's
        share) and registering; at least one step runs."""
        if self.budget is None or self.progress.deadline is None or self.config.max_minutes is None:
            return
        gate = GATE_SHARE * self.config.max_minutes * 60.0 if self.request.holdout else 0.0
        register = min(REGISTER_S, 0.1 * self.config.max_minutes * 60.0)
        self.budget.deadline = max(time.monotonic(), self.progress.deadline - eval_s - gate - register)

    def run(self) -> dict[str, Any]:
        progress = self.progress
        self.started = progress.started  # the budget counts from the job's start
        progress.set_budget(self.config.max_minutes)
        share = progress.share_s(DATA_SHARE)
        self.data_until = None if share is None else time.monotonic() + share
        progress.phase("building_data")
        train, val = self.prepare_data()
        self.check_base_adapter()
        if val is None:
            from transformers import IntervalStrategy

            self.config.eval_strategy = IntervalStrategy.NO
        self.setup_budget(val)
        score_labelled_positions_only()
        trainer = self.build_trainer(self.build_model(), train, val)
        self.is_main_process = trainer.accelerator.is_main_process
        progress.phase("evaluating_before", None if val is None else len(val))
        eval_started = time.monotonic()
        before = self.evaluate(trainer, val, "before")
        val = self.fit_validation(trainer, val, before)
        self.training_deadline(time.monotonic() - eval_started)
        progress.phase("training", self.config.max_steps if self.config.max_steps > 0 else None)
        result = trainer.train(resume_from_checkpoint=self.checkpoint())
        progress.phase("evaluating_after", None if val is None else len(val))
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
            "wall_s": round(time.monotonic() - self.started, 2),
            "tokens_per_s": tokens_per_second(trainer.state.log_history, result.metrics),
            "peak_rss_mb": peak_rss_mb(),
            "data": self.data_stats,
        }
        if self.budget is not None:
            metrics["budget"] = {
                "max_minutes": self.config.max_minutes,
                "stopped": self.budget.stopped,
                "stopped_at_step": self.budget.stopped_at_step,
                "stopped_after_s": self.budget.stopped_after_s,
                "last_step_s": self.budget.last_step_s,
                "best_checkpoint": trainer.state.best_model_checkpoint,
                "best_eval_loss": trainer.state.best_metric,
            }
        if self.is_main_process:
            write_metrics(self.run_dir, metrics, trainer.state.log_history)
        return metrics

    def fit_validation(self, trainer: Any, val: Any, before: dict[str, Any]) -> Any:
        """The validation set cut to the examples the evaluation before training scored within its share of the
        budget (a seeded sample: the split shuffled them), so the evaluations during and after training score the
        same ones in about the same time."""
        scored = int(before.get("examples", 0))
        if val is None or not scored or scored >= len(val):
            return val
        log.info("validation set fitted to the budget: %d of %d examples", scored, len(val))
        val = val.select(range(scored))
        trainer.eval_dataset = val
        return val

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"

    def save_adapter(self, trainer: Any) -> None:
        if trainer.accelerator.is_main_process:
            model = trainer.accelerator.unwrap_model(trainer.model)
            model.save_pretrained(str(self.adapter_dir), selected_adapters=["default"])
        trainer.accelerator.wait_for_everyone()

    def register(
        self, registry: AdapterRegistry, lineage: dict[str, Any], metrics: dict[str, Any], gate: Any = None
    ) -> AdapterRecord:
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
            kind=METHODS[self.method].kind,
            gate=gate,
        )


class PreferenceRunner(MethodRunner):
    """The set-up DPO, KTO and GRPO share: a fresh LoRA is left to the TRL trainer (`peft_config`), whose reference
    is then the base with the adapter disabled; a continued adapter comes wrapped (TRL then keeps a frozen copy of it
    as the reference)."""

    peft_config: Any = None

    def build_model(self) -> Any:
        if self.base_adapter is not None:
            return super().build_model()
        model = load_base_model(self.base_dir, self.config.load_in_4bit)
        self.peft_config = lora_config(model, self.config)
        return model

    def trainer_arguments(self, model: Any, train: Any, val: Any) -> dict[str, Any]:
        """The keyword arguments every TRL trainer of these methods takes."""
        return {
            "model": model,
            "args": self.config,
            "train_dataset": train,
            "eval_dataset": val,
            "processing_class": self.tokenizer,
            "callbacks": list(self.callbacks),
            "peft_config": self.peft_config,
        }


class SFTRunner(MethodRunner):
    """Supervised fine-tuning; loss on the assistant tokens only (labels prepared here, collated by TRL)."""

    trainer_class_name = "SFTTrainer"

    def load_examples(self) -> list[Any]:
        examples: list[Any] = []
        question_files = []
        for path in map(Path, self.request.data_files):
            if self.collection and (is_squad_file(path) or is_qa_file(path)):
                question_files.append(path)
            elif is_squad_file(path):
                examples += load_squad_examples(
                    path, self.config.rag_distractors, self.config.seed, limit=self.config.squad_limit
                )
            elif _is_preference_file(path):  # feedback corrections: the stored prompt and the correction
                examples += self.hold_out_pairs(list(load_preference_examples([path])))
            else:
                examples += load_sft_examples([path])
        if question_files:
            examples += self.serving_examples(question_files)
        return examples

    @property
    def collection(self) -> str | None:
        return getattr(self.request, "collection", None)

    def serving_examples(self, files: list[Path]) -> list[ChatExample]:
        """RAFT examples over the collection; the questions of a share of the documents are held out for the gate."""
        import random

        questions = [q for path in files for q in read_questions(path)]
        if self.config.squad_limit is not None and self.config.squad_limit < len(questions):
            questions = random.Random(self.config.seed).sample(questions, self.config.squad_limit)
        options = self.settings.training
        share = options.gate_qa_holdout if self.request.holdout else 0.0
        train, held = split_by_group(questions, lambda q: q.document, share, self.config.seed, min_count=0)
        step = max(1, len(held) // options.gate_qa_limit)
        self.heldout.qa = [QAItem(q.question, q.all_answers, q.document) for q in held[::step][: options.gate_qa_limit]]
        self.heldout.collections = [self.collection] if self.collection else None
        serving = ServingSources(self.settings, self.heldout.collections, self.parts)
        examples, stats = raft_examples(
            train,
            serving,
            self.config.gold_probability,
            self.config.seed,
            self.progress,
            self.data_until,
            self.config.train_source_window,
        )
        self.data_stats = {
            "collection": self.collection,
            "questions": len(questions),
            "train_questions": len(train),
            "gate_questions": len(self.heldout.qa),
            "gate_documents": len({q.document for q in held}),
            "with_gold": stats.with_gold,
            "abstain": stats.abstain,
            "not_served": stats.not_served,
        }
        log.info("RAG examples over collection %s: %s", self.collection, self.data_stats)
        return examples

    def encode(self, example: Any) -> dict[str, Any]:
        if isinstance(example, PreferenceExample):
            return tokenize_completion(self.tokenizer, example)
        return tokenize_chat(self.tokenizer, example)

    def held_out_for_gate(self) -> HeldOut:
        if not self.heldout.qa:
            limit = self.settings.training.gate_examples
            self.heldout.examples = [self._rendered(e) for e in self.validation_examples[:limit]]
        return self.heldout

    def _rendered(self, example: Any) -> HeldOutExample:
        if isinstance(example, PreferenceExample):
            return HeldOutExample(render_preference(self.tokenizer, example)["prompt"], example.chosen)
        prompt = render_prompt(self.tokenizer, prompt_messages(example.messages[:-1], example))
        return HeldOutExample(prompt, example.answer())

    def length(self, example: Any, encoded: dict[str, Any]) -> int:
        return len(encoded["input_ids"])

    def trainer_class(self) -> Any:
        from trl import SFTTrainer

        return SFTTrainer

    def build_trainer(self, model: Any, train: Any, val: Any) -> Any:
        if self.config.padding_free and not self.config.packing:
            # selection already dropped every example longer than max_length; TRL refuses max_length here because
            # a padding-free collator would not truncate
            self.config.max_length = None
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
        seconds = self.progress.share_s(EVAL_SHARE) if stage == "before" else self.progress.left_s()
        metrics = language_model_metrics(
            trainer.model, val, trainer.data_collator, self.config.per_device_eval_batch_size, seconds,
            self.progress.advance,
        )  # fmt: skip
        log.info(
            "%s training: validation loss %.4f, perplexity %.3f, entropy %.3f",
            stage,
            metrics["loss"],
            metrics["perplexity"],
            metrics["entropy"],
        )
        return metrics


def passes_over_data(config: Any, examples: int) -> float:
    """How many times the run will see its training data (max_steps wins over num_train_epochs, as in HF)."""
    if config.max_steps and config.max_steps > 0:
        per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps * max(config.world_size, 1)
        return config.max_steps * per_step / max(examples, 1)
    return float(config.num_train_epochs)


def _is_preference_file(path: Path) -> bool:
    """A file of preference records (`chosen` + `rejected`), e.g. the pairs of stored feedback."""
    from training.data.dataset_formats import read_records

    try:
        records = read_records(path)
    except Exception:  # not readable as records: the SFT loader reports the problem with its origin
        return False
    return bool(records) and isinstance(records[0], dict) and {"chosen", "rejected"} <= set(records[0])


class PSFTRunner(SFTRunner):
    """Proximal SFT (see training.psft)."""

    def trainer_class(self) -> Any:
        from training.psft import PSFTTrainer

        return PSFTTrainer


class DPORunner(PreferenceRunner):
    """DPO on preference pairs rendered with the server's prompt template."""

    def load_examples(self) -> list[Any]:
        return self.hold_out_pairs(list(load_preference_examples([Path(p) for p in self.request.data_files])))

    def encode(self, example: Any) -> dict[str, Any]:
        return render_preference(self.tokenizer, example)

    def length(self, example: Any, encoded: dict[str, Any]) -> int:
        """The tokens the pair occupies after TRL's truncation (keep_start: the completions' tails are cut): a pair
        longer than max_length is kept while its prompt leaves at least half of max_length to the completions."""
        full = preference_length(self.tokenizer, example)
        limit = self.config.max_length
        if limit is None:
            return full
        prompt = len(self.tokenizer(encoded["prompt"], add_special_tokens=False)["input_ids"])
        return min(full, prompt + limit // 2)

    def build_trainer(self, model: Any, train: Any, val: Any) -> Any:
        from trl import DPOTrainer

        if "precompute_ref_log_probs" not in self.request.options:
            # One reference pass over the data up front pays off from one epoch on, and spares the reference
            # forward of every evaluation; a short run over a large file would pay for examples it never sees.
            self.config.precompute_ref_log_probs = passes_over_data(self.config, len(train)) >= 1.0
        progress = self.progress

        class CancellableDPOTrainer(DPOTrainer):  # type: ignore[misc]
            """TRL's reference pass runs before the first step (no callback sees it): report each batch of it, so a
            cancel stops the job there within a batch."""

            def compute_ref_log_probs(self, *args: Any, **kwargs: Any) -> Any:
                progress.report()  # publishes at most once a second, then checks for a cancel
                return super().compute_ref_log_probs(*args, **kwargs)

        return CancellableDPOTrainer(ref_model=None, **self.trainer_arguments(model, train, val))

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
