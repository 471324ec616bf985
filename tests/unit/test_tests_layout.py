"""The test tree's own rules (docs/layout.md): test files live in tests/unit (fast, mirroring the
package) or tests/integration (real-model runs), and no test module imports another, at the top or
inside a function (what tests share is in tests/helpers), so each file can move or run alone."""
from __future__ import annotations

import ast

from tests.helpers import ROOT

TESTS = ROOT / "tests"


def _imported_modules(path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_no_test_module_imports_another():
    bad = [f"{path.relative_to(ROOT)}:{line}: imports {module}"
           for path in sorted(TESTS.rglob("*.py")) for line, module in _imported_modules(path)
           if module.rsplit(".", 1)[-1].startswith("test_")]
    assert not bad, "\n".join(bad)


def test_test_files_live_in_the_unit_or_the_integration_tree():
    stray = [str(p.relative_to(ROOT)) for p in TESTS.rglob("test_*.py") if p.relative_to(TESTS).parts[0]
             not in ("unit", "integration")]
    assert not stray, stray
