"""Code-structure figures of issue 13: function length and the places that wire the parts by hand.

Contract: run `python bench/bench_structure.py [--list]`. It reads the source (no imports) of the packages
assistant, ingest, training, serving and cli and prints
- the median and mean length in lines of every function and method (`ast`: `end_lineno - lineno + 1`), and
- the wiring sites: functions outside the one wiring module (`assistant/parts.py`) that call a constructor or factory
  of the database -> embedder -> index -> keyword search -> retriever chain (`Database`, `make_embedder`,
  `open_index`, `make_keyword_search`, `Retriever`, `make_reranker`) or build an `IngestService`/`AdapterRegistry`
  from such parts (`IngestService(`, `IngestService.open`, `AdapterRegistry(`), counted as functions and as modules.
  The defining module of a constructor is not a site for its own name (a class building itself is not wiring).
- the places that build `Parts(...)` (issue 28: one per process), by module,
- the method-name tables: modules that spell out three or more training method names as string literals (issue 28:
  one, `training/methods.py`), and
- the import circles: strongly connected groups of modules importing each other at module level (a bottom-of-file
  import counts; imports inside functions and under `TYPE_CHECKING` do not).
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


METHOD_NAMES = {"sft", "dpo", "psft", "kto", "reward", "grpo", "classify", "sweep", "pt"}


def _parts_builders(rel: str, tree: ast.AST) -> int:
    """Calls of `Parts(...)` in a module (the wiring module's own class excluded)."""
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _called_name(n) == "Parts"]
    return 0 if rel == WIRING_MODULE else len(calls)


def _method_tables(tree: ast.AST) -> int:
    """1 when the module spells out three or more method names as string literals (a list, a dict, a `Literal`,
    rows of calls: any table of methods), else 0."""
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in METHOD_NAMES}
    return int(len(names) >= 3)


def _module_name(rel: str) -> str:
    return rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _top_imports(tree: ast.Module, module: str, known: set[str]) -> set[str]:
    """Modules of this tree imported at module level (not in functions, not under `if TYPE_CHECKING`)."""
    out: set[str] = set()
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        out |= {n for n in names if n in known and n != module}
    return out


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="Print every wiring site.")
    args = parser.parse_args()
    lengths: list[int] = []
    sites: list[tuple[str, str, list[str]]] = []
    builders: dict[str, int] = {}
    tables: dict[str, int] = {}
    trees = {path.relative_to(ROOT).as_posix(): ast.parse(path.read_text(encoding="utf-8")) for path in _modules()}
    known = {_module_name(rel) for rel in trees}
    graph: dict[str, set[str]] = {}
    for rel, tree in trees.items():
        lengths += [f.end_lineno - f.lineno + 1 for f in _functions(tree) if f.end_lineno is not None]
        sites += _sites(rel, tree)
        builders[rel] = _parts_builders(rel, tree)
        tables[rel] = _method_tables(tree)
        graph[_module_name(rel)] = _top_imports(tree, _module_name(rel), known)
    circles = _circles(graph)
    print(f"packages scanned           {', '.join(PACKAGES)}")
    print(f"functions                  {len(lengths)}")
    print(f"function length median    {statistics.median(lengths):.1f} lines")
    print(f"function length mean      {statistics.fmean(lengths):.1f} lines")
    print(f"function length p90       {statistics.quantiles(lengths, n=10)[-1]:.1f} lines")
    print(f"wiring sites (functions)   {len(sites)}")
    print(f"wiring sites (modules)     {len({module for module, _, _ in sites})}")
    print(f"Parts(...) builders        {sum(builders.values())} in {sum(1 for n in builders.values() if n)} modules")
    print(f"method-name tables         {sum(tables.values())} modules")
    print(f"import circles             {len(circles)} ({sum(len(c) for c in circles)} modules)")
    if args.list:
        for module, function, names in sites:
            print(f"  {module}:{function}  {', '.join(names)}")
        for kind, counts in (("Parts(...)", builders), ("method table", tables)):
            for module, n in sorted(counts.items()):
                if n:
                    print(f"  {kind:12} {module}: {n}")
        for circle in circles:
            print(f"  circle: {' -> '.join(circle)}")


if __name__ == "__main__":
    main()
