"""The conformance suite: every installed target keeps the core's production rules (mxinfra.capabilities).

For each target registered under the `mxinfra.targets` entry point:
1. It declares a capability table (`Target.capabilities`) that maps every permission; the core refused it
   at import time otherwise.
2. A hostile stack (the target's example production stack, with one principal granted every permission
   the target maps, on every environment) is planned offline, and each rendered grant (IAM role policy,
   Azure role definition at its scopes, Kubernetes Role, Cloud Foundry space role) is probed with the
   cloud's own operations: what it allows must be within what the table declares for that tier. The
   probes are this file's, not the target's: a target that widens a policy fails here.
3. Production grants a person holds are never standing where the target offers time-boxed elevation,
   and need MFA and at most 8 hours, read from the rendered trust policies, PIM policies, bindings and
   space roles as far as each target's README promises; production data is protected from deletion; every
   resource is a child of the environment's component and named with its prefix.
4. No secret value reaches a resource's inputs outside a Pulumi secret, and no path of the machine that
   planned (project directory, home, checkout) reaches any input: plans are reproducible.
5. A database put in service from a backup (`database.fromBackup.<env>`) keeps every guard of the one it
   replaces: the same inputs but where it comes from, at least its protection, nothing pointing at the
   original; whatever depended on the original follows the new one, or keeps guarding the original with a
   counterpart guarding the new one (lock, TLS settings, password rotation), or is a listed exception with
   its reason; what else changes refers to the new one; the one in place stays declared as it was. A
   target without the key must refuse it.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
for _helpers in (HERE, HERE / "aws", HERE / "cloudfoundry"):
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))

from contract_checks import aws_session_problems, azure_policy_problems, machine_path_leaks, seal_known_secrets, secret_leaks  # noqa: E402
from iam_eval import allows as iam_allows  # noqa: E402
from scaffold import copy_example, record_deploy  # noqa: E402

from mxinfra.access import Permission  # noqa: E402
from mxinfra.capabilities import EXCLUSIVE, PRODUCTION_FORBIDDEN, Capability, CapabilityTable, NotGranted  # noqa: E402
from mxinfra.plan import run_plan  # noqa: E402
from mxinfra.stackfile import _load_yaml  # noqa: E402
from mxinfra.target import ENTRY_POINT_GROUP, load_target  # noqa: E402
from mxinfra.testing import Sealed, engine_secrets  # noqa: E402

pytestmark = pytest.mark.slow

INSTALLED = sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))
STACK_PREFIX = {"aws": "aws-", "azure": "azure-", "cloudfoundry": "cf-", "kubernetes": ""}
EIGHT_HOURS = 8 * 3600
C = Capability


def test_the_four_targets_are_installed():
    """The suite runs over what is installed; here all four are (a target dropped from ./dev would pass silently)."""
    assert INSTALLED == ["aws", "azure", "cloudfoundry", "kubernetes"]


# The file map every target shares (README: Targets), so that a reader who knows one
# target finds the same concept under the same name in the others.
FILE_MAP = ("target.py", "config.py", "runtime.py", "database.py", "storage.py", "access.py", "render.py")


@pytest.mark.parametrize("name", INSTALLED)
def test_every_target_has_the_same_file_map(name):
    """The package behind the entry point holds each module of the file map, and its Target is in target.py."""
    module = sys.modules[type(load_target(name)).__module__]
    package = Path(module.__file__).parent
    assert [f for f in FILE_MAP if not (package / f).is_file()] == [], f"{name}: {package} lacks part of the file map"
    assert Path(module.__file__).name == "target.py", f"{name}: its Target is defined in {module.__file__}"
    assert [f.name for f in package.glob("*.py") if f.stem in ("utils", "helpers", "common", "misc")] == []


@pytest.mark.parametrize("name", INSTALLED)
def test_every_target_declares_every_permission(name):
    table = load_target(name).capabilities
    assert isinstance(table, CapabilityTable), f"{name}: Target.capabilities is not declared (mxinfra.capabilities.declare_capabilities)"
    assert set(table.entries) == set(Permission)
    limits = {(lim.permission, lim.capability) for lim in table.limits}
    for perm in Permission:
        prod = table.granted(perm, production=True)
        assert {c for c in prod & PRODUCTION_FORBIDDEN if (perm, c) not in limits} == set(), perm
    # a stated platform limit is part of what the permission grants, not a hidden extra
    assert all(cap in table.granted(perm, production=True) for perm, cap in limits), table.limits


# --- plans ----------------------------------------------------------------------------------------------


@dataclass
class Planned:
    target: str
    env: str
    production: bool
    result: Any

    @property
    def resources(self) -> list[dict[str, Any]]:
        return self.result.resources()

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == type_]

    def one(self, type_: str) -> dict[str, Any]:
        (r,) = self.of_type(type_)
        return r

    def named(self, name: str) -> dict[str, Any]:
        (r,) = [r for r in self.resources if r["name"] == name]
        return r

    @property
    def deployment(self) -> Any:
        return self.result.deployment

    @property
    def prefix(self) -> str:
        (p,) = self.deployment.environments
        return p.naming.prefix

    def depends(self, resource: dict[str, Any], on: dict[str, Any]) -> bool:
        reg = {r.urn: r for r in self.result.registrations}[resource["urn"]]
        return on["urn"] in reg.dependencies


def _hostile(target: str, doc: dict[str, Any]) -> None:
    """One principal of the stack's own form holds every permission the target maps, on every environment."""
    table = load_target(target).capabilities
    assert table is not None
    config = doc["config"]
    entries = config["mxinfra:access"]
    mapped = [p.value for p in Permission if not isinstance(table.entries[p], NotGranted)]
    entries.append({"principal": entries[0]["principal"], "environments": ["*"], "permissions": mapped, "allowOnProduction": True})


def _render_hostile(base: Path, target: str, env: str) -> Planned:
    """The hostile stack (`_hostile`) of `target`'s example `env`, planned from a copy of the project at `base`."""
    directory = copy_example(base / "project")
    stack = f"{STACK_PREFIX[target]}{env}"
    record_deploy(directory, f"{STACK_PREFIX[target]}acceptance")
    path = directory / "stacks" / f"Pulumi.{stack}.yaml"
    doc = _load_yaml(path)
    _hostile(target, doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run_plan(directory, stack)
    assert not result.gate_issues, [str(i) for i in result.gate_issues]
    (prepared,) = result.deployment.environments
    return Planned(target, env, prepared.environment.is_production, result)


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Planned]:
    cache: dict[tuple[str, str], Planned] = {}

    def get(target: str, env: str) -> Planned:
        if (target, env) not in cache:
            cache[(target, env)] = _render_hostile(tmp_path_factory.mktemp(f"contract-{target}-{env}"), target, env)
        return cache[(target, env)]

    return get


# --- probes: the cloud's own operations, per capability -------------------------------------------------


@dataclass
class Grant:
    """One rendered grant and the question "may its holder perform this probe?"."""

    permission: Permission
    allows: Callable[[Any], bool]


def _observed(grant: Grant, probes: dict[Capability, list[Any]]) -> set[Capability]:
    return {cap for cap, ps in probes.items() if any(grant.allows(p) for p in ps)}


# AWS: the role's inline policy, every Allow taken at its widest (a hostile holder meets any condition it
# can set, such as tags on the request); an unconditional Deny still wins.
def _aws_widest(doc: dict[str, Any]) -> dict[str, Any]:
    stmts = []
    for s in doc["Statement"]:
        if s["Effect"] == "Allow":
            stmts.append({k: v for k, v in s.items() if k != "Condition"})
        elif "Condition" not in s:
            stmts.append(s)
    return {"Version": doc.get("Version", "2012-10-17"), "Statement": stmts}


READS = ("describe", "list", "get")  # Task actions that change nothing (aws-sdk names: describeBackupJob, listExecutions)


def _task_action(state: dict[str, Any]) -> str:
    """A Task state's action, `service:action` (`aws-sdk:backup:startBackupJob` -> backup:startBackupJob,
    `states:::ecs:runTask.sync` -> ecs:runTask, a Lambda function's ARN -> lambda:invoke)."""
    resource = str(state.get("Resource", ""))
    if ":states:::" in resource:
        rest = resource.split(":states:::", 1)[1].removeprefix("aws-sdk:")
        service, _, action = rest.partition(":")
        return f"{service}:{action.split('.', 1)[0]}"
    return "lambda:invoke" if ":lambda:" in resource else resource


def _paths_meet(a: str, b: str) -> bool:
    """Whether two JSONPaths of the state ($.x.y) are the same, or one is inside the other."""
    a, b = a.rstrip("."), b.rstrip(".")
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _written(state: dict[str, Any]) -> str | None:
    """Where in the state a state writes its result (`$`: all of it; None: nothing). A Task's or a Pass's
    ResultPath is `$` unless it says otherwise (null: keep the input); an OutputPath narrows all of it."""
    if state.get("OutputPath", "$") != "$":
        return "$"
    if state.get("Type") in ("Task", "Pass", "Parallel", "Map"):
        return state["ResultPath"] if "ResultPath" in state else "$"
    return None


def _selected(state: dict[str, Any], field: str) -> str | None:
    """Where a Task puts a field of its answer (`$.BackupJobId`): its ResultSelector's key for it under the
    ResultPath, or the field itself under the ResultPath without a selector."""
    at = state.get("ResultPath", "$")
    if not isinstance(at, str):
        return None
    selector = state.get("ResultSelector")
    if selector is None:
        return f"{at.rstrip('.')}.{field}" if at != "$" else f"$.{field}"
    keys = [k.removesuffix(".$") for k, v in selector.items() if k.endswith(".$") and v == f"$.{field}"]
    return f"{at}.{keys[0]}" if len(keys) == 1 and at != "$" else None


