"""The environment's resource group, the database's private DNS zone and private endpoints into the VNet."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_azure_native as azure

from mxinfra.target import EnvironmentContext

from .config import AzureConfig
from .names import Names


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


def lock(ctx: EnvironmentContext, kind: str, scope: Any, what: str) -> azure.authorization.ManagementLockByScope:
    """A CanNotDelete management lock on `scope`: Azure refuses to delete it until the lock is removed."""
    return azure.authorization.ManagementLockByScope(
        ctx.naming.logical(f"{kind}-lock"),
        scope=scope,
        lock_name=ctx.naming.physical(f"{kind}-no-delete", max_len=90),
        level="CanNotDelete",
        notes=f"{ctx.naming.prefix}: {what} (mxinfra: see the Azure target README to delete it for real)",
        opts=ctx.opts(),
    )


__all__ = ["database_zone", "lock", "private_endpoint", "pulumi", "resource_group"]
