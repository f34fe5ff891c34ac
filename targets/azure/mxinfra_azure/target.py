"""The `azure` target: Container Apps, PostgreSQL Flexible Server, Blob Storage, Key Vault, RBAC and PIM.
Cloud SDK imports happen only when deploying."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mxinfra.access import Permission
from mxinfra.artifacts import check_artifact
from mxinfra.errors import ConfigIssue
from mxinfra.checks import wide_ingress
from mxinfra.exposure import WIDE, is_wide
from mxinfra.target import AppContext, EnvironmentContext, Target

from .capabilities import CAPABILITIES
from . import render, sizes
from .config import GUID, PRINCIPAL, PRINCIPAL_TYPES, principal_parts, LOCATIONS, PRODUCTION_TIER, SUBNET_ID, AzureConfig, tier_of

if TYPE_CHECKING:
    from mxinfra.access import EnvironmentAccess
    from mxinfra.config import StackConfig
    from mxinfra.environments import Environment

LOCATION_KEY = "azure-native:location"
# An Entra object id with the kind of principal it is (role assignments need the principal type).
# PIM activation lasts 30 minutes to 24 hours, in half hours.
PIM_SESSION_SECONDS = (1800, 86400)
SUBNET_KEYS = ("infrastructureSubnetId", "databaseSubnetId", "privateEndpointSubnetId")


def location_of(stack: StackConfig) -> str:
    """The stack's `azure-native:location` (validated by check)."""
    return stack.block(LOCATION_KEY)


