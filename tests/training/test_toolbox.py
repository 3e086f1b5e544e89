"""The rest of the toolbox on the tiny model through the real trainers: KTO, reward model, classification SFT, sweep,
relevance/diversity selection, and bad input failing before any step with nothing registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from assistant.parts import Parts
from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS, TOPICS, preference_records, write_json
from tests.training.test_trainers import FailOnStep, assert_nothing_registered
from training.registry import AdapterRegistry
from training.runs import TrainingRequest, run_training

ANSWERS = [a for _, a in TOPICS]


def logps(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> list[float]:
    from training.gate import completion_logprob

    return [completion_logprob(model, tokenizer, r["prompt"], r["completion"]) for r in rows]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ---------------------------------------------------------------- KTO


def kto_records() -> list[dict[str, Any]]:
    """8 thumbs up (right answers, TRL `label` form), 4 thumbs down (wrong ones, LLaMA-Factory `kto_tag` form)."""
    up = [{"prompt": q, "completion": a, "label": True} for q, a in TOPICS]
    down = [
        {"instruction": q, "output": ANSWERS[(i + 3) % len(ANSWERS)], "kto_tag": False}
        for i, (q, _) in enumerate(TOPICS[:4])
    ]
    return up + down


def test_kto_moves_desirable_up_relative_to_undesirable(settings: Settings, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.kto import load_kto_examples, render_kto
    from training.modeling import load_tokenizer

    data = write_jsonl(tmp_path / "thumbs.jsonl", kto_records())
    options = {**FAST_OPTIONS, "max_steps": 8, "learning_rate": 5e-3, "lora_dropout": 0.0, "eval_split": 0.2}
    outcome = run_training(settings, TrainingRequest("kto", [data], name="kto-kb", options=options))
    assert outcome.adapter is not None and outcome.adapter.method == "kto" and outcome.adapter.kind == "lm"
    # Class weights from the data: weight x count equal for both classes (the larger class keeps 1).
    n_up = outcome.metrics["kto_weights"]["counts"]["desirable"]
    n_down = outcome.metrics["kto_weights"]["counts"]["undesirable"]
    assert n_up > n_down and outcome.metrics["kto_weights"]["undesirable"] == pytest.approx(n_up / n_down)
    assert outcome.metrics["kto_weights"]["desirable"] == 1.0

    tokenizer = load_tokenizer(Path(settings.models.lm))
    rows = [render_kto(tokenizer, e) for e in load_kto_examples([data])]
    base = AutoModelForCausalLM.from_pretrained(settings.models.lm, dtype=torch.float32).eval()
    before = logps(base, tokenizer, rows)
    tuned = PeftModel.from_pretrained(base, str(outcome.adapter.path)).eval()
    after = logps(tuned, tokenizer, rows)
    gain_up = np.mean([a - b for a, b, r in zip(after, before, rows, strict=True) if r["label"]])
    gain_down = np.mean([a - b for a, b, r in zip(after, before, rows, strict=True) if not r["label"]])
    assert gain_up - gain_down > 1.0, (gain_up, gain_down)
    assert outcome.adapter.lineage["method"] == "kto" and outcome.adapter.lineage["data_files"][0]["sha256"]


def test_kto_reads_every_feedback_form(tmp_path: Path) -> None:
    from training.data.records import DataValidationError
    from training.kto import load_kto_examples

    records = [
        {"prompt": "q1", "completion": "a1", "label": True},
        {"rendered_prompt": "<|im_start|>user\nq2<|im_end|>\n", "completion": "a2", "label": -1},
        {"messages": [{"role": "user", "content": "q3"}, {"role": "assistant", "content": "a3"}], "kto_tag": "true"},
        {"instruction": "q4", "input": "", "output": "a4", "kto_tag": False},
        {"prompt": "q5", "chosen": "good", "rejected": "bad"},
    ]
    examples = load_kto_examples([write_jsonl(tmp_path / "mixed.jsonl", records)])
    summary = [(e.prompt[-1]["content"], e.completion, e.label) for e in examples]
    assert summary == [
        ("q1", "a1", True), ("<|im_start|>user\nq2<|im_end|>\n", "a2", False), ("q3", "a3", True),
        ("q4", "a4", False), ("q5", "good", True), ("q5", "bad", False),
    ]  # fmt: skip
    assert examples[1].rendered_prompt == records[1]["rendered_prompt"]  # the stored prompt is used verbatim
    with pytest.raises(DataValidationError, match="#0: field 'label'"):
        load_kto_examples([write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "completion": "a", "label": "maybe"}])])


# ---------------------------------------------------------------- reward model


def separable_pairs(n: int = 24) -> list[dict[str, str]]:
    """Chosen answers cite a source; rejected ones are another topic's answer without a citation."""
    rows = []
    for i in range(n):
        q, a = TOPICS[i % len(TOPICS)]
        rows.append({"prompt": f"{q} ({i})", "chosen": f"{a} [1]", "rejected": ANSWERS[(i + 3) % len(ANSWERS)]})
    return rows


