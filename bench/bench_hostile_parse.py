"""Hostile-upload benchmark: seconds to parse and to chunk adversarial 100k-character lines, ours vs the old code.

Contract: run `python bench/bench_hostile_parse.py [--length N]`. For each adversarial line shape of
`tests/ingest/test_hostile_inputs.py` as Markdown, HTML and text it prints, in one run: the parse time (load + clean,
what the per-file budget covers), the chunk time with the MiniLM tokenizer, and the baselines: the old heading regex
on the same line cut to `--old-length` characters (it is cubic: the full line takes hours) and LangChain's
`RecursiveCharacterTextSplitter` with a tokenizer length function (the old chunker) on the full line.
Exit status 1 when a parse takes 1 s or more.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OLD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def main() -> int:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ingest.chunking import SEPARATORS, Chunker
    from ingest.loaders import LoaderOptions
    from ingest.parsing import parse_in_process
    from tests.fixtures.retrieval_env import shared_embedder
    from tests.ingest.test_hostile_inputs import ADVERSARIAL_LINES

    parser = argparse.ArgumentParser()
    parser.add_argument("--old-length", type=int, default=2000, help="Line length for the old heading regex.")
    parser.add_argument("--old-chunker", action="store_true", help="Also time LangChain's splitter (minutes).")
    args = parser.parse_args()
    embedder = shared_embedder()
    chunker = Chunker(embedder, 200, 30)
    old_splitter = RecursiveCharacterTextSplitter(
        chunk_size=200, chunk_overlap=30, length_function=embedder.count_tokens, separators=SEPARATORS,
        keep_separator="end", strip_whitespace=True,
    )  # fmt: skip
    print(f"{'shape':<24}{'ext':<7}{'chars':>8}{'parse s':>9}{'chunk s':>9}{'chunks':>8}{'old regex s':>13}"
          f"{'@chars':>8}{'old chunk s':>13}")  # fmt: skip
    worst = 0.0
    for shape, line in sorted(ADVERSARIAL_LINES.items()):
        started = time.perf_counter()
        OLD_HEADING.match(line[: args.old_length - 1] + line[-1])  # keep the shape: the last char breaks the match
        old_regex = time.perf_counter() - started
        for extension in (".md", ".html", ".txt"):
            html = f"<html><body><h1>{line}</h1><p>{line}</p></body></html>"
            data = (html if extension == ".html" else line).encode()
            started = time.perf_counter()
            clean, _ = parse_in_process(f"x{extension}", data, LoaderOptions())
            parse = time.perf_counter() - started
            started = time.perf_counter()
            chunks = chunker.chunk(clean)
            chunk = time.perf_counter() - started
            old_chunk = "-"
            if args.old_chunker and extension == ".txt":
                started = time.perf_counter()
                old_splitter.split_text(clean.text)
                old_chunk = f"{time.perf_counter() - started:.2f}"
            worst = max(worst, parse)
            print(f"{shape:<24}{extension:<7}{len(line):>8}{parse:>9.3f}{chunk:>9.3f}{len(chunks):>8}"
                  f"{old_regex:>13.3f}{min(args.old_length, len(line)):>8}{old_chunk:>13}")  # fmt: skip
    print(f"worst parse: {worst:.3f} s ({'ok' if worst < 1 else 'FAIL'}: must be under 1 s)")
    return 0 if worst < 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
