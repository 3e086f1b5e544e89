"""The end-of-run clean-up (tests/fixtures/leftovers.py): a child left running and a process that left our tree but
still holds an output pipe are both found, named and stopped."""

from __future__ import annotations

import io
import os
import subprocess
import time

import psutil

from tests.fixtures.leftovers import holders_of, leftover_processes, pipe_of, stop_processes


def test_a_child_left_running_is_found_and_stopped() -> None:
    child = subprocess.Popen(["sleep", "300"])
    try:
        found = [p for p in leftover_processes() if p.pid == child.pid]
        assert found, "a running child is a leftover"
        stream = io.StringIO()
        assert stop_processes(found, stream) == 1
        assert not found[0].is_running()  # stopped (and reaped: psutil waits for it)
        assert f"tests left process {child.pid} running (sleep 300)" in stream.getvalue()
    finally:
        child.kill()


def test_a_process_outside_the_tree_holding_the_pipe_is_found() -> None:
    """A daemonised grandchild (its parent gone) is no descendant, but it keeps the pipe's write end open."""
    read_end, write_end = os.pipe()
    try:
        launcher = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!"], stdout=write_end, stderr=subprocess.DEVNULL)
        launcher.wait(timeout=10)
        os.close(write_end)
        orphan = int(os.read(read_end, 64).split()[0])
        assert orphan not in {p.pid for p in psutil.Process().children(recursive=True)}  # left our tree
        pipe = pipe_of(orphan, 1)
        assert pipe and pipe.startswith("pipe:")
        holders = holders_of({pipe}, excluded={os.getpid()})
        assert [p.pid for p in holders] == [orphan]
        stop_processes(holders, io.StringIO())
        deadline = time.monotonic() + 10
        while psutil.pid_exists(orphan) and psutil.Process(orphan).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the orphan was not stopped"
            time.sleep(0.05)
    finally:
        os.close(read_end)
