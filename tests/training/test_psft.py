"""PSFT's old policy: exact ratio 1 right after a refresh with the default config, and TRL's world-size scaling."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
import torch

from assistant.settings import Settings
from tests.training.test_trainers import first_batch, make_runner, prepared
from training.config import build_run_config


def psft_trainer(settings: Settings, sft_file: Path, run_dir: Path) -> object:
    runner = make_runner(settings, "psft", sft_file, run_dir)  # default config: lora_dropout 0.05
    assert runner.config.lora_dropout > 0
    trainer, _ = prepared(runner, randomize_lora=0.05)
    return trainer


def test_ratio_is_exactly_one_after_refresh_with_default_dropout(
    settings: Settings, sft_file: Path, tmp_path: Path
) -> None:
    trainer = psft_trainer(settings, sft_file, tmp_path / "run")
    model = trainer.model  # type: ignore[attr-defined]
    model.train()
    dropouts = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_dropout" in n]
    assert dropouts and all(m.p == 0 for m in dropouts)  # disabled as TRL's DPO/GRPO do
    batch = first_batch(trainer)
    trainer.refresh_snapshot()  # type: ignore[attr-defined]
    metrics = trainer._metrics["train"]  # type: ignore[attr-defined]
    for _ in range(3):  # several passes: no randomness may enter either forward
        trainer.compute_loss(model, dict(batch))  # type: ignore[attr-defined]
        assert metrics["psft/ratio_min"][-1] == 1.0 and metrics["psft/ratio_max"][-1] == 1.0
    # After an optimizer step without a refresh the snapshot is the old policy: ratios move away from 1.
    loss = trainer.compute_loss(model, dict(batch))  # type: ignore[attr-defined]
    loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    trainer.compute_loss(model, dict(batch))  # type: ignore[attr-defined]
    assert metrics["psft/ratio_max"][-1] > 1.0 or metrics["psft/ratio_min"][-1] < 1.0


def test_old_policy_has_no_dropout_even_when_dropout_is_kept(
    settings: Settings, sft_file: Path, tmp_path: Path
) -> None:
    runner = make_runner(settings, "psft", sft_file, tmp_path / "run", disable_dropout=False, lora_dropout=0.5)
    trainer, _ = prepared(runner, randomize_lora=0.05)
    model = trainer.model
    model.train()
    batch = {**first_batch(trainer), "use_cache": False}
    trainer.refresh_snapshot()
    first, second = trainer.old_log_probs(model, batch), trainer.old_log_probs(model, batch)
    assert torch.equal(first, second) and model.training  # deterministic, and the train mode is restored
    model.eval()
    with torch.no_grad():
        assert torch.equal(first, model(**batch, fused_lm_head=True).log_probs)


def test_loss_scaled_by_world_size_like_trl(settings: Settings, sft_file: Path, tmp_path: Path) -> None:
    trainer = psft_trainer(settings, sft_file, tmp_path / "run")
    model = trainer.model  # type: ignore[attr-defined]
    model.train()
    batch = first_batch(trainer)
    trainer.refresh_snapshot()  # type: ignore[attr-defined]
    items = torch.tensor(40)
    single = trainer.compute_loss(model, dict(batch), num_items_in_batch=items)  # type: ignore[attr-defined]
    accelerator = type(trainer.accelerator)  # type: ignore[attr-defined]
    with mock.patch.object(accelerator, "num_processes", new_callable=mock.PropertyMock, return_value=2):
        double = trainer.compute_loss(model, dict(batch), num_items_in_batch=items)  # type: ignore[attr-defined]
    assert double.item() == pytest.approx(2 * single.item(), rel=1e-6)
    n_tokens = int((batch["labels"][:, 1:] != -100).sum())
    assert single.item() == pytest.approx(-n_tokens / 40, rel=1e-5)  # r = 1 everywhere: -sum(1) / items


def test_eps_low_never_changes_loss_or_gradient_as_its_help_says() -> None:
    from dataclasses import fields

    from training.config import PSFTRunConfig
    from training.psft import proximal_loss

    help_text = next(f.metadata["help"] for f in fields(PSFTRunConfig) if f.name == "eps_low")
    assert "never changes the loss" in help_text
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    ratios = torch.tensor([[0.3, 0.7, 1.1, 1.5]])  # below both lower bounds, between, inside, above 1 + eps_high
    mask = torch.ones_like(old)
    results = []
    for eps_low in (0.2, 0.6):
        logp = (old + torch.log(ratios)).requires_grad_()
        loss, _ = proximal_loss(logp, old, mask, eps_low, 0.28, mask.sum())
        loss.backward()
        results.append((loss.item(), logp.grad.clone()))
    assert results[0][0] == pytest.approx(results[1][0]) and torch.equal(results[0][1], results[1][1])
    # d(-r/4)/dlogp = -r/4 except the token past 1 + eps_high, which gets none
    assert torch.allclose(results[0][1], torch.tensor([[-0.075, -0.175, -0.275, 0.0]]))
    assert build_run_config("psft", Path("/tmp/x"), {}).disable_dropout is True


@pytest.mark.parametrize("method", ["sft", "psft"])
def test_padding_free_batches_give_the_padded_loss(
    settings: Settings, sft_file: Path, tmp_path: Path, method: str
) -> None:
    """On CPU (SDPA) a padding-free batch is one flattened sequence with position_ids: same loss, no pad tokens."""
    losses = []
    for padding_free in (False, True):
        runner = make_runner(settings, method, sft_file, tmp_path / f"run-{padding_free}", padding_free=padding_free)
        torch.manual_seed(0)  # the same LoRA A initialisation in both runs
        trainer, _ = prepared(runner, randomize_lora=0.05)
        batch = first_batch(trainer, 4)
        assert ("attention_mask" not in batch) == padding_free
        trainer.model.train(method == "psft")  # SFT keeps LoRA dropout in training mode: compare without it
        if method == "psft":
            trainer.refresh_snapshot()
        losses.append(trainer.compute_loss(trainer.model, dict(batch)).item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


@pytest.mark.parametrize("padding_free", [False, True])
def test_counts_training_tokens_as_trl_sft_does(
    settings: Settings, sft_file: Path, tmp_path: Path, padding_free: bool
) -> None:
    """The job's tokens/s reads TRL's `num_tokens`: PSFT's loss must count the same tokens SFT's does."""
    counts = []
    for method in ("sft", "psft"):
        runner = make_runner(settings, method, sft_file, tmp_path / method, padding_free=padding_free)
        trainer, _ = prepared(runner, randomize_lora=0.05)
        batch = first_batch(trainer, 4)
        trainer.model.train()
        if method == "psft":
            trainer.refresh_snapshot()
        for _ in range(2):  # cumulative, as TRL's
            trainer.compute_loss(trainer.model, dict(batch))
        counts.append(trainer._metrics["train"]["num_tokens"])
    real = int(batch["attention_mask"].sum()) if not padding_free else batch["position_ids"].size(1)
    assert counts[1] == counts[0] == [2 * real]
