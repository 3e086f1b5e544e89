"""`training.progress.RunProgress`: a phase's ETA is its pace so far, never past the run's budget."""

from __future__ import annotations

import pytest

from training import progress as progress_module
from training.progress import RunProgress


def test_the_eta_is_the_pace_capped_by_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    run = RunProgress(max_minutes=10, started=100.0)  # deadline at 700
    run.phase("training", 500)  # an epoch of 500 steps
    clock[0] = 200.0
    run.advance(10)  # 10 s a step: 490 steps left at that pace = 4900 s, but the budget ends in 500 s
    assert run.eta_s() == 500.0
    assert run.snapshot()["budget_left_s"] == 500.0
    run.advance(500)  # the count, not an increment
    assert run.eta_s() == 0.0
    clock[0] = 100.0
    unbounded = RunProgress(started=100.0)
    unbounded.phase("training", 500)
    clock[0] = 200.0
    unbounded.advance(10)
    assert unbounded.eta_s() == 4900.0  # without a budget: the pace alone
