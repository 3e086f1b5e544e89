"""Evaluation during and after training, and the metrics files of a run.

Contract: `language_model_metrics(model, dataset, collator, batch_size)` returns the validation `loss` (mean token
NLL over target tokens, labels != -100), `perplexity` (its exp), `entropy` (mean predictive entropy on those tokens)
and `tokens`, computed in one no-grad pass. `PerplexityCallback` adds `eval_perplexity` next to every `eval_loss`
the trainer logs. `write_metrics(run_dir, metrics, log_history)` writes `metrics.json`, `log_history.json` and PNG
curves (matplotlib, Agg backend) of every logged series into the run directory.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)


def _batches(dataset: Sequence[dict[str, Any]], batch_size: int) -> list[list[dict[str, Any]]]:
    rows = [dataset[i] for i in range(len(dataset))]
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def language_model_metrics(
    model: Any,
    dataset: Any,
    collator: Any,
    batch_size: int = 4,
    seconds: float | None = None,
    tick: Callable[..., None] = lambda *a, **k: None,
) -> dict[str, float]:
    """Token-level NLL, perplexity and entropy of `model` on a tokenized dataset (input_ids + labels), without
    gradients. With `seconds`, batches stop once that much time has passed (at least one is scored): `examples` says how
    many were; `tick(done, total)` follows each batch."""
    import torch

    device = next(model.parameters()).device
    nll_sum, entropy_sum, tokens, examples = 0.0, 0.0, 0, 0
    was_training = model.training
    model.eval()
    started = time.monotonic()
    with torch.no_grad():
        for rows in _batches(dataset, batch_size):
            if examples and seconds is not None and time.monotonic() - started >= seconds:
                log.info("evaluation stopped by the time budget after %d of %d examples", examples, len(dataset))
                break
            batch = collator([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
            moved = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}  # padding-free: ints too
            nll, ent, n = _batch_sums(model, moved)
            nll_sum, entropy_sum, tokens, examples = nll_sum + nll, entropy_sum + ent, tokens + n, examples + len(rows)
            tick(examples, len(dataset))
    model.train(was_training)
    loss = nll_sum / max(tokens, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "entropy": entropy_sum / max(tokens, 1),
        "tokens": float(tokens),
        "examples": float(examples),
    }


def _batch_sums(model: Any, batch: dict[str, Any]) -> tuple[float, float, int]:
    """Sums over target tokens; uses TRL's fused LM head (only target positions projected) when the model has it."""
    try:
        out = model(**batch, fused_lm_head=True, use_cache=False)
    except TypeError:  # not patched by a TRL trainer: full logits
        return _batch_sums_full(model, batch)
    mask = out.label_mask
    entropy = float((out.entropy * mask).sum()) if out.entropy is not None else float("nan")
    return float(-(out.log_probs * mask).sum()), entropy, int(mask.sum())


def _batch_sums_full(model: Any, batch: dict[str, Any]) -> tuple[float, float, int]:
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    logp = torch.log_softmax(logits, dim=-1)
    token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return float(-(token_logp * mask).sum()), float((entropy * mask).sum()), int(mask.sum())


class PerplexityCallback(TrainerCallback):
    """Adds `eval_perplexity = exp(eval_loss)` to the evaluation metrics and the log history."""

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        if metrics and "eval_loss" in metrics:
            metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
            if state.log_history and state.log_history[-1].get("eval_loss") == metrics["eval_loss"]:
                state.log_history[-1]["eval_perplexity"] = metrics["eval_perplexity"]


def series(log_history: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Every numeric logged key as (step, value) points."""
    out: dict[str, list[tuple[float, float]]] = {}
    for entry in log_history:
        step = entry.get("step", 0)
        for key, value in entry.items():
            if key not in ("step", "epoch") and isinstance(value, int | float) and math.isfinite(value):
                out.setdefault(key, []).append((float(step), float(value)))
    return out


def plot_curves(log_history: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per interesting series (loss, perplexity, entropy, rewards...) with at least two points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, points in series(log_history).items():
        if len(points) < 2 or key.endswith(("runtime", "per_second", "_flos")) or key in ("learning_rate",):
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
        ax.set(xlabel="step", ylabel=key, title=key)
        fig.tight_layout()
        path = out_dir / f"curve_{key.replace('/', '_')}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def write_metrics(run_dir: Path, metrics: dict[str, Any], log_history: Sequence[dict[str, Any]]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "log_history.json").write_text(json.dumps(list(log_history), indent=2))
    path = run_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    plot_curves(log_history, run_dir)
    log.info("metrics written to %s", path)
    return path
