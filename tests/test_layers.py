"""The layers of docs/design.md hold: import-linter's contracts (pyproject.toml, [tool.importlinter]) over
the core and every installed target. A new import that breaks one fails here, naming the import chain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--no-cache", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Contracts: 5 kept, 0 broken." in run.stdout, run.stdout


def test_the_contracts_can_fail(tmp_path: Path) -> None:
    """The checker does see a violation: a pure module that imports pulumi breaks its contract."""
    pkg = tmp_path / "mxinfra_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("import pulumi\n")
    (pkg / "target.py").write_text("from . import config\n")
    (pkg / "access.py").write_text("from . import target\n")
    (pkg / "runtime.py").write_text("from . import access\nfrom . import config\n")
    # a cycle, and a pure module importing pulumi
    (pkg / "config.py").write_text("import pulumi\nfrom . import runtime\n")
    (tmp_path / "contracts.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["mxinfra_probe"]\ninclude_external_packages = true\n'
        '[[tool.importlinter.contracts]]\nname = "pure"\ntype = "forbidden"\nsource_modules = ["mxinfra_probe.config"]\n'
        'forbidden_modules = ["pulumi"]\nallow_indirect_imports = "True"\n'
        '[[tool.importlinter.contracts]]\nname = "acyclic"\ntype = "acyclic_siblings"\nancestors = ["mxinfra_probe"]\n'
    )
    lint = Path(sys.executable).with_name("lint-imports")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([str(lint), "--no-cache", str(tmp_path / "contracts.toml")], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode != 0, run.stdout
    assert "pure BROKEN" in run.stdout and "acyclic BROKEN" in run.stdout, run.stdout
