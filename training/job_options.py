"""What a training job submitted over the API may set in `hyperparameters`: a whitelist with bounds, per method.

Contract: `check_job_options(method, options)` returns the options unchanged when every key is allowed for the method
and every value has the right type and lies within its bounds; otherwise it raises `UnprocessableError` (422) whose
`param` is `hyperparameters.KEY` and whose message names the key and lists the allowed ones. Anything not listed
(TRL/transformers fields such as `push_to_hub`, `dataloader_num_workers`, `output_dir`, `save_steps`) is refused:
the server, not the caller, decides where and how a job writes and what it may reach. A sweep's grid lists
(`sweep_learning_rates`, `sweep_batch_sizes`, `sweep_epochs`, `sweep_lora_ranks`) hold at most 8 values, each within
the bound of the option it sweeps, and their product (the trial count) at most `sweep_max_trials` (default 16).

To allow a field: add it to `training.option_bounds.COMMON_OPTIONS` (every method) or to the `job_options` of the
method's row in `training.methods.METHODS` (its bounds live in `training.option_bounds`).
"""

from __future__ import annotations

from typing import Any

from assistant.errors import UnprocessableError
from training.methods import METHODS
from training.option_bounds import COMMON_OPTIONS, MAX_TRIALS, SELECTION, SWEEP_GRID, Bound

METHOD_OPTIONS: dict[str, dict[str, Bound]] = {name: {**m.job_options, **SELECTION} for name, m in METHODS.items()}


def allowed_options(method: str) -> dict[str, Bound]:
    """The options a job of `method` may set: the common ones it has a field for, and its own (its table row)."""
    options = {**COMMON_OPTIONS, **METHOD_OPTIONS.get(method, {})}
    skip = METHODS[method].no_options if method in METHODS else frozenset()
    return {key: bound for key, bound in options.items() if key not in skip}


def check_job_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options, or 422 naming the first key that is not allowed or out of bounds."""
    allowed = allowed_options(method)
    for key, value in options.items():
        bound = allowed.get(key)
        if bound is None:
            raise UnprocessableError(
                f"hyperparameters.{key} is not an option a {method} job may set; allowed: {', '.join(sorted(allowed))}",
                param=f"hyperparameters.{key}",
                code="unknown_hyperparameter",
            )
        problem = bound.problem(value)
        if problem is not None:
            raise UnprocessableError(
                f"hyperparameters.{key} {problem} (got {value!r})", param=f"hyperparameters.{key}", code="out_of_bounds"
            )
    if method == "sweep":
        _check_grid(options)
    return options


def _check_grid(options: dict[str, Any]) -> None:
    """A sweep runs one full training per grid point: the grid may have at most `sweep_max_trials` points."""
    trials = 1
    for key, default in SWEEP_GRID.items():
        trials *= len(options[key]) if key in options else default
    limit = options.get("sweep_max_trials", MAX_TRIALS)
    if trials > limit:
        raise UnprocessableError(
            f"hyperparameters.sweep_* grid has {trials} trials, more than sweep_max_trials={limit}",
            param="hyperparameters.sweep_max_trials",
            code="out_of_bounds",
        )
