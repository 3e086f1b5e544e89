"""Question files for answer evaluation: SQuAD v1.1/v2.0 JSON and question/answer JSONL."""

from __future__ import annotations

import json

import pytest

from assistant.errors import UnprocessableError
from assistant.qa_sets import parse_qa_file

SQUAD_V2 = {
    "version": "v2.0",
    "data": [
        {
            "title": "Router",
            "paragraphs": [
                {
                    "context": "Hold the reset button for ten seconds.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "How long?",
                            "answers": [
                                {"text": "ten seconds", "answer_start": 27},
                                {"text": "ten seconds", "answer_start": 27},
                            ],
                            "is_impossible": False,
                        },
                        {
                            "id": "q2",
                            "question": "Who built it?",
                            "answers": [],
                            "plausible_answers": [{"text": "reset", "answer_start": 9}],
                            "is_impossible": True,
                        },
                    ],
                }
            ],
        }
    ],
}


def test_squad_v2_impossible_questions_are_unanswerable() -> None:
    items = parse_qa_file("dev.json", json.dumps(SQUAD_V2).encode())
    assert [(i.id, i.answers, i.unanswerable) for i in items] == [("q1", ("ten seconds",), False), ("q2", (), True)]
    assert items[0].context == "Hold the reset button for ten seconds."


def test_jsonl_answers_answer_and_collection() -> None:
    lines = [
        {"question": "How long?", "answers": ["ten seconds", "10 s"], "collection": "kb"},
        {"question": "Who?", "answer": "Ada", "id": "x"},
        {"question": "Unknown?", "answers": []},
        {"question": "Objects?", "answers": [{"text": "a"}]},
    ]
    items = parse_qa_file("qa.jsonl", "\n".join(json.dumps(x) for x in lines).encode())
    assert items[0].answers == ("ten seconds", "10 s") and items[0].collection == "kb"
    assert items[1].answers == ("Ada",) and items[1].id == "x" and items[1].collection is None
    assert items[2].unanswerable and not items[1].unanswerable
    assert items[3].answers == ("a",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b'{"answers": ["x"]}', "line 1"),
        (b'{"data": [{"nope": 1}]}', "not a SQuAD file"),
        (b"[1", "line 1"),
    ],
)
def test_malformed_files_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(UnprocessableError, match=message):
        parse_qa_file("f.jsonl", data)
