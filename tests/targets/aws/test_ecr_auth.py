"""ECR registry credentials (mxinfra_aws.ecr_auth): GetAuthorizationToken against moto, the region and
account taken from the host, the token decoded, and the AWS SDK's failures as user errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mxinfra.registry import Credentials, RegistryAuthError, RegistryUnavailable
from mxinfra.registry_auth import credentials_for
from mxinfra_aws.ecr_auth import ecr_credentials, ecr_registry

ACCOUNT = "210987654321"  # not moto's default account: the registry id must come from the host
HOST = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.fixture
def aws_env(aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The AWS tests' fake environment (conftest), and no Docker config of the developer's."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-home"))


def recording_session() -> tuple[Any, list[dict[str, Any]]]:
    """A boto3 session that records each ECR call's URL and body (moto answers it)."""
    session = boto3.session.Session()
    seen: list[dict[str, Any]] = []
    session.events.register("before-call.ecr.GetAuthorizationToken", lambda params, **_: seen.append({"url": params["url"], "body": params["body"]}))
    return session, seen


def test_ecr_hosts_and_others() -> None:
    assert ecr_registry(HOST) == (ACCOUNT, "eu-west-1", False)
    assert ecr_registry(f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn") == (ACCOUNT, "cn-north-1", False)
    assert ecr_registry(f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com") == (ACCOUNT, "us-gov-west-1", True)
    for other in ("ghcr.io", "myreg.azurecr.io", "public.ecr.aws", f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com.evil.example",
                  f"evil.example/{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com", f"1234.dkr.ecr.eu-west-1.amazonaws.com", "127.0.0.1:5000"):
        assert ecr_registry(other) is None, other
        assert ecr_credentials(other) is None, other


def test_another_host_does_not_even_import_boto3() -> None:
    code = "import sys\nfrom mxinfra_aws.ecr_auth import ecr_credentials\nassert ecr_credentials('ghcr.io') is None\nprint(sorted({'boto3', 'botocore'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_the_token_round_trip_against_moto(aws_env: None) -> None:
    with mock_aws():
        session, seen = recording_session()
        assert ecr_credentials(HOST, session=session) == Credentials("AWS", f"{ACCOUNT}-auth-token")  # moto's token: AWS:<id>-auth-token
        china = f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn"
        assert ecr_credentials(china, session=session) == Credentials("AWS", f"{ACCOUNT}-auth-token")
    assert [json.loads(s["body"]) for s in seen] == [{"registryIds": [ACCOUNT]}] * 2
    assert "ecr.eu-west-1.amazonaws.com" in seen[0]["url"]  # the registry's region, not AWS_DEFAULT_REGION's
    assert "ecr.cn-north-1.amazonaws.com.cn" in seen[1]["url"]


def test_the_core_finds_the_plugin_through_its_entry_point(aws_env: None, tmp_path: Path) -> None:
    eps = [ep for ep in importlib_metadata.entry_points(group="mxinfra.registry_credentials") if ep.name == "ecr"]
    assert [ep.value for ep in eps] == ["mxinfra_aws.ecr_auth:ecr_credentials"]
    assert eps[0].load() is ecr_credentials
    empty = tmp_path / "config.json"
    empty.write_text("{}")
    with mock_aws():
        found = credentials_for(HOST, empty)
        assert found == Credentials("AWS", f"{ACCOUNT}-auth-token")
        assert found is not None and "ECR" in found.source
        assert credentials_for("ghcr.io", empty) is None


def test_no_aws_credentials_is_a_user_error(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(RegistryAuthError, match=rf"ECR registry {HOST} \(account {ACCOUNT}, region eu-west-1\): no AWS credentials"):
        ecr_credentials(HOST)


class EcrStub:
    """An ECR JSON API on loopback answering GetAuthorizationToken with a fixed status and body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.requests: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                outer.requests.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ecr_stub(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    stubs: list[EcrStub] = []

    def start(status: int, body: dict[str, Any]) -> EcrStub:
        stub = EcrStub(status, body)
        stubs.append(stub)
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", stub.url)
        return stub

    yield start
    for s in stubs:
        s.close()


def test_a_refusal_says_what_the_identity_needs(ecr_stub: Any) -> None:
    stub = ecr_stub(400, {"__type": "AccessDeniedException", "message": "User: arn:aws:iam::1:user/ci is not authorized to perform: ecr:GetAuthorizationToken"})
    with pytest.raises(RegistryAuthError, match=r"ECR refused GetAuthorizationToken \(AccessDeniedException: User: arn:aws:iam::1:user/ci is not authorized.*needs ecr:GetAuthorizationToken"):
        ecr_credentials(HOST)
    assert stub.requests  # it did ask


def test_a_token_that_is_not_user_password_is_refused_unshown(ecr_stub: Any) -> None:
    import base64

    ecr_stub(200, {"authorizationData": [{"authorizationToken": base64.b64encode(b"no-colon-secret-value").decode()}]})
    with pytest.raises(RegistryAuthError, match=r"not base64 of user:password \(not shown\)") as err:
        ecr_credentials(HOST)
    assert "no-colon-secret-value" not in str(err.value)


def test_an_unreachable_ecr_api(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(RegistryUnavailable, match=rf"ECR registry {HOST} .*cannot be reached"):
        ecr_credentials(HOST)
