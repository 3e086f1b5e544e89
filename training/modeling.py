"""Loading the base model and tokenizer, wrapping it with LoRA, and checking that a base adapter fits the base.

Contract: `load_tokenizer(base_dir)` gives a tokenizer with a pad token; `load_base_model(base_dir, load_in_4bit)`
gives the causal LM (float32 on CPU, bfloat16 on GPU; 4-bit only with bitsandbytes and CUDA, otherwise a
`MissingExtraError`/`ConfigError` naming what is missing). `base_fingerprint(base_dir)` summarises an architecture;
`check_adapter_base(adapter_dir, base_dir, recorded)` raises `AdapterMismatchError` when an adapter was trained on
another base (compared by fingerprint, then by tensor shapes) before anything is trained. `wrap_with_lora(model,
config, base_adapter)` returns a `PeftModel` whose only trainable weights are the LoRA ones (new or continued);
`lora_layers` limits a new LoRA to the top decoder layers (`top_layers`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from assistant.errors import ConfigError, MissingExtraError, UnprocessableError
from training.config import lora_target_modules

log = logging.getLogger(__name__)
FINGERPRINT_KEYS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)


class AdapterMismatchError(UnprocessableError):
    """A base adapter was trained on a different base model than the one configured."""


def load_tokenizer(base_dir: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ConfigError(f"the tokenizer of {base_dir} has no chat template; training renders prompts with it")
    return tokenizer


def quantization_config(load_in_4bit: bool) -> Any:
    """A bitsandbytes 4-bit config, or None; refuses clearly where QLoRA cannot run."""
    if not load_in_4bit:
        return None
    import torch

    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingExtraError("bitsandbytes", "gpu", "QLoRA (--load-in-4bit)")
    if not torch.cuda.is_available():
        raise ConfigError("--load-in-4bit (QLoRA) needs a CUDA GPU, and none is available; drop the flag on CPU")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )


def load_base_model(base_dir: Path, load_in_4bit: bool = False) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    quant = quantization_config(load_in_4bit)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": torch.cuda.current_device()})
    model = AutoModelForCausalLM.from_pretrained(base_dir, **kwargs)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    return model


def base_fingerprint(base_dir: Path) -> dict[str, Any]:
    """The architecture facts an adapter depends on, read from config.json."""
    path = Path(base_dir) / "config.json"
    if not path.is_file():
        return {}
    config = json.loads(path.read_text())
    text = config.get("text_config") or config
    return {key: text.get(key) for key in FINGERPRINT_KEYS if text.get(key) is not None}


def _adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise AdapterMismatchError(f"base adapter {adapter_dir} has no adapter_config.json: is it a PEFT adapter?")
    return dict(json.loads(path.read_text()))


def check_adapter_base(adapter_dir: Path, base_dir: Path, recorded: dict[str, Any] | None = None) -> None:
    """Raise `AdapterMismatchError` when the adapter at `adapter_dir` was not trained on `base_dir`'s architecture.

    `recorded` is the fingerprint stored in the registry lineage, when the adapter came from the registry; otherwise
    the base named in adapter_config.json is read when it is a local directory. Tensor shapes are checked too.
    """
    current = base_fingerprint(base_dir)
    adapter_base = _adapter_config(adapter_dir).get("base_model_name_or_path") or ""
    expected = recorded or (base_fingerprint(Path(adapter_base)) if Path(adapter_base).is_dir() else {})
    diffs = {k: (expected[k], current.get(k)) for k in expected if k in current and expected[k] != current.get(k)}
    if diffs:
        detail = ", ".join(f"{k}: adapter {a} vs base {b}" for k, (a, b) in diffs.items())
        raise AdapterMismatchError(
            f"base adapter {adapter_dir} was trained on another base model ({adapter_base}): {detail}. "
            f"Use an adapter trained on {base_dir}, or configure its base model.",
            param="base_adapter",
        )
    _check_shapes(adapter_dir, current, adapter_base)


def _check_shapes(adapter_dir: Path, fingerprint: dict[str, Any], adapter_base: str) -> None:
    """LoRA A matrices of attention projections read the hidden size: it must match the base."""
    weights = Path(adapter_dir) / "adapter_model.safetensors"
    hidden = fingerprint.get("hidden_size")
    if not weights.is_file() or hidden is None:
        return
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
            if "q_proj.lora_A" in key and handle.get_slice(key).get_shape()[-1] != hidden:
                raise AdapterMismatchError(
                    f"base adapter {adapter_dir} ({adapter_base}) expects hidden size "
                    f"{handle.get_slice(key).get_shape()[-1]}, the base model has {hidden}",
                    param="base_adapter",
                )


def top_layers(model: Any, count: int | None) -> list[int] | None:
    """Indices of the top `count` decoder layers (None: every layer, also when `count` covers them all)."""
    total = int(model.config.get_text_config().num_hidden_layers)
    if count is None or count >= total:
        return None
    return list(range(total - count, total))


def lora_config(model: Any, run_config: Any) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=run_config.lora_r,
        lora_alpha=run_config.lora_alpha,
        lora_dropout=run_config.lora_dropout,
        target_modules=lora_target_modules(model.config.model_type, run_config.lora_target_modules),
        layers_to_transform=top_layers(model, getattr(run_config, "lora_layers", None)),
        bias="none",
        task_type="CAUSAL_LM",
    )


def wrap_with_lora(model: Any, run_config: Any, base_adapter: Path | None = None) -> Any:
    """A PeftModel: a fresh LoRA, or the base adapter made trainable."""
    from peft import PeftModel, get_peft_model

    if base_adapter is None:
        return get_peft_model(model, lora_config(model, run_config))
    log.info("continuing from base adapter %s", base_adapter)
    return PeftModel.from_pretrained(model, str(base_adapter), is_trainable=True)
