"""Issue 21 on the azure target: `mxinfra backup list|create|restore` through the Flexible Server's own backups
and the files' blob point-in-time restore, end to end through the real CLI.

Azure Resource Manager is the drift tests' loopback HTTPS double, extended with the operations the commands
call (azure_backup_double.BackupArm): Flexible Server's Servers_Get, Servers_CreateOrUpdate and
BackupsAutomaticAndOnDemand_ListByServer/Get/Create at the API version the commands pin, and the storage
account's GetProperties and RestoreBlobRanges; every request and answer is validated against Microsoft's
published description of that version (spec/, see its README). The environment is as `pulumi up` leaves
it: its VNet-integrated server and its storage account; the files container is a history of writes that a
blob restore really winds back. The commands reach the double as they reach ARM (running.ARM, the
credential running.default_credential gives).

The rendered roles of the `backups` permission (`mxinfra plan --out`: its custom role at the resource group
and its `backups-network` role on the database subnet, each at the scope it is assigned or PIM-eligible at)
are the double's RBAC: every call the commands make, and the linked actions ARM checks of the restore's
server PUT (the joins of the subnet and the private DNS zone it names), is authorised against their actions
and scopes as Azure reads them, and the same calls are replayed against the rendered roles of `deploy` and
`monitor`, which must refuse them. Not verified against real Azure: see the README's Backups.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mxinfra.cli import main
from mxinfra.errors import UserError

import mxinfra_azure.running as running
from mxinfra_azure import backup_actions
from mxinfra_azure.backup_actions import backups_of, container_range, on_demand_name, restored_server
from mxinfra_azure.backups import settings
from mxinfra_azure.names import FILES_CONTAINER, Names

from azhelpers import AZURE_BLOCK, SUB, VNET, config, deployment, rbac_allows
from azure_backup_double import DP_VERSION, PG_VERSION, STORAGE_VERSION, BackupArm, policy_denies, request_problems, response_check, within
from test_azure_drift import NoCredential, serving, stack_file

ID = re.compile(r"backup (\d{8}T\d{6}Z) taken")
DB_READ = "Microsoft.DBforPostgreSQL/flexibleServers/read"
SUBNET_JOIN = "Microsoft.Network/virtualNetworks/subnets/join/action"
ZONE_JOIN = "Microsoft.Network/privateDnsZones/join/action"
SERVER_WRITE = "Microsoft.DBforPostgreSQL/flexibleServers/write"


@pytest.fixture
def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BackupArm]:
    """The double (test_azure_drift.serving); the commands poll without waiting."""
    monkeypatch.setattr(backup_actions, "POLL_SECONDS", 0.0)
    yield from serving(tmp_path, monkeypatch, lambda ca, cert, key: BackupArm(ca, cert, key, subscription=SUB, group="none"))


def deployed(double: BackupArm, project: Any, role: str, **env: Any) -> tuple[str, Names]:
    """The stack `azure-<role>` and what `pulumi up` left of its environment in Azure; (stack, its names)."""
    stack = f"azure-{role}"
    cfg = config(role, env=env or None)
    project.stack(stack, stack_file(cfg))
    p = deployment(cfg, stack).environment(role)
    names = Names.of(p.naming, SUB)
    double.group, double.groups = names.resource_group, {names.resource_group, names.restores_group}
    tags = {"mxinfra:app": "orders", "mxinfra:environment": role}
    zone = f"/subscriptions/{SUB}/resourceGroups/{names.resource_group}/providers/Microsoft.Network/privateDnsZones/{names.database_zone}"
    double.put_server(names.database_server, subnet=AZURE_BLOCK["databaseSubnetId"], zone=zone, tags=tags, retention=14)
    double.put_account(names.storage_account, tags)
    if settings(p.environment).vault:
        double.put_vault(names.backup_vault, [names.backup_instance("files"), names.backup_instance("db")])
    return stack, names


def _cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _records(project: Any, env: str) -> list[Any]:
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.store import open_store

    return ActivityLog(open_store(f"file://{project.path / '.mxinfra'}")).records(env)


def _iso_z(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(**kw: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(**kw)


def f(name: str) -> str:
    """A blob of the files container."""
    return f"{FILES_CONTAINER}/{name}"


# --- end to end ------------------------------------------------------------------------------------------


def test_create_list_restore_on_test(arm, project, capsys):
    stack, n = deployed(arm, project, "test")
    arm.automatic_backup(n.database_server, _ago(days=1))
    arm.write_file(f("doc1"), b"\x00\x01 file one", _ago(hours=3))
    arm.write_file(f("doc2"), b"file two", _ago(hours=2))
    arm.write_file("other-container/x", b"not the app's", _ago(hours=2))

    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    assert rc == 0, err
    (backup_id,) = ID.findall(out)
    (put,) = [w for w in arm.writes if w[0] == "PUT"]
    name = put[1].rsplit("/", 1)[1]
    assert put[1] == f"{arm.server_id(n.database_server)}/backups/{name}" and re.fullmatch(r"mxinfra-\d{8}t\d{6}\.\d{6}z", name), put
    assert put[2] is None  # BackupsAutomaticAndOnDemand_Create takes no body
    # the files into the vault too, first: the policy's rule, kept as its Default tier; the point holds them as they were
    (post,) = [w for w in arm.writes if w[0] == "POST"]
    assert post == ("POST", arm.instance_id(n.backup_vault, n.backup_instance("files")) + "/backup", {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Default"}}})
    (point,) = arm.vaults[n.backup_vault.lower()][n.backup_instance("files").lower()]
    assert arm.vault_files[point["name"]] == arm.files() and f"the files' backup into the vault {n.backup_vault}: recovery point {point['name']}" in " ".join(err.split())
    rc, out, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path), "--json")
    assert rc == 0, err
    ids = json.loads(out)
    assert ids[0] == backup_id and len(ids) == 2 and ids == sorted(ids, reverse=True)
    taken = _parse_id(backup_id)
    snapshot = arm.files()

    arm.write_file(f("doc1"), b"changed")
    arm.write_file(f("doc2"), None)
    arm.write_file(f("doc3"), b"written since")
    arm.write_file("other-container/x", b"changed outside the range")
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    assert rc == 0, err
    # the database: a NEW server named after the backup, at the backup's instant, in the source's subnet and zone
    new = f"{n.database_server}-{backup_id.lower()}"
    (restore,) = arm.restores
    (backup,) = [b for b in arm.backups.values() if b["properties"]["backupType"] == "Customer On-Demand"]
    instant = datetime.fromisoformat(backup["properties"]["completedTime"].replace("Z", "+00:00"))
    assert restore == {
        "server": new,
        "source": n.database_server,
        "pointInTime": instant,
        "network": {"delegatedSubnetResourceId": AZURE_BLOCK["databaseSubnetId"], "privateDnsZoneArmResourceId": arm.servers[n.database_server]["properties"]["network"]["privateDnsZoneArmResourceId"]},
        "tags": {"mxinfra:app": "orders", "mxinfra:environment": "test"},
    }
    assert instant.replace(microsecond=0) == taken
    assert arm.servers[n.database_server.lower()]["properties"]["state"] == "Ready" and new in arm.servers
    # the files: the container back at the same instant; another container untouched
    (blobs,) = arm.blob_restores
    assert blobs["parameters"] == {"timeToRestore": backup["properties"]["completedTime"], "blobRanges": [{"startRange": "mendix-files/", "endRange": "mendix-files0"}]}
    assert {k: v for k, v in arm.files().items() if k.startswith(FILES_CONTAINER + "/")} == {k: v for k, v in snapshot.items() if k.startswith(FILES_CONTAINER + "/")}
    assert arm.files()["other-container/x"] == b"changed outside the range"
    said = " ".join(err.split())
    assert f"into the NEW server {new} (resource group {n.restores_group}) to look at; the app still uses {n.database_server}, which is unchanged" in said
    assert "set mxinfra:azure.database.fromBackup.test: " in said and "files written since are removed" in said

    recs = _records(project, "test")
    assert [(r.action, r.changes) for r in recs] == [
        # the server's backup, and the files' recovery point in the vault, which `list` does not show
        ("backup", {"backup": {"id": backup_id, "trigger": "on-demand", "files": f"{n.backup_vault}/{n.backup_instance('files')}/{point['name']}"}}),
        # written once the checks passed, before the first request that changes anything
        ("intent", {"intends": "restore", "restore": {"id": backup_id, "from": "test"}}),
        # what the restore made: the new server, the container rolled back, to which instant
        ("restore", {"restore": {"id": backup_id, "from": "test", "database": new, "filesInto": f"{n.storage_account}/{FILES_CONTAINER}",
                                 "pointInTime": recs[2].changes["restore"]["pointInTime"]}}),
    ]
    assert recs[2].changes["restore"]["pointInTime"] == blobs["parameters"]["timeToRestore"]
    assert all(r.signature for r in recs)
    rc, out, err = _cli(capsys, "activity", "verify", "-e", "test", "-C", str(project.path))
    assert rc == 0, out + err


def _parse_id(backup_id: str) -> datetime:
    return datetime.strptime(backup_id, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def test_list_is_every_completed_backup_newest_first(arm, project, capsys):
    stack, n = deployed(arm, project, "acceptance")
    times = [datetime(2026, 12, 1, 2, 0, 7, 250000, tzinfo=timezone.utc) + timedelta(days=i) for i in range(3)]
    for t in times:
        arm.automatic_backup(n.database_server, t)
    arm.backups["running"] = arm._backup_doc(n.database_server, "running", "Customer On-Demand", None)
    rc, out, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    assert out.split() == ["20261203T020007Z", "20261202T020007Z", "20261201T020007Z"]  # the running one is not a backup yet
    # four backups, two a page: the SDK followed nextLink
    assert sum(1 for r in arm.requests if r.get("operation") == "BackupsAutomaticAndOnDemand_ListByServer") == 2
    assert {r["query"]["api-version"][0] for r in arm.requests} == {PG_VERSION}


def test_production_restore_takes_a_backup_first(arm, project, capsys):
    stack, n = deployed(arm, project, "production")
    arm.write_file(f("f"), b"1", _ago(hours=1))
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    (first,) = ID.findall(out)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", first, "-C", str(project.path))
    assert rc == 0, err
    assert [r["operation"] for r in arm.requests if r["method"] != "GET"] == ["BackupInstances_AdhocBackup", "BackupsAutomaticAndOnDemand_Create"] * 2 + ["Servers_CreateOrUpdate", "StorageAccounts_RestoreBlobRanges"]
    recs = _records(project, "production")
    assert [r.action for r in recs] == ["backup", "backup", "intent", "restore"]
    safety = recs[1].changes["backup"]
    assert safety["trigger"] == "before restore" and recs[3].changes["restore"]["backupBefore"] == safety["id"]
    # the backup first names the files' point in the vault too, the second one taken
    second = arm.vaults[n.backup_vault.lower()][n.backup_instance("files").lower()][1]["name"]
    assert safety["files"] == f"{n.backup_vault}/{n.backup_instance('files')}/{second}", safety
    assert recs[2].changes == {"intends": "restore", "restore": {k: v for k, v in recs[3].changes["restore"].items() if k in ("id", "from", "backupBefore")}}
    assert recs[3].changes["restore"]["database"] == f"{n.database_server}-{first.lower()}"
    # the restore is of the backup asked for, not of the one taken before it
    assert arm.restores[0]["server"] == f"{n.database_server}-{first.lower()}"
    rc, out, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path), "--json")
    assert set(json.loads(out)) == {first, safety["id"]}
    assert _cli(capsys, "activity", "verify", "-e", "production", "-C", str(project.path))[0] == 0


def test_the_backup_first_holds_the_files_a_production_restore_overwrites(arm, project, capsys):
    """The database's restore makes a new server; what a production restore overwrites is the files. Its backup
    first puts them into the vault (immutable on production, kept the weekly tier), so the restore can be
    undone after the blob service's daily window too."""
    stack, n = deployed(arm, project, "production")
    arm.write_file(f("kept"), b"old", _ago(hours=3))
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    (first,) = ID.findall(out)
    arm.write_file(f("kept"), b"new")
    arm.write_file(f("since"), b"written since")
    current = arm.files()
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", first, "-C", str(project.path))
    assert rc == 0, err
    assert arm.files() == {f("kept"): b"old"}
    points = arm.vaults[n.backup_vault.lower()][n.backup_instance("files").lower()]
    assert len(points) == 2 and arm.vault_files[points[-1]["name"]] == current


