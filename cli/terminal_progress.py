"""Progress of long commands in the terminal, one display for all of them (ingest, index rebuild, both evaluations,
train).

Contract: `TerminalProgress()` is a context manager. `update(stage, done, total, detail="")` says where a stage stands
(a new `stage` name starts a new bar or line; `total` None when unknown); `note(text)` prints a line at once (a file
that failed). Everything goes to stderr, so stdout keeps only the command's results, the lines scripts parse.
On a terminal each stage is a rich bar (description, bar, done/total, elapsed, rich's ETA, the detail); log records
go above the bars while they are shown. Elsewhere (a pipe, a
test, CI) it prints plain lines, `STAGE: DONE/TOTAL, DETAIL, ELAPSED s, ETA N s`: one when a stage starts, at most one
per `interval_s` while it runs and one when it completes, so a log stays short and greppable.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import IO, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

PLAIN_INTERVAL_S = 5.0  # a plain line at most this often per stage (a pipe or CI log is read, not watched)
MIN_PACE_S = 1.0  # a plain line gives an ETA once its stage has run this long (the first item says little)


class TerminalProgress:
    """Stage progress on stderr: rich bars on a terminal, throttled plain lines elsewhere (see the module contract)."""

    def __init__(self, console: Console | None = None, interval_s: float = PLAIN_INTERVAL_S) -> None:
        self.console = console or Console(stderr=True)
        self.interval_s = interval_s
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._stage: str | None = None
        self._started = self._printed = 0.0
        self._final = False  # the stage's completing line was printed (plain mode)
        self._moved: list[tuple[logging.StreamHandler[Any], IO[str]]] = []

    def __enter__(self) -> TerminalProgress:
        if self.console.is_terminal:
            stderr = sys.stderr
            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[detail]}", markup=False), console=self.console,
            )  # fmt: skip
            self._bar.start()  # from here sys.stderr prints above the bars
            self._moved = _move_log_handlers(stderr, sys.stderr)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
            for handler, stream in self._moved:
                handler.setStream(stream)
            self._bar = None

    def update(self, stage: str, done: int, total: int | None = None, detail: str = "") -> None:
        """`stage` has `done` of `total` items done (a new stage name starts a new bar or line)."""
        if stage != self._stage:
            self._stage, self._started, self._final = stage, time.monotonic(), False
            if self._bar is not None:
                if self._task is not None:
                    self._bar.stop_task(self._task)  # its clock stops; its bar stays as it was left
                self._task = self._bar.add_task(stage, total=total, detail=detail)
            else:
                self._printed = 0.0
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total, detail=detail)
            return
        self._plain(stage, done, total, detail)

    def note(self, text: str) -> None:
        """A line printed at once, above the bars on a terminal."""
        if self._bar is not None:
            self._bar.console.print(Text(text), soft_wrap=True)
        else:
            typer.echo(text, err=True)

    def _plain(self, stage: str, done: int, total: int | None, detail: str) -> None:
        now, finished = time.monotonic(), total is not None and done >= total
        if self._final or not (finished or now - self._printed >= self.interval_s):
            return
        self._printed, self._final = now, finished
        elapsed = now - self._started
        paced = done > 0 and not finished and elapsed >= MIN_PACE_S  # too soon: no pace yet
        eta = elapsed / done * (total - done) if total is not None and paced else None
        parts = [f"{stage}: {done}/{'?' if total is None else total}", detail, f"{elapsed:.1f} s"]
        typer.echo(", ".join(p for p in parts if p) + ("" if eta is None else f", ETA {eta:.0f} s"), err=True)


def _move_log_handlers(old: IO[str], new: IO[str]) -> list[tuple[logging.StreamHandler[Any], IO[str]]]:
    """Point the root logger's handlers that write to `old` (stderr) at `new` (rich's stream above the bars);
    returns what to put back."""
    moved = []
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler and handler.stream is old:
            moved.append((handler, old))
            handler.setStream(new)
    return moved
