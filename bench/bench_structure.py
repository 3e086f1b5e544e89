"""Code-structure figures of issues 13 and 28: function length, wiring, method tables, circles, names, large classes.

Contract: run `python bench/bench_structure.py [--list] [--root DIR] [--before DIR]`. It reads the source (no
imports) of the packages assistant, ingest, training, serving and cli under `--root` (default: this checkout) and
prints
- the median, mean and p90 length in lines of every function and method (`ast`: `end_lineno - lineno + 1`),
- the wiring sites: functions outside the one wiring module (`assistant/parts.py`) that call a constructor or factory
  of the database -> embedder -> index -> keyword search -> retriever chain (`Database`, `make_embedder`,
  `open_index`, `make_keyword_search`, `Retriever`, `make_reranker`) or build an `IngestService`/`AdapterRegistry`
  from such parts (`IngestService(`, `IngestService.open`, `AdapterRegistry(`), counted as functions and as modules.
  The defining module of a constructor is not a site for its own name (a class building itself is not wiring).
- the places that build `Parts(...)` (issue 28: one per process), by module and by the kind of process the module
  runs in: `serving` = the server, `training` = a job worker, `cli` = a command, `assistant`/`ingest` = library code
  any of them calls,
- the method-name tables: modules that spell out three or more training method names as string literals (issue 28:
  one, `training/methods.py`),
- the import circles: strongly connected groups of modules importing each other at module level (a bottom-of-file
  import counts; imports inside functions and under `TYPE_CHECKING` do not),
- the modules with colliding names: file names (`__init__.py` aside) that more than one module of the five packages
  has (issue 28: none; three `documents.py` name three different things), with how many of them are not just a
  route module beside its service (`serving/routes/X.py` and `serving/services/X.py`), and
- the lines of the 10 largest classes (`end_lineno - lineno + 1` of a `class` statement, nested ones included).
`--list` prints every site, builder, table, circle, colliding name and large class. `--before DIR` scans DIR too and
prints its figures beside these (e.g. a `git worktree` of the commit before a redesign). Tests and benchmarks are
not scanned (benchmarks build throwaway parts on purpose).
"""

from __future__ import annotations

import argparse
import ast
import statistics
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("assistant", "ingest", "training", "serving", "cli")
WIRING_MODULE = "assistant/parts.py"
# constructor or factory name -> the module that defines it
CHAIN = {
    "Database": "assistant/storage/db.py",
    "make_embedder": "assistant/embedding.py",
    "open_index": "assistant/index/faiss_index.py",
    "make_keyword_search": "assistant/parts.py",
    "Retriever": "assistant/retrieval/retriever.py",
    "make_reranker": "assistant/retrieval/rerank.py",
    "IngestService": "ingest/ingest_service.py",
    "AdapterRegistry": "training/registry.py",
}


# the package a module is in -> the process kind it runs in (for the Parts builders)
PROCESS_KINDS = {"serving": "server", "training": "job", "cli": "cli", "assistant": "library", "ingest": "library"}
LARGEST_CLASSES = 10


def _modules(root: Path) -> list[Path]:
    return sorted(
        path for package in PACKAGES for path in (root / package).rglob("*.py") if "migrations" not in path.parts
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


def _colliding(rels: list[str]) -> dict[str, list[str]]:
    """File name -> its modules, for the names more than one module has (`__init__.py` aside)."""
    by_name: dict[str, list[str]] = {}
    for rel in rels:
        name = rel.rsplit("/", 1)[-1]
        if name != "__init__.py":
            by_name.setdefault(name, []).append(rel)
    return {name: found for name, found in sorted(by_name.items()) if len(found) > 1}


def _route_service_pair(modules: list[str]) -> bool:
    """`serving/routes/X.py` beside `serving/services/X.py` alone: the HTTP edge and the service of one concept."""
    return (
        sorted(m.split("/")[1] for m in modules if m.startswith("serving/")) == ["routes", "services"]
        and len(modules) == 2
    )


def _largest_classes(rel: str, tree: ast.AST) -> list[tuple[int, str]]:
    """(lines, 'module:Class') of every class in a module."""
    return [
        (node.end_lineno - node.lineno + 1, f"{rel}:{node.name}")
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None
    ]


@dataclass
class Figures:
    """What one tree measures (module contract); `lines` are the printed figures, `details` what `--list` adds."""

    lines: dict[str, str] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)


