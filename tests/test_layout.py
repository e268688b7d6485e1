"""The package layout is the architecture: which parts of pdprune may import which.

Read from the source with `ast` (nothing is imported), so a forbidden import fails here even in
code no other test reaches. Units are pdprune's first-level subpackages and modules (pruning,
measure, run, cli, ...). Imports under `if TYPE_CHECKING:` are annotations only and do not count;
imports inside functions do (they run).
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator
from pathlib import Path

import pytest

import pdprune

PACKAGE = Path(pdprune.__file__).resolve().parent
ROOT = PACKAGE.parent
# the packages whose imports must form a DAG; the top-level modules (run, cli) sit above them
LAYERED = ("pruning", "export", "measure", "train", "data", "models")
FORBIDDEN = {"measure": {"pruning", "export"}}  # measuring only counts and times models
ERRORS_MODULE = PACKAGE / "errors.py"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def absolute(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of `from <level dots><module> import ...` written in `importer`: one
    dot is the importer's own package (itself for an __init__.py), each further dot one up."""
    if level == 0:
        return module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    if level - 1 >= len(package):
        raise ValueError("relative import beyond the top-level package")
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
            or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """All nodes below `node`, less the bodies of `if TYPE_CHECKING:` (their else runs)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _runtime_nodes(other)
            continue
        yield child
        yield from _runtime_nodes(child)


def imported_modules(source: str, importer: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """(absolute module name, line) of every import that runs. `from pkg import name` yields
    pkg.name too: the name may be a submodule (`from .. import export`)."""
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            try:
                base = absolute(importer, is_package, node.level, node.module)
            except ValueError as exc:  # Python would refuse to import it
                raise ValueError(f"{importer}, line {node.lineno}: {exc}") from None
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def unit(module: str) -> str | None:
    """pdprune.pruning.pruner -> pruning; None outside pdprune or for pdprune itself."""
    parts = module.split(".")
    return parts[1] if parts[0] == "pdprune" and len(parts) > 1 else None


def sources() -> Iterator[tuple[Path, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, path.read_text(encoding="utf-8")


def is_unit(name: str) -> bool:
    return (PACKAGE / name / "__init__.py").is_file() or (PACKAGE / f"{name}.py").is_file()


def import_graph() -> dict[str, dict[str, list[str]]]:
    """{unit: {imported unit: ["file:line", ...]}} between pdprune's first-level units."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path, text in sources():
        importer = module_name(path)
        source = unit(importer)
        if source is None:  # pdprune/__init__.py
            continue
        edges = graph.setdefault(source, {})
        for module, line in imported_modules(text, importer, path.name == "__init__.py"):
            target = unit(module)
            if target is None or target == source or not is_unit(target):
                continue  # not pdprune, itself, or a name (`from .. import __version__`)
            where = f"{path.relative_to(ROOT)}:{line}"
            if where not in edges.setdefault(target, []):
                edges[target].append(where)
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]], nodes: tuple[str, ...]) -> list[str] | None:
    """A cycle [a, b, ..., a] among `nodes` (edges leaving `nodes` ignored), or None."""
    state: dict[str, str] = {}  # "open" while on the DFS stack, then "done"
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if nxt not in nodes:
                continue
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in nodes:
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def describe(graph: dict[str, dict[str, list[str]]], cycle: list[str]) -> str:
    steps = zip(cycle, cycle[1:], strict=False)
    return "\n".join(f"  {a} -> {b}: {', '.join(graph[a][b])}" for a, b in steps)


# --- the checks of the checker: a resolver or cycle finder that is wrong passes anything ---

def test_relative_imports_resolve_like_python():
    assert absolute("pdprune.pruning.pruner", False, 1, "budgets") == "pdprune.pruning.budgets"
    assert absolute("pdprune.pruning.pruner", False, 2, "measure.results") \
        == "pdprune.measure.results"
    assert absolute("pdprune.pruning", True, 1, "pruner") == "pdprune.pruning.pruner"
    assert absolute("pdprune.pruning", True, 2, None) == "pdprune"
    assert absolute("pdprune.run", False, 1, "export.exporter") == "pdprune.export.exporter"
    with pytest.raises(ValueError):
        absolute("pdprune.run", False, 3, "x")


def test_type_checking_imports_do_not_count():
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from ..pruning import Pruner\n"
              "else:\n    from ..models import build\n"
              "def f():\n    from .. import export\n")
    found = {unit(m) for m, _ in imported_modules(source, "pdprune.measure.summary", False)}
    assert found == {None, "models", "export"}


def test_find_cycle_reports_the_cycle():
    graph = {"a": {"b": ["x:1"]}, "b": {"c": ["y:2"]}, "c": {"a": ["z:3"], "d": ["w:4"]}}
    assert find_cycle(graph, ("a", "b", "c")) == ["a", "b", "c", "a"]
    assert find_cycle(graph, ("a", "b")) is None  # c is outside: no cycle among a, b


# --- the layout ---

def test_layered_packages_exist():
    """A renamed package would make the checks below vacuous."""
    assert [p for p in LAYERED if not (PACKAGE / p / "__init__.py").is_file()] == []


def test_no_cycle_between_packages():
    graph = import_graph()
    cycle = find_cycle(graph, LAYERED)
    assert cycle is None, "import cycle " + " -> ".join(cycle) + ":\n" + describe(graph, cycle)


def test_forbidden_imports():
    graph = import_graph()
    found = [f"{source} imports {target}: {', '.join(graph[source][target])}"
             for source, targets in FORBIDDEN.items()
             for target in sorted(targets) if target in graph.get(source, {})]
    assert found == [], "\n".join(found)


def exception_classes() -> list[tuple[Path, int, str]]:
    """Classes deriving (transitively, by name) from a built-in exception or from a class
    whose name ends in Error or Exception (e.g. a library's)."""
    classes = [(path, node) for path, text in sources() for node in ast.walk(ast.parse(text))
               if isinstance(node, ast.ClassDef)]
    known = {n for n, v in vars(builtins).items()
             if isinstance(v, type) and issubclass(v, BaseException)}

    def base_names(node: ast.ClassDef) -> set[str]:
        return {b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                if isinstance(b, ast.Name | ast.Attribute)}

    found: dict[int, tuple[Path, int, str]] = {}
    grew = True
    while grew:  # to a fixed point: a subclass of a subclass of PdpruneError
        grew = False
        for path, node in classes:
            bases = base_names(node)
            if id(node) not in found and (bases & known or any(
                    b.endswith(("Error", "Exception")) for b in bases)):
                found[id(node)] = (path, node.lineno, node.name)
                known.add(node.name)
                grew = True
    return sorted(found.values())


def test_exceptions_live_in_errors_module():
    found = exception_classes()
    assert any(path == ERRORS_MODULE for path, _, _ in found)  # the finder finds them at all
    elsewhere = [f"{path.relative_to(ROOT)}:{line}: {name}" for path, line, name in found
                 if path != ERRORS_MODULE]
    assert elsewhere == [], "exception classes outside pdprune/errors.py:\n" + "\n".join(elsewhere)


def test_no_references_to_methods_md():
    mentions = [f"{path.relative_to(ROOT)}:{number}"
                for folder in ("pdprune", "scripts")
                for path in sorted((ROOT / folder).rglob("*")) if path.is_file()
                and path.suffix in (".py", ".yaml", ".yml", ".md", ".sh", ".txt", ".toml")
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if "METHODS.md" in line]
    assert mentions == [], "METHODS.md is gone (docs/methods.md):\n" + "\n".join(mentions)
