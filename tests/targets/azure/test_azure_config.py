"""Bad Azure config exits 2 with its key path, through `mxinfra plan` as a user runs it; good config passes."""

from __future__ import annotations

import pytest

from mxinfra.cli import main
from mxinfra.exposure import is_public, is_wide, leader_follower_counts
from mxinfra.settings import AzureBlobStorage, Bindings, buildpack_env
from mxinfra_azure import sizes

from azhelpers import ROOT, SUB, VNET, config


def plan(project, capsys, cfg, stack="azure-production"):
    for body in cfg["mxinfra:environments"].values():
        for key in ("adminPassword", "license", "secretConstants"):
            body.pop(key, None)
    project.stack(stack, cfg)
    rc = main(["plan", "-s", stack, "-C", str(project.path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_valid_production_config_plans(project, capsys):
    rc, err = plan(project, capsys, config("production"))
    assert rc == 0, err


@pytest.mark.parametrize("location", ["west-europe", "WestEurope", "westeurope\n", "mars", ""])
def test_unknown_location(project, capsys, location):
    cfg = config("test")
    cfg["azure-native:location"] = location
    rc, err = plan(project, capsys, cfg)
    assert rc == 2 and "azure-native:location" in err


def test_missing_location(project, capsys):
    cfg = config("test")
    del cfg["azure-native:location"]
    rc, err = plan(project, capsys, cfg)
    assert rc == 2 and "azure-native:location: required key is missing" in err


@pytest.mark.parametrize(
    "key,value",
    [
        ("vnetId", "/subscriptions/not-a-guid/resourceGroups/n/providers/Microsoft.Network/virtualNetworks/v"),
        ("vnetId", f"/subscriptions/{SUB}/resourceGroups/n/providers/Microsoft.Network/virtualNetworks/v/subnets/s"),
        ("vnetId", "vnet-123"),
        ("infrastructureSubnetId", VNET),
        ("databaseSubnetId", f"{VNET}/subnets/"),
        ("privateEndpointSubnetId", f"{VNET}/subnets/a b"),
        ("subscriptionId", "1111"),
        ("tenantId", "99999999-8888-7777-6666-55555555555５"),
        ("keyVaultDnsZoneId", f"/subscriptions/{SUB}/resourceGroups/dns/providers/Microsoft.Network/privateDnsZones/example.com"),
        ("registryId", "acme.azurecr.io"),
        ("ipRestrictions", ["10.0.0.300/24"]),
        ("ipRestrictions", ["2001:db8::/32"]),
        ("image", "not an image"),
        ("authenticationContext", "c0"),
        ("authenticationContext", "c100"),
        ("authenticationContext", "mfa-every-time"),
    ],
)
def test_malformed_ids(project, capsys, key, value):
    rc, err = plan(project, capsys, config("test", azure={key: value}))
    assert rc == 2 and f"mxinfra:azure.{key}" in err, err


def test_subnet_of_another_vnet(project, capsys):
    other = f"/subscriptions/{SUB}/resourceGroups/network-rg/providers/Microsoft.Network/virtualNetworks/other/subnets/db"
    rc, err = plan(project, capsys, config("test", azure={"databaseSubnetId": other}))
    assert rc == 2 and "mxinfra:azure.databaseSubnetId: is not a subnet of vnetId" in err
    rc, err = plan(project, capsys, config("test", azure={"databaseSubnetId": f"{VNET}/subnets/apps"}))
    assert rc == 2 and "mxinfra:azure.databaseSubnetId" in err


@pytest.mark.parametrize(
    "principal",
    ["group:release-managers", "0a1b2c3d-0000-4000-8000-000000000001", "group:0a1b2c3d-0000-4000-8000-00000000000", "role:0a1b2c3d-0000-4000-8000-000000000001", "user:0a1b2c3d-0000-4000-8000-000000000001\n", "user:0a1b2c3d-0000-4000-8000-00000000000١"],
)
def test_principal_must_be_a_typed_guid(project, capsys, principal):
    access = [
        {"principal": "group:0a1b2c3d-0000-4000-8000-000000000009", "environments": ["test"], "permissions": ["deploy"]},
        {"principal": principal, "environments": ["test"], "permissions": ["monitor"]},
    ]
    rc, err = plan(project, capsys, config("test", access=access))
    assert rc == 2 and "mxinfra:access[1].principal" in err and "mxinfra:access[0]" not in err


def test_service_principal_cannot_operate_production(project, capsys):
    access = [{"principal": "servicePrincipal:0a1b2c3d-0000-4000-8000-000000000009", "environments": ["production"], "permissions": ["deploy"]}]
    rc, err = plan(project, capsys, config("production", access=access))
    assert rc == 2 and "mxinfra:access[0].principal" in err and "MFA" in err
    rc, err = plan(project, capsys, config("test", access=[{**access[0], "environments": ["test"]}]))
    assert rc == 0, err


@pytest.mark.parametrize("seconds,ok", [(900, False), (1800, True), (2700, False), (28800, True)])
def test_pim_session_lengths(project, capsys, seconds, ok):
    access = [{"principal": "group:0a1b2c3d-0000-4000-8000-000000000009", "environments": ["production"], "permissions": ["deploy"], "maxSessionSeconds": seconds}]
    rc, err = plan(project, capsys, config("production", access=access))
    assert (rc == 0) is ok, err
    if not ok:
        assert "mxinfra:access[0].maxSessionSeconds" in err


@pytest.mark.parametrize("memory,cpu,ok", [(2048, 1.0, True), (2048, 0.5, False), (2048, 0.3, False), (8192, 4.0, True), (4096, 4.0, False), (10240, None, False), (3000, None, True)])
def test_cpu_memory_pairs(project, capsys, memory, cpu, ok):
    azure = {"cpu": {"production": cpu}} if cpu is not None else {}
    rc, err = plan(project, capsys, config("production", azure=azure, env={"memory": memory}))
    assert (rc == 0) is ok, err
    if not ok:
        assert ("mxinfra:azure.cpu.production" if cpu is not None else "mxinfra:environments.production.memory") in err


def test_cpu_for_an_unknown_environment(project, capsys):
    rc, err = plan(project, capsys, config("test", azure={"cpu": {"prod": 1.0}}))
    assert rc == 2 and "mxinfra:azure.cpu.prod" in err


def test_production_needs_a_digest_image(project, capsys):
    rc, err = plan(project, capsys, config("production", azure={"image": "acme.azurecr.io/orders:1.4.2"}))
    assert rc == 2 and "mxinfra:azure.image" in err and "digest" in err
    rc, err = plan(project, capsys, config("test", azure={"image": "acme.azurecr.io/orders:1.4.2"}))
    assert rc == 0, err


def test_a_gated_environment_needs_a_digest_image_too(project, capsys):
    cfg = config("acceptance", azure={"image": "acme.azurecr.io/orders:1.4.2"})
    next(iter(cfg["mxinfra:environments"].values()))["requirePromotionFrom"] = "test"
    rc, err = plan(project, capsys, cfg, stack="azure-acceptance")
    assert rc == 2 and "mxinfra:azure.image" in err and "digest" in err


@pytest.mark.parametrize("image", ["acme.azurecr.io/*:1.4.2", "acme.azurecr.io/Orders:1.4.2", "acme.azurecr.io/orders:1.4.2 "])
def test_image_references_follow_the_oci_grammar(project, capsys, image):
    rc, err = plan(project, capsys, config("test", azure={"image": image}))
    assert rc == 2 and "mxinfra:azure.image" in err


def test_production_without_public_network_access(project, capsys):
    rc, err = plan(project, capsys, config("production", azure={"storage": {"publicNetworkAccess": True}}))
    assert rc == 2 and "mxinfra:azure.storage.publicNetworkAccess" in err
    rc, err = plan(project, capsys, config("acceptance", azure={"storage": {"publicNetworkAccess": True}}))
    assert rc == 0, err


def test_burstable_database_on_production(project, capsys):
    rc, err = plan(project, capsys, config("production", azure={"database": {"skuName": "Standard_B2s"}}))
    assert rc == 2 and "mxinfra:azure.database.skuName" in err
    rc, err = plan(project, capsys, config("production", azure={"database": {"skuName": "Standard_E4ds_v5", "storageSizeGb": 33}}))
    assert rc == 2 and "mxinfra:azure.database.storageSizeGb" in err


@pytest.mark.parametrize("cidr,wide", [("0.0.0.0/0", True), ("10.0.0.0/8", True), ("64.0.0.0/2", True), ("10.0.0.0/9", False), ("198.51.100.0/24", False)])
def test_wide_ranges_on_production_need_opt_in(project, capsys, cidr, wide):
    rc, err = plan(project, capsys, config("production", azure={"ipRestrictions": ["198.51.100.0/24", cidr]}))
    if wide:
        assert rc == 2 and "mxinfra:azure.ipRestrictions[1]" in err and "allowPublicIngress" in err
        rc, err = plan(project, capsys, config("production", azure={"ipRestrictions": [cidr], "allowPublicIngress": True}))
        assert rc == 0, err
    else:
        assert rc == 0, err
    rc, err = plan(project, capsys, config("test", azure={"ipRestrictions": [cidr]}))
    assert rc == 0, err


def test_no_restrictions_on_production_is_open(project, capsys):
    rc, err = plan(project, capsys, config("production", azure={"ipRestrictions": []}))
    assert rc == 2 and "mxinfra:azure.ipRestrictions" in err
    rc, err = plan(project, capsys, config("production", azure={"ipRestrictions": [], "internal": True}))
    assert rc == 0, err


def test_unknown_key_has_a_hint(project, capsys):
    rc, err = plan(project, capsys, config("test", azure={"vnetID": VNET}))
    assert rc == 2 and "mxinfra:azure.vnetID" in err


def test_sizes():
    assert sizes.pick(1024).describe() == "0.5 vCPU / 1Gi"
    assert sizes.pick(2048).describe() == "1 vCPU / 2Gi"
    assert sizes.pick(3000).describe() == "1.5 vCPU / 3Gi"
    assert sizes.pick(512).describe() == "0.25 vCPU / 0.5Gi"
    assert sizes.pick(8192, 4.0).memory == "8Gi"
    with pytest.raises(ValueError):
        sizes.pick(8193)


def test_core_exposure_and_leaders():
    assert is_public("0.0.0.0/0") and is_public("::/0") and not is_public("10.0.0.0/8")
    assert is_wide("10.0.0.0/8") and not is_wide("10.0.0.0/9")
    assert leader_follower_counts(0) == (0, 0)
    assert leader_follower_counts(1) == (1, 0)
    assert leader_follower_counts(4) == (1, 3)
    with pytest.raises(ValueError):
        leader_follower_counts(-1)


def test_core_azure_blob_with_managed_identity():
    from mxinfra.environments import Environment, Role
    from mxinfra.settings import RuntimeSettings

    s = RuntimeSettings("t", {}, {}, {}, "ALL", (), "T", 1024, 512, 1, {}, "MxAdmin")
    env = buildpack_env(s, Bindings("pw", storage=AzureBlobStorage("acct", "files", endpoint="https://acct.blob.core.windows.net", use_default_credential=True)))
    assert env.plain["MXRUNTIME_com_mendix_storage_azure_UseDefaultAzureCredential"] == "true"
    assert env.plain["MXRUNTIME_com_mendix_storage_azure_BlobEndpoint"] == "https://acct.blob.core.windows.net"
    assert "MXRUNTIME_com_mendix_storage_azure_AccountKey" not in env.secret
    keyed = buildpack_env(s, Bindings("pw", storage=AzureBlobStorage("acct", "files", account_key="k")))
    assert "MXRUNTIME_com_mendix_storage_azure_UseDefaultAzureCredential" not in keyed.plain
    assert keyed.secret["MXRUNTIME_com_mendix_storage_azure_AccountKey"] == "k"
    assert Environment("t", Role.TEST).name == "t"


def test_service_principal_holds_only_api_on_production(project, capsys):
    # F12: alerts does not "operate" the environment, but its role writes and deletes alert rules, and a
    # service principal's production role stands (it cannot activate PIM): only api may.
    robot = "servicePrincipal:0a1b2c3d-0000-4000-8000-000000000009"
    for permissions in (["alerts"], ["api", "alerts"], ["monitor"], ["backups"], ["manage"], ["deploy"]):
        access = [{"principal": robot, "environments": ["production"], "permissions": permissions, "allowOnProduction": True}]
        rc, err = plan(project, capsys, config("production", access=access))
        others = ", ".join(p for p in permissions if p != "api")
        assert rc == 2, (permissions, err)
        assert f"mxinfra:access[0].principal: a service principal cannot satisfy MFA, so on production environment 'production' it may hold only api, not {others}" in err, err
        assert "a service principal gets only api, with allowOnProduction: true" in err
    for environments in (["*"], ["production"]):
        ok = [{"principal": robot, "environments": environments, "permissions": ["api"], "allowOnProduction": True}]
        rc, err = plan(project, capsys, config("production", access=ok))
        assert rc == 0, err
    # outside production a service principal may hold alerts (a standing assignment, as everyone's there)
    rc, err = plan(project, capsys, config("test", access=[{"principal": robot, "environments": ["test"], "permissions": ["alerts", "monitor"]}]))
    assert rc == 0, err


def test_production_needs_a_vnet_declared_its_own(project, capsys):
    cfg = config("production")
    del cfg["mxinfra:azure"]["networkTier"]
    rc, err = plan(project, capsys, cfg)
    assert rc == 2 and "mxinfra:azure.networkTier: production environment 'production' needs a VNet of its own, declared production's" in err, err
    assert "networkTier: production" in err
    rc, err = plan(project, capsys, config("production", azure={"networkTier": "non-production"}))
    assert rc == 2 and "mxinfra:azure.networkTier" in err


@pytest.mark.parametrize("role", ["test", "acceptance"])
def test_other_tiers_refuse_production_s_vnet(project, capsys, role):
    rc, err = plan(project, capsys, config(role, azure={"networkTier": "production"}), stack=f"azure-{role}")
    assert rc == 2 and f"mxinfra:azure.networkTier: environment {role!r} is not production, but VNet {VNET} is declared production's" in err, err
    rc, err = plan(project, capsys, config(role, azure={"networkTier": "non-production"}), stack=f"azure-{role}")
    assert rc == 0, err


def test_one_stack_never_mixes_production_with_other_tiers(project, capsys):
    cfg = config("production")
    cfg["mxinfra:environments"]["test"] = {"role": "test", "memory": 1024}
    rc, err = plan(project, capsys, cfg)
    assert rc == 2 and f"mxinfra:azure.vnetId: production (production) and other environments (test) would share VNet {VNET}" in err, err


def test_network_tier_values(project, capsys):
    rc, err = plan(project, capsys, config("test", azure={"networkTier": "prod"}))
    assert rc == 2 and "mxinfra:azure.networkTier" in err and "production or non-production" in err


def test_example_stacks_give_each_tier_its_own_vnet():
    import yaml

    blocks = {env: yaml.safe_load((ROOT / "stacks" / f"Pulumi.azure-{env}.yaml").read_text())["config"]["mxinfra:azure"] for env in ("test", "acceptance", "production")}
    vnets = {env: b["vnetId"].lower() for env, b in blocks.items()}
    assert vnets["production"] not in {vnets["test"], vnets["acceptance"]}, vnets
    assert blocks["production"]["networkTier"] == "production"
    assert {blocks[e].get("networkTier") for e in ("test", "acceptance")} == {"non-production"}
    # every subnet of a stack is in its own VNet, so no other tier's stack names one of production's
    for env, b in blocks.items():
        for key in ("infrastructureSubnetId", "databaseSubnetId", "privateEndpointSubnetId"):
            assert b[key].lower().startswith(vnets[env] + "/subnets/"), (env, key)
