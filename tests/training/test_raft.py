"""RAFT examples on the serving distribution: the sources are what the server's retriever and `prompt_sources` give
over the job's collection, the gold kept with `gold_probability`, otherwise the abstention answer; questions of held-out
documents go to the gate; feedback corrections train with their exact stored prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assistant.answer_metrics import contains_answer
from assistant.parts import Parts
from assistant.prompts import NO_SOURCES_ANSWER, prompt_sources
from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS

FACTS = {
    "warranty": ["The warranty covers parts and labour for two years from the date of purchase.",
                 "Warranty claims are filed online with the receipt and the serial number."],
    "router": ["To reset the router, hold the reset button for ten seconds until the light blinks.",
               "The router's light turns green when the internet connection is working."],
    "leave": ["Employees accrue twenty days of paid leave per year, prorated in the first year.",
              "Unused leave carries over for up to five days into the next year."],
    "invoices": ["Invoices are due within thirty days of the invoice date.",
                 "Late payments incur a fee of two percent per month on the open amount."],
}  # fmt: skip
QUESTIONS = [
    ("How long does the warranty last?", "two years", "warranty"),
    ("What do I need to file a warranty claim?", "the receipt and the serial number", "warranty"),
    ("How long do I hold the reset button?", "ten seconds", "router"),
    ("What colour is the router light when the connection works?", "green", "router"),
    ("How many days of paid leave do employees accrue?", "twenty days", "leave"),
    ("How many unused leave days carry over?", "five days", "leave"),
    ("When are invoices due?", "within thirty days", "invoices"),
    ("What is the fee for late payments?", "two percent per month", "invoices"),
]


@pytest.fixture(scope="module")
def collection_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from ingest.ingest_service import IngestService
    from tests.fixtures.retrieval_env import shared_embedder

    root = tmp_path_factory.mktemp("raft")
    docs = root / "docs"
    docs.mkdir()
    for name, lines in FACTS.items():
        (docs / f"{name}.md").write_text(f"# {name.title()}\n\n" + "\n\n".join(lines) + "\n")
    service = IngestService.open(Settings(data_dir=root / "data"), shared_embedder())
    service.ingest_paths([docs], collection="handbook")
    return root


def rag_settings(root: Path, tiny_model_dir: Path) -> Settings:
    return Settings(data_dir=root / "data", models={"lm": str(tiny_model_dir)}, retrieval={"top_k": 3})  # type: ignore[arg-type]


def qa_file(root: Path) -> Path:
    path = root / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": a, "document": d}) + "\n" for q, a, d in QUESTIONS))
    return path


def questions(root: Path) -> list[Any]:
    from training.data.rag import read_questions

    return read_questions(qa_file(root))


def test_sources_are_the_servers_and_the_gold_is_kept_or_dropped(collection_dir: Path, tiny_model_dir: Path) -> None:
    from training.data.rag import ServingSources, raft_examples

    settings = rag_settings(collection_dir, tiny_model_dir)
    serving = ServingSources(settings, ["handbook"], Parts(settings))
    items = questions(collection_dir)[::2]  # one question per document (retrieval is the slow part)
    kept, stats = raft_examples(items, serving, gold_probability=1.0, seed=0)
    assert len(kept) == len(items) and stats.not_served == 0
    for example, item in zip(kept, items, strict=True):
        # independently: the server's retrieval for the question, through the server's prompt_sources
        expected = prompt_sources(item.question, serving.retriever.search(item.question, collections=["handbook"]),
                                  settings)  # fmt: skip
        assert list(example.sources) == expected and len(expected) == 3
        holder = next(i for i, s in enumerate(expected, 1) if contains_answer(s.text, item.answer))
        assert example.messages[-1]["content"] == f"{item.answer} [{holder}]"

    dropped, stats = raft_examples(items, serving, gold_probability=0.0, seed=0)
    assert stats.abstain == len(dropped) == len(items)
    for example, item in zip(dropped, items, strict=True):
        hits = serving.retriever.search(item.question, k=8, collections=["handbook"])
        expected = prompt_sources(
            item.question, [h for h in hits if not contains_answer(h.text, item.answer)], settings
        )
        assert example.messages[-1]["content"] == NO_SOURCES_ANSWER and list(example.sources) == expected
        assert expected and not any(contains_answer(s.text, item.answer) for s in expected)

    half, stats = raft_examples(questions(collection_dir), serving, gold_probability=0.5, seed=1)
    assert 0 < stats.with_gold < len(half) and stats.with_gold + stats.abstain == len(half)


def test_answer_window_keeps_the_answer_sentence_and_its_neighbours() -> None:
    from training.data.rag import answer_window

    sentences = ["Alpha is first.", "The Broncos won in 2016.", "They went home.", "Nothing else.", "It was sunny."]
    text = " ".join(sentences)
    assert answer_window(text, "Who won?", ["Broncos"], 1) == " ".join(sentences[0:3])
    assert answer_window(text, "Who won?", ["the broncos"], 0) == sentences[1]  # SQuAD-normalised match
    assert answer_window(text, "Was it sunny?", ["rain"], 0) == sentences[4]  # no answer: the question's sentence
    assert answer_window(text, "Where?", ["home. Nothing"], 1) == text  # a cut would lose an answer it holds


def test_a_training_window_cuts_every_source_and_keeps_the_answer(collection_dir: Path, tiny_model_dir: Path) -> None:
    from assistant.prompts import split_sentences
    from training.data.rag import ServingSources, raft_examples

    settings = rag_settings(collection_dir, tiny_model_dir)
    serving = ServingSources(settings, ["handbook"], Parts(settings))
    items = questions(collection_dir)[1::2]
    whole, _ = raft_examples(items, serving, gold_probability=1.0, seed=0)
    cut, stats = raft_examples(items, serving, gold_probability=1.0, seed=0, window=0)
    assert stats.with_gold == len(items)  # no answer lost to the cut: nothing became an abstention
    shorter = 0
    for full, short, item in zip(whole, cut, items, strict=True):
        assert [s.title for s in short.sources] == [s.title for s in full.sources]
        for a, b in zip(full.sources, short.sources, strict=True):
            assert len(split_sentences(b.text)) == 1 and b.text in " ".join(split_sentences(a.text))
            shorter += len(b.text) < len(a.text)
        assert short.messages[-1] == full.messages[-1]  # same answer, same citation number
        cited = short.sources[int(short.messages[-1]["content"].rsplit("[", 1)[1].rstrip("]")) - 1]
        assert contains_answer(cited.text, item.answer)
    assert shorter > 0


def test_job_holds_out_documents_for_the_gate(collection_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from training.runs import TrainingRequest, train

    settings = rag_settings(collection_dir, tiny_model_dir)
    request = TrainingRequest("psft", [qa_file(collection_dir)], name="rag", collection="handbook", holdout=True,
                              options={**FAST_OPTIONS, "max_steps": 1, "eval_split": 0.2, "min_tokens": 1,
                                       "max_length": 1024},  # the default style's demo turn is prompt too
                              output_dir=tmp_path / "run")  # fmt: skip
    outcome = train(Parts(settings), request)  # nothing registered yet: the worker gates first
    heldout = outcome.heldout  # handed over in memory, no file
    assert not (outcome.run_dir / "gate_heldout.json").exists()
    assert heldout.qa and heldout.collections == ["handbook"]
    held_docs = {q.document for q in heldout.qa}
    data = outcome.metrics["data"]
    assert data["gate_documents"] == len(held_docs) and data["train_questions"] + len(heldout.qa) == len(QUESTIONS)
    report = json.loads((outcome.run_dir / "data_report.json").read_text())
    assert report["collection"] == "handbook"
    held_questions = {q.question for q in heldout.qa}
    assert all(q not in held_questions for q, _, d in QUESTIONS if d not in held_docs)
    assert all(d in held_docs for q, _, d in QUESTIONS if q in held_questions)


def test_feedback_correction_trains_on_the_exact_stored_prompt(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from training.config import build_run_config
    from training.runs import TrainingRequest
    from training.trainers import MethodRunner

    rendered = "<|im_start|>system\nSources: [1] exact text\n<|im_end|>\n<|im_start|>user\nWhen?<|im_end|>\n" \
               "<|im_start|>assistant\n"  # fmt: skip
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"rendered_prompt": rendered, "chosen": "Within thirty days [1].",
                                "rejected": "Never."}) + "\n")  # fmt: skip
    settings = Settings(data_dir=tmp_path / "data", models={"lm": str(tiny_model_dir)})  # type: ignore[arg-type]
    request = TrainingRequest("sft", [path], options=FAST_OPTIONS)
    runner = MethodRunner.create(
        Parts(settings), request, build_run_config("sft", tmp_path / "run", FAST_OPTIONS), None, []
    )
    (example,) = runner.load_examples()
    encoded = runner.encode(example)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt_ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    answer_ids = [*tokenizer("Within thirty days [1].", add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    assert encoded["input_ids"] == prompt_ids + answer_ids
    assert encoded["labels"] == [-100] * len(prompt_ids) + answer_ids


def test_one_job_loads_the_embedder_once(
    collection_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RAG job over a collection (relevance selection, RAFT sources, the gate's retrieval) on the real worker builds
    one `Parts` and loads the embedder once; its adapter's lineage names the collection its data came from."""
    import shutil

    import assistant.embedding
    from assistant.parts import Parts
    from assistant.storage import Adapter, Job
    from training.request import JobData, JobRequest
    from training.uploads import new_file_id, uploads_dir
    from training.worker import JobWorker

    loads: list[str] = []
    real = assistant.embedding.make_embedder

    def counted(*args: Any, **kwargs: Any) -> Any:
        loads.append("embedder")
        return real(*args, **kwargs)

    monkeypatch.setattr(assistant.embedding, "make_embedder", counted)
    settings = rag_settings(collection_dir, tiny_model_dir)
    file_id = new_file_id()
    (uploads_dir(settings) / file_id).mkdir(parents=True)
    shutil.copy(qa_file(collection_dir), uploads_dir(settings) / file_id / "qa.jsonl")
    options = {**FAST_OPTIONS, "max_steps": 1, "min_tokens": 1, "max_length": 1024, "relevance_threshold": -1.0}
    request = JobRequest(method="sft", name="once", data=JobData(source="file", file_id=file_id, collection="handbook"),
                         hyperparameters=options)  # fmt: skip
    worker = JobWorker(Parts(settings))
    with worker.db.session() as session:
        session.add(Job(kind="sft", params=request.model_dump(mode="json")))
    assert worker.run_once()
    with worker.db.session() as session:
        job = session.query(Job).filter(Job.params["name"].as_string() == "once").one()
        assert job.state == "succeeded", job.error
        adapter = session.query(Adapter).filter(Adapter.job_id == job.id).one()
        assert adapter.gate is not None and "qa" in adapter.gate["candidate"]  # the gate retrieved too
        assert adapter.lineage["collections"] == ["handbook"]
    assert loads == ["embedder"]