def test_a_scheduled_backup_ending_meanwhile_is_not_taken_for_the_one_asked_for(arm, project, capsys):
    """The vault names points by GUID and the request's answer names none: a point that was not there before
    and was taken at or after the request is the backup asked for. A scheduled backup that began earlier and
    ends while the command waits is neither."""
    stack, n = deployed(arm, project, "production")
    vault, files = n.backup_vault, n.backup_instance("files")
    arm.write_file(f("kept"), b"old", _ago(hours=2))
    # it ends after the command's first read of the points (the one before its request) and before its own
    scheduled = arm.scheduled_point(vault, files, began=_ago(minutes=30), reads=2)
    arm.write_file(f("kept"), b"new", _ago(minutes=10))
    arm.vault_steps = 4  # the command's own backup ends after the scheduled one
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    names = [p["name"] for p in arm.vaults[vault.lower()][files.lower()]]
    assert names[0] == scheduled and len(names) == 2
    ours = names[1]
    assert arm.vault_files[ours] == {f("kept"): b"new"} and arm.vault_files[scheduled] == {f("kept"): b"old"}
    (rec,) = _records(project, "production")
    assert rec.changes["backup"]["files"] == f"{vault}/{files}/{ours}", rec.changes
    # and were the command's own never to end, the scheduled one is still not taken for it: nothing recorded
    arm.vault_steps = 10**9
    arm.scheduled_point(vault, files, began=_ago(minutes=5), reads=2)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(backup_actions, "BACKUP_TIMEOUT", 0.5)
        rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 2 and "made no recovery point" in err and len(_records(project, "production")) == 1, err


@pytest.mark.parametrize(("behind", "taken"), [(timedelta(seconds=30), True), (timedelta(minutes=5), False)])
def test_a_point_stamped_by_a_clock_behind_is_the_backup_asked_for_within_a_minute(arm, project, capsys, monkeypatch, behind, taken):
    """The backup service stamps a point with its own clock, ARM's Date is whole seconds of another: a new
    point up to POINT_SLACK (a minute) before the request is this backup; one older is not (nothing recorded)."""
    stack, n = deployed(arm, project, "production")
    arm.point_skew = behind
    monkeypatch.setattr(backup_actions, "BACKUP_TIMEOUT", 1.0)
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert (rc == 0) is taken, err
    assert len(_records(project, "production")) == (1 if taken else 0)
    assert backup_actions.POINT_SLACK == timedelta(minutes=1)


@pytest.mark.parametrize("arm_behind", [True, False])
def test_a_point_stamped_by_arms_clock_behind_this_machines_is_taken_by_the_answers_date(arm, project, capsys, monkeypatch, arm_behind):
    """ARM and the backup service 3 minutes behind this machine: the point, stamped 3.5 minutes before this
    machine's request, is within a minute of the answer's Date (3 minutes behind), so it is this backup.
    With ARM's Date on time, the same point is too old (nothing recorded)."""
    stack, n = deployed(arm, project, "production")
    arm.clock_behind = 180.0 if arm_behind else 0.0
    arm.point_skew = timedelta(minutes=3, seconds=30)
    monkeypatch.setattr(backup_actions, "BACKUP_TIMEOUT", 1.0)
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert (rc == 0) is arm_behind, err
    assert arm_behind or "made no recovery point within" in " ".join(err.split()), err
    assert len(_records(project, "production")) == (1 if arm_behind else 0)


