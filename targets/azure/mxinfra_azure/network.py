"""The environment's resource group, the database's private DNS zone and private endpoints into the VNet.
And the VNet itself, checked at `pulumi up` (preview and update) against Azure: its tier tag and subnets.

The VNet is the organisation's (`vnetId`): mxinfra never creates one, so it never tags one either. Its
`mxinfra:tier` tag (the AWS target's VPC tag of the same name) says which tier it is for, and the
stack's environments must be of that tier, exactly as the AWS target checks its VPC:
- a production environment needs a VNet tagged `mxinfra:tier=production` (untagged is refused);
- a non-production environment refuses a VNet tagged `mxinfra:tier=production`;
- a declared `networkTier` must be the tag (AWS: every declared `vpcTags` entry must be on the VPC);
- each declared subnet must be one of the VNet's (AWS: the declared `vpcCidr` must be the VPC's).
The stack's own config is checked offline as well (`AzureTarget._check_network`); this check is what
stops a stack that declares itself `networkTier: non-production` on production's VNet.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azure_native as azure

from mxinfra.target import EnvironmentContext

from .config import PRODUCTION_TIER, SUBNET_ID, VNET_ID, AzureConfig
from .names import Names

# The tag that says which tier a VNet is for: the AWS target's VPC tier tag, with the same values.
TIER_TAG = "mxinfra:tier"
# VirtualNetworks_Get of the API version pulumi-azure-native 3 manages networks with (its
# network.VirtualNetwork and getVirtualNetwork: "Uses Azure REST API version 2024-05-01").
VNET_API_VERSION = "2024-05-01"
VNET_READ = "Microsoft.Network/virtualNetworks/read"
ARM_SCOPE = "https://management.azure.com/.default"  # what the management SDKs ask a token for
SUBNET_KEYS = ("infrastructureSubnetId", "databaseSubnetId", "privateEndpointSubnetId")


def resource_group(ctx: EnvironmentContext, names: Names, location: str) -> azure.resources.ResourceGroup:
    """The environment's own resource group: every resource of it, and the scope of its permissions."""
    return azure.resources.ResourceGroup(
        ctx.naming.logical("rg"),
        resource_group_name=names.resource_group,
        location=location,
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )


def database_zone(ctx: EnvironmentContext, cfg: AzureConfig, names: Names, group: azure.resources.ResourceGroup) -> azure.privatedns.PrivateZone:
    """The database's private DNS zone, linked to the VNet (Flexible Server registers its record there)."""
    n = ctx.naming
    zone = azure.privatedns.PrivateZone(
        n.logical("db-zone"),
        private_zone_name=names.database_zone,
        resource_group_name=group.name,
        location="global",
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )
    azure.privatedns.VirtualNetworkLink(
        n.logical("db-zone-link"),
        private_zone_name=zone.name,
        resource_group_name=group.name,
        virtual_network_link_name=n.physical("vnet", max_len=80),
        location="global",
        virtual_network={"id": cfg.vnetId},
        registration_enabled=False,
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )
    return zone


def private_endpoint(
    ctx: EnvironmentContext,
    cfg: AzureConfig,
    kind: str,
    group: azure.resources.ResourceGroup,
    location: str,
    target_id: Any,
    group_id: str,
    zone_id: str,
) -> azure.network.PrivateEndpoint:
    """A private endpoint of `target_id` (sub-resource `group_id`) in the private-endpoint subnet, registered in `zone_id`."""
    n = ctx.naming
    endpoint = azure.network.PrivateEndpoint(
        n.logical(f"{kind}-endpoint"),
        private_endpoint_name=n.physical(f"{kind}-pe", max_len=80),
        resource_group_name=group.name,
        location=location,
        subnet={"id": cfg.privateEndpointSubnetId},
        private_link_service_connections=[{"name": n.physical(kind, max_len=80), "private_link_service_id": target_id, "group_ids": [group_id]}],
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )
    azure.network.PrivateDnsZoneGroup(
        n.logical(f"{kind}-endpoint-dns"),
        private_endpoint_name=endpoint.name,
        resource_group_name=group.name,
        private_dns_zone_group_name="default",
        private_dns_zone_configs=[{"name": group_id, "private_dns_zone_id": zone_id}],
        opts=ctx.opts(),
    )
    return endpoint


