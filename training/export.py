"""Exporting a trained adapter: a merged standalone model (vLLM, Ollama) or the PEFT adapter with its base fingerprint.

Contract:
- `export_merged(adapter_dir, base_dir, out_dir, record)` loads the base model in the dtype of its config, applies the
  LoRA adapter and merges it (`merge_and_unload`), then writes `model.safetensors` + `config.json` +
  `generation_config.json`, the tokenizer with its chat template (so vLLM and transformers load it as a plain model),
  an Ollama `Modelfile` (FROM the directory; a ChatML TEMPLATE and stop tokens when the chat template is ChatML) and
  `export.json` (source adapter, base model, base fingerprint, lineage). Reward models (kind `reward`) are refused:
  they are scorers, not chat models.
- `export_adapter_only(adapter_dir, base_dir, out_dir, record)` copies the PEFT files and writes `export.json` with
  the base fingerprint, so whoever loads it can check it is on the right base (`training.modeling.check_adapter_base`).
- `resolve_export_source(ref, registry)` takes a registry reference (name, name:vN, id) or a PEFT directory.
An existing non-empty output directory is refused (nothing is overwritten).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from assistant.errors import InvalidRequestError, UnprocessableError
from training.modeling import base_fingerprint
from training.registry import ADAPTER_FILES, AdapterRecord, AdapterRegistry, check_adapter_dir

log = logging.getLogger(__name__)
CHATML_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)


def resolve_export_source(ref: str, registry: AdapterRegistry | None) -> tuple[Path, AdapterRecord | None]:
    if Path(ref).is_dir():
        check_adapter_dir(Path(ref))
        return Path(ref), None
    if registry is None:
        raise InvalidRequestError(f"{ref!r} is not an adapter directory", param="adapter")
    record = registry.resolve(ref)
    return record.path, record


def _fresh_dir(out_dir: Path) -> Path:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InvalidRequestError(f"{out_dir} exists and is not empty; export into a new directory", param="output")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _manifest(kind: str, adapter_dir: Path, base_dir: Path, record: AdapterRecord | None) -> dict[str, Any]:
    return {
        "export": kind,
        "adapter": str(adapter_dir),
        "adapter_name": record and f"{record.name}@v{record.version}",
        "adapter_kind": record.kind if record else "lm",
        "base_model": str(base_dir),
        "base_fingerprint": base_fingerprint(base_dir),
        "lineage": record.lineage if record else None,
    }


def export_adapter_only(adapter_dir: Path, base_dir: Path, out_dir: Path, record: AdapterRecord | None) -> Path:
    out = _fresh_dir(out_dir)
    for name in ADAPTER_FILES:
        shutil.copy2(adapter_dir / name, out / name)
    (out / "export.json").write_text(json.dumps(_manifest("adapter", adapter_dir, base_dir, record), indent=2))
    log.info("adapter %s exported to %s", adapter_dir, out)
    return out


def export_merged(adapter_dir: Path, base_dir: Path, out_dir: Path, record: AdapterRecord | None) -> Path:
    if record is not None and record.kind != "lm":
        raise UnprocessableError(
            f"{record.name}@v{record.version} is a {record.kind} model, not a chat adapter: export it --adapter-only",
            param="adapter",
        )
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = _fresh_dir(out_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)  # merge in float32, save as the base
    model = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    config = json.loads((Path(base_dir) / "config.json").read_text())
    dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(out, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenizer.save_pretrained(out)
    (out / "Modelfile").write_text(modelfile(out, tokenizer))
    (out / "export.json").write_text(json.dumps(_manifest("merged", adapter_dir, base_dir, record), indent=2))
    log.info("merged %s into %s (%s)", adapter_dir, out, dtype)
    return out


def modelfile(out_dir: Path, tokenizer: Any) -> str:
    """An Ollama Modelfile for the merged directory (Ollama imports safetensors of supported architectures)."""
    lines = [f"FROM {out_dir.resolve()}"]
    if "<|im_start|>" in str(tokenizer.chat_template or ""):
        lines.append(f'TEMPLATE """{CHATML_TEMPLATE}"""')
        lines.append('PARAMETER stop "<|im_end|>"')
    elif tokenizer.eos_token:
        lines.append(f'PARAMETER stop "{tokenizer.eos_token}"')
    return "\n".join(lines) + "\n"
