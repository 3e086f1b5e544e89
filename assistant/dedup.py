"""Deduplication and garbage detection: the one home for both ingest (documents, chunks) and training (examples).

Contract: `content_hash` is the SHA-256 hex digest of bytes or UTF-8 text (`normalised` gives the case- and
whitespace-insensitive form training hashes). `NearDuplicateIndex` is a MinHash LSH (datasketch) over word 3-gram
shingles of NFKC-normalised, lower-cased text: `find(text)` returns the keys of stored texts whose estimated Jaccard
similarity exceeds the threshold (ingest: `ingest.near_duplicate_threshold`); with `verify=True` the LSH only proposes
candidates (banded below the threshold, which LSH cannot band near 1) and each is kept only when its MinHash Jaccard
estimate reaches the threshold (training's `near_duplicate_threshold`); `check_and_add` does both in one signature.
`unprintable_ratio` is the share of unprintable characters (control, format, private-use, unassigned, surrogate,
U+FFFD; whitespace controls excluded) and `is_garbage` compares it with a threshold: binary data decoded as text.
`SelectionReport` lists every dropped document, block or chunk of an ingest with the reason ('unchanged',
'duplicate', 'near_duplicate', 'garbage', ...); training's per-run counts are `training.data.selection`'s report.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

import numpy as np
from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"\w+", re.UNICODE)
NUM_PERM = 64
SHINGLE_WORDS = 3
UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs"})
ALLOWED_CONTROLS = frozenset("\n\t\r\f\v")
# Whitespace controls and Unicode separators (Zs/Zl/Zp): printable text for our purposes, but not for isprintable().
SEPARATORS_DELETED = dict.fromkeys(
    [ord(c) for c in ALLOWED_CONTROLS] + [0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)


def content_hash(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def normalised(text: str) -> str:
    """NFKC, lower case, single spaces: the form in which two texts that differ only in case or spacing are equal."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


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
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    if len(words) <= SHINGLE_WORDS:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


class NearDuplicateIndex:
    """MinHash LSH over stored texts, keyed by any hashable (e.g. (document id, ordinal))."""

    def __init__(self, threshold: float, num_perm: int = NUM_PERM, verify: bool = False) -> None:
        self.num_perm = num_perm
        self.threshold = threshold
        # Verified: LSH bands a lower threshold (it cannot band one near 1) and each candidate's estimate is checked.
        self.lsh = MinHashLSH(threshold=min(threshold, 0.9) * 0.9 if verify else threshold, num_perm=num_perm)
        self._signatures: dict[Hashable, MinHash] | None = {} if verify else None
        template = MinHash(num_perm=num_perm, seed=1)
        self._permutations, self._scheme = template.permutations, template.scheme
        self._keys: set[Hashable] = set()
        self._groups: dict[Hashable, set[Hashable]] = {}

    def signature(self, text: str) -> MinHash:
        minhash = MinHash(num_perm=self.num_perm, seed=1, permutations=self._permutations, scheme=self._scheme)
        minhash.update_batch([s.encode("utf-8") for s in shingles(text)])
        return minhash

    def find(self, text: str, exclude: set[Hashable] | None = None) -> list[Hashable]:
        return self._find(self.signature(text), exclude)

    def _find(self, signature: MinHash, exclude: set[Hashable] | None = None) -> list[Hashable]:
        if np.all(signature.hashvalues == signature.hashvalues.max()):  # no shingles: nothing to compare
            return []
        keys = [key for key in self.lsh.query(signature) if not exclude or key not in exclude]
        if self._signatures is not None:
            keys = [key for key in keys if self._signatures[key].jaccard(signature) >= self.threshold]
        return keys

    def add(self, key: Hashable, text: str, group: Hashable = None) -> None:
        """Store `text` under `key`; `group` (e.g. a document id) allows removing all its keys at once."""
        self._add(key, self.signature(text), group)

    def check_and_add(self, key: Hashable, text: str, group: Hashable = None) -> list[Hashable]:
        """The stored near duplicates of `text`; when there are none, `text` is stored under `key`."""
        signature = self.signature(text)
        found = self._find(signature)
        if not found:
            self._add(key, signature, group)
        return found

    def _add(self, key: Hashable, signature: MinHash, group: Hashable) -> None:
        if key in self._keys:
            return
        self.lsh.insert(key, signature)
        self._keys.add(key)
        self._groups.setdefault(group, set()).add(key)
        if self._signatures is not None:
            self._signatures[key] = signature

    def remove_group(self, group: Hashable) -> None:
        self.remove(self._groups.pop(group, set()))

    def remove(self, keys: Iterable[Hashable]) -> None:
        for key in keys:
            if key in self._keys:
                self.lsh.remove(key)
                self._keys.discard(key)
                if self._signatures is not None:
                    self._signatures.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)


def plainly_printable(text: str) -> bool:
    """True when no character is in an unprintable category (C-speed check; the per-character loops below cost
    ~1 s per MB). `str.isprintable` is False exactly for categories C* and Z* other than the ASCII space, so after
    deleting the whitespace controls and the other separators a True answer proves there is nothing to count."""
    return text.translate(SEPARATORS_DELETED).isprintable()


def unprintable_ratio(text: str) -> float:
    """Share of characters that are not printable text (whitespace controls excluded)."""
    if not text:
        return 0.0
    if plainly_printable(text):
        return text.count("\ufffd") / len(text)
    bad = sum(
        1
        for char in text
        if char == "\ufffd" or (char not in ALLOWED_CONTROLS and unicodedata.category(char) in UNPRINTABLE_CATEGORIES)
    )
    return bad / len(text)


def is_garbage(text: str, max_unprintable_ratio: float) -> bool:
    return unprintable_ratio(text) > max_unprintable_ratio
