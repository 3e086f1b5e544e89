"""`assistant train <method>`: its options are the config dataclass fields (names, help, defaults) and reach the run."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app
from training.options import BY_NAME

REQUEST = {"--data", "--config", "--data-dir", "--name", "--base-adapter", "--recipe", "--output", "--resume", "--set",
           "--job-id", "--help"}  # fmt: skip
SCHEDULE = {"--epochs", "--lr", "--max-steps", "--batch-size", "--grad-accum", "--eval-split", "--eval-steps",
            "--save-steps", "--seed", "--lora-r", "--lora-alpha", "--lora-dropout", "--target-modules",
            "--load-in-4bit"}  # fmt: skip
SELECTION = {"--relevance-threshold", "--relevance-top", "--diversity-target", "--diversity-method"}
# The flags each command had when they were written out by hand (before they were generated from the configs).
EXPECTED_FLAGS = {
    "sft": SCHEDULE | {"--max-length"},
    "dpo": SCHEDULE | {"--max-length", "--beta"},
    "psft": SCHEDULE | {"--max-length", "--eps-low", "--eps-high", "--refresh-steps"},
    "kto": SCHEDULE | SELECTION | {"--max-length", "--beta", "--desirable-weight", "--undesirable-weight"},
    "reward": SCHEDULE | SELECTION | {"--max-length"},
    "grpo": SCHEDULE
    | {"--beta", "--reward-model", "--rule", "--num-generations", "--max-completion-length", "--target-length"},
    "classify": SCHEDULE | SELECTION | {"--max-length"},
    "sweep": SCHEDULE
    | {"--max-length", "--trial-method", "--grid-lr", "--grid-batch-size", "--grid-epochs", "--grid-lora-r"},
}
NEEDED = {"grpo": {"rule_rewards": ["length"]}}  # a GRPO config needs a reward


def _train_command(method: str) -> Any:
    return typer.main.get_command(app).commands["train"].commands[method]  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", sorted(EXPECTED_FLAGS))
def test_options_are_the_config_fields(method: str, tmp_path: Path) -> None:
    from training.config import build_run_config
    from training.methods import config_class

    command = _train_command(method)
    command.get_help(typer.Context(command, info_name=method))  # help is filled in when shown
    options = {param.opts[0]: param for param in command.get_params(typer.Context(command))}
    assert set(options) == REQUEST | EXPECTED_FLAGS[method]
    fields = {f.name: f for f in dataclasses.fields(config_class(method))}
    run = build_run_config(method, tmp_path, NEEDED.get(method, {}))  # what a run without flags gets
    for name in EXPECTED_FLAGS[method]:
        option, flag = options[name], BY_NAME[name[2:].replace("-", "_")]
        field = fields[flag.field]
        assert option.help == " ".join(field.metadata["help"].split()), name
        default = field.default if flag.field in NEEDED.get(method, {}) else getattr(run, flag.field)
        if default is dataclasses.MISSING:
            default = field.default_factory()  # type: ignore[misc]
        assert option.show_default == (False if default is None else str(default)), name
    assert "[default: (0.0002)]" in CliRunner().invoke(app, ["train", method, "--help"], terminal_width=200).output


def test_flags_reach_the_training_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.runs

    requests: list[Any] = []
    monkeypatch.setattr(training.runs, "run_training", lambda settings, request, **_: requests.append(request))
    args = ["train", "sweep", "-d", "a.json", "--data-dir", str(tmp_path), "--lr", "1e-3", "--batch-size", "2",
            "--target-modules", "q_proj, v_proj", "--load-in-4bit", "--grid-lr", "1e-4,3e-4", "--grid-lora-r", "4,8",
            "--trial-method", "classify", "--set", "warmup_steps=2", "--set", "sweep_epochs=[2]",
            "--name", "s"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert requests, result.output
    request = requests[0]
    assert (request.method, request.name, request.data_files) == ("sweep", "s", [Path("a.json")])
    assert request.options == {
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 2,
        "lora_target_modules": ["q_proj", "v_proj"],
        "load_in_4bit": True,
        "sweep_method": "classify",
        "warmup_steps": 2,
        "sweep_epochs": [2],
        "sweep_learning_rates": [1e-4, 3e-4],
        "sweep_lora_ranks": [4, 8],
        "disable_tqdm": True,  # the CLI shows the steps itself (cli.terminal_progress)
    }
    bad = CliRunner().invoke(app, ["train", "sft", "-d", "a.json", "--beta", "0.2"])
    assert bad.exit_code == 2 and "No such option" in bad.output  # --beta is not an option of `train sft`


def test_jobs_show_follow_shows_the_phase_until_the_job_ends(tmp_path: Path) -> None:
    """`jobs show --follow` follows a job's phase row until it is final, then prints the job's JSON."""
    import json
    import threading
    import time

    from assistant.parts import Parts
    from assistant.settings import Settings
    from assistant.storage import Job
    from training.progress import PHASES

    db = Parts(Settings(data_dir=tmp_path)).db
    with db.session() as session:
        job = Job(kind="sft", params={"method": "sft"}, state="running")
        session.add(job)
        session.flush()
        job_id = job.id

    def worker() -> None:  # what a worker writes, phase by phase
        for done, phase in enumerate(PHASES):
            time.sleep(0.3)
            with db.session() as session:
                row = session.get(Job, job_id)
                assert row is not None
                row.phase, row.phase_progress = phase, {"done": done, "total": 6, "eta_s": 1.0, "phases": []}
        with db.session() as session:
            row = session.get(Job, job_id)
            assert row is not None
            row.state = "succeeded"

    thread = threading.Thread(target=worker)
    thread.start()
    result = CliRunner().invoke(app, ["jobs", "show", job_id, "--follow", "--interval", "0.1", "--data-dir",
                                      str(tmp_path)], terminal_width=200)  # fmt: skip
    thread.join()
    assert result.exit_code == 0, result.output
    assert "succeeded · registering" in result.output and "5/6" in result.output  # the bar's last state
    body = json.loads(result.output[result.output.index("{") :])
    assert body["state"] == "succeeded" and body["phase"] == "registering"


@pytest.mark.slow  # a real run on the tiny model: about 40 s on 2 busy cores
def test_train_shows_steps_and_loss_without_a_terminal(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`assistant train` on the tiny model, not on a TTY: a plain line per phase, step lines with the latest loss
    on stderr (the trainer's own log of the run has the same losses), the adapter's JSON last on stdout."""
    import json

    from tests.training.conftest import FAST_OPTIONS, sft_records, write_json

    data = write_json(tmp_path / "sft.json", sft_records())
    options = {**FAST_OPTIONS, "max_steps": 3}
    sets = [arg for key, value in options.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    args = ["train", "sft", "-d", str(data), "--data-dir", str(tmp_path / "data"), "--name", "shown", *sets]
    result = CliRunner().invoke(app, args, env={"ASSISTANT_MODELS__LM": str(tiny_model_dir)})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.rindex("\n{\n") :])
    assert summary["name"] == "shown"
    history = json.loads((Path(summary["run_dir"]) / "log_history.json").read_text())
    losses = [f"loss {entry['loss']:.4f}" for entry in history if "loss" in entry]
    steps = [line.split(", ") for line in result.stderr.splitlines() if line.startswith("training: ")]
    assert steps[0][0] == "training: 0/3" and steps[-1][:2] == ["training: 3/3", losses[-1]]
    phases = ["building data", "evaluating before", "training", "evaluating after"]
    shown = [line.split(": ")[0] for line in result.stderr.splitlines() if line.split(": ")[0] in phases]
    assert [p for i, p in enumerate(shown) if p not in shown[:i]] == phases  # each phase, in order
