"""Every import of the installed code is declared by the distribution that ships it.

A plain `pip install mxinfra mxinfra-kubernetes` must have everything the default path imports
(issue 18: `cryptography` was reached by the default file:// repository's signing but only declared by
the s3/azure extras, so the first `pulumi up` failed after the workload was created). The rule, read off
the source with `ast`:
- an import at module level, or inside a function without a guard, needs a base dependency;
- an import inside `try: ... except ImportError` (the guard that turns a missing extra into a message
  naming it) may come from an extra of the same distribution, and so may the other imports of that
  package in the same module (they run after the guarded one, as in `KmsSigner`).
The installed-wheel test (tests/test_wheels.py) proves the same thing end to end.
"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (pyproject, package directory) of every distribution in this repository.
DISTRIBUTIONS = [(ROOT / "pyproject.toml", ROOT / "mxinfra")] + [
    # the package itself, not the editable install's mxinfra_*.egg-info beside it (listed first on some file systems)
    (p, next(d for d in p.parent.iterdir() if d.is_dir() and d.name.startswith("mxinfra_") and (d / "__init__.py").is_file()))
    for p in sorted((ROOT / "targets").glob("*/pyproject.toml"))
]
# Loaded only by pytest (the `pytest11` entry point), so its imports belong to the test extra.
PYTEST_PLUGIN_MODULES = {"mxinfra/testing.py"}


def _requirement_name(spec: str) -> str:
    return re.split(r"[\s<>=!~;\[]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _declared(pyproject: Path) -> tuple[set[str], set[str]]:
    project = tomllib.loads(pyproject.read_text())["project"]
    base = {_requirement_name(s) for s in project.get("dependencies", [])}
    extras = {_requirement_name(s) for specs in project.get("optional-dependencies", {}).values() for s in specs}
    return base, extras


def _guarded_by_import_error(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.Try) and node in parent.body:
            for handler in parent.handlers:
                names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                if any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"} for n in names):
                    return True
        node = parent
    return False


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(top-level module, line, guarded) for every absolute import in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            found.append((name.split(".")[0], node.lineno, _guarded_by_import_error(node, parents)))
    return found


def _problems(pyproject: Path, package: Path) -> list[str]:
    base, extras = _declared(pyproject)
    own = {package.name, "mxinfra"}
    providers = importlib.metadata.packages_distributions()
    problems = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        imports = _imports(path)
        guarded_here = {module for module, _, guarded in imports if guarded}
        for module, line, guarded in imports:
            guarded = guarded or module in guarded_here
            if module in own or module in sys.stdlib_module_names or module == "__future__":
                continue
            dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
            if not dists:
                problems.append(f"{rel}:{line}: imports {module}, which no installed distribution provides")
                continue
            allowed = base | extras if (guarded or rel in PYTEST_PLUGIN_MODULES) else base
            if not dists & allowed:
                where = "an extra of" if guarded else "a dependency of"
                problems.append(f"{rel}:{line}: imports {module} (from {', '.join(sorted(dists))}), not {where} "
                                f"{pyproject.relative_to(ROOT).as_posix()}")
    return problems


@pytest.mark.parametrize(("pyproject", "package"), DISTRIBUTIONS, ids=[p.parent.name or "core" for p, _ in DISTRIBUTIONS])
def test_every_import_is_declared_by_its_distribution(pyproject: Path, package: Path) -> None:
    assert _problems(pyproject, package) == []


def test_the_rule_catches_an_undeclared_import(tmp_path: Path) -> None:
    """The checker itself: an unguarded import of an extra-only package is reported, a guarded one is not."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["pydantic"]\n[project.optional-dependencies]\ns3 = ["cryptography"]\n')
    pkg = tmp_path / "mxinfra_x"
    pkg.mkdir()
    (pkg / "a.py").write_text("import pydantic\ndef f():\n    from cryptography import x509\n")
    (pkg / "b.py").write_text("def g():\n    try:\n        import cryptography\n    except ImportError:\n        raise\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        problems = _problems(tmp_path / "pyproject.toml", pkg)
    finally:
        ROOT = saved
    assert problems == ["mxinfra_x/a.py:3: imports cryptography (from cryptography), not a dependency of pyproject.toml"]
