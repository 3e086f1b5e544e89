"""Question sets with gold answers, for answer evaluation: SQuAD v1.1/v2.0 JSON files and question/answer JSONL.

Contract: `parse_qa_file(name, data)` / `load_qa_file(path)` return `QAItem`s in file order.
- SQuAD (a JSON object with `data[].paragraphs[].qas[]`): every question with its gold answer texts; a v2.0 question
  with `is_impossible: true` (or no answers) is unanswerable. The paragraph it was written on is its `context`.
- JSONL, one object a line: `question`, the gold answers as `answers` (a list of strings, or SQuAD-style objects
  with `text`) or a single `answer`, optional `id`, `collection` (what to search for this question) and
  `unanswerable`; an item with no gold answer is unanswerable.
A malformed file raises `UnprocessableError` naming the line or question; an empty one too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.errors import UnprocessableError


@dataclass(frozen=True)
class QAItem:
    """One question with its gold answers (none when it is unanswerable)."""

    id: str
    question: str
    answers: tuple[str, ...]
    unanswerable: bool = False
    collection: str | None = None
    context: str | None = None


def load_qa_file(path: Path) -> list[QAItem]:
    return parse_qa_file(path.name, path.read_bytes())


def parse_qa_file(name: str, data: bytes) -> list[QAItem]:
    text = data.decode("utf-8-sig", errors="replace").strip()
    if not text:
        raise UnprocessableError(f"{name} is empty", param="file")
    whole: Any = None
    if text.startswith("{"):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # several JSON objects: JSONL
    items = _squad_items(name, whole) if isinstance(whole, dict) and "data" in whole else _jsonl_items(name, text)
    if not items:
        raise UnprocessableError(f"{name} holds no questions", param="file")
    return items


def _squad_items(name: str, squad: dict[str, Any]) -> list[QAItem]:
    items = []
    try:
        for article in squad["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a["text"].strip()))
                    impossible = bool(qa.get("is_impossible")) or not answers
                    items.append(
                        QAItem(
                            str(qa["id"]),
                            qa["question"],
                            () if impossible else answers,
                            impossible,
                            context=paragraph["context"],
                        )
                    )
    except (KeyError, TypeError) as exc:
        raise UnprocessableError(f"{name}: not a SQuAD file ({type(exc).__name__}: {exc})", param="file") from exc
    return items


def _jsonl_items(name: str, text: str) -> list[QAItem]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            items.append(_jsonl_item(record, f"{name}:{number}"))
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            raise UnprocessableError(f"{name} line {number}: {exc}", param="file") from exc
    return items


def _jsonl_item(record: dict[str, Any], where: str) -> QAItem:
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("needs a non-empty 'question'")
    raw = record.get("answers", record.get("answer"))
    raw = [] if raw is None else raw if isinstance(raw, list) else [raw]
    answers = tuple(dict.fromkeys(str(a["text"] if isinstance(a, dict) else a) for a in raw if str(a).strip()))
    unanswerable = bool(record.get("unanswerable")) or not answers
    collection = record.get("collection")
    return QAItem(
        str(record.get("id", where)),
        question,
        () if unanswerable else answers,
        unanswerable,
        str(collection) if collection else None,
    )
