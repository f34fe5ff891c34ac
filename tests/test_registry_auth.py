"""Registry credentials the user already has (mxinfra.registry_auth): Docker's credential helpers run as
real executables that speak the docker-credential-helpers protocol, Docker's order of credHelpers,
credsStore and auths, the registry plug-ins found through real entry points, and identity tokens
spent at a bearer realm with the refresh-token grant."""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from registry import Registry, layer_tar, make_tls, push_image, registry  # noqa: F401 (the fixture)

from mxinfra import registry_auth
from mxinfra.registry import Credentials, RegistryAuthError, RegistryClient, docker_credentials
from mxinfra.registry_auth import credentials_for, docker_config_credentials

HOST = "reg.example.com"
NOT_FOUND = "credentials not found in native keychain"


# ---- helpers: real executables on PATH -----------------------------------------------------------


@pytest.fixture
def bindir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of helper executables, first on a PATH that has nothing else of Docker's."""
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-home"))  # never the developer's config
    return d


def helper(bindir: Path, name: str, body: str) -> Path:
    """docker-credential-<name>: a shell script that logs `<name> <argv> <stdin>` to calls.log, then runs `body`
    with the server it was sent in $server."""
    path = bindir / f"docker-credential-{name}"
    path.write_text(
        "#!/bin/sh\n"
        "server=$(cat)\n"
        f"printf '%s %s %s\\n' {name} \"$*\" \"$server\" >> \"$(dirname \"$0\")/calls.log\"\n"
        '[ "$1" = get ] || { echo "usage: get" >&2; exit 3; }\n'
        f"{body}\n"
    )
    path.chmod(0o755)
    return path


def store_helper(bindir: Path, name: str, entries: dict[str, tuple[str, str]]) -> Path:
    """A helper holding `entries` (server: (user, secret)); any other server is not found, as the real ones say."""
    cases = "".join(
        f"  '{server}') printf '%s' '{json.dumps({'ServerURL': server, 'Username': user, 'Secret': secret})}' ;;\n"
        for server, (user, secret) in entries.items()
    )
    return helper(bindir, name, f'case "$server" in\n{cases}  *) echo "{NOT_FOUND}"; exit 1 ;;\nesac')


