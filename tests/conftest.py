"""Shared fixtures: the example package, a scratch Pulumi project, and the test-only target."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MDA = ROOT / "examples" / "orders" / "orders-1.4.2.mda"
sys.path.insert(0, str(Path(__file__).parent))  # tests/fake_target.py and tests/mda_builders.py


@pytest.fixture
def example_mda() -> Path:
    """The bundled example app's package."""
    return EXAMPLE_MDA


@pytest.fixture
def fake_target() -> Iterator[Any]:
    """The test-only target, registered for the duration of the test."""
    from fake_target import target

    from mxinfra.testing import registered_target

    with registered_target(target):
        yield target


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


@pytest.fixture
def project(tmp_path: Path) -> ProjectDir:
    """An empty scratch project (add stacks with project.stack(name, config))."""
    return ProjectDir(tmp_path / "proj")


def app_config(target: str = "fake", **extra: Any) -> dict[str, Any]:
    """A minimal valid config for the example app."""
    cfg: dict[str, Any] = {"mxinfra:app": {"name": "orders", "package": str(EXAMPLE_MDA), "target": target}}
    cfg.update(extra)
    return cfg
