"""The real Azurite of the governance tests (tests/governance/servers.py), for the Azure stacks' repository."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "governance"))

from servers import AZURITE_MISSING, azurite_binary, azurite_server  # noqa: E402


@pytest.fixture(scope="session")
def azure_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service on loopback (fails, never skips, if not installed); yields its connection string."""
    if azurite_binary() is None:
        pytest.fail(AZURITE_MISSING, pytrace=False)
    with azurite_server(tmp_path_factory.mktemp("azurite-azure")) as conn:
        yield conn
