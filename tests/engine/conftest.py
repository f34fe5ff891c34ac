"""Fixtures of the real-engine suite (`./dev test --engine`): the toolchain built by `./dev engine`
(MXINFRA_ENGINE_BIN), a control plane on loopback (cluster.py), the local file backend with a
passphrase secrets provider, and copies of the example project whose stack secrets are set the way a
user sets them (`pulumi config set --secret --path`).

The default `./dev test` does not collect this directory (tests/conftest.py: collect_ignore)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # cluster.py, engine_support.py
sys.path.insert(1, str(Path(__file__).parents[1]))  # registry.py, scaffold.py

from cluster import LocalCluster  # noqa: E402
from engine_support import Oci, Project  # noqa: E402
from registry import BASE_FILES, layer_tar, logged_in, mda_files, push_image, registry_binary, start_registry  # noqa: E402
from scaffold import EXAMPLE_MDA  # noqa: E402


@pytest.fixture(scope="session")
def engine_bin() -> Path:
    value = os.environ.get("MXINFRA_ENGINE_BIN")
    if not value:
        pytest.fail("MXINFRA_ENGINE_BIN is not set: run the suite with ./dev test --engine (after ./dev engine)")
    path = Path(value)
    for name in ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes", "etcd", "kube-apiserver", "kube-controller-manager", "kubectl"):
        if not (path / name).is_file():
            pytest.fail(f"the engine toolchain at {path} has no {name}")
    return path


@pytest.fixture(scope="session")
def has_random(engine_bin: Path) -> bool:
    return (engine_bin / "pulumi-resource-random").is_file()


@pytest.fixture(scope="session")
def cluster(engine_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(engine_bin, tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        c.provide_storage()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def oci(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oci]:
    """The distribution registry on loopback (TLS, basic auth), with a runtime base image and the example's
    app image; every process the suite starts has its credentials (DOCKER_CONFIG) and trusts its CA
    (containers/certs.d), as a user who ran `docker login` does: `pulumi up` verifies every app image."""
    binary = registry_binary()
    if binary is None:
        pytest.fail("the distribution registry is not built: run engine/registry.sh build (./dev test builds it)")
    work = tmp_path_factory.mktemp("oci")
    running = start_registry(binary, work / "registry")
    reg = next(running)
    env = pytest.MonkeyPatch()
    try:
        for key, value in logged_in(reg, work).items():
            env.setenv(key, value)
        push_image(reg, "mendix/runtime-base", [layer_tar(BASE_FILES)], tag="9.24")
        example = push_image(reg, "orders/orders", [layer_tar(BASE_FILES), layer_tar(mda_files(EXAMPLE_MDA))], tag="1.4.2")
        yield Oci(reg.host, f"{reg.host}/mendix/runtime-base:9.24", f"{reg.host}/orders/orders:1.4.2@{example}")
    finally:
        env.undo()
        running.close()


@pytest.fixture(scope="session")
def project_factory(engine_bin: Path, oci: Oci, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    def make(cluster: LocalCluster | None) -> Project:
        return Project(tmp_path_factory.mktemp("engine-project"), engine_bin, cluster, oci)

    return make
