"""Shared by the benchmarks that start a real server: wait until its `/health` says ready."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_ready(base_url: str, proc: subprocess.Popen[bytes], timeout: float = 900) -> float:
    """Seconds until `GET /health` answers 200; raises if the process exits or the timeout passes."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError("server not ready")
