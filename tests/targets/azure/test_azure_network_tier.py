"""Issue 19, F14 on the azure target: tiers never share a network, checked against what exists.

The offline check (`AzureTarget._check_network`) holds a stack to what it says of itself: a test stack
that names production's VNet and declares it `networkTier: non-production` planned and deployed. Now,
under a real engine (`pulumi up`, preview and update; not `mxinfra plan`'s mock runtime), the target
reads the VNet from Azure Resource Manager before it declares anything (network.check_tier) and holds it
to its `mxinfra:tier` tag, the rule the AWS target applies to its VPC (mxinfra_aws.network.vpc_problems):
production needs a VNet tagged production's, every other tier refuses one, a declared tier must be the
tag; and every subnet the stack names must be the VNet's. What cannot be read stops the run (fail closed).

ARM is the loopback HTTPS double of the drift tests (test_azure_drift.Arm: ContainerApps_Get for the
release guard, which runs after this check), extended here with VirtualNetworks_Get: the request's path
and api-version must be the operation's of the version the check speaks (network.VNET_API_VERSION), and
every body served is validated against Microsoft's published description of that version (spec/, see
its README), closed against invented properties. The VNet documents are laid out as the description's
own example VirtualNetworkGetWithSubnetDelegation.json.
"""

from __future__ import annotations

import copy
import importlib
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from mxinfra.cli import main
from mxinfra.config import RawConfig
from mxinfra.deployment import prepare

from azhelpers import SUB, VNET, config, deployment
from registry import free_port
from test_azure_drift import REGISTRY, SPEC, TOKEN, Arm, NoCredential, StaticCredential, serving, stack_file

import mxinfra_azure.running as running
from mxinfra_azure import network
from mxinfra_azure.network import TIER_TAG, VNET_API_VERSION, Vnet, check_tier, vnet_problems

VNET_SPEC = SPEC / "network/resource-manager/Microsoft.Network/stable/2024-05-01/virtualNetwork.json"
VNET_PATH = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/virtualNetworks/{virtualNetworkName}"
VNET_DOC = REGISTRY.contents(VNET_SPEC.resolve().as_uri())
VNET_GET = VNET_DOC["paths"][VNET_PATH]["get"]
VNET_RE = re.compile("^" + re.sub(r"\\\{[A-Za-z]+\\\}", "([^/]+)", re.escape(VNET_PATH)) + "$", re.IGNORECASE)
PRODUCTION = {TIER_TAG: "production", "owner": "network-team"}
NON_PRODUCTION = {TIER_TAG: "non-production", "owner": "network-team"}
TEST_STACK, PRODUCTION_STACK = "azure-test", "azure-production"


def vnet_validator(status: int) -> Draft202012Validator:
    """The schema of VirtualNetworks_Get's response `status` (an error: the operation's default, CloudError)."""
    response = VNET_GET["responses"].get(str(status)) or VNET_GET["responses"]["default"]
    ref = urllib.parse.urljoin(VNET_SPEC.resolve().as_uri(), response["schema"]["$ref"])
    return Draft202012Validator({"$ref": ref}, registry=REGISTRY)