def lock(ctx: EnvironmentContext, kind: str, scope: Any, what: str, *, retain: bool = False) -> azure.authorization.ManagementLockByScope:
    """A CanNotDelete management lock on `scope`: Azure refuses to delete it until the lock is removed;
    `retain`: it stays in Azure when Pulumi forgets it (with a resource that outlives the stack's declaration)."""
    return azure.authorization.ManagementLockByScope(
        ctx.naming.logical(f"{kind}-lock"),
        scope=scope,
        lock_name=ctx.naming.physical(f"{kind}-no-delete", max_len=90),
        level="CanNotDelete",
        notes=f"{ctx.naming.prefix}: {what} (mxinfra: see the Azure target README to delete it for real)",
        opts=ctx.opts(**({"retain_on_delete": True} if retain else {})),
    )


# --- the VNet's tier, as Azure says it -------------------------------------------------------------------


@dataclass(frozen=True)
class Vnet:
    """What the tier check needs of a VNet as ARM describes it."""

    id: str
    tags: Mapping[str, str]
    subnets: frozenset[str]  # its subnets' names, lowercased (ARM names are case-insensitive)


class VnetUnreadable(Exception):
    """The VNet could not be read from Azure: the check fails closed (the message says what to fix)."""


def tier_tag(tags: Mapping[str, str] | None) -> str | None:
    """The VNet's `mxinfra:tier` tag value (ARM tag names are case-insensitive), or None."""
    for key, value in (tags or {}).items():
        if key.lower() == TIER_TAG:
            return value
    return None


def _tag_command(vnet_id: str, tier: str) -> str:
    return f"az tag update --resource-id {vnet_id} --operation merge --tags {TIER_TAG}={tier}"


def vnet_problems(cfg: AzureConfig, environments: Iterable[tuple[str, str, bool]], vnet: Vnet) -> list[str]:
    """What is wrong with the VNet as Azure describes it for the stack's environments ((name, role,
    production) each), naming the config key, the VNet and both tiers. Pure."""
    tier = tier_tag(vnet.tags)
    has = f"Azure has it tagged {TIER_TAG}={tier}" if tier is not None else f"it carries no {TIER_TAG} tag in Azure"
    declared = f"networkTier: {cfg.networkTier}" if cfg.networkTier is not None else "no networkTier declared"
    out: list[str] = []
    envs = list(environments)
    production = [n for n, _, p in envs if p]
    others = [(n, r) for n, r, p in envs if not p]
    if production and tier != PRODUCTION_TIER:
        out.append(
            f"mxinfra:azure.vnetId: production environment {production[0]!r} would run in VNet {cfg.vnetId}, but {has}, "
            f"not {TIER_TAG}={PRODUCTION_TIER}: production runs only in a VNet tagged production's "
            f"(if this VNet is production's alone: {_tag_command(cfg.vnetId, PRODUCTION_TIER)})"
        )
    # Refused however the value is spelt: `Production` is no less production's.
    if others and tier is not None and tier.strip().lower() == PRODUCTION_TIER:
        name, role = others[0]
        out.append(
            f"mxinfra:azure.vnetId: VNet {cfg.vnetId} is production's (Azure has it tagged {TIER_TAG}={tier}), but environment "
            f"{name!r} is {role} ({declared}): its deployers' code would reach production's database and private endpoints; "
            "use a VNet of its own tier"
        )
    if cfg.networkTier is not None and tier != cfg.networkTier and not out:
        out.append(
            f"mxinfra:azure.networkTier: declares VNet {cfg.vnetId} {cfg.networkTier}'s, but {has}: tag the VNet of that tier "
            f"({_tag_command(cfg.vnetId, cfg.networkTier)}), or name the VNet that is"
        )
    for key in SUBNET_KEYS:
        m = SUBNET_ID.fullmatch(getattr(cfg, key))
        if m is not None and m["subnet"].lower() not in vnet.subnets:
            out.append(f"mxinfra:azure.{key}: VNet {cfg.vnetId} has no subnet {m['subnet']!r} in Azure")
    return out


def _arm_error(response: Any) -> str:
    """ARM's error code and message of a failed response, briefly."""
    try:
        err = response.json().get("error") or {}
    except Exception:  # noqa: BLE001 (not JSON: say what there is)
        err = {}
    code, message = err.get("code"), err.get("message")
    if code or message:
        return f"{code or '?'}: {str(message or '')[:500]}".rstrip(": ")
    return getattr(response, "reason", None) or "no error body"


