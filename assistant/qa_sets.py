"""Question sets with gold answers, for answer evaluation: SQuAD v1.1/v2.0 JSON files and question/answer JSONL.

Contract: `parse_qa_file(name, data)` / `load_qa_file(path)` return `QAItem`s in file order.
- SQuAD (a JSON object with `data[].paragraphs[].qas[]`): every question with its gold answer texts (distinct,
  non-blank, in file order: the first is the training target); a v2.0 question with `is_impossible: true` (or no
  answers) is unanswerable. The paragraph it was written on is its `context`. This is the platform's one SQuAD
  reader: `load_squad(path)` / `squad_paragraphs(name, squad)` return the `SquadParagraph`s (key `AAA-PPP` = article
  and paragraph position, the article title, the context and its questions) that the retrieval evaluation, the gate
  and the RAG training data are made from.
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


@dataclass(frozen=True)
class SquadParagraph:
    """One paragraph of a SQuAD file with the questions asked on it."""

    key: str  # "AAA-PPP": the article's and the paragraph's position in the file
    title: str  # the article's title
    context: str
    items: tuple[QAItem, ...]


def load_squad(path: Path) -> list[SquadParagraph]:
    """The paragraphs of a SQuAD v1.1/v2.0 file, in file order."""
    try:
        squad = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UnprocessableError(f"{Path(path).name}: not a SQuAD file ({exc})", param="file") from exc
    return squad_paragraphs(Path(path).name, squad)


def squad_paragraphs(name: str, squad: Any) -> list[SquadParagraph]:
    """The paragraphs of a parsed SQuAD document; `UnprocessableError` naming `name` when it is not one."""
    try:
        return [
            _paragraph(f"{a:03d}-{p:03d}", str(article.get("title", "")), paragraph)
            for a, article in enumerate(squad["data"])
            for p, paragraph in enumerate(article["paragraphs"])
        ]
    except (KeyError, TypeError, AttributeError) as exc:
        raise UnprocessableError(f"{name}: not a SQuAD file ({type(exc).__name__}: {exc})", param="file") from exc


def _paragraph(key: str, title: str, paragraph: dict[str, Any]) -> SquadParagraph:
    context = paragraph["context"]
    items = []
    for q, qa in enumerate(paragraph["qas"]):
        answers = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a["text"].strip()))
        impossible = bool(qa.get("is_impossible")) or not answers
        qid = str(qa.get("id", f"{key}-{q}"))
        items.append(QAItem(qid, qa["question"], () if impossible else answers, impossible, context=context))
    return SquadParagraph(key, title, context, tuple(items))


def _squad_items(name: str, squad: dict[str, Any]) -> list[QAItem]:
    return [item for paragraph in squad_paragraphs(name, squad) for item in paragraph.items]


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
