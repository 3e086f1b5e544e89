"""The RAG prompt: which sources the model sees and how they are worded; one piece of code for serving and training.

Contract:
- `prompt_sources(question, hits, settings)` turns ranked retrieval hits into the numbered sources of the prompt:
  the best `retrieval.top_k` hits, each trimmed to the window of sentences that best matches the question
  (`answer.source_window` sentences either side of the best one; None keeps the whole chunk), in the order
  `answer.source_order` says ('best_last' puts the best source nearest the question). The chat service and training
  both call it, so an adapter is trained on exactly the sources the server shows it.
- `build_rag_messages(history, sources, style=...)` turns a chat history and those sources into the messages given to
  the chat template; the server renders them with the model's tokenizer and so does training. The instructions go
  into the system message, the numbered sources into the last user turn (small models follow context placed next to
  the question best). `PROMPT_STYLES` holds the measured wordings (see bench/bench_answers.py); the default is the one
  that measured best, and training renders with it.
- `NO_SOURCES_ANSWER` is the platform's one fixed "I don't know" answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.retrieval import Hit
    from assistant.settings import Settings

PLAIN_SYSTEM_PROMPT = "You are a helpful assistant."
NO_SOURCES_ANSWER = "I don't know: I found nothing about this in the documents I can search."


@dataclass(frozen=True)
class PromptStyle:
    """The wording of a grounded prompt: system instructions, how the sources are introduced and labelled, and a line
    put after the question. `headers` False labels each source with its number only ("[1] text"): with the file name
    as a header, the small model copied file names ("French_and_Indian_War-020") into its answers."""

    system: str
    after_question: str = ""
    heading: str = "Sources"
    headers: bool = True
    numbered: bool = True
    example: tuple[str, str] | None = None


# The naive peer's instruction, shared by the styles measured against it.
CONTEXT_INSTRUCTION = "Answer from the context. Short answer only."

PROMPT_STYLES: dict[str, PromptStyle] = {
    # The original wording (issue 10 baseline: answers ran on and hallucinated).
    "original": PromptStyle(
        "You are a helpful assistant that answers questions about the company's documents. "
        "Answer using only the numbered sources given with the question, and cite them like [1]. "
        "If the sources do not contain the answer, say that you don't know."
    ),
    # A direct short answer first, then the citation. (A line after the question, "Short answer with its source
    # number:", measured worse: replies began "The answer is:" or "The source number is 1.")
    "short": PromptStyle(
        "You are a helpful assistant that answers questions about the company's documents. "
        "Answer using only the numbered sources given with the question. "
        "Give the short answer first, in a few words taken from the sources, then cite the source like [1]. "
        "If the sources do not contain the answer, say that you don't know."
    ),
    # The naive peer's plain instruction, with the citation asked for.
    "plain": PromptStyle(
        "Answer the question from the sources. Short answer only, then the source number like [1]. "
        "If the sources do not contain the answer, say that you don't know."
    ),
    # The naive peer's prompt word for word ("Context:", "Answer from the context. Short answer only."), with the
    # sources numbered "[1]" and no file-name headers; the citation is added by the server when the reply has none
    # (`answer.cite_when_missing`). Measured better than the styles above (bench/bench_answers.py): their replies
    # began "The answer is:", "The sources mentioned in the question are:" or copied file names.
    "context": PromptStyle(CONTEXT_INSTRUCTION, heading="Context", headers=False),
    # The default: the "context" wording with one worked example before the conversation (a question over two
    # sources, answered by a few words copied from the right one and its number); the small model restates the
    # question in a full sentence otherwise, and F1 counts every extra word against it. Measured on the SQuAD half
    # (bench/bench_answers.py, seed 0, greedy): F1 0.095 vs 0.087 for "context" on 150 questions (0.105 vs 0.099
    # on 60), contains-answer 0.227 vs 0.200, for ~0.35 s more median latency (the demo's extra prompt tokens).
    "example": PromptStyle(
        CONTEXT_INSTRUCTION,
        heading="Context",
        headers=False,
        example=(
            "Context:\n[1] The library opens at nine on weekdays. Loans last three weeks.\n\n"
            "[2] The new reading room was designed by Maria Lind and opened in 2019.\n\n"
            "Question: Who designed the reading room?",
            "Maria Lind [2]",
        ),
    ),
    # The naive peer's prompt exactly: the sources as bare paragraphs, no "[n]" labels for the model to copy into
    # the answer's place ("The answer to the question is: [1]"); the server cites (`answer.cite_when_missing`).
    "unnumbered": PromptStyle(CONTEXT_INSTRUCTION, heading="Context", headers=False, numbered=False),
}
DEFAULT_PROMPT_STYLE = "example"
RAG_SYSTEM_PROMPT = PROMPT_STYLES[DEFAULT_PROMPT_STYLE].system


@dataclass(frozen=True)
class Source:
    """One retrieved passage as it appears in the prompt (`chunk_id` ties it to its hit; not rendered)."""

    text: str
    title: str = ""
    section: str | None = None
    page: int | None = None
    chunk_id: int | None = None

    def header(self) -> str:
        parts = [self.title or "untitled"]
        if self.section:
            parts.append(f"section: {self.section}")
        if self.page is not None:
            parts.append(f"page {self.page}")
        return ", ".join(parts)


# ---------------------------------------------------------------- which sources, in which order, how much of each

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"[a-z0-9]+")
# Words that match everywhere and say nothing about where an answer is.
_STOPWORD_TEXT = (
    "a an the of in on at to for from by with and or but is are was were be been being do does did has have had "
    "what which who whom whose when where why how that this these those it its as into than then there their they "
    "he she his her him i you we our your not no yes can could would should will may might shall must about after "
    "before during over under between also any all some one many much most more other such only own same so too very "
    "if each per up down out off again further once here s t"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def source_of(hit: Hit) -> Source:
    """A hit as a prompt source, whole."""
    return Source(
        text=hit.text, title=hit.title or hit.source, section=hit.section, page=hit.page, chunk_id=hit.chunk_id
    )


def content_terms(text: str) -> set[str]:
    """Lower-cased words of `text` without stop words: what a question and a sentence can share."""
    return {word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS}


def split_sentences(text: str) -> list[str]:
    return [part for part in _SENTENCE_END.split(text.strip()) if part]


def sentence_window(sentences: Sequence[str], center: int, around: int) -> str:
    """Sentence `center` with `around` sentences either side (fewer at the ends), joined by spaces."""
    start, end = max(0, center - around), min(len(sentences), center + around + 1)
    return " ".join(sentences[start:end])


def query_window(text: str, question: str, around: int) -> str:
    """The sentence sharing most terms with the question, with `around` sentences either side (the text if short)."""
    sentences = split_sentences(text)
    if len(sentences) <= 2 * around + 1:
        return text.strip()
    terms = content_terms(question)
    overlap = [len(terms & content_terms(sentence)) for sentence in sentences]
    best = max(range(len(sentences)), key=lambda i: (overlap[i], -i))  # ties: the earlier sentence
    return sentence_window(sentences, best, around)


def prompt_sources(question: str, hits: Sequence[Hit], settings: Settings, top_k: int | None = None) -> list[Source]:
    """The prompt's sources for ranked `hits` (best first): count (`top_k`, default `retrieval.top_k`), trimming and
    order from the settings."""
    options = settings.answer
    chosen = list(hits[: settings.retrieval.top_k if top_k is None else top_k])
    sources = [source_of(hit) for hit in chosen]
    if options.source_window is not None:
        sources = [
            Source(query_window(s.text, question, options.source_window), s.title, s.section, s.page, s.chunk_id)
            for s in sources
        ]
    if options.source_order == "best_last":
        sources.reverse()
    return sources


# ---------------------------------------------------------------- messages


def format_sources(sources: Sequence[Source], headers: bool = True, numbered: bool = True) -> str:
    """Numbered sources separated by blank lines: `[n] header` then the passage text, or `[n] text` without headers,
    or the bare passages (`numbered` False)."""
    if not numbered:
        return "\n\n".join(src.text.strip() for src in sources)
    if not headers:
        return "\n\n".join(f"[{i}] {src.text.strip()}" for i, src in enumerate(sources, start=1))
    return "\n\n".join(f"[{i}] {src.header()}\n{src.text.strip()}" for i, src in enumerate(sources, start=1))


def rag_user_turn(question: str, sources: Sequence[Source], style: str = DEFAULT_PROMPT_STYLE) -> str:
    """The last user turn with its sources: the form the model is trained and served on."""
    wording = PROMPT_STYLES[style]
    after = wording.after_question
    listed = format_sources(sources, wording.headers, wording.numbered)
    body = f"{wording.heading}:\n{listed}\n\nQuestion: {question.strip()}"
    return body + (f"\n{after}" if after else "")


def build_rag_messages(
    history: Sequence[dict[str, str]],
    sources: Sequence[Source] | None,
    system_prompt: str | None = None,
    style: str = DEFAULT_PROMPT_STYLE,
) -> list[dict[str, str]]:
    """Messages for the chat template.

    `history` is the OpenAI-style conversation ending with a user turn; a system message in it is kept and put after
    the platform's instructions. `sources=None` means retrieval is off (plain chat, no RAG instructions).
    """
    user_system = "\n\n".join(m["content"] for m in history if m["role"] == "system")
    turns = [dict(m) for m in history if m["role"] != "system"]
    base = system_prompt or (PLAIN_SYSTEM_PROMPT if sources is None else PROMPT_STYLES[style].system)
    system = f"{base}\n\n{user_system}" if user_system else base
    example: list[dict[str, str]] = []
    if sources is not None and turns and turns[-1]["role"] == "user":
        turns[-1] = {"role": "user", "content": rag_user_turn(turns[-1]["content"], sources, style)}
        demo = PROMPT_STYLES[style].example
        if demo is not None and system_prompt is None:
            example = [{"role": "user", "content": demo[0]}, {"role": "assistant", "content": demo[1]}]
    return [{"role": "system", "content": system}, *example, *turns]


def is_worked_example(messages: Sequence[dict[str, str]], index: int, style: str) -> bool:
    """Whether `messages[index]` is the demo answer `build_rag_messages` put right after the system prompt: prompt
    for the model, never a training target."""
    demo = PROMPT_STYLES[style].example
    return demo is not None and index == 2 and (messages[1]["content"], messages[2]["content"]) == demo
