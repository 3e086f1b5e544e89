"""The RAG prompt template: one piece of code shared by the server and by training.

Contract: `build_rag_messages(history, sources)` turns a chat history and the numbered retrieved sources into the
messages given to the chat template; the server renders them with the model's tokenizer and so does training, so a
fine-tuned adapter sees at training time exactly what it sees when serving. The instructions go into the system
message, the numbered sources into the last user turn (small models follow context placed next to the question best).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.retrieval import Hit
    from assistant.settings import Settings

RAG_SYSTEM_PROMPT = (
    "You are a helpful assistant that answers questions about the company's documents. "
    "Answer using only the numbered sources given with the question, and cite them like [1]. "
    "If the sources do not contain the answer, say that you don't know."
)
PLAIN_SYSTEM_PROMPT = "You are a helpful assistant."
NO_SOURCES_ANSWER = "I don't know: I found nothing about this in the documents I can search."


@dataclass(frozen=True)
class Source:
    """One retrieved passage as it appears in the prompt."""

    text: str
    title: str = ""
    section: str | None = None
    page: int | None = None

    def header(self) -> str:
        parts = [self.title or "untitled"]
        if self.section:
            parts.append(f"section: {self.section}")
        if self.page is not None:
            parts.append(f"page {self.page}")
        return ", ".join(parts)


def source_of_hit(hit: Hit) -> Source:
    """A retrieved chunk as a prompt source (titled by the document, else its file name)."""
    return Source(text=hit.text, title=hit.title or hit.source, section=hit.section, page=hit.page)


def prompt_sources(question: str, hits: Sequence[Hit], settings: Settings) -> list[Source]:
    """The sources the server puts into the prompt for `question`: count, order and text of each. Training builds its
    RAG examples through this function, so an adapter is trained on exactly what the server shows it."""
    return [source_of_hit(hit) for hit in list(hits)[: settings.retrieval.top_k]]


def format_sources(sources: Sequence[Source]) -> str:
    """Numbered sources, `[n] header` then the passage text, separated by blank lines."""
    return "\n\n".join(f"[{i}] {src.header()}\n{src.text.strip()}" for i, src in enumerate(sources, start=1))


def rag_user_turn(question: str, sources: Sequence[Source]) -> str:
    """The last user turn with its sources: the form the model is trained and served on."""
    return f"Sources:\n{format_sources(sources)}\n\nQuestion: {question.strip()}"


def build_rag_messages(
    history: Sequence[dict[str, str]],
    sources: Sequence[Source] | None,
    system_prompt: str | None = None,
) -> list[dict[str, str]]:
    """Messages for the chat template.

    `history` is the OpenAI-style conversation ending with a user turn; a system message in it is kept and put after
    the platform's instructions. `sources=None` means retrieval is off (plain chat, no RAG instructions).
    """
    user_system = "\n\n".join(m["content"] for m in history if m["role"] == "system")
    turns = [dict(m) for m in history if m["role"] != "system"]
    base = system_prompt or (PLAIN_SYSTEM_PROMPT if sources is None else RAG_SYSTEM_PROMPT)
    system = f"{base}\n\n{user_system}" if user_system else base
    if sources is not None and turns and turns[-1]["role"] == "user":
        turns[-1] = {"role": "user", "content": rag_user_turn(turns[-1]["content"], sources)}
    return [{"role": "system", "content": system}, *turns]