def test_azures_seven_digit_times_are_read():
    assert backup_actions._point_time({"recoveryPointTime": "2026-12-07T10:00:00.1234567Z"}) == datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert backup_actions._point_time({"recoveryPointTime": "2026-12-07T10:00:00"}) is None  # no zone: not guessed
    assert backup_actions._point_time({}) is None


def test_the_files_backup_is_found_past_the_first_page_of_points(arm, project, capsys, monkeypatch):
    stack, n = deployed(arm, project, "production")
    vault, files = n.backup_vault, n.backup_instance("files")
    for days in (21, 14, 7):  # three weeklies: with the double's two points a page, the new one is on page 2
        arm.scheduled_point(vault, files, began=_ago(days=days))
    monkeypatch.setattr(backup_actions, "BACKUP_TIMEOUT", 2.0)
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    points = arm.vaults[vault.lower()][files.lower()]
    assert len(points) == 4 and points[-1]["name"] in err
    assert sum(1 for r in arm.requests if r["path"].endswith("/recoveryPoints") and r["query"].get("$skipToken")) >= 1


@pytest.mark.parametrize("fault", ["refused", "stalled", "partial"])
def test_a_files_backup_that_fails_restores_nothing_and_records_nothing(arm, project, capsys, monkeypatch, fault):
    stack, n = deployed(arm, project, "production")
    arm.automatic_backup(n.database_server, _ago(days=1))
    arm.write_file(f("kept"), b"now", _ago(hours=1))
    (backup_id,) = _cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path))[1].split()
    if fault in ("refused", "partial"):
        arm.fail = {"refused": "vault", "partial": "partial"}[fault]
    else:  # the server's backup completes, the vault's never makes its point
        arm.vault_steps = 10**9
        monkeypatch.setattr(backup_actions, "BACKUP_TIMEOUT", 0.5)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert n.backup_instance("files") in said or n.backup_vault in said, said
    if fault == "partial":
        assert "is Partial" in said, said
    if fault == "stalled":  # the server's backup completed, the files' did not: that is said
        assert "made no recovery point" in said and "az dataprotection recovery-point list" in said, said
    if fault != "refused":
        assert f"az dataprotection job list -g {n.resource_group} --vault-name {n.backup_vault}" in said, said
    assert not arm.restores and not arm.blob_restores and arm.files() == {f("kept"): b"now"}
    assert _records(project, "production") == [] and said.endswith("nothing was recorded"), said


@pytest.mark.parametrize("misses", [0, 1, 2, "alternating"])
def test_a_failed_vault_job_ends_the_wait_at_once(arm, project, capsys, monkeypatch, misses):
    """The backup's answer names its operation, the operation its job: a job that fails ends the command then,
    naming the job, its state and its error, not at the deadline (here 60 s; 2 hours by default). A job the
    operation has just named may not be readable at once (404: `misses` reads): the next poll reads it again.
    Only failed reads in a row give the follow up: reads of the operation that fail and succeed in turn do not."""
    import time

    stack, n = deployed(arm, project, "production")
    arm.fail = "job"
    if misses == "alternating":
        arm.operation_script = ["missing", "InProgress"] * backup_actions.FOLLOW_MISSES
    else:
        arm.job_missing = misses
    monkeypatch.setattr(backup_actions, "BACKUP_TIMEOUT", 60.0)
    began = time.monotonic()
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    took = time.monotonic() - began
    said = " ".join(err.split())
    (job,) = arm.jobs
    assert rc == 2 and "Traceback" not in err, err
    assert f"the files' backup into the vault {n.backup_vault} made no recovery point: its job {job} ended Failed: UserErrorBlobBackupFailed: " in said, said
    assert f"az dataprotection job list -g {n.resource_group} --vault-name {n.backup_vault}" in said and said.endswith("nothing was recorded"), said
    assert took < 30 and "no longer followed" not in said, (took, said)
    assert _records(project, "production") == [] and arm.job_missing == 0 and arm.operation_script == []
    ops = [r["operation"] for r in arm.requests if r.get("operation")]
    assert "OperationStatusBackupVaultContext_Get" in ops and "Jobs_Get" in ops


def test_a_job_that_cannot_be_read_leaves_the_wait_to_the_recovery_points(arm, project, capsys):
    """Following the job only ends the wait early: a job Azure does not find (404) is said, and the backup's
    point still ends it well (the job is given up after backup_actions.FOLLOW_MISSES reads in a row)."""
    stack, n = deployed(arm, project, "production")
    arm.job_unknown = True
    arm.vault_steps = backup_actions.FOLLOW_MISSES + 2  # the point comes after the follow was given up
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 0, err
    assert f"is no longer followed by its job ({backup_actions.FOLLOW_MISSES} reads in a row failed, the last: " in said and "waiting for its recovery point" in said, said
    assert [r.action for r in _records(project, "production")] == ["backup"]


def test_a_vault_operation_not_under_the_vault_is_not_followed(arm, project, capsys, monkeypatch):
    """Only the vault's own operation status is read (what the backups role may read): an answer naming
    another address leaves the wait to the recovery points, as before."""
    from mxinfra_azure.target import AzureTarget

    _, n = deployed(arm, project, "production")
    actions = AzureTarget().backup_actions(deployment(config("production")), "production", project.path)
    vault = f"/subscriptions/{SUB}/resourceGroups/{n.resource_group}/providers/Microsoft.DataProtection/backupVaults/{n.backup_vault}"
    assert actions._vault_operation({"Azure-AsyncOperation": f"https://management.azure.com{vault}/operationStatus/x?api-version=1"}) == f"{vault}/operationStatus/x"
    for elsewhere in (f"https://management.azure.com/subscriptions/{SUB}/providers/Microsoft.DataProtection/locations/westeurope/operationStatus/x", f"https://management.azure.com{vault}-x/operationStatus/x", ""):
        assert actions._vault_operation({"azure-asyncoperation": elsewhere}) is None, elsewhere


def test_without_a_vault_a_backup_is_the_servers_alone(arm, project, capsys):
    stack, n = deployed(arm, project, "test", backups={"retention": {"daily": 7, "weekly": 0, "monthly": 0}})
    assert arm.vaults == {}
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    assert rc == 0, err
    assert [r["operation"] for r in arm.requests if r["method"] != "GET"] == ["BackupsAutomaticAndOnDemand_Create"]
    assert not [r for r in arm.requests if "DataProtection" in r["path"]]


def test_a_production_restore_without_a_backup_first_is_refused(arm, project):
    """The actions themselves refuse it: only `create` in the same run (the CLI's order) allows it."""
    from mxinfra_azure.target import AzureTarget

    _, n = deployed(arm, project, "production")
    arm.automatic_backup(n.database_server, _ago(days=1))
    actions = AzureTarget().backup_actions(deployment(config("production")), "production", project.path)
    with pytest.raises(UserError, match="needs an on-demand backup of it taken first"):
        actions.restore(actions.list()[0], datetime.now(timezone.utc))
    assert arm.writes == []


# --- rights: the rendered roles are the double's RBAC --------------------------------------------------------


Held = list[tuple[dict[str, Any], str]]


