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


# Real servers for the backup tests (each module that asks gets its own, started once).


@pytest.fixture(scope="module")
def pg() -> Iterator[Any]:
    """One real PostgreSQL (Debian's, on loopback in a temporary directory) for a module's backup tests."""
    from postgres import PostgresServer

    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on loopback; yields its endpoint URL."""
    sys.path.insert(0, str(Path(__file__).parent / "governance"))
    from servers import moto_server

    with moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service on loopback; yields its blob endpoint (http://127.0.0.1:PORT/devstoreaccount1)."""
    sys.path.insert(0, str(Path(__file__).parent / "governance"))
    from servers import AZURITE_MISSING, azurite_binary, azurite_server

    if azurite_binary() is None:
        pytest.fail(AZURITE_MISSING, pytrace=False)
    with azurite_server(tmp_path_factory.mktemp("azurite")) as conn:
        yield next(p.split("=", 1)[1] for p in conn.split(";") if p.startswith("BlobEndpoint="))
