"""Result types of the ingest service (what the CLI prints and the REST layer serialises).

Contract: every file handed to the service gets exactly one `FileResult`; `status` is 'ingested' (new document),
'replaced' (same source, changed content: its chunks were replaced), 'unchanged' (same content already stored: no-op),
'duplicate' (same content stored under another source in the collection: skipped) or 'failed' (with the error's
message, HTTP `status_code` and `error_type` from `assistant.errors`). A failed file never changes stored data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from assistant.dedup import SelectionReport
from assistant.errors import AssistantError


@dataclass
class FileResult:
    """The outcome for one file."""

    source: str
    collection: str
    status: str
    document_id: str | None = None
    chunks: int = 0
    dropped_chunks: int = 0
    error: str | None = None
    status_code: int | None = None
    error_type: str | None = None

    @classmethod
    def failure(cls, source: str, collection: str, error: AssistantError) -> FileResult:
        return cls(
            source,
            collection,
            "failed",
            error=error.message,
            status_code=error.status_code,
            error_type=type(error).__name__,
        )

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IngestReport:
    """The outcome of one `ingest_paths` call."""

    files: list[FileResult] = field(default_factory=list)
    selection: SelectionReport = field(default_factory=SelectionReport)
    seconds: float = 0.0

    @property
    def chunks(self) -> int:
        return sum(result.chunks for result in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [result for result in self.files if not result.ok]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.files:
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts


@dataclass
class ConsistencyReport:
    """Whether the vector index and the chunk rows agree."""

    vectors: int
    chunks: int
    orphan_vectors: list[int] = field(default_factory=list)
    missing_vectors: list[int] = field(default_factory=list)
    stuck_documents: list[str] = field(default_factory=list)
    index_kind: str = "flat"

    @property
    def ok(self) -> bool:
        return not (self.orphan_vectors or self.missing_vectors or self.stuck_documents)

    def summary(self) -> str:
        state = "consistent" if self.ok else "INCONSISTENT"
        return (
            f"{state}: {self.vectors} vectors ({self.index_kind}), {self.chunks} chunk rows; "
            f"{len(self.orphan_vectors)} vectors without a row, {len(self.missing_vectors)} rows without a vector, "
            f"{len(self.stuck_documents)} documents stuck in 'processing'"
        )