def _rendered(project: Any, capsys: Any, tmp_path: Path, stack: str, env: str) -> dict[str, Held]:
    """Each permission's rendered custom roles, each with the scope its assignment or PIM eligibility is at
    (`backups`: its role at the resource group and `backups-network` on the database subnet)."""
    assert main(["plan", "-s", stack, "-C", str(project.path), "--out", str(tmp_path / "plan")]) == 0, capsys.readouterr().err
    capsys.readouterr()
    d = tmp_path / "plan" / "azure" / env
    scopes: dict[str, set[str]] = {}
    for f in sorted([*d.glob("grant-*.assignment.json"), *d.glob("eligible-*.eligibility.json")]):
        i = json.loads(f.read_text())["inputs"]
        scopes.setdefault(f.name.split("-", 1)[1].split(".", 1)[0].removesuffix("-" + i["principalId"]), set()).add(i["scope"])
    held: dict[str, Held] = {}
    for role, at in sorted(scopes.items()):
        definition = d / f"role-{role}.role.json"
        if definition.exists():  # not a built-in role (api's Reader)
            (scope,) = at  # every holder of a role holds it at one scope
            held.setdefault(role.split("-", 1)[0], []).append((json.loads(definition.read_text())["inputs"], scope))
    return held


def _policies(tmp_path: Path, env: str) -> list[dict[str, Any]]:
    """The Azure Policy assignments `_rendered`'s plan wrote for `env`, each with its definition's rule."""
    d = tmp_path / "plan" / "azure" / env
    rules = {f.name.removesuffix(".azure-policy.json"): json.loads(f.read_text())["inputs"]["policyRule"] for f in d.glob("*.azure-policy.json")}
    out = []
    for f in sorted(d.glob("*.azure-policy-assignment.json")):
        inputs = json.loads(f.read_text())["inputs"]
        out.append({"inputs": inputs, "rule": rules[f.name.removesuffix(".azure-policy-assignment.json").removesuffix("-assignment")]})
    return out


def _declared(tmp_path: Path, env: str) -> dict[str, Any]:
    """The environment's server as `_rendered`'s plan declares it (what `pulumi up` creates)."""
    return json.loads((tmp_path / "plan" / "azure" / env / "db.database.json").read_text())["inputs"]


def _allows(held: Held, action: str, resource: str) -> bool:
    """Azure RBAC: a role held at `resource` or above it allows `action`."""
    return any(within(resource, at) and rbac_allows(definition, action) for definition, at in held)


def _caller(arm: BackupArm, held: Held, names: Names) -> None:
    """The double's caller holds these roles: the one at the resource group, and the others where they are held."""
    (arm.role,) = [definition for definition, at in held if at == names.scope]
    arm.grants = [(definition, at) for definition, at in held if at != names.scope]


def test_the_backups_role_allows_every_call_and_deploy_and_monitor_none(arm, project, capsys, tmp_path):
    """Below production, where the backups role restores (on production only the platform identity does: below)."""
    stack, n = deployed(arm, project, "acceptance")
    held = _rendered(project, capsys, tmp_path, stack, "acceptance")
    subnet, zone = AZURE_BLOCK["databaseSubnetId"], arm.servers[n.database_server]["properties"]["network"]["privateDnsZoneArmResourceId"]
    # backups: its role at the resource group, its server writes at the restores group, and its join of the
    # database subnet on that subnet alone
    assert sorted(at for _, at in held["backups"]) == sorted([n.scope, n.restores_scope, subnet])
    _caller(arm, held["backups"], n)
    # and the Azure Policies, which let a restore of the environment's own server through
    arm.policies = _policies(tmp_path, "acceptance")
    assert sorted(p["inputs"]["scope"] for p in arm.policies) == sorted([n.restores_scope, f"/subscriptions/{SUB}"])
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    (first,) = ID.findall(out)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "acceptance", "--id", first, "-C", str(project.path))
    assert rc == 0, err
    assert arm.denied == [] and arm.disallowed == []
    made = set(arm.calls)
    assert {action for action, _ in made} == {
        DB_READ,
        "Microsoft.DBforPostgreSQL/flexibleServers/write",
        "Microsoft.DBforPostgreSQL/flexibleServers/backups/read",
        "Microsoft.DBforPostgreSQL/flexibleServers/backups/write",
        "Microsoft.Storage/storageAccounts/read",
        "Microsoft.Storage/storageAccounts/restoreBlobRanges/action",
        "Microsoft.DataProtection/backupVaults/backupInstances/backup/action",
        "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints/read",
        # the files' backup followed: its operation names its job, whose state tells a failure at once
        "Microsoft.DataProtection/backupVaults/operationStatus/read",
        "Microsoft.DataProtection/backupVaults/backupJobs/read",
        SUBNET_JOIN,
        ZONE_JOIN,
    }
    # the restore's server PUT, in the restores group: its linked actions, on the subnet and the zone it names
    assert {at for a, at in made if a == SERVER_WRITE} == {arm.server_id(f"{n.database_server}-{first.lower()}", n.restores_group)}
    assert {(a, at) for a, at in made if a in (SUBNET_JOIN, ZONE_JOIN)} == {(SUBNET_JOIN, subnet), (ZONE_JOIN, zone)}
    # a hostile holder's PATCH of the running server (its backup retention, its administrator password) is
    # a server write in the environment's group: no role of backups holds it there
    assert not _allows(held["backups"], SERVER_WRITE, arm.server_id(n.database_server))
    assert _allows(held["backups"], SERVER_WRITE, arm.server_id("any-new-server", n.restores_group))
    for action, at in made:
        assert _allows(held["backups"], action, at), (action, at)
    # replayed against deploy's and monitor's roles where they are held: none of them, but monitor's read of
    # the server (what runs); deploy-network reaches the subnet (it is on the VNet) and joins nothing
    assert any(at == VNET for _, at in held["deploy"])
    for name in ("deploy", "monitor"):
        allowed = {(a, at) for a, at in made if _allows(held[name], a, at)}
        assert {a for a, _ in allowed} == ({DB_READ} if name == "monitor" else set()), (name, allowed)
    # the joins are the database subnet's and the environment's zone's alone
    for other in (f"{VNET}/subnets/apps", f"{VNET}/subnets/endpoints", VNET):
        assert not _allows(held["backups"], SUBNET_JOIN, other), other
    for other in (AZURE_BLOCK["keyVaultDnsZoneId"], AZURE_BLOCK["blobDnsZoneId"]):
        assert not _allows(held["backups"], ZONE_JOIN, other), other


