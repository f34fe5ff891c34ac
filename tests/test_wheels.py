"""The distributions as a user installs them: built wheels, an empty venv, no lock, no test extras.

Issue 18: `pip install mxinfra mxinfra-kubernetes` lacked `cryptography`, so the first `pulumi up` failed
after the workload was created. Here each distribution's wheel is built from this checkout and installed
with pip's own resolver (dependencies from the package index, as a user gets them) into a venv that
holds nothing else; then the commands a user runs first are run with it, from a project outside the
repository. tests/test_dependencies.py states the same rule statically for every import.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from wheels_support import ROOT, build_wheels, run, user_venv

EXAMPLE_PASSPHRASE = "orders-example-passphrase"  # public, README: the example stacks' passphrase
# target directory -> (its package, an example stack of it)
TARGETS = {
    "kubernetes": ("mxinfra_kubernetes", "acceptance"),
    "cloudfoundry": ("mxinfra_cloudfoundry", "cf-acceptance"),
    "aws": ("mxinfra_aws", "aws-acceptance"),
    "azure": ("mxinfra_azure", "azure-acceptance"),
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One wheel per distribution, built from this checkout with the locked build backend."""
    return build_wheels(tmp_path_factory.mktemp("build"), tuple(TARGETS))


def _user_project(where: Path, stack: str) -> Path:
    """A project outside the repository: its own Pulumi.yaml, the stack file and the package."""
    where.mkdir(parents=True)
    (where / "Pulumi.yaml").write_text("name: orders\nruntime:\n  name: python\n")
    (where / "__main__.py").write_text("from mxinfra.program import run\n\nrun()\n")
    text = (ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()
    (where / f"Pulumi.{stack}.yaml").write_text(text.replace("examples/orders/orders-1.4.2.mda", "orders-1.4.2.mda"))
    shutil.copy(ROOT / "examples" / "orders" / "orders-1.4.2.mda", where / "orders-1.4.2.mda")
    return where


def _clean_env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PULUMI"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PULUMI_CONFIG_PASSPHRASE"] = EXAMPLE_PASSPHRASE
    env["HOME"] = str(bin_dir.parent / "home")  # no keys, caches or config of this machine's user
    return env


def test_core_wheel_alone(wheels: dict[str, Path], tmp_path: Path) -> None:
    """The core with nothing else: help, inspect, an activity record appended and verified."""
    bin_dir = user_venv(tmp_path / "venv", [wheels["mxinfra"]])
    env = _clean_env(bin_dir)
    project = _user_project(tmp_path / "project", "acceptance")
    assert "inspect" in run([str(bin_dir / "mxinfra"), "--help"], cwd=project, env=env).stdout
    shown = run([str(bin_dir / "mxinfra"), "inspect", "orders-1.4.2.mda", "--verify"], cwd=project, env=env).stdout
    assert "1.4.2" in shown
    # The backup containers' scripts are package data: every file beside mxinfra/backup_scripts/__init__.py
    # in this checkout is in the installed core, byte for byte, and is what the core lists for the targets.
    ours = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (ROOT / "mxinfra" / "backup_scripts").iterdir() if p.is_file() and p.suffix != ".py"}
    shipped = "import hashlib, json; from mxinfra.backup_scripts import SCRIPTS, SCRIPT_NAMES; print(json.dumps({n: hashlib.sha256((SCRIPTS / n).read_bytes()).hexdigest() for n in SCRIPT_NAMES}))"
    assert json.loads(run([str(bin_dir / "python"), "-c", shipped], cwd=project, env=env).stdout) == ours
    # An activity append as `pulumi up` makes it (the dynamic provider's create), on the default file://
    # repository with its development signing key, then verified by the CLI.
    append = (
        "from mxinfra.governance.record import ActivityProvider\n"
        "r = ActivityProvider().create({'environment': 'acceptance', 'app': 'orders', 'repository': 'file://.mxinfra/repository',"
        " 'packageSha256': 'ab' * 32, 'packageVersion': '1.4.2', 'artifact': None, 'settingsDigest': 'x', 'instances': 1,"
        " 'grantsDigest': 'y'})\nprint(r.outs['lastRecordSeq'])\n"
    )
    assert run([str(bin_dir / "python"), "-c", append], cwd=project, env=env).stdout.strip() == "1"
    verified = run([str(bin_dir / "mxinfra"), "activity", "verify", "--repository", "file://.mxinfra/repository"], cwd=project, env=env)
    assert "1 signed record(s) in 1 environment(s)" in verified.stdout
    listed = json.loads(run([str(bin_dir / "mxinfra"), "activity", "--json", "--repository", "file://.mxinfra/repository"], cwd=project, env=env).stdout)
    assert [(r["environment"], r["seq"], r["action"]) for r in listed] == [("acceptance", 1, "deploy")]
    # A target that is not installed is named, with the distribution to install (exit 2, no traceback).
    missing = run([str(bin_dir / "mxinfra"), "plan", "-s", "acceptance"], cwd=project, env=env, check=False)
    assert missing.returncode == 2, missing.stderr
    # A command that a target brings names the distribution that provides it.
    access = run([str(bin_dir / "mxinfra"), "access", "grant", "-e", "production"], cwd=project, env=env, check=False)
    assert access.returncode == 2 and "`mxinfra access` comes with the mxinfra-cloudfoundry target, which is not installed: pip install mxinfra-cloudfoundry" in access.stderr, access.stderr
    assert "target 'kubernetes' is not installed (pip install mxinfra-kubernetes" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize("target", list(TARGETS))
def test_target_wheel_with_the_core(target: str, wheels: dict[str, Path], tmp_path: Path) -> None:
    """The core and one target: the offline plan of that target's example stack runs and declares resources."""
    package, stack = TARGETS[target]
    bin_dir = user_venv(tmp_path / "venv", [wheels["mxinfra"], wheels[package]])
    env = _clean_env(bin_dir)
    project = _user_project(tmp_path / "project", stack)
    planned = run([str(bin_dir / "mxinfra"), "plan", "-s", stack], cwd=project, env=env)
    assert "nothing was deployed" in planned.stdout, planned.stdout
    others = [p for t, (p, _) in TARGETS.items() if t != target]
    check = f"import importlib.util as u; print([m for m in {others!r} if u.find_spec(m)])"
    assert run([str(bin_dir / "python"), "-c", check], cwd=project, env=env).stdout.strip() == "[]"
