"""Retrieval evaluation on a SQuAD-format file: paragraphs are the corpus, each question's paragraph is its gold.

Contract: `load_squad(path, questions=N)` reads the file (N questions sampled evenly with a fixed seed; all
paragraphs are always the corpus). `write_corpus(corpus, folder)` writes one text file per paragraph named by its key
(`AAA-PPP.txt`, article and paragraph numbers), so the ingest under test starts from files. `evaluate(retriever,
corpus, modes)` maps each hit to its paragraph key through the document source and scores recall@1/5/10, MRR@10 and
nDCG@10 per mode. `run_squad_evaluation(settings, path, questions)` does all of it in a temporary data directory,
never touching the configured one. Both take `on_progress(stage, done, total)`: the corpus ingest counts files
(stage 'ingest corpus'), each mode's searches count questions (stage 'search MODE').
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from assistant import qa_sets
from assistant.embedding import Embedder
from assistant.parts import Parts
from assistant.retrieval import Retriever
from assistant.retrieval.ranking_metrics import RankingScores, score_rankings
from assistant.settings import Settings

log = logging.getLogger(__name__)
OnProgress = Callable[[str, int, int], None]  # (stage, done, total)

SAMPLE_SEED = 13


@dataclass(frozen=True)
class Passage:
    key: str
    title: str
    text: str


@dataclass(frozen=True)
class Question:
    text: str
    gold: str


@dataclass
class SquadCorpus:
    passages: list[Passage]
    questions: list[Question]


def load_squad(path: Path, questions: int | None = None) -> SquadCorpus:
    """Paragraphs and (a seeded, even sample of) questions of a SQuAD v1.1 file (`assistant.qa_sets.load_squad`)."""
    paragraphs = qa_sets.load_squad(path)
    passages = [Passage(p.key, p.title, p.context) for p in paragraphs]
    asked = [Question(item.question, p.key) for p in paragraphs for item in p.items]
    if questions is not None and questions < len(asked):
        picked = sorted(random.Random(SAMPLE_SEED).sample(range(len(asked)), questions))
        asked = [asked[i] for i in picked]
    return SquadCorpus(passages, asked)


def write_corpus(corpus: SquadCorpus, folder: Path) -> list[Path]:
    """One UTF-8 text file per paragraph, named by its key."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for passage in corpus.passages:
        path = folder / f"{passage.key}.txt"
        path.write_text(passage.text, encoding="utf-8")
        paths.append(path)
    return paths


def passage_key(source: str) -> str:
    return PurePath(source).stem


def evaluate(
    retriever: Retriever,
    corpus: SquadCorpus,
    modes: Sequence[str] = ("dense", "bm25", "hybrid"),
    k: int = 10,
    on_progress: OnProgress | None = None,
) -> dict[str, RankingScores]:
    """Metrics per retrieval mode over the corpus questions."""
    golds = [q.gold for q in corpus.questions]
    scores = {}
    for mode in modes:
        rankings = []
        for done, question in enumerate(corpus.questions, start=1):
            rankings.append([passage_key(h.source) for h in retriever.search(question.text, k=k, mode=mode)])
            if on_progress is not None:
                on_progress(f"search {mode}", done, len(corpus.questions))
        scores[mode] = score_rankings(rankings, golds)
        log.info("%s: recall@5 %.3f", mode, scores[mode].recall_at_5)
    return scores


def run_squad_evaluation(
    settings: Settings,
    squad_file: Path,
    questions: int | None = None,
    embedder: Embedder | None = None,
    on_progress: OnProgress | None = None,
) -> dict[str, RankingScores]:
    """Ingest the SQuAD paragraphs into a temporary data directory and evaluate every mode."""
    from ingest.ingest_service import IngestProgress, IngestService

    def ingested(event: IngestProgress) -> None:
        if on_progress is not None and event.result is not None:  # files, not the embedding's slices
            on_progress("ingest corpus", event.files_done, event.files_total)

    corpus = load_squad(squad_file, questions)
    with tempfile.TemporaryDirectory(prefix="squad-eval-") as tmp:
        work = settings.model_copy(update={"data_dir": Path(tmp) / "data", "database_url": None})
        parts = Parts(work, embedder=embedder)
        write_corpus(corpus, Path(tmp) / "corpus")
        report = IngestService.of(parts).ingest_paths([Path(tmp) / "corpus"], "squad", ingested)
        log.info("ingested %d chunks in %.1f s", report.chunks, report.seconds)
        scores = evaluate(parts.retriever, corpus, on_progress=on_progress)
        parts.close()
    return scores
