"""Every action of every custom role is a real operation of its resource provider, checked against the
REST operations the azure-mgmt SDKs publish (azure_operations.py); the checker itself is checked too."""

from __future__ import annotations

from importlib import metadata

import pytest

from mxinfra_azure import network, roles

from azure_operations import DOCUMENTED_ACTIONS, LINKED_ACTIONS, PACKAGES, PROVIDERS, SNAPSHOT_PACKAGES, is_real, operation, operations, sdk_requests, snapshot

ALL = sorted(
    {(perm, a) for perm, acts in roles.ACTIONS.items() for a in acts}
    | {(perm, a) for perm, acts in roles.NOT_ACTIONS.items() for a in acts}
    | {(roles.subscription_role(perm), a) for perm, acts in roles.SUBSCRIPTION_ACTIONS.items() for a in acts}
)


@pytest.mark.parametrize("perm,action", ALL)
def test_action_is_a_real_operation(perm, action):
    if action == "*/read":  # (api's: every read, as Azure's built-in Reader has it)
        return
    assert is_real(action), f"{perm}: {action} is not an operation of its provider"


# The network roles' actions: no Microsoft.Network SDK is a test dependency. Their joins are linked actions
# (LINKED_ACTIONS, from Microsoft's operations reference); deploy's VNet read is VirtualNetworks_Get of the
# copied API description, which test_azure_network_tier serves.
NETWORK = sorted((roles.vnet_role(perm), a) for perm, acts in roles.VNET_ACTIONS.items() for a in acts)


@pytest.mark.parametrize("perm,action", NETWORK)
def test_network_action_is_a_real_operation(perm, action):
    assert action.lower() in LINKED_ACTIONS or action == network.VNET_READ, f"{perm}: {action}"


def test_network_roles_are_the_vnet_read_and_the_database_subnet_join():
    # nothing that changes the network: no write, no delete, no join of the VNet or of another resource
    assert roles.VNET_ACTIONS == {"deploy": [network.VNET_READ], "backups": ["Microsoft.Network/virtualNetworks/subnets/join/action"]}
    assert roles.VNET_SCOPES["deploy"][0] == "vnetId" and roles.VNET_SCOPES["backups"][0] == "databaseSubnetId"
    assert set(roles.VNET_SCOPES) == set(roles.VNET_ACTIONS)
    # the zone's join in the backups role (at the resource group holding the zone), in no other
    assert [p for p, acts in roles.ACTIONS.items() if "Microsoft.Network/privateDnsZones/join/action" in acts] == ["backups"]
    assert [a for p, acts in roles.ACTIONS.items() for a in acts if a.startswith("Microsoft.Network/")] == ["Microsoft.Network/privateDnsZones/join/action"]


def test_every_provider_is_described():
    for ns in ("Microsoft.App", "Microsoft.DBforPostgreSQL", "Microsoft.Insights", "Microsoft.Authorization", "Microsoft.OperationalInsights", "Microsoft.DataProtection", "Microsoft.Storage"):
        assert len(operations(ns)) > 10, ns


def test_snapshot_is_an_sdks_request_builders():
    # Each snapshot names the SDK and version it was taken from, holds only its own namespace's requests,
    # and (where that SDK is installed at that version) is exactly what the SDK's builders give.
    doc = snapshot()
    assert set(doc) == set(SNAPSHOT_PACKAGES) and not set(doc) & set(PACKAGES)
    for ns, entry in doc.items():
        package, distribution = SNAPSHOT_PACKAGES[ns]
        assert entry["distribution"] == distribution and entry["version"]
        assert all(m in ("GET", "HEAD", "PUT", "PATCH", "DELETE", "POST") and f"/providers/{ns}/" in u for m, u in entry["requests"]), ns
        try:
            installed = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
        if installed == entry["version"]:
            assert {tuple(r) for r in entry["requests"]} == sdk_requests(package, ns), ns


def test_backup_operations_are_in_the_snapshot():
    # the operations the backups permission and the vault rely on, as the SDKs' builders derive them
    ops = operations("Microsoft.DataProtection") | operations("Microsoft.Storage")
    for action in (
        "microsoft.dataprotection/backupvaults/backupinstances/backup/action",
        "microsoft.dataprotection/backupvaults/backupinstances/restore/action",
        "microsoft.dataprotection/backupvaults/operationstatus/read",
        "microsoft.storage/storageaccounts/restoreblobranges/action",
        "microsoft.storage/storageaccounts/listkeys/action",
    ):
        assert action in ops, action


@pytest.mark.parametrize(
    "made_up",
    [
        "Microsoft.App/containerApps/deploy/action",
        "Microsoft.App/containerApp/write",
        "Microsoft.DBforPostgreSQL/flexibleServers/restore/action",
        "Microsoft.Authorization/roleAssignment/write",
        "Microsoft.Insights/alerts/write",
        "Microsoft.Made/up/read",
        "Microsoft.OperationalInsights/workspaces/*/explode",
        "Microsoft.App/locations/containerappOperationStatus/read",
        "Microsoft.App/containerappOperationStatuses/read",
        "Microsoft.OperationalInsights/workspaces/sharedKeys/write",
        "Microsoft.DataProtection/backupVaults/backupInstances/restores/action",
        "Microsoft.DataProtection/backupInstances/restore/action",
        "Microsoft.Storage/storageAccounts/restoreBlobs/action",
        "Microsoft.Storage/storageAccounts/blobServices/restoreBlobRanges/action",
    ],
)
def test_made_up_actions_fail(made_up):
    assert not is_real(made_up)


def test_derivation_rules():
    base = "/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.App/containerApps/{a}"
    assert operation(base, "GET") == "Microsoft.App/containerApps/read"
    assert operation(base, "PATCH") == "Microsoft.App/containerApps/write"
    assert operation(base, "DELETE") == "Microsoft.App/containerApps/delete"
    assert operation(base + "/revisions/{r}/restart", "POST") == "Microsoft.App/containerApps/revisions/restart/action"
    assert operation("/{resourceUri}/providers/Microsoft.Insights/metrics", "GET") == "Microsoft.Insights/metrics/read"
    assert operation("/subscriptions/{s}/resourcegroups/{g}", "GET") is None


def test_documented_actions_are_the_ones_the_sdks_lack():
    # The reference list holds only what no SDK describes (else it would hide a typo the SDKs catch).
    for action in DOCUMENTED_ACTIONS:
        namespace = next(ns for ns in PROVIDERS if action.startswith(ns.lower() + "/"))
        assert action == action.lower() and action not in operations(namespace), action


def test_subscription_roles_hold_reads_only():
    # A role at the subscription acts on every resource group: nothing but reads of operation statuses.
    assert set(roles.SUBSCRIPTION_ACTIONS) == {"deploy"}
    for perm, acts in roles.SUBSCRIPTION_ACTIONS.items():
        assert acts == ["Microsoft.App/locations/containerappOperationStatuses/read"], perm


def test_roles_grant_no_secret_reads():
    for perm, acts in {**roles.ACTIONS, **{roles.subscription_role(p): a for p, a in roles.SUBSCRIPTION_ACTIONS.items()}}.items():
        for a in acts:
            assert "listsecrets" not in a.lower() and "sharedkeys" not in a.lower(), (perm, a)
        assert not any(a.endswith("/*") or a == "*" for a in acts), perm
