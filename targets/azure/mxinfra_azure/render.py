"""What `mxinfra plan` shows for an Azure environment: role definitions, PIM policies, container app
templates, the Azure Policies around a restore, the database and the backups (blob service settings, Backup
vault, policies, instances) as files, and notes on the choices made (the retention of each backup tier among them). Inputs arrive masked (secrets as
[secret]), so nothing written here can carry a secret value."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ENVIRONMENT_TYPE = "mxinfra:index:MendixEnvironment"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
ELIGIBILITY = "azure-native:authorization:PimRoleEligibilitySchedule"
POLICY = "azure-native:authorization:RoleManagementPolicy"
CONTAINER_APP = "azure-native:app:ContainerApp"
SERVER = "azure-native:dbforpostgresql:Server"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
WORKSPACE = "azure-native:operationalinsights:Workspace"
DIAGNOSTICS = "azure-native:monitor:DiagnosticSetting"
LOCK = "azure-native:authorization:ManagementLockByScope"
BLOB_SERVICE = "azure-native:storage:BlobServiceProperties"
BACKUP_VAULT = "azure-native:dataprotection:BackupVault"
BACKUP_POLICY = "azure-native:dataprotection:BackupPolicy"
BACKUP_INSTANCE = "azure-native:dataprotection:BackupInstance"
POLICY_DEFINITION = "azure-native:authorization:PolicyDefinition"
POLICY_ASSIGNMENT = "azure-native:authorization:PolicyAssignment"

# (type, file suffix): what is rendered, one JSON file per resource.
RENDERED = {
    ROLE_DEFINITION: ".role.json",
    POLICY: ".pim-policy.json",
    CONTAINER_APP: ".containerapp.json",
    SERVER: ".database.json",
    ROLE_ASSIGNMENT: ".assignment.json",
    ELIGIBILITY: ".eligibility.json",
    BLOB_SERVICE: ".blob-service.json",
    BACKUP_VAULT: ".backup-vault.json",
    BACKUP_POLICY: ".backup-policy.json",
    BACKUP_INSTANCE: ".backup-instance.json",
    POLICY_DEFINITION: ".azure-policy.json",
    POLICY_ASSIGNMENT: ".azure-policy-assignment.json",
}
# What a vault policy's data source is, in a note.
_DATASOURCE_WORDS = {"Microsoft.DBforPostgreSQL/flexibleServers": "database", "Microsoft.Storage/storageAccounts/blobServices": "files"}


def _short(name: str, prefix: str) -> str:
    return name[len(prefix) + 1 :] if prefix and name.startswith(prefix + "-") else name


def documents(resources: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """File name -> document, for every rendered resource of the environment."""
    prefix = next((r["name"] for r in resources if r["type"] == ENVIRONMENT_TYPE), "")
    docs = {}
    for r in resources:
        suffix = RENDERED.get(r["type"])
        if suffix is None:
            continue
        doc: dict[str, Any] = {"type": r["type"], "name": r["name"], **({"options": r["options"]} if r.get("options") else {}), "inputs": r["inputs"]}
        docs[_short(r["name"], prefix) + suffix] = doc
    return docs


def write(env: str, resources: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """Write each document to `out_dir/azure/<env>/<resource><suffix>`."""
    target = out_dir / "azure" / env
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in sorted(documents(resources).items()):
        path = target / name
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def _env_value(app: Mapping[str, Any], variable: str) -> Any:
    try:
        for e in app["template"]["containers"][0]["env"]:
            if e.get("name") == variable:
                return e.get("value")
    except (KeyError, IndexError, TypeError):
        pass
    return None


def notes(resources: Sequence[Mapping[str, Any]]) -> list[str]:
    """Plain statements of the choices the target made for one environment."""
    out = []
    apps = [r for r in resources if r["type"] == CONTAINER_APP]
    locked = {str(r["name"]).rsplit("-", 1)[0] for r in resources if r["type"] == LOCK}
    for r in apps:
        i = r["inputs"]
        res = i["template"]["containers"][0]["resources"]
        scale = i["template"]["scale"]
        index = _env_value(i, "CF_INSTANCE_INDEX")
        role = "leader" if index == "0" else "worker"
        out.append(
            f"container app {i['containerAppName']} ({role}, CF_INSTANCE_INDEX={index}): {scale['minReplicas']} replica(s), "
            f"{res['cpu']:g} vCPU / {res['memory']} (Container Apps Consumption: 2 GiB per vCPU, the smallest size with the environment's memory)"
        )
    if apps:
        first = apps[0]["inputs"]
        if _env_value(first, "MXRUNTIME_com_mendix_storage_azure_UseDefaultAzureCredential") == "true":
            out.append("file storage: managed identity (UseDefaultAzureCredential with BlobEndpoint; shared-key access disabled on the account): the runtime version supports it")
        else:
            out.append("file storage: the account key, held in Key Vault: the runtime version predates UseDefaultAzureCredential (or storage.managedIdentity: false)")
    for r in resources:
        i = r["inputs"]
        if r["type"] == SERVER:
            ha = (i.get("highAvailability") or {}).get("mode")
            backup = i.get("backup") or {}
            guards = []
            if r.get("options", {}).get("protect"):
                guards.append("Pulumi-protected, retained on delete")
            if any(name.endswith("db") for name in locked):
                guards.append("CanNotDelete lock")
            restored = i.get("createMode") == "PointInTimeRestore"
            out.append(
                (f"the app uses {i.get('serverName')}, a NEW server restored to {i.get('pointInTimeUTC')} from the environment's server (mxinfra:azure.database.fromBackup; the environment's own server stays declared, unused): " if restored else "")
                + f"PostgreSQL {i.get('version')} {i.get('sku', {}).get('name')} ({i.get('sku', {}).get('tier')}), HA {ha}, "
                f"point-in-time backups kept {backup.get('backupRetentionDays')} days (geo-redundant {backup.get('geoRedundantBackup')}, set at creation only), private access only, TLS required"
                + (", " + ", ".join(guards) if guards else "")
            )
        elif r["type"] == BLOB_SERVICE:
            out.append(_files_note(i))
        elif r["type"] == BACKUP_VAULT:
            out.append(_vault_note(r, resources, locked))
        elif r["type"] == WORKSPACE:
            out.append(f"logs kept {i.get('retentionInDays')} days in Log Analytics workspace {i.get('workspaceName')}")
        elif r["type"] == DIAGNOSTICS:
            categories = ", ".join(str(x.get("category")) for x in i.get("logs", []))
            out.append(f"diagnostic setting {i.get('name')}: {categories} to the workspace through Azure Monitor (no workspace key)")
        elif r["type"] == ROLE_DEFINITION:
            out.append(f"custom role {i.get('roleName')}: {len(i['permissions'][0]['actions'])} action(s) at {i.get('scope')}")
        elif r["type"] == ROLE_ASSIGNMENT and "-grant-" in str(r["name"]):
            out.append(f"standing assignment {_short(str(r['name']), '')}: {i.get('principalType')} {i.get('principalId')}")
        elif r["type"] == ELIGIBILITY:
            out.append(f"PIM eligible {i.get('principalId')} (activation: MFA, justification, time-limited)")
        elif r["type"] == POLICY_ASSIGNMENT:
            out.append(f"Azure Policy at {i.get('scope')} (deny): {i.get('description')}")
        elif r["type"] == POLICY:
            rules = {x["id"]: x for x in i.get("rules", [])}
            exp = rules.get("Expiration_EndUser_Assignment", {}).get("maximumDuration")
            out.append(f"PIM policy {_short(str(r['name']), '')}: activation requires MFA, at most {exp}; admin assignments expire too")
    if any(r["type"] == BLOB_SERVICE for r in resources) and not any(r["type"] == BACKUP_VAULT for r in resources):
        out.append("backups: no Backup vault (backups off, or no weekly or monthly tier): nothing is kept beyond the daily tier")
    return sorted(out)


def _files_note(i: Mapping[str, Any]) -> str:
    """The files' data protection and daily tier: versioning, soft delete, point-in-time restore."""
    soft = (i.get("deleteRetentionPolicy") or {}).get("days")
    containers = (i.get("containerDeleteRetentionPolicy") or {}).get("days")
    restore = i.get("restorePolicy") or {}
    versioning = "on" if i.get("isVersioningEnabled") else "off"
    text = f"files: blob versioning {versioning}, deleted blobs kept {soft} days, deleted containers {containers} days"
    if restore.get("enabled"):
        feed = (i.get("changeFeed") or {}).get("retentionInDays")
        return text + f"; backups: point-in-time restore of the last {restore.get('days')} days (change feed kept {feed} days)"
    return text + "; no point-in-time restore (backups off)"