def _completed_on(rule: dict[str, Any], refs: dict[str, tuple[str, str]]) -> frozenset[str]:
    """The protected ARNs a Choice rule is taken only when their backup job's state, read by a
    describeBackupJob of that very job, is COMPLETED (an And needs each; a Not or an Or vouches for none)."""
    variable = rule.get("Variable")
    if rule.get("StringEquals") == "COMPLETED" and isinstance(variable, str) and refs.get(variable, ("", ""))[0] == "state":
        return frozenset({refs[variable][1]})
    if "And" in rule:
        return frozenset().union(*(_completed_on(r, refs) for r in rule["And"]))
    return frozenset()


def _backs_up_first(definition: str, protected: Iterable[str]) -> bool:
    """Whether every way through a state machine's definition backs up each of `protected` (ARNs: the
    bucket, the database) and waits for those very jobs to complete before its first state that may write:
    from StartAt along Next, Default, every Choice and every Catch (a Catch of a backup state leaves without
    it). What is followed is where each job's id and state are in the execution's state: a
    `backup:startBackupJob` Task of a protected ARN puts its job id at a path; a `describeBackupJob` Task
    whose BackupJobId is read from that path puts that job's State at another; a state that writes over one
    of them forgets it. The backup counts once a Choice rule was taken that asks each of those states to be
    COMPLETED in one And. Before that only Pass, Wait, Choice, Succeed and Fail states and Tasks that read
    (describe, list, get) or start backups are allowed: any other Task (a restore job, a task run, a machine
    started, an object copied, a function invoked), a Parallel or a Map, or a JSONata Condition may write or
    is not followed, and makes the machine unguarded."""
    doc = json.loads(definition)
    states, wanted = doc["States"], frozenset(protected)
    seen: set[Any] = set()

    def guarded(at: str | None, refs: dict[str, tuple[str, str]]) -> bool:
        key = (at, tuple(sorted(refs.items())))
        if at is None or key in seen:
            return True  # the path ended, or this point was (or is being) walked with the same knowledge
        seen.add(key)
        state = states.get(at)
        if state is None:
            return False  # a Next to nowhere: not a definition AWS accepts, not one to vouch for
        kind = state.get("Type")
        # a Catch writes the error where its ResultPath says (`$`: over everything), not the result
        caught = all(guarded(c.get("Next"), {k: v for k, v in refs.items() if c.get("ResultPath", "$") is None or not _paths_meet(k, c.get("ResultPath", "$"))}) for c in state.get("Catch", []))
        written = _written(state)
        after = {k: v for k, v in refs.items() if written is None or not _paths_meet(k, written)}
        if kind == "Task":
            action = _task_action(state)
            params = state.get("Parameters") or {}
            if action == "backup:startBackupJob":
                job = _selected(state, "BackupJobId")
                if params.get("ResourceArn") in wanted and job is not None:
                    after[job] = ("job", params["ResourceArn"])
            elif action == "backup:describeBackupJob":
                source = refs.get(str(params.get("BackupJobId.$")))
                state_at = _selected(state, "State")
                if source is not None and source[0] == "job" and state_at is not None:
                    after[state_at] = ("state", source[1])
            elif not action.split(":", 1)[-1].startswith(READS):
                return False
        elif kind == "Choice":
            rules = state.get("Choices", [])
            if any("Condition" in r for r in rules):
                return False
            for r in rules:
                if _completed_on(r, refs) >= wanted:
                    continue  # this way, the backups completed: guarded from here on
                if not guarded(r.get("Next"), refs):
                    return False
            return caught and guarded(state.get("Default"), refs)
        elif kind not in ("Pass", "Wait", "Succeed", "Fail"):
            return False  # Parallel, Map: branches of their own, not vouched for here
        return caught and guarded(state.get("Next"), after)

    return guarded(doc["StartAt"], {})


def test_the_backup_first_probe_refuses_every_way_around_it(planned):
    """The probe of AWS's restoring machines vouches for production's files restore as it is rendered, and for
    none of the ways a definition could restore before, or without, a completed backup of what it overwrites."""
    if "aws" not in INSTALLED:
        pytest.skip("the aws target is not installed")
    p = planned("aws", "production")
    (m,) = [m for m in p.of_type("aws:sfn/stateMachine:StateMachine") if m["inputs"]["name"].endswith("-files-restore")]
    real = json.loads(m["inputs"]["definition"])
    region, account = p.deployment.config.block("aws:region"), p.deployment.target_config.accountId
    bucket = next(r["inputs"]["bucket"] for r in p.of_type("aws:s3/bucketV2:BucketV2") + p.of_type("aws:s3/bucket:Bucket") if "-files-" in r["inputs"]["bucket"])
    db = p.one("aws:rds/instance:Instance")["inputs"]["identifier"]
    protected = (f"arn:aws:s3:::{bucket}", f"arn:aws:rds:{region}:{account}:db:{db}")
    assert _backs_up_first(json.dumps(real), protected)
    states = real["States"]
    (restore,) = [n for n, st in states.items() if _task_action(st) == "backup:startRestoreJob"]

    def edited(change: Callable[[dict[str, Any]], None]) -> str:
        d = json.loads(json.dumps(real))
        change(d["States"])
        return json.dumps(d)

    def machine(*tasks: dict[str, Any]) -> str:
        return json.dumps({"StartAt": "X", "States": {"X": {"Type": "Parallel", "Branches": [{"StartAt": "T", "States": {"T": {**t, "End": True}}} for t in tasks], "End": True}} if len(tasks) > 1 else {"X": {**tasks[0], "End": True}}})

    def task(resource: str, **params: Any) -> dict[str, Any]:
        return {"Type": "Task", "Resource": resource, "Parameters": params}

    around = {
        "a backup's Catch goes to the restore": edited(lambda st: st["BackUpDatabase"]["Catch"][0].update(Next=restore)),
        "the database backed up, then the restore": edited(lambda st: st["BackUpDatabase"].update(Next=restore)),
        "the backups started, never waited for": edited(lambda st: st["BackUpFiles"].update(Next=restore)),
        "a failed backup goes on to the restore": edited(lambda st: st.__setitem__("BackupFailed", {"Type": "Pass", "Next": restore})),
        "a backup of another resource": edited(lambda st: st["BackUpFiles"]["Parameters"].update(ResourceArn="arn:aws:dynamodb:eu-west-1:1:table/x")),
        "a Pass that names startBackupJob": edited(lambda st: st.__setitem__("BackUpDatabase", {"Type": "Pass", "Parameters": {"n": "startBackupJob"}, "Next": "BackUpFiles"})),
        "a Not COMPLETED taken for completed": edited(lambda st: st["BackupDone"]["Choices"].insert(0, {"Not": {"Variable": "$.backupFilesState.state", "StringEquals": "COMPLETED"}, "Next": restore})),
        "a backup beside the restore": machine(task("arn:aws:states:::aws-sdk:backup:startBackupJob", ResourceArn=protected[0]), states[restore]),
        "another machine started": machine(task("arn:aws:states:::aws-sdk:sfn:startExecution", StateMachineArn="arn:aws:states:eu-west-1:1:stateMachine:x")),
        "an object copied over the bucket": machine(task("arn:aws:states:::aws-sdk:s3:copyObject", Bucket=bucket, Key="k", CopySource=f"{bucket}/k?versionId=1")),
        "a function invoked": machine(task("arn:aws:states:::lambda:invoke", FunctionName="restore")),
        "a task run": machine(task("arn:aws:states:::ecs:runTask.sync", TaskDefinition="x")),
        # the Choice that lets it on must ask each protected job's own state, read from that job, COMPLETED
        "the database's job completed, the files' not asked": edited(lambda st: st["BackupDone"]["Choices"].insert(0, {"Variable": "$.backupDatabaseState.state", "StringEquals": "COMPLETED", "Next": restore})),
        "the files' state only present": edited(lambda st: st["BackupDone"]["Choices"].insert(0, {"And": [{"Variable": "$.backupDatabaseState.state", "StringEquals": "COMPLETED"}, {"Variable": "$.backupFilesState.state", "IsPresent": True}], "Next": restore})),
        "a constant COMPLETED": edited(lambda st: (st["BackUpFiles"].update(Next="Fake"), st.update(Fake={"Type": "Pass", "Result": "COMPLETED", "ResultPath": "$.fake", "Next": "FakeChoice"}, FakeChoice={"Type": "Choice", "Choices": [{"Variable": "$.fake", "StringEquals": "COMPLETED", "Next": restore}], "Default": "BackupPolls"}))),
        "the caller's COMPLETED": edited(lambda st: (st["BackUpFiles"].update(Next="Ask"), st.update(Ask={"Type": "Choice", "Choices": [{"Variable": "$.sha256", "StringEquals": "COMPLETED", "Next": restore}], "Default": "BackupPolls"}))),
        "the caller's old jobs described": edited(lambda st: [st[n]["Parameters"].update({"BackupJobId.$": "$.sha256"}) for n in ("BackupCheckDatabase", "BackupCheckFiles")]),
        "the files' state written over": edited(lambda st: (st["BackupCheckFiles"].update(Next="Over"), st.update(Over={"Type": "Pass", "Result": {"state": "COMPLETED"}, "ResultPath": "$.backupFilesState", "Next": "BackupDone"}))),
        "a Catch over everything, then a Choice": edited(lambda st: st["BackupCheckFiles"]["Catch"][0].update(ResultPath="$", Next="BackupDone")),
    }
    vouched = [name for name, d in around.items() if _backs_up_first(d, protected)]
    assert vouched == [], vouched