def read_vnet(vnet_id: str, *, credential: Any = None, endpoint: str | None = None) -> Vnet:
    """The VNet `vnet_id` as ARM describes it: one `GET` (VirtualNetworks_Get, `VNET_API_VERSION`) with
    azure-core's ARM pipeline, the credential and endpoint `mxinfra drift` uses (running.py: azure-identity's
    DefaultAzureCredential, the public cloud). Unreadable: VnetUnreadable, naming what to fix."""
    from azure.core.exceptions import AzureError, ClientAuthenticationError, ServiceRequestError, ServiceResponseError
    from azure.core.pipeline import policies
    from azure.core.rest import HttpRequest
    from azure.mgmt.core import ARMPipelineClient
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

    from . import running

    m = VNET_ID.fullmatch(vnet_id)
    if m is None:  # the config validates it; never a request to a path it does not name
        raise VnetUnreadable(f"mxinfra:azure.vnetId: {vnet_id!r} is not a VNet resource id")
    head = f"mxinfra:azure.vnetId: the tier of VNet {vnet_id} could not be read from Azure to check it before `pulumi up` declares anything"
    rights = f"the identity running `pulumi up` needs {VNET_READ} on the VNet (e.g. the built-in Reader role at {vnet_id})"
    path = "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/virtualNetworks/{}".format(
        *(urllib.parse.quote(x, safe="") for x in (m["subscription"], m["group"], m["name"]))
    )
    try:
        cred = credential if credential is not None else running.default_credential()
        client: Any = ARMPipelineClient(
            base_url=endpoint or running.ARM,
            policies=[
                policies.RequestIdPolicy(),
                policies.HeadersPolicy(),
                policies.UserAgentPolicy(sdk_moniker="mxinfra-azure"),
                policies.ProxyPolicy(),
                policies.ContentDecodePolicy(),
                # a few quick retries: `pulumi up` waits on this before it declares anything
                policies.RetryPolicy(retry_total=2, retry_backoff_factor=0.2),
                ARMChallengeAuthenticationPolicy(cred, ARM_SCOPE),
                policies.CustomHookPolicy(),
                policies.NetworkTraceLoggingPolicy(),
                policies.DistributedTracingPolicy(),
                ARMHttpLoggingPolicy(),
            ],
        )
        request = HttpRequest("GET", client.format_url(path), params={"api-version": VNET_API_VERSION}, headers={"Accept": "application/json"})
        with client:
            response = client.send_request(request, connection_timeout=10, read_timeout=30)
            response.read()
    except ClientAuthenticationError as exc:
        raise VnetUnreadable(f"{head}: {running.credential_problem(exc, 'the read of the VNet', f'{running.SIGN_IN_WAYS}; {rights}')}") from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise VnetUnreadable(f"{head}: Azure Resource Manager cannot be reached ({running.first_line(exc)}): check the network") from None
    except AzureError as exc:
        raise VnetUnreadable(f"{head}: {type(exc).__name__} ({running.first_line(exc)})") from None
    status = response.status_code
    if status == 200:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise VnetUnreadable(f"{head}: Azure answered 200 without a VNet document")
        props = body.get("properties") or {}
        subnets = frozenset(str(s.get("name", "")).lower() for s in props.get("subnets") or [] if isinstance(s, dict))
        tags = {str(k): str(v) for k, v in (body.get("tags") or {}).items()}
        return Vnet(id=str(body.get("id") or vnet_id), tags=tags, subnets=subnets)
    said = _arm_error(response)
    if status in (401, 403):
        fix = rights
    elif status == 404:
        fix = f"no such VNet in subscription {m['subscription']}: mxinfra:azure.vnetId names the VNet of this stack's tier"
    else:
        fix = "see Azure's message"
    raise VnetUnreadable(f"{head}: Azure refused {VNET_READ} ({status} {said}): {fix}")


def check_tier(deployment: Any, *, credential: Any = None, endpoint: str | None = None) -> None:
    """Under a real engine (preview and update), before anything is declared: the VNet the stack names is
    read from Azure and must be of its environments' tier (`vnet_problems`). Refused, or unreadable (fail
    closed: the check cannot be skipped by an identity that cannot read the network): pulumi.RunError,
    which the engine prints as the message, without a traceback."""
    cfg: AzureConfig = deployment.target_config
    try:
        vnet = read_vnet(cfg.vnetId, credential=credential, endpoint=endpoint)
    except VnetUnreadable as e:
        raise pulumi.RunError(str(e)) from None
    envs = [(p.environment.name, p.environment.role.value, p.environment.is_production) for p in deployment.environments]
    problems = vnet_problems(cfg, envs, vnet)
    if problems:
        raise pulumi.RunError("the stack's VNet is not of its environments' tier (nothing is declared in it):\n  - " + "\n  - ".join(problems))


__all__ = ["check_tier", "database_zone", "lock", "private_endpoint", "pulumi", "read_vnet", "resource_group", "vnet_problems"]
