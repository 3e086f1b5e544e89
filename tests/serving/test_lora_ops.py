"""The grouped LoRA ops compute what vLLM's PyTorch-native ops compute (a per-token loop here, written from their
definition, is the reference: vLLM's own functions may already be replaced in this process), and vLLM loads them."""

from __future__ import annotations

import pytest
import torch

from serving.engines import lora_ops

vllm_ops = pytest.importorskip("vllm.lora.ops.torch_ops.lora_ops")


def per_token(x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """out[b] = weights[idx[b]] @ x[b], one token at a time (negative slots index from the end, as in vLLM)."""
    stacked = weights.squeeze(1) if weights.dim() == 4 else weights
    return torch.stack([stacked[int(i)] @ x[b] for b, i in enumerate(idx)])


@pytest.mark.parametrize("indices", [[0, 0, 0, 0, 0], [2, 0, 2, -1, 1], [-1, -1, -1, -1, -1], [3]])
@pytest.mark.parametrize("four_d", [True, False])
def test_grouped_ops_equal_vllm(indices: list[int], four_d: bool) -> None:
    torch.manual_seed(len(indices))
    idx = torch.tensor(indices)
    tokens, rank, hidden, slots = len(indices), 8, 24, 4
    x = torch.randn(tokens, hidden)
    shrink_w = torch.randn(slots, 1, rank, hidden) if four_d else torch.randn(slots, rank, hidden)
    got = torch.zeros(tokens, rank)
    expected = 0.5 * per_token(x, shrink_w, idx)
    lora_ops.bgmv_shrink(x, shrink_w, got, idx, 0.5)
    assert torch.allclose(got, expected, atol=1e-5)

    h = torch.randn(tokens, rank)
    expand_w = torch.randn(slots, 1, hidden, rank) if four_d else torch.randn(slots, hidden, rank)
    for add in (True, False):
        base = torch.randn(tokens, hidden + 3)  # the model's output may be padded wider than the adapter's
        delta = per_token(h, expand_w, idx)
        expected_out, got_out = base.clone(), base.clone()
        expected_out[:, :hidden] = (expected_out[:, :hidden] if add else 0) + delta
        lora_ops.bgmv_expand(h, expand_w, got_out, idx, add)
        assert torch.allclose(got_out, expected_out, atol=1e-5)
        expected_out, got_out = base.clone(), base.clone()
        expected_out[:, 2 : 2 + hidden] = (expected_out[:, 2 : 2 + hidden] if add else 0) + delta
        lora_ops.bgmv_expand_slice(h, expand_w, got_out, idx, 2, hidden, add)
        assert torch.allclose(got_out, expected_out, atol=1e-5)


def test_registered_as_a_vllm_general_plugin() -> None:
    from importlib.metadata import entry_points

    plugins = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert plugins.get("assistant_grouped_lora") == "serving.engines.lora_ops:register"
    punica_cpu = pytest.importorskip("vllm.lora.punica_wrapper.punica_cpu")
    lora_ops.register()
    assert punica_cpu.bgmv_shrink is lora_ops.bgmv_shrink and vllm_ops.bgmv_expand is lora_ops.bgmv_expand