def aws_grants(p: Planned) -> tuple[list[Grant], dict[Capability, list[Any]]]:
    d = p.deployment
    region, account = d.config.block("aws:region"), d.target_config.accountId
    arn = lambda svc, res: f"arn:aws:{svc}:{region}:{account}:{res}"  # noqa: E731
    db = p.one("aws:rds/instance:Instance")["inputs"]["identifier"]
    cluster = p.one("aws:ecs/cluster:Cluster")["inputs"]["name"]
    services = [r["inputs"]["name"] for r in p.of_type("aws:ecs/service:Service")]
    secret = p.one("aws:secretsmanager/secret:Secret")["inputs"]["name"]
    bucket = next(r["inputs"]["bucket"] for r in p.of_type("aws:s3/bucketV2:BucketV2") + p.of_type("aws:s3/bucket:Bucket") if "-files-" in r["inputs"]["bucket"])
    probes: dict[Capability, list[Any]] = {
        C.RELEASE: [("ecs:UpdateService", arn("ecs", f"service/{cluster}/{s}")) for s in services],
        C.READ_SECRETS: [("secretsmanager:GetSecretValue", arn("secretsmanager", f"secret:{secret}-AbCdEf"))],
        C.WRITE_SECRETS: [("secretsmanager:PutSecretValue", arn("secretsmanager", f"secret:{secret}-AbCdEf"))],
        C.SHELL: [("ecs:ExecuteCommand", arn("ecs", f"cluster/{cluster}")), ("ecs:ExecuteCommand", arn("ecs", f"task/{cluster}/0123456789abcdef"))]
        # running the export task directly takes container overrides: a command of one's choosing with the database's password
        + [("ecs:RunTask", arn("ecs", f"task-definition/{t['inputs']['family']}:1")) for t in p.of_type("aws:ecs/taskDefinition:TaskDefinition") if t["inputs"]["family"].endswith(("-export", "-restore"))],
        C.BACKUP: [("rds:CreateDBSnapshot", arn("rds", f"db:{db}"))]
        + [("backup:StartBackupJob", arn("backup", f"backup-vault:{v['inputs']['name']}")) for v in p.of_type("aws:backup/vault:Vault")]
        # a backup taken now and downloaded: the export's state machine, which fixes what the task runs
        + [("states:StartExecution", arn("states", f"stateMachine:{m['inputs']['name']}")) for m in p.of_type("aws:sfn/stateMachine:StateMachine") if m["inputs"]["name"].endswith("-export")],
        C.RESTORE: [("rds:RestoreDBInstanceToPointInTime", arn("rds", f"db:{db}-restored"))]
        # both forms of a recovery point: AWS Backup's own, and the RDS snapshot a database's is
        + [("backup:StartRestoreJob", arn("backup", "recovery-point:0123abcd-4567-89ef-0123-456789abcdef")) for _ in p.of_type("aws:backup/vault:Vault")]
        + [("backup:StartRestoreJob", arn("rds", "snapshot:awsbackup:job-0123abcd-4567-89ef-0123-456789abcdef")) for _ in p.of_type("aws:backup/vault:Vault")]
        # an uploaded archive restored over the database and files: the restore's state machine
        + [("states:StartExecution", arn("states", f"stateMachine:{m['inputs']['name']}")) for m in p.of_type("aws:sfn/stateMachine:StateMachine") if m["inputs"]["name"].endswith("-restore")],
        # a restore over the bucket with nothing backed up first: AWS Backup's S3 point restored in place, or a
        # restoring state machine whose definition takes no backup before it restores
        C.RESTORE_UNGUARDED: [("backup:StartRestoreJob", arn("backup", "recovery-point:0123abcd-4567-89ef-0123-456789abcdef")) for _ in p.of_type("aws:backup/vault:Vault")]
        # (a definition known only once its task definition exists, the archive restore's, is held to its backup
        # first by test_aws_restore_archive's test_only_production_machines_back_up_first_and_only_their_runner_may)
        + [("states:StartExecution", arn("states", f"stateMachine:{m['inputs']['name']}")) for m in p.of_type("aws:sfn/stateMachine:StateMachine") if m["inputs"]["name"].endswith("-restore") and m["inputs"]["definition"] != "[computed]" and not _backs_up_first(m["inputs"]["definition"], (f"arn:aws:s3:::{bucket}", arn("rds", f"db:{db}")))],
        C.DELETE_DATA: [("rds:DeleteDBInstance", arn("rds", f"db:{db}")), ("s3:DeleteBucket", f"arn:aws:s3:::{bucket}"), ("s3:DeleteObject", f"arn:aws:s3:::{bucket}/model/x")],
        C.EDIT_ALERTS: [("cloudwatch:DeleteAlarms", arn("cloudwatch", f"alarm:{p.prefix}-x")), ("sns:Subscribe", arn("sns", f"{p.prefix}-alerts"))],
        C.GRANT: [(a, f"arn:aws:iam::{account}:role/mxinfra/{p.prefix}-deploy") for a in ("iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:UpdateAssumeRolePolicy")]
        + [("iam:CreateRole", f"arn:aws:iam::{account}:role/x")],
        C.OBSERVE: [("logs:GetLogEvents", arn("logs", f"log-group:/mxinfra/{p.prefix}:log-stream:x")), ("ecs:DescribeServices", arn("ecs", f"service/{cluster}/{services[0]}"))],
    }
    grants = []
    for role in p.of_type("aws:iam/role:Role"):
        perm = (role["inputs"].get("tags") or {}).get("mxinfra:permission")
        if perm is None:
            continue
        policies = [r for r in p.of_type("aws:iam/rolePolicy:RolePolicy") if p.depends(r, role)]
        attached = [r for r in p.resources if r["type"].startswith("aws:iam/rolePolicyAttachment") and p.depends(r, role)]
        assert len(policies) == 1 and not attached, (role["name"], [r["name"] for r in policies + attached])
        doc = _aws_widest(json.loads(policies[0]["inputs"]["policy"]))
        grants.append(Grant(Permission(perm), lambda probe, doc=doc: iam_allows(doc, probe[0], probe[1], {})))
    return grants, probes


# Azure: each custom role definition at the scopes it is assigned or PIM-eligible at; the built-in roles
# by their published actions.
BUILTIN_ACTIONS = {"acdd72a7-3385-48ef-bd42-f606fba81ae7": {"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}}


def _arm(patterns: Iterable[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), x.lower()) for x in patterns)


def azure_grants(p: Planned) -> tuple[list[Grant], dict[Capability, list[Any]]]:
    sub = p.deployment.target_config.subscriptionId
    rg = f"/subscriptions/{sub}/resourceGroups/{p.named(f'{p.prefix}-rg')['inputs']['resourceGroupName']}"
    name = lambda t, key: p.one(t)["inputs"][key]  # noqa: E731
    app = f"{rg}/providers/Microsoft.App/containerApps/{p.prefix}"
    server = f"{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{name('azure-native:dbforpostgresql:Server', 'serverName')}"
    storage = f"{rg}/providers/Microsoft.Storage/storageAccounts/{name('azure-native:storage:StorageAccount', 'accountName')}"
    vault = f"{rg}/providers/Microsoft.KeyVault/vaults/{name('azure-native:keyvault:Vault', 'vaultName')}"
    workspace = f"{rg}/providers/Microsoft.OperationalInsights/workspaces/{name('azure-native:operationalinsights:Workspace', 'workspaceName')}"
    backup_vaults = [f"{rg}/providers/Microsoft.DataProtection/backupVaults/{v['inputs']['vaultName']}" for v in p.of_type("azure-native:dataprotection:BackupVault")]
    probes: dict[Capability, list[Any]] = {
        C.RELEASE: [("Microsoft.App/containerApps/write", app, False)],
        C.READ_SECRETS: [
            ("Microsoft.App/containerApps/listSecrets/action", app, False),
            ("Microsoft.OperationalInsights/workspaces/sharedKeys/action", workspace, False),
            # (the GET form of the workspace's keys: Azure's built-in Reader takes it in with `*/read`)
            ("Microsoft.OperationalInsights/workspaces/sharedKeys/read", workspace, False),
            ("Microsoft.Storage/storageAccounts/listKeys/action", storage, False),
            ("Microsoft.KeyVault/vaults/secrets/getSecret/action", f"{vault}/secrets/admin-password", True),
        ],
        # a token for the app's dev APIs: `az containerapp exec` (and log streaming) run on it; and the data
        # actions a role may carry for exec and the debug console instead
        C.SHELL: [("Microsoft.App/containerApps/getAuthToken/action", app, False)]
        + [(f"Microsoft.App/containerApps/{a}/action", app, True) for a in ("exec", "debug")],
        C.WRITE_SECRETS: [("Microsoft.KeyVault/vaults/secrets/setSecret/action", f"{vault}/secrets/admin-password", True)],
        C.BACKUP: [("Microsoft.DBforPostgreSQL/flexibleServers/backups/write", f"{server}/backups/x", False)]
        + [("Microsoft.DataProtection/backupVaults/backupInstances/backup/action", f"{bv}/backupInstances/x", False) for bv in backup_vaults],
        C.RESTORE: [("Microsoft.Storage/storageAccounts/restoreBlobRanges/action", storage, False)]
        + [("Microsoft.DataProtection/backupVaults/backupInstances/restore/action", f"{bv}/backupInstances/x", False) for bv in backup_vaults],
        # both restore over the files in place, and nothing in RBAC makes them wait for a backup
        C.RESTORE_UNGUARDED: [("Microsoft.Storage/storageAccounts/restoreBlobRanges/action", storage, False)]
        + [("Microsoft.DataProtection/backupVaults/backupInstances/restore/action", f"{bv}/backupInstances/x", False) for bv in backup_vaults],
        # a write of the running server is a PATCH that can shorten its backup retention (the older backups go)
        # or set its administrator password, as well as a deletion's
        C.DELETE_DATA: [
            ("Microsoft.DBforPostgreSQL/flexibleServers/delete", server, False),
            ("Microsoft.DBforPostgreSQL/flexibleServers/write", server, False),
            ("Microsoft.Storage/storageAccounts/delete", storage, False),
        ],
        C.EDIT_ALERTS: [("Microsoft.Insights/metricAlerts/write", f"{rg}/providers/Microsoft.Insights/metricAlerts/x", False)],
        C.GRANT: [
            ("Microsoft.Authorization/roleAssignments/write", f"{rg}/providers/Microsoft.Authorization/roleAssignments/00000000-0000-4000-8000-000000000000", False),
            ("Microsoft.Authorization/roleDefinitions/write", f"{rg}/providers/Microsoft.Authorization/roleDefinitions/x", False),
        ],
        C.OBSERVE: [("Microsoft.App/containerApps/read", app, False)],
    }
    grants = []
    definitions = {r["urn"]: r for r in p.of_type("azure-native:authorization:RoleDefinition")}
    for t in ("azure-native:authorization:RoleAssignment", "azure-native:authorization:PimRoleEligibilitySchedule"):
        for g in p.of_type(t):
            perm = next((x for x in Permission if g["name"].startswith(f"{p.prefix}-") and f"-{x.value}" in g["name"][len(p.prefix) :]), None)
            if perm is None:
                continue
            scope = g["inputs"]["scope"]
            owned = [d for d in definitions.values() if p.depends(g, d)]
            if owned:
                (d,) = owned
                perms = d["inputs"]["permissions"]
            else:
                guid = str(g["inputs"]["roleDefinitionId"]).rsplit("/", 1)[-1]
                assert guid in BUILTIN_ACTIONS, f"{g['name']}: built-in role {guid}: add its published actions"
                perms = [BUILTIN_ACTIONS[guid]]

            def allows(probe: Any, perms: Any = perms, scope: str = scope) -> bool:
                action, rid, data = probe
                if not (rid.lower() == scope.lower() or rid.lower().startswith(scope.lower().rstrip("/") + "/")):
                    return False
                yes, no = ("dataActions", "notDataActions") if data else ("actions", "notActions")
                return any(_arm(x.get(yes, []), action) and not _arm(x.get(no, []), action) for x in perms)

            grants.append(Grant(perm, allows))
    return grants, probes


# Kubernetes: each Role's rules, as the API server's RBAC authorizer matches them. Creating a pod (or
# anything that makes pods) runs any command with any Secret of the namespace mounted.
def _rbac_allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str | None) -> bool:
    for r in rules:
        if not (set(r.get("apiGroups", [])) & {group, "*"} and set(r.get("resources", [])) & {resource, "*"} and set(r.get("verbs", [])) & {verb, "*"}):
            continue
        names = r.get("resourceNames") or []
        # a create is named only on a subresource (pods/exec on one pod): the object's own create has no name yet
        if not names or (name is not None and (verb != "create" or "/" in resource) and name in names):
            return True
    return False


