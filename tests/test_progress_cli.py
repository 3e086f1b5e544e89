"""`cli.progress.TerminalProgress`: rich bars on a terminal, throttled plain lines elsewhere (both on stderr)."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from cli.progress import TerminalProgress


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
    assert lines[0].endswith(" s, ETA 0 s") and "ETA" not in lines[2]


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
    finally:
        root.removeHandler(handler)
    assert handler.stream is stderr  # put back
    shown = screen.getvalue()
    assert "a log line while the bar runs" in shown  # printed above the bars, not through them
    assert "failed     /x/[bold]bad.pdf  (error 422: not a PDF)" in shown  # no markup taken from a file name
    last = shown.rsplit("training", 1)[1].splitlines()[0]
    assert "4/4" in last and "loss 1.2500" in last
