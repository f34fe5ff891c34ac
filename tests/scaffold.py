"""Helpers shared by the test modules: the example project, scratch projects and configs."""

from __future__ import annotations

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


def record_deploy(project_dir: Path, environment: str, package: Path = EXAMPLE_MDA) -> None:
    """Record in the project's repository what `pulumi up` of `environment` would have: a deploy of `package`."""
    from mxinfra.governance.record import write_record
    from mxinfra.governance.promotion import repository_url
    from mxinfra.mda import sha256_file

    props = {"environment": environment, "repository": repository_url(None, project_dir), "packageSha256": sha256_file(package), "packageVersion": None, "packagePath": str(package)}
    write_record(props, {}, "deploy")


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


def app_config(target: str = "fake", **extra: Any) -> dict[str, Any]:
    """A minimal valid config for the example app."""
    cfg: dict[str, Any] = {"mxinfra:app": {"name": "orders", "package": str(EXAMPLE_MDA), "target": target}}
    cfg.update(extra)
    return cfg