POD_MAKERS = [("", "pods", "create"), ("batch", "jobs", "create"), ("batch", "cronjobs", "create"), ("apps", "deployments", "create"), ("apps", "statefulsets", "create"), ("apps", "daemonsets", "create"), ("apps", "replicasets", "create"), ("", "pods/exec", "create"), ("", "pods/attach", "create")]


def kubernetes_grants(p: Planned) -> tuple[list[Grant], dict[Capability, list[Any]]]:
    workload = p.prefix
    # by name too: a rule limited to named objects matches only a request for one of them
    secrets = [None, *(s["inputs"]["metadata"]["name"] for s in p.of_type("kubernetes:core/v1:Secret") if s["inputs"].get("metadata", {}).get("name"))]
    pod = f"{workload}-0"
    into_pods = [("", "pods/exec", "create", pod), ("", "pods/attach", "create", pod), ("", "pods/portforward", "create", pod), ("", "pods/ephemeralcontainers", "patch", pod), ("", "pods/ephemeralcontainers", "update", pod)]
    probes: dict[Capability, list[Any]] = {
        C.RELEASE: [("apps", "statefulsets", "patch", workload), ("privatecloud.mendix.com", "mendixapps", "patch", workload)],
        # the MendixApp holds the admin password and licence; a write's answer is the whole object
        C.READ_SECRETS: [("", "secrets", v, name) for v in ("get", "list", "watch") for name in secrets]
        + [("privatecloud.mendix.com", "mendixapps", v, workload) for v in ("get", "list", "watch", "patch", "update")]
        + [(g, r, v, None) for g, r, v in POD_MAKERS]
        + into_pods,
        C.SHELL: [(g, r, v, None) for g, r, v in POD_MAKERS] + into_pods,
        C.WRITE_SECRETS: [("", "secrets", "patch", None), ("", "secrets", "update", None)],
        C.BACKUP: [("batch", "jobs", "create", None)],
        C.RESTORE: [("batch", "jobs", "create", None)],
        # a restore Job runs as its creator writes it: backing up first is the CLI's, not the API server's
        C.RESTORE_UNGUARDED: [("batch", "jobs", "create", None)],
        C.DELETE_DATA: [("", "persistentvolumeclaims", "delete", None), ("apps", "statefulsets", "delete", None), ("", "namespaces", "delete", None)],
        C.GRANT: [("rbac.authorization.k8s.io", r, v, None) for r in ("roles", "rolebindings") for v in ("create", "update", "patch", "bind", "escalate")],
        C.OBSERVE: [("", "pods/log", "get", None), ("", "pods", "list", None), ("apps", "statefulsets", "get", workload)],
    }
    grants = []
    for role in p.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role"):
        perm = (role["inputs"]["metadata"].get("annotations") or {}).get("mxinfra.io/permission")
        if perm is None:
            continue
        rules = role["inputs"]["rules"]
        grants.append(Grant(Permission(perm), lambda probe, rules=rules: _rbac_allows(rules, *probe)))
    return grants, probes


# Cloud Foundry: the space role of each grant, against the Cloud Controller's permitted roles per endpoint
# (the documentation's table in tests/targets/test_release_scope.py).
def cloudfoundry_grants(p: Planned) -> tuple[list[Grant], dict[Capability, list[Any]]]:
    from test_release_scope import capi_permits

    from mxinfra_cloudfoundry.access import space_role

    probes: dict[Capability, list[Any]] = {
        C.RELEASE: ["POST /v3/packages", "PATCH /v3/apps/:guid/relationships/current_droplet", "POST /v3/processes/:guid/actions/scale"],
        C.READ_SECRETS: ["GET /v3/apps/:guid/environment_variables"],
        # a task runs any command in the app's container, with its environment and bindings
        C.SHELL: ["POST /v3/apps/:guid/tasks"],
        C.WRITE_SECRETS: ["PATCH /v3/apps/:guid/environment_variables"],
        C.DELETE_DATA: ["DELETE /v3/service_instances/:guid"],
        # a service key: the database's and the file store's credentials (how `mxinfra backup` works here)
        C.BACKUP: ["POST /v3/service_credential_bindings"],
        C.RESTORE: ["POST /v3/service_credential_bindings"],
        C.RESTORE_UNGUARDED: ["POST /v3/service_credential_bindings"],
        C.GRANT: ["POST /v3/roles", "DELETE /v3/roles/:guid"],
        C.OBSERVE: ["GET /v3/processes/:guid/stats"],
    }
    grants = []
    cfg = p.deployment.target_config
    (prepared,) = p.deployment.environments
    if p.production:
        # Production roles are never standing: `mxinfra access grant` creates the permission's space role.
        standing = [r for t in ("SpaceRole", "GroupSpaceRole") for r in p.of_type(f"pulumi-python:dynamic/cloudfoundry:{t}")]
        assert standing == [], [r["name"] for r in standing]
        for role in prepared.access.roles():
            try:
                name = space_role(role.permission, cfg.deployRole, production=True)
            except KeyError:
                continue
            grants.append(Grant(role.permission, lambda e, name=name: capi_permits(name, e)))
    else:
        for t in ("SpaceRole", "GroupSpaceRole"):
            for r in p.of_type(f"pulumi-python:dynamic/cloudfoundry:{t}"):
                grants.append(Grant(Permission(r["inputs"]["permission"]), lambda e, name=r["inputs"]["type"]: capi_permits(name, e)))
    return grants, probes


GRANTS = {"aws": aws_grants, "azure": azure_grants, "kubernetes": kubernetes_grants, "cloudfoundry": cloudfoundry_grants}


