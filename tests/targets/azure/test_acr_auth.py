"""ACR registry credentials (mxinfra_azure.acr_auth): an Entra ID token for the cloud's Resource Manager,
exchanged at the registry's /oauth2/exchange (a real HTTP server on loopback here) for a refresh token
that is the password of user 00000000-0000-0000-0000-000000000000."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata as importlib_metadata
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from mxinfra.registry import Credentials, RegistryAuthError, RegistryUnavailable
from mxinfra_azure.acr_auth import ACR_USER, acr_credentials

AAD_TOKEN = "aad-access-token-7c1e"


class StaticCredential:
    """A TokenCredential with a fixed token that records the scopes it was asked for."""

    def __init__(self, fail: bool = False) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.fail = fail

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.fail:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token from the included credentials.\nAttempted: ...")
        return AccessToken(AAD_TOKEN, int(time.time()) + 3600)


class Exchange:
    """A registry's /oauth2/exchange on loopback: records each form, answers with `status` and `body`."""

    def __init__(self) -> None:
        self.forms: list[dict[str, list[str]]] = []
        self.paths: list[str] = []
        self.status = 200
        self.body: bytes = json.dumps({"refresh_token": "acr-refresh-token-1"}).encode()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                outer.paths.append(self.path)
                outer.forms.append(urllib.parse.parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()))
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def exchange() -> Iterator[Exchange]:
    ex = Exchange()
    try:
        yield ex
    finally:
        ex.server.shutdown()
        ex.server.server_close()


def test_the_exchange_and_the_credentials(exchange: Exchange) -> None:
    cred = StaticCredential()
    found = acr_credentials("myregistry.azurecr.io", credential=cred, base_url=exchange.url)
    assert found == Credentials(ACR_USER, "acr-refresh-token-1")
    assert ACR_USER == "00000000-0000-0000-0000-000000000000"
    assert cred.scopes == [("https://management.azure.com/.default",)]
    assert exchange.paths == ["/oauth2/exchange"]
    assert exchange.forms == [{"grant_type": ["access_token"], "service": ["myregistry.azurecr.io"], "access_token": [AAD_TOKEN]}]


@pytest.mark.parametrize(
    ("host", "scope"),
    [
        ("MyRegistry.AzureCR.io", "https://management.azure.com/.default"),
        ("contoso-abc123.azurecr.io", "https://management.azure.com/.default"),
        ("myregistry.azurecr.cn", "https://management.chinacloudapi.cn/.default"),
        ("myregistry.azurecr.us", "https://management.usgovcloudapi.net/.default"),
    ],
)
def test_each_clouds_registry_asks_its_resource_manager(exchange: Exchange, host: str, scope: str) -> None:
    cred = StaticCredential()
    assert acr_credentials(host, credential=cred, base_url=exchange.url) == Credentials(ACR_USER, "acr-refresh-token-1")
    assert cred.scopes == [(scope,)]
    assert exchange.forms[0]["service"] == [host.lower()]


def test_other_hosts_are_not_acrs() -> None:
    cred = StaticCredential()
    for other in ("ghcr.io", "azurecr.io", "myregistry.azurecr.io.evil.example", "evil.example/x.azurecr.io", "myregistry.azurecr.com",
                  "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "myregistry.azurecr.io:5000"):
        assert acr_credentials(other, credential=cred, base_url="http://127.0.0.1:9") is None, other
    assert cred.scopes == []


def test_another_host_does_not_even_import_the_azure_sdk() -> None:
    code = "import sys\nfrom mxinfra_azure.acr_auth import acr_credentials\nassert acr_credentials('ghcr.io') is None\nprint([m for m in sys.modules if m == 'azure' or m.startswith('azure.')])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_the_entry_point_is_registered() -> None:
    eps = [ep for ep in importlib_metadata.entry_points(group="mxinfra.registry_credentials") if ep.name == "acr"]
    assert [ep.value for ep in eps] == ["mxinfra_azure.acr_auth:acr_credentials"]
    assert eps[0].load() is acr_credentials


def test_a_refused_exchange_is_a_user_error_without_the_token(exchange: Exchange) -> None:
    exchange.status = 401
    # a registry that echoes what it was sent: the message must still not show the token
    exchange.body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": f"token {AAD_TOKEN} is for another tenant"}]}).encode()
    with pytest.raises(RegistryAuthError, match=r"ACR registry myregistry\.azurecr\.io refused to exchange .*\(401 UNAUTHORIZED: token \*\*\* is for another tenant\)") as err:
        acr_credentials("myregistry.azurecr.io", credential=StaticCredential(), base_url=exchange.url)
    assert AAD_TOKEN not in str(err.value)


def test_an_answer_without_a_refresh_token_is_not_shown(exchange: Exchange) -> None:
    exchange.body = b'{"access_token": "leaked-looking-value"}'
    with pytest.raises(RegistryAuthError, match="without a refresh_token \\(not shown\\)") as err:
        acr_credentials("myregistry.azurecr.io", credential=StaticCredential(), base_url=exchange.url)
    assert "leaked-looking-value" not in str(err.value)


def test_no_azure_identity_says_how_to_sign_in(exchange: Exchange) -> None:
    cred = StaticCredential(fail=True)
    with pytest.raises(RegistryAuthError, match=r"ACR registry myregistry\.azurecr\.io: no Azure credential .*DefaultAzureCredential failed.*az login"):
        acr_credentials("myregistry.azurecr.io", credential=cred, base_url=exchange.url)
    assert exchange.forms == []  # nothing to exchange


def test_an_unreachable_registry() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistryUnavailable, match=r"ACR registry myregistry\.azurecr\.io cannot be reached for its token exchange"):
        acr_credentials("myregistry.azurecr.io", credential=StaticCredential(), base_url=f"http://127.0.0.1:{port}", timeout=5)
