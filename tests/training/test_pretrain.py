"""Continued pretraining (`method: pt`) on the tiny model: every token is a target, the held-out texts' perplexity
before and after is in the metrics (the before figure checked against our own forward pass of the base model), and
the registered adapter says it was trained with `pt`."""

from __future__ import annotations

import json
import math
from pathlib import Path

from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS, TOPICS

TEXTS = [f"{answer} {question} {answer}" for question, answer in TOPICS] * 2


def test_read_texts_and_the_gate_split(tmp_path: Path) -> None:
    from training.pretrain import read_texts, split_for_gate

    plain = tmp_path / "notes.txt"
    plain.write_text("First block. It has two sentences.\n\n\nSecond block.\n")
    assert read_texts(plain) == ["First block. It has two sentences.", "Second block."]
    records = tmp_path / "chunks.jsonl"
    records.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:2]))
    assert read_texts(records) == TEXTS[:2]
    example = split_for_gate("One sentence here. Another one there. And a third.")
    assert example.prompt + example.completion == "One sentence here. Another one there. And a third."
    assert example.prompt.endswith(". ") and example.completion


def test_pt_trains_on_every_token_and_reports_heldout_perplexity(settings: Settings, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.runs import TrainingRequest, run_training

    data = tmp_path / "chunks.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    options = {**FAST_OPTIONS, "max_steps": 6, "learning_rate": 5e-3, "eval_split": 0.25, "min_tokens": 1,
               "near_duplicate_threshold": 1.0}  # fmt: skip
    request = TrainingRequest("pt", [data], name="notes", options=options, output_dir=tmp_path / "run")
    outcome = run_training(settings, request)
    assert outcome.adapter is not None and outcome.adapter.method == "pt"
    perplexity = outcome.metrics["perplexity"]
    assert perplexity["heldout_texts"] == outcome.metrics["validation_examples"] > 0
    assert perplexity["after"] < perplexity["before"]

    # independently: the base model's perplexity over the held-out texts (every token a target, EOS appended)
    model_dir = Path(settings.models.lm)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    report = json.loads((outcome.run_dir / "data_report.json").read_text())
    assert report["validation"] == perplexity["heldout_texts"]
    held = [e.answer() for e in _validation(settings, request)]
    nll, count = 0.0, 0
    with torch.no_grad():
        for text in held:
            ids = [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
            out = model(torch.tensor([ids]), labels=torch.tensor([ids]))
            nll += float(out.loss) * (len(ids) - 1)
            count += len(ids) - 1
    assert math.isclose(math.exp(nll / count), perplexity["before"], rel_tol=0.02)


def _validation(settings: Settings, request: object) -> list:  # type: ignore[type-arg]
    """The validation texts the run held out: the same seeded selection, made again without training."""
    from assistant.parts import Parts
    from training.config import build_run_config
    from training.trainers import MethodRunner

    config = build_run_config("pt", Path(request.output_dir) / "again", request.options)  # type: ignore[attr-defined]
    runner = MethodRunner.create(Parts(settings), request, config, None, [])
    runner.prepare_data()
    return runner.validation_examples