def check_vnet_body(status: int, body: Any) -> None:
    errors = sorted(vnet_validator(status).iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        raise AssertionError(f"not a VirtualNetworks_Get {status} body of API version {VNET_DOC['info']['version']}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]))


def vnet_document(vnet_id: str, tags: dict[str, str], subnets: tuple[str, ...] = ("apps", "db", "endpoints")) -> dict[str, Any]:
    """The organisation's VNet as ARM returns it, with the three subnets the stacks name (delegated as
    the README asks), laid out as the API description's example VirtualNetworkGetWithSubnetDelegation.json."""
    delegated = {"apps": "Microsoft.App/environments", "db": "Microsoft.DBforPostgreSQL/flexibleServers"}
    out = []
    for i, name in enumerate(subnets):
        props: dict[str, Any] = {
            "provisioningState": "Succeeded",
            "addressPrefix": f"10.20.{i}.0/24",
            "delegations": [],
            "privateEndpointNetworkPolicies": "Disabled",
            "privateLinkServiceNetworkPolicies": "Enabled",
        }
        if name in delegated:
            props["delegations"] = [
                {
                    "name": "delegation",
                    "id": f"{vnet_id}/subnets/{name}/delegations/delegation",
                    "etag": 'W/"6b5d1f2c-0000-4000-8000-00000000000a"',
                    "type": "Microsoft.Network/virtualNetworks/subnets/delegations",
                    "properties": {"provisioningState": "Succeeded", "serviceName": delegated[name], "actions": ["Microsoft.Network/virtualNetworks/subnets/join/action"]},
                }
            ]
        out.append({"name": name, "id": f"{vnet_id}/subnets/{name}", "etag": 'W/"6b5d1f2c-0000-4000-8000-00000000000a"', "type": "Microsoft.Network/virtualNetworks/subnets", "properties": props})
    return {
        "name": vnet_id.rsplit("/", 1)[-1],
        "id": vnet_id,
        "etag": 'W/"6b5d1f2c-0000-4000-8000-00000000000a"',
        "type": "Microsoft.Network/virtualNetworks",
        "location": "westeurope",
        "tags": dict(tags),
        "properties": {
            "provisioningState": "Succeeded",
            "resourceGuid": "5d9e3b0a-0000-4000-8000-00000000000b",
            "addressSpace": {"addressPrefixes": ["10.20.0.0/16"]},
            "subnets": out,
            "virtualNetworkPeerings": [],
            "enableDdosProtection": False,
            "privateEndpointVNetPolicies": "Disabled",
        },
    }


class NetworkArm(Arm):
    """The drift tests' ARM double, answering VirtualNetworks_Get as well: `vnets` (lowercased id ->
    document) is what exists; `deny_network` answers its 403 as ARM does to an identity without the read."""

    def __init__(self, ca: Path, cert: Path, key: Path) -> None:
        super().__init__(ca, cert, key)
        self.vnets: dict[str, dict[str, Any]] = {}
        self.deny_network: str | None = None

    def put_vnet(self, document: dict[str, Any]) -> None:
        check_vnet_body(200, document)
        self.vnets[document["id"].lower()] = copy.deepcopy(document)

    def answer(self, raw: str, auth: str | None) -> tuple[int, dict[str, Any]]:
        url = urllib.parse.urlsplit(raw)
        m = VNET_RE.match(url.path)
        if m is None:
            return super().answer(raw, auth)  # ContainerApps_Get, for the release guard
        query = urllib.parse.parse_qs(url.query)
        self.requests.append({"path": url.path, "query": query, "auth": auth})
        if query.get("api-version") != [VNET_DOC["info"]["version"]]:
            self.failures.append(f"not a {VNET_GET['operationId']} request of API version {VNET_DOC['info']['version']}: GET {raw}")
            return self.vnet_error(400, "InvalidApiVersionParameter", f"The api-version '{query.get('api-version')}' is invalid.")
        sub, group, name = (urllib.parse.unquote(x) for x in m.groups())
        if auth != f"Bearer {TOKEN}":
            return self.vnet_error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing or invalid.")
        vnet_id = f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Network/virtualNetworks/{name}"
        if self.deny_network is not None:
            return self.vnet_error(
                403,
                "AuthorizationFailed",
                f"The client '{self.deny_network}' with object id '0a1b2c3d-0000-4000-8000-000000000009' does not have authorization to perform action "
                f"'Microsoft.Network/virtualNetworks/read' over scope '{vnet_id}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            )
        if vnet_id.lower() not in self.vnets:
            return self.vnet_error(404, "ResourceNotFound", f"The Resource 'Microsoft.Network/virtualNetworks/{name}' under resource group '{group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
        return self.serve(200, self.vnets[vnet_id.lower()], check_vnet_body)

    def vnet_error(self, status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
        return self.error(status, code, message, check_vnet_body)

    def vnet_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if VNET_RE.match(r["path"])]


@pytest.fixture
def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkArm]:
    """The double (test_azure_drift.serving); ARM for running.py and network.py."""

    def make(ca: Path, cert: Path, key: Path) -> NetworkArm:
        double = NetworkArm(ca, cert, key)
        double.groups = set()  # no environment deployed yet: the release guard finds nothing running
        return double

    yield from serving(tmp_path, monkeypatch, make)


def stack_config(role: str, **azure: Any) -> dict[str, Any]:
    """A stack of one environment of `role` on the VNet the tests' stacks name (azhelpers.VNET)."""
    return config(role, azure=azure or None)


def up(project: Any, pulumi_run: Any, monkeypatch: pytest.MonkeyPatch, cfg: dict[str, Any], stack: str) -> Any:
    """`pulumi up` of `cfg` as under a real engine (preview; the release guard and the tier check run)."""
    monkeypatch.setattr(importlib.import_module("mxinfra.release_guard"), "under_mocks", lambda: False)
    monkeypatch.chdir(project.path)
    project.stack(stack, stack_file(cfg))
    from mxinfra.components import MendixApp

    d = prepare(RawConfig(cfg, frozenset({"mxinfra:environments"})), project="orders", stack=stack, base_dir=project.path)
    return pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=stack, project="orders")


def refused(project: Any, pulumi_run: Any, monkeypatch: pytest.MonkeyPatch, cfg: dict[str, Any], stack: str) -> str:
    import pulumi

    with pytest.raises(pulumi.RunError) as e:
        up(project, pulumi_run, monkeypatch, cfg, stack)
    said = str(e.value)
    assert "Traceback" not in said
    return " ".join(said.split())


# --- the reviewer's bypass: a test stack on production's VNet ------------------------------------------------


def test_a_test_stack_on_productions_vnet_declared_non_production_is_refused_at_up(arm, project, pulumi_run, monkeypatch):
    """The stack says `networkTier: non-production`; Azure says the VNet is production's: refused before
    anything is declared or read (no container app GET), naming the key, the VNet and both tiers."""
    arm.put_vnet(vnet_document(VNET, PRODUCTION))
    said = refused(project, pulumi_run, monkeypatch, stack_config("test", networkTier="non-production"), TEST_STACK)
    assert said.startswith("the stack's VNet is not of its environments' tier (nothing is declared in it): - "), said
    assert (
        f"mxinfra:azure.vnetId: VNet {VNET} is production's (Azure has it tagged mxinfra:tier=production), but environment 'test' is test "
        "(networkTier: non-production): its deployers' code would reach production's database and private endpoints; use a VNet of its own tier"
    ) in said, said
    assert [r["path"] for r in arm.requests] == [VNET]  # one GET of the VNet; nothing else asked
    (request,) = arm.requests
    assert request["query"]["api-version"] == [VNET_API_VERSION] and request["auth"] == f"Bearer {TOKEN}"


def test_the_bypass_is_refused_without_a_declared_tier_and_however_the_tag_is_spelt(arm, project, pulumi_run, monkeypatch):
    arm.put_vnet(vnet_document(VNET, {"MXINFRA:Tier": "Production"}))  # ARM tag names are case-insensitive
    said = refused(project, pulumi_run, monkeypatch, stack_config("acceptance"), "azure-acceptance")
    assert f"mxinfra:azure.vnetId: VNet {VNET} is production's (Azure has it tagged mxinfra:tier=Production), but environment 'acceptance' is acceptance (no networkTier declared)" in said, said


# --- a VNet of the stack's own tier passes ---------------------------------------------------------------------


def test_a_vnet_tagged_with_its_own_tier_passes(arm, project, pulumi_run, monkeypatch):
    arm.put_vnet(vnet_document(VNET, PRODUCTION))
    res = up(project, pulumi_run, monkeypatch, config("production"), PRODUCTION_STACK)
    assert any(r.type == "azure-native:app:ContainerApp" for r in res)
    # the tier check, then the release guard's reads of what runs (nothing yet; then every app of the group)
    assert [r["path"].rsplit("/", 1)[-1] for r in arm.requests] == ["spoke", "orders-production", "orders-production-worker", "containerApps"]


def test_a_non_production_vnet_passes_a_non_production_stack(arm, project, pulumi_run, monkeypatch):
    arm.put_vnet(vnet_document(VNET, NON_PRODUCTION))
    res = up(project, pulumi_run, monkeypatch, stack_config("test", networkTier="non-production"), TEST_STACK)
    assert any(r.type == "azure-native:app:ContainerApp" for r in res)
    assert len(arm.vnet_requests()) == 1


# --- production never runs in a VNet not tagged production's; an untagged VNet as on AWS ------------------------------


def test_production_on_an_untagged_vnet_is_refused(arm, project, pulumi_run, monkeypatch):
    """AWS: production needs its VPC tagged mxinfra:tier=production. Untagged, the VNet may be any
    tier's: an untagged VNet shared by production and another stack's test environment is never reached."""
    arm.put_vnet(vnet_document(VNET, {"owner": "network-team"}))
    said = refused(project, pulumi_run, monkeypatch, config("production"), PRODUCTION_STACK)
    assert (
        f"mxinfra:azure.vnetId: production environment 'production' would run in VNet {VNET}, but it carries no mxinfra:tier tag in Azure, "
        f"not mxinfra:tier=production: production runs only in a VNet tagged production's (if this VNet is production's alone: "
        f"az tag update --resource-id {VNET} --operation merge --tags mxinfra:tier=production)"
    ) in said, said
    assert [r["path"] for r in arm.requests] == [VNET]


def test_production_on_a_non_production_vnet_is_refused(arm, project, pulumi_run, monkeypatch):
    arm.put_vnet(vnet_document(VNET, NON_PRODUCTION))
    said = refused(project, pulumi_run, monkeypatch, config("production"), PRODUCTION_STACK)
    assert f"production environment 'production' would run in VNet {VNET}, but Azure has it tagged mxinfra:tier=non-production, not mxinfra:tier=production" in said, said


def test_an_untagged_vnet_is_as_on_aws_for_other_tiers(arm, project, pulumi_run, monkeypatch):
    """AWS: a non-production stack that declares no tier tag may use an untagged VPC; one that declares
    `vpcTags` needs them on the VPC. Azure: `networkTier` is that declaration."""
    arm.put_vnet(vnet_document(VNET, {}))
    res = up(project, pulumi_run, monkeypatch, stack_config("test"), TEST_STACK)
    assert any(r.type == "azure-native:app:ContainerApp" for r in res)
    said = refused(project, pulumi_run, monkeypatch, stack_config("test", networkTier="non-production"), TEST_STACK)
    assert (
        f"mxinfra:azure.networkTier: declares VNet {VNET} non-production's, but it carries no mxinfra:tier tag in Azure: tag the VNet of that tier "
        f"(az tag update --resource-id {VNET} --operation merge --tags mxinfra:tier=non-production), or name the VNet that is"
    ) in said, said


def test_a_subnet_the_vnet_does_not_have_is_refused(arm, project, pulumi_run, monkeypatch):
    arm.put_vnet(vnet_document(VNET, NON_PRODUCTION, subnets=("apps", "endpoints")))
    said = refused(project, pulumi_run, monkeypatch, stack_config("test", networkTier="non-production"), TEST_STACK)
    assert f"mxinfra:azure.databaseSubnetId: VNet {VNET} has no subnet 'db' in Azure" in said, said
    assert "infrastructureSubnetId" not in said and "privateEndpointSubnetId" not in said


# --- Azure cannot be asked: the run stops, saying what to fix (fail closed) -----------------------------------------


def test_access_denied_stops_up_naming_the_read_it_needs(arm, project, pulumi_run, monkeypatch):
    arm.put_vnet(vnet_document(VNET, PRODUCTION))
    arm.deny_network = "rita@example.com"
    said = refused(project, pulumi_run, monkeypatch, config("production"), PRODUCTION_STACK)
    assert said.startswith(
        f"mxinfra:azure.vnetId: the tier of VNet {VNET} could not be read from Azure to check it before `pulumi up` declares anything: "
        "Azure refused Microsoft.Network/virtualNetworks/read (403 AuthorizationFailed: The client 'rita@example.com' with object id"
    ), said
    assert said.endswith(f"the identity running `pulumi up` needs Microsoft.Network/virtualNetworks/read on the VNet (e.g. the built-in Reader role at {VNET})"), said
    assert len(arm.requests) == 1  # stopped there: the release guard never ran


def test_a_vnet_that_does_not_exist_stops_up(arm, project, pulumi_run, monkeypatch):
    said = refused(project, pulumi_run, monkeypatch, config("production"), PRODUCTION_STACK)
    assert "Azure refused Microsoft.Network/virtualNetworks/read (404 ResourceNotFound: The Resource 'Microsoft.Network/virtualNetworks/spoke' under resource group 'network-rg' was not found." in said, said
    assert said.endswith(f"no such VNet in subscription {SUB}: mxinfra:azure.vnetId names the VNet of this stack's tier"), said


def test_no_credential_stops_up_before_anything_is_sent(arm, project, pulumi_run, monkeypatch):
    monkeypatch.setattr(running, "default_credential", NoCredential)
    said = refused(project, pulumi_run, monkeypatch, config("production"), PRODUCTION_STACK)
    assert "could not be read from Azure to check it before `pulumi up` declares anything: no Azure credential could sign in (DefaultAzureCredential failed to retrieve a token" in said, said
    assert "sign in (`az login`" in said and "needs Microsoft.Network/virtualNetworks/read on the VNet" in said
    assert arm.requests == []


def test_a_token_arm_refuses_is_said_plainly(arm):
    class Other(StaticCredential):
        def get_token(self, *scopes: str, **_: Any) -> Any:
            from azure.core.credentials import AccessToken

            return AccessToken("a-token-of-another-tenant", int(time.time()) + 3600)

    import pulumi

    with pytest.raises(pulumi.RunError) as e:
        check_tier(deployment(config("production")), credential=Other(), endpoint=arm.url)
    assert "Azure refused Microsoft.Network/virtualNetworks/read (401 AuthenticationFailed: Authentication failed." in str(e.value), str(e.value)


def test_arm_out_of_reach_stops_up_quickly(project, pulumi_run, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setattr(running, "ARM", f"https://127.0.0.1:{port}")
    monkeypatch.setattr(running, "default_credential", StaticCredential)
    started = time.monotonic()
    said = refused(project, pulumi_run, monkeypatch, config("production"), PRODUCTION_STACK)
    assert said.startswith(f"mxinfra:azure.vnetId: the tier of VNet {VNET} could not be read from Azure to check it before `pulumi up` declares anything: Azure Resource Manager cannot be reached ("), said
    assert said.endswith("): check the network"), said
    assert time.monotonic() - started < 15  # a few quick retries, not minutes


# --- `mxinfra plan` is offline: no ARM call, as on AWS -------------------------------------------------------------


def test_plan_does_not_ask_azure(arm, project, capsys):
    """The plan runs under the mock runtime: the VNet is not read (the AWS target's VPC invoke has no
    answer there either, and its plan says nothing of it); the offline declaration check still runs."""
    arm.put_vnet(vnet_document(VNET, PRODUCTION))
    cfg = stack_config("test", networkTier="non-production")
    for body in cfg["mxinfra:environments"].values():
        body.pop("adminPassword", None)
    project.stack(TEST_STACK, cfg)
    rc = main(["plan", "-s", TEST_STACK, "-C", str(project.path)])
    out = capsys.readouterr()
    assert rc == 0 and "Traceback" not in out.err, out.err
    assert arm.requests == []
    assert "mxinfra:tier" not in out.out + out.err  # nothing claimed about the real VNet's tag


# --- the rule, pure -------------------------------------------------------------------------------------------------


def test_the_rule_is_the_aws_vpc_rule():
    """mxinfra_aws.network.vpc_problems, on a VNet: production needs the production tag; other tiers refuse
    it; a declared tier must be the tag; an undeclared non-production stack accepts any other tag or none."""
    prod = deployment(config("production")).target_config
    test = deployment(stack_config("test")).target_config
    declared = deployment(stack_config("test", networkTier="non-production")).target_config
    subnets = frozenset({"apps", "db", "endpoints"})

    def vnet(tags: dict[str, str]) -> Vnet:
        return Vnet(VNET, tags, subnets)

    production, testing = [("production", "production", True)], [("test", "test", False)]
    assert vnet_problems(prod, production, vnet(PRODUCTION)) == []
    assert vnet_problems(prod, production, vnet({}))
    assert vnet_problems(prod, production, vnet({TIER_TAG: "Production"}))  # exactly production's, as on AWS
    assert vnet_problems(test, testing, vnet({})) == []
    assert vnet_problems(test, testing, vnet({TIER_TAG: "shared-services"})) == []
    assert vnet_problems(test, testing, vnet({TIER_TAG: "production"}))
    assert vnet_problems(declared, testing, vnet(NON_PRODUCTION)) == []
    assert vnet_problems(declared, testing, vnet({}))
    assert len(vnet_problems(declared, testing, vnet({TIER_TAG: "production"}))) == 1  # one reason, said once
    assert vnet_problems(declared, testing, vnet({"Mxinfra:Tier": "non-production"})) == []  # tag names: any case
    assert vnet_problems(declared, testing, Vnet(VNET, NON_PRODUCTION, frozenset({"apps", "db"})))  # a subnet missing


# --- the double --------------------------------------------------------------------------------------------------------


def test_the_double_serves_only_what_the_api_description_allows():
    good = vnet_document(VNET, PRODUCTION)
    check_vnet_body(200, good)
    for broken in (
        lambda d: d["properties"].update(subnet=[]),  # no such property
        lambda d: d["properties"]["subnets"][0]["properties"].update(addressPrefix=["10.20.0.0/24"]),  # a string, not a list
        lambda d: d.update(tags={TIER_TAG: 1}),
        lambda d: d["properties"]["subnets"][0]["properties"].update(privateEndpointNetworkPolicies="Off"),
        lambda d: d["properties"].update(provisioningState="Done"),
    ):
        doc = copy.deepcopy(good)
        broken(doc)
        with pytest.raises(AssertionError, match="not a VirtualNetworks_Get 200 body"):
            check_vnet_body(200, doc)
    check_vnet_body(403, {"error": {"code": "AuthorizationFailed", "message": "x"}})
    with pytest.raises(AssertionError):
        check_vnet_body(403, {"error": {"code": "AuthorizationFailed", "msg": "x"}})


def test_the_check_speaks_the_copied_api_version_and_pulumis():
    from pulumi_azure_native.network import get_virtual_network

    assert VNET_API_VERSION == VNET_DOC["info"]["version"]
    assert f"Uses Azure REST API version {VNET_API_VERSION}." in (get_virtual_network.__doc__ or "")
    assert network.VNET_READ == "Microsoft.Network/virtualNetworks/read"
