"""Pieces shared by the engine implementations: tokenizer-based chat rendering and token counting.

Contract: both engines tokenize with the model directory's own Hugging Face tokenizer and render chats with its chat
template through `assistant.chat_template` (the function training and the gate use too), so the prompt text and
token counts are identical whichever backend serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assistant.chat_template import encode, render_prompt


class TokenizerMixin:
    """Chat rendering and token counting through the model's tokenizer."""

    tokenizer: Any

    def _load_tokenizer(self, model_dir: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str:
        return render_prompt(self.tokenizer, messages)

    def encode(self, text: str) -> list[int]:
        return encode(self.tokenizer, text)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))
