"""Fixtures for the governance storage tests: real moto and Azurite servers, and a store per backend."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # servers.py and workers.py


from servers import AZURITE_MISSING, FAKE_AWS, azurite_binary, azurite_server, moto_server  # noqa: E402

from mxinfra.governance import Store, open_store  # noqa: E402

BACKENDS = ["file", "s3", "azblob"]


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real moto server on loopback for the whole session."""
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="session")
def azurite_connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Azurite blob service on loopback for the whole session (fails, never skips, if not installed)."""
    if azurite_binary() is None:
        pytest.fail(AZURITE_MISSING, pytrace=False)
    with azurite_server(tmp_path_factory.mktemp("azurite")) as conn:
        yield conn


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Point boto3 at the moto server with fake credentials; never at the developer's AWS config."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


@pytest.fixture
def azure_env(azurite_connection: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the Azure SDK at Azurite through AZURE_STORAGE_CONNECTION_STRING."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection)
    return azurite_connection


def new_bucket(endpoint: str) -> str:
    """Create a fresh, uniquely named bucket on the moto server."""
    import boto3

    name = f"mx-{uuid.uuid4().hex[:20]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


def new_container(connection: str) -> str:
    """Create a fresh, uniquely named container on Azurite."""
    from azure.storage.blob import BlobServiceClient

    name = f"mx-{uuid.uuid4().hex[:20]}"
    BlobServiceClient.from_connection_string(connection).create_container(name)
    return name


@pytest.fixture
def make_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """make_url(backend) -> a URL of a fresh, empty repository on that backend (servers started on demand)."""

    def make(backend: str, prefix: str = "governance/repo") -> str:
        if backend == "file":
            return (tmp_path / f"repo-{uuid.uuid4().hex[:8]}").as_uri()
        if backend == "s3":
            endpoint = request.getfixturevalue("s3_env")
            return f"s3://{new_bucket(endpoint)}/{prefix}"
        if backend == "azblob":
            conn = request.getfixturevalue("azure_env")
            return f"azblob://devstoreaccount1/{new_container(conn)}/{prefix}"
        raise AssertionError(backend)

    return make


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn."""
    return str(request.param)


@pytest.fixture
def store_url(backend: str, make_url) -> str:  # type: ignore[no-untyped-def]
    """A fresh repository URL on the current backend."""
    return str(make_url(backend))


@pytest.fixture
def store(store_url: str) -> Store:
    """A fresh, empty store on the current backend."""
    return open_store(store_url)
