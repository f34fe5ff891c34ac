"""Fixtures of the Cloud Foundry tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def cf_project(tmp_path: Path) -> Path:
    """The example project whose repository records a deploy to cf-acceptance (so cf-production plans)."""
    from scaffold import copy_example, record_deploy

    dest = copy_example(tmp_path / "example")
    record_deploy(dest, "cf-acceptance")
    return dest


@pytest.fixture
def capi(monkeypatch):
    """A running CAPI double with client-credentials in the environment; fails the test on any
    request or response that does not match the OpenAPI description."""
    from capi_double import serving

    with serving(monkeypatch) as double:
        yield double


API = "https://api.cf.example.com"  # cfhelpers.CF_BLOCK's


@pytest.fixture
def to_double(capi, monkeypatch):
    """Every request to the stacks' API goes to the double instead (what the target sends is unchanged)."""
    import requests

    real = requests.Session.request
    where = {"url": capi.url}

    def request(self, method, url, *args, **kwargs):
        if url.startswith(API):
            url = where["url"] + url[len(API) :]
        return real(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", request)
    return where
