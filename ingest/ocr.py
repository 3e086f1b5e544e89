"""OCR of PDF pages, offline: pages rendered with pypdfium2, text recognised by RapidOCR or Tesseract.

Contract: `engine(name, languages)` returns the process's `OcrEngine` of that name (built once and cached: the parse
child is long-lived, so the models load once per child, not once per page); `engine.recognise(image)` turns a
grayscale page image (uint8 array) into `Recognised(text, confidence)`: lines in reading order (top to bottom,
then left to right), a blank line where the vertical gap says a new paragraph starts, and the mean confidence in
[0, 1] weighted by characters (None when nothing was found). `PageRenderer(data).render(index, dpi)` renders one
page at `dpi`, lowered so that no image exceeds `MAX_PIXELS` (a page declaring a huge size cannot exhaust memory).
Engines:
- 'rapidocr': `rapidocr-onnxruntime` (its detection/recognition ONNX models ship inside the wheel; nothing is
  downloaded). scripts/install.sh installs it with --no-deps, because it declares opencv-python (needs libGL) where
  the already installed opencv-python-headless does. Its text-angle classifier is off: on upright scans of SQuAD
  pages it turned 10 of 22 lines upside down, which were then lost. Its recogniser (a Chinese+English model) often
  runs English words together ("forthe2015season"): 0.73 of a page's words read back exactly, against 0.96 for
  Tesseract, which also ran twice as fast here.
- 'tesseract': Debian's `tesseract-ocr` binary, run as a subprocess on a PNG (`tesseract stdin stdout tsv`).
- 'auto': Tesseract when its binary is installed, else RapidOCR (always there: a Python dependency).
A missing engine raises `OcrUnavailableError` naming what to install; the loader reports it per page.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

MAX_PIXELS = 25_000_000  # about an A4 page at 600 dpi
PARAGRAPH_GAP = 1.5  # rows further apart than this many times the usual line pitch start a new paragraph
TESSERACT_TIMEOUT_S = 300


class OcrUnavailableError(RuntimeError):
    """The configured OCR engine cannot run here; the message names what to install."""


@dataclass(frozen=True)
class Recognised:
    """The text of one page image and the engine's mean confidence (0-1; None when no text was found)."""

    text: str
    confidence: float | None


@dataclass(frozen=True)
class Line:
    """One recognised line: its box (left, top, right, bottom in pixels), text and confidence."""

    box: tuple[float, float, float, float]
    text: str
    confidence: float


class OcrEngine(Protocol):
    name: str

    def recognise(self, image: np.ndarray) -> Recognised: ...


def layout(lines: list[Line]) -> Recognised:
    """Lines in reading order joined into text (a blank line at paragraph-sized gaps), confidence by characters."""
    lines = [line for line in lines if line.text.strip()]
    if not lines:
        return Recognised("", None)
    height = float(np.median([line.box[3] - line.box[1] for line in lines])) or 1.0
    # Rows: lines whose vertical centres are within half a line height belong to one row, read left to right.
    rows: dict[int, list[Line]] = {}
    for line in lines:
        rows.setdefault(round((line.box[1] + line.box[3]) / height), []).append(line)
    ordered = [sorted(rows[key], key=lambda line: line.box[0]) for key in sorted(rows)]
    tops = [min(line.box[1] for line in row) for row in ordered]
    pitches = [b - a for a, b in itertools.pairwise(tops)]
    pitch = float(np.median(pitches)) if pitches else height
    parts: list[str] = []
    for number, row in enumerate(ordered):
        if number:
            parts.append("\n\n" if pitches[number - 1] > PARAGRAPH_GAP * pitch else "\n")
        parts.append(" ".join(line.text.strip() for line in row))
    weights = [len(line.text) for line in lines]
    confidence = float(np.average([line.confidence for line in lines], weights=weights))
    return Recognised("".join(parts), confidence)


