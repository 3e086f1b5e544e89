"""Training steps as progress events, for a display that follows a run (the CLI's `assistant train` bar).

Contract: `step_callback(on_step)` is a transformers `TrainerCallback` (transformers is imported when it is called)
that calls `on_step(StepProgress(step, max_steps, loss))` on the main process: once when training begins (step 0,
or the resumed step) and at the end of every optimizer step (of a logging step: once its log is written); `loss` is
the training loss of the trainer's latest log (None before the first `logging_steps`). `max_steps` is the trainer's
own count (from `max_steps` or the epochs). A job in the worker reports its steps through
`training.worker.ProgressCallback` instead (to its row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepProgress:
    """Where training stands: `step` of `max_steps` optimizer steps, the latest logged training loss."""

    step: int
    max_steps: int
    loss: float | None


def step_callback(on_step: Callable[[StepProgress], None]) -> Any:
    """A `TrainerCallback` reporting each step to `on_step` (see the module contract)."""
    from transformers import TrainerCallback

    class StepReporter(TrainerCallback):  # type: ignore[misc]
        loss: float | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._report(state)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            loss = (logs or {}).get("loss")
            if isinstance(loss, int | float):
                self.loss = float(loss)
                self._report(state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not control.should_log:  # a logging step is reported by `on_log`, which follows with its loss
                self._report(state)

        def _report(self, state: Any) -> None:
            if state.is_world_process_zero:
                on_step(StepProgress(int(state.global_step), int(state.max_steps or 0), self.loss))

    return StepReporter()
