"""The package's layers (DESIGN.md, "Layout"): no import cycle anywhere, and the import-linter
contract of pyproject.toml holds (CI also runs ``lint-imports``)."""

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def strongly_connected(graph) -> list[set]:
    """The import cycles of ``graph``: its strongly connected components with more than one
    module (Tarjan's algorithm, iterative so deep chains cannot overflow the stack)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = grimp.ImportGraph()
    for module in ("pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    assert strongly_connected(graph) == []
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert strongly_connected(graph) == [{"pkg.a", "pkg.b", "pkg.c"}]


def test_no_import_cycles():
    graph = grimp.build_graph("fastgcn_denoise")
    assert len(graph.modules) > 50
    assert strongly_connected(graph) == []


@pytest.mark.skipif(
    not (ROOT / "pyproject.toml").is_file(), reason="no pyproject.toml beside tests/"
)
def test_layers_contract_holds():
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 kept, 0 broken" in run.stdout
