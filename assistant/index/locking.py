"""The index lock: many searches at once, or one writer.

Contract: `IndexLock` is what the server's searches and index writes share. `with lock:` takes it exclusively and is
reentrant for the thread holding it (a drop-in for the `threading.RLock` writers used before: ingest write steps, the
replica follower, recovery). `with lock.read():` takes it shared: any number of searches run together, and a search
waits only while a write step holds the lock. Writers are preferred (a waiting writer holds new readers back) so a
stream of searches cannot starve an upload; a thread that already reads or writes may read again without waiting,
so nesting never deadlocks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType


class IndexLock:
    """A writer-preferring read-write lock whose write side is reentrant (see the module contract)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._depth = 0
        self._waiting_writers = 0
        self._local = threading.local()

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
                return
            self._waiting_writers += 1
            try:
                own_reads = self._read_depth()  # a reader upgrading counts its own reads out
                self._cond.wait_for(lambda: self._writer is None and self._readers == own_reads)
            finally:
                self._waiting_writers -= 1
            self._writer, self._depth = me, 1

    def release(self) -> None:
        with self._cond:
            if self._writer != threading.get_ident():
                raise RuntimeError("IndexLock released by a thread that does not hold it")
            self._depth -= 1
            if self._depth == 0:
                self._writer = None
                self._cond.notify_all()

    def __enter__(self) -> IndexLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    @contextmanager
    def read(self) -> Iterator[None]:
        """Shared: searches hold it together; it waits only for a writer (see the module contract)."""
        me = threading.get_ident()
        with self._cond:
            nested = self._writer == me or self._read_depth() > 0
            if not nested:
                self._cond.wait_for(lambda: self._writer is None and self._waiting_writers == 0)
            self._readers += 1
            self._local.depth = self._read_depth() + 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._local.depth = self._read_depth() - 1
                if self._readers == 0:
                    self._cond.notify_all()

    def _read_depth(self) -> int:
        return int(getattr(self._local, "depth", 0))