def test_reward_model_held_out_accuracy_above_chance(settings: Settings, tmp_path: Path) -> None:
    from safetensors import safe_open

    from training.reward import RewardScorer

    data = write_json(tmp_path / "pairs.json", separable_pairs())
    options = {**FAST_OPTIONS, "max_steps": 12, "learning_rate": 5e-3, "eval_split": 0.25,
               "near_duplicate_threshold": 1.0}  # fmt: skip
    outcome = run_training(settings, TrainingRequest("reward", [data], name="rm", options=options))
    assert outcome.adapter is not None and outcome.adapter.kind == "reward"
    after = outcome.metrics["after"]
    assert after["pairs"] == 6 and after["accuracy"] > 0.5 and after["margin"] > outcome.metrics["before"]["margin"]
    with safe_open(str(outcome.adapter.path / "adapter_model.safetensors"), framework="pt") as handle:
        assert any(".score." in key for key in handle.keys())  # noqa: SIM118 - the score head is saved in full
    # Independently: the registered model, loaded for scoring, ranks held-out chosen answers higher.
    scorer = RewardScorer.from_registry(AdapterRegistry.of(Parts(settings)), "rm", Path(settings.models.lm))
    report = json.loads((outcome.run_dir / "data_report.json").read_text())
    assert report["validation"] == 6
    prompts = [scorer.tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]}], tokenize=False,
                                                    add_generation_prompt=True) for r in separable_pairs()]  # fmt: skip
    chosen = scorer.score(prompts, [r["chosen"] for r in separable_pairs()])
    rejected = scorer.score(prompts, [r["rejected"] for r in separable_pairs()])
    assert np.mean([c > r for c, r in zip(chosen, rejected, strict=True)]) > 0.75


# ---------------------------------------------------------------- classification


CLASSES = {"Billing": ["invoice", "payment", "fee", "refund"], "Support": ["router", "reset", "light", "button"]}


def classification_rows() -> list[dict[str, str]]:
    rows = []
    for label, words in CLASSES.items():
        for i in range(10):
            rows.append(
                {"text": f"A question about the {words[i % 4]} number {i} {words[(i + 1) % 4]}", "label": label}
            )
    return rows


