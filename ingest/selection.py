"""Data selection: content hashing, exact and near-duplicate detection, and the report of what was dropped.

Contract: `content_hash` is the SHA-256 hex digest of bytes or UTF-8 text. `NearDuplicateIndex` is a MinHash LSH
(datasketch) over word 3-gram shingles of normalised text: `find(text)` returns the keys of stored texts whose
estimated Jaccard similarity exceeds the threshold (`ingest.near_duplicate_threshold`). `SelectionReport` lists every
dropped document, block or chunk with the reason ('unchanged', 'duplicate', 'near_duplicate', 'garbage', ...).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

import numpy as np
from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"\w+", re.UNICODE)
NUM_PERM = 64
SHINGLE_WORDS = 3


def content_hash(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Dropped:
    """One thing left out of the index, and why."""

    source: str
    level: str
    reason: str
    detail: str = ""


@dataclass
class SelectionReport:
    """What cleaning and deduplication dropped."""

    dropped: list[Dropped] = field(default_factory=list)

    def drop(self, source: str, level: str, reason: str, detail: str = "") -> None:
        self.dropped.append(Dropped(source, level, reason, detail))

    def counts(self) -> dict[str, int]:
        """Dropped items by 'level:reason'."""
        return dict(Counter(f"{item.level}:{item.reason}" for item in self.dropped))

    def extend(self, other: SelectionReport) -> None:
        self.dropped.extend(other.dropped)


def shingles(text: str) -> set[str]:
    words = _WORD.findall(text.lower())
    if len(words) <= SHINGLE_WORDS:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


class NearDuplicateIndex:
    """MinHash LSH over stored texts, keyed by any hashable (e.g. (document id, ordinal))."""

    def __init__(self, threshold: float, num_perm: int = NUM_PERM) -> None:
        self.num_perm = num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        template = MinHash(num_perm=num_perm, seed=1)
        self._permutations, self._scheme = template.permutations, template.scheme
        self._keys: set[Hashable] = set()
        self._groups: dict[Hashable, set[Hashable]] = {}

    def signature(self, text: str) -> MinHash:
        minhash = MinHash(num_perm=self.num_perm, seed=1, permutations=self._permutations, scheme=self._scheme)
        minhash.update_batch([s.encode("utf-8") for s in shingles(text)])
        return minhash

    def find(self, text: str, exclude: set[Hashable] | None = None) -> list[Hashable]:
        signature = self.signature(text)
        if np.all(signature.hashvalues == signature.hashvalues.max()):  # no shingles: nothing to compare
            return []
        return [key for key in self.lsh.query(signature) if not exclude or key not in exclude]

    def add(self, key: Hashable, text: str, group: Hashable = None) -> None:
        """Store `text` under `key`; `group` (e.g. a document id) allows removing all its keys at once."""
        if key in self._keys:
            return
        self.lsh.insert(key, self.signature(text))
        self._keys.add(key)
        self._groups.setdefault(group, set()).add(key)

    def remove_group(self, group: Hashable) -> None:
        self.remove(self._groups.pop(group, set()))

    def remove(self, keys: Iterable[Hashable]) -> None:
        for key in keys:
            if key in self._keys:
                self.lsh.remove(key)
                self._keys.discard(key)

    def __len__(self) -> int:
        return len(self._keys)
