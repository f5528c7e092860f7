"""The layout rules of CONTRIBUTING.md, checked on the source: no import cycle, no private name
used across modules, small modules, and thin notebooks with one widget convention."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lowrank_es"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_LINES = 500


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The package module a dotted name refers to (longest known prefix)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every ``import`` / ``from ... import`` of lowrank_es, at any depth."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lowrank_es"):
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("lowrank_es")]
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, names in _imports(path):
            deps = {_resolve(f"{target}.{n}") or _resolve(target) for n in names} if names else {_resolve(target)}
            graph[mod] |= {d for d in deps if d and d != mod}
    return graph


def test_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for mod, path in MODULES.items():
        for target, names in _imports(path):
            offenders += [f"{mod}: from {target} import {n}" for n in names if n.startswith("_") and n != "__version__"]
    for p in [*sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]:
        for target, names in _imports(p):
            offenders += [f"{p.name}: from {target} import {n}" for n in names if n.startswith("_") and n != "__version__"]
    assert not offenders, "private names used outside their module:\n" + "\n".join(offenders)


def test_modules_are_small():
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by concept): {big}"


def _code_cells(nb_path: Path) -> list[str]:
    nb = json.loads(nb_path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_use_one_widget_convention(nb_path):
    src = "\n".join(_code_cells(nb_path))
    for banned in ("interact_manual", "interactive(", "widgets.interact(", "sys.path"):
        assert banned not in src, f"{nb_path.name} uses {banned!r}; use lowrank_es.notebook.controls"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_functions_are_widget_callbacks(nb_path):
    """A function defined in a notebook is there to be driven by a widget panel; any other
    logic belongs to the package, where it is tested."""
    cells = _code_cells(nb_path)
    defined, controlled = set(), set()
    for src in cells:
        tree = ast.parse("\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!"))))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                defined.add(node.name)
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "controls":
                if node.args and isinstance(node.args[0], ast.Name):
                    controlled.add(node.args[0].id)
    assert defined <= controlled, f"{nb_path.name} defines {sorted(defined - controlled)} outside widget callbacks"
