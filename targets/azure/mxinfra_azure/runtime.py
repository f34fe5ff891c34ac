"""The runtime: Log Analytics, the VNet-integrated Container Apps environment, and the leader's and
workers' container apps of the Docker-buildpack image.

The buildpack picks the cluster leader (scheduled events, database sync) by CF_INSTANCE_INDEX; Container
Apps replicas have no ordinal, so every replica would lead. An environment therefore runs the leader app
(exactly one replica, index 0) and, with two or more instances, a worker app (the rest, index 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azure_native as azure

from mxinfra.exposure import leader_follower_counts
from mxinfra.settings import AzureBlobStorage, Bindings, DatabaseParts, buildpack_env, instance_env
from mxinfra.target import EnvironmentContext

from . import keyvault, sizes, storage
from .config import AzureConfig
from .database import DB_NAME, PORT, Database
from .keyvault import Vault, secret_name
from .names import Names
from .storage import Files

CONTAINER = "mendix"
RUNTIME_PORT = 8080
WORKLOAD_PROFILE = "Consumption"
# Log Analytics retention in days, by role.
LOG_RETENTION_DAYS = {"test": 30, "acceptance": 90, "production": 365}
LOGS_DESTINATION = "azure-monitor"
# The log categories of Microsoft.App/managedEnvironments that carry an app's logs (Azure Monitor's
# supported logs reference): its containers' stdout and stderr, and the environment's platform events.
# The others are Spring Apps' and dynamic sessions', which an environment of mxinfra never runs.
LOG_CATEGORIES = ("ContainerAppConsoleLogs", "ContainerAppSystemLogs")
# Container Apps' probe limits: initialDelaySeconds <= 60, periodSeconds <= 240, failureThreshold <= 10.
# Starting a runtime (database sync included) takes minutes: the startup probe allows 60 + 10 x 60 s.
STARTUP_PROBE = {"type": "Startup", "http_get": {"path": "/", "port": RUNTIME_PORT, "scheme": "HTTP"}, "initial_delay_seconds": 60, "period_seconds": 60, "failure_threshold": 10, "timeout_seconds": 5}
READINESS_PROBE = {"type": "Readiness", "http_get": {"path": "/", "port": RUNTIME_PORT, "scheme": "HTTP"}, "period_seconds": 10, "failure_threshold": 3, "timeout_seconds": 5}
LIVENESS_PROBE = {"type": "Liveness", "http_get": {"path": "/", "port": RUNTIME_PORT, "scheme": "HTTP"}, "period_seconds": 30, "failure_threshold": 5, "timeout_seconds": 5}
# Built-in role: pull images from a container registry.
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"


@dataclass(frozen=True)
class KeyVaultRef:
    """A secret the container reads from the vault (through a Container Apps secret)."""

    uri: Any  # the vault secret's versioned URI


@dataclass
class Runtime:
    """What the environment exports from its runtime."""

    leader: azure.app.ContainerApp
    worker: azure.app.ContainerApp | None
    environment: azure.app.ManagedEnvironment
    size: sizes.AppSize
    url: Any


def jdbc_url(host: str) -> str:
    """The JDBC URL with certificate verification (the host name and the chain, against the JVM's trust store)."""
    return f"jdbc:postgresql://{host}:{PORT}/{DB_NAME}?sslmode=verify-full&sslfactory=org.postgresql.ssl.DefaultJavaSSLFactory"


def create(
    ctx: EnvironmentContext,
    cfg: AzureConfig,
    names: Names,
    group: azure.resources.ResourceGroup,
    location: str,
    ident: azure.managedidentity.UserAssignedIdentity,
    vault: Vault,
    db: Database,
    files: Files,
) -> Runtime:
    """Every runtime resource of the environment."""
    n, env, tags = ctx.naming, ctx.environment, dict(ctx.tags)
    size = sizes.pick(env.memory_mb, cfg.cpu.get(env.name))
    workspace = azure.operationalinsights.Workspace(
        n.logical("logs"),
        workspace_name=names.workspace,
        resource_group_name=group.name,
        location=location,
        sku={"name": "PerGB2018"},
        retention_in_days=LOG_RETENTION_DAYS[env.role.value],
        tags=tags,
        opts=ctx.opts(),
    )
    managed_env = azure.app.ManagedEnvironment(
        n.logical("env"),
        environment_name=names.environment,
        resource_group_name=group.name,
        location=location,
        vnet_configuration={"infrastructure_subnet_id": cfg.infrastructureSubnetId, "internal": cfg.internal},
        workload_profiles=[{"name": WORKLOAD_PROFILE, "workload_profile_type": WORKLOAD_PROFILE}],
        zone_redundant=env.is_production,
        # Logs go through Azure Monitor (the diagnostic setting below), never with the workspace's shared
        # key: `log-analytics` needs the key in the environment's definition, so every `pulumi up` would
        # read it (workspaces/sharedKeys/action), a secret the deploy permission must not read.
        app_logs_configuration={"destination": LOGS_DESTINATION},
        tags=tags,
        opts=ctx.opts(),
    )
    azure.monitor.DiagnosticSetting(
        n.logical("env-logs"),
        name=n.physical("env-logs", max_len=80),
        resource_uri=managed_env.id,
        workspace_id=workspace.id,
        # Resource-specific tables (ContainerAppConsoleLogs, ContainerAppSystemLogs), not AzureDiagnostics.
        log_analytics_destination_type="Dedicated",
        logs=[{"category": c, "enabled": True} for c in LOG_CATEGORIES],
        opts=ctx.opts(),
    )

    # The core decides every variable; this target only decides how each secret one reaches the container.
    bindings = Bindings(
        admin_password=ctx.admin_password,
        database=DatabaseParts(
            type="PostgreSQL",
            host=f"{db.host}:{PORT}",
            name=DB_NAME,
            user=KeyVaultRef(db.user_uri),
            password=KeyVaultRef(db.password_uri),
            require_tls=True,
        ),
        storage=AzureBlobStorage(
            account_name=names.storage_account,
            container=storage.CONTAINER,
            account_key=KeyVaultRef(files.account_key_uri) if files.account_key_uri is not None else None,
            endpoint=files.endpoint,
            use_default_credential=files.mode == "managed-identity",
        ),
    )
    variables = buildpack_env(ctx.settings, bindings)
    plain: dict[str, Any] = dict(variables.plain)
    plain["MXRUNTIME_DatabaseJdbcUrl"] = jdbc_url(db.host)
    if files.mode == "managed-identity":
        # DefaultAzureCredential picks the user-assigned identity by its client id.
        plain["AZURE_CLIENT_ID"] = ident.client_id
    refs: dict[str, Any] = {}
    for key, value in variables.secret.items():
        refs[key] = value.uri if isinstance(value, KeyVaultRef) else keyvault.put(ctx, vault, key, value)
    secrets = [{"name": secret_name(k), "key_vault_url": uri, "identity": ident.id} for k, uri in sorted(refs.items())]

    waits: list[Any] = [vault.reader, *files.grants]
    registries = None
    if cfg.registryId is not None:
        pull = azure.authorization.RoleAssignment(
            n.logical("identity-acr-pull"),
            role_assignment_name=names.assignment_guid("identity", "acr-pull"),
            scope=cfg.registryId,
            role_definition_id=names.role_definition_id(ACR_PULL),
            principal_id=ident.principal_id,
            principal_type="ServicePrincipal",
            description=f"{n.prefix}: the runtime pulls its image",
            opts=ctx.opts(),
        )
        waits.append(pull)
        registries = [{"server": cfg.image_registry, "identity": ident.id}]

    ingress = {
        "external": True,
        "allow_insecure": False,
        "target_port": RUNTIME_PORT,
        "transport": "auto",
        "ip_security_restrictions": [
            {"name": f"allow-{i}", "description": f"{n.prefix}: allowed range", "ip_address_range": cidr, "action": "Allow"} for i, cidr in enumerate(cfg.ipRestrictions)
        ],
        "traffic": [{"latest_revision": True, "weight": 100}],
    }
    leaders, workers = leader_follower_counts(env.instances)

    def app(logical: str, name: str, index: int, replicas: int) -> azure.app.ContainerApp:
        environment = [{"name": k, "value": v} for k, v in sorted({**plain, **instance_env(index)}.items())]
        environment += [{"name": k, "secret_ref": secret_name(k)} for k in sorted(refs)]
        return azure.app.ContainerApp(
            n.logical(logical),
            container_app_name=name,
            resource_group_name=group.name,
            location=location,
            managed_environment_id=managed_env.id,
            workload_profile_name=WORKLOAD_PROFILE,
            identity={"type": "UserAssigned", "user_assigned_identities": [ident.id]},
            configuration={
                "active_revisions_mode": "Single",
                "ingress": ingress,
                "secrets": secrets,
                "registries": registries,
            },
            template={
                "containers": [
                    {
                        "name": CONTAINER,
                        "image": cfg.image,
                        "env": environment,
                        "resources": {"cpu": size.cpu, "memory": size.memory},
                        "probes": [STARTUP_PROBE, READINESS_PROBE, LIVENESS_PROBE],
                    }
                ],
                # Exactly `replicas`: never more leaders than one, never autoscaled away from the config.
                "scale": {"min_replicas": replicas, "max_replicas": max(replicas, 1)},
                "termination_grace_period_seconds": 120,
            },
            tags=dict(ctx.release_tags),  # what runs the package names it; nothing else changes per release
            opts=ctx.opts(depends_on=waits),
        )

    worker = app("worker", names.worker_app, 1, workers) if workers else None
    leader = app("app", names.leader_app, 0, leaders)
    ctx.runtime_resource(leader)
    if worker is not None:
        ctx.runtime_resource(worker)
    # An app's FQDN is its name under the environment's default domain.
    url = pulumi.Output.concat("https://", names.leader_app, ".", managed_env.default_domain)
    return Runtime(leader, worker, managed_env, size, url)


def _echo_identities(type_: str, _name: str, state: dict[str, Any]) -> dict[str, Any]:
    """Under the mock runtime: ARM returns user-assigned identities as a map of id -> details, while the
    SDK takes a list of ids; the echoed state gets the map shape the SDK's output types expect."""
    identity = state.get("identity")
    if type_.startswith("azure-native:") and isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
        ids = identity["userAssignedIdentities"]
        if all(isinstance(i, str) for i in ids):
            state = {**state, "identity": {**identity, "userAssignedIdentities": {i: {} for i in ids}}}
    return state


def _register_echo_adjuster() -> None:
    from mxinfra.mockrun import add_echo_adjuster

    add_echo_adjuster(_echo_identities)


_register_echo_adjuster()
