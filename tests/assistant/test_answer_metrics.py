"""Answer metrics against hand-computed cases (the official SQuAD v1.1 script's definitions)."""

from __future__ import annotations

import math

import pytest

from assistant.answer_metrics import (
    abstention_scores,
    best_contains,
    best_exact_match,
    best_f1,
    cited_indices,
    cites_answer,
    contains_answer,
    exact_match,
    f1,
    grounding,
    is_abstention,
    latency_summary,
    normalize_answer,
    percentile,
    strip_citations,
    supporting_source,
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


def test_citation_markers_are_read_and_stripped() -> None:
    assert cited_indices("Paris [2], see also [1] and [2].") == [2, 1]
    assert cited_indices("no markers") == []
    assert strip_citations("Paris [1].") == "Paris ."
    assert exact_match(strip_citations("The Paris [3]"), "Paris") == 1.0


def test_the_supporting_source_holds_the_answer_else_most_of_its_words() -> None:
    sources = ["Berlin is big.", "The capital of France is Paris.", "Paris, Texas, is a small town."]
    assert supporting_source("Paris", sources) == 2  # the first source containing the whole answer
    assert supporting_source("the capital, Paris!", sources) == 2  # normalised: articles and punctuation go
    # no source contains "Paris town big": source 3 holds 2 of its 3 words (paris, town), source 1 one (big)
    assert supporting_source("Paris town big", sources) == 3
    assert supporting_source("Rome", sources) is None  # no shared word: nothing to cite
    assert supporting_source("", sources) is None
    assert supporting_source("Paris", []) is None


def test_abstention_is_the_fixed_answer_or_a_said_dont_know() -> None:
    from assistant.prompts import NO_SOURCES_ANSWER

    assert is_abstention(NO_SOURCES_ANSWER)
    for reply in ("I don't know.", "I do not know who that is.", "The sources do not mention it.", "I can't tell"):
        assert is_abstention(reply), reply
    for reply in ("Paris [1]", "The knowledge of the monks", "Denver Broncos"):
        assert not is_abstention(reply), reply


def test_abstention_precision_and_recall_by_hand() -> None:
    # 4 questions: unanswerable = [T, T, F, F]; abstained = [T, F, T, F]
    # right abstentions 1 (the first); abstentions 2 -> precision 1/2; unanswerable 2 -> recall 1/2
    scores = abstention_scores([True, False, True, False], [True, True, False, False])
    assert scores == {"abstentions": 2, "unanswerable": 2, "precision": 0.5, "recall": 0.5}
    none = abstention_scores([False, False], [False, False])
    assert none["precision"] is None and none["recall"] is None


def test_latency_percentiles_are_nearest_rank() -> None:
    seconds = [0.5, 4.0, 1.0, 2.0, 3.0, 10.0, 6.0, 5.0, 8.0, 7.0]  # sorted: 0.5 1 2 3 4 5 6 7 8 10
    assert percentile(seconds, 50) == 4.0  # rank ceil(5.0) = 5
    assert percentile(seconds, 95) == 10.0  # rank ceil(9.5) = 10
    assert percentile([3.0], 95) == 3.0
    summary = latency_summary(seconds)
    assert summary["p50"] == 4.0 and summary["mean"] == pytest.approx(46.5 / 10)
    assert math.isnan(latency_summary([])["p50"])
