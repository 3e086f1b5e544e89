"""The parse report of one document: how each page was read, the tables found, and what went wrong.

Contract: a loader fills a `ParseReport` beside its blocks (`ParsedDocument.report`): one `PageReport` per page or
slide (`method` 'text' = the file's own text layer, 'ocr' = recognised from the rendered page, 'failed' = nothing
usable; `chars` extracted; `confidence` the OCR engine's mean confidence, None for text), `tables` kept as tables,
and `warnings` (pages that failed, attachments skipped, blocks dropped as garbage). Cleaning adds its warnings.
`to_dict()` is what is stored with the document (`documents.parse_report`) and shown by `GET /v1/documents/{id}`.
Warnings are capped (`MAX_WARNINGS`, then one line counting the rest) so a hostile file cannot make the report huge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_WARNINGS = 50
METHODS = ("text", "ocr", "failed")


@dataclass
class PageReport:
    """How one page (or slide) was read."""

    page: int
    method: str
    chars: int
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        confidence = None if self.confidence is None else round(self.confidence, 3)
        return {"page": self.page, "method": self.method, "chars": self.chars, "confidence": confidence}


@dataclass
class ParseReport:
    """Pages, tables and warnings of one parsed document."""

    pages: list[PageReport] = field(default_factory=list)
    tables: int = 0
    warnings: list[str] = field(default_factory=list)
    ocr_engine: str | None = None
    ocr_seconds: float = 0.0
    _dropped_warnings: int = 0

    def warn(self, message: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        else:
            self._dropped_warnings += 1

    def methods(self) -> dict[str, int]:
        """Pages per method ('text', 'ocr', 'failed'), zero counts left out."""
        counts = {method: sum(1 for p in self.pages if p.method == method) for method in METHODS}
        return {method: count for method, count in counts.items() if count}

    def to_dict(self) -> dict[str, Any]:
        warnings = list(self.warnings)
        if self._dropped_warnings:
            warnings.append(f"... and {self._dropped_warnings} more warnings")
        return {
            "pages": len(self.pages),
            "methods": self.methods(),
            "tables": self.tables,
            "warnings": warnings,
            "ocr_engine": self.ocr_engine,
            "ocr_seconds": round(self.ocr_seconds, 2),
            "page_details": [page.to_dict() for page in self.pages],
        }
