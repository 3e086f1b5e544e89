"""The hyperparameter whitelist of API jobs, the one file-id resolver shared by the API and the worker, retention."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from assistant.errors import NotFoundError, UnprocessableError
from assistant.settings import Settings
from assistant.storage import Database, Job
from training.config import config_fields
from training.job_options import COMMON_OPTIONS, METHOD_OPTIONS, allowed_options, check_job_options
from training.uploads import new_file_id, prune_expired, resolve_upload, uploads_dir


@pytest.mark.parametrize("method", sorted(METHOD_OPTIONS))
def test_every_allowed_option_is_a_real_field_of_the_method(method: str) -> None:
    assert set(allowed_options(method)) <= config_fields(method)


@pytest.mark.parametrize(
    ("method", "options", "key"),
    [
        ("dpo", {"dataloader_num_workers": 512}, "dataloader_num_workers"),
        ("sft", {"push_to_hub": True}, "push_to_hub"),
        ("sft", {"save_steps": 1}, "save_steps"),
        ("sft", {"output_dir": "/tmp/x"}, "output_dir"),
        ("sft", {"beta": 0.1}, "beta"),  # a DPO field on an SFT job
        ("dpo", {"eps_low": 0.2}, "eps_low"),
    ],
)
def test_unknown_keys_are_422_naming_the_key_and_the_allowed_ones(
    method: str, options: dict[str, Any], key: str
) -> None:
    with pytest.raises(UnprocessableError) as caught:
        check_job_options(method, options)
    assert caught.value.status_code == 422 and caught.value.param == f"hyperparameters.{key}"
    assert key in caught.value.message and "learning_rate" in caught.value.message


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"learning_rate": 5.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 10**9}, "max_steps"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"per_device_train_batch_size": True}, "per_device_train_batch_size"),
        ({"lora_r": "8"}, "lora_r"),
        ({"lora_target_modules": ["q_proj", "../x"]}, "lora_target_modules"),
        ({"lora_target_modules": []}, "lora_target_modules"),
        ({"lr_scheduler_type": "exotic"}, "lr_scheduler_type"),
    ],
)
def test_values_out_of_bounds_are_422(options: dict[str, Any], key: str) -> None:
    with pytest.raises(UnprocessableError) as caught:
        check_job_options("sft", options)
    assert caught.value.param == f"hyperparameters.{key}"


def test_values_the_project_uses_pass() -> None:
    dpo = {"max_steps": 12, "learning_rate": 0.01, "beta": 0.5, "per_device_train_batch_size": 2, "lora_r": 8,
           "lora_alpha": 16, "eval_split": 0.25, "logging_steps": 1, "near_duplicate_threshold": 1.0, "min_tokens": 1,
           "lora_target_modules": ["q_proj", "v_proj"], "max_length": 512}  # fmt: skip
    assert check_job_options("dpo", dpo) == dpo
    assert check_job_options("psft", {"eps_low": 0.2, "eps_high": 0.28, "psft_refresh_steps": 4, "max_steps": 2})
    assert "beta" not in COMMON_OPTIONS
    fast = {"lora_layers": 8, "padding_free": False, "max_minutes": 14}
    assert check_job_options("sft", fast) == fast
    with pytest.raises(UnprocessableError):
        check_job_options("dpo", {"padding_free": True})  # DPO batches are padded pairs
    with pytest.raises(UnprocessableError):
        check_job_options("sft", {"lora_layers": 0})


@pytest.mark.parametrize(
    ("options", "key", "words"),
    [
        ({"sweep_learning_rates": [1e-4, 5.0]}, "sweep_learning_rates", "item 1 must be between"),
        ({"sweep_learning_rates": []}, "sweep_learning_rates", "list of 1 to 8"),
        ({"sweep_learning_rates": "1e-4"}, "sweep_learning_rates", "list of 1 to 8"),
        ({"sweep_batch_sizes": [2, 2.5]}, "sweep_batch_sizes", "item 1 must be an integer"),
        ({"sweep_batch_sizes": [1024]}, "sweep_batch_sizes", "item 0 must be between"),
        ({"sweep_epochs": [0]}, "sweep_epochs", "item 0 must be between"),
        ({"sweep_lora_ranks": ["8"]}, "sweep_lora_ranks", "item 0 must be an integer"),
        ({"sweep_lora_ranks": list(range(1, 10))}, "sweep_lora_ranks", "list of 1 to 8"),
        ({"sweep_learning_rates": [1e-4] * 4, "sweep_lora_ranks": [4, 8, 16, 32, 64]}, "sweep_max_trials", "20 trials"),
        ({"sweep_learning_rates": [1e-4, 3e-4], "sweep_max_trials": 1}, "sweep_max_trials", "2 trials"),
    ],
)
def test_sweep_grids_are_bounded_422_naming_the_key(options: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(UnprocessableError) as caught:
        check_job_options("sweep", options)
    assert caught.value.status_code == 422 and caught.value.param == f"hyperparameters.{key}"
    assert key in caught.value.message and words in caught.value.message


def test_a_sweep_grid_within_bounds_passes_and_grid_keys_are_sweep_only() -> None:
    grid = {"sweep_learning_rates": [5e-5, 5e-4], "sweep_batch_sizes": [2, 4], "sweep_epochs": [1, 2.5],
            "sweep_lora_ranks": [4, 8], "sweep_method": "classify"}  # fmt: skip
    assert check_job_options("sweep", grid) == grid  # 16 trials: exactly the default limit
    with pytest.raises(UnprocessableError) as caught:
        check_job_options("sft", {"sweep_learning_rates": [1e-4]})
    assert caught.value.param == "hyperparameters.sweep_learning_rates"


# ---------------------------------------------------------------- file ids


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def _upload(settings: Settings, name: str = "train.jsonl") -> str:
    file_id = new_file_id()
    folder = uploads_dir(settings) / file_id
    folder.mkdir(parents=True)
    (folder / name).write_text('{"prompt": "a", "completion": "b"}\n')
    return file_id


@pytest.mark.parametrize("bad", ["/some/dir/..", "../uploads/file-0123456789abcdef0123", "file-XYZ", "file-", ""])
def test_ids_that_are_not_ids_are_refused(settings: Settings, bad: str) -> None:
    with pytest.raises(UnprocessableError) as caught:
        resolve_upload(settings, bad)
    assert caught.value.param == "data.file_id"


def test_resolve_returns_the_file_inside_uploads(settings: Settings) -> None:
    file_id = _upload(settings)
    path = resolve_upload(settings, file_id)
    assert path.is_relative_to(uploads_dir(settings).resolve()) and path.name == "train.jsonl"
    with pytest.raises(NotFoundError):
        resolve_upload(settings, new_file_id())


def test_a_symlink_out_of_uploads_is_not_followed(settings: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "secret.jsonl"
    outside.write_text("secret")
    file_id = new_file_id()
    (uploads_dir(settings) / file_id).mkdir(parents=True)
    (uploads_dir(settings) / file_id / "train.jsonl").symlink_to(outside)
    with pytest.raises(NotFoundError):
        resolve_upload(settings, file_id)


def test_the_worker_resolves_through_the_same_function(settings: Settings) -> None:
    from assistant.parts import Parts
    from training.request import JobData, JobRequest
    from training.worker import JobWorker

    db = Database(settings.resolved_database_url)
    db.migrate()
    worker = JobWorker(Parts(settings))
    stored = JobRequest.model_construct(
        method="sft", data=JobData.model_construct(source="file", file_id="/some/dir/..")
    )
    with pytest.raises(UnprocessableError):  # a row written past the schema's checks is still refused
        worker._data(stored, settings.runs_dir)
    file_id = _upload(settings)
    path, collections = worker._data(
        JobRequest(method="sft", data=JobData(source="file", file_id=file_id)), settings.runs_dir
    )
    assert path == resolve_upload(settings, file_id) and collections is None


# ---------------------------------------------------------------- retention


def _age(path: Path, days: float) -> None:
    stamp = time.time() - days * 86_400
    for p in [path, *path.rglob("*")]:
        os.utime(p, (stamp, stamp), follow_symlinks=False)


def test_retention_prunes_old_uploads_and_runs_but_keeps_what_active_jobs_use(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", training={"retention_days": 7})
    db = Database(settings.resolved_database_url)
    db.migrate()
    old, used, fresh = _upload(settings), _upload(settings), _upload(settings)
    with db.session() as session:
        session.add(Job(id="job-live", kind="sft", state="running", params={"data": {"file_id": used}}))
        session.add(Job(id="job-done", kind="sft", state="succeeded", params={"data": {"file_id": old}}))
    runs = settings.runs_dir
    for name in ("jobs/job-live", "jobs/job-done", "support-sft-20260101", "support-sft-recent"):
        (runs / name).mkdir(parents=True)
        (runs / name / "log.txt").write_text("x")
    (runs / "worker.log").write_text("log")
    for path in (old, used):
        _age(uploads_dir(settings) / path, 30)
    for name in ("jobs/job-live", "jobs/job-done", "support-sft-20260101", "worker.log"):
        _age(runs / name, 30)
    removed = {p.name for p in prune_expired(settings, db)}
    assert removed == {old, "job-done", "support-sft-20260101"}
    assert (uploads_dir(settings) / used).is_dir() and (uploads_dir(settings) / fresh).is_dir()
    assert (
        (runs / "jobs" / "job-live").is_dir()
        and (runs / "support-sft-recent").is_dir()
        and (runs / "worker.log").exists()
    )
    assert prune_expired(Settings(data_dir=settings.data_dir, training={"retention_days": None}), db) == []


# ---------------------------------------------------------------- the engine's LoRA rank


@pytest.mark.parametrize(
    ("method", "hyperparameters", "key"),
    [("sft", {"lora_r": 32}, "lora_r"), ("sweep", {"sweep_lora_ranks": [8, 64]}, "sweep_lora_ranks")],
)
def test_a_rank_the_engine_cannot_load_is_refused_when_the_job_is_created(
    tmp_path: Path, method: str, hyperparameters: dict[str, Any], key: str
) -> None:
    from assistant.parts import Parts
    from serving.services.job_service import JobService
    from training.request import JobData, JobRequest

    settings = Settings(data_dir=tmp_path / "data", engine={"max_lora_rank": 16})  # type: ignore[arg-type]
    service = JobService.of(Parts(settings))
    file_id = _upload(settings)
    data = JobData(source="file", file_id=file_id)
    with pytest.raises(UnprocessableError) as refused:
        service.create(JobRequest(method=method, data=data, hyperparameters=hyperparameters))
    assert refused.value.param == f"hyperparameters.{key}"
    assert key in refused.value.message and "engine.max_lora_rank (16)" in refused.value.message
    with Parts(settings).db.session() as session:
        assert session.query(Job).count() == 0  # nothing queued
    ok = {"lora_r": 16} if key == "lora_r" else {"sweep_lora_ranks": [8, 16]}
    assert service.create(JobRequest(method=method, data=data, hyperparameters=ok)).state == "queued"
    roomy = Settings(data_dir=tmp_path / "data", engine={"max_lora_rank": 64})  # type: ignore[arg-type]
    assert JobService.of(Parts(roomy)).create(JobRequest(method=method, data=data, hyperparameters=hyperparameters))
    reward = JobRequest(method="reward", data=data, hyperparameters={"lora_r": 32})  # scored, never served
    assert service.create(reward).state == "queued"


def test_a_job_that_leaves_the_rank_out_trains_one_the_engine_serves(tmp_path: Path) -> None:
    from assistant.parts import Parts
    from serving.services.job_service import JobService
    from training.option_bounds import LORA_R_DEFAULT
    from training.request import JobData, JobRequest
    from training.runs import TrainingRequest

    settings = Settings(data_dir=tmp_path / "data", engine={"max_lora_rank": 8})  # type: ignore[arg-type]
    data = JobData(source="file", file_id=_upload(settings))
    queued = JobService.of(Parts(settings)).create(JobRequest(method="sft", data=data))  # not refused: no rank given
    stored = JobRequest.model_validate(queued.params)
    assert "lora_r" not in stored.hyperparameters
    run = TrainingRequest.for_job(stored, tmp_path / "d.jsonl", queued.id, None, settings.engine.max_lora_rank)
    assert run.options["lora_r"] == 8 < LORA_R_DEFAULT  # fitted to the engine by the worker
    wide = TrainingRequest.for_job(stored, tmp_path / "d.jsonl", queued.id, None, 64)
    assert wide.options["lora_r"] == LORA_R_DEFAULT
    reward = TrainingRequest.for_job(JobRequest(method="reward", data=data), tmp_path / "d.jsonl", "j", None, 8)
    assert "lora_r" not in reward.options  # a reward model is never served
    # questions generated from a collection's chunks keep the project's batch and whole sources on a budget
    assert not run.generated_questions
    generated = TrainingRequest.for_job(JobRequest(method="sft", data=JobData(source="collection", collection="c")),
                                        tmp_path / "d.jsonl", "j", None, 8)  # fmt: skip
    text = TrainingRequest.for_job(JobRequest(method="pt", data=JobData(source="collection", collection="c")),
                                   tmp_path / "d.jsonl", "j", None, 8)  # fmt: skip
    assert generated.generated_questions and not text.generated_questions  # pt reads the chunks' text itself