class AzureTarget(Target):
    """Mendix on Azure: per environment a resource group with Container Apps (leader and workers), a
    PostgreSQL Flexible Server, a storage account, a Key Vault and RBAC/PIM per permission."""

    name = "azure"
    config_model = AzureConfig
    sdk_modules = tuple(f"pulumi_azure_native.{m}" for m in ("app", "authorization", "dataprotection", "dbforpostgresql", "keyvault", "managedidentity", "monitor", "network", "operationalinsights", "privatedns", "resources", "storage"))
    # A release updates the leader's and workers' container apps (image, variables, replicas, tags).
    release_types = ("azure-native:app:ContainerApp",)
    capabilities = CAPABILITIES

    def check(self, stack: StackConfig, block: AzureConfig, file: str = "") -> list[ConfigIssue]:
        """Location, network ids, principals, sizes and the production rules (digest, private, no wide ingress)."""
        issues: list[ConfigIssue] = []
        location = stack.block(LOCATION_KEY)
        if not isinstance(location, str) or not location:
            issues.append(ConfigIssue(LOCATION_KEY, "required key is missing", "the region to deploy to, e.g. pulumi config set azure-native:location westeurope", file))
        elif location not in LOCATIONS:
            issues.append(ConfigIssue(LOCATION_KEY, f"{location!r} is not an Azure location", "a region name as `az account list-locations` prints it, e.g. westeurope or eastus2", file))
        vnet = block.vnetId.lower()
        for key in SUBNET_KEYS:
            m = SUBNET_ID.fullmatch(getattr(block, key))
            if m is not None and m["vnet"].lower() != vnet:
                issues.append(ConfigIssue(f"mxinfra:azure.{key}", "is not a subnet of vnetId", "use a subnet of the VNet named in vnetId", file))
        if block.infrastructureSubnetId.lower() == block.databaseSubnetId.lower():
            issues.append(ConfigIssue("mxinfra:azure.databaseSubnetId", "is the Container Apps environment's subnet", "the database needs its own subnet, delegated to Microsoft.DBforPostgreSQL/flexibleServers", file))
        issues += self._check_network(stack, block, file)
        low, high = PIM_SESSION_SECONDS
        production = [e for e in stack.environments if e.is_production]
        for i, entry in enumerate(stack.access):
            m = PRINCIPAL.fullmatch(entry.principal)
            if m is None:
                issues.append(
                    ConfigIssue(
                        f"mxinfra:access[{i}].principal",
                        f"{entry.principal!r} is not an Entra principal",
                        "use user:<object id>, group:<object id> or servicePrincipal:<object id> (a GUID)",
                        file,
                    )
                )
            seconds = entry.maxSessionSeconds
            if seconds is not None and not (low <= seconds <= high and seconds % 1800 == 0):
                issues.append(ConfigIssue(f"mxinfra:access[{i}].maxSessionSeconds", f"{seconds} seconds: PIM activations last {low} to {high} seconds in half hours", "use a multiple of 1800, e.g. 28800", file))
            if m is not None and m["kind"] == "servicePrincipal":
                envs = [e for e in production if "*" in entry.environments or e.name in entry.environments]
                # A service principal cannot activate a PIM eligibility (no MFA), so whatever it holds on
                # production stands: only api may (alerts too edits and deletes alert rules).
                beyond_api = [p for p in entry.permissions if p in {x.value for x in Permission} and p != Permission.API.value]
                if envs and beyond_api:
                    issues.append(
                        ConfigIssue(
                            f"mxinfra:access[{i}].principal",
                            f"a service principal cannot satisfy MFA, so on production environment {envs[0].name!r} it may hold only api, not {', '.join(beyond_api)}: that would be a standing assignment",
                            f"grant {', '.join(beyond_api)} on production to users or groups, who are PIM eligible, or drop production from this entry; a service principal gets only api, with allowOnProduction: true",
                            file,
                        )
                    )
        issues += stack.environment_key_issues(block.cpu, "mxinfra:azure.cpu", file)
        issues += self._check_from_backup(stack, block, file)
        for env in stack.environments:
            cpu = block.cpu.get(env.name)
            try:
                sizes.pick(env.memory_mb, cpu)
            except ValueError as e:
                key = f"mxinfra:azure.cpu.{env.name}" if cpu is not None else f"{env.config_path}.memory"
                issues.append(ConfigIssue(key, str(e), "valid pairs: 0.25 vCPU / 512 MB, 0.5 / 1024, ... 4 / 8192 (2048 MB per vCPU)", file))
        for env in stack.environments:
            # production and every promotion-gated environment run only what was reviewed (the core's rule)
            issues += check_artifact(env, block.image, "mxinfra:azure.image", file)
        if production:
            first = production[0].name
            if block.storage.publicNetworkAccess:
                issues.append(ConfigIssue("mxinfra:azure.storage.publicNetworkAccess", f"production environment {first!r} keeps its files reachable only through the private endpoint", "remove publicNetworkAccess (or set it false)", file))
            if block.database.skuName is not None and tier_of(block.database.skuName) == "Burstable":
                issues.append(ConfigIssue("mxinfra:azure.database.skuName", f"{block.database.skuName} is Burstable, which has no zone-redundant high availability (production)", "use a General Purpose or Memory Optimized SKU, e.g. Standard_D2ds_v5", file))
            if not block.internal and not block.allowPublicIngress:
                if not block.ipRestrictions:
                    issues.append(ConfigIssue("mxinfra:azure.ipRestrictions", f"no IP restrictions: production environment {first!r} would be open to the whole internet", "list the networks that need access, or opt in with allowPublicIngress: true", file))
                issues += wide_ingress(block.ipRestrictions, "mxinfra:azure.ipRestrictions", first, file)
        return issues

    @staticmethod
    def _check_network(stack: StackConfig, block: AzureConfig, file: str) -> list[ConfigIssue]:
        """Production needs a VNet declared production's (networkTier: production); other tiers refuse
        one; one stack never holds production and other tiers, whose environments would share its VNet."""
        # Within a VNet every subnet routes to every other by default: a deployer of a test environment
        # chooses the image its container apps run, which would then reach production's database and
        # private endpoints. Security rules between the subnets are not mxinfra's, so the tiers' VNets differ.
        issues = []
        production = [e.name for e in stack.environments if e.is_production]
        others = [e.name for e in stack.environments if not e.is_production]
        declared = f"networkTier: {PRODUCTION_TIER}"
        if production and others:
            issues.append(
                ConfigIssue(
                    "mxinfra:azure.vnetId",
                    f"production ({', '.join(production)}) and other environments ({', '.join(others)}) would share VNet {block.vnetId}: their deployers' code could reach production",
                    f"one stack per tier, each with its own VNet, production's declared with {declared}",
                    file,
                )
            )
            return issues
        if production and not block.production_network:
            issues.append(
                ConfigIssue(
                    "mxinfra:azure.networkTier",
                    f"production environment {production[0]!r} needs a VNet of its own, declared production's",
                    f"declare it with {declared}, and keep that VNet and its subnets for production alone",
                    file,
                )
            )
        if others and block.production_network:
            issues.append(
                ConfigIssue(
                    "mxinfra:azure.networkTier",
                    f"environment {others[0]!r} is not production, but VNet {block.vnetId} is declared production's by {declared}",
                    "use a non-production VNet, declared with networkTier: non-production; production's is for production only",
                    file,
                )
            )
        return issues

    @staticmethod
    def _check_from_backup(stack: StackConfig, block: AzureConfig, file: str) -> list[ConfigIssue]:
        """`database.fromBackup`: environments of the stack, each naming a backup id or a past point in time
        in UTC (the core's rule, as on AWS). The restored server's name always fits (database.in_service)."""
        from datetime import datetime, timezone

        from mxinfra.backups import parse_restore_point

        key = "mxinfra:azure.database.fromBackup"
        issues = stack.environment_key_issues(block.database.fromBackup, key, file)
        names = {e.name for e in stack.environments}
        now = datetime.now(timezone.utc)
        for name, value in block.database.fromBackup.items():
            if name not in names:
                continue
            try:
                parse_restore_point(value, now)
            except ValueError as e:
                issues.append(ConfigIssue(f"{key}.{name}", str(e), "copy the id from `mxinfra backup list`, write a past time in UTC (e.g. 2026-12-04T10:15:00Z), or remove the key to use the environment's own server", file))
        return issues

    def warnings(self, env: Environment, access: EnvironmentAccess, block: AzureConfig | None) -> list[str]:
        """What the plan should say about this environment on Azure."""
        out = []
        from mxinfra.backups import of_environment, opt_out_warning

        if (no_backups := opt_out_warning(env, of_environment(env))) is not None:
            out.append(no_backups)
        if block is None:
            return out
        from .database import aged_point_in_time

        if (aged := aged_point_in_time(block, env)) is not None:
            out.append(aged)
        if env.is_production and block.allowPublicIngress and not block.internal and (not block.ipRestrictions or any(is_wide(c) for c in block.ipRestrictions)):
            out.append(f"the production ingress is open to the whole internet, or a wide part of it ({WIDE}; allowPublicIngress: true)")
        if env.is_production and block.authenticationContext is None and any(r.mfa_required for r in access.roles()):
            out.append(
                "production's PIM activations check MFA with PIM's own rule, which takes the MFA claim of any earlier sign-in that "
                "refreshed tokens still carry: one MFA can cover activation after activation. Set mxinfra:azure.authenticationContext "
                "to a Conditional Access authentication context (c1 to c99) whose policy demands MFA at every sign-in (sign-in frequency: every time)"
            )
        for r in access.roles():
            if r.max_session_seconds and not r.mfa_required:
                out.append(f"{r.permission.value}: a standing role assignment has no session length; maxSessionSeconds applies only to PIM activations (mfa: true or production)")
        return out

    def artifact(self, env: Environment, block: AzureConfig | None) -> str | None:
        """The container image the environment runs: swapping it is a deployment."""
        return block.image if isinstance(block, AzureConfig) else None

    def app_image(self, env: Environment, block: AzureConfig | None) -> str | None:
        """The container image that runs the package: `pulumi up` verifies that it holds it."""
        return block.image if block is not None else None

    def artifact_key(self, env: Environment, block: AzureConfig | None) -> str | None:
        """Where the image is configured."""
        return "mxinfra:azure.image"

    def running(self, deployment: Any, environment: str, base_dir: Path) -> Any:
        """The environment's container apps (leader and workers), read from Azure Resource Manager with
        azure-identity's DefaultAzureCredential in the stack's subscription (running.py says what is
        compared). Unreadable: mxinfra.drift.CannotObserve (exit 2)."""
        from mxinfra.exposure import leader_follower_counts

        from . import running
        from .names import Names

        cfg: AzureConfig = deployment.target_config
        prepared = deployment.environment(environment)
        names = Names.of(prepared.naming, cfg.subscriptionId)
        workers = leader_follower_counts(prepared.environment.instances)[1] > 0
        return running.observe(environment, names.subscription, names.resource_group, names.leader_app, names.worker_app, workers_declared=workers)

    def backup_actions(self, deployment: Any, environment: str, base_dir: Path) -> Any:
        """`mxinfra backup` on the environment's server and files (backup_actions.ServerActions), with
        DefaultAzureCredential in the stack's subscription; a UserError where the environment has no
        backups to act on."""
        from mxinfra.backups import of_environment
        from mxinfra.errors import UserError

        from . import backups, database
        from .backup_actions import connect
        from .names import Names

        cfg: AzureConfig = deployment.target_config
        prepared = deployment.environment(environment)
        if not of_environment(prepared.environment).enabled:
            raise UserError(f"{environment} has no backups ({prepared.environment.config_path}.backups.enabled is false): its files have no point-in-time restore")
        names = Names.of(prepared.naming, cfg.subscriptionId)
        # The server the app uses (database.fromBackup): backups of it, not of an idle one, and a production
        # restore's backup first of the data it replaces.
        restored = database.in_service(cfg, environment, names.database_server)
        vault = backups.settings(prepared.environment).vault
        return connect(prepared.environment, names, server=restored.server if restored is not None else None, vault=vault)

    def deploy_app(self, ctx: AppContext) -> None:
        """Nothing is shared between environments; under a real engine, first the VNet's tier as Azure
        tags it (network.check_tier) and the release guard: what runs must be what the activity log
        records (mxinfra.drift), else nothing is declared."""
        from mxinfra.release_guard import guard, under_mocks

        if not under_mocks():
            from . import network

            network.check_tier(ctx.deployment)
            guard(ctx.deployment, lambda env: self.running(ctx.deployment, env, Path.cwd()), ctx.component, Path.cwd(), source="Azure Resource Manager")
        return None

    def deploy_environment(self, ctx: EnvironmentContext) -> Mapping[str, Any]:
        """Resource group, network, secrets, storage, database, backups, runtime and access of one environment."""
        from . import access, backups, database, keyvault, network, runtime, storage
        from .names import Names

        cfg: AzureConfig = ctx.config
        names = Names.of(ctx.naming, cfg.subscriptionId)
        location = location_of(ctx.deployment.config)
        group = network.resource_group(ctx, names, location)
        zone = network.database_zone(ctx, cfg, names, group)
        identity = keyvault.identity(ctx, names, group, location)
        vault = keyvault.create(ctx, cfg, names, group, location, identity)
        files = storage.create(ctx, cfg, names, group, location, identity, vault)
        db = database.create(ctx, cfg, names, group, location, zone, vault)
        kept = backups.create(ctx, names, group, location, files, db)
        rt = runtime.create(ctx, cfg, names, group, location, identity, vault, db, files)
        roles = access.create(ctx, cfg, names, group, rt)
        return {
            "url": rt.url,
            "resourceGroup": names.resource_group,
            "scope": names.scope,
            "roleDefinitionIds": roles.definition_ids,
            "roleScopes": roles.scopes,
            "containerApp": names.leader_app,
            "workerApp": names.worker_app if rt.worker is not None else None,
            # the server the app uses: the environment's, or the restored one database.fromBackup put in service
            "database": db.restored.server if db.restored is not None else names.database_server,
            "storageAccount": names.storage_account,
            "keyVault": names.key_vault,
            "size": {"cpu": rt.size.cpu, "memory": rt.size.memory},
            "fileStorageAuth": files.mode,
            "backupVault": names.backup_vault if kept is not None else None,
        }

    def render(self, env: str, resources: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
        """Role definitions, PIM policies, container app templates and the database under `out_dir/azure/<env>/`."""
        return render.write(env, resources, out_dir)

    def plan_notes(self, env: str, resources: Sequence[Mapping[str, Any]]) -> list[str]:
        """The size picked, leader and workers, storage authentication, database guards and access."""
        return render.notes(resources)
