"""PSFT (proximal SFT): SFT with a PPO-style clipped ratio against a snapshot of the LoRA weights.

Contract: `PSFTTrainer` is TRL's `SFTTrainer` with `compute_loss` replaced, in training mode, by
    loss = -mean_t[ min(r_t, clip(r_t, 1 - eps_low, 1 + eps_high)) ],   r_t = exp(logp_t - logp_old_t.detach())
over the target tokens (labels != -100), where the old policy is a snapshot of the trainable (LoRA) weights taken at
the start and refreshed every `psft_refresh_steps` optimizer steps. Old log-probs come from the same PeftModel with
the snapshot weights swapped in, in eval mode (no dropout) under `no_grad` (no second model copy). Like TRL's DPO and
GRPO trainers, dropout is disabled in the model by default (`disable_dropout`), so right after a refresh r_t is exactly
1 and the gradient is the SFT gradient; tokens whose ratio is past 1 + eps_high get none. With the positive advantage
of SFT, `eps_low` never changes the loss (min(r, clip(r, ...)) = r below 1 - eps_low); the share of such tokens is
logged. Like TRL's `SFTTrainer.compute_loss`, a loss normalised by `num_items_in_batch` (the target tokens of every
rank) is multiplied by the number of processes, because DDP averages the gradients across ranks; and like it, the
training tokens seen are counted into `num_tokens` (the job's tokens/s reads it). Evaluation uses the plain SFT loss
(token NLL), so validation loss and perplexity compare across methods.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from trl import SFTTrainer
from trl.trainer.utils import disable_dropout_in_model

from training.config import PSFTRunConfig

log = logging.getLogger(__name__)


def proximal_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, eps_low: float, eps_high: float, denom: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped objective summed over `mask` and divided by `denom`; also the per-token ratio (detached)."""
    ratio = torch.exp(logp - old_logp.detach())
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = -torch.minimum(ratio, clipped) * mask
    return per_token.sum() / torch.as_tensor(denom).clamp(min=1), ratio.detach()


class PSFTTrainer(SFTTrainer):
    """SFTTrainer with the proximal SFT objective; `args` is a `PSFTRunConfig`."""

    args: PSFTRunConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.args.disable_dropout and self.model is not None:
            disable_dropout_in_model(self.model)
        self._snapshot: dict[str, torch.Tensor] = {}
        self._snapshot_step = -1

    def trainable_parameters(self) -> dict[str, torch.nn.Parameter]:
        model: Any = self.model
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def refresh_snapshot(self) -> None:
        """Old policy := current trainable weights."""
        self._snapshot = {n: p.detach().clone() for n, p in self.trainable_parameters().items()}
        self._snapshot_step = self.state.global_step
        log.debug("PSFT snapshot refreshed at step %d", self._snapshot_step)

    def _maybe_refresh(self) -> None:
        due = self.state.global_step - self._snapshot_step >= self.args.psft_refresh_steps
        if not self._snapshot or due:
            self.refresh_snapshot()

    @contextmanager
    def snapshot_weights(self) -> Iterator[None]:
        """Temporarily swap the snapshot into the trainable parameters (no autograd record)."""
        params = self.trainable_parameters()
        current = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(self._snapshot[name])
            try:
                yield
            finally:
                for name, param in params.items():
                    param.copy_(current[name])

    def old_log_probs(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        """Log-probs of the snapshot policy, in eval mode: dropout must not make the old policy a random one."""
        was_training = model.training
        model.eval()
        try:
            with self.snapshot_weights(), torch.no_grad():
                return model(**inputs, fused_lm_head=True).log_probs
        finally:
            model.train(was_training)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self._maybe_refresh()
        inputs["use_cache"] = False
        old = self.old_log_probs(model, inputs)  # before the graph is built: the swap writes the weights in place
        outputs = model(**inputs, fused_lm_head=True)
        mask = outputs.label_mask.to(outputs.log_probs.dtype)
        denom = mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss, ratio = proximal_loss(outputs.log_probs, old, mask, self.args.eps_low, self.args.eps_high, denom)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # as TRL's SFTTrainer: `num_items_in_batch` counts every rank's tokens and DDP averages the gradients
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        self._log_ratio_metrics(ratio, mask, outputs)
        self._count_train_tokens(inputs)
        return (loss, outputs) if return_outputs else loss

    def _count_train_tokens(self, inputs: dict[str, Any]) -> None:
        """TRL's `num_tokens` (input tokens, no padding), counted by SFT's loss, which this one replaces."""
        if "attention_mask" in inputs:
            local = inputs["attention_mask"].sum()
        else:  # padding-free: one flattened row, its length is the token count
            local = torch.tensor(inputs["position_ids"].size(1), device=inputs["position_ids"].device)
        self._total_train_tokens += self.accelerator.gather_for_metrics(local).sum().item() // self._tp_size
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]

    def _log_ratio_metrics(self, ratio: torch.Tensor, mask: torch.Tensor, outputs: Any) -> None:
        n = mask.sum().clamp(min=1)
        high = ((ratio > 1.0 + self.args.eps_high).float() * mask).sum() / n
        low = ((ratio < 1.0 - self.args.eps_low).float() * mask).sum() / n
        target = mask.bool()
        metrics = self._metrics["train"]
        metrics["psft/ratio_mean"].append(((ratio * mask).sum() / n).item())
        metrics["psft/ratio_min"].append(ratio[target].min().item() if target.any() else 1.0)
        metrics["psft/ratio_max"].append(ratio[target].max().item() if target.any() else 1.0)
        metrics["psft/clip_high_fraction"].append(high.item())
        metrics["psft/below_low_fraction"].append(low.item())
        if outputs.entropy is not None:
            metrics["entropy"].append(((outputs.entropy.detach() * mask).sum() / n).item())
