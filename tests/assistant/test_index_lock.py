"""`IndexLock`: searches share it, a writer excludes them, writers are reentrant and preferred, nesting never blocks."""

from __future__ import annotations

import threading
import time

from assistant.index.locking import IndexLock


def _in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_readers_share_the_lock() -> None:
    lock = IndexLock()
    inside = threading.Barrier(3, timeout=5)  # three readers inside at once, or the barrier breaks

    def read() -> None:
        with lock.read():
            inside.wait()

    threads = [_in_thread(read) for _ in range(3)]
    for thread in threads:
        thread.join(5)
    assert not inside.broken and not any(t.is_alive() for t in threads)


def test_a_writer_excludes_readers_and_readers_exclude_a_writer() -> None:
    lock = IndexLock()
    events: list[str] = []
    with lock:
        reader = _in_thread(lambda: (lock.read().__enter__(), events.append("read")))
        time.sleep(0.2)
        assert events == []  # the reader waits for the write step
    reader.join(5)
    assert events == ["read"]

    second = IndexLock()
    held = threading.Event()
    release = threading.Event()

    def hold_read() -> None:
        with second.read():
            held.set()
            release.wait(5)

    _in_thread(hold_read)
    held.wait(5)
    writer = _in_thread(lambda: (second.acquire(), events.append("write"), second.release()))
    time.sleep(0.2)
    assert events == ["read"]  # the writer waits for the search
    release.set()
    writer.join(5)
    assert events == ["read", "write"]


def test_writers_are_reentrant_and_may_read_inside() -> None:
    lock = IndexLock()
    with lock, lock, lock.read(), lock.read():
        pass
    with lock.read(), lock.read():  # nested reads never wait, even behind a waiting writer
        pass
    assert lock._writer is None and lock._readers == 0


def test_a_waiting_writer_is_not_starved_by_new_readers() -> None:
    lock = IndexLock()
    order: list[str] = []
    first_in = threading.Event()
    release = threading.Event()

    def long_read() -> None:
        with lock.read():
            first_in.set()
            release.wait(5)

    def write() -> None:
        with lock:
            order.append("write")

    def late_read() -> None:
        with lock.read():
            order.append("late read")

    _in_thread(long_read)
    first_in.wait(5)
    writer = _in_thread(write)
    time.sleep(0.1)
    late = _in_thread(late_read)
    time.sleep(0.1)
    assert order == []  # the late reader queues behind the writer
    release.set()
    writer.join(5)
    late.join(5)
    assert order == ["write", "late read"]