def measure(root: Path) -> Figures:
    lengths: list[int] = []
    sites: list[tuple[str, str, list[str]]] = []
    builders: dict[str, int] = {}
    tables: dict[str, int] = {}
    classes: list[tuple[int, str]] = []
    trees = {path.relative_to(root).as_posix(): ast.parse(path.read_text(encoding="utf-8")) for path in _modules(root)}
    known = {_module_name(rel) for rel in trees}
    graph: dict[str, set[str]] = {}
    for rel, tree in trees.items():
        lengths += [f.end_lineno - f.lineno + 1 for f in _functions(tree) if f.end_lineno is not None]
        sites += _sites(rel, tree)
        builders[rel] = _parts_builders(rel, tree)
        tables[rel] = _method_tables(tree)
        classes += _largest_classes(rel, tree)
        graph[_module_name(rel)] = _top_imports(tree, _module_name(rel), known)
    circles = _circles(graph)
    colliding = _colliding(list(trees))
    largest = sorted(classes, key=lambda item: (-item[0], item[1]))[:LARGEST_CLASSES]
    by_kind: dict[str, int] = {}
    for rel, n in builders.items():
        kind = PROCESS_KINDS[rel.split("/", 1)[0]]
        by_kind[kind] = by_kind.get(kind, 0) + n
    figures = Figures()
    figures.lines = {
        "modules scanned": str(len(trees)),
        "functions": str(len(lengths)),
        "function length median": f"{statistics.median(lengths):.1f} lines",
        "function length mean": f"{statistics.fmean(lengths):.1f} lines",
        "function length p90": f"{statistics.quantiles(lengths, n=10)[-1]:.1f} lines",
        "wiring sites (functions)": str(len(sites)),
        "wiring sites (modules)": str(len({module for module, _, _ in sites})),
        "Parts(...) builders": f"{sum(builders.values())} in {sum(1 for n in builders.values() if n)} modules",
        **{f"  in {kind} modules": str(by_kind.get(kind, 0)) for kind in ("server", "job", "cli", "library")},
        "method-name tables": f"{sum(tables.values())} modules",
        "import circles": f"{len(circles)} ({sum(len(c) for c in circles)} modules)",
        "colliding module names": f"{len(colliding)} ({sum(len(found) for found in colliding.values())} modules)",
        "  not a route/service pair": str(sum(1 for found in colliding.values() if not _route_service_pair(found))),
        f"lines in {LARGEST_CLASSES} largest classes": str(sum(n for n, _ in largest)),
    }
    figures.details = [f"  {module}:{function}  {', '.join(names)}" for module, function, names in sites]
    for kind, counts in (("Parts(...)", builders), ("method table", tables)):
        figures.details += [f"  {kind:12} {module}: {n}" for module, n in sorted(counts.items()) if n]
    figures.details += [f"  circle: {' -> '.join(circle)}" for circle in circles]
    figures.details += [f"  name {name}: {', '.join(found)}" for name, found in colliding.items()]
    figures.details += [f"  class {n:5d} lines  {where}" for n, where in largest]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="Print every site, builder, table, name and class.")
    parser.add_argument("--root", type=Path, default=ROOT, help="The checkout to measure (default: this one).")
    parser.add_argument("--before", type=Path, help="A checkout to print beside it (e.g. a worktree of the baseline).")
    args = parser.parse_args()
    now = measure(args.root.resolve())
    before = measure(args.before.resolve()) if args.before else None
    print(f"packages scanned             {', '.join(PACKAGES)}")
    if before is None:
        print(f"tree                         {args.root}")
        for label, value in now.lines.items():
            print(f"{label:28} {value}")
    else:
        print(f"{'':28} {'before':>22}   {'now':>22}")
        print(f"{'tree':28} {str(args.before)[-22:]:>22}   {str(args.root)[-22:]:>22}")
        for label, value in now.lines.items():
            print(f"{label:28} {before.lines.get(label, '-'):>22}   {value:>22}")
    if args.list:
        if before is not None:
            print(f"before ({args.before}):")
            print("\n".join(before.details))
            print(f"now ({args.root}):")
        print("\n".join(now.details))


if __name__ == "__main__":
    main()
