"""The shape of ``src/prefuse``: its longest functions, its widest signatures, and its imports
against the layers they may run along.

    python tools/codeshape.py            # the figures, and what breaks the limits
    python tools/codeshape.py --check    # the same, exiting 1 when a limit is broken

Limits: no function over ``MAX_LINES`` lines (the argparse option table aside), none with
more than ``MAX_PARAMS`` parameters; no import cycle between modules; no import that runs
up the layers of ``LAYERS``. Imports inside ``if TYPE_CHECKING:`` are left out (they never
run), imports inside functions are counted (they run when the function does).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "prefuse"
MAX_LINES = 60
MAX_PARAMS = 10
# Functions allowed past MAX_LINES: tables of declarations, not logic.
EXEMPT = {"prefuse.cli.build_parser"}
# Lowest first; a module may import from its own layer and those below it.
LAYERS = [
    ("errors", "registry", "config", "fileio", "metrics", "tasks", "rundir", "locks", "redact",
     "secrets", "replacing", "__init__"),
    ("data",),
    ("models",),
    ("engine",),
    ("methods",),
    ("recipe",),
    ("runs", "inference"),
    ("tuning",),
    ("analysis",),
    ("cli", "options", "__main__"),
]


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_only(tree: ast.Module) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith(PACKAGE):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                out.add(sub if sub in known else source)
    return {m for m in out if m in known and m != name}


def layer(name: str) -> int:
    top = name.split(".")[1] if "." in name else "__init__"
    for index, members in enumerate(LAYERS):
        if top in members:
            return index
    raise SystemExit(f"{name}: not in any layer of tools/codeshape.py's LAYERS")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
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

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def functions(name: str, path: Path) -> list[tuple[str, int, int]]:
    """``(qualified name, lines, parameters)`` of every function in the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = child.args
                params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
                params += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
                params = [p for p in params if p not in ("self", "cls")]
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                out.append((f"{prefix}.{child.name}", child.end_lineno - start + 1,
                            len(params)))
                walk(child, f"{prefix}.{child.name}")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}.{child.name}")

    walk(tree, name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a limit is broken")
    parser.add_argument("--top", type=int, default=5, help="how many of each to list")
    args = parser.parse_args(argv)
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    funcs = [f for name, path in known.items() for f in functions(name, path)]
    broken = []
    print(f"{len(known)} modules, {len(funcs)} functions, "
          f"{sum(len(p.read_text().splitlines()) for p in known.values())} lines")
    print("longest functions:")
    for qual, lines, _ in sorted(funcs, key=lambda f: -f[1])[: args.top]:
        print(f"  {lines:4d} lines  {qual}")
    print("widest signatures:")
    for qual, _, params in sorted(funcs, key=lambda f: -f[2])[: args.top]:
        print(f"  {params:4d} params {qual}")
    broken += [f"{q}: {n} lines (limit {MAX_LINES})" for q, n, _ in funcs
               if n > MAX_LINES and q not in EXEMPT]
    broken += [f"{q}: {p} parameters (limit {MAX_PARAMS})" for q, _, p in funcs
               if p > MAX_PARAMS]
    found = cycles(graph)
    print(f"import cycles: {len(found)}")
    broken += ["import cycle: " + " -> ".join(group) for group in found]
    upward = [(a, b) for a, targets in graph.items() for b in targets if layer(b) > layer(a)]
    print(f"upward imports: {len(upward)}")
    broken += [f"upward import: {a} -> {b}" for a, b in sorted(upward)]
    for line in broken:
        print(f"  {line}")
    return 1 if broken and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
