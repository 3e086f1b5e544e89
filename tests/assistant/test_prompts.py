"""The prompt's sources: count, order and per-source trimming (`prompt_sources`), and the messages built from them."""

from __future__ import annotations

from pathlib import Path

from assistant.prompts import (
    DEFAULT_PROMPT_STYLE,
    PROMPT_STYLES,
    Source,
    build_rag_messages,
    prompt_sources,
    query_window,
    sentence_window,
    split_sentences,
)
from assistant.retrieval import Hit
from assistant.settings import Settings

PARAGRAPH = (
    "The router has four ports. It was designed in Oslo. To reset it, hold the reset button for ten seconds. "
    "The light then blinks orange. Warranty claims go to the shop. The manual is printed in six languages."
)


def _hit(chunk_id: int, text: str) -> Hit:
    return Hit(chunk_id, text, f"doc{chunk_id}", f"title{chunk_id}", f"file{chunk_id}.txt", "kb", None, None, 0, 9)


def _settings(tmp_path: Path, **answer: object) -> Settings:
    return Settings(data_dir=tmp_path, retrieval={"top_k": 3}, answer=answer)


def test_sentences_split_at_end_punctuation() -> None:
    assert split_sentences(PARAGRAPH)[2] == "To reset it, hold the reset button for ten seconds."
    assert len(split_sentences(PARAGRAPH)) == 6
    # a split needs end punctuation, a space and a capital or digit: decimals and lower-case runs stay together
    assert split_sentences("It cost 3.5 dollars. then more. Next one") == [
        "It cost 3.5 dollars. then more.",
        "Next one",
    ]


def test_window_is_the_best_matching_sentence_with_its_neighbours() -> None:
    # "reset" and "button" occur only in sentence 3 (index 2): window 1 keeps sentences 2-4
    window = query_window(PARAGRAPH, "How long must I hold the reset button?", 1)
    assert (
        window
        == "It was designed in Oslo. To reset it, hold the reset button for ten seconds. The light then blinks orange."
    )
    assert query_window(PARAGRAPH, "hold the reset button", 0) == "To reset it, hold the reset button for ten seconds."
    assert query_window("One. Two.", "anything", 1) == "One. Two."  # short text: whole


def test_sentence_window_is_cut_at_the_ends() -> None:
    sentences = ["A.", "B.", "C.", "D."]
    assert sentence_window(sentences, 1, 1) == "A. B. C."
    assert sentence_window(sentences, 0, 1) == "A. B."  # nothing before the first sentence
    assert sentence_window(sentences, 3, 2) == "B. C. D."
    assert sentence_window(sentences, 2, 0) == "C."


def test_prompt_sources_take_top_k_in_the_configured_order(tmp_path: Path) -> None:
    hits = [_hit(i, f"Passage {i}.") for i in range(1, 6)]
    first = prompt_sources("q", hits, _settings(tmp_path))
    assert [s.chunk_id for s in first] == [1, 2, 3]
    assert first[0].text == "Passage 1." and first[0].title == "title1"
    last = prompt_sources("q", hits, _settings(tmp_path, source_order="best_last"))
    assert [s.chunk_id for s in last] == [3, 2, 1]  # the best source is nearest the question


def test_prompt_sources_trim_each_source_when_asked(tmp_path: Path) -> None:
    hits = [_hit(1, PARAGRAPH), _hit(2, "Short one.")]
    whole = prompt_sources("reset button", hits, _settings(tmp_path, source_window=None))
    assert whole[0].text == PARAGRAPH
    trimmed = prompt_sources("reset button", hits, _settings(tmp_path, source_window=0))
    assert trimmed[0].text == "To reset it, hold the reset button for ten seconds."
    assert trimmed[1].text == "Short one."


def test_every_style_puts_its_sources_next_to_the_question() -> None:
    sources = prompt_sources("reset", [_hit(1, "Hold reset.")], Settings(data_dir=Path("unused")))
    for style in PROMPT_STYLES:
        messages = build_rag_messages([{"role": "user", "content": "How to reset?"}], sources, style=style)
        wording = PROMPT_STYLES[style]
        assert messages[0]["content"] == wording.system
        label = ("[1] title1\n" if wording.headers else "[1] ") if wording.numbered else ""
        assert messages[-1]["content"].startswith(f"{wording.heading}:\n{label}Hold reset.\n\nQuestion: How to reset?")


def test_the_default_style_numbers_sources_without_file_names() -> None:
    sources = [Source("Hold reset for ten seconds.", "router.txt"), Source("Claims go to the shop.", "warranty.txt")]
    user = build_rag_messages([{"role": "user", "content": "How to reset?"}], sources)[-1]["content"]
    assert Settings(data_dir=Path("unused")).answer.prompt_style == DEFAULT_PROMPT_STYLE
    assert user == (
        "Context:\n[1] Hold reset for ten seconds.\n\n[2] Claims go to the shop.\n\nQuestion: How to reset?"
    )
    assert ".txt" not in user


def test_the_unnumbered_style_is_the_naive_peers_prompt_word_for_word() -> None:
    sources = [Source("Hold reset for ten seconds.", "router.txt"), Source("Claims go to the shop.", "warranty.txt")]
    messages = build_rag_messages([{"role": "user", "content": "How to reset?"}], sources, style="unnumbered")
    # bench/bench_answers.py builds the peer's messages by hand: the same two messages
    assert messages == [
        {"role": "system", "content": "Answer from the context. Short answer only."},
        {
            "role": "user",
            "content": "Context:\nHold reset for ten seconds.\n\nClaims go to the shop.\n\nQuestion: How to reset?",
        },
    ]


def test_the_example_style_puts_its_worked_example_before_the_conversation_only_with_sources() -> None:
    demo_question, demo_answer = PROMPT_STYLES["example"].example or ("", "")
    sources = [Source("Hold reset for ten seconds.", "router.txt")]
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    history.append({"role": "user", "content": "How to reset?"})
    messages = build_rag_messages(history, sources, style="example")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert (messages[1]["content"], messages[2]["content"]) == (demo_question, demo_answer)
    assert messages[3:5] == history[:2]
    assert messages[-1]["content"].endswith("[1] Hold reset for ten seconds.\n\nQuestion: How to reset?")
    # the demo is laid out as the served turn is, so the model sees one format twice
    assert demo_question.startswith("Context:\n[1] ") and "\n\nQuestion: " in demo_question
    # no sources (retrieval off) or an explicit system prompt: no demo
    plain = build_rag_messages(history, None, style="example")
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user"]
    custom = build_rag_messages(history, sources, style="example", system_prompt="Be brief.")
    assert demo_answer not in [m["content"] for m in custom]
