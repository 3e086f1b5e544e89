"""`cli.terminal_progress.TerminalProgress`: rich bars on a terminal, throttled plain lines elsewhere (on stderr)."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from cli.terminal_progress import TerminalProgress


def test_plain_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with TerminalProgress(interval_s=3600) as progress:  # pytest's stderr is no terminal
        for done in range(1, 6):
            progress.update("ingest", done, 5, f"{done * 2} chunks")
            if done == 3:
                progress.note("failed     /x/bad.pdf  (error 422: not a PDF)")
        progress.update("ingest", 5, 5, "10 chunks")  # the same final state again prints nothing
        progress.update("search dense", 1, None)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert [line.split(", ")[:2] for line in lines] == [
        ["ingest: 1/5", "2 chunks"],  # a stage's first report
        ["failed     /x/bad.pdf  (error 422: not a PDF)"],  # at once
        ["ingest: 5/5", "10 chunks"],  # its end (the reports between fall within the interval)
        ["search dense: 1/?", lines[3].split(", ")[1]],
    ]
    assert "ETA" not in lines[0] and "ETA" not in lines[2]  # too soon for a pace; done


def test_plain_lines_give_the_eta_at_the_pace_so_far(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr("cli.terminal_progress.time.monotonic", lambda: now[0])
    with TerminalProgress(interval_s=5) as progress:
        for done, at in ((0, 100.0), (1, 102.0), (2, 104.0), (3, 106.0), (8, 116.0)):
            now[0] = at
            progress.update("embed", done, 8, "chunks")
    assert capsys.readouterr().err.splitlines() == [
        "embed: 0/8, chunks, 0.0 s",
        "embed: 3/8, chunks, 6.0 s, ETA 10 s",  # 2 s an item; 1 and 2 fell within the 5 s interval
        "embed: 8/8, chunks, 16.0 s",
    ]


def test_rich_bars_on_a_terminal_with_notes_and_logs_above() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=150, color_system=None)
    root = logging.getLogger()
    handler = logging.StreamHandler()  # writes to stderr, like the CLI's logging set-up
    stderr = handler.stream
    root.addHandler(handler)
    try:
        with TerminalProgress(console=console) as progress:
            progress.update("training", 1, 4, "loss 2.5000")
            handler.handle(logging.makeLogRecord({"msg": "a log line while the bar runs"}))
            progress.note("failed     /x/[bold]bad.pdf  (error 422: not a PDF)")
            progress.update("training", 4, 4, "loss 1.2500")
            progress.update("evaluating after", 0, 2)
            assert [task.stop_time is None for task in progress._bar.tasks] == [False, True]  # type: ignore[union-attr]
    finally:
        root.removeHandler(handler)
    assert handler.stream is stderr  # put back
    shown = screen.getvalue()
    assert "a log line while the bar runs" in shown  # printed above the bars, not through them
    assert "failed     /x/[bold]bad.pdf  (error 422: not a PDF)" in shown  # no markup taken from a file name
    last = shown.rsplit("training", 1)[1].splitlines()[0]
    assert "4/4" in last and "loss 1.2500" in last
