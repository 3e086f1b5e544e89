"""Prompt rendering, messages -> text -> token ids: the one function the server, training and the gate share.

Contract: `render_prompt(tokenizer, messages)` is the model's own chat template applied to the messages with the
generation prompt added (`add_generation_prompt=True`): the exact text the server sends to the engine, the prompt
training computes its loss after and the gate scores with. `encode(tokenizer, text)` tokenizes with
`add_special_tokens=False`, because the chat template already wrote any BOS/special tokens into the text.
`prompt_ids(tokenizer, messages)` is both. Any Hugging Face tokenizer with a chat template works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def render_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """The chat template applied to `messages`, ending with the assistant's generation prompt."""
    return str(tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True))


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of already rendered text (no special tokens added)."""
    return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def prompt_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of the rendered prompt."""
    return encode(tokenizer, render_prompt(tokenizer, messages))
