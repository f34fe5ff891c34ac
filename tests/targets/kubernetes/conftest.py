"""Fixtures of the kubernetes target's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def no_ambient_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The target reads the ambient kubeconfig (KUBECONFIG, else ~/.kube/config): the tests read none
    outside the repository, so KUBECONFIG names a file that does not exist unless a test writes it."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "ambient-kubeconfig"))


@pytest.fixture
def engine_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mark the environments and kubernetes blocks secret, as the engine does for keys holding secure values."""
    from mxinfra import stackfile

    real = stackfile.read_stack_config

    def read(proj, stack):
        raw = real(proj, stack)
        return stackfile.RawConfig(raw.values, frozenset({"mxinfra:environments", "mxinfra:kubernetes"}), raw.source)

    monkeypatch.setattr("mxinfra.plan.read_stack_config", read)
