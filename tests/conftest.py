"""Shared fixtures: the example package and project, a scratch Pulumi project, the test-only target."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # scaffold.py, fake_target.py, mda_builders.py

from scaffold import EXAMPLE_MDA, ProjectDir, copy_example, record_deploy  # noqa: E402


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


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    """The example project in a scratch directory whose repository records a deploy to acceptance,
    so its production stacks (requirePromotionFrom: acceptance) may be planned."""
    dest = copy_example(tmp_path / "example")
    for stack in ("acceptance", "aws-acceptance"):  # both examples' acceptance environments
        record_deploy(dest, stack)
    return dest


@pytest.fixture
def project(tmp_path: Path) -> ProjectDir:
    """An empty scratch project (add stacks with project.stack(name, config))."""
    return ProjectDir(tmp_path / "proj")


# tests/engine (the real engine against a local API server) runs only under `./dev test --engine`,
# which sets MXINFRA_ENGINE_BIN to the toolchain `./dev engine` built.
collect_ignore = [] if __import__("os").environ.get("MXINFRA_ENGINE_BIN") else ["engine"]