def test_the_restores_group_takes_only_restores_of_the_environments_own_servers(arm, project, capsys, tmp_path):
    """RBAC cannot limit what a server write creates: the two Azure Policies (restores.py) do. Tried by an
    identity RBAC lets do anything (the double's caller without a role), so that the policies alone refuse:
    production's server restored into acceptance's restores group (what a holder of acceptance's backups who
    can read production's server would otherwise copy out) or into any other group of the subscription; in
    the restores group, a new empty server, a replica, a restore carrying a password of the caller's, public
    access, another subnet, or a source id that only looks like the environment's."""
    from mxinfra_azure.target import AzureTarget

    prod_stack, prod = deployed(arm, project, "production")
    _rendered(project, capsys, tmp_path / "production", prod_stack, "production")
    stack, n = deployed(arm, project, "acceptance")
    _rendered(project, capsys, tmp_path, stack, "acceptance")
    mine, theirs = _policies(tmp_path, "acceptance"), _policies(tmp_path / "production", "production")
    assert sorted(p["inputs"]["scope"] for p in mine) == sorted([n.restores_scope, f"/subscriptions/{SUB}"])
    arm.policies = mine + theirs
    arm.groups |= {prod.resource_group, prod.restores_group, "sandbox-rg"}
    actions = AzureTarget().backup_actions(deployment(config("acceptance")), "acceptance", project.path)
    source = arm.servers[n.database_server]
    own = arm.server_id(n.database_server)
    body = {"location": source["location"], "properties": {"createMode": "PointInTimeRestore", "sourceServerResourceId": own, "pointInTimeUTC": _iso_z(_ago(hours=1)), "network": source["properties"]["network"]}}
    production = arm.server_id(prod.database_server, prod.resource_group)

    def props(**kw: Any) -> dict[str, Any]:
        return {**body, "properties": {**body["properties"], **kw}}

    hostile = {"administratorLogin": "mallory", "administratorLoginPassword": "Hostile-Passw0rd!"}
    # which policy refuses each: this environment's restores group's (R), its servers' (S), production's servers' (P)
    R, S, P = (f"mxinfra {n.naming.prefix} restores", f"mxinfra {n.naming.prefix} restored-only-here", f"mxinfra {prod.naming.prefix} restored-only-here")
    RP = f"mxinfra {prod.naming.prefix} restores"
    prod_network = arm.servers[prod.database_server]["properties"]["network"]
    empty = {"location": source["location"], "sku": source["sku"], "properties": {"version": "16", **hostile, "storage": {"storageSizeGB": 32}, "network": source["properties"]["network"]}}
    tries = {
        "another environment's server": (n.restores_group, props(sourceServerResourceId=production), {R, P}),
        "another environment's server, elsewhere in the subscription": ("sandbox-rg", props(sourceServerResourceId=production), {P}),
        "another environment's server, into this environment's group": (n.resource_group, props(sourceServerResourceId=production), {P}),
        "this environment's server, elsewhere in the subscription": ("sandbox-rg", props(), {S}),
        # copies of its rows: a restore made before, a server database.fromBackup served from and was retired
        "a restored copy, elsewhere in the subscription": ("sandbox-rg", props(sourceServerResourceId=arm.server_id(f"{n.database_server}-20261201t100000z", n.restores_group)), {S}),
        "a retired fromBackup server, elsewhere in the subscription": ("sandbox-rg", props(sourceServerResourceId=arm.server_id(f"{n.database_server}-from-old")), {S}),
        "production's server spelt with a trailing slash, elsewhere": ("sandbox-rg", props(sourceServerResourceId=production + "/"), {P}),
        "a look-alike group's server": (n.restores_group, props(sourceServerResourceId=own.replace(n.resource_group, f"{n.resource_group}-x")), {R}),
        "a source id that climbs out of the group": (n.restores_group, props(sourceServerResourceId=f"{own}/../../../../{prod.resource_group}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{prod.database_server}"), {R}),
        "a new empty server": (n.restores_group, {**empty, "properties": {**empty["properties"], "createMode": "Create"}}, {R}),
        "a server with no create mode": (n.restores_group, empty, {R}),
        "a replica of another environment's server": (n.restores_group, props(createMode="Replica", sourceServerResourceId=production), {R, P}),
        # its own server's data, but a server that keeps following it (and costs) until the platform deletes it
        "a replica of the environment's own server": (n.restores_group, props(createMode="Replica"), {R}),
        "a restore with a password of the caller's": (n.restores_group, props(administratorLoginPassword="Hostile-Passw0rd!"), {R}),
        "a restore with public access": (n.restores_group, props(network={**source["properties"]["network"], "publicNetworkAccess": "Enabled"}), {R}),
        "a restore into another subnet": (n.restores_group, props(network={"delegatedSubnetResourceId": f"{VNET}/subnets/apps"}), {R}),
        "a restore with no network": (n.restores_group, {**body, "properties": {k: v for k, v in body["properties"].items() if k != "network"}}, {R}),
        # the environment's own rows, on a server that costs more than the environment's
        "a restore on a bigger SKU": (n.restores_group, {**body, "sku": {"name": "Standard_E64ds_v5", "tier": "MemoryOptimized"}}, {R}),
        "a restore with more storage": (n.restores_group, props(storage={"storageSizeGB": _declared(tmp_path, "acceptance")["storage"]["storageSizeGB"] + 1}), {R}),
        "a restore with high availability": (n.restores_group, props(highAvailability={"mode": "ZoneRedundant"}), {R}),
        "a restore with same-zone high availability": (n.restores_group, props(highAvailability={"mode": "SameZone"}), {R}),
        "a restore with geo-redundant backups": (n.restores_group, props(backup={"geoRedundantBackup": "Enabled"}), {R}),
        # production's restores group caps at production's own sizes
        "production's restore with more storage": (prod.restores_group, props(sourceServerResourceId=production, network=prod_network, storage={"storageSizeGB": _declared(tmp_path / "production", "production")["storage"]["storageSizeGB"] + 1}), {RP}),
        "production's restore with same-zone high availability": (prod.restores_group, props(sourceServerResourceId=production, network=prod_network, highAvailability={"mode": "SameZone"}), {RP}),
    }
    for i, (what, (group, attempt, expected)) in enumerate(tries.items()):
        path = f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.DBforPostgreSQL/flexibleServers/hostile-{i}"
        with pytest.raises(UserError, match="403 RequestDisallowedByPolicy"):
            actions._request("PUT", path, PG_VERSION, what, body=attempt)
        assert arm.disallowed[-1] == ("PUT", path), what
        # each rule's part: the policies that refuse it (so that a condition taken out fails here)
        refusing = {p["inputs"]["displayName"] for p in arm.policies if within(path, p["inputs"]["scope"]) and policy_denies(p["rule"], "Microsoft.DBforPostgreSQL/flexibleServers", path, attempt)}
        assert refusing == expected, (what, refusing)
    assert len(arm.disallowed) == len(tries) and not arm.restores
    # what they let through: a restore of this environment's server into its restores group (the command's),
    # and into its own group (`database.fromBackup`'s, by `pulumi up`); production's likewise
    # (its size left out: the source's; or set to the environment's server's, as the plan declares it)
    for env, group, source_id, plan in ((n, n.restores_group, own, tmp_path), (n, n.resource_group, own, tmp_path), (prod, prod.restores_group, production, tmp_path / "production"), (prod, prod.resource_group, production, tmp_path / "production")):
        path = f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.DBforPostgreSQL/flexibleServers/ok"
        declared = _declared(plan, env.naming.environment)
        sized = {"storage": {"storageSizeGB": declared["storage"]["storageSizeGB"]}, "highAvailability": declared["highAvailability"], "backup": {"geoRedundantBackup": declared["backup"]["geoRedundantBackup"]}}
        for attempt in (props(sourceServerResourceId=source_id), {**props(sourceServerResourceId=source_id, **sized), "sku": declared["sku"]}):
            let_through = [p["inputs"]["displayName"] for p in arm.policies if within(path, p["inputs"]["scope"]) and policy_denies(p["rule"], "Microsoft.DBforPostgreSQL/flexibleServers", path, attempt)]
            assert let_through == [], (group, attempt, let_through)
        assert (declared["highAvailability"]["mode"], declared["backup"]["geoRedundantBackup"]) == (("ZoneRedundant", "Enabled") if env is prod else ("Disabled", "Disabled"))
    # and the command's restore of the environment's own server goes through both
    arm.automatic_backup(n.database_server, _ago(days=1))
    (backup_id,) = _cli(capsys, "backup", "list", "-s", stack, "-e", "acceptance", "-C", str(project.path))[1].split()
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "acceptance", "--id", backup_id, "-C", str(project.path))
    assert rc == 0 and len(arm.disallowed) == len(tries) and len(arm.restores) == 1, err


# On production the backups role restores nothing (roles.RESTORE_ONLY): Azure RBAC cannot make a restore wait
# for a backup, so a holder calling restoreBlobRanges or a vault restore directly would skip the backup first.
# The window that undoes any restore of the files (the blob service's own point-in-time restore) is beyond
# every production role as well.
WINDOW_WRITES = (
    "Microsoft.Storage/storageAccounts/blobServices/write",  # restorePolicy.days, soft delete, versioning, change feed
    "Microsoft.Storage/storageAccounts/write",
    "Microsoft.Storage/storageAccounts/managementPolicies/write",  # a lifecycle rule that deletes old versions
    "Microsoft.Storage/storageAccounts/managementPolicies/delete",
    "Microsoft.Storage/storageAccounts/delete",
    "Microsoft.Storage/storageAccounts/failover/action",  # a customer-managed failover: no restore to before it
    "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
    "Microsoft.Storage/storageAccounts/blobServices/containers/write",  # its immutability and legal holds too
)
FILES_RESTORE = "Microsoft.Storage/storageAccounts/restoreBlobRanges/action"
VAULT_RESTORE = "Microsoft.DataProtection/backupVaults/backupInstances/restore/action"


