"""The package's import graph: no cycles, and evaluation never reaches the trainer.

Every ``import`` / ``from ... import`` of a kdbench module is an edge, also those inside functions
(a lazy import is still a dependency); only ``if TYPE_CHECKING:`` blocks are left out."""
import ast
import subprocess
import sys
from pathlib import Path

import kdbench

PACKAGE = Path(kdbench.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            yield from (n for branch in node.orelse for n in _imports(ast.Module([branch], [])))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _targets(node) -> set[str]:
    """The kdbench modules an import statement loads (``from pkg import name``: the submodule
    ``pkg.name`` when there is one, else ``pkg`` itself)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in MODULES}
    if node.level or not node.module or node.module not in MODULES:
        return set()
    subs = {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
    return subs | ({node.module} if len(subs) < len(node.names) else set())


def graph() -> dict[str, set[str]]:
    return {name: {t for node in _imports(ast.parse(path.read_text())) for t in _targets(node)} - {name}
            for name, path in MODULES.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo.extend(edges.get(v, ()))
    return seen


def test_the_walker_sees_lazy_imports_and_finds_a_cycle():
    edges = graph()
    assert "kdbench.distill.run" in edges["kdbench.cli"]  # imported inside the train-and-eval command
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_package_has_no_import_cycle():
    assert cycles(graph()) == []


def test_evaluation_imports_nothing_of_the_trainer():
    """What `kdbench eval` runs (the pipeline, and the suite's validation) reaches no kdbench.distill module."""
    edges = graph()
    for start in ("kdbench.pipeline", "kdbench.config", "kdbench.report.table"):
        assert not {m for m in reachable(edges, start) if m.startswith("kdbench.distill")}, start


def test_loading_and_validating_every_suite_imports_nothing_of_the_trainer_nor_torch():
    code = ("import sys\nimport kdbench.cli\nfrom kdbench.config import load_suite, suite_files\n"
            "for p in suite_files(): load_suite(str(p))\n"
            "print(sorted({m for m in sys.modules if m.startswith('kdbench.distill') or m == 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
