"""The platform's LoRA ops compute what vLLM's PyTorch-native ops are defined to compute (a per-token loop here,
written from their definition, is the reference: vLLM's own functions may already be replaced in this process), slot
-1 meaning "no adapter" even when every slot holds one, and vLLM loads them. The real engine's adapter answers are
compared with PEFT's in tests/serving/test_engines.py."""

from __future__ import annotations

import pytest
import torch

from serving.engines import lora_ops

vllm_ops = pytest.importorskip("vllm.lora.ops.torch_ops.lora_ops")


def per_token(x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """out[b] = weights[idx[b]] @ x[b], one token at a time; zero where idx[b] is -1 (no adapter)."""
    stacked = weights.squeeze(1) if weights.dim() == 4 else weights
    return torch.stack(
        [stacked[int(i)] @ x[b] if i >= 0 else stacked.new_zeros(stacked.shape[1]) for b, i in enumerate(idx)]
    )


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


SLOT_IDS = [11, 12, 13, 14]  # the LoRA id in each of the 4 slots: all full, so a -1 read as "last slot" would show


def linear_by_definition(
    y: torch.Tensor, x: torch.Tensor, a: list[torch.Tensor], b: list[torch.Tensor], slots: list[int], scale: float
) -> torch.Tensor:
    """y with, per token t and slice i, scale * x[t] @ A_i[slot].T @ B_i[slot].T added to slice i's columns."""
    out, offset = y.clone(), 0
    for a_i, b_i in zip(a, b, strict=True):
        width = b_i.shape[2]
        for t, slot in enumerate(slots):
            if slot >= 0:
                out[t, offset : offset + width] += b_i[slot, 0] @ (scale * (a_i[slot, 0] @ x[t]))
        offset += width
    return out


@pytest.mark.parametrize(
    ("ids", "step_slot"),
    [([12] * 5, 1), ([0] * 4, -1), ([12, 12, 0, 14, 11], None), ([0, 14, 14], None), ([14], 3)],
)
def test_cpu_punica_wrapper_matches_the_lora_definition(ids: list[int], step_slot: int | None) -> None:
    punica_cpu = pytest.importorskip("vllm.lora.punica_wrapper.punica_cpu")
    from vllm.lora.layers.utils import LoRAMapping

    lora_ops.register()
    wrapper = punica_cpu.PunicaWrapperCPU(64, 8, "cpu")
    wrapper.update_metadata(LoRAMapping(ids, ids, is_prefill=True), SLOT_IDS, len(SLOT_IDS), 100)
    assert wrapper._assistant_step_slot == step_slot  # one slot: the plain-matmul path; else grouped
    slots = [SLOT_IDS.index(i) if i else -1 for i in ids]
    torch.manual_seed(len(ids))
    tokens, hidden, rank, widths = len(ids), 12, 8, (12, 4, 4)  # a fused q/k/v projection: three slices
    x = torch.randn(tokens, hidden)
    a = [torch.randn(len(SLOT_IDS), 1, rank, hidden) for _ in widths]
    b = [torch.randn(len(SLOT_IDS), 1, w, rank) for w in widths]
    y = torch.randn(tokens, sum(widths))

    got = y.clone()
    wrapper.add_lora_linear(got, x, tuple(a), tuple(b), 0.5, widths)
    assert torch.allclose(got, linear_by_definition(y, x, a, b, slots, 0.5), atol=1e-4)

    # the row-parallel layers (o_proj, down_proj) call shrink and expand themselves, through a zeroed buffer
    buffer = torch.zeros(1, tokens, rank)
    wrapper.add_shrink(buffer, x, (a[0],), 1.0)
    got = y[:, : widths[0]].clone()
    wrapper.add_expand(got, buffer, (b[0],), (widths[0],), offset_start=0, add_input=True)
    assert torch.allclose(got, linear_by_definition(y[:, : widths[0]], x, a[:1], b[:1], slots, 1.0), atol=1e-4)


def test_registered_as_a_vllm_general_plugin() -> None:
    from importlib.metadata import entry_points

    plugins = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert plugins.get("assistant_grouped_lora") == "serving.engines.lora_ops:register"
    punica_cpu = pytest.importorskip("vllm.lora.punica_wrapper.punica_cpu")
    lora_ops.register()
    assert punica_cpu.bgmv_shrink is lora_ops.bgmv_shrink and vllm_ops.bgmv_expand is lora_ops.bgmv_expand
    assert punica_cpu.PunicaWrapperCPU.add_lora_linear is lora_ops.add_lora_linear
    lora_ops.register()  # idempotent: the originals kept for mixed steps stay vLLM's own
    assert lora_ops._vllm_methods["add_lora_linear"] is not lora_ops.add_lora_linear
