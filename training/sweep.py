"""Hyperparameter search: a grid over learning rate, batch size, epochs and LoRA rank, chosen by validation loss.

Contract: `SweepRunner` (`method: sweep`) validates the data once (the same selection as the trial method), then
runs one trial per grid point with the trial method's runner (`sweep_method`: sft or classify) in
`<run_dir>/trial-<k>`, every trial with the same data, split and seed. The best trial is the one with the lowest
validation loss after training. It writes `sweep.json`, `sweep.csv`, a Markdown table `sweep.md` and `sweep.png`
(validation loss per trial) into the run directory, copies the best trial's adapter to `<run_dir>/adapter`, and
that adapter is what gets registered (its metrics carry the whole table and the best hyperparameters). Empty grid
dimensions keep the run's own value (`--lr`, `--batch-size`, `--epochs`, `--lora-r`).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from training.config import build_run_config
from training.trainers import MethodRunner

log = logging.getLogger(__name__)
GRID = (
    ("learning_rate", "sweep_learning_rates"),
    ("per_device_train_batch_size", "sweep_batch_sizes"),
    ("num_train_epochs", "sweep_epochs"),
    ("lora_r", "sweep_lora_ranks"),
)


def grid_points(config: Any) -> list[dict[str, Any]]:
    axes = [[(name, v) for v in (getattr(config, field) or [getattr(config, name)])] for name, field in GRID]
    points = []
    for combo in itertools.product(*axes):
        point = dict(combo)
        point["per_device_train_batch_size"] = int(point["per_device_train_batch_size"])
        point["lora_r"] = int(point["lora_r"])
        points.append(point)
    return points


class SweepRunner(MethodRunner):
    """Runs the grid; each trial is a full run of the trial method."""

    def trial_runner(self, index: int, point: dict[str, Any]) -> Any:
        sweep_fields = {f.name for f in dataclasses.fields(self.config)} - set(_trial_fields(self.config.sweep_method))
        from training.runs import load_recipe

        given = {**load_recipe(self.request.recipe), **self.request.options}
        options = {k: v for k, v in given.items() if k not in sweep_fields}
        if self.config.sweep_method == "sft":
            options.pop("classify_eval_limit", None)
        options.update(point)
        config = build_run_config(self.config.sweep_method, self.run_dir / f"trial-{index}", options)
        request = dataclasses.replace(self.request, method=self.config.sweep_method)
        runner = MethodRunner.create(self.parts, request, config, self.base_adapter, self.callbacks)
        runner.progress = self.progress  # the job's phases, clock and cancel check
        return runner

    def run(self) -> dict[str, Any]:
        points = grid_points(self.config)
        first = self.trial_runner(0, points[0])
        first.prepare_data()  # bad data fails here, before any trial trains
        self.check_base_adapter()
        self.report = first.report
        trials = []
        for index, point in enumerate(points):
            runner = first if index == 0 else self.trial_runner(index, point)
            started = time.time()
            metrics = runner.run()
            loss = metrics["after"].get("loss")
            trials.append({"trial": index, **point, "validation_loss": loss, "train_loss": metrics["train"].get(
                "train_loss"), "seconds": round(time.time() - started, 1), "run_dir": str(runner.run_dir),
                **{k: metrics["after"][k] for k in ("accuracy", "macro_f1") if k in metrics["after"]}})  # fmt: skip
            log.info("sweep trial %d %s: validation loss %s", index, point, loss)
            if index == 0:
                self.is_main_process = runner.is_main_process
        scored = [t for t in trials if t["validation_loss"] is not None]
        if not scored:
            from training.data.records import EmptyDatasetError

            raise EmptyDatasetError("the sweep needs a validation split to choose by validation loss (--eval-split)")
        best = min(scored, key=lambda t: t["validation_loss"])
        shutil.copytree(Path(best["run_dir"]) / "adapter", self.adapter_dir, dirs_exist_ok=True)
        best_metrics = json.loads((Path(best["run_dir"]) / "metrics.json").read_text())
        write_sweep_outputs(self.run_dir, trials, best["trial"])
        metrics = {
            **best_metrics,
            "method": self.method,
            "trial_method": self.config.sweep_method,
            "trials": trials,
            "best_trial": best["trial"],
            "best_hyperparameters": {name: best[name] for name, _ in GRID},
        }
        (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        return metrics


def _trial_fields(method: str) -> list[str]:
    from training.config import config_fields

    return sorted(config_fields(method))


def write_sweep_outputs(run_dir: Path, trials: list[dict[str, Any]], best: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "sweep.json").write_text(json.dumps({"best_trial": best, "trials": trials}, indent=2))
    columns = [c for c in trials[0] if c != "run_dir"]
    with (run_dir / "sweep.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(trials)
    (run_dir / "sweep.md").write_text(sweep_table(trials, best))
    plot_sweep(trials, best, run_dir / "sweep.png")


def sweep_table(trials: list[dict[str, Any]], best: int) -> str:
    columns = [c for c in trials[0] if c != "run_dir"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for trial in trials:
        cells = [f"{trial[c]:.4g}" if isinstance(trial[c], float) else str(trial[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |" + (" best" if trial["trial"] == best else ""))
    return "\n".join(lines) + "\n"


def plot_sweep(trials: list[dict[str, Any]], best: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"lr={t['learning_rate']:.0e}\nbs={t['per_device_train_batch_size']} ep={t['num_train_epochs']:g} "
              f"r={t['lora_r']}" for t in trials]  # fmt: skip
    losses = [t["validation_loss"] if t["validation_loss"] is not None else float("nan") for t in trials]
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(trials)), 3.6))
    ax.bar(range(len(trials)), losses, color=["tab:green" if t["trial"] == best else "tab:blue" for t in trials])
    ax.set_xticks(range(len(trials)), labels, fontsize=7)
    ax.set(ylabel="validation loss", title="hyperparameter sweep (green = best)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
