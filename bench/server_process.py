"""Shared by the benchmarks that start a real server: wait until its `/health` says ready; run a training job
through the REST API and wait for it to end."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import httpx


def wait_ready(base_url: str, proc: subprocess.Popen[bytes], timeout: float = 900) -> float:
    """Seconds until `GET /health` answers 200; raises if the process exits or the timeout passes."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            health = httpx.get(f"{base_url}/health", timeout=2)
            if health.status_code == 200:
                return time.perf_counter() - start
            if health.json().get("status") == "failed":  # the engine or the store could not load: no use waiting
                raise RuntimeError(f"server failed to start: {health.json().get('error')}")
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.25)
    raise TimeoutError("server not ready")


def run_job(base: str, spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Submit a training job, print its progress, and return (the finished job, seconds); raises unless it succeeded."""
    started = time.perf_counter()
    created = httpx.post(f"{base}/v1/training/jobs", json=spec, timeout=60)
    if created.status_code >= 400:
        raise RuntimeError(f"job refused: {created.status_code} {created.text}")
    job_id = created.json()["id"]
    last, phase, timeline = -1.0, None, []
    while True:
        job = httpx.get(f"{base}/v1/training/jobs/{job_id}", timeout=60).json()
        if job.get("phase") != phase:  # the phases as a client sees them while the job runs
            phase = job.get("phase")
            timeline.append({"phase": phase, "at_s": round(time.perf_counter() - started, 1)})
            print(f"  {spec['method']} job phase {phase} at {timeline[-1]['at_s']:.0f} s", flush=True)
        if job["progress"] - last >= 0.1:
            print(f"  {spec['method']} job {job['state']} {job['progress']:.0%}", flush=True)
            last = job["progress"]
        if job["state"] in {"succeeded", "failed", "cancelled"}:
            break
        time.sleep(2)
    job["phases_seen"] = timeline
    if job["state"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['state']}: {job['error']}\n" + "\n".join(job.get("log_tail", [])))
    return job, time.perf_counter() - started
