"""Dependency rules of the code base, checked by walking every module's AST.

Dependencies point one way: registry <- controller <- shelf; migrations sits above registry
and controller. The registry must stay usable (and shippable) on its own, the controller
builds on the registry only, and ``shelf`` is the composition root that wires them together.
Import cycles between modules are forbidden everywhere, since they make import order fragile.
``benchmarks/``, ``examples/`` and ``tests/`` are outside these rules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("registry", "controller", "migrations", "shelf")


@dataclass(frozen=True)
class Edge:
    """One import statement: ``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Graph:
    modules: dict[str, Path]  # module name -> file
    edges: tuple[Edge, ...]  # every import, including those leaving the tree (e.g. fastapi)

    def internal(self) -> dict[str, set[str]]:
        """Adjacency restricted to modules of the tree."""
        adjacency: dict[str, set[str]] = {name: set() for name in self.modules}
        for edge in self.edges:
            if edge.target in self.modules:
                adjacency[edge.source].add(edge.target)
        return adjacency


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(
    node: ast.AST, name: str, is_package: bool, modules: dict[str, Path]
) -> list[str]:
    """What an import statement depends on. ``import a.b.c`` counts as depending on ``a.b.c``
    only, not on ``a`` or ``a.b`` (whose ``__init__`` Python also runs): kept simple on purpose."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: start from the containing package, go up level - 1 times
        package = name if is_package else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = ".".join(filter(None, (package, base)))
    # `from X import Y`: Y may be a submodule of X; otherwise the dependency is X (its __init__).
    submodules = (".".join(filter(None, (base, alias.name))) for alias in node.names)
    return [sub if sub in modules else base for sub in submodules]


@cache
def build_graph() -> Graph:
    files = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))
    modules = {module_name(path): path for path in files}
    edges: list[Edge] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):  # every statement: in functions, in `if TYPE_CHECKING:` too
            for target in imported_modules(node, name, is_package, modules):
                edges.append(Edge(name, target, path, getattr(node, "lineno", 0)))
    return Graph(modules, tuple(edges))


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def forbidden_imports(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    offenders = (
        f"{edge.where}: {edge.source} imports {edge.target}"
        for edge in build_graph().edges
        if in_package(edge.source, layer) and any(in_package(edge.target, f) for f in forbidden)
    )
    return list(dict.fromkeys(offenders))  # `from x import a, b` is one line, reported once


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit to hit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> Iterator[str]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return iter(sorted(graph[node]))

    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, visit(root))]
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    work.append((successor, visit(successor)))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:  # all successors done: close the node
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while not component or component[-1] != node:
                        component.append(stack.pop())
                        on_stack.discard(component[-1])
                    components.append(sorted(component))
    return components


def test_registry_imports_nothing_above_it() -> None:
    offenders = forbidden_imports("registry", ("controller", "shelf", "migrations"))
    assert not offenders, "registry must not depend on upper layers:\n" + "\n".join(offenders)


def test_controller_imports_neither_shelf_nor_migrations() -> None:
    offenders = forbidden_imports("controller", ("shelf", "migrations"))
    assert not offenders, "controller must not depend on shelf/migrations:\n" + "\n".join(offenders)


def test_no_import_cycles() -> None:
    graph = build_graph()
    adjacency = graph.internal()
    report: list[str] = []
    for scc in strongly_connected_components(adjacency):
        if len(scc) > 1 or scc[0] in adjacency[scc[0]]:  # a self-import is a cycle too
            edges = [e for e in graph.edges if e.source in scc and e.target in scc]
            inside = [f"    {e.where}: {e.source} -> {e.target}" for e in edges]
            report.append("cycle: " + ", ".join(scc) + "\n" + "\n".join(dict.fromkeys(inside)))
    message = "\n".join(report)
    assert not report, f"import cycles (submodules must import siblings directly):\n{message}"


def test_registry_works_without_controller_and_shelf(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from importlib.abc import MetaPathFinder

        class Forbid(MetaPathFinder):
            def find_spec(self, fullname, path=None, target=None):
                if fullname.partition(".")[0] in {"controller", "shelf"}:
                    raise ImportError(f"{fullname} is unimportable in this test")
                return None

        sys.meta_path.insert(0, Forbid())
        sys.path.insert(0, sys.argv[2])

        from registry.config import Settings
        from registry.api.app import create_registry_app
        from registry.cli import commands  # the registry's CLI command group

        app = create_registry_app(Settings(home=sys.argv[1]))
        paths = app.openapi()["paths"]
        assert "/v1/models" in paths and "/v1/models/{name}/versions" in paths, sorted(paths)
        assert not any("rollout" in path for path in paths), sorted(paths)
        assert "register" in commands.registry.commands
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"registry alone failed:\n{result.stderr}"


def test_graph_builder_sees_the_code_base() -> None:
    graph = build_graph()
    assert len(graph.modules) > 50
    assert {"registry", "controller.stats.evidence", "migrations.env"} <= graph.modules.keys()
    assert any(
        in_package(e.source, "controller") and in_package(e.target, "registry")
        for e in graph.edges
        if e.target in graph.modules
    ), "expected some controller module to import some registry module"