def test_a_production_backups_holder_cannot_restore_the_files_directly(arm, project, capsys, tmp_path):
    from mxinfra_azure.target import AzureTarget

    stack, n = deployed(arm, project, "production")
    held = _rendered(project, capsys, tmp_path, stack, "production")
    # production's backups: its role at the resource group alone (no restores group, no subnet join)
    assert [at for _, at in held["backups"]] == [n.scope]
    _caller(arm, held["backups"], n)
    arm.write_file(f("kept"), b"old", _ago(hours=3))
    arm.write_file(f("kept"), b"new", _ago(hours=1))
    before = arm.files()
    actions = AzureTarget().backup_actions(deployment(config("production")), "production", project.path)
    body = {"timeToRestore": _ago(hours=2).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "blobRanges": [container_range(FILES_CONTAINER)]}
    # the hostile call: straight to Azure, no backup, no record; refused
    with pytest.raises(UserError, match="403 AuthorizationFailed"):
        actions._storage("POST", "/restoreBlobRanges", "restoreBlobRanges", body=body)
    account = f"{n.scope}/providers/Microsoft.Storage/storageAccounts/{n.storage_account}"
    assert arm.denied == [(FILES_RESTORE, account + "/restoreBlobRanges")] and arm.writes == [] and arm.files() == before
    # nor a vault restore of the files' instance, nor a restore's new server anywhere
    instance = f"{n.scope}/providers/Microsoft.DataProtection/backupVaults/{n.backup_vault}/backupInstances/{n.backup_instance('files')}"
    assert not _allows(held["backups"], VAULT_RESTORE, instance)
    assert not _allows(held["backups"], SERVER_WRITE, arm.server_id("any-new-server", n.restores_group))
    # the window is the daily tier's, and no role a production person holds can shorten it
    for name, roles in held.items():
        for action in WINDOW_WRITES:
            for at in (account, f"{account}/blobServices/default", f"{account}/blobServices/default/containers/{FILES_CONTAINER}", f"{account}/managementPolicies/default"):
                assert not _allows(roles, action, at), (name, action, at)


def test_a_production_restore_is_the_platform_identitys(arm, project, capsys, tmp_path):
    """Production's backups holder takes backups; `restore` refuses it before anything is taken or recorded,
    from its own permissions (Permissions_ListForResourceGroup); the platform identity then restores."""
    stack, n = deployed(arm, project, "production")
    held = _rendered(project, capsys, tmp_path, stack, "production")
    _caller(arm, held["backups"], n)
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0 and arm.denied == [], err
    (first,) = ID.findall(out)
    written = len(arm.writes)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", first, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert "a restore into production (production) is the platform identity's: production's backups role takes and lists backups and restores nothing" in said, said
    group = f"/subscriptions/{SUB}/resourcegroups/{n.resource_group}/providers/Microsoft.Authorization/permissions"
    assert f"Azure refused it Microsoft.Authorization/permissions/read at resource group {n.resource_group} (AuthorizationFailed: " in said, said
    assert arm.denied == [("Microsoft.Authorization/permissions/read", group)]
    assert len(arm.writes) == written and [r.action for r in _records(project, "production")] == ["backup"]
    # a role that may read its own permissions, and so learns it holds no restore: refused all the same
    (role,) = [d for d, at in held["backups"]]
    arm.role = {**role, "permissions": [{**role["permissions"][0], "actions": [*role["permissions"][0]["actions"], "Microsoft.Authorization/permissions/read"]}]}
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", first, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and f"its roles at resource group {n.resource_group} do not allow {FILES_RESTORE}" in said, said
    assert len(arm.writes) == written and len(_records(project, "production")) == 1
    # the platform identity (an Owner: no role of the double's) restores, its backup first
    arm.role, arm.grants = None, []
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", first, "-C", str(project.path))
    assert rc == 0, err
    assert [r.action for r in _records(project, "production")] == ["backup", "backup", "intent", "restore"]
    assert [r["operation"] for r in arm.requests if r.get("operation") == "Permissions_ListForResourceGroup"][-2:] == ["Permissions_ListForResourceGroup"] * 2


# Microsoft's built-in Contributor (b24988ac-6180-42a0-ab88-20f7382dd24c), as the built-in roles list publishes it
CONTRIBUTOR = {
    "permissions": [
        {
            "actions": ["*"],
            "notActions": [
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Microsoft.Blueprint/blueprintAssignments/write",
                "Microsoft.Blueprint/blueprintAssignments/delete",
                "Microsoft.Compute/galleries/share/action",
                "Microsoft.Purview/consents/write",
                "Microsoft.Purview/consents/delete",
                "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
                "Microsoft.Subscription/cancel/action",
                "Microsoft.Subscription/enable/action",
            ],
            "dataActions": [],
            "notDataActions": [],
        }
    ]
}


@pytest.mark.parametrize("excluded", [None, "Microsoft.Storage/storageAccounts/restoreBlobRanges/action", "Microsoft.DBforPostgreSQL/*/write"])
def test_the_production_check_reads_each_roles_not_actions(arm, project, capsys, excluded):
    """A platform identity that is a subscription Contributor (actions `*` less its notActions) restores
    production; one whose role also excludes the files' restore or a server write is refused before
    anything is taken, by the check's reading of that role's notActions."""
    stack, n = deployed(arm, project, "production")
    arm.automatic_backup(n.database_server, _ago(days=1))
    role = copy.deepcopy(CONTRIBUTOR)
    if excluded:
        role["permissions"][0]["notActions"].append(excluded)
    arm.role, arm.grants = role, [(role, f"/subscriptions/{SUB}")]
    (backup_id,) = _cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path))[1].split()
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    if excluded is None:
        assert rc == 0 and arm.denied == [], err
        assert [r.action for r in _records(project, "production")] == ["backup", "intent", "restore"]
    else:
        group = n.resource_group if "Storage" in excluded else n.restores_group
        action = "Microsoft.Storage/storageAccounts/restoreBlobRanges/action" if "Storage" in excluded else "Microsoft.DBforPostgreSQL/flexibleServers/write"
        assert rc == 2 and f"its roles at resource group {group} do not allow {action}" in said, said
        assert arm.writes == [] and _records(project, "production") == []


def test_production_roles_render_no_restore(project, capsys, tmp_path, arm):
    """The rendered production backups role lacks exactly the restore's actions the other tiers hold."""
    from mxinfra_azure.roles import ACTIONS, RESTORE_ONLY

    stack, n = deployed(arm, project, "production")
    (prod,) = [d for d, at in _rendered(project, capsys, tmp_path, stack, "production")["backups"]]
    assert set(ACTIONS["backups"]) - set(prod["permissions"][0]["actions"]) == RESTORE_ONLY["backups"]
    for action in (FILES_RESTORE, VAULT_RESTORE, ZONE_JOIN, "Microsoft.DataProtection/backupVaults/backupInstances/validateRestore/action"):
        assert not rbac_allows(prod, action), action
    assert rbac_allows(prod, "Microsoft.DataProtection/backupVaults/backupInstances/backup/action")


