"""The phases of a training job, its clock and its cancel check: one object passed down a run.

Contract: a job goes through `PHASES` in order (building_data, evaluating_before, training, evaluating_after, gating,
registering; a CLI run has no gating). `RunProgress(max_minutes)` is what the runner, the evaluations and the gate
report to: `phase(name, total)` starts a phase (one log line), `advance(done, total)` moves its count; every report
also checks the clock and, through `check()`, whether the run must stop (a job's `JobProgress` in `training.worker`
raises `JobCancelled` there when the job was cancelled). Reports reach `publish(snapshot)` at most every
`interval_s` (a job writes them to its row), so a caller may report per example.
The budget: `deadline` is `started + max_minutes` (None: no budget). `left_s()` is the time to it; `share_s(f)` is a
phase's slice (`f` of the budget, never past the deadline); `expired()` says the deadline has passed. The job's
phases stop on it: data building keeps what it built, evaluations and the gate score a prefix of their (sampled)
items, training stops at the next step end (`training.budget`), so a job ends at most one training step, one
evaluated item and the time to save and register after `max_minutes`.
`snapshot()` is the JSON a job row keeps in `phase_progress`: done, total, eta_s of the phase, elapsed_s and
budget_left_s of the run, and `phases`, the phases seen so far.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)
# Shares of `max_minutes` (the whole job's budget): building the data stops at DATA_SHARE, the evaluation before
# training at EVAL_SHARE (the one after scores the same examples), the gate gets GATE_SHARE, and training stops early
# enough to leave those and REGISTER_S seconds (at most a tenth of the budget) to save and register. The evaluation
# and gate shares are what a 15-minute job can spare and still train for most of its budget (45 s of validation
# loss twice, 90 s of held-out questions); their sets are cut to what fits.
DATA_SHARE, EVAL_SHARE, GATE_SHARE, REGISTER_S = 0.3, 0.05, 0.1, 10.0
PHASES = ("building_data", "evaluating_before", "training", "evaluating_after", "gating", "registering")


class JobCancelled(Exception):
    """The job was cancelled (or taken from its worker): stop, register nothing."""


class RunProgress:
    """Phase, counts and budget of one run (see the module contract); the base class only logs."""

    interval_s = 1.0

    def __init__(self, max_minutes: float | None = None, started: float | None = None) -> None:
        self.started = time.monotonic() if started is None else started
        self.max_minutes = max_minutes
        self.deadline = None if max_minutes is None else self.started + max_minutes * 60.0
        self.name: str | None = None
        self.done = 0
        self.total: int | None = None
        self.seen: list[str] = []
        self._phase_started = self.started
        self._reported = 0.0

    def set_budget(self, max_minutes: float | None) -> None:
        """The run's budget, counted from its start (known once the options are read)."""
        self.max_minutes = max_minutes
        self.deadline = None if max_minutes is None else self.started + max_minutes * 60.0

    # ------------------------------------------------------------ the clock

    def left_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def expired(self) -> bool:
        left = self.left_s()
        return left is not None and left <= 0

    def share_s(self, fraction: float) -> float | None:
        """`fraction` of the budget for one phase, never past the deadline (None: no budget)."""
        left = self.left_s()
        if left is None or self.max_minutes is None:
            return None
        return max(0.0, min(left, fraction * self.max_minutes * 60.0))

    # ------------------------------------------------------------ reports

    def phase(self, name: str, total: int | None = None) -> None:
        self.name, self.done, self.total = name, 0, total
        self._phase_started = time.monotonic()
        if name not in self.seen:
            self.seen.append(name)
        left = self.left_s()
        budget = "" if left is None else f", {max(left, 0.0):.0f} s of the budget left"
        log.info("phase %s%s%s", name, "" if total is None else f" ({total} items)", budget)
        self.report(force=True)

    def advance(self, done: int | None = None, total: int | None = None) -> None:
        """The phase's count is `done` (or one more); `total` when it became known."""
        self.done = self.done + 1 if done is None else done
        if total is not None:
            self.total = total
        self.report()

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._reported >= self.interval_s:
            self._reported = now
            self.publish(self.snapshot())
            self.check()

    def eta_s(self) -> float | None:
        """The phase's time left at its pace so far, at most the budget's (None until something is done or without a
        total)."""
        if not self.total or not self.done:
            return None
        elapsed = time.monotonic() - self._phase_started
        pace = elapsed / self.done * max(self.total - self.done, 0)
        left = self.left_s()  # no phase runs past the budget: an epoch of 500 steps in a 15-minute job ends with it
        return round(pace if left is None else min(pace, max(left, 0.0)), 1)

    def snapshot(self) -> dict[str, Any]:
        left = self.left_s()
        return {
            "done": self.done,
            "total": self.total,
            "eta_s": self.eta_s(),
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "budget_left_s": None if left is None else round(max(left, 0.0), 1),
            "phases": list(self.seen),
        }

    def publish(self, snapshot: dict[str, Any]) -> None:
        """Where reports go (a job: its row); the base class keeps them in the log only."""

    def check(self) -> None:
        """Raise `JobCancelled` when the run must stop (a job that was cancelled); the base class never does."""
