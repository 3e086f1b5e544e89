"""Questions made from a passage's own text, whose answer is a span of it: training data for documents that come
without a question set.

Contract: a `QuestionGenerator` is called with a passage's text and the most questions wanted from it and returns
`Candidate`s (question, answer, the kind of answer span, the sentence it came from); the answer is always a verbatim
span of the passage. `RuleQuestions` is the deterministic generator (no model, pure Python, fast on a CPU): it splits
the passage into sentences, picks in each the first answer span found in this order: a date, a year, a percentage,
an amount of money, a count (a number and the plural noun after it), the complement of a short "X is Y" sentence, a
capitalised name (only spans the SQuAD answer normalisation finds as whole tokens: not "1933" of "1933–53"), and turns
the sentence into a question by putting a wh-phrase in the span's place ("in 1998" -> "in what year", "twenty days"
-> "how many days", "The capital of France is Paris." -> "What is the capital of France?"). Sentences are taken
spread over the passage, one question per sentence. Whether a question is good enough to train on is decided
elsewhere (`training.data.collection`: the round-trip check against the real retriever).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from assistant.answer_metrics import contains_answer


@dataclass(frozen=True)
class Candidate:
    """One generated question and its answer (a verbatim span of the passage)."""

    question: str
    answer: str
    kind: str  # date, year, percent, money, count, definition, name
    sentence: str


class QuestionGenerator(Protocol):
    """Anything that makes up to `limit` questions from a passage (see the module contract)."""

    name: str

    def __call__(self, text: str, limit: int) -> list[Candidate]: ...


_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_NUMBER_WORDS = (
    "two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|"
    "nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|several|dozens"
)
_SCALE = r"(?:\s(?:hundred|thousand|million|billion|trillion))?"
_DATE = re.compile(
    rf"\b(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}\s+{_MONTH}\s+\d{{4}}|{_MONTH}\s+\d{{4}})\b"
)
_UNITS = r"(?:[kmcM]?[mgNWJ]|lbf?|mi|ft|km|kg|people|men|troops|times|metres|meters|miles|feet|tons|tonnes|units)"
# a year from 1100 to 2099, not a quantity ("1000 lbf", "1500 km", "1990s")
_YEAR = re.compile(rf"(?<![\d,.$£€])\b(1[1-9][0-9]{{2}}|20[0-9]{{2}})\b(?![\d,%]|\.\d|s\b|\s{_UNITS}\b)")
_PERCENT = re.compile(r"\b\d+(?:\.\d+)?\s?(?:%|percent\b|per cent\b)")
_MONEY = re.compile(rf"[$£€]\s?\d[\d,]*(?:\.\d+)?{_SCALE}\b")
_COUNT = re.compile(rf"\b(?:\d[\d,]*(?:\.\d+)?|{_NUMBER_WORDS}){_SCALE}\s+(?P<noun>[a-z]{{3,}}s)\b", re.IGNORECASE)
_DEFINITION = re.compile(
    r"^(?P<subject>(?:The |A |An )?[^,;:()]{3,60}?) (?P<verb>is|was|are|were) (?P<rest>[^,;:()]{3,80})\.$"
)
_WORD = re.compile(r"[^\W\d_][\w'’\-]*")
_JOINERS = frozenset(("of", "the", "de", "von", "van", "la", "du"))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")
_ORG_WORDS = frozenset(
    re.split(
        r"\s+",
        "University College School Company Corporation Church Museum River Street Party Council Army Navy Empire "
        "Kingdom Republic State States Union Institute Society Association Act Treaty War Bank Court House City",
    )
)
_OPENERS = frozenset(
    re.split(r"\s+", "The A An This That These Those It He She They We I In On At For By From But And However")
)
_NOT_SUBJECTS = (_OPENERS - {"The", "A", "An"}) | {"There", "Here", "What", "Which", "Who"}
MIN_WORDS, MAX_WORDS = 6, 45


def sentences(text: str) -> list[str]:
    """The passage's prose sentences (headings and list-marker lines dropped, whitespace collapsed)."""
    prose = " ".join(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    out = []
    for sentence in _SENTENCE_END.split(re.sub(r"\s+", " ", prose)):
        sentence = sentence.strip()
        if sentence.endswith(".") and MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
            out.append(sentence)
    return out


def _in_place(sentence: str, start: int, end: int, wh: str) -> str:
    """The sentence as a question: the span at start:end replaced by `wh`, the full stop by a question mark."""
    head, tail = sentence[:start], sentence[end:].rstrip(" .")
    question = f"{head}{wh}{tail}?"
    return question[0].upper() + question[1:]


def _date(sentence: str) -> Candidate | None:
    match = _DATE.search(sentence)
    if match is None:
        return None
    return Candidate(_in_place(sentence, match.start(), match.end(), "what date"), match.group(0), "date", sentence)


def _year(sentence: str) -> Candidate | None:
    match = _YEAR.search(sentence)
    if match is None:
        return None
    return Candidate(_in_place(sentence, match.start(), match.end(), "what year"), match.group(0), "year", sentence)


def _simple(pattern: re.Pattern[str], wh: str, kind: str) -> Callable[[str], Candidate | None]:
    def find(sentence: str) -> Candidate | None:
        match = pattern.search(sentence)
        if match is None:
            return None
        return Candidate(_in_place(sentence, match.start(), match.end(), wh), match.group(0).strip(), kind, sentence)

    return find


def _count(sentence: str) -> Candidate | None:
    match = _COUNT.search(sentence)
    if match is None:
        return None
    noun = match.group("noun")
    wh = f"how many {noun.lower()}"
    return Candidate(_in_place(sentence, match.start(), match.end(), wh), match.group(0), "count", sentence)


def _definition(sentence: str) -> Candidate | None:
    match = _DEFINITION.match(sentence)
    if match is None:
        return None
    subject, verb, rest = match.group("subject"), match.group("verb"), match.group("rest").strip()
    if len(rest.split()) > 8 or len(subject.split()) > 10 or subject.split()[0] in _NOT_SUBJECTS:
        return None
    if rest.split()[0].endswith("ed"):
        return None  # a passive ("was remodelled by"): no "What is X?" to ask
    first, _, others = subject.partition(" ")
    if first in ("The", "A", "An"):
        subject = f"{first.lower()} {others}"
    return Candidate(f"What {verb} {subject}?", rest, "definition", sentence)


def _names(sentence: str) -> list[tuple[int, int]]:
    """Runs of capitalised words (any alphabet; "of"/"the"/"de"/"von" may join them), as (start, end)."""
    spans: list[tuple[int, int]] = []
    run: list[re.Match[str]] = []
    for word in [*_WORD.finditer(sentence), None]:
        if word is not None and word.group(0)[0].isupper():
            run.append(word)
            continue
        joins = word is not None and run and word.group(0) in _JOINERS and len(run) < 4
        if joins and word is not None:
            run.append(word)
            continue
        while run and run[-1].group(0) in _JOINERS:
            run.pop()
        if run:
            spans.append((run[0].start(), run[-1].end()))
        run = []
    return spans


def _name(sentence: str) -> Candidate | None:
    for start, end in _names(sentence):
        words = sentence[start:end].split()
        if end - start < 2:
            continue  # a unit or an initial ("1000 N"), not a name
        if len(words) > 4 or (start == 0 and (len(words) < 2 or words[0] in _OPENERS)):
            continue  # a capital at the start of a sentence says nothing on its own
        if sentence[start - 1 : start] == "(" or re.match(r"\s*\d", sentence[end:]):
            continue  # an abbreviation in brackets, or a name that goes on with a number ("Super Bowl 50")
        before = sentence[:start].rstrip()
        person = 2 <= len(words) <= 3 and not set(words) & _ORG_WORDS and not before.lower().endswith("the")
        if person and before.endswith(" by"):
            question = _in_place(sentence, len(before) - 3, end, " by whom")
        else:
            question = _in_place(sentence, start, end, "who" if person else "what")
        return Candidate(question, sentence[start:end], "name", sentence)
    return None


_FINDERS: tuple[Callable[[str], Candidate | None], ...] = (
    _date,
    _year,
    _simple(_PERCENT, "what percentage", "percent"),
    _simple(_MONEY, "how much", "money"),
    _count,
    _definition,
    _name,
)


def sentence_question(sentence: str) -> Candidate | None:
    """The question of the first answer span found in the sentence (the module contract's order), or None."""
    for find in _FINDERS:
        candidate = find(sentence)
        if candidate is None or candidate.question.rstrip("?") == sentence.rstrip("."):
            continue
        if contains_answer(sentence, candidate.answer):  # see the module contract
            return candidate
    return None


class RuleQuestions:
    """The deterministic rule generator (see the module contract)."""

    name = "rules"

    def __call__(self, text: str, limit: int) -> list[Candidate]:
        found = [c for c in map(sentence_question, sentences(text)) if c is not None]
        if len(found) <= limit:
            return found
        step = len(found) / limit  # spread over the passage rather than its first sentences
        return [found[int(i * step)] for i in range(limit)]
