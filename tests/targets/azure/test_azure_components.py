"""The Azure target under the mock runtime: the exact child contract per role, every security promise."""

from __future__ import annotations

import json

import pytest

from mxinfra.components import ENVIRONMENT_TYPE, MendixApp
from mxinfra.testing import Computed, Sealed
from mxinfra_azure import pim, roles
from mxinfra_azure.names import Names, stable_guid

from azhelpers import ALICE, DIGEST, LOCATION, ONCALL, PEOPLE, ROBOT, SECRET_VALUES, SUB, TENANT, VNET, config, deployment, env_of, rbac_allows, walk
from azure_operations import PROVIDERS, known_operations

ROLES = ("test", "acceptance", "production")
T = "azure-native:"


_CACHE: dict[str, tuple] = {}


def run(pulumi_run, role: str, **kw):
    """One mock run per role and config (the default ones are shared by the tests of this module)."""
    key = json.dumps([role, kw], sort_keys=True)
    if key not in _CACHE:
        d = deployment(config(role, **kw))
        res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="azure-production", project="orders")
        _CACHE[key] = (d, res)
    return _CACHE[key]


@pytest.fixture(params=ROLES)
def role_run(request, pulumi_run):
    return (request.param, *run(pulumi_run, request.param))


def scope(role: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/orders-{role}-rg"


def restores(role: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/orders-{role}-restores-rg"


SUBSCRIPTION = f"/subscriptions/{SUB}"
DB_SUBNET = f"{VNET}/subnets/db"  # azhelpers' databaseSubnetId
VNET_GROUP = VNET.split("/providers/", 1)[0]
SUBNET_JOIN = "Microsoft.Network/virtualNetworks/subnets/join/action"
ZONE_JOIN = "Microsoft.Network/privateDnsZones/join/action"
# The roles held outside the environment's resource group, where: deploy's operation-status read, its VNet
# read, backups' join of the database subnet.
ELSEWHERE = {"deploy-status": SUBSCRIPTION, "deploy-network": VNET, "backups-network": DB_SUBNET, "backups-restores": restores("production")}


def grant_parts(r) -> tuple[str, str]:
    """(role name, principal id) of a `<prefix>-grant-<role>-<principal>` or `-eligible-` resource."""
    rest = r.name.split("-grant-" if "-grant-" in r.name else "-eligible-", 1)[1]
    principal = r.inputs["principalId"]
    assert rest.endswith("-" + principal), r.name
    return rest[: -len(principal) - 1], principal


def test_every_child_has_the_environment_as_parent_and_the_expected_type(role_run):
    role, _, res = role_run
    env = res.one(ENVIRONMENT_TYPE)
    kids = {r.name.removeprefix(f"orders-{role}-"): r.type for r in res.children(env)}
    expected = {
        "rg": f"{T}resources:ResourceGroup",
        "db-zone": f"{T}privatedns:PrivateZone",
        "db-zone-link": f"{T}privatedns:VirtualNetworkLink",
        "identity": f"{T}managedidentity:UserAssignedIdentity",
        "vault": f"{T}keyvault:Vault",
        "vault-endpoint": f"{T}network:PrivateEndpoint",
        "vault-endpoint-dns": f"{T}network:PrivateDnsZoneGroup",
        "identity-secrets-user": f"{T}authorization:RoleAssignment",
        "files": f"{T}storage:StorageAccount",
        "files-blob-service": f"{T}storage:BlobServiceProperties",
        "files-container": f"{T}storage:BlobContainer",
        "files-endpoint": f"{T}network:PrivateEndpoint",
        "files-endpoint-dns": f"{T}network:PrivateDnsZoneGroup",
        "identity-files": f"{T}authorization:RoleAssignment",
        "db-password": "random:index/randomPassword:RandomPassword",
        "db": f"{T}dbforpostgresql:Server",
        "db-require-secure-transport": f"{T}dbforpostgresql:Configuration",
        "db-ssl-min-protocol-version": f"{T}dbforpostgresql:Configuration",
        "db-database": f"{T}dbforpostgresql:Database",
        "secret-mxruntime-databasepassword": f"{T}keyvault:Secret",
        "secret-mxruntime-databaseusername": f"{T}keyvault:Secret",
        "secret-admin-password": f"{T}keyvault:Secret",
        "logs": f"{T}operationalinsights:Workspace",
        "env": f"{T}app:ManagedEnvironment",
        "env-logs": f"{T}monitor:DiagnosticSetting",
        "identity-acr-pull": f"{T}authorization:RoleAssignment",
        "app": f"{T}app:ContainerApp",
        "role-deploy": f"{T}authorization:RoleDefinition",
        "role-deploy-status": f"{T}authorization:RoleDefinition",
        "role-monitor": f"{T}authorization:RoleDefinition",
        "role-backups": f"{T}authorization:RoleDefinition",
        "role-deploy-network": f"{T}authorization:RoleDefinition",
        "role-alerts": f"{T}authorization:RoleDefinition",
        "role-manage": f"{T}authorization:RoleDefinition",
        "activity": "pulumi-python:dynamic:Resource",
    }
    # a restore's subnet join: below production (on production the platform identity restores)
    if role != "production":
        expected["role-backups-network"] = f"{T}authorization:RoleDefinition"
    assert ("role-backups-network" in kids) == (role != "production")
    for name, type_ in expected.items():
        assert kids.get(name) == type_, (name, kids.get(name))
    locks = {k for k, v in kids.items() if v == f"{T}authorization:ManagementLockByScope"}
    assert locks == {"test": set(), "acceptance": {"db-lock"}, "production": {"db-lock", "files-lock", "backup-vault-lock"}}[role]
    assert ("worker" in kids) == (role == "production")
    assert ("secret-license-key" in kids) == (role == "production")
    # every Azure resource sits in the environment's own group and location
    for r in res.descendants(env):
        if r.type.startswith(T) and "location" in r.inputs and r.type not in (f"{T}privatedns:PrivateZone", f"{T}privatedns:VirtualNetworkLink"):
            assert r.inputs["location"] == LOCATION, r.name


def test_resource_group_is_the_environments_scope(role_run):
    role, _, res = role_run
    rg = res.named(f"orders-{role}-rg")
    assert rg.inputs["resourceGroupName"] == f"orders-{role}-rg"
    assert rg.inputs["tags"]["mxinfra:environment"] == role
    # and a group of its own for a restore's new servers (the backups permission writes servers there alone)
    env = res.one(ENVIRONMENT_TYPE)
    other = res.named(f"orders-{role}-restores-rg")
    assert {r.name for r in res.of_type(f"{T}resources:ResourceGroup")} == {rg.name, other.name}
    assert other.inputs["resourceGroupName"] == f"orders-{role}-restores-rg" and other.inputs["tags"] == rg.inputs["tags"] and other.parent == env.urn


def test_key_vault(role_run):
    role, _, res = role_run
    vault = res.one(f"{T}keyvault:Vault")
    p = vault.inputs["properties"]
    assert p["enableRbacAuthorization"] is True
    assert p["enablePurgeProtection"] is True and p["enableSoftDelete"] is True
    assert p["publicNetworkAccess"] == "Disabled"
    assert p["networkAcls"] == {"defaultAction": "Deny", "bypass": "None"}
    assert p["tenantId"] == TENANT
    assert "accessPolicies" not in p
    pe = res.named(f"orders-{role}-vault-endpoint")
    assert pe.inputs["subnet"] == {"id": f"{VNET}/subnets/endpoints"}
    assert pe.inputs["privateLinkServiceConnections"][0]["groupIds"] == ["vault"]
    dns = res.named(f"orders-{role}-vault-endpoint-dns")
    assert dns.inputs["privateDnsZoneConfigs"][0]["privateDnsZoneId"].endswith("/privateDnsZones/privatelink.vaultcore.azure.net")
    reader = res.named(f"orders-{role}-identity-secrets-user")
    assert reader.inputs["roleDefinitionId"] == f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6"
    assert reader.inputs["principalType"] == "ServicePrincipal"
    assert reader.inputs["scope"] == f"orders-{role}-vault-id" or reader.inputs["scope"] == vault.inputs.get("id", reader.inputs["scope"])


def test_secrets_are_vault_secrets_only(role_run):
    role, _, res = role_run
    secrets = res.of_type(f"{T}keyvault:Secret")
    for s in secrets:
        # every value is a Pulumi secret
        assert isinstance(s.inputs["properties"], Sealed) or isinstance(s.inputs["properties"]["value"], Sealed), s.name
    # no secret value in any app definition (or anything but the vault secrets and the password resource)
    for r in res:
        if r.type in (f"{T}keyvault:Secret", "pulumi-python:dynamic:Resource"):
            continue
        for leaf in walk(r.inputs):
            for value in SECRET_VALUES:
                assert value not in str(leaf), (r.name, value)
    for app in res.of_type(f"{T}app:ContainerApp"):
        cfg = app.input("configuration")
        for s in cfg["secrets"]:
            assert set(s) == {"name", "keyVaultUrl", "identity"}, s
            assert s["identity"] == f"orders-{role}-identity-id"
        assert all("value" not in s for s in cfg["secrets"])


def test_storage(role_run):
    role, _, res = role_run
    acct = res.one(f"{T}storage:StorageAccount")
    i = acct.inputs
    assert i["kind"] == "StorageV2"
    assert i["allowBlobPublicAccess"] is False
    assert i["minimumTlsVersion"] == "TLS1_2"
    assert i["enableHttpsTrafficOnly"] is True
    assert i["publicNetworkAccess"] == "Disabled" and i["networkRuleSet"]["defaultAction"] == "Deny"
    # the example runtime (10.24) supports UseDefaultAzureCredential: no shared key at all
    assert i["allowSharedKeyAccess"] is False
    assert len(i["accountName"]) <= 24 and i["accountName"].isalnum() and i["accountName"].islower()
    blob = res.one(f"{T}storage:BlobServiceProperties")
    assert blob.inputs["isVersioningEnabled"] is True
    assert blob.inputs["deleteRetentionPolicy"]["enabled"] is True
    assert blob.inputs["containerDeleteRetentionPolicy"]["enabled"] is True
    c = res.one(f"{T}storage:BlobContainer")
    assert c.inputs["publicAccess"] == "None"
    grant = res.named(f"orders-{role}-identity-files")
    assert grant.inputs["roleDefinitionId"].endswith("/ba92f5b4-2d11-453d-a403-e96b0029c9fe")
    assert grant.inputs["scope"] == c.inputs.get("id", grant.inputs["scope"])
    assert (acct.protect, acct.retain_on_delete) == ((True, True) if role == "production" else (False, False))
    assert (c.protect, c.retain_on_delete) == ((True, True) if role == "production" else (False, False))
    if role == "production":
        lock = res.named("orders-production-files-lock")
        assert lock.inputs["level"] == "CanNotDelete"


def test_database(role_run):
    role, _, res = role_run
    db = res.one(f"{T}dbforpostgresql:Server")
    i = db.inputs
    assert i["network"]["publicNetworkAccess"] == "Disabled"
    assert i["network"]["delegatedSubnetResourceId"] == f"{VNET}/subnets/db"
    assert i["network"]["privateDnsZoneArmResourceId"] == f"orders-{role}-db-zone-id"
    # generated: a secret, unknown in a preview (test_azure_update checks its value once known)
    assert i["administratorLoginPassword"] == Sealed(Computed())
    # the daily tier of the backups block (the core's default: 14 days), on every role
    assert i["backup"]["backupRetentionDays"] == 14
    assert i["backup"]["geoRedundantBackup"] == ("Enabled" if role == "production" else "Disabled")
    assert i["highAvailability"]["mode"] == ("ZoneRedundant" if role == "production" else "Disabled")
    assert i["sku"]["tier"] == ("GeneralPurpose" if role == "production" else "Burstable")
    guarded = role in ("acceptance", "production")
    assert (db.protect, db.retain_on_delete) == (guarded, guarded)
    tls = {r.inputs["configurationName"]: r.inputs["value"] for r in res.of_type(f"{T}dbforpostgresql:Configuration")}
    assert tls == {"require_secure_transport": "ON", "ssl_min_protocol_version": "TLSv1.2"}
    zone = res.one(f"{T}privatedns:PrivateZone")
    assert zone.inputs["privateZoneName"].endswith(".postgres.database.azure.com")
    link = res.one(f"{T}privatedns:VirtualNetworkLink")
    assert link.inputs["virtualNetwork"] == {"id": VNET} and link.inputs["registrationEnabled"] is False
    if guarded:
        lock = res.named(f"orders-{role}-db-lock")
        assert lock.inputs["level"] == "CanNotDelete" and lock.inputs["scope"] == f"orders-{role}-db-id"


def test_runtime_environment(role_run):
    role, _, res = role_run
    env = res.one(f"{T}app:ManagedEnvironment")
    assert env.inputs["vnetConfiguration"] == {"infrastructureSubnetId": f"{VNET}/subnets/apps", "internal": False}
    # logs through Azure Monitor: no workspace key in the environment's definition
    assert env.inputs["appLogsConfiguration"] == {"destination": "azure-monitor"}
    diagnostics = res.one(f"{T}monitor:DiagnosticSetting")
    assert diagnostics.inputs["resourceUri"] == f"orders-{role}-env-id"
    assert diagnostics.inputs["workspaceId"] == f"orders-{role}-logs-id"
    assert diagnostics.inputs["logAnalyticsDestinationType"] == "Dedicated"
    assert diagnostics.inputs["logs"] == [{"category": "ContainerAppConsoleLogs", "enabled": True}, {"category": "ContainerAppSystemLogs", "enabled": True}]
    assert set(diagnostics.dependencies) >= {env.urn, res.one(f"{T}operationalinsights:Workspace").urn}
    assert env.input("workloadProfiles") == [{"name": "Consumption", "workloadProfileType": "Consumption"}]
    assert env.input("zoneRedundant") is (role == "production")
    ws = res.one(f"{T}operationalinsights:Workspace")
    assert ws.inputs["retentionInDays"] == {"test": 30, "acceptance": 90, "production": 365}[role]


def test_container_apps_leader_and_workers(role_run):
    role, d, res = role_run
    apps = {a.name: a for a in res.of_type(f"{T}app:ContainerApp")}
    leader = apps[f"orders-{role}-app"]
    expected_apps = {f"orders-{role}-app"} | ({f"orders-{role}-worker"} if role == "production" else set())
    assert set(apps) == expected_apps
    assert leader.input("template.scale") == {"minReplicas": 1, "maxReplicas": 1}
    assert env_of(leader)["CF_INSTANCE_INDEX"] == {"name": "CF_INSTANCE_INDEX", "value": "0"}
    if role == "production":
        worker = apps["orders-production-worker"]
        assert worker.input("template.scale") == {"minReplicas": 2, "maxReplicas": 2}
        assert env_of(worker)["CF_INSTANCE_INDEX"]["value"] == "1"
        # otherwise identical
        a, b = env_of(leader), env_of(worker)
        a.pop("CF_INSTANCE_INDEX"), b.pop("CF_INSTANCE_INDEX")
        assert a == b
        assert leader.input("template.containers.0.image") == f"acme.azurecr.io/orders@{DIGEST}"
    for app in apps.values():
        ingress = app.input("configuration.ingress")
        assert ingress["allowInsecure"] is False and ingress["external"] is True and ingress["targetPort"] == 8080
        assert [r["ipAddressRange"] for r in ingress["ipSecurityRestrictions"]] == ["198.51.100.0/24"]
        assert all(r["action"] == "Allow" for r in ingress["ipSecurityRestrictions"])
        assert app.input("identity") == {"type": "UserAssigned", "userAssignedIdentities": [f"orders-{role}-identity-id"]}
        assert app.input("configuration.registries") == [{"server": "acme.azurecr.io", "identity": f"orders-{role}-identity-id"}]
        c = app.input("template.containers.0")
        assert c["resources"] == {"cpu": 1, "memory": "2Gi"}
        probes = {p["type"]: p for p in c["probes"]}
        assert set(probes) == {"Startup", "Readiness", "Liveness"}
        startup = probes["Startup"]
        assert startup["initialDelaySeconds"] + startup["periodSeconds"] * startup["failureThreshold"] >= 600
        assert startup["failureThreshold"] <= 10 and startup["periodSeconds"] <= 240 and startup["initialDelaySeconds"] <= 60
        env = env_of(app)
        assert env["MEMORY_LIMIT"]["value"] == "2048M"
        assert env["MXRUNTIME_DatabaseUseSsl"]["value"] == "true"
        assert "sslmode=verify-full" in env["MXRUNTIME_DatabaseJdbcUrl"]["value"]
        assert env["MXRUNTIME_com_mendix_storage_azure_UseDefaultAzureCredential"]["value"] == "true"
        assert env["MXRUNTIME_com_mendix_storage_azure_BlobEndpoint"]["value"].startswith("https://")
        assert "MXRUNTIME_com_mendix_storage_azure_AccountKey" not in env
        secret_vars = {k for k, v in env.items() if "secretRef" in v}
        expected = {"ADMIN_PASSWORD", "MXRUNTIME_DatabasePassword", "MXRUNTIME_DatabaseUserName"}
        if role == "production":
            expected |= {"LICENSE_KEY", "MX_Encryption_EncryptionKey"}
        assert secret_vars == expected
        assert all("value" not in env[k] for k in secret_vars)
        names = {s["name"] for s in app.input("configuration.secrets")}
        assert {env[k]["secretRef"] for k in secret_vars} == names
        assert set(app.dependencies) >= {res.named(f"orders-{role}-identity-secrets-user").urn, res.named(f"orders-{role}-identity-acr-pull").urn}


def test_account_key_mode_for_an_older_runtime(pulumi_run):
    _, res = run(pulumi_run, "acceptance", azure={"storage": {"managedIdentity": False}})
    acct = res.one(f"{T}storage:StorageAccount")
    assert acct.inputs["allowSharedKeyAccess"] is True
    env = env_of(res.named("orders-acceptance-app"))
    assert env["MXRUNTIME_com_mendix_storage_azure_AccountKey"] == {"name": "MXRUNTIME_com_mendix_storage_azure_AccountKey", "secretRef": "mxruntime-com-mendix-storage-azure-accountkey"}
    assert "MXRUNTIME_com_mendix_storage_azure_UseDefaultAzureCredential" not in env
    assert res.named("orders-acceptance-secret-mxruntime-com-mendix-storage-azure-accountkey").type == f"{T}keyvault:Secret"


def test_storage_auth_follows_the_runtime_version():
    from mxinfra.mda import RuntimeVersion
    from mxinfra_azure.config import AzureConfig
    from mxinfra_azure.storage import auth_mode

    from azhelpers import AZURE_BLOCK

    cfg = AzureConfig(**AZURE_BLOCK)
    assert auth_mode(cfg, RuntimeVersion(10, 24, 15, 93102))[0] == "managed-identity"
    assert auth_mode(cfg, RuntimeVersion(10, 10, 0))[0] == "managed-identity"
    assert auth_mode(cfg, RuntimeVersion(10, 9, 9))[0] == "account-key"
    assert auth_mode(cfg, RuntimeVersion(9, 24, 0))[0] == "account-key"


def test_custom_roles_at_the_environment_scope(role_run):
    role, _, res = role_run
    n = Names.of(__import__("mxinfra.naming", fromlist=["Naming"]).Naming("orders", role), SUB)
    for perm in ("deploy", "monitor", "backups", "alerts", "manage", "api"):
        rd = res.named(f"orders-{role}-role-{perm}")
        i = rd.inputs
        assert i["scope"] == scope(role) and i["assignableScopes"] == [scope(role)]
        assert i["roleDefinitionId"] == n.role_definition_guid(perm)
        actions = roles.ACTIONS[perm]
        if perm == "manage" and role == "production":
            # no role assignment writes on production: they would bypass PIM (issue 19, F4)
            actions = ["Microsoft.Authorization/roleAssignments/read", "Microsoft.Authorization/roleDefinitions/read"]
        if perm == "backups" and role == "production":
            # nothing only a restore needs: RBAC cannot make a restore wait for a backup, the platform identity restores
            restoring = {
                "Microsoft.Network/privateDnsZones/join/action",
                "Microsoft.DataProtection/backupVaults/backupInstances/validateRestore/action",
                "Microsoft.DataProtection/backupVaults/backupInstances/restore/action",
                "Microsoft.Storage/storageAccounts/read",
                "Microsoft.Storage/storageAccounts/restoreBlobRanges/action",
            }
            assert restoring <= set(actions)
            actions = [a for a in actions if a not in restoring]
        assert i["permissions"] == [{"actions": actions, "notActions": roles.NOT_ACTIONS.get(perm, []), "dataActions": [], "notDataActions": []}]
        assert i["roleType"] == "CustomRole"
    # api: the built-in Reader's reads (`*/read`) but the ones that return the workspace's keys, which
    # Reader takes in (Log Analytics Reader excludes them, as monitor's role does)
    from azhelpers import rbac_allows

    api = res.named(f"orders-{role}-role-api").inputs
    assert api["permissions"][0]["actions"] == ["*/read"]
    for key in ("Microsoft.OperationalInsights/workspaces/sharedKeys/read", "Microsoft.OperationalInsights/workspaces/sharedKeys/action", "Microsoft.OperationalInsights/workspaces/storageInsightConfigs/read"):
        assert not rbac_allows(api, key), key
    assert rbac_allows(api, "Microsoft.App/containerApps/read") and rbac_allows(api, "Microsoft.OperationalInsights/workspaces/read")
    # nor the action groups' receivers (webhook and Logic App URLs carry tokens)
    assert not rbac_allows(api, "Microsoft.Insights/actionGroups/read")
    # its assignments are named anew (api was the built-in Reader): Pulumi replaces them, rather than PUT another role on a name
    n_ = Names.of(__import__("mxinfra.naming", fromlist=["Naming"]).Naming("orders", role), SUB)
    for g in res.of_type(f"{T}authorization:RoleAssignment"):
        if "-grant-api-" in g.name:
            oid = g.inputs["principalId"]
            assert g.inputs["roleAssignmentName"] == n_.assignment_guid("api", oid, "custom") != n_.assignment_guid("api", oid)


def test_non_production_grants_are_assignments(pulumi_run):
    _, res = run(pulumi_run, "acceptance")
    grants = {r.name.removeprefix("orders-acceptance-grant-"): r.inputs for r in res.of_type(f"{T}authorization:RoleAssignment") if "-grant-" in r.name}
    assert set(grants) == {f"deploy-{PEOPLE}", f"deploy-status-{PEOPLE}", f"deploy-network-{PEOPLE}", f"monitor-{PEOPLE}", f"backups-{PEOPLE}", f"backups-network-{PEOPLE}", f"backups-restores-{PEOPLE}", f"monitor-{ONCALL}", f"alerts-{ONCALL}", f"manage-{ALICE}", f"api-{ALICE}", f"api-{ROBOT}"}
    # deploy's operation-status read, to the same principals, at the subscription
    status = grants.pop(f"deploy-status-{PEOPLE}")
    assert status["scope"] == SUBSCRIPTION and status["principalType"] == "Group"
    assert status["roleDefinitionId"] == "orders-acceptance-role-deploy-status-id"
    # deploy's read of the stack's VNet (its tier, checked before every pulumi up): on the VNet alone,
    # by a role defined in the VNet's resource group that reads virtual networks and nothing else
    network = grants.pop(f"deploy-network-{PEOPLE}")
    assert network["scope"] == VNET and network["principalType"] == "Group"
    assert network["roleDefinitionId"] == "orders-acceptance-role-deploy-network-id"
    rd = res.named("orders-acceptance-role-deploy-network").inputs
    vnet_group = VNET.split("/providers/", 1)[0]
    assert rd["scope"] == vnet_group and rd["assignableScopes"] == [vnet_group]
    assert rd["permissions"] == [{"actions": ["Microsoft.Network/virtualNetworks/read"], "notActions": [], "dataActions": [], "notDataActions": []}]
    # backups' join of the database subnet (a restore's new server): on that subnet alone (its own test below)
    subnet = grants.pop(f"backups-network-{PEOPLE}")
    assert subnet["scope"] == DB_SUBNET and subnet["principalType"] == "Group"
    assert subnet["roleDefinitionId"] == "orders-acceptance-role-backups-network-id"
    # backups' server writes (a restore's new server): in the restores group alone
    made = grants.pop(f"backups-restores-{PEOPLE}")
    assert made["scope"] == restores("acceptance") and made["roleDefinitionId"] == "orders-acceptance-role-backups-restores-id"
    assert grants[f"deploy-{PEOPLE}"]["principalType"] == "Group"
    assert grants[f"manage-{ALICE}"]["principalType"] == "User"
    assert grants[f"api-{ROBOT}"]["principalType"] == "ServicePrincipal"
    assert grants[f"api-{ALICE}"]["roleDefinitionId"] == "orders-acceptance-role-api-id"
    for g in grants.values():
        assert g["scope"] == scope("acceptance")
    assert not res.of_type(f"{T}authorization:PimRoleEligibilitySchedule")
    assert not res.of_type(f"{T}authorization:RoleManagementPolicy")


def test_manage_is_constrained_to_the_other_mxinfra_roles(pulumi_run):
    _, res = run(pulumi_run, "acceptance")
    g = res.named(f"orders-acceptance-grant-manage-{ALICE}").inputs
    assert g["conditionVersion"] == "2.0"
    n = Names.of(__import__("mxinfra.naming", fromlist=["Naming"]).Naming("orders", "acceptance"), SUB)
    others = sorted([n.role_definition_guid(p) for p in ("deploy", "monitor", "backups", "alerts", "api")])
    assert g["condition"] == roles.manage_condition(others)
    assert n.role_definition_guid("manage") not in g["condition"]
    for guid in others:
        assert g["condition"].count(guid) == 2  # once for write, once for delete
    assert "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]" in g["condition"]
    assert "@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId]" in g["condition"]


def test_production_people_are_eligible_never_standing(pulumi_run):
    _, res = run(pulumi_run, "production")
    standing = [r for r in res.of_type(f"{T}authorization:RoleAssignment") if "-grant-" in r.name]
    # only the service principal's api (allowOnProduction) stands; people are eligible
    assert [(r.inputs["principalId"], r.inputs["principalType"]) for r in standing] == [(ROBOT, "ServicePrincipal")]
    eligible = {grant_parts(r)[::-1] for r in res.of_type(f"{T}authorization:PimRoleEligibilitySchedule")}
    assert eligible == {(PEOPLE, "deploy"), (PEOPLE, "deploy-status"), (PEOPLE, "deploy-network"), (PEOPLE, "monitor"), (PEOPLE, "backups"), (ONCALL, "monitor"), (ONCALL, "alerts"), (ALICE, "manage"), (ALICE, "api")}
    for r in res.of_type(f"{T}authorization:PimRoleEligibilitySchedule"):
        name = grant_parts(r)[0]
        # deploy's operation-status read is at the subscription, its VNet read on the VNet, backups' subnet join
        # on the database subnet, under the same PIM rules
        assert r.inputs["scope"] == ELSEWHERE.get(name, scope("production"))
        assert r.inputs["scheduleInfo"] == {"expiration": {"type": "NoExpiration"}}
        policy = res.named(f"orders-production-role-{name}-policy")
        assert policy.urn in r.dependencies


def test_production_pim_policies(pulumi_run):
    _, res = run(pulumi_run, "production")
    policies = {r.name: r for r in res.of_type(f"{T}authorization:RoleManagementPolicy")}
    assert set(policies) == {f"orders-production-role-{p}-policy" for p in ("deploy", "deploy-status", "deploy-network", "monitor", "backups", "alerts", "manage", "api")}
    for name, p in policies.items():
        where = ELSEWHERE.get(name.removeprefix("orders-production-role-").removesuffix("-policy"), scope("production"))
        assert p.inputs["scope"] == where
        rules = {r["id"]: r for r in p.inputs["rules"]}
        mfa = rules["Enablement_EndUser_Assignment"]
        assert mfa["ruleType"] == "RoleManagementPolicyEnablementRule"
        assert "MultiFactorAuthentication" in mfa["enabledRules"]
        assert mfa["target"] == {"caller": "EndUser", "operations": ["All"], "level": "Assignment"}
        exp = rules["Expiration_EndUser_Assignment"]
        assert exp["ruleType"] == "RoleManagementPolicyExpirationRule"
        assert exp["isExpirationRequired"] is True and exp["maximumDuration"] == "PT8H"
        admin = rules["Expiration_Admin_Assignment"]
        assert admin["isExpirationRequired"] is True and admin["target"]["caller"] == "Admin"
        assert "MultiFactorAuthentication" in rules["Enablement_Admin_Assignment"]["enabledRules"]
        lookup = res.named(name.removesuffix("-policy") + "-policy-lookup")
        assert lookup.type == "pulumi-python:dynamic:Resource"
        assert lookup.inputs["scope"] == where
        assert lookup.urn in p.dependencies


def test_an_authentication_context_sends_every_production_activation_through_conditional_access(pulumi_run):
    """PIM's own MFA rule takes the MFA claim of any earlier sign-in (refreshed tokens keep it): one MFA could
    cover activation after activation, so the plan says so. With mxinfra:azure.authenticationContext every
    production activation requires that Conditional Access context instead (PIM takes one or the other),
    whose policy demands MFA at that sign-in; an administrator's active assignment keeps PIM's MFA."""
    d, _ = run(pulumi_run, "production")
    (warned,) = [w for w in d.environment("production").warnings if "authenticationContext" in w]
    assert "one MFA can cover activation after activation" in warned and "sign-in frequency: every time" in warned
    d, res = run(pulumi_run, "production", azure={"authenticationContext": "c7"})
    assert not [w for w in d.environment("production").warnings if "authenticationContext" in w]
    policies = res.of_type(f"{T}authorization:RoleManagementPolicy")
    assert len(policies) == 8
    for p in policies:
        rules = {r["id"]: r for r in p.inputs["rules"]}
        assert rules["AuthenticationContext_EndUser_Assignment"] == {
            "id": "AuthenticationContext_EndUser_Assignment",
            "ruleType": "RoleManagementPolicyAuthenticationContextRule",
            "isEnabled": True,
            "claimValue": "c7",
            "target": {"caller": "EndUser", "operations": ["All"], "level": "Assignment"},
        }
        assert rules["Enablement_EndUser_Assignment"]["enabledRules"] == ["Justification"]
        assert "MultiFactorAuthentication" in rules["Enablement_Admin_Assignment"]["enabledRules"]
        assert rules["Expiration_EndUser_Assignment"]["maximumDuration"] == "PT8H"
    # below production (PIM only where `mfa: true`) the context is not used
    access = [{"principal": f"group:{PEOPLE}", "environments": ["acceptance"], "permissions": ["deploy"], "mfa": True}]
    _, res = run(pulumi_run, "acceptance", azure={"authenticationContext": "c7"}, access=access)
    for p in res.of_type(f"{T}authorization:RoleManagementPolicy"):
        assert {r["id"]: r for r in p.inputs["rules"]}["AuthenticationContext_EndUser_Assignment"]["isEnabled"] is False


def test_shorter_sessions_shorten_activation(pulumi_run):
    access = [{"principal": f"group:{PEOPLE}", "environments": ["production"], "permissions": ["deploy"], "maxSessionSeconds": 3600}]
    _, res = run(pulumi_run, "production", access=access)
    for p in res.of_type(f"{T}authorization:RoleManagementPolicy"):  # deploy's, deploy-status's and deploy-network's
        assert {r["id"]: r for r in p.inputs["rules"]}["Expiration_EndUser_Assignment"]["maximumDuration"] == "PT1H"
    assert len(res.of_type(f"{T}authorization:RoleManagementPolicy")) == 3
    assert pim.duration(5400) == "PT90M"


def test_stable_guids():
    assert stable_guid("a", "b") == stable_guid("A", "B") != stable_guid("a", "c")


def test_deploy_reads_operation_statuses_at_the_subscription_only(role_run):
    role, _, res = role_run
    n = Names.of(__import__("mxinfra.naming", fromlist=["Naming"]).Naming("orders", role), SUB)
    rd = res.named(f"orders-{role}-role-deploy-status")
    i = rd.inputs
    # one read, nothing else: a role assignable at the subscription grants its actions everywhere there
    assert i["permissions"] == [{"actions": ["Microsoft.App/locations/containerappOperationStatuses/read"], "notActions": [], "dataActions": [], "notDataActions": []}]
    assert i["scope"] == SUBSCRIPTION and i["assignableScopes"] == [SUBSCRIPTION]
    assert i["roleDefinitionId"] == n.role_definition_guid("deploy-status") != n.role_definition_guid("deploy")
    assert i["roleName"] == f"mxinfra orders-{role} deploy-status"
    grants = [grant_parts(r) for t in ("RoleAssignment", "PimRoleEligibilitySchedule") for r in res.of_type(f"{T}authorization:{t}") if "-grant-" in r.name or "-eligible-" in r.name]
    # exactly deploy's holders, each as deploy: standing outside production, eligible on it
    assert {p for name, p in grants if name == "deploy-status"} == {p for name, p in grants if name == "deploy"} == {PEOPLE}
    kinds = {r.type for r in res if "-deploy-status-" in r.name and ("-grant-" in r.name or "-eligible-" in r.name)}
    assert kinds == ({f"{T}authorization:PimRoleEligibilitySchedule"} if role == "production" else {f"{T}authorization:RoleAssignment"})
    # nobody else's role reaches above the resource group (deploy's VNet read and backups' subnet join: the
    # VNet's group, each assigned on its one resource alone)
    for r in res.of_type(f"{T}authorization:RoleDefinition"):
        if r.name != rd.name:
            at = VNET_GROUP if r.name.endswith(("-deploy-network", "-backups-network")) else restores(role) if r.name.endswith("-backups-restores") else scope(role)
            assert r.inputs["assignableScopes"] == [at], r.name


def test_backups_joins_the_database_subnet_alone(role_run):
    """`mxinfra backup restore` creates a server in the database subnet, registered in the environment's private
    DNS zone, and ARM's linked check of that PUT asks the caller for both joins: the zone's in the backups role
    (the zone is in the environment's resource group), the subnet's in a role of its own, defined in the VNet's
    resource group and assigned at that subnet alone, to backups' holders under backups' rules."""
    role, _, res = role_run
    from mxinfra.naming import Naming

    from azhelpers import rbac_allows

    n = Names.of(Naming("orders", role), SUB)
    env = res.one(ENVIRONMENT_TYPE)
    production = role == "production"
    if production:
        # production's backups restores nothing (the platform identity does): neither join
        assert not [r.name for r in res if "backups-network" in r.name]
        assert not rbac_allows(res.named("orders-production-role-backups").inputs, ZONE_JOIN)
        return
    rd = res.named(f"orders-{role}-role-backups-network")
    assert rd.type == f"{T}authorization:RoleDefinition" and rd.parent == env.urn
    i = rd.inputs
    assert i["permissions"] == [{"actions": [SUBNET_JOIN], "notActions": [], "dataActions": [], "notDataActions": []}]
    assert i["scope"] == VNET_GROUP and i["assignableScopes"] == [VNET_GROUP]
    assert i["roleDefinitionId"] == n.role_definition_guid("backups-network")
    assert i["roleDefinitionId"] not in {n.role_definition_guid(p) for p in ("backups", "deploy-network")}
    assert i["roleName"] == f"mxinfra orders-{role} backups-network" and i["roleType"] == "CustomRole"
    assert i["description"] == f"orders-{role}: the backups permission's join of the database subnet (a restore's new server) (mxinfra)"
    # deploy's network role keeps its name, id and description (nothing deployed is replaced)
    deploy = res.named(f"orders-{role}-role-deploy-network").inputs
    assert deploy["roleDefinitionId"] == n.role_definition_guid("deploy-network") and deploy["roleName"] == f"mxinfra orders-{role} deploy-network"
    assert deploy["description"] == f"orders-{role}: the deploy permission's read of the stack's VNet (mxinfra)"
    # backups' holders, and only they, each on the database subnet, standing
    kind, word = ("RoleAssignment", "grant")
    grants = [r for t in ("RoleAssignment", "PimRoleEligibilitySchedule") for r in res.of_type(f"{T}authorization:{t}") if "-grant-" in r.name or "-eligible-" in r.name]
    (g,) = [r for r in grants if grant_parts(r)[0] == "backups-network"]
    assert {grant_parts(r)[1] for r in grants if grant_parts(r)[0] == "backups"} == {PEOPLE}
    assert g.type == f"{T}authorization:{kind}" and g.name == f"orders-{role}-{word}-backups-network-{PEOPLE}" and g.parent == env.urn
    assert g.inputs["scope"] == DB_SUBNET and g.inputs["principalId"] == PEOPLE
    assert g.inputs["roleDefinitionId"] == f"orders-{role}-role-backups-network-id"
    assert "condition" not in g.inputs
    assert g.inputs["roleAssignmentName"] == n.assignment_guid("backups-network", PEOPLE) and g.inputs["principalType"] == "Group"
    assert not [r for r in res.of_type(f"{T}authorization:RoleManagementPolicy") if "backups-network" in r.name]
    # nothing else of the environment's roles on the network: deploy's read on the VNet, this join on the subnet
    held = {r.inputs["scope"] for r in grants}
    assert {s for s in held if s.lower().startswith(VNET_GROUP.lower() + "/")} == {VNET, DB_SUBNET}
    # the zone's join: in backups' role at the resource group, which is where the environment's zone is
    zone = res.one(f"{T}privatedns:PrivateZone")
    rg = res.named(f"orders-{role}-rg")
    assert zone.inputs["privateZoneName"] == n.database_zone and rg.urn in zone.dependencies  # its group: the environment's (group.name)
    assert rg.inputs["resourceGroupName"] == n.resource_group and roles_scope(res, role, "backups") == n.scope
    roles_of = {p: res.named(f"orders-{role}-role-{p}").inputs for p in ("deploy", "monitor", "backups", "alerts", "manage")}
    assert [p for p, d in roles_of.items() if rbac_allows(d, ZONE_JOIN) or rbac_allows(d, SUBNET_JOIN)] == ["backups"]
    assert not rbac_allows(roles_of["backups"], SUBNET_JOIN)  # the subnet's join only from the subnet's role


def test_backups_writes_servers_in_the_restores_group_alone(role_run):
    """A restore's new server is a flexibleServers/write, which ARM authorizes the same whether it creates a
    server or PATCHes one: at the environment's group it would let a holder of backups shorten the running
    server's backup retention or set its administrator password. So the write is in a role of its own at the
    restores group, to backups' holders under backups' rules; the backups role at the environment's group
    reads servers and writes on-demand backups, never a server."""
    role, _, res = role_run
    from mxinfra.naming import Naming

    from azhelpers import rbac_allows

    n = Names.of(Naming("orders", role), SUB)
    write, read = "Microsoft.DBforPostgreSQL/flexibleServers/write", "Microsoft.DBforPostgreSQL/flexibleServers/read"
    group = res.named(f"orders-{role}-restores-rg")
    if role == "production":
        # the group is the platform identity's: production's backups restores nothing
        assert group.retain_on_delete and not [r.name for r in res if "backups-restores" in r.name]
        for p in ("deploy", "monitor", "backups", "alerts", "manage"):
            assert not rbac_allows(res.named(f"orders-production-role-{p}").inputs, write), p
        return
    rd = res.named(f"orders-{role}-role-backups-restores")
    assert rd.inputs["permissions"] == [{"actions": [read, write], "notActions": [], "dataActions": [], "notDataActions": []}]
    assert rd.inputs["scope"] == restores(role) and rd.inputs["assignableScopes"] == [restores(role)] and group.urn in rd.dependencies
    assert rd.inputs["roleDefinitionId"] == n.role_definition_guid("backups-restores") and rd.inputs["roleName"] == f"mxinfra orders-{role} backups-restores"
    # no role of the environment's group writes a server (nor deletes one)
    for p in ("deploy", "monitor", "backups", "alerts", "manage"):
        d = res.named(f"orders-{role}-role-{p}").inputs
        assert not rbac_allows(d, write) and not rbac_allows(d, "Microsoft.DBforPostgreSQL/flexibleServers/delete"), p
    assert rbac_allows(res.named(f"orders-{role}-role-backups").inputs, "Microsoft.DBforPostgreSQL/flexibleServers/backups/write")
    # backups' holders, and only they, in the restores group, standing
    grants = [r for t in ("RoleAssignment", "PimRoleEligibilitySchedule") for r in res.of_type(f"{T}authorization:{t}") if "-grant-" in r.name or "-eligible-" in r.name]
    (g,) = [r for r in grants if grant_parts(r)[0] == "backups-restores"]
    assert g.inputs["scope"] == restores(role) and g.inputs["principalId"] == PEOPLE
    assert group.urn in g.dependencies
    assert g.type == f"{T}authorization:RoleAssignment"
    assert [r.inputs["scope"] for r in grants if r.inputs["scope"] == restores(role)] == [restores(role)]


def test_the_restores_group_takes_only_restores_of_the_environments_own_servers(role_run):
    """RBAC cannot tell a restore from any other server write: two Azure Policies do (restores.py). At the
    restores group, every Flexible Server write is denied but a point-in-time restore of one of the
    environment's servers, into its database subnet, with no password or public access and no bigger than the
    environment's server; at the subscription,
    a server whose source is one of them is denied outside the environment's two groups
    (tests/targets/azure/test_azure_backup_cli.py sends them the hostile writes)."""
    role, _, res = role_run
    env = res.one(ENVIRONMENT_TYPE)
    servers = "Microsoft.DBforPostgreSQL/flexibleServers"
    server = res.one(f"{T}dbforpostgresql:Server").inputs
    own = [f"{scope(role)}/providers/{servers}/{server['serverName']}"]
    sku, storage, ha, geo = (f"{servers}/{x}" for x in ("sku.name", "storage.storageSizeGB", "highAvailability.mode", "backup.geoRedundantBackup"))
    # no bigger than the environment's server as declared, where the request sets a size at all
    modes = sorted({"Disabled", server["highAvailability"]["mode"]})
    geos = sorted({"Disabled", server["backup"]["geoRedundantBackup"]})
    assert (modes, geos) == ((["Disabled", "ZoneRedundant"], ["Disabled", "Enabled"]) if role == "production" else (["Disabled"], ["Disabled"]))
    expected = {
        "restores": {
            "if": {
                "allOf": [
                    {"field": "type", "equals": servers},
                    {
                        "anyOf": [
                            {"not": {"field": f"{servers}/createMode", "equals": "PointInTimeRestore"}},
                            {"not": {"field": f"{servers}/sourceServerResourceId", "in": own}},
                            {"field": f"{servers}/administratorLoginPassword", "exists": "true"},
                            {"field": f"{servers}/network.publicNetworkAccess", "equals": "Enabled"},
                            {"not": {"field": f"{servers}/network.delegatedSubnetResourceId", "equals": DB_SUBNET}},
                            {"allOf": [{"field": sku, "exists": "true"}, {"not": {"field": sku, "equals": server["sku"]["name"]}}]},
                            {"allOf": [{"field": storage, "exists": "true"}, {"field": storage, "greater": server["storage"]["storageSizeGB"]}]},
                            {"allOf": [{"field": ha, "exists": "true"}, {"not": {"field": ha, "in": modes}}]},
                            {"allOf": [{"field": geo, "exists": "true"}, {"not": {"field": geo, "in": geos}}]},
                        ]
                    },
                ]
            },
            "then": {"effect": "deny"},
        },
        "restored-only-here": {
            "if": {
                "allOf": [
                    {"field": "type", "equals": servers},
                    {
                        "anyOf": [
                            {"field": f"{servers}/sourceServerResourceId", "like": f"{scope(role)}/providers/{servers}/*"},
                            {"field": f"{servers}/sourceServerResourceId", "like": f"{restores(role)}/providers/{servers}/*"},
                        ]
                    },
                    {"not": {"field": "id", "like": f"{scope(role)}/*"}},
                    {"not": {"field": "id", "like": f"{restores(role)}/*"}},
                ]
            },
            "then": {"effect": "deny"},
        },
    }
    at = {"restores": restores(role), "restored-only-here": SUBSCRIPTION}
    for kind, rule in expected.items():
        definition = res.named(f"orders-{role}-{kind}-policy")
        assert definition.type == f"{T}authorization:PolicyDefinition" and definition.parent == env.urn
        assert definition.inputs["policyRule"] == rule, kind
        assert definition.inputs["policyType"] == "Custom" and definition.inputs["mode"] == "Indexed"
        assignment = res.named(f"orders-{role}-{kind}-policy-assignment")
        assert assignment.type == f"{T}authorization:PolicyAssignment" and assignment.parent == env.urn
        assert assignment.inputs["scope"] == at[kind] and assignment.inputs["policyDefinitionId"] == f"orders-{role}-{kind}-policy-id"
        assert assignment.inputs["enforcementMode"] == "Default"
    assert res.named(f"orders-{role}-restores-rg").urn in res.named(f"orders-{role}-restores-policy-assignment").dependencies
    # a grant in the restores group exists only once its policy does (below production; production has none)
    policed = res.named(f"orders-{role}-restores-policy-assignment").urn
    grants = [r for r in res if "-backups-restores-" in r.name and ("-grant-" in r.name or "-eligible-" in r.name)]
    assert bool(grants) == (role != "production") and all(policed in g.dependencies for g in grants)
    # no role of the environment may change, delete or exempt them
    from azhelpers import rbac_allows

    for r in res.of_type(f"{T}authorization:RoleDefinition"):
        for action in ("policyAssignments/write", "policyAssignments/delete", "policyExemptions/write", "policyDefinitions/write"):
            assert not rbac_allows(r.inputs, f"Microsoft.Authorization/{action}"), (r.name, action)


def test_the_restore_policies_name_the_server_in_service(pulumi_run):
    """With `database.fromBackup`, the server the app runs on is a source a restore may come from too."""
    _, res = run(pulumi_run, "acceptance", azure={"database": {"fromBackup": {"acceptance": "2026-12-01T10:00:00Z"}}})
    names = sorted(r.inputs["serverName"] for r in res.of_type(f"{T}dbforpostgresql:Server"))
    assert len(names) == 2
    ids = sorted(f"{scope('acceptance')}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{x}" for x in names)
    rule = res.named("orders-acceptance-restores-policy").inputs["policyRule"]
    assert sorted(rule["if"]["allOf"][1]["anyOf"][1]["not"]["in"]) == ids


def test_each_environments_policies_are_its_own(pulumi_run):
    """Two environments of one subscription: their assignments at the subscription (and everything else of
    the policies) have names of their own, so neither overwrites nor, destroyed, removes the other's."""
    kinds = ("restores-policy", "restores-policy-assignment", "restored-only-here-policy", "restored-only-here-policy-assignment")
    key = {"restores-policy": "policyDefinitionName", "restored-only-here-policy": "policyDefinitionName"}
    names = {}
    for role in ("test", "production"):
        _, res = run(pulumi_run, role)
        names[role] = {k: res.named(f"orders-{role}-{k}").inputs[key.get(k, "policyAssignmentName")] for k in kinds}
    for k in kinds:
        assert names["test"][k] != names["production"][k], k


def test_the_restores_group_outlives_its_grants_and_the_stack(pulumi_run):
    """Whenever the environment has backups, whoever holds them (the platform identity may restore too), and
    retained on delete: azure-native deletes a group with everything in it, restored copies in use among them."""
    access = [{"principal": f"group:{PEOPLE}", "environments": ["acceptance"], "permissions": ["deploy", "monitor"]}]
    _, res = run(pulumi_run, "acceptance", access=access)
    group = res.named("orders-acceptance-restores-rg")
    assert group.retain_on_delete and not [r for r in res if "backups-restores" in r.name]
    assert res.named("orders-acceptance-restores-policy-assignment").inputs["scope"] == restores("acceptance")
    _, res = run(pulumi_run, "acceptance", access=access, env={"backups": {"enabled": False}})
    assert not [r for r in res if "restores" in r.name]


def roles_scope(res, role: str, permission: str) -> str:
    """Where `permission`'s custom role is defined (and assignable)."""
    return res.named(f"orders-{role}-role-{permission}").inputs["scope"]


def test_no_backups_no_subnet_role(pulumi_run):
    access = [{"principal": f"group:{PEOPLE}", "environments": ["acceptance"], "permissions": ["deploy", "monitor"]}]
    _, res = run(pulumi_run, "acceptance", access=access)
    assert not [r for r in res if "backups-network" in r.name]
    assert {r.inputs["scope"] for r in res.of_type(f"{T}authorization:RoleAssignment") if "-grant-" in r.name} == {scope("acceptance"), SUBSCRIPTION, VNET}


def test_no_deploy_no_subscription_role(pulumi_run):
    access = [{"principal": f"group:{ONCALL}", "environments": ["acceptance"], "permissions": ["monitor", "alerts"]}]
    _, res = run(pulumi_run, "acceptance", access=access)
    # the permissions' roles (not the runtime's or the backup vault's identity's)
    scopes = {r.inputs["scope"] for t in ("RoleDefinition", "RoleAssignment") for r in res.of_type(f"{T}authorization:{t}") if "-identity-" not in r.name and "-backup-vault-" not in r.name}
    assert scopes == {scope("acceptance")}


# The operations of the workspace that return or replace one of its keys, or another key a read may carry:
# the shared keys (POST, and their legacy GET), their regeneration, and a storage insight config, whose
# storage account key the API description gives read visibility.
WORKSPACE_KEYS = {
    "microsoft.operationalinsights/workspaces/sharedkeys/action",
    "microsoft.operationalinsights/workspaces/sharedkeys/read",
    "microsoft.operationalinsights/workspaces/regeneratesharedkey/action",
    "microsoft.operationalinsights/workspaces/storageinsightconfigs/read",
}


def test_monitor_reads_logs_and_never_a_key(role_run):
    role, _, res = role_run
    monitor = res.named(f"orders-{role}-role-monitor").inputs
    workspace_ops = known_operations("Microsoft.OperationalInsights")
    assert WORKSPACE_KEYS <= workspace_ops  # each is a real operation (SDK or Microsoft's reference)
    # no operation of any provider the role touches that names a key or a secret, nor the ones above
    every = {op for ns in PROVIDERS for op in known_operations(ns)}
    keyed = WORKSPACE_KEYS | {op for op in every if "key" in op or "secret" in op}
    assert [op for op in sorted(keyed) if rbac_allows(monitor, op)] == []
    # the workspace reads the wildcard grants, all of them
    granted = sorted(op for op in workspace_ops if rbac_allows(monitor, op))
    assert not [op for op in granted if "key" in op or "storageinsight" in op], granted
    # and it still reads the environment's logs: queries, the tables the diagnostic setting fills, metrics
    for action in (
        "Microsoft.OperationalInsights/workspaces/read",
        "Microsoft.OperationalInsights/workspaces/query/read",
        "Microsoft.OperationalInsights/workspaces/query/ContainerAppConsoleLogs/read",
        "Microsoft.OperationalInsights/workspaces/query/ContainerAppSystemLogs/read",
        "Microsoft.OperationalInsights/workspaces/tables/read",
        "Microsoft.Insights/metrics/read",
    ):
        assert rbac_allows(monitor, action), action


def test_no_standing_production_role_but_api_even_without_the_check(pulumi_run, monkeypatch):
    # check() refuses a service principal's alerts on production (test_azure_config); the program does not
    # rely on it alone: the role is never created as a standing assignment.
    from mxinfra_azure.target import AzureTarget

    monkeypatch.setattr(AzureTarget, "check", lambda self, stack, block, file="": [])
    access = [{"principal": f"servicePrincipal:{ROBOT}", "environments": ["production"], "permissions": ["api", "alerts"], "allowOnProduction": True}]
    d = deployment(config("production", access=access))
    with pytest.raises(Exception, match="a standing production assignment of alerts"):
        pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="azure-production", project="orders")
