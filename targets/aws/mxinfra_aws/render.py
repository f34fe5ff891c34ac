"""What `mxinfra plan` shows for an AWS environment: policy documents as files, and notes on choices made."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mxinfra.target import KNOWN_AFTER_APPLY

from . import fargate
from .policies import partition_of

ENVIRONMENT_TYPE = "mxinfra:index:MendixEnvironment"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
DB_INSTANCE = "aws:rds/instance:Instance"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
SERVICE = "aws:ecs/service:Service"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
BACKUP_VAULT = "aws:backup/vault:Vault"
BACKUP_PLAN = "aws:backup/plan:Plan"
BACKUP_LOCK = "aws:backup/vaultLockConfiguration:VaultLockConfiguration"
BACKUP_SELECTION = "aws:backup/selection:Selection"
STATE_MACHINE = "aws:sfn/stateMachine:StateMachine"

# (resource type, input holding a policy document, file suffix)
POLICY_INPUTS = ((ROLE, "assumeRolePolicy", ".trust.json"), (ROLE_POLICY, "policy", ".json"), (BUCKET_POLICY, "policy", ".json"))


def policy_documents(resources: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """File name -> policy document, for every policy the environment's resources carry."""
    prefix = next((r["name"] for r in resources if r["type"] == ENVIRONMENT_TYPE), "")
    docs = {}
    for r in resources:
        for type_, key, suffix in POLICY_INPUTS:
            if r["type"] != type_:
                continue
            text = r["inputs"].get(key)
            try:
                doc = json.loads(text) if isinstance(text, str) else None
            except json.JSONDecodeError:
                doc = None  # an unknown value ([computed]) has no document to show
            if isinstance(doc, dict):
                name = r["name"][len(prefix) + 1 :] if prefix and r["name"].startswith(prefix + "-") else r["name"]
                docs[name + suffix] = doc
    return docs


