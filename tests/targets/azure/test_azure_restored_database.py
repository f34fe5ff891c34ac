"""Issue 21 on Azure: `mxinfra:azure.database.fromBackup.<env>` puts a point in time (or a backup id: the
time it names) in service.

With the key the program declares a NEW Flexible Server `<server>-from-<label>` (the core's label: the
backup id, or `pit-<time>`), a point-in-time restore of the environment's server, with every setting and
guarantee of it (delegated subnet, private DNS zone, TLS, the database `mendix`, HA and geo-redundant
backups on production, protect, retain, the CanNotDelete lock on acceptance and production, tags); the
runtime's host is the new server's; the environment's own server stays declared exactly as without the
key. Config refusals exit 2 in one report; `mxinfra plan` shows the switch.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mxinfra.backups import parse_restore_point
from mxinfra.cli import main
from mxinfra.components import ENVIRONMENT_TYPE, MendixApp
from mxinfra.naming import Naming
from mxinfra_azure import database
from mxinfra_azure.config import AzureConfig
from mxinfra_azure.database import RESTORE_INPUTS, in_service, restored_server_name
from mxinfra_azure.names import Names

from azhelpers import AZURE_BLOCK, SUB, VNET, config, deployment, env_of
from test_azure_update import cloud

T = "azure-native:"
SERVER = f"{T}dbforpostgresql:Server"
CONFIGURATION = f"{T}dbforpostgresql:Configuration"
DATABASE = f"{T}dbforpostgresql:Database"
LOCK = f"{T}authorization:ManagementLockByScope"
ROLES = ("test", "acceptance", "production")
BACKUP_ID = "20261204T020000Z"


def recent(hours: int = 2) -> str:
    """A point in time within every tier's retention (the servers keep 7 days or more)."""
    return (datetime.now(timezone.utc) - timedelta(hours=hours)).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def server_of(role: str) -> str:
    return Names.of(Naming("orders", role), SUB).database_server


def restored(role: str, value: str) -> str:
    return f"{server_of(role)}-from-{parse_restore_point(value).label.lower()}"


def keyed(role: str, value: str) -> dict[str, Any]:
    return config(role, azure={"database": {"fromBackup": {role: value}}})


def run(pulumi_run, cfg: dict[str, Any], **kw: Any):
    d = deployment(cfg)
    return pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="azure-production", project="orders", **kw)


# --- the decision --------------------------------------------------------------------------------------


def test_in_service_names_a_new_server_by_the_cores_label():
    own = server_of("production")
    cfg = AzureConfig.model_validate({**AZURE_BLOCK, "database": {"fromBackup": {"production": "2026-12-04T10:15:00Z"}}})
    r = in_service(cfg, "production", own)
    assert r.server == f"{own}-from-pit-20261204t101500z" and r.kind == "db-from-pit-20261204t101500z"
    assert r.point.iso == "2026-12-04T10:15:00Z" and not r.point.is_backup
    assert in_service(cfg, "test", server_of("test")) is None
    # a backup id restores as the time it names, into a server named after the id
    b = in_service(AzureConfig.model_validate({**AZURE_BLOCK, "database": {"fromBackup": {"production": BACKUP_ID}}}), "production", own)
    assert b.server == f"{own}-from-20261204t020000z" and b.point.iso == "2026-12-04T02:00:00Z"
    # never `mxinfra backup restore`'s copy <server>-<id>
    assert b.server != f"{own}-{BACKUP_ID.lower()}"


def test_restored_name_within_63_characters_keeps_the_server_unique():
    longest = Names.of(Naming("a" * 20, "e" * 20), SUB).database_server
    names = {restored_server_name(longest, label) for label in ("pit-20261204T101500Z", "pit-20261204T101501Z", BACKUP_ID)}
    assert len(names) == 3
    for name in names:
        assert len(name) <= 63 and "-from-" in name and name != longest and name == name.lower() and not name.endswith("-")
    # two servers that share their first characters still get different restored names
    other = longest[:-1] + ("0" if longest[-1] != "0" else "1")
    assert restored_server_name(longest, BACKUP_ID) != restored_server_name(other, BACKUP_ID)


# --- the program: the new server's exact contract ------------------------------------------------------


# what only the restored server sets differently: its name, where it comes from, no credentials of its own
OWN_ONLY = {"serverName", "administratorLogin", "administratorLoginPassword"}


