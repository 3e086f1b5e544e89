"""Training speed on CPU: bfloat16 autocast where the processor has it, and loss logits only where there are labels.

Contract:
- `cpu_bf16_supported()` is True when this CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX-BF16, as
  `torch.cpu.get_capabilities()` reports them); there, autocast to bfloat16 runs the linear layers about twice as fast
  as float32 (measured on SmolLM2-135M with LoRA, 2-core EPYC: bench/bench_train.py). Without them bfloat16 is
  emulated and slower, so the config keeps float32 (`training.config.build_run_config` decides with this function).
- `score_labelled_positions_only()` makes TRL's fused LM head project only the positions that carry a label on every
  device. TRL (1.16) does so on Triton devices only and scores every position elsewhere (to keep tile shapes fixed for
  compilers such as Neuron's); on CPU that is the whole prompt: with RAG prompts of ~550 tokens and answers of ~10, a
  quarter of each step went into logits nobody uses. The loss, its gradients and the logged entropy and accuracy are
  the same (positions without a label contribute zero either way; checked in tests/training/test_cpu_speed.py).
  Idempotent; a TRL without the hook is left alone (and says so in the log).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)


@functools.cache
def cpu_bf16_supported() -> bool:
    import torch

    get_capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.8
    if get_capabilities is None:
        return False
    capabilities = get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def score_labelled_positions_only() -> bool:
    """Patch TRL's fused LM head to score labelled positions only on CPU too; True when the patch is in place."""
    try:
        from trl.trainer import utils as trl_utils
    except ImportError:
        return False
    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        log.info("TRL has no _use_triton hook: its fused LM head keeps its own choice of positions")
        return False
    if getattr(original, "_assistant_patched", False):
        return True

    def compact_positions(device: Any) -> bool:
        # Read by `add_fused_lm_head` only, to choose between scoring `hidden[mask]` (compact) and every position;
        # the kernels themselves ask `trl.kernels.chunked_logprob._use_triton`, which stays unpatched.
        return device.type == "cpu" or bool(original(device))

    compact_positions._assistant_patched = True  # type: ignore[attr-defined]
    trl_utils._use_triton = compact_positions
    return True