def calls(bindir: Path) -> list[str]:
    log = bindir / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def config(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    return path


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


# ---- the Docker config's helpers ------------------------------------------------------------------


def test_a_cred_helper_for_the_host_is_run_with_the_protocol(bindir: Path, tmp_path: Path) -> None:
    store_helper(bindir, "ecr-login", {HOST: ("ci", "helper-secret")})
    cfg = config(tmp_path, {"credHelpers": {HOST: "ecr-login"}})
    found = credentials_for(HOST, cfg)
    assert found == Credentials("ci", "helper-secret")
    assert calls(bindir) == [f"ecr-login get {HOST}"]  # `get`, the server on stdin
    assert found is not None and "docker-credential-ecr-login" in found.source and str(cfg) in found.source
    assert "helper-secret" not in repr(found)


def test_dockers_order_cred_helpers_then_creds_store_then_auths(bindir: Path, tmp_path: Path) -> None:
    store_helper(bindir, "pinned", {HOST: ("from-cred-helper", "p1")})
    store_helper(bindir, "store", {HOST: ("from-store", "p2"), "other.example.com": ("store-other", "p3")})
    cfg = config(
        tmp_path,
        {
            "credHelpers": {HOST: "pinned"},
            "credsStore": "store",
            "auths": {HOST: auth("from-auths", "p4"), "third.example.com": auth("third", "p5")},
        },
    )
    assert credentials_for(HOST, cfg) == Credentials("from-cred-helper", "p1")
    assert calls(bindir) == [f"pinned get {HOST}"]  # the store is not asked for a host with its own helper
    assert credentials_for("other.example.com", cfg) == Credentials("store-other", "p3")
    # the store holds nothing for it: on to auths (Docker would stop here with nothing)
    assert credentials_for("third.example.com", cfg) == Credentials("third", "p5")
    assert calls(bindir)[1:] == ["store get other.example.com", "store get third.example.com"]
    # without helpers, auths as before
    plain = config(tmp_path, {"auths": {HOST: auth("from-auths", "p4")}})
    assert credentials_for(HOST, plain) == Credentials("from-auths", "p4")


def test_a_helper_that_has_nothing_passes_on_to_auths(bindir: Path, tmp_path: Path) -> None:
    store_helper(bindir, "empty", {})
    cfg = config(tmp_path, {"credHelpers": {HOST: "empty"}, "auths": {HOST: auth("u", "p")}})
    assert credentials_for(HOST, cfg) == Credentials("u", "p")
    assert docker_config_credentials("nothing.example.com", config(tmp_path, {"credsStore": "empty"})) is None
    assert calls(bindir) == [f"empty get {HOST}", "empty get nothing.example.com"]
    # some helpers answer an empty Secret (exit 0) instead
    helper(bindir, "blank", """printf '%s' '{"ServerURL": "", "Username": "", "Secret": ""}'""")
    assert credentials_for(HOST, config(tmp_path, {"credsStore": "blank", "auths": {HOST: auth("u2", "p2")}})) == Credentials("u2", "p2")


def test_an_identity_token_from_a_helper(bindir: Path, tmp_path: Path) -> None:
    store_helper(bindir, "desktop", {HOST: ("<token>", "identity-token-value")})
    found = credentials_for(HOST, config(tmp_path, {"credsStore": "desktop"}))
    assert found == Credentials("<token>", "identity-token-value") and found.is_identity_token
    # and `identitytoken` in auths, which Docker writes without a store
    cfg = config(tmp_path, {"auths": {HOST: {"auth": base64.b64encode(b"someone:").decode(), "identitytoken": "idt"}}})
    got = credentials_for(HOST, cfg)
    assert got == Credentials("<token>", "idt") and got.is_identity_token


def test_docker_hub_is_asked_under_its_legacy_key(bindir: Path, tmp_path: Path) -> None:
    store_helper(bindir, "desktop", {"https://index.docker.io/v1/": ("hubuser", "hubpass")})
    cfg = config(tmp_path, {"credsStore": "desktop"})
    assert credentials_for("registry-1.docker.io", cfg) == Credentials("hubuser", "hubpass")
    assert calls(bindir) == ["desktop get https://index.docker.io/v1/"]


def test_a_missing_helper_is_a_clear_error(bindir: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, {"credHelpers": {HOST: "ecr-login"}, "auths": {HOST: auth("u", "p")}})
    with pytest.raises(RegistryAuthError) as err:
        credentials_for(HOST, cfg)
    text = str(err.value)
    assert str(cfg) in text and "credHelpers" in text and "docker-credential-ecr-login is not on PATH" in text and "install it" in text
    with pytest.raises(RegistryAuthError, match=r"credsStore in .*names the credential helper 'desktop'.*not on PATH"):
        credentials_for(HOST, config(tmp_path, {"credsStore": "desktop"}))


def test_a_failing_helper_says_why_and_where(bindir: Path, tmp_path: Path) -> None:
    helper(bindir, "broken", 'echo "error getting credentials: keychain is locked"; exit 2')
    cfg = config(tmp_path, {"credsStore": "broken"})
    with pytest.raises(RegistryAuthError, match=r"docker-credential-broken get failed for reg\.example\.com \(exit 2: error getting credentials: keychain is locked\).*credsStore in .*config\.json"):
        credentials_for(HOST, cfg)


def test_junk_from_a_helper_is_an_error_that_never_shows_it(bindir: Path, tmp_path: Path) -> None:
    helper(bindir, "junk", "echo 'username=ci password=hunter2-secret'")
    with pytest.raises(RegistryAuthError) as err:
        credentials_for(HOST, config(tmp_path, {"credsStore": "junk"}))
    assert "not the credential helper protocol's JSON" in str(err.value) and "hunter2" not in str(err.value)
    helper(bindir, "nosecret", """printf '%s' '{"ServerURL": "x", "Username": "ci", "Secret": ["hunter3-secret"]}'""")
    with pytest.raises(RegistryAuthError) as err:
        credentials_for(HOST, config(tmp_path, {"credsStore": "nosecret"}))
    assert "not the credential helper protocol's JSON" in str(err.value) and "hunter3" not in str(err.value)


def test_a_hanging_helper_times_out(bindir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper(bindir, "hangs", "exec sleep 20")
    monkeypatch.setattr(registry_auth, "HELPER_TIMEOUT", 0.5)
    start = time.monotonic()
    with pytest.raises(RegistryAuthError, match=r"docker-credential-hangs get .*did not answer within 0\.5 s"):
        credentials_for(HOST, config(tmp_path, {"credsStore": "hangs"}))
    assert time.monotonic() - start < 10


def test_a_helper_name_that_is_a_path_is_refused(bindir: Path, tmp_path: Path) -> None:
    (tmp_path / "evil").write_text("#!/bin/sh\ntouch ran\n")
    with pytest.raises(RegistryAuthError, match="not the name of a credential helper"):
        credentials_for(HOST, config(tmp_path, {"credHelpers": {HOST: "../evil"}}))


def test_docker_credentials_still_reads_auths_alone(bindir: Path, tmp_path: Path) -> None:
    store_helper(bindir, "desktop", {HOST: ("from-store", "p")})
    cfg = config(tmp_path, {"credsStore": "desktop", "auths": {"other.example.com": auth("u", "p:w")}})
    assert docker_credentials("other.example.com", cfg) == Credentials("u", "p:w")
    with pytest.raises(RegistryAuthError, match="names a credential helper"):
        docker_credentials(HOST, cfg)
    assert calls(bindir) == []  # it runs no helper


# ---- the registry plug-ins (real entry points of a distribution on sys.path) ----------------------


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """install(entries, module_source): a distribution with `mxinfra.registry_credentials` entry points
    whose module is written here; yields the installer, removes the modules afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    made: list[str] = []

    def install(dist: str, entries: dict[str, str], source: str) -> str:
        module = f"probe_{uuid.uuid4().hex[:10]}"
        (root / f"{module}.py").write_text(source)
        info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            "[mxinfra.registry_credentials]\n" + "".join(f"{name} = {value.replace('MOD', module)}\n" for name, value in entries.items())
        )
        made.append(module)
        return module

    yield install
    for m in made:
        sys.modules.pop(m, None)


PROBE = '''
from mxinfra.registry import Credentials
CALLS = []

def creds(host):
    CALLS.append(host)
    return Credentials("probe-user", "probe-pass") if host == "probe.example.com" else None

def never(host):
    raise AssertionError("asked after a plug-in had answered")

def nothing(host):
    CALLS.append("nothing:" + host)
    return None

def wrong(host):
    return ("user", "password") if host == "probe.example.com" else None
'''


def test_the_docker_config_wins_and_plugins_load_only_when_needed(plugins: Any, bindir: Path, tmp_path: Path) -> None:
    module = plugins("mxinfra-probe", {"probe": "MOD:creds"}, PROBE)
    cfg = config(tmp_path, {"auths": {"probe.example.com": auth("docker-user", "docker-pass")}})
    assert credentials_for("probe.example.com", cfg) == Credentials("docker-user", "docker-pass")
    assert module not in sys.modules  # the plug-in was not even imported
    empty = config(tmp_path, {})
    found = credentials_for("probe.example.com", empty)
    assert found == Credentials("probe-user", "probe-pass")
    assert found is not None and "probe" in found.source and "mxinfra-probe" in found.source
    assert credentials_for("elsewhere.example.com", empty) is None
    assert sys.modules[module].CALLS == ["probe.example.com", "elsewhere.example.com"]


def test_plugins_are_asked_in_name_order_until_one_answers(plugins: Any, bindir: Path, tmp_path: Path) -> None:
    module = plugins("mxinfra-probe", {"zz-never": "MOD:never", "m-probe": "MOD:creds", "a-nothing": "MOD:nothing"}, PROBE)
    assert credentials_for("probe.example.com", config(tmp_path, {})) == Credentials("probe-user", "probe-pass")
    assert sys.modules[module].CALLS == ["nothing:probe.example.com", "probe.example.com"]


def test_a_broken_or_wrong_plugin_is_reported(plugins: Any, bindir: Path, tmp_path: Path) -> None:
    plugins("mxinfra-broken", {"broken": "no_such_module_for_mxinfra_tests:creds"}, "")
    with pytest.raises(RegistryAuthError, match=r"plug-in 'broken' \(no_such_module_for_mxinfra_tests:creds, from mxinfra-broken\) cannot be loaded.*reinstall or uninstall mxinfra-broken"):
        credentials_for("probe.example.com", config(tmp_path, {}))


def test_a_plugin_that_returns_no_credentials_object_is_a_bug(plugins: Any, bindir: Path, tmp_path: Path) -> None:
    plugins("mxinfra-wrong", {"wrong": "MOD:wrong"}, PROBE)
    with pytest.raises(TypeError, match="returned tuple, not mxinfra.registry.Credentials"):
        credentials_for("probe.example.com", config(tmp_path, {}))
    assert credentials_for("other.example.com", config(tmp_path, {})) is None


# ---- end to end: a real distribution registry, its password from a helper ------------------------


def test_a_helper_logs_in_to_a_real_registry(registry: Registry, bindir: Path, tmp_path: Path) -> None:
    digest = push_image(registry, "auth/app", [layer_tar([("etc/hello", b"hi\n")])])
    store_helper(bindir, "teststore", {registry.host: (registry.user, registry.password)})
    found = credentials_for(registry.host, config(tmp_path, {"credsStore": "teststore"}))
    with RegistryClient(registry.host, credentials=found, ca_bundle=registry.ca) as client:
        assert client.manifest("auth/app", digest)[2] == digest
    store_helper(bindir, "stale", {registry.host: (registry.user, "an-expired-password")})
    stale = credentials_for(registry.host, config(tmp_path, {"credsStore": "stale"}))
    with RegistryClient(registry.host, credentials=stale, ca_bundle=registry.ca) as client, pytest.raises(RegistryAuthError) as err:
        client.manifest("auth/app", digest)
    assert f"as '{registry.user}' (from docker-credential-stale, credsStore in" in str(err.value)
    assert "an-expired-password" not in str(err.value)


# ---- identity tokens at a bearer realm (a token service on loopback TLS) --------------------------

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {}, "layers": []}).encode()


class TokenRegistry:
    """A registry whose `bearer/*` repositories want a token from its /token realm, and `basic/*` basic auth."""

    def __init__(self, tmp: Path) -> None:
        self.ca, cert, key = make_tls(tmp / "tls")
        self.seen: list[tuple[str, str, dict[str, list[str]], str]] = []  # method, path, form or query, Authorization
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                outer.seen.append(("POST", self.path, form, self.headers.get("Authorization", "")))
                ok = self.path == "/token" and form.get("grant_type") == ["refresh_token"] and form.get("refresh_token") == ["idt-secret"]
                self._reply(200 if ok else 401, json.dumps({"access_token": "access-1"} if ok else {}).encode())

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                outer.seen.append(("GET", path, urllib.parse.parse_qs(query), self.headers.get("Authorization", "")))
                if path == "/token":
                    self._reply(401)
                elif path.startswith("/v2/bearer/") and self.headers.get("Authorization") == "Bearer access-1":
                    self._reply(200, MANIFEST, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
                elif path.startswith("/v2/bearer/"):
                    realm = f'Bearer realm="https://{outer.host}/token",service="token-registry",scope="repository:bearer/app:pull"'
                    self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}', {"WWW-Authenticate": realm})
                else:
                    self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"basic needed"}]}', {"WWW-Authenticate": 'Basic realm="r"'})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[TokenRegistry]:
    reg = TokenRegistry(tmp_path)
    try:
        yield reg
    finally:
        reg.close()


def test_an_identity_token_is_spent_with_the_refresh_grant(token_registry: TokenRegistry, bindir: Path, tmp_path: Path) -> None:
    reg = token_registry
    store_helper(bindir, "desktop", {reg.host: ("<token>", "idt-secret")})
    found = credentials_for(reg.host, config(tmp_path, {"credsStore": "desktop"}))
    with RegistryClient(reg.host, credentials=found, ca_bundle=reg.ca) as client:
        body, _, _ = client.manifest("bearer/app", "latest")
    assert body == MANIFEST
    posts = [s for s in reg.seen if s[0] == "POST"]
    assert len(posts) == 1
    _, path, form, authorization = posts[0]
    assert path == "/token" and authorization == ""  # in the form, never as basic auth
    assert form == {
        "grant_type": ["refresh_token"], "refresh_token": ["idt-secret"], "service": ["token-registry"],
        "scope": ["repository:bearer/app:pull"], "client_id": ["mxinfra"],
    }
    assert not any("Basic" in s[3] for s in reg.seen)


def test_an_identity_token_is_never_sent_as_basic_auth(token_registry: TokenRegistry, tmp_path: Path) -> None:
    reg = token_registry
    with RegistryClient(reg.host, credentials=Credentials("<token>", "idt-secret"), ca_bundle=reg.ca) as client, pytest.raises(RegistryAuthError) as err:
        client.manifest("basic/app", "latest")
    assert "with an identity token" in str(err.value) and "idt-secret" not in str(err.value)
    assert [s[3] for s in reg.seen] == [""]  # one anonymous attempt, no retry with the token
    # a password, by contrast, goes to the realm as basic auth (GET), as before
    with RegistryClient(reg.host, credentials=Credentials("u", "p"), ca_bundle=reg.ca) as client, pytest.raises(RegistryAuthError):
        client.manifest("bearer/app", "latest")
    token_gets = [s for s in reg.seen if s[0] == "GET" and s[1] == "/token"]
    assert token_gets and token_gets[0][3] == "Basic " + base64.b64encode(b"u:p").decode()
