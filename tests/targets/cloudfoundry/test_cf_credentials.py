"""The API's credentials from a secret stack config (`mxinfra:cloudfoundry.credentials`): validated, read by
the dynamic providers at operation time (the engine's `configure`), preferred over the environment,
refreshed on expiry, and never in a resource input, the plan or a rendered manifest."""

from __future__ import annotations

import base64
import binascii
import json

import pytest

from mxinfra.cli import main
from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.testing import engine_secrets, walk_inputs
from mxinfra_cloudfoundry import uaa
from mxinfra_cloudfoundry.provider import AppProvider, SpaceRoleProvider

from cfhelpers import ROOT, config

CFG_CLIENT, CFG_SECRET = "mxinfra-cfg", "Known-Client-Secret-9b1e77"
PG_PASSWORD = "Known-Password-Grant-4c2d"


@pytest.fixture(autouse=True)
def _forget():
    uaa.clear_stack_credentials()
    yield
    uaa.clear_stack_credentials()


def engine_config(capi, credentials):
    """The stack config as the engine hands it to a dynamic provider's configure: structured keys as JSON."""
    from pulumi.dynamic import Config

    block = {"api": capi.url, "org": "acme", "space": "orders", "credentials": credentials}
    return Config(raw_config={"mxinfra:cloudfoundry": json.dumps(block), "mxinfra:app": json.dumps({"name": "orders"})}, project_name="orders")


def configure(provider, capi, credentials):
    from pulumi.dynamic import ConfigureRequest

    provider.configure(ConfigureRequest(engine_config(capi, credentials)))


def role_props(capi, user="alice@example.com"):
    return {"api": capi.url, "org": "acme", "space": "orders", "type": "space_auditor", "username": user, "origin": "corp-idp", "principal": f"user:corp-idp/{user}", "permission": "monitor"}


def test_provider_uses_the_stack_credentials_before_the_environment(capi):
    capi.clients[CFG_CLIENT] = CFG_SECRET
    p = SpaceRoleProvider()
    configure(p, capi, {"clientId": CFG_CLIENT, "clientSecret": CFG_SECRET, "uaaUrl": capi.url})
    r = p.create(role_props(capi))  # CF_CLIENT_ID=mxinfra-ci is in the environment too (the fixture)
    assert capi.grant_clients == [CFG_CLIENT]
    assert r.id in capi.objects["roles"]
    for value in r.outs.values():
        assert CFG_SECRET not in json.dumps(value)


def test_a_wrong_stack_secret_does_not_fall_back_to_the_environment(capi):
    p = SpaceRoleProvider()
    configure(p, capi, {"clientId": CFG_CLIENT, "clientSecret": "wrong", "uaaUrl": capi.url})
    with pytest.raises(uaa.CredentialsError, match="refused the client_credentials grant") as e:
        p.create(role_props(capi))
    assert "wrong" not in str(e.value)
    assert capi.objects["roles"] == {} and capi.grant_clients == [CFG_CLIENT]


def test_without_stack_credentials_the_environment_is_used(capi):
    p = SpaceRoleProvider()
    configure(p, capi, None)
    p.create(role_props(capi))
    assert capi.grant_clients == ["mxinfra-ci"]


def test_no_credentials_anywhere(capi, monkeypatch):
    for var in ("CF_CLIENT_ID", "CF_CLIENT_SECRET"):
        monkeypatch.delenv(var)
    with pytest.raises(uaa.CredentialsError, match="mxinfra:cloudfoundry.credentials"):
        SpaceRoleProvider().create(role_props(capi))


def test_password_grant_form_with_origin_and_refresh(capi, monkeypatch):
    for var in ("CF_CLIENT_ID", "CF_CLIENT_SECRET"):
        monkeypatch.delenv(var)
    capi.users.add(("deployer", PG_PASSWORD))
    capi.token_lifetime_requests = 2  # every token dies after two requests: 401, then a refresh
    p = SpaceRoleProvider()
    configure(p, capi, {"passwordGrant": {"username": "deployer", "password": PG_PASSWORD, "origin": "corp-idp"}, "uaaUrl": capi.url})
    for user in ("a@example.com", "b@example.com", "c@example.com"):
        p.create(role_props(capi, user))
    assert capi.grant_clients[0] == "cf" and capi.grants[0] == "password"
    assert "refresh_token" in capi.grants  # refreshed on expiry, with the refresh token
    assert len(capi.objects["roles"]) == 3


def test_configured_provider_pickles_without_the_secret(capi):
    """What the engine stores is the pickled provider (`__provider`): configure must not keep the secret in it."""
    from pulumi.dynamic.dynamic import serialize_provider

    p = AppProvider()
    configure(p, capi, {"clientId": CFG_CLIENT, "clientSecret": CFG_SECRET})
    assert uaa.resolve_credentials().client == (CFG_CLIENT, CFG_SECRET)  # configured ...
    pickled = base64.b64decode(serialize_provider(p))
    assert CFG_SECRET.encode() not in pickled and CFG_CLIENT.encode() not in pickled  # ... but not in the pickle