@pytest.mark.parametrize("env", ["test", "production"])
@pytest.mark.parametrize("name", INSTALLED)
def test_rendered_grants_stay_within_the_declared_capabilities(planned, name, env):
    assert name in GRANTS, f"{name}: the conformance suite has no probes for this target's grants; add them"
    p = planned(name, env)
    table = load_target(name).capabilities
    assert table is not None
    grants, probes = GRANTS[name](p)
    assert grants, f"{name}-{env}: no grant rendered"
    # the rules that hold on every tier (one permission each) and backups' own are probed on every target:
    # a capability without probes would pass every check below vacuously
    unprobed = sorted(c.value for c in (*EXCLUSIVE, C.BACKUP, *PRODUCTION_FORBIDDEN) if not probes.get(c))
    assert not unprobed, f"{name}: no probes for {', '.join(unprobed)}: add them (the cloud's own API actions that do it)"
    declared = {(lim.permission, lim.capability) for lim in table.limits}
    seen = {g.permission for g in grants}
    problems = []
    for perm in Permission:
        wanted = table.granted(perm, p.production)
        if perm in {r.permission for r in p.deployment.environments[0].access.roles()} and wanted and perm not in seen:
            problems.append(f"{perm.value}: declared {sorted(c.value for c in wanted)} but nothing rendered")
        if isinstance(table.entries[perm], NotGranted) and perm in seen:
            problems.append(f"{perm.value}: declared not granted, yet rendered")
    for g in grants:
        observed = _observed(g, probes)
        beyond = observed - table.granted(g.permission, p.production)
        if beyond:
            problems.append(f"{g.permission.value} ({'production' if p.production else 'other tiers'}): the rendered grant also allows {', '.join(sorted(c.value for c in beyond))}")
        if p.production:
            forbidden = observed & PRODUCTION_FORBIDDEN - {lim.capability for lim in table.limits if lim.permission is g.permission}
            if forbidden:
                problems.append(f"{g.permission.value}: production grant allows {', '.join(sorted(c.value for c in forbidden))}")
        for cap, owner, what in ((C.RELEASE, Permission.DEPLOY, "changes what runs, which only deploy may"), (C.RESTORE, Permission.BACKUPS, "restores over data, which only backups may"), (C.GRANT, Permission.MANAGE, "creates grants, which only manage may (and never on production)")):
            # only a platform limit the target states (with its reason: capabilities.py) excuses it
            if cap in observed and g.permission is not owner and (g.permission, cap) not in declared:
                problems.append(f"{g.permission.value}: {what}")
    if p.production:
        # a limit states what the cloud gives and no narrower role avoids: one no rendered grant shows is stale
        for lim in table.limits:
            if not any(lim.capability in _observed(g, probes) for g in grants if g.permission is lim.permission):
                problems.append(f"{lim.permission.value}: the platform limit {lim.capability.value} is declared, but no production grant of it allows that: drop the limit")
    assert not problems, f"{name}-{env}:\n" + "\n".join(sorted(set(problems)))


@pytest.mark.parametrize("name", INSTALLED)
def test_production_data_is_protected_and_resources_are_the_environments(planned, name):
    p = planned(name, "production")
    data_types = ("aws:rds/instance:Instance", "aws:s3/bucketV2:BucketV2", "aws:s3/bucket:Bucket", "azure-native:dbforpostgresql:Server", "azure-native:storage:StorageAccount", "kubernetes:core/v1:PersistentVolumeClaim", "pulumi-python:dynamic/cloudfoundry:ServiceInstance")
    data = [r for r in p.resources if r["type"] in data_types or r["type"].endswith(":CfServiceInstance")]
    assert data or name == "kubernetes", f"{name}: no data resource found on production"
    unprotected = [r["name"] for r in data if not (r.get("options") or {}).get("protect")]
    assert unprotected == [], f"{name}: production data without protect: {unprotected}"
    components = [r for r in p.resources if r["type"] == "mxinfra:index:MendixEnvironment"]
    assert len(components) == 1
    app = p.deployment.config.app.name
    by_urn = {r["urn"]: r for r in p.resources}
    for r in p.resources:
        if r["type"].startswith("mxinfra:index:") or r["type"].startswith("pulumi:providers:"):
            continue
        chain, cur = [], r
        while cur is not None and not cur["type"].startswith("mxinfra:index:"):
            chain.append(cur["name"])
            cur = by_urn.get(cur["parent"])
        assert cur is not None, f"{name}: {r['name']} is not a child of the app's components ({' <- '.join(chain)})"
        # an environment's resources carry its prefix; what the app's environments share, the app's name
        prefix = p.prefix if cur["type"] == "mxinfra:index:MendixEnvironment" else app
        assert r["name"].startswith(prefix + "-"), f"{name}: {r['name']} is not named with the prefix {prefix!r} of {cur['name']}"


# --- tier isolation and names ---------------------------------------------------------------------------

# Where an environment lives, per target: the keys of its block a test-tier stack could point at
# production's (a network, a namespace, a space). Each must be refused (issue 19: F2, F3, F14).
PLACEMENT = {
    "aws": ("vpcId", "vpcCidr", "vpcTags", "subnetIds", "loadBalancerSubnetIds"),
    "azure": ("vnetId", "networkTier", "infrastructureSubnetId", "databaseSubnetId", "privateEndpointSubnetId"),
    "cloudfoundry": ("spaces",),
    "kubernetes": ("namespace",),
}


def _plan_refused(directory: Path, stack: str) -> list[str]:
    from mxinfra.errors import ConfigError

    try:
        run_plan(directory, stack)
    except ConfigError as e:
        return [f"{i.path}: {i.message}" for i in e.issues]
    return []


@pytest.mark.parametrize("name", INSTALLED)
def test_a_test_stack_cannot_use_productions_network_namespace_or_space(tmp_path, name):
    assert name in PLACEMENT, f"{name}: say which keys place an environment (network, namespace, space)"
    directory = copy_example(tmp_path / "project")
    prefix = STACK_PREFIX[name]
    production = _load_yaml(directory / "stacks" / f"Pulumi.{prefix}production.yaml")["config"][f"mxinfra:{name}"]
    path = directory / "stacks" / f"Pulumi.{prefix}test.yaml"
    doc = _load_yaml(path)
    block = doc["config"][f"mxinfra:{name}"]
    assert _plan_refused(directory, f"{prefix}test") == []
    for key in PLACEMENT[name]:
        if key == "spaces":
            block["spaces"] = {"test": next(iter(production["spaces"].values()))}
        elif key == "namespace":
            block["namespace"] = production.get("namespace") or "orders-production"
        elif key in production:
            block[key] = production[key]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    refused = _plan_refused(directory, f"{prefix}test")
    assert refused, f"{name}: a test stack placed in production's {', '.join(PLACEMENT[name])} was planned"
    # refused for where it is placed, not for something else the edit broke
    keys = tuple(f"mxinfra:{name}.{k}" for k in PLACEMENT[name])
    assert any(r.startswith(keys) and "production" in r.split(":", 2)[-1] and "unknown key" not in r for r in refused), refused


@pytest.mark.parametrize("name", INSTALLED)
def test_names_read_back_one_way(tmp_path, name):
    """`orders`/`prod-eu` and `orders-prod`/`eu` would name the same roles, databases, buckets, namespaces and
    apps: an environment name has no '-', so `<app>-<environment>` reads back one way (issue 19, F15)."""
    directory = copy_example(tmp_path / "project")
    prefix = STACK_PREFIX[name]
    path = directory / "stacks" / f"Pulumi.{prefix}test.yaml"
    doc = _load_yaml(path)
    envs = doc["config"]["mxinfra:environments"]
    (old,) = list(envs)
    envs["test-eu"] = envs.pop(old)
    text = yaml.safe_dump(doc, sort_keys=False).replace(f"[{old}]", "[test-eu]").replace(f"- {old}\n", "- test-eu\n")
    path.write_text(text)
    refused = _plan_refused(directory, f"{prefix}test")
    assert any(r.startswith("mxinfra:environments.test-eu:") and "no '-'" in r for r in refused), refused


# A principal no person stands behind: it cannot answer an MFA prompt, so on production it may hold `api`
# alone (issue 19, F12). AWS and Cloud Foundry have no such form in `mxinfra:access`: there every production
# grant requires MFA (AWS: the trust policy's MultiFactorAuthPresent; CF: an mfaOrigins identity provider).
MACHINE_PRINCIPAL = {"azure": "servicePrincipal:0a1b2c3d-0000-4000-8000-0000000000aa", "kubernetes": "serviceaccount:ci/deployer"}


def _mapped(name: str) -> list[str]:
    table = load_target(name).capabilities
    assert table is not None
    return [p.value for p in Permission if p is not Permission.API and table.not_granted(p) is None]


@pytest.mark.parametrize(("name", "permission"), [(n, p) for n in sorted(MACHINE_PRINCIPAL) for p in _mapped(n)])
def test_a_machine_principal_holds_nothing_but_api_on_production(tmp_path, name, permission):
    directory = copy_example(tmp_path / "project")
    record_deploy(directory, f"{STACK_PREFIX[name]}acceptance")
    path = directory / "stacks" / f"Pulumi.{STACK_PREFIX[name]}production.yaml"
    doc = _load_yaml(path)
    doc["config"]["mxinfra:access"].append({"principal": MACHINE_PRINCIPAL[name], "environments": ["production"], "permissions": [permission]})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    refused = _plan_refused(directory, f"{STACK_PREFIX[name]}production")
    index = len(doc["config"]["mxinfra:access"]) - 1
    assert any(r.startswith(f"mxinfra:access[{index}]") for r in refused), refused


# --- every production grant a person holds: MFA and at most 8 hours, on the rendered output ---------------
# What each target promises (its README) and realises in what it renders; never the config the core read.

def aws_sessions(p: Planned) -> list[str]:
    """README (Permissions -> IAM): production roles trust only sessions with aws:MultiFactorAuthPresent, and
    aws:MultiFactorAuthAge plus MaxSessionDuration is at most 8 hours. Every role of the environment is
    checked (a platform role a person could assume falls under it too); each permission's role must be one."""
    problems, _ = aws_session_problems(p.of_type("aws:iam/role:Role"), EIGHT_HOURS)
    for role in p.of_type("aws:iam/role:Role"):
        perm = (role["inputs"].get("tags") or {}).get("mxinfra:permission")
        if perm is not None and aws_session_problems([role], EIGHT_HOURS)[1] == 0:
            problems.append(f"{role['name']}: the {perm} role's trust lets no person assume it (the check would prove nothing)")
    return problems