def test_without_its_subnet_role_a_restore_is_refused_by_the_linked_check(arm, project, capsys, tmp_path):
    """A holder of the backups role alone (as `manage` hands it out, or a stack deployed before its network
    role): the server PUT is allowed, the join of the subnet it links is not; exit 2 naming the role."""
    stack, n = deployed(arm, project, "acceptance")
    held = _rendered(project, capsys, tmp_path, stack, "acceptance")
    _caller(arm, [(d, at) for d, at in held["backups"] if at != AZURE_BLOCK["databaseSubnetId"]], n)
    arm.automatic_backup(n.database_server, _ago(days=1))
    (backup_id,) = _cli(capsys, "backup", "list", "-s", stack, "-e", "acceptance", "-C", str(project.path))[1].split()
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "acceptance", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert "403 LinkedAuthorizationFailed" in said and f"perform action(s) '{SUBNET_JOIN}' on the linked scope(s)" in said, said
    assert f"the role `mxinfra {n.naming.prefix} backups-network` on that subnet" in said, said
    assert arm.denied == [(SUBNET_JOIN, AZURE_BLOCK["databaseSubnetId"])]  # the zone's join is the backups role's
    assert [r["operation"] for r in arm.requests if r["method"] != "GET"][-1] == "Servers_CreateOrUpdate" and not arm.restores and not arm.blob_restores
    # the intent of the restore Azure then refused, and its outcome: nothing restored
    recs = _records(project, "acceptance")
    assert [r.action for r in recs] == ["intent", "restore"] and said.endswith("; nothing was restored (recorded)"), said
    assert recs[-1].changes["restore"] == {"id": backup_id, "from": "acceptance", "database": "not restored", "files": "not restored"}


@pytest.mark.parametrize("role", ["deploy", "monitor"])
def test_deploy_and_monitor_are_refused_with_the_backups_role_named(arm, project, capsys, tmp_path, role):
    stack, n = deployed(arm, project, "production")
    arm.automatic_backup(n.database_server, _ago(days=1))
    _caller(arm, _rendered(project, capsys, tmp_path, stack, "production")[role], n)
    for args in (["create"], ["restore", "--id", "20261204T020000Z"], ["list"]):
        rc, out, err = _cli(capsys, "backup", *args, "-s", stack, "-e", "production", "-C", str(project.path))
        said = " ".join(err.split())
        assert rc == 2 and "Traceback" not in err, (args, err)
        assert "may not" in said and "AuthorizationFailed" in said, said
        assert f"the role `mxinfra {n.naming.prefix} backups` at resource group {n.resource_group}" in said and "PIM-eligible: activate it first" in said, said
    assert arm.writes == [] and _records(project, "production") == []


# --- failures: exit 2, nothing recorded ------------------------------------------------------------------


def test_an_unknown_id_lists_what_exists(arm, project, capsys):
    stack, n = deployed(arm, project, "test")
    arm.automatic_backup(n.database_server, datetime(2026, 12, 3, 2, 0, 7, tzinfo=timezone.utc))
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", "20001231T000000Z", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err
    assert "test has no backup 20001231T000000Z: it has 20261203T020007Z" in " ".join(err.split())
    assert arm.writes == []


def test_a_backup_still_running_at_the_timeout_names_it_and_records_nothing(arm, project, capsys, monkeypatch):
    stack, n = deployed(arm, project, "test")
    monkeypatch.setattr(backup_actions, "BACKUP_TIMEOUT", 0.0)
    arm.stall = True
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    said = " ".join(err.split())
    (name,) = [b for b in arm.backups]
    assert rc == 2 and "Traceback" not in err
    assert f"the on-demand backup {name} of PostgreSQL flexible server {n.database_server}" in said and "is not complete after 0 minutes" in said
    assert f"az postgres flexible-server backup show -g {n.resource_group} --name {n.database_server} --backup-name {name}" in said
    # the files' backup into the vault, asked for before it, is said too (it may still make its point)
    assert said.endswith(f"then run `mxinfra backup list`. The files' backup into the vault {n.backup_vault} had been asked for already: "
                         f"`az dataprotection job list -g {n.resource_group} --vault-name {n.backup_vault}`; nothing was recorded"), said
    assert _records(project, "test") == []


def test_a_restore_still_running_at_the_timeout_names_both_operations(arm, project, capsys, monkeypatch):
    stack, n = deployed(arm, project, "test")
    arm.automatic_backup(n.database_server, _ago(days=1))
    (backup_id,) = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path))[1].split()
    monkeypatch.setattr(backup_actions, "RESTORE_TIMEOUT", 0.0)
    arm.stall = True
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    new = f"{n.database_server}-{backup_id.lower()}"
    assert rc == 2 and "the restore is still running after 0 minutes" in said and "the restore's intent is recorded and no outcome follows it" in said
    assert f"the point-in-time restore into the new server {new}" in said and f"the blob point-in-time restore of {n.storage_account}/{FILES_CONTAINER}" in said
    assert [r.action for r in _records(project, "test")] == ["intent"]


@pytest.mark.parametrize("what,expected", [("server", "ended Disabled"), ("blobs", "blob point-in-time restore of")])
def test_a_failed_restore_is_exit_2(arm, project, capsys, what, expected):
    stack, n = deployed(arm, project, "test")
    arm.automatic_backup(n.database_server, _ago(days=1))
    (backup_id,) = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path))[1].split()
    arm.fail = what
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err and expected in err and "the restore's intent is recorded and no outcome follows it" in " ".join(err.split())
    assert [(r.action, r.changes) for r in _records(project, "test")] == [("intent", {"intends": "restore", "restore": {"id": backup_id, "from": "test"}})]


@pytest.mark.parametrize("env", ["test", "production"])
def test_a_restore_never_writes_over_an_existing_server(arm, project, capsys, env):
    """Refused before its intent; on production after its backup first, which the message says is recorded.
    The server is in the restores group on test, and on production in the environment's own (restored before
    the restores group existed: server names are global)."""
    stack, n = deployed(arm, project, env)
    arm.automatic_backup(n.database_server, datetime(2026, 12, 3, 2, 0, 7, tzinfo=timezone.utc))
    zone = arm.servers[n.database_server]["properties"]["network"]["privateDnsZoneArmResourceId"]
    group = n.restores_group if env == "test" else n.resource_group
    arm.put_server(f"{n.database_server}-20261203t020007z", subnet=AZURE_BLOCK["databaseSubnetId"], zone=zone, tags={}, retention=14, group=group)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", env, "--id", "20261203T020007Z", "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "exists already (a restore of backup 20261203T020007Z ran before)" in said, said
    assert f"`az postgres flexible-server delete -g {group} --name {n.database_server}-20261203t020007z`" in said
    recs = _records(project, env)
    if env == "test":
        assert arm.writes == [] and recs == [] and said.endswith("; nothing was recorded"), said
    else:
        assert [r.action for r in recs] == ["backup"] and said.endswith(f"; the backup {recs[0].changes['backup']['id']} taken first is recorded, the restore is not"), said


def _restore_faulted(arm: Any, project: Any, capsys: Any, fault: str) -> tuple[str, Any, str, int, str, str]:
    """A test environment's day-old backup restored with the double's `fault` set: (stack, names, backup id,
    exit code, stderr, stderr on one line)."""
    stack, n = deployed(arm, project, "test")
    arm.automatic_backup(n.database_server, _ago(days=1))
    (backup_id,) = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path))[1].split()
    setattr(arm, fault, True)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    return stack, n, backup_id, rc, err, " ".join(err.split())


def test_a_linked_authorization_failure_says_who_can_restore(arm, project, capsys):
    stack, n, backup_id, rc, err, said = _restore_faulted(arm, project, capsys, "linked_denied")
    assert rc == 2 and "Traceback" not in err and "403 LinkedAuthorizationFailed" in said and "subnets/join/action" in said
    assert f"the role `mxinfra {n.naming.prefix} backups-network` on that subnet" in said and "activate it as well" not in said  # test: standing
    assert "have the platform identity run this restore" in said
    assert [r["operation"] for r in arm.requests if r["method"] != "GET"] == ["Servers_CreateOrUpdate"]  # the files were not touched
    # Azure refused the request (403): nothing was created or touched, and the intent gets that outcome
    recs = _records(project, "test")
    assert [r.action for r in recs] == ["intent", "restore"] and said.endswith("; nothing was restored (recorded)"), said
    assert recs[-1].changes["restore"] == {"id": backup_id, "from": "test", "database": "not restored", "files": "not restored"}