# --- config -----------------------------------------------------------------------------------------


def plan_rc(project, capsys, credentials):
    cfg = config("test", cf={"credentials": credentials})
    cfg["mxinfra:environments"]["test"].pop("adminPassword")
    project.stack("cf-test", cfg)
    rc = main(["plan", "-s", "cf-test", "-C", str(project.path)])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    "credentials,key,message",
    [
        ({"clientId": "c", "clientSecret": "plain"}, "mxinfra:cloudfoundry.credentials.clientSecret", "is stored in plain text"),
        ({"passwordGrant": {"username": "u", "password": "plain"}}, "mxinfra:cloudfoundry.credentials.passwordGrant.password", "is stored in plain text"),
        ({"clientId": "c"}, "mxinfra:cloudfoundry.credentials", "both clientId and clientSecret"),
        ({"clientId": "c", "clientSecret": {"secure": "v1:eA=="}, "passwordGrant": {"username": "u", "password": {"secure": "v1:eA=="}}}, "mxinfra:cloudfoundry.credentials", "not both"),
        ({"clientId": "c", "clientSecret": {"secure": "v1:eA=="}, "uaaUrl": "http://uaa.example.com"}, "mxinfra:cloudfoundry.credentials.uaaUrl", "https"),
    ],
)
def test_bad_credentials_config(project, capsys, credentials, key, message):
    rc, err = plan_rc(project, capsys, credentials)
    assert rc == 2 and key in err and message in err, err
    assert "'plain'" not in err  # the value itself is never echoed
    assert "Traceback" not in err


@pytest.mark.parametrize("credentials", [{"clientId": "c", "clientSecret": {"secure": "v1:eA=="}}, {"passwordGrant": {"username": "u", "password": {"secure": "v1:eA=="}, "origin": "corp-idp"}}])
def test_secret_credentials_plan(project, capsys, credentials):
    rc, err = plan_rc(project, capsys, credentials)
    assert rc == 0, err


# --- never in the state, the plan or a manifest -------------------------------------------------------


def _contains(node, needle: str) -> bool:
    for s in walk_inputs(node):
        if not isinstance(s, str):
            continue
        if needle in s:
            return True
        if len(s) > 64:  # the pickled provider (__provider) and anything else base64: look inside
            try:
                if needle.encode() in base64.b64decode(s, validate=True):
                    return True
            except (binascii.Error, ValueError):
                pass
    return False


@pytest.mark.parametrize("role", ["test", "production"])
def test_credentials_never_in_registered_inputs(pulumi_run, monkeypatch, role):
    """Every input every resource registers (what the engine stores in the state), the pickled providers
    included, read from the raw request the engine would receive."""
    from google.protobuf import json_format

    from mxinfra import mockrun
    from mxinfra.components import MendixApp

    sent = []
    real = mockrun._Recorder.RegisterResource

    def recording(self, request):
        sent.append(json.loads(json_format.MessageToJson(request.object)))
        return real(self, request)

    monkeypatch.setattr(mockrun._Recorder, "RegisterResource", recording)
    cfg = config(role, cf={"credentials": {"clientId": CFG_CLIENT, "clientSecret": CFG_SECRET}})
    d = prepare(RawConfig(cfg, frozenset({"mxinfra:environments", "mxinfra:cloudfoundry.credentials.clientSecret"})), project="orders", stack=f"cf-{role}", base_dir=ROOT)
    assert d.target_config.credentials.clientSecret == CFG_SECRET  # the program holds it ...
    pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=f"cf-{role}", project="orders")
    dynamic = [o for o in sent if "__provider" in o]
    assert len(dynamic) >= 5  # app, route, services, roles or grant expiry: every dynamic resource was seen
    for obj in sent:
        assert not _contains(obj, CFG_SECRET), obj.get("name")  # ... and no input carries it
    assert _contains(dynamic, "AppProvider")  # the search does look inside the pickles


def test_credentials_never_in_plan_or_manifest(project, capsys, tmp_path):
    out_dir = tmp_path / "out"  # (tmp_path holds the project and its stack file too)
    cfg = config("production", cf={"credentials": {"passwordGrant": {"username": "deployer", "password": PG_PASSWORD}}})
    project.stack("cf-production", cfg)
    with engine_secrets("mxinfra:environments", "mxinfra:cloudfoundry.credentials.passwordGrant.password"):
        rc = main(["plan", "-s", "cf-production", "-C", str(project.path), "--out", str(out_dir)])
        out = capsys.readouterr()
        rc_json = main(["plan", "-s", "cf-production", "-C", str(project.path), "--json"])
        out_json = capsys.readouterr()
    assert rc == 0 and rc_json == 0, out.err
    written = "".join(p.read_text() for p in out_dir.rglob("*") if p.is_file())
    assert "applications" in written
    for text in (out.out, out.err, written, out_json.out, out_json.err):
        assert PG_PASSWORD not in text
