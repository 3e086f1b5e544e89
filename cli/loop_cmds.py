"""CLI commands that close the loop: `feedback export`, `jobs ...`, `adapters ...`, `worker`.

They work on the same database and through the same services as the REST API, so they can be used beside a running
server (an adapter activated here is picked up by the server's next request that names it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import ConfigOption, DataDirOption, build_settings, echo, run_async, user_errors

feedback_app = typer.Typer(help="Export collected feedback as preference pairs.", no_args_is_help=True)
jobs_app = typer.Typer(help="Queue, inspect and cancel training jobs.", no_args_is_help=True)
adapters_app = typer.Typer(help="The adapter registry: list, activate, roll back.", no_args_is_help=True)


def _job_service(settings: Any) -> Any:
    from assistant.parts import Parts
    from serving.services.job_service import JobService

    return JobService.of(Parts(settings))


def _print(body: Any) -> None:
    echo(json.dumps(body, indent=2, default=str))


@feedback_app.command("export")
def feedback_export(
    output: Annotated[Path, typer.Argument(help="JSONL file to write (rendered_prompt, chosen, rejected).")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    provenance: Annotated[str | None, typer.Option(help="Only 'feedback' or 'imported' pairs.")] = None,
) -> None:
    """Write the stored preference pairs in the form training jobs read."""
    from assistant.parts import Parts
    from serving.services.feedback_service import PreferenceStore

    with user_errors():
        rows = PreferenceStore.of(Parts(build_settings(config, data_dir))).export(provenance=provenance)
        output.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        echo(f"wrote {len(rows)} pairs to {output}")


@jobs_app.command("submit")
def jobs_submit(
    method: Annotated[str, typer.Argument(help="sft, dpo or psft.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    name: Annotated[str, typer.Option(help="Adapter name.")] = "assistant",
    data_file: Annotated[Path | None, typer.Option(help="Train on this file instead of the stored pairs.")] = None,
    provenance: Annotated[str | None, typer.Option(help="Stored pairs of this provenance only.")] = None,
    base_adapter: Annotated[str | None, typer.Option(help="Continue from this adapter (NAME or NAME@vN).")] = None,
    hyperparameters: Annotated[
        str, typer.Option(help='JSON object of training options, e.g. {"max_steps": 20}.')
    ] = "{}",
) -> None:
    """Queue a training job (a worker runs it: the server's, or `assistant worker`)."""
    from serving.rest_format import job_body
    from serving.schemas import JobSpec

    with user_errors():
        service = _job_service(build_settings(config, data_dir))
        data: dict[str, Any] = {"source": "preferences", "provenance": provenance}
        if data_file is not None:
            data = {"source": "file", "file_id": service.save_upload(data_file.name, data_file.read_bytes()).id}
        spec = JobSpec.model_validate(
            {
                "method": method,
                "name": name,
                "data": data,
                "base_adapter": base_adapter,
                "hyperparameters": json.loads(hyperparameters),
            }
        )
        _print(job_body(service.create(spec)))


@jobs_app.command("list")
def jobs_list(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """The newest jobs with their state and progress."""
    with user_errors():
        for job in _job_service(build_settings(config, data_dir)).list():
            echo(f"{job.id}  {job.method:4}  {job.state:10}  {job.progress:.0%}  {job.error or ''}")


@jobs_app.command("show")
def jobs_show(
    job_id: str,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Show the phase, its progress and ETA until the job ends.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks at the job (--follow).", min=0.1)] = 1.0,
) -> None:
    """State, progress, metrics and log tail of one job (with --follow: a progress bar until it ends, then those)."""
    from serving.rest_format import job_body

    with user_errors():
        service = _job_service(build_settings(config, data_dir))
        if follow:
            follow_job(service, job_id, interval)
        _print(job_body(service.get(job_id)))


def follow_job(service: Any, job_id: str, interval: float) -> None:
    """The job's phase on `cli.terminal_progress` (stderr, so stdout stays the job's JSON): done/total, the worker's ETA
    and the budget left, looked at every `interval` seconds until the job is final."""
    import time

    from assistant.job_states import FINAL
    from cli.terminal_progress import TerminalProgress

    with TerminalProgress() as progress:
        while True:
            job = service.get(job_id, tail=0)
            detail = job.phase_progress or {}
            eta, left = detail.get("eta_s"), detail.get("budget_left_s")
            times = [f"ETA {eta:.0f} s" if eta is not None else "", f"budget left {left:.0f} s" if left else ""]
            progress.update(f"{job.state} · {job.phase or 'waiting for a worker'}", detail.get("done") or 0,
                            detail.get("total"), " ".join(t for t in times if t))  # fmt: skip
            if job.state in FINAL:
                return
            time.sleep(interval)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    from serving.rest_format import job_body

    with user_errors():
        _print(job_body(_job_service(build_settings(config, data_dir)).cancel(job_id)))


def _adapter_service(settings: Any) -> Any:
    from assistant.parts import Parts
    from serving.services.adapter_service import AdapterService

    return AdapterService.of(Parts(settings), engine=None)


@adapters_app.command("list")
def adapters_list(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Every adapter version with its status, method and gate result."""
    with user_errors():
        for adapter in _adapter_service(build_settings(config, data_dir)).list():
            gate = adapter.gate or {}
            verdict = "-" if not gate else ("passed" if gate.get("passed") else "failed")
            echo(f"{adapter.identity:30} {adapter.status:10} {adapter.method:5} gate:{verdict}  {adapter.path}")


@adapters_app.command("activate")
def adapters_activate(
    name: str,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    version: Annotated[int | None, typer.Option(help="Version to activate (default: newest candidate).")] = None,
    force: Annotated[bool, typer.Option(help="Activate even if the gate found it worse.")] = False,
) -> None:
    """Make a version the active one of its name."""
    from serving.rest_format import adapter_body

    with user_errors():
        service = _adapter_service(build_settings(config, data_dir))
        _print(adapter_body(run_async(lambda: service.activate(name, version, force))))


@adapters_app.command("rollback")
def adapters_rollback(name: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Re-activate the version that was active before the current one."""
    from serving.rest_format import adapter_body

    with user_errors():
        service = _adapter_service(build_settings(config, data_dir))
        _print(adapter_body(run_async(lambda: service.rollback(name))))


def worker(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    once: Annotated[bool, typer.Option(help="Run at most one queued job, then exit.")] = False,
) -> None:
    """Run queued training jobs (the server starts one of these itself unless training.run_worker is false)."""
    import signal

    from training.worker import JobWorker, WorkerStopped, on_sigterm

    with user_errors():
        settings = build_settings(config, data_dir)
        from assistant.parts import Parts

        job_worker = JobWorker(Parts(settings))
        signal.signal(signal.SIGTERM, on_sigterm)
        try:
            job_worker.run_once() if once else job_worker.run_forever()
        except WorkerStopped:
            echo("worker stopped")


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.add_typer(feedback_app, name="feedback")
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(adapters_app, name="adapters")
