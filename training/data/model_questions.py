"""Questions written by a language model about answer spans the rules pick: the model-based `QuestionGenerator`.

Contract: `ModelQuestions(model_dir)` loads the causal LM at `model_dir` (the served base model, float32, on first use)
and, for each sentence where `training.data.questions.sentence_question` finds an answer span, asks the model through
its chat template to write one question about the sentence whose answer is that span (greedy, at most
`MAX_NEW_TOKENS`). The answer stays the rules' verbatim span; only the question's wording is the model's. A reply that
is not one question (no "?", empty, or containing the answer itself) gives no candidate. Same interface as
`RuleQuestions` (`name`, `__call__(text, limit)`), so the round-trip check in `training.data.collection` judges both
alike; `bench/bench_learning.py --generate-only --generator model` measures one against the other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from assistant.answer_metrics import normalize_answer
from training.data.questions import Candidate, sentence_question, sentences

log = logging.getLogger(__name__)
MAX_NEW_TOKENS = 40
PROMPT = (
    'Text: {sentence}\n\nWrite one question about the text whose answer is "{answer}". Reply with the question only.'
)


class ModelQuestions:
    """The model-based generator (see the module contract)."""

    name = "model"

    def __init__(self, model_dir: Path | str) -> None:
        self.model_dir = str(model_dir)
        self._model: Any = None
        self._tokenizer: Any = None
        self.asked = self.written = 0  # answer spans the model was asked about, replies that were one question
        self.refused: list[str] = []  # a few replies that were not (samples for the report)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self._model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32).eval()

    def write(self, sentence: str, answer: str) -> str | None:
        """The model's question about `sentence` whose answer is `answer`, or None when the reply is not one."""
        import torch

        if self._model is None:
            self._load()
        messages = [{"role": "user", "content": PROMPT.format(sentence=sentence, answer=answer)}]
        ids = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)  # fmt: skip
        with torch.no_grad():
            out = self._model.generate(**ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                       pad_token_id=self._tokenizer.eos_token_id)  # fmt: skip
        reply = self._tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        question = question_of(reply, answer)
        self.asked += 1
        self.written += question is not None
        if question is None and len(self.refused) < 5:
            self.refused.append(reply)
        log.debug("model question about %r: %r -> %s", answer, reply, question)
        return question

    def __call__(self, text: str, limit: int) -> list[Candidate]:
        found = [c for c in map(sentence_question, sentences(text)) if c is not None]
        if len(found) > limit:
            step = len(found) / limit  # spread over the passage, as the rules do
            found = [found[int(i * step)] for i in range(limit)]
        out = []
        for rule in found:
            question = self.write(rule.sentence, rule.answer)
            if question is not None:
                out.append(Candidate(question, rule.answer, rule.kind, rule.sentence))
        return out


def question_of(reply: str, answer: str) -> str | None:
    """The first line of the reply when it is one question that does not give its answer away."""
    line = reply.splitlines()[0].strip().strip('"') if reply.strip() else ""
    if not line.endswith("?") or len(line.split()) < 3:
        return None
    given = normalize_answer(answer)
    if given and f" {given} " in f" {normalize_answer(line)} ":  # the answer's words, whole, in the question
        return None
    return line
