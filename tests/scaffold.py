"""Helpers shared by the test modules: the example project, scratch projects and configs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MDA = ROOT / "examples" / "orders" / "orders-1.4.2.mda"


def copy_example(dest: Path) -> Path:
    """A copy of the bundled example project (program, stacks, package) at `dest`."""
    import shutil

    dest.mkdir(parents=True)
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("stacks", "examples"):
        shutil.copytree(ROOT / name, dest / name)
    return dest


def example_release(dest: Path, model_version: str) -> Path:
    """The example app at another model version (its next release: new bytes), from its own builder."""
    import sys

    sys.path.insert(0, str(ROOT / "examples" / "orders"))
    from build_mda import build

    return build(dest, model_version)


def record_deploy(project_dir: Path, stack: str) -> None:
    """Record in the project's repository what `pulumi up` of `stack` would: a deploy per environment,
    with the stack's package and artifact (written by the activity resource's provider, as in a real up)."""
    from mxinfra.components import MendixApp  # noqa: F401 (the provider is the component's)
    from mxinfra.deployment import prepare
    from mxinfra.governance.record import ActivityProvider, grants_digest, settings_digest
    from mxinfra.stackfile import read_project, read_stack_config

    project = read_project(project_dir)
    d = prepare(read_stack_config(project, stack), project=project.name, stack=stack, base_dir=project.directory)
    for p in d.environments:
        ActivityProvider().create(
            {
                "environment": p.environment.name,
                "app": d.config.app.name,
                "repository": d.repository,
                "packageSha256": d.package.sha256,
                "packageVersion": d.package.version or d.package.model_version,
                "packagePath": str(d.package.path),
                "artifact": p.artifact,
                "settingsDigest": settings_digest(p.settings),
                "instances": p.settings.instances,
                "grantsDigest": grants_digest(p.access),
            }
        )


class ProjectDir:
    """A scratch Pulumi project running the real mxinfra program."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "stacks").mkdir(parents=True, exist_ok=True)
        (path / "Pulumi.yaml").write_text("name: orders\nruntime: python\nstackConfigDir: stacks\n")
        (path / "__main__.py").write_text((ROOT / "__main__.py").read_text())

    def stack(self, name: str, config: dict[str, Any]) -> Path:
        """Write `stacks/Pulumi.<name>.yaml` with `config`."""
        f = self.path / "stacks" / f"Pulumi.{name}.yaml"
        f.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
        return f


# Production is gated by default (issue 19, F6): a fixture that renders a production environment without a
# deploy record in another environment first (what is under test is not the promotion gate) opts out
# explicitly, as a user would. The gate itself: tests/test_production_gate.py, tests/governance.
UNGATED = {"reason": "test fixture: production's resources are under test, not the promotion gate"}


def app_config(target: str = "fake", **extra: Any) -> dict[str, Any]:
    """A minimal valid config for the example app."""
    cfg: dict[str, Any] = {"mxinfra:app": {"name": "orders", "package": str(EXAMPLE_MDA), "target": target}}
    cfg.update(extra)
    return cfg


SECURE = {"secure": "v1:AAAA"}  # a value as `pulumi config set --secret` stores it (offline: `[secret]`)


def encrypted(cfg: dict[str, Any]) -> dict[str, Any]:
    """`cfg` with its environments' secret values stored encrypted, as a stack file holds them."""
    out = copy.deepcopy(cfg)
    for body in out["mxinfra:environments"].values():
        body["adminPassword"] = SECURE
        if "license" in body:
            body["license"]["key"] = SECURE
        for name in body.get("secretConstants") or {}:
            body["secretConstants"][name] = SECURE
    return out


def run_drift(project: Any, capsys: Any, stack: str) -> tuple[int, str, str]:
    """`mxinfra drift -s STACK` in the project: (exit code, stdout, stderr on one line)."""
    from mxinfra.cli import main

    rc = main(["drift", "-s", stack, "-C", str(project.path)])
    out = capsys.readouterr()
    return rc, out.out, " ".join(out.err.split())
