"""SFT, DPO and PSFT on the tiny model: what trains, the DPO loss, PSFT's gradient, resume, lineage, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from assistant.parts import Parts
from assistant.settings import Settings
from tests.training.conftest import FAST_OPTIONS, write_json
from training.config import build_run_config
from training.runs import TrainingRequest, run_training
from training.trainers import MethodRunner


def make_runner(settings: Settings, method: str, data: Path, run_dir: Path, **options: Any) -> Any:
    request = TrainingRequest(method=method, data_files=[data], options={**FAST_OPTIONS, **options})
    config = build_run_config(method, run_dir, request.options)
    return MethodRunner.create(Parts(settings), request, config, None, [])


def prepared(runner: Any, randomize_lora: float = 0.0) -> tuple[Any, Any]:
    train, val = runner.prepare_data()
    trainer = runner.build_trainer(runner.build_model(), train, val)
    if randomize_lora:
        torch.manual_seed(0)
        with torch.no_grad():
            for name, param in trainer.model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, randomize_lora)
    return trainer, train


def first_batch(trainer: Any, n: int = 2) -> dict[str, torch.Tensor]:
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def test_sft_trains_lora_weights_only(settings: Settings, sft_file: Path, tmp_path: Path) -> None:
    runner = make_runner(settings, "sft", sft_file, tmp_path / "run", max_steps=3, learning_rate=1e-2)
    trainer, _ = prepared(runner)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    base = [n for n in before if "lora_" not in n]
    assert lora and base
    assert all(not torch.equal(before[n], after[n]) for n in lora if "lora_B" in n)
    assert all(torch.equal(before[n], after[n]) and not after[n].requires_grad for n in base)


def sequence_logps(model: Any, prompt: list[int], completion: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
    return logp[len(prompt) - 1 :].sum()


def test_dpo_loss_matches_independent_formula(settings: Settings, dpo_file: Path, tmp_path: Path) -> None:
    beta = 0.5
    runner = make_runner(settings, "dpo", dpo_file, tmp_path / "run", beta=beta, lora_dropout=0.0)
    trainer, raw = prepared(runner, randomize_lora=0.05)
    model, tokenizer = trainer.model, runner.tokenizer
    assert set(model.peft_config) == {"default"}  # no reference copy: the reference is the adapter disabled
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, first_batch(trainer))
        expected = []
        for i in range(2):
            row = raw[i]
            prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            chosen, rejected = (tokenizer(row[k] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
                                for k in ("chosen", "rejected"))  # fmt: skip
            pc, pr = sequence_logps(model, prompt, chosen), sequence_logps(model, prompt, rejected)
            with model.disable_adapter():
                rc, rr = sequence_logps(model, prompt, chosen), sequence_logps(model, prompt, rejected)
            expected.append(-torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr))))
    reference = torch.stack(expected).mean()
    assert reference.item() != pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(0.0)).item(), abs=1e-4)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-4, abs=1e-5)


def grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, params))


def test_psft_gradient_equals_sft_at_snapshot_and_vanishes_when_clipped(
    settings: Settings, sft_file: Path, tmp_path: Path
) -> None:
    from trl import SFTTrainer

    runner = make_runner(settings, "psft", sft_file, tmp_path / "run", lora_dropout=0.0)
    trainer, _ = prepared(runner, randomize_lora=0.05)
    model = trainer.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    batch = first_batch(trainer)
    trainer.refresh_snapshot()
    psft = grads(trainer.compute_loss(model, dict(batch)), params)
    sft = grads(SFTTrainer.compute_loss(trainer, model, dict(batch)), params)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(psft, sft, strict=True))
    assert any(a.abs().sum() > 0 for a in psft)

    # Make r_t = 1.5 > 1 + eps_high on the first sequence: its tokens must give no gradient.
    with torch.no_grad():
        current = model(**{**batch, "use_cache": False}, fused_lm_head=True).log_probs
    shift = torch.zeros_like(current)
    shift[0] = torch.log(torch.tensor(1.5))
    trainer.old_log_probs = lambda _model, _inputs: current - shift  # type: ignore[method-assign]
    clipped = grads(trainer.compute_loss(model, dict(batch)), params)
    masked = dict(batch)
    masked["labels"] = batch["labels"].clone()
    masked["labels"][0] = -100
    only_second = grads(SFTTrainer.compute_loss(trainer, model, masked), params)
    n_all = int((batch["labels"][:, 1:] != -100).sum())
    n_second = int((masked["labels"][:, 1:] != -100).sum())
    for a, b in zip(clipped, only_second, strict=True):
        assert torch.allclose(a * n_all, b * n_second, atol=1e-5, rtol=1e-4)


class StepRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps.append(state.global_step)


def test_resume_continues_from_checkpoint_and_registers_lineage(
    settings: Settings, sft_file: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    options = {**FAST_OPTIONS, "max_steps": 2, "save_steps": 2}
    first = run_training(settings, TrainingRequest("sft", [sft_file], name="kb", output_dir=run_dir, options=options))
    assert (run_dir / "checkpoint-2").is_dir()
    recorder = StepRecorder()
    request = TrainingRequest("sft", [sft_file], name="kb", output_dir=run_dir, resume=True,
                              options={**options, "max_steps": 4})  # fmt: skip
    from assistant.parts import Parts
    from training.registry import AdapterRegistry

    second = run_training(settings, request, callbacks=[recorder])
    assert recorder.steps == [3, 4] and second.metrics["global_step"] == 4
    assert first.adapter is not None and second.adapter is not None
    assert (first.adapter.version, second.adapter.version) == (1, 2)
    adapter = AdapterRegistry.of(Parts(settings)).resolve("kb")
    assert adapter.version == 2 and adapter.path == settings.adapters_dir.resolve() / "kb" / "v2"
    assert {p.name for p in adapter.path.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    lineage = adapter.lineage
    assert lineage["method"] == "sft" and lineage["base_model"] == settings.models.lm
    assert lineage["data_files"][0]["sha256"] and lineage["hyperparameters"]["lora_r"] == 8
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["after"]["perplexity"] > 1 and "entropy" in metrics["after"]
    assert list(run_dir.glob("curve_*.png")) and (run_dir / "data_report.json").is_file()


def assert_nothing_registered(settings: Settings) -> None:
    from sqlalchemy import func, select

    from assistant.parts import Parts
    from assistant.storage.orm import Adapter

    with Parts(settings).db.session() as session:
        assert session.scalar(select(func.count()).select_from(Adapter)) == 0
    assert not settings.adapters_dir.exists() or not any(settings.adapters_dir.rglob("*.safetensors"))


class FailOnStep(TrainerCallback):
    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a training step started")


@pytest.mark.parametrize(
    ("records", "error"),
    [
        ('[{"instruction": "a", "output": "b"}, {"instruction": }]', "field 'json'"),
        ([{"instruction": "a", "output": "b"}, {"instruction": "c"}], "#1: field 'output' is missing"),
        ([{"instruction": "a", "output": " "}, {"instruction": "b", "output": ""}], "no training examples left"),
    ],
    ids=["malformed", "missing-field", "empty-after-filtering"],
)
def test_bad_data_fails_before_training(settings: Settings, tmp_path: Path, records: Any, error: str) -> None:
    from assistant.errors import AssistantError

    path = tmp_path / "bad.json"
    path.write_text(records) if isinstance(records, str) else write_json(path, records)
    with pytest.raises(AssistantError, match=error):
        run_training(settings, TrainingRequest("sft", [path], options=FAST_OPTIONS), callbacks=[FailOnStep()])
    assert_nothing_registered(settings)


def other_base_adapter(tmp_path: Path) -> Path:
    """A real LoRA adapter trained on a different (wider) base model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.fixtures.tiny_model import build_lora_adapter

    other = tmp_path / "other-base"
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=32)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(other)
    return build_lora_adapter(other, tmp_path / "other-adapter")


