"""Serving-aware rendering and tokenization: training sees exactly the prompt text the server builds.

Contract: every example goes through `assistant.prompts.build_rag_messages` (sources or not, like the server with
retrieval on or off) in the served wording: `style` is `settings.answer.prompt_style` (default: the served default
`assistant.prompts.DEFAULT_PROMPT_STYLE`), then `assistant.chat_template.render_prompt` (the server's and the gate's
renderer); the completion is the answer text followed by the EOS token. Text is encoded with
`assistant.chat_template.encode` (`add_special_tokens=False`), as the server encodes its prompts.
`tokenize_chat` returns `input_ids` and `labels` (-100 outside assistant turns): every assistant turn is a
target when the template renders turn by turn consistently, otherwise only the last one (the history is prompt);
a style's worked example (the demo turns the server puts before the conversation) is prompt, never a target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from assistant.chat_template import encode, render_prompt
from assistant.prompts import DEFAULT_PROMPT_STYLE, build_rag_messages, is_worked_example
from training.data.records import ChatExample, Message, PreferenceExample

IGNORE_INDEX = -100


def prompt_messages(
    history: Sequence[Message], example: ChatExample | PreferenceExample, style: str = DEFAULT_PROMPT_STYLE
) -> list[Message]:
    """The server's message list for a history ending with a user turn (`style`: settings.answer.prompt_style)."""
    sources = list(example.sources) if example.sources is not None else None
    return build_rag_messages([dict(m) for m in history], sources, style=style)


def chat_messages(example: ChatExample, style: str = DEFAULT_PROMPT_STYLE) -> list[Message]:
    """The full conversation as the server would have it: rendered prompt messages + the final answer."""
    return [*prompt_messages(example.messages[:-1], example, style), dict(example.messages[-1])]


def tokenize_chat(tokenizer: Any, example: ChatExample, style: str = DEFAULT_PROMPT_STYLE) -> dict[str, list[int]]:
    """`input_ids` and `labels` with loss on the assistant tokens (and the EOS after each) only."""
    messages = chat_messages(example, style)
    input_ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for j, message in enumerate(messages):
        if message["role"] != "assistant" or is_worked_example(messages, j, style):
            continue
        prefix = render_prompt(tokenizer, messages[:j])
        if not prefix.startswith(rendered):
            return _last_turn_only(tokenizer, messages)
        prompt_ids = encode(tokenizer, prefix[len(rendered) :])
        answer_ids = [*encode(tokenizer, message["content"]), tokenizer.eos_token_id]
        input_ids += prompt_ids + answer_ids
        labels += [IGNORE_INDEX] * len(prompt_ids) + answer_ids
        rendered = prefix + message["content"] + tokenizer.eos_token
    return {"input_ids": input_ids, "labels": labels}


def _last_turn_only(tokenizer: Any, messages: Sequence[Message]) -> dict[str, list[int]]:
    prompt_ids = encode(tokenizer, render_prompt(tokenizer, messages[:-1]))
    answer_ids = [*encode(tokenizer, messages[-1]["content"]), tokenizer.eos_token_id]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def render_preference(tokenizer: Any, example: PreferenceExample, style: str = DEFAULT_PROMPT_STYLE) -> dict[str, str]:
    """Prompt text exactly as served, and the two completions (DPOTrainer appends the EOS token)."""
    if example.rendered_prompt is not None:
        prompt = example.rendered_prompt
    else:
        prompt = render_prompt(tokenizer, prompt_messages(example.prompt, example, style))
    return {"prompt": prompt, "chosen": example.chosen, "rejected": example.rejected}


def preference_length(tokenizer: Any, example: PreferenceExample, style: str = DEFAULT_PROMPT_STYLE) -> int:
    """Tokens of prompt + the longer completion + EOS: what the DPO batch holds for this pair."""
    rendered = render_preference(tokenizer, example, style)
    longest = max(len(encode(tokenizer, rendered["chosen"])), len(encode(tokenizer, rendered["rejected"])))
    return len(encode(tokenizer, rendered["prompt"])) + longest + 1


def tokenize_completion(
    tokenizer: Any, example: PreferenceExample, style: str = DEFAULT_PROMPT_STYLE
) -> dict[str, list[int]]:
    """SFT on a pair's preferred side: the prompt exactly as served (the stored rendered prompt of a feedback pair),
    loss on the chosen completion and its EOS only."""
    prompt_ids = encode(tokenizer, render_preference(tokenizer, example, style)["prompt"])
    answer_ids = [*encode(tokenizer, example.chosen), tokenizer.eos_token_id]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}
