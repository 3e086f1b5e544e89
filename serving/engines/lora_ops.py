"""Grouped LoRA matmuls for vLLM's CPU path, installed as a vLLM general plugin in every vLLM process.

Why: vLLM's PyTorch-native punica ops (`vllm.lora.ops.torch_ops`, used on CPU) gather a full copy of the adapter
weights for EVERY token (`weights[token_lora_indices]`, shape tokens x out x in) before a batched einsum. On a
2-core CPU that made an adapter answer cost about 3x the base model's. A batch almost always uses one or a few
adapters, so these replacements group the tokens by adapter slot and do one plain matmul per slot.

Contract: `bgmv_shrink`, `bgmv_expand` and `bgmv_expand_slice` compute exactly what vLLM's versions compute (same
arguments, same writes into `output_tensor`, negative indices meaning the same slot as Python indexing does);
`register()` swaps them into vLLM's modules (idempotent; a vLLM without these modules is left alone). It is exposed as
the `vllm.general_plugins` entry point `assistant_grouped_lora`, so vLLM loads it in the engine-core process too.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import torch

log = logging.getLogger(__name__)
_TARGETS = ("vllm.lora.ops.torch_ops.lora_ops", "vllm.lora.ops.torch_ops", "vllm.lora.punica_wrapper.punica_cpu")


def _grouped_matmul(inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, dtype: Any) -> torch.Tensor:
    """Row b of the result is inputs[b] @ weights[indices[b]].T, computed once per distinct slot."""
    stacked = weights.squeeze(dim=1) if weights.dim() == 4 else weights
    x = inputs.to(dtype=dtype)
    slots = torch.where(indices < 0, indices + stacked.shape[0], indices)
    if x.shape[0] == 0:
        return x.new_zeros((0, stacked.shape[1]))
    first = int(slots[0])
    if bool((slots == first).all()):
        return x @ stacked[first].to(dtype=dtype).T
    out = x.new_empty((x.shape[0], stacked.shape[1]))
    for slot in torch.unique(slots).tolist():
        rows = (slots == slot).nonzero(as_tuple=True)[0]
        out[rows] = x[rows] @ stacked[slot].to(dtype=dtype).T
    return out


def bgmv_shrink(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    scaling: float = 1.0,
) -> None:
    outputs = _grouped_matmul(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs[:]


def bgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    add_inputs: bool = True,
) -> None:
    outputs = _grouped_matmul(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    common_len = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common_len] += outputs[:limit, :common_len]
    else:
        output_tensor[:, :common_len] = outputs[:limit, :common_len]


def bgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
) -> None:
    outputs = _grouped_matmul(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs[:]
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs[:]


_REPLACEMENTS = {"bgmv_shrink": bgmv_shrink, "bgmv_expand": bgmv_expand, "bgmv_expand_slice": bgmv_expand_slice}


def register() -> None:
    """Swap the grouped ops into vLLM's torch-ops and CPU punica modules (the sgmv_* ops call these too)."""
    for name in _TARGETS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for attr, replacement in _REPLACEMENTS.items():
            if hasattr(module, attr):
                setattr(module, attr, replacement)
    log.debug("grouped LoRA ops installed")
