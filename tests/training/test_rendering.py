"""Serving-aware rendering: training prompts equal the server's, loss only on assistant tokens, SQuAD RAG examples."""

from __future__ import annotations

from pathlib import Path

from assistant.prompts import RAG_SYSTEM_PROMPT, Source, build_rag_messages
from training.data.rag import BM25Distractors, load_squad_examples
from training.data.records import ChatExample, PreferenceExample
from training.data.render import IGNORE_INDEX, render_preference, tokenize_chat
from training.modeling import load_tokenizer


def _warranty_example(answer: str) -> ChatExample:
    """One RAG question over one source, answered with `answer`."""
    question = {"role": "user", "content": "How long is the warranty?"}
    return ChatExample(
        (question, {"role": "assistant", "content": answer}), (Source("The warranty lasts two years.", title="Policy"),)
    )


def test_chat_tokens_match_server_prompt_and_mask(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    example = _warranty_example("Two years [1].")
    sources = example.sources or ()
    encoded = tokenize_chat(tokenizer, example)
    server_messages = build_rag_messages([{"role": "user", "content": "How long is the warranty?"}], list(sources))
    server_prompt = tokenizer.apply_chat_template(server_messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(server_prompt, add_special_tokens=False)["input_ids"]
    n = len(prompt_ids)
    assert encoded["input_ids"][:n] == prompt_ids
    assert encoded["labels"][:n] == [IGNORE_INDEX] * n
    target = [t for t in encoded["labels"] if t != IGNORE_INDEX]
    assert tokenizer.decode(target) == "Two years [1]." + tokenizer.eos_token


def test_multi_turn_trains_every_assistant_turn(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    example = ChatExample(
        (
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Where is Paris?"},
            {"role": "assistant", "content": "On the Seine."},
        )
    )
    encoded = tokenize_chat(tokenizer, example)
    target = tokenizer.decode([t for t in encoded["labels"] if t != IGNORE_INDEX])
    assert target == f"Hello{tokenizer.eos_token}On the Seine.{tokenizer.eos_token}"
    full = tokenizer.apply_chat_template(
        [{"role": "system", "content": "You are a helpful assistant."}, *example.messages], tokenize=False
    )
    assert tokenizer.decode(encoded["input_ids"]) == full.rstrip("\n")


def test_preference_prompt_is_the_server_prompt(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    pair = PreferenceExample(({"role": "user", "content": "Q?"},), "good", "bad")
    rendered = render_preference(tokenizer, pair)
    assert rendered["prompt"].endswith("<|im_start|>assistant\n") and "helpful assistant" in rendered["prompt"]
    stored = PreferenceExample(pair.prompt, "good", "bad", rendered_prompt=rendered["prompt"] + "x")
    assert render_preference(tokenizer, stored)["prompt"] == rendered["prompt"] + "x"  # used verbatim


def test_squad_rag_examples(shared_data: Path, tiny_model_dir: Path) -> None:
    examples = load_squad_examples(shared_data / "squad-v1.1-dev-part1.json", distractors=3, seed=1, limit=20)
    assert len(examples) == 20
    for example in examples:
        assert example.sources is not None and len(example.sources) == 4
        assert len({s.text for s in example.sources}) == 4  # gold + 3 distinct distractors
    gold_positions = set()
    for example in examples:
        answer = example.answer()
        gold_positions.add(next(i for i, s in enumerate(example.sources or ()) if answer in s.text))
    assert len(gold_positions) > 1  # shuffled, not always first
    tokenizer = load_tokenizer(tiny_model_dir)
    text = tokenizer.decode(tokenize_chat(tokenizer, examples[0])["input_ids"])
    assert RAG_SYSTEM_PROMPT in text and "[4]" in text and "Question: " in text


def test_bm25_distractor_protocol() -> None:
    passages = [Source("Paris is on the Seine."), Source("Invoices are due in thirty days."), Source("Routers reset.")]
    retriever = BM25Distractors(passages)
    assert retriever("When are invoices due?", 1)[0].text.startswith("Invoices")


def test_a_styles_worked_example_is_prompt_not_a_training_target(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    example = _warranty_example("Two years [1]")
    sources = example.sources or ()
    encoded = tokenize_chat(tokenizer, example, style="example")
    target = tokenizer.decode([t for t in encoded["labels"] if t != IGNORE_INDEX])
    assert target == "Two years [1]" + tokenizer.eos_token
    served = build_rag_messages([dict(example.messages[0])], list(sources), style="example")
    prompt = tokenizer.apply_chat_template(served, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert encoded["input_ids"][: len(prompt_ids)] == prompt_ids  # the demo is in the prompt, as served
