"""Parsing under a per-file time budget: loaders + cleaning in a child process that is killed when a file overruns.

Contract: `parse_file(name, data, options, timeout_s)` returns what `load_document` + `clean_document` return
(the `CleanDocument` and the `SelectionReport` of dropped blocks) or raises their `AssistantError`. With a
`timeout_s`, the work runs in one long-lived child process per server/CLI process (started with 'spawn', so it
shares no threads or locks with the parent); a file that is not done within `timeout_s` seconds gets the child
killed (a thread could not be stopped: a runaway parser inside lxml or pypdf never checks a flag) and fails with a
422 naming the setting (OCR of scanned pages runs in the same child, so it counts against the same budget; the PDF
loader is told the budget and stops starting OCR pages before it is spent); the next file starts a fresh child. A
child that dies (a parser crash, the OOM killer) is a 422 for that file only. With `timeout_s=None` the work runs in
the calling thread, unbounded.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from assistant import errors
from assistant.dedup import SelectionReport
from assistant.errors import AssistantError, UnprocessableError
from ingest.cleaning import clean_document
from ingest.document_types import CleanDocument
from ingest.loaders import LoaderOptions, load_document

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # starting the child (imports) is not charged to a file's budget
Parsed = tuple[CleanDocument, SelectionReport]


def parse_in_process(name: str, data: bytes, options: LoaderOptions) -> Parsed:
    """Load and clean one file in the calling thread."""
    report = SelectionReport()
    parsed = load_document(name, data, options)
    return clean_document(parsed, name, report, options.max_unprintable_ratio), report


def _serve(conn: Connection) -> None:
    """The child's loop: one (name, data, options) in, ('ok', parsed) or ('error', (type name, message)) out."""
    conn.send(("ready", None))
    while True:
        try:
            name, data, options = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        try:
            reply: tuple[str, Any] = ("ok", parse_in_process(name, data, options))
        except AssistantError as exc:
            reply = ("error", (type(exc).__name__, exc.message))
        except Exception as exc:  # a parser bug must come back as this file's error, not kill the loop
            reply = ("error", ("UnprocessableError", f"{name}: could not be parsed ({type(exc).__name__}: {exc})"))
        conn.send(reply)


class _Child:
    """The parsing child process and its pipe; restarted after a kill."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None

    def parse(self, name: str, data: bytes, options: LoaderOptions, timeout_s: float) -> Parsed:
        with self._lock:  # one file at a time through the pipe
            conn = self._ensure()
            started = time.monotonic()
            conn.send((name, data, options))
            if not conn.poll(timeout_s):
                self.stop()
                raise UnprocessableError(
                    f"{name}: parsing took longer than {timeout_s:g} s (ingest.parse_timeout_s); the file was skipped"
                )
            try:
                status, payload = conn.recv()
            except (EOFError, OSError) as exc:
                self.stop()
                raise UnprocessableError(f"{name}: the parser process died on this file ({exc!r})") from exc
        log.debug("parsed %s in %.2f s", name, time.monotonic() - started)
        if status == "ok":
            parsed: Parsed = payload
            return parsed
        type_name, message = payload
        error_type = getattr(errors, type_name, UnprocessableError)
        raise error_type(message) if issubclass(error_type, AssistantError) else UnprocessableError(message)

    def _ensure(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        self.stop()
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(child,), name="ingest-parser", daemon=True)
        process.start()
        child.close()
        if not parent.poll(START_TIMEOUT_S) or parent.recv()[0] != "ready":
            process.kill()
            raise UnprocessableError("the parser process did not start")
        self._process, self._conn = process, parent
        return parent

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None


_CHILD = _Child()


def parse_file(name: str, data: bytes, options: LoaderOptions, timeout_s: float | None) -> Parsed:
    """Load + clean one file, within `timeout_s` seconds when given (see the module contract)."""
    if timeout_s is None:
        return parse_in_process(name, data, options)
    # The loaders see the budget too: OCR stops starting pages before it is spent (`ingest.pdf`).
    return _CHILD.parse(name, data, dataclasses.replace(options, time_budget_s=timeout_s), timeout_s)
