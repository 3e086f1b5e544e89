"""The wall-clock budget of a run (`max_minutes`): stop cleanly, evaluate, keep the best checkpoint.

Contract: `TimeBudgetCallback(max_minutes, started)` (a transformers `TrainerCallback`) lets training run until the
first optimizer step that ends at or past `started + max_minutes` (a `time.monotonic()` value: the run's start,
data preparation included), then asks the trainer to stop after it has evaluated and saved that state, so the
state reached competes with the earlier checkpoints. `enable_best_checkpoint(config)` turns on HF's
`load_best_model_at_end` by validation loss when the run evaluates (checkpoints then follow the evaluations), so the
model saved and registered after a stop is the best checkpoint so far, not merely the last. `stopped` tells whether
the budget ended the run. With a linear schedule (HF's default) the callback also makes the learning rate decay with
the time left: the multiplier is the smaller of the schedule's own (by steps) and the share of the training window
still ahead (`deadline - now` over `deadline - start of training`), so the schedule ends with the budget whatever
the CPU's speed (a step count fixed in advance would end far before or after it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from transformers import IntervalStrategy, SchedulerType, TrainerCallback

log = logging.getLogger(__name__)


class TimeBudgetCallback(TrainerCallback):
    def __init__(self, max_minutes: float, started: float) -> None:
        self.started = started
        self.deadline = started + max_minutes * 60.0
        self.max_minutes = max_minutes
        self.stopped = False
        self.stopped_at_step: int | None = None
        self.stopped_after_s: float | None = None  # from the run's start to the end of the last step
        self.last_step_s: float | None = None  # how long the last step took (the most a stop can overrun)
        self._step_began = started

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        scheduler: Any = kwargs.get("lr_scheduler")
        if args.lr_scheduler_type != SchedulerType.LINEAR or not hasattr(scheduler, "lr_lambdas"):
            return
        began = time.monotonic()
        scheduler.lr_lambdas = [self._by_time(by_steps, began) for by_steps in scheduler.lr_lambdas]
        log.info("learning rate decays linearly to the training deadline (%.0f s away)", self.deadline - began)

    def _by_time(self, by_steps: Any, began: float) -> Any:
        def multiplier(step: int) -> float:
            window = max(self.deadline - began, 1e-9)  # the deadline is read at each step: the runner may move it
            return float(min(by_steps(step), max(0.0, (self.deadline - time.monotonic()) / window)))

        return multiplier

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_began = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        self.last_step_s = now - self._step_began
        if self.stopped or now < self.deadline:  # the runner may move the deadline (training.trainers)
            return
        self.stopped, self.stopped_at_step = True, state.global_step
        self.stopped_after_s = now - self.started
        log.info("time budget of %.2f min reached at step %d: stopping", self.max_minutes, state.global_step)
        control.should_training_stop = True
        if args.eval_strategy != IntervalStrategy.NO:
            control.should_evaluate = True
        if args.save_strategy != "no":
            control.should_save = True


def enable_best_checkpoint(config: Any) -> bool:
    """Keep the best checkpoint by validation loss (HF `load_best_model_at_end`) when evaluation and saving allow it."""
    if config.eval_strategy == IntervalStrategy.NO:
        log.info("no evaluation during training (a budgeted run's default): the last state is registered")
        return False
    evaluates = config.eval_strategy == IntervalStrategy.STEPS and config.save_strategy == "steps"
    if evaluates and config.save_steps % config.eval_steps != 0:
        config.save_steps = config.eval_steps  # a checkpoint at every evaluation, so the best one can be kept
    if not evaluates:
        log.warning("max_minutes: evaluation and checkpoints are not aligned; the last state is registered")
        return False
    config.load_best_model_at_end = True
    config.metric_for_best_model = "eval_loss"
    config.greater_is_better = False
    return True