def test_base_adapter_from_another_base_is_refused(settings: Settings, sft_file: Path, tmp_path: Path) -> None:
    from training.modeling import AdapterMismatchError

    request = TrainingRequest("sft", [sft_file], base_adapter=str(other_base_adapter(tmp_path)), options=FAST_OPTIONS)
    with pytest.raises(AdapterMismatchError, match="another base model"):
        run_training(settings, request, callbacks=[FailOnStep()])
    assert_nothing_registered(settings)


def test_continue_from_compatible_adapter(
    settings: Settings, sft_file: Path, tiny_adapter_dir: Path, tmp_path: Path
) -> None:
    request = TrainingRequest("psft", [sft_file], name="cont", base_adapter=str(tiny_adapter_dir),
                              options={**FAST_OPTIONS, "max_steps": 1})  # fmt: skip
    outcome = run_training(settings, request)
    assert outcome.adapter is not None and outcome.adapter.lineage["parent"]["path"] == str(tiny_adapter_dir)


def test_lora_layers_adapts_and_changes_only_the_top_layers(settings: Settings, sft_file: Path, tmp_path: Path) -> None:
    """`lora_layers=1` on the 2-layer model: LoRA sits on layer 1 only, only its weights move, and no gradient
    reaches layer 0 (the backward pass stops at the lowest adapted layer, which is what makes it cheaper)."""
    runner = make_runner(settings, "sft", sft_file, tmp_path / "run", max_steps=3, learning_rate=1e-2, lora_layers=1)
    trainer, _ = prepared(runner)
    names = [n for n, _ in trainer.model.named_parameters() if "lora_" in n]
    assert names and all(".layers.1." in n for n in names)
    reached: list[int] = []
    layer0 = trainer.model.get_base_model().model.layers[0]
    layer0.register_full_backward_hook(lambda *_: reached.append(0))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in names if "lora_B" in n)
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)
    assert reached == []


