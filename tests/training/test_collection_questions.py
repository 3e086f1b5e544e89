"""Questions from documents alone (`data.source = "collection"`): the rule generator's questions have an answer that is
a span of their chunk; the kept ones pass the round-trip check against the real retriever (checked here with a search
of our own), the dropped ones really fail it; a job through the real worker trains on them and reports the counts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from assistant.answer_metrics import contains_answer
from assistant.parts import Parts
from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS

# in every document: its question is ambiguous
SHARED = "Visitors must sign in at the front desk of the Nordic Tower before entering the building."
DOCUMENTS = {
    "warranty": ["The warranty was introduced in 1998 by Acme Corporation.",
                 "It covers parts and labour for twenty months from the date of purchase.",
                 "Claims are handled by Maria Lopez in the Lyon office.", SHARED],
    "router": ["The router was released on March 3, 2015 in three colours.",
               "Holding the reset button for ten seconds restores the factory settings.",
               "The default password is printed on a label under the device.", SHARED],
    "leave": ["Employees accrue thirty days of paid leave per year after the first year.",
              "The leave policy was approved by Jonas Berg in 2019.",
              "Unused leave expires at the end of March.", SHARED],
    "invoices": ["Invoices are due within 45 days of the invoice date.",
                 "Late payments incur a fee of 2 percent per month on the open amount.",
                 "The finance team moved to Oslo in 2021.", SHARED],
}  # fmt: skip


@pytest.fixture(scope="module")
def collection_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ingest.ingest_service import IngestService
    from tests.fixtures.retrieval_env import shared_embedder

    root = tmp_path_factory.mktemp("docs-only")
    docs = root / "docs"
    docs.mkdir()
    for name, lines in DOCUMENTS.items():
        (docs / f"{name}.md").write_text(f"# {name.title()}\n\n" + " ".join(lines) + "\n")
    service = IngestService.open(Settings(data_dir=root / "data"), shared_embedder())
    service.ingest_paths([docs], collection="handbook")
    return root


def doc_settings(root: Path, tiny_model_dir: Path | None = None, top_k: int = 1) -> Settings:
    models = {"lm": str(tiny_model_dir)} if tiny_model_dir else {}
    return Settings(data_dir=root / "data", models=models, retrieval={"top_k": top_k})  # type: ignore[arg-type]


def test_rule_questions_put_a_wh_phrase_in_the_answers_place() -> None:
    from training.data.questions import RuleQuestions, sentence_question

    cases = {
        "The warranty was introduced in 1998 by Acme Corporation.":
            ("The warranty was introduced in what year by Acme Corporation?", "1998", "year"),
        "Employees accrue thirty days of paid leave per year after the first year.":
            ("Employees accrue how many days of paid leave per year after the first year?", "thirty days", "count"),
        "The router was released on March 3, 2015 in three colours.":
            ("The router was released on what date in three colours?", "March 3, 2015", "date"),
        "The capital of the region is Lyon.": ("What is the capital of the region?", "Lyon", "definition"),
        "The leave policy was approved by Jonas Berg after a long vote.":
            ("The leave policy was approved by whom after a long vote?", "Jonas Berg", "name"),
        "Late payments incur a fee of 2 percent per month on the open amount.":
            ("Late payments incur a fee of what percentage per month on the open amount?", "2 percent", "percent"),
    }  # fmt: skip
    for sentence, expected in cases.items():
        candidate = sentence_question(sentence)
        assert candidate is not None and (candidate.question, candidate.answer, candidate.kind) == expected
        assert candidate.answer in sentence
    assert sentence_question("Nothing here has a span to ask about, sadly.") is None
    for quantity in ("The sthene is equivalent to 1000 N in the old units.", "The city grew fast in the 1990s here."):
        candidate = sentence_question(quantity)  # a quantity or a decade is no year, a unit no name
        assert candidate is None or candidate.kind not in ("year", "name"), candidate
    text = " ".join(DOCUMENTS["warranty"] + DOCUMENTS["leave"])
    asked = RuleQuestions()(text, limit=2)
    assert len(asked) == 2 and len({c.sentence for c in asked}) == 2 and all(c.answer in text for c in asked)


def test_kept_questions_pass_the_round_trip_and_dropped_ones_fail_it(collection_dir: Path) -> None:
    from assistant.storage import Chunk
    from training.data.collection import questions_from_collection, round_trip
    from training.data.questions import Candidate, RuleQuestions
    from training.data.rag import ServingSources

    settings = doc_settings(collection_dir, top_k=1)
    parts = Parts(settings)
    kept, report = questions_from_collection(parts, "handbook", per_chunk=10)
    with parts.db.session() as session:
        chunks = {c.id: c.text for c in session.query(Chunk).filter(Chunk.collection == "handbook")}
    retrieve = parts.retriever.search
    kept_keys = set()
    for item in kept:  # independently: our own search with the served top_k, and the answer in the chunk's text
        chunk_id = int(item.qid.rsplit("-c", 1)[1])
        assert item.answer in chunks[chunk_id] and item.gold is not None and item.gold.text == chunks[chunk_id]
        hits = retrieve(item.question, k=settings.retrieval.top_k, collections=["handbook"])
        assert chunk_id in [h.chunk_id for h in hits], item.question
        kept_keys.add((chunk_id, item.question))
    # every question the generator makes of every chunk is either kept or fails the check here too
    all_asked = [(cid, c) for cid, text in chunks.items() for c in RuleQuestions()(text, 10)]
    assert report.generated == len(all_asked) and report.kept == len(kept) > 0
    assert report.kept + sum(report.dropped.values()) == report.generated
    failed = 0
    for chunk_id, candidate in all_asked:
        if (chunk_id, candidate.question) in kept_keys:
            continue
        hits = retrieve(candidate.question, k=settings.retrieval.top_k, collections=["handbook"])
        duplicate = sum(c.question == candidate.question for _, c in all_asked) > 1
        assert duplicate or chunk_id not in [h.chunk_id for h in hits], candidate.question
        failed += 1
    assert failed == report.generated - report.kept
    shared = [c for _, c in all_asked if c.sentence == SHARED]  # one question in every document: one kept at most
    assert len(shared) == len(DOCUMENTS) and len({k for k in kept_keys if k[1] == shared[0].question}) <= 1
    assert sum(report.dropped.values()) >= len(DOCUMENTS) - 1
    assert report.to_dict()["kept_share"] == round(report.kept / report.generated, 3)
    assert report.kept_samples and all(s["rank"] == 1 for s in report.kept_samples)
    # the check itself: another chunk's kept question fails for this chunk; an answer not in the chunk fails
    theirs, mine = kept[0], next(cid for cid in chunks if cid != int(kept[0].qid.rsplit("-c", 1)[1]))
    word = chunks[mine].split()[-1].strip(".")
    borrowed = Candidate(theirs.question, word, "name", "")
    assert round_trip(ServingSources(settings, ["handbook"], parts), _chunk(mine, chunks), borrowed)[0] == (
        "own_chunk_not_in_top_k"
    )
    absent = Candidate(theirs.question, "zeppelin", "name", "")
    assert round_trip(ServingSources(settings, ["handbook"], parts), _chunk(mine, chunks), absent)[0] == (
        "answer_not_in_chunk"
    )


def _chunk(chunk_id: int, chunks: dict[int, str]) -> Any:
    from training.data.collection import CollectionChunk

    return CollectionChunk(chunk_id, chunks[chunk_id], "doc", "doc")


def test_collection_source_is_validated_when_the_job_is_created(collection_dir: Path, tmp_path: Path) -> None:
    from assistant.errors import NotFoundError, UnprocessableError
    from assistant.storage import Job
    from serving.services.job_service import JobService
    from training.request import JobData, JobRequest

    parts = Parts(doc_settings(collection_dir))
    service = JobService.of(parts)
    with pytest.raises(UnprocessableError, match=r"needs data\.collection"):
        service.create(JobRequest(method="sft", data=JobData(source="collection")))
    with pytest.raises(NotFoundError, match="no documents in collection 'nowhere'"):
        service.create(JobRequest(method="sft", data=JobData(source="collection", collection="nowhere")))
    with pytest.raises(UnprocessableError, match=r"read data\.source in"):
        service.create(JobRequest(method="dpo", data=JobData(source="collection", collection="handbook")))
    job = service.create(JobRequest(method="sft", data=JobData(source="collection", collection="handbook")))
    with parts.db.session() as session:  # queued; removed, so the worker tests of this module claim their own jobs
        row = session.get(Job, job.id)
        assert row is not None and row.state == "queued" and row.params["data"]["source"] == "collection"
        session.delete(row)


@pytest.mark.slow
def test_collection_job_trains_on_generated_questions(
    collection_dir: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from assistant.storage import Adapter, Job
    from training.request import JobData, JobRequest
    from training.worker import JobWorker

    settings = doc_settings(collection_dir, tiny_model_dir, top_k=2)
    options = {**FAST_OPTIONS, "max_steps": 1, "min_tokens": 1, "max_length": 1024, "relevance_threshold": -1.0}
    request = JobRequest(method="sft", name="docs", data=JobData(source="collection", collection="handbook"),
                         hyperparameters=options)  # fmt: skip
    worker = JobWorker(Parts(settings))
    with worker.db.session() as session:
        session.add(Job(kind="sft", params=request.model_dump(mode="json")))
    caplog.set_level(logging.INFO)  # the worker process logs at INFO; the job log gets what the root logger passes
    assert worker.run_once()
    with worker.db.session() as session:
        job = session.query(Job).filter(Job.params["name"].as_string() == "docs").one()
        assert job.state == "succeeded", job.error
        adapter = session.query(Adapter).filter(Adapter.job_id == job.id).one()
        assert adapter.lineage["collections"] == ["handbook"]
        generation = job.metrics["data"]["generation"]
        assert adapter.metrics["data"]["generation"] == generation
        data = job.metrics["data"]
        job_id = job.id
    assert generation["generated"] == generation["kept"] + sum(generation["dropped"].values())
    assert generation["kept"] > 0 and generation["chunks_read"] == generation["chunks"] == len(DOCUMENTS)
    assert data["questions"] == generation["kept"]  # the RAFT builder read every kept question
    written = [json.loads(line) for line in (settings.runs_dir / "jobs" / job_id / "questions.jsonl").open()]
    texts = {name: " ".join(lines) for name, lines in DOCUMENTS.items()}
    assert len(written) == generation["kept"]
    assert all(contains_answer(texts[Path(r["document"]).stem], r["answers"][0]) for r in written)
    log_text = (settings.runs_dir / "jobs" / f"{job_id}.log").read_text()
    assert f"{generation['kept']} kept" in log_text and "question sample" in log_text


@pytest.mark.slow
def test_pt_job_trains_on_the_collections_chunks(collection_dir: Path, tiny_model_dir: Path) -> None:
    from assistant.storage import Adapter, Chunk, Job
    from training.request import JobData, JobRequest
    from training.worker import JobWorker

    settings = doc_settings(collection_dir, tiny_model_dir)
    options = {**FAST_OPTIONS, "max_steps": 1, "min_tokens": 1, "eval_split": 0.25}
    request = JobRequest(method="pt", name="handbook-text", data=JobData(source="collection", collection="handbook"),
                         hyperparameters=options)  # fmt: skip
    worker = JobWorker(Parts(settings))
    with worker.db.session() as session:
        session.add(Job(kind="pt", params=request.model_dump(mode="json")))
        chunks = sorted(c.text for c in session.query(Chunk).filter(Chunk.collection == "handbook"))
    assert worker.run_once()
    with worker.db.session() as session:
        job = session.query(Job).filter(Job.params["name"].as_string() == "handbook-text").one()
        assert job.state == "succeeded", job.error
        adapter = session.query(Adapter).filter(Adapter.job_id == job.id).one()
        assert adapter.method == "pt" and adapter.lineage["collections"] == ["handbook"]
        perplexity, job_id = job.metrics["perplexity"], job.id
        assert adapter.gate is not None and "lm" in adapter.gate["candidate"]  # held-out text continuations
    assert perplexity["before"] > 0 and perplexity["after"] > 0 and perplexity["heldout_texts"] >= 1
    written = (settings.runs_dir / "jobs" / job_id / "chunks.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["text"] for line in written) == chunks


def test_a_model_written_question_is_kept_only_when_it_is_one_question_hiding_its_answer() -> None:
    from training.data.model_questions import question_of

    reply = "Who designed the reading room?\nIt was Maria."
    assert question_of(reply, "Maria Lind") == "Who designed the reading room?"
    assert question_of('"When was the warranty introduced?"', "1998") == "When was the warranty introduced?"
    assert question_of("The warranty was introduced in 1998.", "1998") is None  # not a question
    assert question_of("When was it, in 1998?", "1998") is None  # gives its answer away
    assert question_of("Why 19981?", "1998") is None  # too short to be a question worth training on
    assert question_of("What year is 19981 about here?", "1998") is not None  # "1998" is not a whole word there
    assert question_of("", "1998") is None


def test_the_model_generator_asks_about_the_rules_answer_spans(tiny_model_dir: Path) -> None:
    """The real (tiny) model writes the questions; whatever it wrote is filtered as `question_of` says, and every
    answer is the rules' verbatim span of the passage."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.data.model_questions import MAX_NEW_TOKENS, PROMPT, ModelQuestions, question_of
    from training.data.questions import sentence_question, sentences

    text = " ".join(DOCUMENTS["warranty"] + DOCUMENTS["router"])
    generator = ModelQuestions(tiny_model_dir)
    made = generator(text, limit=10)
    spans = [c for c in map(sentence_question, sentences(text)) if c is not None]
    # a second path: our own greedy generation with the same prompt, filtered the same way
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    expected = []
    for rule in spans:
        messages = [{"role": "user", "content": PROMPT.format(sentence=rule.sentence, answer=rule.answer)}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        reply = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        question = question_of(reply, rule.answer)
        if question is not None:
            expected.append((question, rule.answer, rule.kind))
    assert [(c.question, c.answer, c.kind) for c in made] == expected
    assert all(contains_answer(text, c.answer) and c.answer in c.sentence for c in made)
    assert len(spans) >= 5 and generator.name == "model"
