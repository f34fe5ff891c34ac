"""Every public function and method of the core and the targets has type hints and a docstring (the
project's style: a reader learns what a function is for without reading its body)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [ROOT / "mxinfra", *sorted((ROOT / "targets").glob("*/mxinfra_*"))]


def undocumented(source: str, where: str) -> list[str]:
    """`where:line name` of each public function or method of public classes without a docstring or with
    a parameter or return left unannotated (self and cls aside)."""
    found: list[str] = []

    def visit(body: list[ast.stmt], owner: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{owner}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                a = node.args
                params = [p for p in (*a.posonlyargs, *a.args, *a.kwonlyargs) if p.arg not in ("self", "cls")]
                params += [p for p in (a.vararg, a.kwarg) if p is not None]
                problems = ["no docstring"] if ast.get_docstring(node) is None else []
                if node.returns is None or any(p.annotation is None for p in params):
                    problems.append("a parameter or the return without a type hint")
                if problems:
                    found.append(f"{where}:{node.lineno} {owner}{node.name}: {', '.join(problems)}")

    visit(ast.parse(source).body, "")
    return found


def test_every_public_function_has_hints_and_a_docstring() -> None:
    assert len(PACKAGES) == 5  # the core and the four targets
    found = [p for pkg in PACKAGES for f in sorted(pkg.rglob("*.py")) for p in undocumented(f.read_text(), str(f.relative_to(ROOT)))]
    assert found == []


def test_the_check_finds_what_it_is_for() -> None:
    source = (
        "def ok(a: int) -> int:\n    '''Doc.'''\n    return a\n"
        "def bare(a: int) -> int:\n    return a\n"
        "def loose(a, *rest: int) -> None:\n    '''Doc.'''\n"
        "def _private(a):\n    return a\n"
        "class Thing:\n    def method(self, b: str):\n        '''Doc.'''\n"
        "class _Hidden:\n    def method(self, b):\n        pass\n"
    )
    assert undocumented(source, "m.py") == [
        "m.py:4 bare: no docstring",
        "m.py:6 loose: a parameter or the return without a type hint",
        "m.py:11 Thing.method: a parameter or the return without a type hint",
    ]