def test_defaults_padded_batches_and_every_layer() -> None:
    from types import SimpleNamespace

    from training.modeling import top_layers

    sft = build_run_config("sft", Path("/tmp/x"))
    dpo = build_run_config("dpo", Path("/tmp/x"))
    assert sft.padding_free is False and sft.lora_layers is None  # every layer
    assert dpo.padding_free is False and dpo.lora_layers is None
    model = SimpleNamespace(config=SimpleNamespace(get_text_config=lambda: SimpleNamespace(num_hidden_layers=30)))
    assert top_layers(model, 8) == list(range(22, 30))
    assert top_layers(model, 30) is None and top_layers(model, None) is None


def test_padding_free_loss_matches_per_example_computation(settings: Settings, sft_file: Path, tmp_path: Path) -> None:
    """A padding-free SFT batch (examples flattened into one row) gives the token-mean NLL of the answer tokens
    computed independently, one unpadded example at a time."""
    runner = make_runner(settings, "sft", sft_file, tmp_path / "run", padding_free=True)
    assert runner.config.padding_free
    torch.manual_seed(0)
    trainer, train = prepared(runner, randomize_lora=0.05)
    trainer.model.eval()  # no LoRA dropout: both computations see the same function
    rows = [train[i] for i in range(3)]
    batch = trainer.data_collator(rows)
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        total, count = 0.0, 0
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor(row["labels"])[1:]
            logp = torch.log_softmax(trainer.model(input_ids=ids).logits[0, :-1].float(), -1)
            mask = labels != -100
            total -= float(logp[mask].gather(1, labels[mask][:, None]).sum())
            count += int(mask.sum())
    assert loss == pytest.approx(total / count, rel=1e-4)


def test_dpo_keeps_long_pairs_whose_prompt_fits_and_drops_long_prompts(settings: Settings, tmp_path: Path) -> None:
    """max_length truncates DPO completions (TRL keep_start) instead of dropping the pair; a pair whose prompt takes
    more than half of max_length is dropped (its completions would be cut to nothing)."""
    long_answer = " ".join(["The warranty covers parts and labour for two years."] * 12)
    long_prompt = " ".join(["How long is the warranty on parts and labour?"] * 12)
    records = [
        {"prompt": q, "chosen": a, "rejected": long_answer}
        for q, a in [
            ("How long is the warranty?", "Two years."),
            ("When are invoices due?", "In thirty days."),
            ("Where is Paris?", "On the Seine."),
        ]
    ]
    records.append({"prompt": long_prompt, "chosen": "Two years.", "rejected": "Ten."})
    data = write_json(tmp_path / "pairs.json", records)
    runner = make_runner(settings, "dpo", data, tmp_path / "run", max_length=96, eval_split=0.25)
    encoded = [runner.encode(e) for e in runner.load_examples()]
    from training.data.render import preference_length

    full = [preference_length(runner.tokenizer, e) for e in runner.load_examples()]
    lengths = [runner.length(e, enc) for e, enc in zip(runner.load_examples(), encoded, strict=True)]
    assert all(f > 96 for f in full)  # every pair is longer than max_length
    assert [n <= 96 for n in lengths] == [True, True, True, False]
