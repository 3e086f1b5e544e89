"""The rest of the fine-tuning toolbox (issue 11): importing this module registers its method runners.

Contract: `training.trainers` imports it at its end, so `MethodRunner.create` knows `kto` (training.kto), `reward`
(training.reward), `grpo` (training.grpo), `classify` (training.classification) and `sweep` (training.sweep).
"""

from __future__ import annotations

from training import classification, grpo, kto, reward, sweep

__all__ = ["classification", "grpo", "kto", "reward", "sweep"]
