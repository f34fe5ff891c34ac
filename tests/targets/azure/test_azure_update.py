"""The Azure target as `pulumi up` would see it (the cloud's outputs known): generated secrets stay
Pulumi secrets, and the apps reference the vault's versioned secret URIs."""

from __future__ import annotations

from mxinfra.components import MendixApp
from mxinfra.mockrun import Sealed, run_mocked

from azhelpers import SECRET_VALUES, config, deployment, env_of, walk

GENERATED = "Generated-Db-Pw-Should-Stay-Secret"


# The input that carries each resource's own name, which ARM returns as `name`.
NAME_INPUT = {
    "azure-native:resources:ResourceGroup": "resourceGroupName",
    "azure-native:keyvault:Vault": "vaultName",
    "azure-native:storage:StorageAccount": "accountName",
    "azure-native:storage:BlobContainer": "containerName",
    "azure-native:dbforpostgresql:Server": "serverName",
    "azure-native:operationalinsights:Workspace": "workspaceName",
    "azure-native:privatedns:PrivateZone": "privateZoneName",
    "azure-native:network:PrivateEndpoint": "privateEndpointName",
    "azure-native:app:ManagedEnvironment": "environmentName",
    "azure-native:managedidentity:UserAssignedIdentity": "resourceName",
}


def cloud(args):
    state = {}
    if args.typ in NAME_INPUT:
        state["name"] = args.inputs[NAME_INPUT[args.typ]]
    if args.typ == "azure-native:managedidentity:UserAssignedIdentity":
        state.update(clientId="client-guid", principalId="principal-guid")
    if args.typ == "random:index/randomPassword:RandomPassword":
        state["result"] = GENERATED
    if args.typ == "azure-native:keyvault:Secret":
        name = args.inputs["secretName"]
        state["properties"] = {"secretUri": f"https://kv.vault.azure.net/secrets/{name}", "secretUriWithVersion": f"https://kv.vault.azure.net/secrets/{name}/0123abcd"}
    if args.typ == "azure-native:app:ManagedEnvironment":
        state["defaultDomain"] = "happy-sea-1234.westeurope.azurecontainerapps.io"
    return state


def test_generated_password_and_versioned_references():
    d = deployment(config("production"))
    run = run_mocked(lambda: MendixApp("orders", {"deployment": d}), project="orders", stack="azure-production", preview=False, outputs=cloud)
    regs = {r.name: r for r in run.registrations}
    server = regs["orders-production-db"]
    assert server.inputs["administratorLoginPassword"] == Sealed(GENERATED)
    kv = regs["orders-production-secret-mxruntime-databasepassword"]
    assert isinstance(kv.inputs["properties"], Sealed) or isinstance(kv.inputs["properties"]["value"], Sealed)
    for r in run.registrations:
        if r.type in ("azure-native:keyvault:Secret", "azure-native:dbforpostgresql:Server", "random:index/randomPassword:RandomPassword"):
            continue
        for leaf in walk({k: v for k, v in r.inputs.items() if not isinstance(v, Sealed) or r.type != "azure-native:app:ManagedEnvironment"}):
            for value in (*SECRET_VALUES, GENERATED):
                assert value not in str(leaf), (r.name, value)
    for name in ("orders-production-app", "orders-production-worker"):
        app = regs[name]
        secrets = {s["name"]: s["keyVaultUrl"] for s in app.input("configuration.secrets")}
        assert secrets["mxruntime-databasepassword"] == "https://kv.vault.azure.net/secrets/mxruntime-databasepassword/0123abcd"
        assert secrets["admin-password"].endswith("/admin-password/0123abcd")
        assert env_of(app)["MXRUNTIME_DatabasePassword"] == {"name": "MXRUNTIME_DatabasePassword", "secretRef": "mxruntime-databasepassword"}
        # the configuration is not a secret as a whole: the references are reviewable
        assert not isinstance(app.inputs["configuration"], Sealed)


def test_no_invoke_reads_a_key():
    """Every `pulumi up` runs the program's invokes with the deploying identity (a release too): none of
    them may read a key, so the managed environment logs through a diagnostic setting, not a shared key."""
    tokens: list[str] = []

    def call(args):
        tokens.append(args.token)
        return {}

    for role in ("test", "production"):
        d = deployment(config(role))
        run = run_mocked(lambda: MendixApp("orders", {"deployment": d}), project="orders", stack=f"azure-{role}", preview=False, outputs=cloud, call=call)
        env = next(r for r in run.registrations if r.type == "azure-native:app:ManagedEnvironment")
        assert env.inputs["appLogsConfiguration"] == {"destination": "azure-monitor"}
    assert [t for t in tokens if "key" in t.lower() or "secret" in t.lower()] == [], tokens