class RapidOcr:
    """RapidOCR (ONNX Runtime): detection + recognition models from the wheel."""

    name = "rapidocr"

    def __init__(self) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise OcrUnavailableError(
                "OCR engine 'rapidocr' needs the Python package 'rapidocr-onnxruntime' (installed by "
                "scripts/install.sh: pip install --no-deps rapidocr-onnxruntime==1.4.4 pyclipper shapely six), or "
                f"set ingest.ocr_engine: tesseract ({exc})"
            ) from exc
        self._engine: Any = RapidOCR(use_cls=False)

    def recognise(self, image: np.ndarray) -> Recognised:
        colour = np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2)) if image.ndim == 2 else image
        result, _elapsed = self._engine(colour)
        lines = []
        for box, text, score in result or []:
            xs, ys = [point[0] for point in box], [point[1] for point in box]
            lines.append(Line((min(xs), min(ys), max(xs), max(ys)), str(text), float(score)))
        return layout(lines)


class TesseractOcr:
    """Tesseract (Debian `tesseract-ocr`) as a subprocess; word boxes from its TSV output grouped into lines."""

    name = "tesseract"

    def __init__(self, languages: str) -> None:
        self.binary = shutil.which("tesseract")
        if self.binary is None:
            raise OcrUnavailableError(
                "OCR engine 'tesseract' needs the tesseract binary: apt-get install tesseract-ocr "
                "(plus tesseract-ocr-LANG for languages other than English), or set ingest.ocr_engine: rapidocr"
            )
        self.languages = languages

    def recognise(self, image: np.ndarray) -> Recognised:
        from PIL import Image

        png = io.BytesIO()
        Image.fromarray(image).save(png, "PNG")
        done = subprocess.run(
            [str(self.binary), "stdin", "stdout", "-l", self.languages, "tsv"],
            input=png.getvalue(),
            capture_output=True,
            timeout=TESSERACT_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()[-500:]
            raise OcrUnavailableError(f"tesseract failed (exit {done.returncode}): {message}")
        return layout(_tesseract_lines(done.stdout.decode(errors="replace")))


def _tesseract_lines(tsv: str) -> list[Line]:
    """Words of tesseract's TSV grouped by (block, paragraph, line)."""
    words: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") == "5" and (row.get("text") or "").strip() and float(row.get("conf") or -1) >= 0:
            words.setdefault((row["block_num"], row["par_num"], row["line_num"]), []).append(row)
    lines = []
    for group in words.values():
        left = min(int(w["left"]) for w in group)
        top = min(int(w["top"]) for w in group)
        right = max(int(w["left"]) + int(w["width"]) for w in group)
        bottom = max(int(w["top"]) + int(w["height"]) for w in group)
        text = " ".join(w["text"].strip() for w in group)
        confidence = float(np.mean([float(w["conf"]) for w in group])) / 100
        lines.append(Line((left, top, right, bottom), text, confidence))
    return lines


_ENGINES: dict[tuple[str, str], OcrEngine] = {}
_ENGINES_LOCK = threading.Lock()


def engine(name: str, languages: str = "eng") -> OcrEngine:
    """The cached engine `name` ('auto', 'rapidocr' or 'tesseract'); raises `OcrUnavailableError` when it cannot
    run."""
    if name == "auto":
        return engine("tesseract" if shutil.which("tesseract") else "rapidocr", languages)
    with _ENGINES_LOCK:
        key = (name, languages)
        if key not in _ENGINES:
            if name == "rapidocr":
                _ENGINES[key] = RapidOcr()
            elif name == "tesseract":
                _ENGINES[key] = TesseractOcr(languages)
            else:
                raise OcrUnavailableError(f"unknown OCR engine {name!r}; use 'auto', 'rapidocr' or 'tesseract'")
        return _ENGINES[key]


class PageRenderer:
    """Renders pages of one PDF (pypdfium2), opened on first use."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._document: Any = None

    def render(self, index: int, dpi: int) -> np.ndarray:
        """Page `index` (0-based) as a grayscale uint8 image at `dpi`, or lower if it would exceed `MAX_PIXELS`."""
        import pypdfium2

        if self._document is None:
            self._document = pypdfium2.PdfDocument(self.data)
        page = self._document[index]
        try:
            width, height = page.get_size()
            scale = dpi / 72
            area = max(width * height, 1.0) * scale * scale
            if area > MAX_PIXELS:
                scale *= (MAX_PIXELS / area) ** 0.5
            bitmap = page.render(scale=scale, grayscale=True)
            image = np.array(bitmap.to_numpy(), copy=True)
        finally:
            page.close()
        return image[:, :, 0] if image.ndim == 3 else image

    def close(self) -> None:
        if self._document is not None:
            self._document.close()
            self._document = None
