"""Ingest pipelining: embed one group of prepared files while the next group is prepared, store in input order.

Contract: `pipelined(groups, embed, store)` pulls groups from the `groups` iterator (preparing a group - parse, clean,
chunk, deduplicate - happens inside that iterator, in the calling thread, with parsing itself in the parse child
process), submits `embed(group)` to one background thread at once, and calls `store(group, future)` for the previous
group, in the calling thread, while the current one is being embedded. It yields what `store` returns, group by group,
in the order the groups came. At most two groups are in memory: one being embedded, one being prepared or stored.

Why one embedding thread: the embedder's own thread pool (onnxruntime intra-op threads, torch threads) already spans
the cores; the calling thread only prepares and writes, which is mostly waiting on the parse child and SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

G = TypeVar("G")
R = TypeVar("R")


def pipelined(
    groups: Iterable[G],
    embed: Callable[[G], np.ndarray],
    store: Callable[[G, Future[np.ndarray]], list[R]],
) -> Iterator[R]:
    """`store(group, embed(group))` for each group, the embedding of one overlapping the preparation of the next."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") as embedding:
        pending: tuple[G, Future[np.ndarray]] | None = None
        for group in groups:
            submitted = (group, embedding.submit(embed, group))
            if pending is not None:
                yield from store(*pending)
            pending = submitted
        if pending is not None:
            yield from store(*pending)