def test_a_refusal_of_a_put_azure_had_accepted_is_not_taken_for_nothing_restored(arm, project, capsys):
    """A 409 to the restore's PUT while the server it names exists (the first try accepted, its answer lost,
    the SDK's retry refused): a server is being created, so the intent stays without an outcome."""
    stack, n, backup_id, rc, err, said = _restore_faulted(arm, project, capsys, "accepted_then_conflict")
    assert rc == 2 and "Traceback" not in err and "409" in said and "ServerIsBusy" in said, said
    assert [r["server"] for r in arm.restores] and not arm.blob_restores  # created; the files not touched
    assert said.endswith(f"the restore's intent is recorded and no outcome follows it (`mxinfra activity -s {stack} -e test`)"), said
    assert [r.action for r in _records(project, "test")] == ["intent"]


def test_no_credential_is_said_plainly(arm, project, capsys, monkeypatch):
    stack, _ = deployed(arm, project, "test")
    monkeypatch.setattr(running, "default_credential", lambda: NoCredential())
    rc, _, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err and "no Azure credential could sign in" in err and "az login" in err
    assert arm.requests == []


def test_a_missing_server_says_to_deploy(arm, project, capsys):
    stack, n = deployed(arm, project, "test")
    arm.servers.clear()
    rc, _, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "404 ResourceNotFound" in said and "deploy the stack (`pulumi up`)" in said


def test_an_environment_without_backups_has_no_commands(project, capsys):
    cfg = config("test", env={"backups": {"enabled": False}})
    project.stack("azure-test", stack_file(cfg))
    rc, _, err = _cli(capsys, "backup", "list", "-s", "azure-test", "-e", "test", "-C", str(project.path))
    assert rc == 2 and "has no backups" in err and "Traceback" not in err


# --- the pure parts ----------------------------------------------------------------------------------------


def test_ids_are_completion_seconds_unique_and_newest_first():
    t = datetime(2026, 12, 4, 2, 0, 0, 400000, tzinfo=timezone.utc)
    got = backups_of([("a", t, "Full"), ("b", t + timedelta(microseconds=100), "Customer On-Demand"), ("c", None, "Customer On-Demand"), ("d", t - timedelta(days=1), "Full")])
    assert [(b.id, b.name) for b in got] == [("20261204T020001Z", "b"), ("20261204T020000Z", "a"), ("20261203T020000Z", "d")]
    assert got[0].at == t + timedelta(microseconds=100)  # the restore returns to the exact instant


def test_on_demand_names_differ_within_a_second_and_fit_the_description():
    t = datetime(2026, 12, 4, 2, 0, 0, 400000, tzinfo=timezone.utc)
    a, b = on_demand_name(t), on_demand_name(t + timedelta(microseconds=1))
    assert a == "mxinfra-20261204t020000.400000z" and a != b
    assert all(re.fullmatch(r"[-\w._]{1,128}", x) for x in (a, b))  # BackupsAutomaticAndOnDemand's backupName


def test_restored_server_names_fit_flexible_server_and_never_the_running_one():
    assert restored_server("orders-test-db-abc123", "20261204T020000Z") == "orders-test-db-abc123-20261204t020000z"
    # too long: the server's unique suffix stays (a digest of it and the id), so two subscriptions' servers
    # of the same app and environment never restore to one global name
    a, b = "orders-" + "x" * 40 + "-db-abc123", "orders-" + "x" * 40 + "-db-def456"
    names = {restored_server(s, i) for s in (a, b) for i in ("20261204T020000Z", "20261205T020000Z")}
    assert len(names) == 4 and all(len(n) <= 63 and n not in (a, b) and not n.endswith("-20261204t020000z") for n in names)


def test_the_container_range_is_the_container_alone():
    r = container_range("mendix-files")
    inside = lambda name: r["startRange"] <= name < r["endRange"]  # noqa: E731
    assert inside("mendix-files/a") and inside("mendix-files/zz/zz")
    assert not inside("mendix-files-old/a") and not inside("mendix-filesx/a") and not inside("mendix-file/a") and not inside("mendix-files0/a")


def test_the_double_refuses_what_the_description_refuses():
    """The double is honest: a body off the description is caught (here without a server)."""
    servers = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{serverName}"
    good = {"location": "westeurope", "properties": {"createMode": "PointInTimeRestore", "sourceServerResourceId": "/x", "pointInTimeUTC": "2026-12-04T02:00:00Z"}}
    assert request_problems("PUT", servers, good) == []
    assert request_problems("PUT", servers, {"properties": good["properties"]})  # location is required
    assert request_problems("PUT", servers, {**good, "properties": {**good["properties"], "createMode": "Restore"}})
    assert request_problems("PUT", servers, {**good, "properties": {**good["properties"], "restorePoint": "x"}})  # closed
    restore = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}/restoreBlobRanges"
    assert request_problems("POST", restore, {"timeToRestore": "2026-12-04T02:00:00Z", "blobRanges": [{"startRange": "a/", "endRange": "a0"}]}) == []
    assert request_problems("POST", restore, {"timeToRestore": "2026-12-04T02:00:00Z", "blobRanges": [{"startRange": "a/"}]})
    with pytest.raises(AssertionError, match="completedTime"):
        response_check("GET", servers + "/backups/{backupName}")(200, {"name": "b", "properties": {"completedTime": 5}})
    with pytest.raises(AssertionError, match="has no body"):
        response_check("PUT", servers)(202, {"name": "x"})
    instance = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/backupVaults/{vaultName}/backupInstances/{backupInstanceName}"
    adhoc = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Default"}}}
    assert request_problems("POST", instance + "/backup", adhoc) == []
    assert request_problems("POST", instance + "/backup", {"backupRuleOptions": {"ruleName": "BackupWeekly"}})  # triggerOption is required
    assert request_problems("POST", instance + "/backup", {**adhoc, "retention": "P1W"})  # closed
    with pytest.raises(AssertionError, match="recoveryPointTime"):
        response_check("GET", instance + "/recoveryPoints")(200, {"value": [{"name": "p", "properties": {"objectType": "AzureBackupDiscreteRecoveryPoint", "recoveryPointTime": 5}}]})
    with pytest.raises(AssertionError, match="objectType"):
        response_check("GET", instance + "/recoveryPoints")(200, {"value": [{"name": "p", "properties": {"objectType": "Nope", "recoveryPointTime": 5}}]})
    assert STORAGE_VERSION == backup_actions.STORAGE_API_VERSION and PG_VERSION == backup_actions.PG_API_VERSION


def test_the_pinned_versions_are_the_ones_pulumi_manages_the_resources_with():
    from pathlib import Path as P

    import pulumi_azure_native

    root = P(pulumi_azure_native.__file__).parent
    assert f"Uses Azure REST API version {backup_actions.PG_API_VERSION}." in (root / "dbforpostgresql" / "server.py").read_text()
    assert f"Uses Azure REST API version {backup_actions.STORAGE_API_VERSION}." in (root / "storage" / "storage_account.py").read_text()
    assert f"Uses Azure REST API version {backup_actions.DP_API_VERSION}." in (root / "dataprotection" / "backup_instance.py").read_text()
    # and the descriptions the double holds the calls to are of those versions
    assert (backup_actions.PG_API_VERSION, backup_actions.STORAGE_API_VERSION, backup_actions.DP_API_VERSION) == (PG_VERSION, STORAGE_VERSION, DP_VERSION)