def azure_sessions(p: Planned) -> list[str]:
    """README (Permissions -> Azure RBAC and PIM): on production no standing assignment for people; each
    eligibility's role has its management policy at the same scope updated: activation and an admin's
    active assignment need MFA and expire within PT8H (or maxSessionSeconds)."""
    problems = []
    (prepared,) = p.deployment.environments
    kinds = {g.principal.split(":", 1)[1].lower(): g.principal.split(":", 1)[0] for g in prepared.access.grants}
    for a in p.of_type("azure-native:authorization:RoleAssignment"):
        ptype, pid = a["inputs"].get("principalType"), a["inputs"].get("principalId")
        if ptype in ("User", "Group") or (isinstance(pid, str) and kinds.get(pid.lower()) in ("user", "group")):
            problems.append(f"{a['name']}: a standing production assignment to a person ({ptype} {pid})")
    lookups = [r for r in p.of_type("pulumi-python:dynamic:Resource") if {"roleDefinitionId", "scope"} <= set(r["inputs"])]
    policies: dict[tuple[str, str], dict[str, Any]] = {}
    for pol in p.of_type("azure-native:authorization:RoleManagementPolicy"):
        found = [lk for lk in lookups if p.depends(pol, lk)]
        if len(found) != 1:
            problems.append(f"{pol['name']}: not tied to one role's policy lookup ({[lk['name'] for lk in found]})")
            continue
        (lk,) = found
        if str(pol["inputs"]["scope"]).lower() != str(lk["inputs"]["scope"]).lower():
            problems.append(f"{pol['name']}: updates the policy at {pol['inputs']['scope']}, not where its role is ({lk['inputs']['scope']})")
        policies[(str(lk["inputs"]["roleDefinitionId"]).lower(), str(lk["inputs"]["scope"]).lower())] = pol
    eligible = p.of_type("azure-native:authorization:PimRoleEligibilitySchedule")
    if not eligible:
        problems.append("no PIM eligibility rendered on production")
    for e in eligible:
        pol = policies.get((str(e["inputs"]["roleDefinitionId"]).lower(), str(e["inputs"]["scope"]).lower()))
        if pol is None:
            problems.append(f"{e['name']}: no role management policy of its role at {e['inputs']['scope']}: activation follows Azure's defaults")
            continue
        problems += azure_policy_problems(f"{e['name']} ({pol['name']})", pol["inputs"]["rules"], EIGHT_HOURS)
    return problems


def kubernetes_sessions(p: Planned) -> list[str]:
    """README (Access): RBAC cannot require MFA or limit sessions, so production binds only groups (never a
    built-in system: one) and the plan warns that the identity provider must enforce MFA and sessions of at
    most 8 hours for exactly those groups."""
    import re

    problems, groups = [], set()
    for t in ("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"):
        for b in p.of_type(t):
            for s in b["inputs"].get("subjects") or []:
                if s.get("kind") != "Group":
                    problems.append(f"{b['name']}: binds {s.get('kind')} {s.get('name')}: production binds only groups, whose identity provider enforces MFA")
                elif str(s.get("name", "")).startswith("system:"):
                    problems.append(f"{b['name']}: binds the built-in group {s['name']}")
                else:
                    groups.add(s["name"])
    if not groups:
        problems.append("no production binding rendered")
    (prepared,) = p.deployment.environments
    warned = [w for w in prepared.warnings if "MFA" in w and "8 hours" in w]
    for g in sorted(groups):
        if not any(re.search(rf"(?<![\w.:-]){re.escape(g)}(?![\w.:-])", w) for w in warned):
            problems.append(f"group {g} holds production roles, and no plan warning says its identity provider must enforce MFA and 8 hours: {warned}")
    return problems


def cloudfoundry_sessions(p: Planned) -> list[str]:
    """README (Permissions -> space roles): roles never expire, so production has no standing space role;
    `mxinfra access grant` creates one for at most 8 hours, and the GrantExpiry resource of production's
    space is the platform's side of that (its report, and removal on destroy)."""
    problems = [f"{r['name']}: a standing {r['inputs'].get('type')} on production" for t in ("SpaceRole", "GroupSpaceRole") for r in p.of_type(f"pulumi-python:dynamic/cloudfoundry:{t}")]
    app = p.one("pulumi-python:dynamic/cloudfoundry:App")
    expiry = p.of_type("pulumi-python:dynamic/cloudfoundry:GrantExpiry")
    if len(expiry) != 1:
        problems.append(f"production has {len(expiry)} GrantExpiry resources: its grants would not be expired")
    elif (expiry[0]["inputs"]["space"], expiry[0]["inputs"]["org"], expiry[0]["inputs"]["environment"]) != (app["inputs"]["space"], app["inputs"]["org"], p.env):
        problems.append(f"the GrantExpiry watches {expiry[0]['inputs']['org']}/{expiry[0]['inputs']['space']} ({expiry[0]['inputs']['environment']}), not the app's space {app['inputs']['org']}/{app['inputs']['space']}")
    return problems


SESSIONS = {"aws": aws_sessions, "azure": azure_sessions, "kubernetes": kubernetes_sessions, "cloudfoundry": cloudfoundry_sessions}


@pytest.mark.parametrize("name", INSTALLED)
def test_production_grants_need_mfa_and_at_most_eight_hours(planned, name):
    assert name in SESSIONS, f"{name}: say how its rendered production grants require MFA and at most 8 hours"
    problems = SESSIONS[name](planned(name, "production"))
    assert not problems, f"{name}:\n" + "\n".join(problems)


class _Edited(Planned):
    """A plan's rendered resources as a regressed target would render them (for the checks' own tests)."""

    def __init__(self, p: Planned, resources: list[dict[str, Any]]) -> None:
        super().__init__(p.target, p.env, p.production, p.result)
        self._resources = resources

    @property
    def resources(self) -> list[dict[str, Any]]:
        return self._resources


def _edit(resources: list[dict[str, Any]], type_: str, change: Callable[[dict[str, Any]], None], name: str | None = None) -> None:
    hit = [r for r in resources if r["type"] == type_ and (name is None or r["name"].endswith(name))]
    assert hit, f"nothing to edit: {type_} {name}"
    change(hit[0]["inputs"])


def _trust_without_mfa(inputs: dict[str, Any]) -> None:
    doc = json.loads(inputs["assumeRolePolicy"])
    for st in doc["Statement"]:
        st.get("Condition", {}).pop("Bool", None)
    inputs["assumeRolePolicy"] = json.dumps(doc)


def _rule(rule_id: str, **set_: Any) -> Callable[[dict[str, Any]], None]:
    def change(inputs: dict[str, Any]) -> None:
        (r,) = [r for r in inputs["rules"] if r["id"] == rule_id]
        r.update(set_)

    return change