@pytest.mark.parametrize("role", ROLES)
def test_restored_server_contract(pulumi_run, role):
    value = recent()
    res = run(pulumi_run, keyed(role, value))
    env = res.one(ENVIRONMENT_TYPE)
    own = res.named(f"orders-{role}-db")
    new = res.named(f"orders-{role}-db-from-pit-{parse_restore_point(value).compact.lower()}")
    i = new.inputs
    guarded = role != "test"
    assert new.type == SERVER and new.parent == env.urn
    assert i["serverName"] == restored(role, value)
    assert (i["createMode"], i["sourceServerResourceId"], i["pointInTimeUTC"]) == ("PointInTimeRestore", f"orders-{role}-db-id", value)
    assert own.urn in new.dependencies
    # the source's administrator and generated password (the runtime's Key Vault secrets) come with the restore
    assert "administratorLogin" not in i and "administratorLoginPassword" not in i
    assert i["network"] == {"delegatedSubnetResourceId": f"{VNET}/subnets/db", "privateDnsZoneArmResourceId": f"orders-{role}-db-zone-id", "publicNetworkAccess": "Disabled"}
    assert i["backup"]["geoRedundantBackup"] == ("Enabled" if role == "production" else "Disabled")
    assert i["highAvailability"]["mode"] == ("ZoneRedundant" if role == "production" else "Disabled")
    # every other setting exactly the environment's server's
    assert {k: v for k, v in i.items() if k not in OWN_ONLY | set(RESTORE_INPUTS)} == {k: v for k, v in own.inputs.items() if k not in OWN_ONLY}
    # protected as the environment's server is; forgotten, never deleted, when the key goes; restored once
    assert new.protect is guarded and new.retain_on_delete is True and sorted(new.ignore_changes) == sorted(RESTORE_INPUTS)
    kind = f"orders-{role}-db-from-pit-{parse_restore_point(value).compact.lower()}"
    tls = {r.inputs["configurationName"]: r.inputs["value"] for r in res.of_type(CONFIGURATION) if r.name.startswith(kind)}
    assert tls == {"require_secure_transport": "ON", "ssl_min_protocol_version": "TLSv1.2"}
    # on the restored server (its name is known once it exists: the dependency says which)
    assert all(new.urn in r.dependencies and own.urn not in r.dependencies for r in res.of_type(CONFIGURATION) if r.name.startswith(kind))
    db = res.named(f"{kind}-database")
    assert db.type == DATABASE and (db.inputs["databaseName"], db.inputs["charset"], db.inputs["collation"]) == ("mendix", "UTF8", "en_US.utf8")
    assert new.urn in db.dependencies
    assert (db.protect, db.retain_on_delete) == (guarded, True)
    locks = {r.name: r for r in res.of_type(LOCK)}
    if guarded:
        lock = locks[f"{kind}-lock"]
        assert lock.inputs["level"] == "CanNotDelete" and lock.inputs["scope"] == f"{kind}-id"
        # the server outlives the key (retained), and so does its lock: a retired server stays locked
        assert lock.retain_on_delete is True
    else:
        assert f"{kind}-lock" not in locks
    # and its TLS settings stay with it
    tls = [r for r in res.of_type(CONFIGURATION) if r.name.startswith(kind + "-")]
    assert len(tls) == 2 and all(r.retain_on_delete for r in tls)


@pytest.mark.parametrize("role", ROLES)
def test_own_server_stays_declared_unchanged(pulumi_run, role):
    value = recent()
    before = run(pulumi_run, config(role))
    after = run(pulumi_run, keyed(role, value))
    kind = f"db-from-pit-{parse_restore_point(value).compact.lower()}"
    for r in before:
        if r.type.startswith(f"{T}dbforpostgresql:") or r.type == LOCK or r.name == f"orders-{role}-db-password":
            a = after.named(r.name)
            assert (a.inputs, a.protect, a.retain_on_delete, a.ignore_changes, a.parent) == (r.inputs, r.protect, r.retain_on_delete, r.ignore_changes, r.parent), r.name
    added = {r.name for r in after} - {r.name for r in before}
    expected = {f"orders-{role}-{kind}{s}" for s in ("", "-require-secure-transport", "-ssl-min-protocol-version", "-database")}
    if role != "test":
        expected.add(f"orders-{role}-{kind}-lock")
    assert added == expected


def test_runtime_uses_the_restored_server(pulumi_run):
    value = recent()
    res = run(pulumi_run, keyed("production", value))
    host = f"{restored('production', value)}.postgres.database.azure.com"
    for app in res.of_type(f"{T}app:ContainerApp"):
        env = env_of(app)
        assert env["MXRUNTIME_DatabaseJdbcUrl"]["value"].startswith(f"jdbc:postgresql://{host}:5432/mendix?")
        assert server_of("production") + "." not in json.dumps(env, default=str)
        # the same Key Vault secrets: the restored server has the source's administrator and password
        assert {"MXRUNTIME_DatabasePassword", "MXRUNTIME_DatabaseUserName"} <= {k for k, v in env.items() if "secretRef" in v}


def test_outputs_name_the_server_in_service(pulumi_run):
    seen: dict[str, Any] = {}
    value = recent()
    d = deployment(keyed("test", value))

    def program():
        MendixApp("orders", {"deployment": d}).environments.apply(seen.update)

    res = pulumi_run(program, stack="azure-production", project="orders", preview=False, outputs=cloud)
    assert seen["test"]["database"] == restored("test", value)
    # with the names known (as pulumi up sees them): the restored server's settings and database are its own
    kind = f"orders-test-db-from-pit-{parse_restore_point(value).compact.lower()}"
    on_new = {r.name: r.inputs["serverName"] for r in res if r.type in (CONFIGURATION, DATABASE) and r.name.startswith(kind)}
    assert len(on_new) == 3 and set(on_new.values()) == {restored("test", value)}
    on_own = {r.inputs["serverName"] for r in res if r.type in (CONFIGURATION, DATABASE) and not r.name.startswith(kind)}
    assert on_own == {server_of("test")}


