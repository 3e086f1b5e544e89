"""LoRA matmuls for vLLM's CPU path, installed as a vLLM general plugin in every vLLM process.

Why: vLLM's PyTorch-native punica ops (`vllm.lora.ops.torch_ops`, used on CPU) gather a full copy of the adapter
weights for EVERY token (`weights[token_lora_indices]`, shape tokens x out x in) before a batched einsum, and wrap each
of the 14 LoRA matmuls of a decoder layer in index bookkeeping. On a 2-core CPU that made an adapter answer cost about
3x the base model's. Two replacements:
- a step whose tokens all use one adapter slot (one request, or one adapter serving everyone: the usual case) runs
  each LoRA projection as plain matmuls on that slot's weights, the slot found once per step in `update_metadata`,
  not once per matmul; a step without adapters does no LoRA work at all;
- a step mixing slots groups its tokens by slot and does one plain matmul per slot (the `bgmv_*` ops below).
Tokens with slot -1 (no adapter: base-model requests batched with adapter ones) get no LoRA delta. vLLM's own torch
ops index the weights with -1 and so apply the LAST slot's adapter to them once every slot holds an adapter.

Contract: `bgmv_shrink`, `bgmv_expand` and `bgmv_expand_slice` compute what vLLM's versions compute (same arguments,
same writes into `output_tensor`) except that slot -1 adds nothing; the `PunicaWrapperCPU` methods keep vLLM's
semantics (`add_lora_linear`, `add_shrink`, `add_expand`); `register()` installs all of it (idempotent; a vLLM without
these modules is left alone). It is exposed as the `vllm.general_plugins` entry point `assistant_grouped_lora`, so
vLLM loads it in the engine-core process too.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)
_TARGETS = ("vllm.lora.ops.torch_ops.lora_ops", "vllm.lora.ops.torch_ops", "vllm.lora.punica_wrapper.punica_cpu")
_SLOT = "_assistant_step_slot"  # attribute set on the punica wrapper by update_metadata
_MIXED = None  # the step's tokens use several slots
_vllm_methods: dict[str, Callable[..., Any]] = {}


def _grouped_matmul(inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, dtype: Any) -> torch.Tensor:
    """Row b of the result is inputs[b] @ weights[indices[b]].T (zero where indices[b] < 0), once per distinct slot."""
    stacked = weights.squeeze(dim=1) if weights.dim() == 4 else weights
    x = inputs.to(dtype=dtype)
    if x.shape[0] == 0:
        return x.new_zeros((0, stacked.shape[1]))
    slot = step_slot(indices)
    if slot is not _MIXED and slot >= 0:
        return x @ stacked[slot].to(dtype=dtype).T
    out = x.new_zeros((x.shape[0], stacked.shape[1]))
    for each in torch.unique(indices).tolist():
        if each >= 0:
            rows = (indices == each).nonzero(as_tuple=True)[0]
            out[rows] = x[rows] @ stacked[each].to(dtype=dtype).T
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


# ---------------------------------------------------------------- one slot per step


def step_slot(token_indices: torch.Tensor) -> int | None:
    """The adapter slot every token of a step uses (-1: no adapter), or None when the step mixes slots."""
    if token_indices.numel() == 0:
        return -1
    first = int(token_indices[0])
    return first if bool((token_indices == first).all()) else _MIXED


def _slot_weight(stacked: torch.Tensor, slot: int) -> torch.Tensor:
    return stacked[slot, 0] if stacked.dim() == 4 else stacked[slot]


def _shrink_slot(
    outputs: Sequence[torch.Tensor], x: torch.Tensor, lora_a: Sequence[torch.Tensor], slot: int, scale: float
) -> None:
    """outputs[i] = scale * x @ A_i[slot].T, computed in the output's dtype (float32 buffers, as vLLM's)."""
    for out, a in zip(outputs, lora_a, strict=True):
        weight = _slot_weight(a, slot)
        torch.mm(x.to(out.dtype), weight.to(out.dtype).T, out=out[:, : weight.shape[0]])
        if scale != 1.0:
            out.mul_(scale)


def _expand_slot(
    y: torch.Tensor, inputs: Sequence[torch.Tensor], lora_b: Sequence[torch.Tensor], slot: int, offset: int
) -> None:
    """y[:, offset_i : offset_i + out_i] += inputs[i] @ B_i[slot].T, slice after slice."""
    for h, b in zip(inputs, lora_b, strict=True):
        weight = _slot_weight(b, slot).to(y.dtype)
        y[:, offset : offset + weight.shape[0]].addmm_(h[:, : weight.shape[1]].to(y.dtype), weight.T)
        offset += weight.shape[0]


def update_metadata(self: Any, *args: Any, **kwargs: Any) -> None:
    _vllm_methods["update_metadata"](self, *args, **kwargs)
    setattr(self, _SLOT, step_slot(self.token_lora_indices))


def add_shrink(self: Any, y: Any, x: torch.Tensor, lora_a_stacked: Any, scale: float, **kwargs: Any) -> Any:
    slot = getattr(self, _SLOT, _MIXED)
    if slot is _MIXED:
        return _vllm_methods["add_shrink"](self, y, x, lora_a_stacked, scale, **kwargs)
    if slot >= 0:
        _shrink_slot(list(y), x.view(-1, x.shape[-1]), lora_a_stacked, slot, scale)
    return None  # no adapter in this step: the (zeroed) buffers stay as they are


def add_expand(
    self: Any,
    y: torch.Tensor,
    x: Any,
    lora_b_stacked: Any,
    output_slices: tuple[int, ...],
    offset_start: int = 0,
    add_inputs: bool = True,
    **kwargs: Any,
) -> Any:
    slot = getattr(self, _SLOT, _MIXED)
    if slot is _MIXED or not add_inputs:
        return _vllm_methods["add_expand"](
            self, y, x, lora_b_stacked, output_slices, offset_start=offset_start, add_inputs=add_inputs, **kwargs
        )
    if slot >= 0:
        _expand_slot(y.view(-1, y.shape[-1]), list(x), lora_b_stacked, slot, offset_start)
    return None


def add_lora_linear(
    self: Any,
    y: torch.Tensor,
    x: torch.Tensor,
    lora_a_stacked: Any,
    lora_b_stacked: Any,
    scale: float,
    output_slices: tuple[int, ...],
    *,
    buffer: Any = None,
    **kwargs: Any,
) -> Any:
    slot = getattr(self, _SLOT, _MIXED)
    if slot is _MIXED:
        return _vllm_methods["add_lora_linear"](
            self, y, x, lora_a_stacked, lora_b_stacked, scale, output_slices, buffer=buffer, **kwargs
        )
    if slot < 0:
        return None
    x = x.view(-1, x.shape[-1])
    rank = lora_b_stacked[0].shape[-1]
    shrunk = [x.new_empty((x.shape[0], rank), dtype=torch.float32) for _ in lora_a_stacked]
    _shrink_slot(shrunk, x, lora_a_stacked, slot, scale)
    _expand_slot(y.view(-1, y.shape[-1]), shrunk, lora_b_stacked, slot, 0)
    return None


_WRAPPER_METHODS = {
    "update_metadata": update_metadata,
    "add_shrink": add_shrink,
    "add_expand": add_expand,
    "add_lora_linear": add_lora_linear,
}


def _patch_cpu_wrapper() -> None:
    try:
        from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU
    except ImportError:
        return
    for name, replacement in _WRAPPER_METHODS.items():
        current = getattr(PunicaWrapperCPU, name)
        if current is not replacement:
            _vllm_methods[name] = current
            setattr(PunicaWrapperCPU, name, replacement)


def register() -> None:
    """Swap the ops into vLLM's torch-ops and CPU punica modules (the sgmv_* ops call these too) and give the CPU
    punica wrapper its one-slot-per-step path."""
    for name in _TARGETS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for attr, replacement in _REPLACEMENTS.items():
            if hasattr(module, attr):
                setattr(module, attr, replacement)
    _patch_cpu_wrapper()
    log.debug("LoRA ops installed")
