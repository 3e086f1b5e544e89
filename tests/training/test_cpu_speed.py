"""CPU training speed: TRL's fused LM head scores labelled positions only, with the same loss, gradients and metrics;
bfloat16 autocast is the CPU default exactly where the processor has bfloat16 instructions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from training import cpu_speed
from training.config import build_run_config


def _fused_model(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    return model


def _step(model: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[int]]:
    """One loss + backward through the fused head; returns the outputs, gradients and the rows the head scored."""
    from trl.trainer import utils as trl_utils

    scored: list[int] = []
    real_apply = trl_utils._ChunkedLogProbFunction.apply

    def counting_apply(hidden: torch.Tensor, *rest: Any) -> Any:
        scored.append(hidden.shape[0])
        return real_apply(hidden, *rest)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting_apply)
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, model.config.vocab_size, (2, 24), generator=generator)
    labels = input_ids.clone()
    labels[0, :18] = -100  # a prompt without labels, then a short answer
    labels[1, :20] = -100
    model.zero_grad()
    out = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    result = {
        "loss": out.loss.detach(),
        "entropy": out.entropy.detach(),
        "is_top1": out.is_top1.detach(),
        "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
    }
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", real_apply)
    return result, scored


def test_labelled_positions_only_give_the_same_loss_gradients_and_metrics(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trl.kernels.chunked_logprob import _use_triton as trl_choice
    from trl.trainer import utils as trl_utils

    monkeypatch.setattr(trl_utils, "_use_triton", trl_choice)  # TRL's own choice (a training run may have patched it)
    model = _fused_model(tiny_model_dir)
    every, every_rows = _step(model, monkeypatch)
    assert cpu_speed.score_labelled_positions_only()
    assert cpu_speed.score_labelled_positions_only()  # idempotent
    compact, compact_rows = _step(model, monkeypatch)

    assert every_rows == [2 * 23]  # TRL on CPU: every shifted position
    assert compact_rows == [(23 - 17) + (23 - 19)]  # patched: the labelled ones only
    torch.testing.assert_close(compact["loss"], every["loss"])
    torch.testing.assert_close(compact["entropy"], every["entropy"])
    assert torch.equal(compact["is_top1"], every["is_top1"])
    assert compact["grads"].keys() == every["grads"].keys() and compact["grads"]
    for name, grad in every["grads"].items():
        torch.testing.assert_close(compact["grads"][name], grad, msg=name)


def test_cpu_runs_use_bf16_exactly_where_the_cpu_has_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.cuda.is_available():
        pytest.skip("the CPU default applies without CUDA")
    monkeypatch.setattr("training.config.cpu_bf16_supported", lambda: True)
    config = build_run_config("sft", tmp_path / "a")
    assert config.bf16 and config.use_cpu
    monkeypatch.setattr("training.config.cpu_bf16_supported", lambda: False)
    config = build_run_config("sft", tmp_path / "b")
    assert not config.bf16 and not config.use_cpu
    assert not build_run_config("dpo", tmp_path / "c", {"bf16": False}).bf16  # an explicit choice wins


def test_bf16_support_matches_the_processor_flags() -> None:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if not flags:
        pytest.skip("no /proc/cpuinfo to compare with")
    has_bf16 = " avx512_bf16" in flags or " amx_bf16" in flags
    assert cpu_speed.cpu_bf16_supported() == has_bf16