# --- refusals: one report, exit 2; the plan -------------------------------------------------------------


def _plan(project, capsys, cfg: dict[str, Any], *args: str) -> tuple[int, str, str]:
    for body in cfg["mxinfra:environments"].values():
        for key in ("adminPassword", "license", "secretConstants"):
            body.pop(key, None)
    project.stack("azure-test", cfg)
    rc = main(["plan", "-s", "azure-test", "-C", str(project.path), *args])
    out = capsys.readouterr()
    return rc, out.out, " ".join(out.err.split())


def test_config_refusals_in_one_report(project, capsys):
    cfg = config("test")
    for name in ("dev", "lab", "qa", "uat"):
        cfg["mxinfra:environments"][name] = dict(cfg["mxinfra:environments"]["test"])
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cfg["mxinfra:azure"]["database"] = {
        "fromBackup": {
            "test": future,  # not yet
            "dev": "2026-12-04T10:15:00",  # no zone
            "lab": "2026-12-04",  # neither form
            "qa": "2026-02-30T10:15:00Z",  # no such day
            "uat": "2026-12-04T10:15:00+01:00",  # not UTC with Z
            "staging": BACKUP_ID,  # no such environment
        }
    }
    rc, out, err = _plan(project, capsys, cfg)
    assert rc == 2, err
    key = "mxinfra:azure.database.fromBackup"
    forms = "expected a backup id YYYYmmddTHHMMSSZ as `mxinfra backup list` prints it (e.g. 20261204T020000Z) or a point in time in UTC YYYY-mm-ddTHH:MM:SSZ (e.g. 2026-12-04T10:15:00Z)"
    assert f"{key}.test: '{future}' is in the future (now: " in err
    assert f"{key}.dev: '2026-12-04T10:15:00' has no time zone: {forms}" in err
    assert f"{key}.lab: '2026-12-04' is neither a backup id nor a point in time: {forms}" in err
    assert f"{key}.qa: '2026-02-30T10:15:00Z' is not a time: {forms}" in err
    assert f"{key}.uat: '2026-12-04T10:15:00+01:00' is not a time in UTC with Z to the second: {forms}" in err
    assert f"{key}.staging: unknown environment 'staging'" in err
    assert "6 problem(s)" in err


def test_beyond_retention_is_warned(pulumi_run):
    """Flexible Server restores a point in time within its backupRetentionDays (the daily tier, 7 to 35
    days): beyond it the plan warns; a server restored from it before is kept (its restore inputs are
    ignored), and Azure refuses a new restore with its own message."""
    old = recent(hours=24 * 15)  # beyond the default 14 days
    res = run(pulumi_run, keyed("test", old))
    (warned,) = [w for w in res.warnings if "database.fromBackup" in w]
    assert "older than the 14 day(s) the environment's automated backups are kept" in warned
    res = run(pulumi_run, config("test", azure={"database": {"fromBackup": {"test": old}}}, env={"backups": {"retention": {"daily": 30}}}))
    assert not [w for w in res.warnings if "database.fromBackup" in w]


def test_backup_commands_act_on_the_server_in_service():
    # With a backup in service, `mxinfra backup` backs up, lists and restores the server the app writes to
    # (and a production restore's backup first is of the data it replaces), not the idle original.
    from mxinfra_azure.target import AzureTarget

    for cfg, expected in ((config("production"), None), (keyed("production", BACKUP_ID), "from")):
        d = deployment(cfg)
        actions = AzureTarget().backup_actions(d, "production", Path("."))
        own = Names.of(d.environment("production").naming, SUB).database_server
        if expected is None:
            assert actions.server == own
        else:
            assert actions.server == restored_server_name(own, BACKUP_ID) and actions.server != own


def test_plan_shows_the_restored_server(project, capsys):
    value = recent()
    rc, out, err = _plan(project, capsys, keyed("test", value))
    assert rc == 0, err
    tree = " ".join(out.replace("│", " ").split())
    assert f"the app uses {restored('test', value)}, a NEW server restored to {value} from the environment's server" in tree


def test_database_module_decides_once():
    # only database.in_service reads the key (target.py checks it, the runtime takes the Database's host)
    src = Path(database.__file__).parent
    assert sorted(p.name for p in src.glob("*.py") if ".source(" in p.read_text() or "fromBackup.get" in p.read_text()) == ["config.py", "database.py"]
    # the decision is database.in_service's; target.py asks it for the backup commands' server
    assert sorted(p.name for p in src.glob("*.py") if "in_service(" in p.read_text()) == ["database.py", "target.py"]
    assert "def in_service(" not in (src / "target.py").read_text()
