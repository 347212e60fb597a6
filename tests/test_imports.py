"""The package's import graph: no cycles, and the pure modules import without TensorFlow.

Pure tests over ``ast``: every module under ``kerastune_kit/`` (subpackages included) is parsed,
and every ``import`` of a package module, at module level or inside a function, is an edge. A
cycle is a strongly connected component of more than one module (or a module importing itself).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = "kerastune_kit"
ROOT = REPO / PACKAGE

#: Modules that import without TensorFlow, Keras or KerasTuner (each in a fresh interpreter).
PURE_MODULES = ("errors", "rundir", "trial_status", "config", "results", "report", "runs",
                "inspection", "importance", "space", "cli", "data", "progress", "inspect_view")
HEAVY = ("tensorflow", "keras", "keras_tuner")


# ---------------------------------------------------------------------- the graph
def module_names() -> dict[str, Path]:
    """Every module of the package: dotted name (without ``kerastune_kit.``) -> file."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([PACKAGE, *parts])] = path
    return modules


def _resolve(name: str, modules: Iterable[str]) -> str | None:
    """The package module ``name`` is, or the one it is an attribute of (``a.b.func`` ->
    ``a.b``); None outside the package."""
    known = set(modules)
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: Iterable[str]) -> set[str]:
    """The package modules ``module`` imports, anywhere in its file."""
    modules = list(modules)
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name`: name is a submodule or an attribute of pkg
            targets = [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
            targets.append(base)
        else:
            continue
        for target in targets:
            if not target.startswith(PACKAGE):
                continue
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != module:
                found.add(resolved)
            elif resolved == module and isinstance(node, ast.Import):
                found.add(module)  # `import itself`: a cycle of one
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports. ``from kerastune_kit import __version__`` is an
    edge to the package's ``__init__``; the implicit import of a module's own package is not
    (it makes a cycle only when ``__init__`` imports the module back, which is an edge)."""
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one node (or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def describe(component: list[str], graph: dict[str, set[str]]) -> str:
    """``a -> b -> c -> a`` (a shortest loop through the component's first module), then every
    edge inside the component."""
    short = {name: name.removeprefix(f"{PACKAGE}.") for name in component}
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    queue, loop = [start], [start]
    while queue:  # breadth first from start, inside the component, until an edge returns
        node = queue.pop(0)
        if start in graph[node]:
            loop = [node]
            while loop[-1] != start:
                loop.append(parents[loop[-1]])
            loop = [start, *reversed(loop[:-1]), start] if node != start else [start, start]
            break
        for succ in sorted(graph[node] & members):
            if succ not in parents and succ != start:
                parents[succ] = node
                queue.append(succ)
    edges = sorted(f"{short[a]} -> {short[b]}" for a in component for b in graph[a] & members)
    return f"{' -> '.join(short[m] for m in loop)} (edges: {', '.join(edges)})"


# ---------------------------------------------------------------------- tests
def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from kerastune_kit.b import g\n")
    (package / "b.py").write_text("from .sub import c\n")
    (package / "sub" / "c.py").write_text("from .. import a\nimport numpy\n")
    modules = {f"{PACKAGE}.{name}": package / f"{name.replace('.', '/')}.py"
               for name in ("a", "b", "sub.c")}
    modules[f"{PACKAGE}.sub"] = package / "sub" / "__init__.py"
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph[f"{PACKAGE}.a"] == {f"{PACKAGE}.b"}
    assert graph[f"{PACKAGE}.b"] == {f"{PACKAGE}.sub", f"{PACKAGE}.sub.c"}
    assert graph[f"{PACKAGE}.sub.c"] == {f"{PACKAGE}.a"}
    cycles = strongly_connected(graph)
    assert cycles == [[f"{PACKAGE}.a", f"{PACKAGE}.b", f"{PACKAGE}.sub.c"]]
    assert describe(cycles[0], graph).startswith("a -> b -> sub.c -> a")


def test_no_import_cycles() -> None:
    """Imports run one way. A failure names each cycle as a loop and lists its edges, e.g.
    ``inspection -> runs -> inspection (edges: inspection -> runs, runs -> inspection)``."""
    graph = import_graph()
    cycles = [describe(component, graph) for component in strongly_connected(graph)]
    assert not cycles, "import cycles in kerastune_kit:\n  " + "\n  ".join(cycles)


def test_inspection_and_runs_import_one_way() -> None:
    graph = import_graph()
    assert f"{PACKAGE}.inspection" in graph[f"{PACKAGE}.runs"]
    assert f"{PACKAGE}.runs" not in graph[f"{PACKAGE}.inspection"]


def test_rundir_is_the_bottom_layer() -> None:
    """``rundir`` (paths, atomic writes, the lock) and ``trial_status`` import nothing of the
    package above ``errors``, so every other module may use them."""
    graph = import_graph()
    assert graph[f"{PACKAGE}.rundir"] <= {f"{PACKAGE}.errors"}
    assert graph[f"{PACKAGE}.trial_status"] == set()
    assert graph[f"{PACKAGE}.errors"] == set()


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_import_without_tensorflow(module: str) -> None:
    """Each pure module, alone in a fresh interpreter, loads none of TensorFlow, Keras or
    KerasTuner (nor does anything it imports)."""
    code = (f"import sys, {PACKAGE}.{module}; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"{module} loads {proc.stdout.strip()}"
