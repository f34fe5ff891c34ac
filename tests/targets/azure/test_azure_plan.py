"""`mxinfra plan` on the Azure example stacks: they plan (production once acceptance has a recorded
deploy), render role definitions, PIM policies, container apps and the database, and never a secret."""

from __future__ import annotations

import json

import pytest

from mxinfra.cli import main
from mxinfra.testing import engine_secrets
from scaffold import copy_example, record_deploy

from azhelpers import ADMIN_PASSWORD, ENCRYPTION_KEY, LICENSE_KEY, config

STACKS = ("azure-test", "azure-acceptance", "azure-production")
# Decoded payloads of the example stacks' `secure:` placeholders: they must never be printed.
PLACEHOLDERS = ("AdminPasswordPlaceholder", "LicenseKeyPlaceholder", "ProductionKeyPlaceholder", "AcceptanceKeyPlaceholder")


@pytest.fixture(scope="module")
def azure_example(tmp_path_factory):
    dest = copy_example(tmp_path_factory.mktemp("azure") / "example")
    record_deploy(dest, "azure-acceptance")
    return dest


def test_production_is_gated_until_acceptance_deployed(tmp_path, capsys):
    dest = copy_example(tmp_path / "example")
    rc = main(["plan", "-s", "azure-production", "-C", str(dest)])
    err = capsys.readouterr().err
    assert rc == 2 and "acceptance" in err and "Traceback" not in err


@pytest.mark.parametrize("stack", STACKS)
def test_example_stack_plans_and_renders(stack, capsys, tmp_path, azure_example):
    env = stack.removeprefix("azure-")
    rc = main(["plan", "-s", stack, "-C", str(azure_example), "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    # the notes, unwrapped, from the JSON plan
    assert main(["plan", "-s", stack, "-C", str(azure_example), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    text = "\n".join(n for e in doc["environments"] for n in e["notes"])
    d = tmp_path / "azure" / env
    names = {f.name for f in d.iterdir()}
    assert {"app.containerapp.json", "db.database.json", "role-deploy.role.json", "role-deploy-status.role.json", "role-manage.role.json", "role-monitor.role.json"} <= names
    if env == "production":
        assert {"worker.containerapp.json", "role-deploy-policy.pim-policy.json", "role-deploy-status-policy.pim-policy.json", "role-manage-policy.pim-policy.json"} <= names
        assert not [n for n in names if n.startswith("grant-")]  # people are eligible, never standing
        policy = json.loads((d / "role-deploy-policy.pim-policy.json").read_text())["inputs"]
        rules = {r["id"]: r for r in policy["rules"]}
        assert rules["Expiration_EndUser_Assignment"]["maximumDuration"] == "PT8H"
        assert "MultiFactorAuthentication" in rules["Enablement_EndUser_Assignment"]["enabledRules"]
        db = json.loads((d / "db.database.json").read_text())
        assert db["options"] == {"protect": True, "retainOnDelete": True}
        assert db["inputs"]["highAvailability"] == {"mode": "ZoneRedundant"}
        assert "container app orders-production (leader, CF_INSTANCE_INDEX=0): 1 replica(s), 2 vCPU / 4Gi" in text
        assert "container app orders-production-worker (worker, CF_INSTANCE_INDEX=1): 1 replica(s)" in text
    else:
        assert not [n for n in names if n.endswith(".pim-policy.json")]
    # the environment's backups, rendered and stated (issue 21)
    assert {"backup-vault.backup-vault.json", "backup-policy-db.backup-policy.json", "backup-policy-files.backup-policy.json", "files-blob-service.blob-service.json"} <= names
    (vault_note,) = [n for n in text.splitlines() if n.startswith(f"Backup vault orders-{env}-backups: ")]
    assert "kept 13 weeks, the first of each month 12 months" in vault_note
    assert ("immutability Locked" in vault_note) == (env == "production")
    app = json.loads((d / "app.containerapp.json").read_text())["inputs"]
    assert app["configuration"]["ingress"]["allowInsecure"] is False
    assert "file storage: managed identity" in text
    assert f"diagnostic setting orders-{env}-env-logs: ContainerAppConsoleLogs, ContainerAppSystemLogs to the workspace through Azure Monitor (no workspace key)" in text
    written = out.out + out.err + "".join(f.read_text() for f in d.iterdir())
    for p in PLACEHOLDERS:
        assert p not in written


def test_plan_json_exports_role_definitions_and_scopes(capsys, azure_example):
    rc = main(["plan", "-s", "azure-acceptance", "-C", str(azure_example), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    doc = json.loads(out.out)
    db = next(r for r in doc["resources"] if r["name"] == "orders-acceptance-db")
    assert db["options"] == {"protect": True, "retainOnDelete": True}
    roles = {r["name"]: r for r in doc["resources"] if r["type"] == "azure-native:authorization:RoleDefinition"}
    # every role at the environment's resource group, but deploy's operation-status read at the subscription
    status = roles.pop("orders-acceptance-role-deploy-status")["inputs"]
    assert status["scope"] == "/subscriptions/11111111-2222-3333-4444-555555555555"
    assert status["permissions"][0]["actions"] == ["Microsoft.App/locations/containerappOperationStatuses/read"]
    # and its read of the stack's VNet in the VNet's resource group (the tier check before every pulumi up)
    network = roles.pop("orders-acceptance-role-deploy-network")["inputs"]
    assert network["permissions"][0]["actions"] == ["Microsoft.Network/virtualNetworks/read"]
    assert network["assignableScopes"] == [network["scope"]] and "/resourceGroups/" in network["scope"] and "/providers/" not in network["scope"]
    # and backups' join of the database subnet (a restore's new server), defined there as well
    subnet = roles.pop("orders-acceptance-role-backups-network")["inputs"]
    assert subnet["permissions"][0]["actions"] == ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    assert subnet["scope"] == network["scope"] and subnet["assignableScopes"] == [network["scope"]]
    # and backups' server writes (a restore's new server) in the restores group alone
    made = roles.pop("orders-acceptance-role-backups-restores")["inputs"]
    assert made["scope"] == "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/orders-acceptance-restores-rg"
    assert made["permissions"][0]["actions"] == ["Microsoft.DBforPostgreSQL/flexibleServers/read", "Microsoft.DBforPostgreSQL/flexibleServers/write"]
    assert {r["inputs"]["scope"] for r in roles.values()} == {"/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/orders-acceptance-rg"}


def test_known_secret_values_never_printed(project, capsys, tmp_path):
    project.stack("azure-acceptance", config("acceptance", env={"license": {"id": "lic-1", "key": LICENSE_KEY}, "secretConstants": {"Encryption.EncryptionKey": ENCRYPTION_KEY}}))
    with engine_secrets("mxinfra:environments"):
        rc = main(["plan", "-s", "azure-acceptance", "-C", str(project.path), "--out", str(tmp_path), "--json"])
        out = capsys.readouterr()
    assert rc == 0, out.err
    written = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert written and "keyvault:Secret" in out.out
    for text in (out.out, out.err, written):
        for value in (ADMIN_PASSWORD, LICENSE_KEY, ENCRYPTION_KEY):
            assert value not in text
