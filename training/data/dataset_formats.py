"""Reading training files (JSON, JSONL, CSV) and parsing their records into the internal forms.

Contract: `load_sft_examples(paths)` accepts alpaca (`instruction`, `input`, `output`), sharegpt (`conversations` of
`{from, value}`) and OpenAI messages (`messages` of `{role, content}`) records; `load_preference_examples(paths)`
accepts `prompt`/`chosen`/`rejected` (plain strings or conversations), the sharegpt preference form
(`conversations` + `chosen`/`rejected` as `{from, value}`) and the preference store's form (`rendered_prompt`, the
exact prompt text the server rendered, + `chosen`/`rejected`). The format is detected per record from its keys. Any
malformed record raises `DataValidationError` naming `file#index` and the field; nothing is skipped silently here
(empty or garbled content is the selection step's business). CSV cells holding conversations are JSON strings.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from training.data.records import (
    ChatExample,
    DataValidationError,
    Message,
    PreferenceExample,
    check_conversation,
)

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
SUPPORTED_SUFFIXES = (".json", ".jsonl", ".csv")


def read_records(path: Path) -> list[Any]:
    """The raw records of one file: a JSON list (or `{"data": [...]}`), JSON lines, or CSV rows."""
    if not path.is_file():
        raise DataValidationError(str(path), "file", "does not exist")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataValidationError(
            str(path), "file", f"has unsupported type {suffix!r}; use one of {SUPPORTED_SUFFIXES}"
        )
    text = path.read_text(encoding="utf-8")
    if suffix == ".csv":
        return [_csv_row(row) for row in csv.DictReader(text.splitlines())]
    if suffix == ".jsonl":
        return [_json(line, f"{path}#{i}") for i, line in enumerate(text.splitlines()) if line.strip()]
    data = _json(text, str(path))
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataValidationError(str(path), "file", "must hold a JSON list of records")
    return data


def _json(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataValidationError(origin, "json", f"is not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells that hold JSON lists/objects (conversations) are decoded; everything else stays a string."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        cell = (value or "").strip()
        out[key] = json.loads(cell) if cell[:1] in "[{" and _is_json(cell) else (value or "")
    return out


def _is_json(cell: str) -> bool:
    try:
        json.loads(cell)
    except json.JSONDecodeError:
        return False
    return True


def _string(record: dict[str, Any], key: str, origin: str, required: bool = True) -> str:
    if key not in record or record[key] is None:
        if required:
            raise DataValidationError(origin, key, "is missing")
        return ""
    value = record[key]
    if not isinstance(value, str):
        raise DataValidationError(origin, key, f"must be a string, not {type(value).__name__}")
    return value


def _turn(item: Any, origin: str, field: str) -> Message:
    """One conversation turn from `{role, content}` or sharegpt `{from, value}`."""
    if not isinstance(item, dict):
        raise DataValidationError(origin, field, "must be an object with role/content or from/value")
    if "role" in item or "content" in item:
        role, content = _string(item, "role", origin), item.get("content")
        key = "content"
    else:
        sender = _string(item, "from", origin)
        role, content = SHAREGPT_ROLES.get(sender, sender), item.get("value")
        key = "value"
    if not isinstance(content, str):
        raise DataValidationError(origin, f"{field}.{key}", "is missing or not a string")
    return {"role": str(role), "content": content}


def _conversation(value: Any, origin: str, field: str) -> list[Message]:
    if not isinstance(value, list):
        raise DataValidationError(origin, field, "must be a list of turns")
    return [_turn(item, origin, f"{field}[{i}]") for i, item in enumerate(value)]


def parse_sft_record(record: Any, origin: str) -> ChatExample:
    """One SFT record in any supported format -> `ChatExample`."""
    if not isinstance(record, dict):
        raise DataValidationError(origin, "record", "must be a JSON object")
    if "messages" in record or "conversations" in record:
        field = "messages" if "messages" in record else "conversations"
        messages = _conversation(record[field], origin, field)
    elif "instruction" in record or "output" in record:
        messages = _alpaca(record, origin)
    else:
        raise DataValidationError(origin, "record", f"has no known SFT format (keys: {sorted(record)})")
    check_conversation(messages, origin, "messages", last_role="assistant")
    return ChatExample(messages=tuple(messages), origin=origin)


def _alpaca(record: dict[str, Any], origin: str) -> list[Message]:
    instruction = _string(record, "instruction", origin)
    extra = _string(record, "input", origin, required=False)
    output = _string(record, "output", origin)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    system = _string(record, "system", origin, required=False)
    head = [{"role": "system", "content": system}] if system.strip() else []
    return [*head, {"role": "user", "content": user}, {"role": "assistant", "content": output}]


def parse_preference_record(record: Any, origin: str) -> PreferenceExample:
    """One preference record (prompt/chosen/rejected, or sharegpt conversations + chosen/rejected) -> example."""
    if not isinstance(record, dict):
        raise DataValidationError(origin, "record", "must be a JSON object")
    if "rendered_prompt" in record:
        return _rendered_pair(record, origin)
    if "conversations" in record:
        prompt = _conversation(record["conversations"], origin, "conversations")
    elif "prompt" in record:
        raw = record["prompt"]
        prompt = [{"role": "user", "content": raw}] if isinstance(raw, str) else _conversation(raw, origin, "prompt")
    else:
        raise DataValidationError(origin, "prompt", "is missing (expected 'prompt' or 'conversations')")
    check_conversation(prompt, origin, "prompt", last_role="user")
    chosen, rejected = (_completion(record, key, origin) for key in ("chosen", "rejected"))
    return PreferenceExample(prompt=tuple(prompt), chosen=chosen, rejected=rejected, origin=origin)


def _rendered_pair(record: dict[str, Any], origin: str) -> PreferenceExample:
    """A pair whose prompt is already the server's rendered prompt text (the preference store's form)."""
    rendered = _string(record, "rendered_prompt", origin)
    chosen, rejected = (_completion(record, key, origin) for key in ("chosen", "rejected"))
    prompt = ({"role": "user", "content": rendered},)
    return PreferenceExample(prompt=prompt, chosen=chosen, rejected=rejected, origin=origin, rendered_prompt=rendered)


def _completion(record: dict[str, Any], key: str, origin: str) -> str:
    """A completion given as a string, a `{from, value}`/`{role, content}` turn, or a one-assistant-turn list."""
    if key not in record:
        raise DataValidationError(origin, key, "is missing")
    value = record[key]
    if isinstance(value, str):
        return value
    turns = _conversation(value, origin, key) if isinstance(value, list) else [_turn(value, origin, key)]
    answers = [t for t in turns if t["role"] == "assistant"]
    if len(answers) != 1:
        raise DataValidationError(origin, key, "must hold exactly one assistant turn")
    return answers[0]["content"]


def _load(paths: Iterable[Path], parse: Callable[[Any, str], Any]) -> list[Any]:
    examples: list[Any] = []
    for path in paths:
        examples.extend(parse(record, f"{path}#{i}") for i, record in enumerate(read_records(Path(path))))
    return examples


def load_sft_examples(paths: Sequence[Path]) -> list[ChatExample]:
    """All SFT examples of the files, in order."""
    return _load(paths, parse_sft_record)


def load_preference_examples(paths: Sequence[Path]) -> list[PreferenceExample]:
    """All preference pairs of the files, in order."""
    return _load(paths, parse_preference_record)