REGRESSIONS: dict[str, list[tuple[str, str, Callable[[dict[str, Any]], None], str | None]]] = {
    "aws": [
        ("a 12-hour deploy session", "aws:iam/role:Role", lambda i: i.update(maxSessionDuration=43200), "-role-deploy"),
        ("a trust without MFA", "aws:iam/role:Role", _trust_without_mfa, "-role-monitor"),
    ],
    "azure": [
        ("a 9-hour activation", "azure-native:authorization:RoleManagementPolicy", _rule("Expiration_EndUser_Assignment", maximumDuration="PT9H"), "-role-deploy-policy"),
        ("activation without MFA", "azure-native:authorization:RoleManagementPolicy", _rule("Enablement_EndUser_Assignment", enabledRules=["Justification"]), "-role-monitor-policy"),
        ("admin assignments that never expire", "azure-native:authorization:RoleManagementPolicy", _rule("Expiration_Admin_Assignment", isExpirationRequired=False), "-role-backups-policy"),
        ("a standing assignment to a person", "azure-native:authorization:RoleAssignment", lambda i: i.update(principalType="User"), "-backup-vault-reader"),
    ],
    "kubernetes": [
        ("a user bound on production", "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", lambda i: i["subjects"].append({"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}), "-rolebinding-deploy"),
        ("a group no warning names", "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", lambda i: i["subjects"].append({"kind": "Group", "name": "contractors", "apiGroup": "rbac.authorization.k8s.io"}), "-rolebinding-monitor"),
    ],
    "cloudfoundry": [
        ("the grant expiry watching another space", "pulumi-python:dynamic/cloudfoundry:GrantExpiry", lambda i: i.update(space="orders-acceptance"), None),
    ],
}


@pytest.mark.parametrize("name", INSTALLED)
def test_the_session_checks_catch_a_regressed_rendering(planned, name):
    """Each target's check above fails on its rendered output edited as a regression would render it."""
    import copy

    p = planned(name, "production")
    missed = []
    for what, type_, change, which in REGRESSIONS[name]:
        resources = copy.deepcopy(p.resources)
        _edit(resources, type_, change, which)
        if not SESSIONS[name](_Edited(p, resources)):
            missed.append(what)
    if name == "cloudfoundry":
        role = {"urn": "urn:x", "type": "pulumi-python:dynamic/cloudfoundry:SpaceRole", "name": f"{p.prefix}-role", "parent": None, "inputs": {"type": "space_developer"}}
        if not SESSIONS[name](_Edited(p, [*copy.deepcopy(p.resources), role])):
            missed.append("a standing space role")
    assert not missed, f"{name}: the session check passed {missed}"


# Principals a person could use on production without an MFA the target can rely on: refused by the plan.
# Each target's README: AWS and Azure take the core's rule (every production entry requires MFA, sessions
# of at most 8 hours); Kubernetes takes only non-built-in groups; Cloud Foundry only MFA origins.
def _without_mfa(name: str, own: str) -> list[tuple[str, dict[str, Any], str]]:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("mfa: false", {"principal": own, "permissions": ["monitor"], "mfa": False}, ".mfa"),
        ("a 9-hour session", {"principal": own, "permissions": ["monitor"], "maxSessionSeconds": EIGHT_HOURS + 3600}, ".maxSessionSeconds"),
    ]
    if name == "kubernetes":
        cases += [(f"principal {x}", {"principal": x, "permissions": ["monitor"]}, ".principal") for x in ("user:alice", "group:system:authenticated", "group:system:serviceaccounts")]
    if name == "cloudfoundry":
        cases += [(f"principal {x}", {"principal": x, "permissions": ["monitor"]}, ".principal") for x in ("user:uaa/alice", "user:no-mfa-idp/alice", "group:no-mfa-idp/devs")]
    return cases


@pytest.mark.parametrize("name", INSTALLED)
def test_production_refuses_grants_without_mfa_or_beyond_eight_hours(tmp_path, name):
    directory = copy_example(tmp_path / "project")
    record_deploy(directory, f"{STACK_PREFIX[name]}acceptance")
    stack = f"{STACK_PREFIX[name]}production"
    path = directory / "stacks" / f"Pulumi.{stack}.yaml"
    original = path.read_text()
    own = _load_yaml(path)["config"]["mxinfra:access"][0]["principal"]
    accepted = []
    for what, entry, where in _without_mfa(name, own):
        doc = _load_yaml(path)
        doc["config"]["mxinfra:access"].append({"environments": ["production"], **entry})
        index = len(doc["config"]["mxinfra:access"]) - 1
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        refused = _plan_refused(directory, stack)
        path.write_text(original)
        if not any(r.startswith(f"mxinfra:access[{index}]") for r in refused):
            accepted.append(f"{what}: {refused or 'planned'}")
    assert not accepted, f"{name}: production accepted a grant without MFA or beyond 8 hours:\n" + "\n".join(accepted)


# --- no secret value in rendered inputs --------------------------------------------------------------------


@pytest.mark.parametrize("name", INSTALLED)
def test_no_secret_value_in_rendered_inputs(tmp_path, name):
    """Every secret of the production stack (admin password, licence key, secret constants, the database's
    and the storage's credentials where the stack holds them, the API's credentials) set to a known value:
    no resource input outside a Pulumi secret holds it, plain, base64 or hex."""
    directory = copy_example(tmp_path / "project")
    prefix = STACK_PREFIX[name]
    record_deploy(directory, f"{prefix}acceptance")
    stack = f"{prefix}production"
    path = directory / "stacks" / f"Pulumi.{stack}.yaml"
    doc = _load_yaml(path)
    config = doc["config"]
    env = config["mxinfra:environments"]["production"]
    secure = {"secure": "v1:contract"}
    env.setdefault("adminPassword", secure)
    env.setdefault("license", {"id": "00000000-1111-2222-3333-444444444444"}).setdefault("key", secure)
    assert env.get("secretConstants"), f"{name}: the example production stack has no secret constant to check"
    if name == "cloudfoundry":
        config["mxinfra:cloudfoundry"].setdefault("credentials", {"clientId": "mxinfra-deployer", "clientSecret": secure})
    paths, secrets = seal_known_secrets(config)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with engine_secrets(*paths):
        result = run_plan(directory, stack)
    assert not result.gate_issues, [str(i) for i in result.gate_issues]
    leaks = secret_leaks(result.registrations, secrets)
    assert not leaks, f"{name}:\n" + "\n".join(leaks)
    # the runtime's secrets did reach the rendered resources, as secrets: otherwise this proves nothing
    sealed = {str(leaf) for r in result.registrations for leaf in _sealed_leaves(r.inputs)}
    for what in ("adminPassword", "license key", "secret constant"):
        assert any(secrets[what] in s for s in sealed), f"{name}: the {what} is in no rendered secret input: the check saw nothing"


def _sealed_leaves(value: Any, inside: bool = False) -> list[Any]:
    if isinstance(value, Sealed):
        return _sealed_leaves(value.value, True)
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _sealed_leaves(v, inside)]
    if isinstance(value, list):
        return [x for v in value for x in _sealed_leaves(v, inside)]
    return [value] if inside else []


# --- no machine path in resource inputs: a plan reads the same on every machine --------------------------

ROOT = HERE.parents[1]


@pytest.mark.parametrize("env", ["test", "production"])
@pytest.mark.parametrize("name", INSTALLED)
def test_no_machine_path_in_rendered_inputs(planned, name, env):
    """Planned from a temporary copy of the project: neither that directory, nor the home directory, nor
    the checkout mxinfra runs from appears in any input (secret or not: both reach the state)."""
    p = planned(name, env)
    directory = Path(p.result.project.directory)
    assert directory.is_absolute()
    machine = {directory, directory.resolve(), Path.home(), Path.home().resolve(), ROOT, ROOT.resolve()}
    leaks = machine_path_leaks(p.result.registrations, machine)
    assert not leaks, f"{name}-{env}:\n" + "\n".join(leaks)
    # and it would see one: the package's absolute path, as F24 had it in Cloud Foundry's inputs
    from mxinfra.mockrun import Registration

    planted = Registration(urn="urn:x", type="x", name="x", parent="", custom=True, inputs={"package": {"path": str(directory / "examples" / "orders" / "orders-1.4.2.mda")}})
    assert machine_path_leaks([planted], machine)


# --- F13: Azure monitor never reads the Log Analytics keys -------------------------------------------------

# The reads Microsoft's built-in Log Analytics Reader leaves out (NotActions workspaces/sharedKeys/read), the
# key list's POST form, and a storage insight config (its API gives the storage account key read visibility).
LOG_ANALYTICS_KEY_READS = (
    "Microsoft.OperationalInsights/workspaces/sharedKeys/read",
    "Microsoft.OperationalInsights/workspaces/sharedKeys/action",
    "Microsoft.OperationalInsights/workspaces/storageInsightConfigs/read",
)


def _monitor_key_reads(p: Planned) -> list[str]:
    """The key reads the rendered monitor grants allow on the environment's workspace (after a check that
    the probe reaches the workspace at all: its ordinary read is allowed)."""
    grants, _ = azure_grants(p)
    monitor = [g for g in grants if g.permission is Permission.MONITOR]
    assert monitor, f"{p.env}: no monitor grant rendered"
    ws = p.one("azure-native:operationalinsights:Workspace")["inputs"]["workspaceName"]
    rg = p.named(f"{p.prefix}-rg")["inputs"]["resourceGroupName"]
    workspace = f"/subscriptions/{p.deployment.target_config.subscriptionId}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/workspaces/{ws}"
    assert all(g.allows(("Microsoft.OperationalInsights/workspaces/read", workspace, False)) for g in monitor), "monitor cannot read its workspace: the probe proves nothing"
    targets = {"sharedKeys": workspace, "storageInsightConfigs": f"{workspace}/storageInsightConfigs/x"}
    return sorted({a for g in monitor for a in LOG_ANALYTICS_KEY_READS if g.allows((a, targets[a.split("/")[2]], False))})


@pytest.mark.parametrize("env", ["test", "production"])
def test_azure_monitor_cannot_read_log_analytics_keys(planned, env):
    if "azure" not in INSTALLED:
        pytest.skip("the azure target is not installed")
    assert _monitor_key_reads(planned("azure", env)) == []


def test_azure_monitor_key_probe_fails_without_the_exclusions(tmp_path, monkeypatch):
    """The probe above is not vacuous: with the NotActions taken out of roles.py, it finds every key read."""
    if "azure" not in INSTALLED:
        pytest.skip("the azure target is not installed")
    from mxinfra_azure import roles

    kept = [a for a in roles.NOT_ACTIONS["monitor"] if "OperationalInsights" not in a]
    monkeypatch.setitem(roles.NOT_ACTIONS, "monitor", kept)
    # the wildcard workspaces/*/read then matches both GETs that return keys (the POST form needs an action)
    reads = _monitor_key_reads(_render_hostile(tmp_path, "azure", "production"))
    assert reads == ["Microsoft.OperationalInsights/workspaces/sharedKeys/read", "Microsoft.OperationalInsights/workspaces/storageInsightConfigs/read"]


# --- Cloud Foundry: no production grant creates a service key ----------------------------------------------

SERVICE_KEY = "POST /v3/service_credential_bindings"  # with type key: the database's credentials outside any app
CF_SERVICE_KEY_GAP = (
    "Cloud Foundry: production deploy is {role} (mxinfra access grant), and CAPI permits "
    "POST /v3/service_credential_bindings (type key) to Space Developer and Space Supporter: a production "
    "deploy grant can mint a service key with the database's credentials (targets/cloudfoundry/README.md, "
    "'What deploy can still do on production'; the READ_SECRETS PlatformLimit of capabilities.py gives only GET /v3/apps/:guid/env as its reason)"
)


@pytest.mark.parametrize(
    ("permission", "deploy_role"),
    [
        ("deploy", "space_developer"),
        ("deploy", "space_supporter"),
        ("monitor", "space_developer"),
        ("manage", "space_developer"),
    ],
)
def test_no_cloudfoundry_production_grant_creates_service_keys(planned, permission, deploy_role):
    if "cloudfoundry" not in INSTALLED:
        pytest.skip("the cloudfoundry target is not installed")
    from test_release_scope import capi_permits

    from mxinfra_cloudfoundry.access import space_role

    p = planned("cloudfoundry", "production")
    perm = Permission(permission)
    assert capi_permits("space_developer", SERVICE_KEY)  # the probe reaches the endpoint at all
    if deploy_role == p.deployment.target_config.deployRole:
        # the grants the plan makes a principal eligible for, as `mxinfra access grant` creates them
        grants = [g for g in cloudfoundry_grants(p)[0] if g.permission is perm]
        assert grants, f"{permission}: not granted by the hostile production stack"
        allowed = [g for g in grants if g.allows(SERVICE_KEY)]
    else:
        allowed = [space_role(perm, deploy_role, production=True)]
        allowed = [r for r in allowed if capi_permits(r, SERVICE_KEY)]
    if perm is not Permission.DEPLOY:
        assert not allowed, f"production {permission} (deployRole {deploy_role}) may create service keys"
        return
    # Every role that can release on Cloud Foundry may mint a service key (F16: "document what is left"):
    # not hidden, but a platform limit the target declares with its reason, and its README states.
    assert allowed, "production deploy can no longer create service keys: drop the platform limit below"
    from mxinfra_cloudfoundry.capabilities import CAPABILITIES

    limits = [x for x in CAPABILITIES.limits if x.permission is Permission.DEPLOY and x.capability is Capability.READ_SECRETS]
    assert limits and "service_credential_bindings" in limits[0].reason, CF_SERVICE_KEY_GAP.format(role=deploy_role)
    readme = (ROOT / "targets" / "cloudfoundry" / "README.md").read_text()
    assert "service key" in readme, "targets/cloudfoundry/README.md must say production deploy can create service keys"


@pytest.mark.parametrize("name", INSTALLED)
def test_every_platform_limit_is_in_the_targets_readme(name):
    """A platform limit is stated, not hidden: the target's README names each one (`permission`: `capability`)."""
    table = load_target(name).capabilities
    readme = (ROOT / "targets" / name / "README.md").read_text()
    missing = [f"{lim.permission.value}: {lim.capability.value}" for lim in table.limits if f"`{lim.capability.value}`" not in readme or f"`{lim.permission.value}`" not in readme]
    assert not missing, f"targets/{name}/README.md does not name the platform limits {missing} (write each capability as `capability`)"


# --- a database put in service from a backup keeps what guards the one it replaces (issue 21) -------------
# Per target: the database type a `database.fromBackup.<env>` key puts in service anew, the input that holds
# its name, and the inputs only a restored database may set differently (where it comes from, what the
# backup holds). Names are compared with the restored name read as the original's. A target not listed
# must refuse the key, so a target that learns it without joining this check fails here.
RESTORED_FROM_BACKUP = {
    "aws": ("aws:rds/instance:Instance", "identifier", {"restoreToPointInTime", "snapshotIdentifier", "dbName", "username"}),
    "azure": ("azure-native:dbforpostgresql:Server", "serverName", {"createMode", "pointInTimeUTC", "sourceServerResourceId", "administratorLogin", "administratorLoginPassword"}),
}
# What keeps depending on the database in place, and why (each a README statement).
STAYS_ON_THE_ORIGINAL = {
    ("azure", "orders-production-backup-vault-db"): "the vault's weekly and monthly tiers stay on the original server: its immutability is locked on production",
    ("azure", "orders-production-backup-db"): "the vault's backup instance of the original server (its policy stays with it)",
}
FREE_TEXT = {"notes", "description"}  # for people reading the console, e.g. a lock's "the restored database server"
POINT_IN_TIME = "2026-12-04T10:15:00Z"  # a point in time: planned offline, nothing looked up in a vault


def _renamed(value: Any, restored: str, original: str) -> Any:
    if isinstance(value, str):
        return value.replace(restored, original)
    if isinstance(value, dict):
        return {k: _renamed(v, restored, original) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, restored, original) for v in value]
    return value