def _duration(rule: Mapping[str, Any]) -> str:
    """`P13W` -> `13 weeks` (an ISO 8601 duration of days, weeks or months)."""
    raw = str(((rule.get("lifecycles") or [{}])[0].get("deleteAfter") or {}).get("duration", ""))
    units = {"D": "days", "W": "weeks", "M": "months", "Y": "years"}
    return f"{raw[1:-1]} {units.get(raw[-1:], raw)}" if raw.startswith("P") and raw[1:-1].isdigit() else raw


def _vault_note(vault: Mapping[str, Any], resources: Sequence[Mapping[str, Any]], locked: set[str]) -> str:
    """The vault's tiers per data source, its immutability, soft delete, redundancy and guards."""
    i = vault["inputs"]
    props = i.get("properties") or {}
    security = props.get("securitySettings") or {}
    soft = security.get("softDeleteSettings") or {}
    storage = (props.get("storageSettings") or [{}])[0]
    tiers = []
    for p in resources:
        if p["type"] != BACKUP_POLICY:
            continue
        policy = p["inputs"].get("properties") or {}
        rules = {r.get("name"): r for r in policy.get("policyRules", [])}
        what = ", ".join(_DATASOURCE_WORDS.get(t, t) for t in policy.get("datasourceTypes", []))
        interval = ((rules.get("BackupWeekly") or {}).get("trigger") or {}).get("schedule", {}).get("repeatingTimeIntervals", ["?"])[0]
        tier = f"{what}: weekly ({interval}) kept {_duration(rules.get('Default') or {})}"
        if "Monthly" in rules:
            tier += f", the first of each month {_duration(rules['Monthly'])}"
        tiers.append(tier)
    guards = []
    if vault.get("options", {}).get("protect"):
        guards.append("Pulumi-protected, retained on delete")
    if str(vault["name"]) in locked:
        guards.append("CanNotDelete lock")
    return (
        f"Backup vault {i.get('vaultName')}: {'; '.join(sorted(tiers)) or 'no policy'}; "
        f"immutability {(security.get('immutabilitySettings') or {}).get('state')}, soft delete {soft.get('state')} ({soft.get('retentionDurationInDays')} days), "
        f"{storage.get('type')} storage" + (", " + ", ".join(guards) if guards else "")
    )
