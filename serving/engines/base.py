"""Pieces shared by the engine implementations: tokenizer-based chat rendering and token counting.

Contract: both engines tokenize with the model directory's own Hugging Face tokenizer and render chats with its chat
template, so the prompt text and token counts are identical whichever backend serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class TokenizerMixin:
    """Chat rendering and token counting through the model's tokenizer."""

    tokenizer: Any

    def _load_tokenizer(self, model_dir: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str:
        return str(self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))

    def encode(self, text: str) -> list[int]:
        # The chat template already wrote any BOS/special tokens into the text.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))