def _plan_production(base: Path, name: str, from_backup: str | None) -> Any:
    directory = copy_example(base)
    record_deploy(directory, f"{STACK_PREFIX[name]}acceptance")
    path = directory / "stacks" / f"Pulumi.{STACK_PREFIX[name]}production.yaml"
    doc = _load_yaml(path)
    if from_backup is not None:
        block = doc["config"].setdefault(f"mxinfra:{name}", {})
        block.setdefault("database", {})["fromBackup"] = {"production": from_backup}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    if name not in RESTORED_FROM_BACKUP and from_backup is not None:
        return _plan_refused(directory, f"{STACK_PREFIX[name]}production")
    return run_plan(directory, f"{STACK_PREFIX[name]}production")


def _protection(options: dict[str, Any] | None) -> set[str]:
    return {k for k in ("protect", "retainOnDelete") if (options or {}).get(k)}


def _declared(r: dict[str, Any]) -> tuple[Any, Any]:
    return r["inputs"], r.get("options")


@pytest.mark.parametrize("name", INSTALLED)
def test_a_database_restored_into_service_keeps_the_guards_of_the_one_it_replaces(tmp_path, name):
    if name not in RESTORED_FROM_BACKUP:
        refused = _plan_production(tmp_path / "keyed", name, POINT_IN_TIME)
        key = f"mxinfra:{name}.database.fromBackup"
        assert any(r.startswith(key) for r in refused), f"{name}: {key} was not refused; if the target restores into service now, add it to RESTORED_FROM_BACKUP ({refused})"
        return
    db_type, name_key, restore_only = RESTORED_FROM_BACKUP[name]
    plain_result = _plan_production(tmp_path / "plain", name, None)
    keyed_result = _plan_production(tmp_path / "keyed", name, POINT_IN_TIME)
    plain = {r["urn"]: r for r in plain_result.resources()}
    keyed = {r["urn"]: r for r in keyed_result.resources()}
    plain_deps = {r.urn: set(r.dependencies) for r in plain_result.registrations}
    keyed_deps = {r.urn: set(r.dependencies) for r in keyed_result.registrations}
    assert set(plain) <= set(keyed), f"{name}: the key removed {sorted(plain[u]['name'] for u in set(plain) - set(keyed))}"
    (original,) = [r for r in plain.values() if r["type"] == db_type]
    (restored,) = [r for u, r in keyed.items() if u not in plain and r["type"] == db_type]
    o_name, r_name = original["name"], restored["name"]
    new = {r["name"]: r for u, r in keyed.items() if u not in plain}
    problems = []
    if _declared(keyed[original["urn"]]) != _declared(original):
        problems.append(f"{o_name}: the database in place is declared differently with the key")
    # What depended on the original: moved to the restored one, or kept on the original with a twin of it
    # guarding the restored one, or a reasoned exception.
    twins = []
    for u, r in plain.items():
        if original["urn"] not in plain_deps.get(u, set()):
            continue
        moved = restored["urn"] in keyed_deps[u] and original["urn"] not in keyed_deps[u]
        twin = new.get(r_name + r["name"][len(o_name):]) if r["name"].startswith(o_name + "-") else None
        if moved:
            continue
        if r["type"] == "pulumi-python:dynamic:Resource" and r["name"].endswith("-activity"):
            # the outcome record follows every child of its environment (what protects production from a
            # destroy): the restored database as well as the one it replaces
            if restored["urn"] not in keyed_deps[u]:
                problems.append(f"{r['name']} ({r['type']}) does not follow {r_name}")
            continue
        if (name, r["name"]) in STAYS_ON_THE_ORIGINAL:
            continue
        if twin is None or twin["type"] != r["type"] or restored["urn"] not in keyed_deps[twin["urn"]]:
            problems.append(f"{r['name']} ({r['type']}) neither follows {r_name} nor has a counterpart guarding it")
        elif _declared(keyed[u]) != _declared(r):
            problems.append(f"{r['name']}: changed with the key, though it still guards {o_name}")
        else:
            twins.append((r, twin))
    assert twins, f"{name}: no guard of {o_name} (lock, rotation, settings) to compare"
    # Whatever else changed with the key refers to the restored database.
    markers = {r_name, f"{r_name}-id", str(restored["inputs"].get(name_key))}
    for u, r in plain.items():
        if u == original["urn"] or original["urn"] in plain_deps.get(u, set()) or _declared(keyed[u]) == _declared(r):
            continue
        if restored["urn"] not in keyed_deps[u] and not any(m in json.dumps(keyed[u]["inputs"]) for m in markers):
            problems.append(f"{r['name']}: changed with the key, yet does not refer to {r_name}")
    # The restored database and its twins: the original's inputs (names read as the original's), at least
    # its protection, and nothing that still points at the original.
    for was, now in [(original, restored), *twins]:
        skip = (restore_only if now is restored else set()) | FREE_TEXT
        mine = {k: v for k, v in now["inputs"].items() if k not in skip}
        if f"{o_name}-id" in json.dumps(mine):
            problems.append(f"{now['name']}: points at {o_name} ({o_name}-id in its inputs)")
        lost = _protection(was.get("options")) - _protection(now.get("options"))
        if lost:
            problems.append(f"{now['name']}: no {', '.join(sorted(lost))} (the original has it)")
        mine = _renamed(mine, r_name, o_name)
        if now is restored:
            mine.pop(name_key, None)
        theirs = {k: v for k, v in was["inputs"].items() if k not in skip and not (now is restored and k == name_key)}
        for k in sorted(set(mine) | set(theirs)):
            if mine.get(k) != theirs.get(k):
                problems.append(f"{now['name']}.{k}: {theirs.get(k)!r} on the original, {mine.get(k)!r} restored")
    assert "protect" in _protection(restored.get("options")), f"{name}: the restored production database is not protected"
    assert not problems, f"{name}:\n" + "\n".join(problems)
