"""Code-structure figures of issue 13: function length and the places that wire the parts by hand.

Contract: run `python bench/bench_structure.py [--list]`. It reads the source (no imports) of the packages
assistant, ingest, training, serving and cli and prints
- the median and mean length in lines of every function and method (`ast`: `end_lineno - lineno + 1`), and
- the wiring sites: functions outside the one wiring module (`assistant/parts.py`) that call a constructor or factory
  of the database -> embedder -> index -> keyword search -> retriever chain (`Database`, `make_embedder`,
  `open_index`, `make_keyword_search`, `Retriever`, `make_reranker`) or build an `IngestService`/`AdapterRegistry`
  from such parts (`IngestService(`, `IngestService.open`, `AdapterRegistry(`), counted as functions and as modules.
  The defining module of a constructor is not a site for its own name (a class building itself is not wiring).
`--list` prints every site. Tests and benchmarks are not scanned (benchmarks build throwaway parts on purpose).
"""

from __future__ import annotations

import argparse
import ast
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("assistant", "ingest", "training", "serving", "cli")
WIRING_MODULE = "assistant/parts.py"
# constructor or factory name -> the module that defines it
CHAIN = {
    "Database": "assistant/storage/db.py",
    "make_embedder": "assistant/embedding.py",
    "open_index": "assistant/index/faiss_index.py",
    "make_keyword_search": "assistant/retrieval/keyword.py",
    "Retriever": "assistant/retrieval/retriever.py",
    "make_reranker": "assistant/retrieval/rerank.py",
    "IngestService": "ingest/service.py",
    "AdapterRegistry": "training/registry.py",
}


def _modules() -> list[Path]:
    return sorted(
        path for package in PACKAGES for path in (ROOT / package).rglob("*.py") if "migrations" not in path.parts
    )


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def _called_name(call: ast.Call) -> str | None:
    """`Name(...)` -> Name; `Cls.open(...)` -> Cls (the factory classmethod); else None."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and func.attr == "open" and isinstance(func.value, ast.Name):
        return func.value.id
    return None


def _sites(rel: str, tree: ast.AST) -> list[tuple[str, str, list[str]]]:
    """(module, function, names called) for every outermost function calling a chain constructor."""
    if rel == WIRING_MODULE:
        return []
    sites = []
    outer = [n for n in ast.iter_child_nodes(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for cls in (n for n in ast.iter_child_nodes(tree) if isinstance(n, ast.ClassDef)):
        outer += [n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for function in outer:
        names = sorted(
            {
                name
                for call in ast.walk(function)
                if isinstance(call, ast.Call) and (name := _called_name(call)) in CHAIN and CHAIN[name] != rel
            }
        )
        if names:
            sites.append((rel, function.name, names))
    return sites


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="Print every wiring site.")
    args = parser.parse_args()
    lengths: list[int] = []
    sites: list[tuple[str, str, list[str]]] = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lengths += [f.end_lineno - f.lineno + 1 for f in _functions(tree) if f.end_lineno is not None]
        sites += _sites(rel, tree)
    print(f"packages scanned           {', '.join(PACKAGES)}")
    print(f"functions                  {len(lengths)}")
    print(f"function length median    {statistics.median(lengths):.1f} lines")
    print(f"function length mean      {statistics.fmean(lengths):.1f} lines")
    print(f"function length p90       {statistics.quantiles(lengths, n=10)[-1]:.1f} lines")
    print(f"wiring sites (functions)   {len(sites)}")
    print(f"wiring sites (modules)     {len({module for module, _, _ in sites})}")
    if args.list:
        for module, function, names in sites:
            print(f"  {module}:{function}  {', '.join(names)}")


if __name__ == "__main__":
    main()