def test_classification_scores_match_hand_computed() -> None:
    from training.classification import classification_scores

    scores = classification_scores(["a", "a", "b", "b", "b"], ["a", "b", "b", "b", "a"], ["a", "b"])
    # a: tp 1 fp 1 fn 1 -> P=R=F1=0.5; b: tp 2 fp 1 fn 1 -> P=R=F1=2/3
    assert scores["accuracy"] == pytest.approx(3 / 5)
    assert scores["per_label"]["a"]["f1"] == pytest.approx(0.5)
    assert scores["per_label"]["b"]["f1"] == pytest.approx(2 / 3)
    assert scores["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)


@pytest.mark.slow
def test_classification_sft_learns_the_labels(settings: Settings, tmp_path: Path) -> None:
    import csv

    from training.classification import load_classification_examples

    path = tmp_path / "topics.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(classification_rows())
    jsonl = write_jsonl(tmp_path / "topics.jsonl", classification_rows())
    examples, labels = load_classification_examples([jsonl])
    assert labels == ["Billing", "Support"] and "Billing, Support" in examples[0].messages[0]["content"]
    options = {**FAST_OPTIONS, "max_steps": 10, "learning_rate": 5e-3, "eval_split": 0.3, "lora_dropout": 0.0}
    outcome = run_training(settings, TrainingRequest("classify", [path], name="topics", options=options))
    before, after = outcome.metrics["before"], outcome.metrics["after"]
    assert set(after["per_label"]) == {"Billing", "Support"} and after["examples"] == 6
    assert after["accuracy"] >= max(before["accuracy"], 0.75), (before, after)
    assert after["loss"] < before["loss"]


# ---------------------------------------------------------------- sweep


@pytest.mark.slow
def test_sweep_chooses_lowest_validation_loss_and_registers_it(
    settings: Settings, sft_file: Path, tmp_path: Path
) -> None:
    options = {**FAST_OPTIONS, "sweep_learning_rates": [1e-5, 5e-3], "eval_split": 0.25}
    outcome = run_training(settings, TrainingRequest("sweep", [sft_file], name="swept", options=options))
    trials = outcome.metrics["trials"]
    assert [t["learning_rate"] for t in trials] == [1e-5, 5e-3]
    best = min(trials, key=lambda t: t["validation_loss"])
    assert outcome.metrics["best_trial"] == best["trial"]
    assert outcome.metrics["best_hyperparameters"]["learning_rate"] == best["learning_rate"]
    for name in ("sweep.png", "sweep.md", "sweep.csv", "sweep.json"):
        assert (outcome.run_dir / name).is_file()
    assert outcome.adapter is not None and outcome.adapter.method == "sweep"
    registered = (outcome.adapter.path / "adapter_model.safetensors").read_bytes()
    trial = Path(best["run_dir"]) / "adapter" / "adapter_model.safetensors"
    assert registered == trial.read_bytes()


# ---------------------------------------------------------------- relevance and diversity


def test_kcenter_and_clusters_cover_every_cluster() -> None:
    from training.data.relevance import cluster_balanced, kcenter

    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:3] * 10
    vectors = np.concatenate([c + rng.normal(0, 0.1, (20, 8)).astype(np.float32) for c in centres])
    for picked in (kcenter(vectors, 3), cluster_balanced(vectors, 9, seed=0)[0]):
        assert {i // 20 for i in picked} == {0, 1, 2}


def indexed_settings(settings: Settings, texts: list[str]) -> Settings:
    from assistant.embedding import make_embedder
    from assistant.index.faiss_index import open_index

    embedder = make_embedder(settings)
    index = open_index(settings.index_dir, embedder.dim, settings.ingest.approximate_after)
    index.add(embedder.embed(texts), np.arange(len(texts)))
    index.save()
    return settings


def test_relevance_and_diversity_selection_reported(settings: Settings, tmp_path: Path) -> None:
    relevant = [{"instruction": q, "input": "", "output": a} for q, a in TOPICS[:4]]
    unrelated = [
        {"instruction": "Write a haiku about autumn leaves.", "input": "", "output": "Red leaves drift and fall."},
        {"instruction": "Name three jazz pianists.", "input": "", "output": "Monk, Evans and Peterson."},
        {"instruction": "How do I bake sourdough bread?", "input": "", "output": "Feed the starter, knead, proof."},
        {"instruction": "Who won the 1998 football World Cup?", "input": "", "output": "France won it in 1998."},
    ]
    data = write_json(tmp_path / "mixed.json", relevant + unrelated)
    indexed_settings(settings, ["The warranty covers parts and labour for two years.",
                                "Hold the reset button of the router for ten seconds.",
                                "Invoices are due within thirty days; late payments incur a fee.",
                                "Employees accrue twenty days of paid leave per year."])  # fmt: skip
    options = {**FAST_OPTIONS, "max_steps": 1, "eval_split": 0.1, "relevance_threshold": 0.3, "diversity_target": 2}
    outcome = run_training(settings, TrainingRequest("sft", [data], name="sel", options=options))
    report = json.loads((outcome.run_dir / "data_report.json").read_text())
    irrelevant = report["dropped_examples"].get("irrelevant", [])
    unrelated_origins = {f"{data}#{i}" for i in range(4, 8)}
    assert report["dropped"]["irrelevant"] >= 3 and set(irrelevant) <= unrelated_origins
    assert report["details"]["relevance"]["threshold"] == 0.3, report
    assert report["details"].get("diversity", {}).get("kept") == 2, report
    assert report["train"] == 2 and report["dropped"]["diversity"] >= 1


# ---------------------------------------------------------------- bad input per method


BAD_INPUTS = [
    ("kto", [{"prompt": "q", "completion": "a", "label": True}, {"prompt": "r", "completion": "b", "label": True}],
     {}, "both thumbs up and thumbs down"),
    ("kto", [{"prompt": "q", "completion": "a"}], {}, "field 'label' is missing"),
    ("reward", [{"prompt": "q", "chosen": "a"}], {}, "field 'rejected' is missing"),
    ("grpo", [{"prompt": "q"}, {"prompt": "r"}], {}, "GRPO needs a reward"),
    ("grpo", [{"prompt": "q"}, {"prompt": "r"}], {"reward_model": "nope"}, "no adapter 'nope'"),
    ("grpo", [{"prompt": "q"}], {"rule_rewards": ["vibes"]}, "unknown rules"),
    ("classify", [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}], {}, "at least two labels"),
    ("classify", [{"text": "", "label": "x"}], {}, "field 'text' is missing or empty"),
    ("sweep", [{"instruction": "a", "output": "b"}], {"sweep_learning_rates": [1e-4] * 17}, "the grid has 17"),
    ("sft", [{"instruction": "a b c d e", "output": "f g h i j"}] * 2, {"relevance_threshold": 0.2},
     "index .* is empty"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "records", "options", "error"), BAD_INPUTS,
                         ids=[f"{m}-{i}" for i, (m, *_) in enumerate(BAD_INPUTS)])  # fmt: skip
def test_bad_input_fails_before_any_step(
    settings: Settings, tmp_path: Path, method: str, records: list[Any], options: dict[str, Any], error: str
) -> None:
    from assistant.errors import AssistantError

    data = write_jsonl(tmp_path / "data.jsonl", records)
    base = {k: v for k, v in FAST_OPTIONS.items() if not (method == "grpo" and k == "max_length")}
    request = TrainingRequest(method, [data], options={**base, "per_device_train_batch_size": 4, **options})
    with pytest.raises(AssistantError, match=error):
        run_training(settings, request, callbacks=[FailOnStep()])
    assert_nothing_registered(settings)


def test_preference_pairs_still_read_by_reward(tmp_path: Path) -> None:
    from training.data.dataset_formats import load_preference_examples

    assert len(load_preference_examples([write_json(tmp_path / "p.json", preference_records())])) == len(TOPICS)