def container_documents(resources: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """File name (under `containers/`) -> container definitions, for every task definition the plan knows."""
    prefix = next((r["name"] for r in resources if r["type"] == ENVIRONMENT_TYPE), "")
    docs = {}
    for r in resources:
        if r["type"] != TASK_DEFINITION:
            continue
        text = r["inputs"].get("containerDefinitions")
        try:
            doc = json.loads(text) if isinstance(text, str) else None
        except json.JSONDecodeError:
            doc = None
        if isinstance(doc, list):
            name = r["name"][len(prefix) + 1 :] if prefix and r["name"].startswith(prefix + "-") else r["name"]
            docs[f"containers/{name}.json"] = doc
    return docs


def write_policies(env: str, resources: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """Write each policy document to `out_dir/aws/<env>/<resource>.json` (trust policies: `.trust.json`)
    and each task definition's container definitions to `containers/<task>.json`."""
    target = out_dir / "aws" / env
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in sorted({**policy_documents(resources), **container_documents(resources)}.items()):
        path = target / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def plan_outputs(region: str, account: str, type_: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What AWS assigns on create, as placeholders (the random part marked), for the offline plan."""
    later = KNOWN_AFTER_APPLY
    arn = f"arn:{partition_of(region)}:secretsmanager:{region}:{account}:secret:"
    if type_ == SECRET and isinstance(inputs.get("name"), str):
        # Secrets Manager appends six random characters to the name
        return {"arn": f"{arn}{inputs['name']}-{later}"}
    if type_ == SECRET_VERSION:
        return {"versionId": later}
    if type_ == DB_INSTANCE and isinstance(inputs.get("identifier"), str):
        host = f"{inputs['identifier']}.{later}.{region}.rds.amazonaws.com"
        return {"address": host, "endpoint": f"{host}:5432", "masterUserSecrets": [{"secretArn": f"{arn}rds!db-{later}", "secretStatus": "active"}]}
    return {}


def notes(resources: Sequence[Mapping[str, Any]]) -> list[str]:
    """Plain statements of the choices the target made for one environment."""
    out = []
    sized = False
    for r in resources:
        i = r["inputs"]
        if r["type"] == TASK_DEFINITION and not sized and not str(i.get("family", "")).endswith("-export"):
            # The leader's and the followers' task definitions always share one size.
            sized = True
            size = fargate.FargateSize(int(i["memory"]), int(i["cpu"]))
            out.append(f"Fargate task size {size.describe()}: the smallest valid combination with the environment's memory and 1 vCPU per 4 GB")
        elif r["type"] == DB_INSTANCE:
            guards = "deletion protection, final snapshot" if i.get("deletionProtection") else "no deletion protection, no final snapshot"
            pit = i.get("restoreToPointInTime") or {}
            restored = i.get("snapshotIdentifier") or (f"{pit.get('sourceDbInstanceIdentifier')}'s automated backups to {pit.get('restoreTime')}" if pit else None)
            out.append(
                (f"the app uses {i.get('identifier')}, a NEW instance restored from {restored} (mxinfra:aws.database.fromBackup; the environment's own instance stays declared, unused): " if restored else "")
                + f"RDS PostgreSQL {i.get('engineVersion')} {i.get('instanceClass')}, "
                f"{'Multi-AZ' if i.get('multiAz') else 'single-AZ'}, backups kept {i.get('backupRetentionPeriod')} days, {guards}"
                + (", Pulumi-protected" if r.get("options", {}).get("protect") else "")
            )
        elif r["type"] == LOG_GROUP:
            out.append(f"logs kept {i.get('retentionInDays')} days in {i.get('name')}")
        elif r["type"] == ROLE and "mxinfra:permission" in (i.get("tags") or {}):
            doc = json.loads(i["assumeRolePolicy"])
            mfa = "Condition" in doc["Statement"][0]
            out.append(
                f"access role {i.get('name')} ({i['tags']['mxinfra:permission']}): "
                f"{len(doc['Statement'][0]['Principal']['AWS'])} principal(s), "
                f"{'MFA required, ' if mfa else ''}sessions up to {i.get('maxSessionDuration')} s"
            )
    out += backup_notes(resources) + export_notes(resources)
    services = _services(resources)
    if services is not None:
        out.append(services)
    for name, containers in sorted(container_documents(resources).items()):
        for c in containers:
            env_names = [e["name"] for e in c.get("environment", [])]
            secret_names = [e["name"] for e in c.get("secrets", [])]
            out.append(
                f"{name[len('containers/') : -len('.json')]}: container {c.get('name')} of {c.get('image')}, "
                f"{len(env_names)} variables ({', '.join(env_names)}); secrets by reference: {', '.join(secret_names) or 'none'}"
            )
    return out


def _services(resources: Sequence[Mapping[str, Any]]) -> str | None:
    counts = {r["name"]: r["inputs"].get("desiredCount") for r in resources if r["type"] == SERVICE}
    leader = next((c for name, c in counts.items() if not name.endswith("-follower-service")), None)
    if leader is None:
        return None
    followers = next((c for name, c in counts.items() if name.endswith("-follower-service")), 0)
    if not leader:
        return "stopped: the leader service runs 0 tasks, no follower service"
    return (
        f"leader + {followers} follower(s): the leader service's one task alone runs scheduled events and database sync; "
        + (f"the follower service runs {followers} task(s) behind the same load balancer" if followers else "no follower service")
    )


def backup_notes(resources: Sequence[Mapping[str, Any]]) -> list[str]:
    """What AWS Backup keeps of the environment: the vault, each rule, the lock; or that there is none."""
    of = lambda t: [r for r in resources if r["type"] == t]  # noqa: E731
    vaults = of(BACKUP_VAULT)
    if not vaults:
        if of(DB_INSTANCE):
            return ["no AWS Backup vault or plan: backups are off (backups.enabled: false); only RDS's automated backups and S3 versioning remain"]
        return []
    out = []
    for v in vaults:
        i = v["inputs"]
        key = f"KMS key {i['kmsKeyArn']}" if isinstance(i.get("kmsKeyArn"), str) else "AWS Backup's own key"
        out.append(f"AWS Backup vault {i.get('name')} ({key})" + (", Pulumi-protected" if (v.get("options") or {}).get("protect") else ""))
    for plan in of(BACKUP_PLAN):
        rules = [
            f"{r.get('ruleName')} {r.get('schedule')} {r.get('scheduleExpressionTimezone', 'Etc/UTC')} kept {(r.get('lifecycle') or {}).get('deleteAfter')} days"
            for r in plan["inputs"].get("rules") or []
        ]
        out.append(f"backup plan {plan['inputs'].get('name')}: " + "; ".join(rules))
    for sel in of(BACKUP_SELECTION):
        resources_ = sel["inputs"].get("resources")
        if isinstance(resources_, list):
            out.append(f"backed up: {', '.join(str(x) for x in resources_)}")
    locks = of(BACKUP_LOCK)
    for lock in locks:
        i = lock["inputs"]
        mode = f"compliance mode after {i['changeableForDays']} days" if i.get("changeableForDays") is not None else "governance mode"
        out.append(f"vault lock ({mode}): recovery points kept {i.get('minRetentionDays')} to {i.get('maxRetentionDays')} days, none deleted sooner")
    if not locks:
        out.append("no vault lock (production only)")
    return out


def export_notes(resources: Sequence[Mapping[str, Any]]) -> list[str]:
    """The export task behind `mxinfra backup download` and the restore task behind `restore --archive`, or
    what it takes to have them."""
    tasks = [r for r in resources if r["type"] == TASK_DEFINITION and str(r["inputs"].get("family", "")).endswith("-export")]
    if not tasks and not [r for r in resources if r["type"] == BACKUP_VAULT]:
        return []  # backups off: nothing to download either
    if not tasks:
        return ["no export task: `mxinfra backup download` and `restore --archive` need mxinfra:aws.backupExport (its postgres and rclone images)"]
    i = tasks[0]["inputs"]
    containers = json.loads(i["containerDefinitions"]) if isinstance(i.get("containerDefinitions"), str) else []
    images = ", ".join(f"{c.get('name')} {c.get('image')}" for c in containers)
    machines = [r["inputs"].get("name") for r in resources if r["type"] == STATE_MACHINE and str(r["inputs"].get("name", "")).endswith("-export")]
    storage = (i.get("ephemeralStorage") or {}).get("sizeInGib")
    days = [rule.get("expiration", {}).get("days") for r in resources if r["type"] == "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration" and r["name"].endswith("-exports-lifecycle") for rule in r["inputs"].get("rules") or []]
    expiry = f"archives expire after {days[0]} day(s)" if days else "archives never expire (no lifecycle rule)"
    notes = [f"export task {i.get('family')} ({images}; {storage} GiB scratch), started only by the state machine {', '.join(machines)}; {expiry}"]
    restores = [r["inputs"] for r in resources if r["type"] == TASK_DEFINITION and str(r["inputs"].get("family", "")).endswith("-restore")]
    for t in restores:
        names = [c.get("name") for c in (json.loads(t["containerDefinitions"]) if isinstance(t.get("containerDefinitions"), str) else [])]
        by = [r["inputs"].get("name") for r in resources if r["type"] == STATE_MACHINE and str(r["inputs"].get("name", "")).endswith("-restore")]
        notes.append(f"restore task {t.get('family')} ({', '.join(map(str, names))}), started only by the state machine {', '.join(by)}, which stops the services while it runs (`mxinfra backup restore --archive`)")
    return notes
