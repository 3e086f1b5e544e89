"""Data selection: dedup (exact, near), empty/garbled removal, token-length filters, seeded split, report."""

from __future__ import annotations

import json
from pathlib import Path

from training.data.records import ChatExample
from training.data.selection import SelectionOptions, select_examples, write_report


def chat(question: str, answer: str, origin: str) -> ChatExample:
    return ChatExample(({"role": "user", "content": question}, {"role": "assistant", "content": answer}), None, origin)


SENTENCE = "the warranty covers parts and labour for two years from the date of purchase in every country we sell"


def test_dedup_quality_and_length_filters(tmp_path: Path) -> None:
    examples = [
        chat("What is covered?", SENTENCE, "a#0"),
        chat("What is  COVERED?", SENTENCE.upper(), "a#1"),  # exact duplicate after normalisation
        chat("What is covered?", SENTENCE + " today", "a#2"),  # near duplicate
        chat("Hello?", "   ", "a#3"),  # empty answer
        chat("Hello?", "\ufffd\ufffd broken", "a#4"),  # garbled
        chat("Hello?", "#### ---- !!!! ????", "a#5"),  # garbled (no letters)
        chat("Short?", "Yes.", "a#6"),
        chat("Long?", "word " * 50, "a#7"),
        chat("Who founded the company?", "Two engineers in a garage.", "a#8"),
    ]
    lengths = [20, 20, 21, 5, 8, 8, 2, 400, 12]
    selection = select_examples(examples, lengths, SelectionOptions(min_tokens=4, max_tokens=100, eval_split=0.5))
    report = selection.report
    assert report.dropped == {
        "exact_duplicate": 1, "near_duplicate": 1, "empty": 1, "garbled": 2, "too_short": 1, "too_long": 1,
    }  # fmt: skip
    kept = {e.origin for e in selection.train + selection.validation}
    assert kept == {"a#0", "a#8"} and report.kept == 2 and report.train == 1 and report.validation == 1
    path = write_report(report, tmp_path)
    assert json.loads(path.read_text())["dropped_examples"]["garbled"] == ["a#4", "a#5"]


def test_split_is_seeded_and_disjoint() -> None:
    examples = [
        chat(f"Question number {i} about topic {i * 7}?", f"Answer {i} is {i * 13}.", f"s#{i}") for i in range(20)
    ]
    options = SelectionOptions(min_tokens=1, eval_split=0.2, seed=3, near_duplicate_threshold=0.99)
    first = select_examples(examples, [10] * 20, options)
    second = select_examples(examples, [10] * 20, options)
    assert [e.origin for e in first.validation] == [e.origin for e in second.validation]
    assert len(first.validation) == 4 and len(first.train) == 16
    assert not {e.origin for e in first.train} & {e.origin for e in first.validation}
    other = select_examples(examples, [10] * 20, SelectionOptions(min_tokens=1, eval_split=0.2, seed=4))
    assert [e.origin for e in other.validation] != [e.origin for e in first.validation]


def test_garbled_rejected_answer_keeps_the_pair() -> None:
    """A thumbs-down on a garbled answer is exactly what a pair should teach: only prompt and chosen are checked."""
    from training.data.records import PreferenceExample

    prompt = ({"role": "user", "content": "How do I reset the router?"},)
    good = PreferenceExample(prompt, "Hold the reset button for ten seconds.", "\ufffd\x1d)F\ufffd cit7lo", None, "p#0")
    bad = PreferenceExample(prompt, "\ufffd\ufffd \x1d", "Hold the reset button.", None, "p#1")
    selection = select_examples([good, bad], [20, 20], SelectionOptions(min_tokens=1, eval_split=0.5))
    assert selection.report.dropped == {"garbled": 1}
    assert selection.report.dropped_examples["garbled"] == ["p#1"]
