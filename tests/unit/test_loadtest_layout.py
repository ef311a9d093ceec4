"""loadtest/DESIGN.md's import rules, read from the source: imports flow snapshots <- node <- api
<- loadtest; inside loadtest, harness/ and checker/ stand alone and bench/, locustfiles/ and
chaos/ do not import one another."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
OURS = ("snapshots", "node", "api", "loadtest")

# loadtest sub-package -> what of ours it may import (besides itself)
ALLOWED = {
    "harness": set(),
    "checker": set(),
    "bench": {"loadtest.harness", "api", "node"},
    "locustfiles": {"loadtest.harness"},
    "chaos": {"loadtest.harness", "loadtest.checker", "api"},
}


def imported(path: pathlib.Path) -> set[str]:
    """Every module of ours that the file imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] in OURS}


def test_nothing_below_loadtest_imports_it():
    for package in ("snapshots", "node", "api"):
        for path in (ROOT / package).rglob("*.py"):
            assert not {m for m in imported(path) if m.split(".")[0] == "loadtest"}, path


def test_loadtest_sub_packages_import_only_what_their_design_allows():
    assert {p.name for p in (ROOT / "loadtest").iterdir() if (p / "__init__.py").exists()} == set(ALLOWED)
    for sub, allowed in ALLOWED.items():
        for path in (ROOT / "loadtest" / sub).rglob("*.py"):
            for module in imported(path):
                ok = module.startswith(f"loadtest.{sub}") or any(
                    module == a or module.startswith(a + ".") for a in allowed)
                assert ok, f"{path.relative_to(ROOT)} imports {module}"
