"""Answer metrics against hand-computed cases (the official SQuAD v1.1 script's definitions)."""

from __future__ import annotations

import pytest

from assistant.answer_metrics import (
    best_contains,
    best_exact_match,
    best_f1,
    cites_answer,
    contains_answer,
    exact_match,
    f1,
    grounding,
    normalize_answer,
)


def test_normalisation_drops_case_punctuation_articles_and_spaces() -> None:
    assert normalize_answer("  The  Eiffel-Tower, in A city! ") == "eiffeltower in city"


def test_exact_match_after_normalisation() -> None:
    assert exact_match("the Paris.", "Paris") == 1.0
    assert exact_match("Paris, France", "Paris") == 0.0


def test_f1_by_hand() -> None:
    # prediction tokens: [capital, is, paris]; gold: [paris]; common 1 -> P=1/3, R=1 -> F1 = 2*(1/3)/(4/3) = 0.5
    assert f1("The capital is Paris", "Paris") == pytest.approx(0.5)
    # prediction [denver, broncos] vs gold [broncos]: P=1/2, R=1 -> 2/3
    assert f1("Denver Broncos", "Broncos") == pytest.approx(2 / 3)
    assert f1("London", "Paris") == 0.0
    assert f1("", "") == 1.0 and f1("x", "") == 0.0


def test_best_of_several_gold_answers() -> None:
    golds = ["Denver Broncos", "Broncos"]
    assert best_exact_match("broncos", golds) == 1.0
    assert best_f1("the Denver Broncos won", golds) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert best_contains("It was the Denver Broncos.", golds) == 1.0
    assert best_f1("x", []) == 0.0


def test_contains_is_token_aligned() -> None:
    assert contains_answer("in 1990s", "1990") == 0.0
    assert contains_answer("It happened in 1990.", "1990") == 1.0


def test_grounding_and_citation_accuracy() -> None:
    sources = ["Paris is the capital of France."]
    assert grounding("Paris", sources) == 1.0
    assert grounding("Paris is in Germany", sources) == pytest.approx(2 / 4)  # paris, is found; in, germany not
    assert grounding("", sources) == 1.0
    assert cites_answer(sources, ["capital of France"]) == 1.0
    assert cites_answer(["Berlin is big."], ["Paris"]) == 0.0
