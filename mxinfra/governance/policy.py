"""Least-privilege access to a repository store: who may write packages, who may append to which
environment's log, and that nobody may overwrite or delete (pure: renders documents, no I/O).

S3: a bucket policy that denies, to every principal, any object creation without `If-None-Match: *`
(S3 evaluates `s3:if-none-match` on PutObject, CopyObject and CompleteMultipartUpload, flagged by
`s3:ObjectCreationOperation`, so multipart parts still upload) outside the advisory head hints, any
delete, and plain HTTP; plus one identity policy per role. Readers (plan, preview, verify) only read;
the publisher writes packages; the deployer of an environment writes packages (the activity resource
pushes a package deployed from a file) and appends to `activity/<env>/` only, signing with its own key.

Azure Blob: one custom role per role whose data actions are `blobs/read` and `blobs/add/action`
(create a blob that does not exist: no overwrite, no delete), assigned with an ABAC condition that
limits `add` to the role's paths (and `write` to its environment's head hint).

Neither policy stops an account administrator; S3 Object Lock (compliance mode) and a version-level
immutability policy on the container do: see the README's governance section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UserError

PACKAGE_PATHS = ("packages/", "index/", "versions/", "annotations/")
BLOB = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"


def _kms_arn(ref: str) -> str | None:
    key = ref[len("kms:") :] if ref.startswith("kms:") else ""
    return key if key.startswith("arn:aws:kms:") and ":key/" in key else None


def s3_policies(
    bucket: str,
    prefix: str,
    *,
    readers: Sequence[str] = (),
    publishers: Sequence[str] = (),
    deployers: Mapping[str, Sequence[str]] | None = None,
    signers: Mapping[str, str] | None = None,
    trusted: Sequence[str] = (),
) -> dict[str, Any]:
    """{"bucketPolicy": ..., "identityPolicies": {role: policy}} for `s3://bucket/prefix`.

    `deployers` maps an environment to the principals (role ARNs) that deploy it; `signers` maps it to
    its key reference (a kms: ARN gets kms:Sign for that environment's deployers only); `trusted` are
    trusted-signer references (kms: ARNs get kms:GetPublicKey for readers)."""
    deployers = dict(deployers or {})
    signers = dict(signers or {})
    objects = f"arn:aws:s3:::{bucket}/{prefix}"
    principals = sorted({*readers, *publishers, *(p for ps in deployers.values() for p in ps)})
    if not principals:
        raise UserError("a repository policy needs at least one principal (--reader, --publisher or --deployer)")
    bucket_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CreateOnlyNeverOverwrite",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                # the head hints are the one object ever rewritten; they are advisory, never trusted
                "NotResource": f"{objects}activity/*/head.json",
                "Condition": {"Bool": {"s3:ObjectCreationOperation": "true"}, "Null": {"s3:if-none-match": "true"}},
            },
            {
                "Sid": "NobodyDeletes",
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"],
                "Resource": f"{objects}*",
            },
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }

    def read_statements() -> list[dict[str, Any]]:
        stmts: list[dict[str, Any]] = [
            {"Sid": "ReadRepository", "Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{objects}*"},
            {
                "Sid": "ListRepository",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}},
            },
        ]
        keys = sorted({a for r in trusted if (a := _kms_arn(r))} | {a for r in signers.values() if (a := _kms_arn(r))})
        if keys:
            stmts.append({"Sid": "TrustedSignerKeys", "Effect": "Allow", "Action": "kms:GetPublicKey", "Resource": keys})
        return stmts

    def write_packages() -> list[dict[str, Any]]:
        return [
            {
                "Sid": "WritePackages",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": [f"{objects}{p}*" for p in PACKAGE_PATHS],
            }
        ]

    identity: dict[str, Any] = {"reader": {"Version": "2012-10-17", "Statement": read_statements()}}
    identity["publisher"] = {"Version": "2012-10-17", "Statement": read_statements() + write_packages()}
    for env in sorted(deployers):
        stmts = read_statements() + write_packages()
        stmts.append({"Sid": "AppendToItsLog", "Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{objects}activity/{env}/*"})
        key = _kms_arn(signers.get(env, ""))
        if key:
            stmts.append({"Sid": "SignItsRecords", "Effect": "Allow", "Action": ["kms:Sign", "kms:GetPublicKey"], "Resource": key})
        identity[f"deployer:{env}"] = {"Version": "2012-10-17", "Statement": stmts}
    assignments = {
        "reader": list(readers),
        "publisher": list(publishers),
        **{f"deployer:{env}": list(ps) for env, ps in deployers.items()},
    }
    return {"bucketPolicy": bucket_policy, "identityPolicies": identity, "attachTo": assignments}


def _path_condition(container: str, action: str, paths: Sequence[str], *, exact: bool = False) -> str:
    op = "StringEquals" if exact else "StringStartsWith"
    allowed = " OR ".join(f"@Resource[{BLOB}:path] {op} '{p}'" for p in paths)
    return (
        f"((!(ActionMatches{{'{BLOB}/{action}'}})) OR "
        f"(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals '{container}' AND ({allowed})))"
    )


def azure_policies(
    account: str,
    container: str,
    prefix: str,
    *,
    readers: Sequence[str] = (),
    publishers: Sequence[str] = (),
    deployers: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """{"roleDefinitions": [...], "roleAssignments": [...]} for `azblob://account/container/prefix`
    (principals are Entra object ids; the assignable scope is the container)."""
    deployers = dict(deployers or {})
    scope = (
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Storage/"
        f"storageAccounts/{account}/blobServices/default/containers/{container}"
    )
    read = f"{BLOB}/read"
    add = f"{BLOB}/add/action"
    write = f"{BLOB}/write"
    roles = [
        {"roleName": "mxinfra repository reader", "dataActions": [read]},
        {"roleName": "mxinfra repository appender", "dataActions": [read, add]},
        {"roleName": "mxinfra repository head writer", "dataActions": [write]},
    ]
    definitions = [
        {
            "properties": {
                "roleName": r["roleName"],
                "description": "mxinfra repository: " + ("read only" if len(r["dataActions"]) == 1 and r["dataActions"][0] == read else "create-only writes, never overwrite or delete" if add in r["dataActions"] else "rewrite the advisory head hint of one log"),
                "type": "CustomRole",
                "assignableScopes": [scope],
                "permissions": [{"actions": [], "notActions": [], "dataActions": r["dataActions"], "notDataActions": []}],
            }
        }
        for r in roles
    ]
    packages = [prefix + p for p in PACKAGE_PATHS]
    assignments: list[dict[str, Any]] = []
    for principal in readers:
        assignments.append({"role": "mxinfra repository reader", "principalId": principal, "scope": scope})
    for principal in publishers:
        assignments.append(
            {"role": "mxinfra repository appender", "principalId": principal, "scope": scope,
             "condition": _path_condition(container, "add/action", packages), "conditionVersion": "2.0"}
        )
    for env in sorted(deployers):
        for principal in deployers[env]:
            assignments.append(
                {"role": "mxinfra repository appender", "principalId": principal, "scope": scope,
                 "condition": _path_condition(container, "add/action", [*packages, f"{prefix}activity/{env}/"]), "conditionVersion": "2.0"}
            )
            assignments.append(
                {"role": "mxinfra repository head writer", "principalId": principal, "scope": scope,
                 "condition": _path_condition(container, "write", [f"{prefix}activity/{env}/head.json"], exact=True), "conditionVersion": "2.0"}
            )
    return {
        "roleDefinitions": definitions,
        "roleAssignments": assignments,
        "keyVault": "deployers of an environment: 'Key Vault Crypto User' on its signing key only (keys/sign); "
        "readers: 'Key Vault Crypto Service Encryption User' or keys/read on trusted keys named by azurekv:",
    }
