"""Least-privilege access to a repository store: who may write packages, who may append to which
environment's log, and that nobody may overwrite or delete (pure: renders documents, no I/O).

S3: a bucket policy that denies, to every principal, any object creation without `If-None-Match: *`
(S3 evaluates `s3:if-none-match` on PutObject, CopyObject and CompleteMultipartUpload, flagged by
`s3:ObjectCreationOperation`, so multipart parts still upload) outside the advisory head hints, any
version label written by anyone but the publishers, any delete, and plain HTTP; plus one identity
policy per role. Readers (plan, preview, verify) only read; the publisher writes packages and their
version labels; the deployer of an environment writes packages but no label (the activity resource
pushes a package deployed from a file) and appends to `activity/<env>/` only, signing with its own key.

Azure Blob: one custom role per role whose data actions are `blobs/read` and `blobs/add/action`
(create a blob that does not exist: no overwrite, no delete), assigned with an ABAC condition that
limits `add` to the role's paths (`versions/` for publishers only; and `write` to its environment's head
hint).

Every name that reaches a document is checked first (issue 19, F20): an environment is an environment
name (`*` would open every log, a quote would end the ABAC condition's string), a principal is an IAM
role or user ARN (S3) or an Entra object id (Azure), and the bucket, account and container are valid
names of their cloud.

Neither policy stops an account administrator; S3 Object Lock (compliance mode) and a version-level
immutability policy on the container do: see the README's governance section.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import UserError
from .principals import AWS_PRINCIPAL_FORM, AZURE_PRINCIPAL_FORM, OBJECT_ID, principal_problem

LABEL_PATH = "versions/"
PACKAGE_PATHS = ("packages/", "index/", LABEL_PATH, "annotations/")
# What a deployer may create: a package it deploys from a file, never the label that names one.
DEPLOYER_PACKAGE_PATHS = tuple(p for p in PACKAGE_PATHS if p != LABEL_PATH)
BLOB = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"

_CALLER_ARN = re.compile(r"arn:(aws[a-z-]*):(?:iam|sts)::(\d{12}):(assumed-role|role|user)/(.+)")
_TOKEN_OID = re.compile(r"\boid[: ]([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\b")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_STORAGE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
_CONTAINER = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _kms_arn(ref: str) -> str | None:
    from .signing import kms_key_arn

    # Only a full key ARN reaches a Resource: an alias or a wildcard would grant more than one key.
    return kms_key_arn(ref)


def environment_problem(env: str) -> str | None:
    """Why `env` is not an environment name (the stack config's rule), or None if it is."""
    from ..environments import check_environment_name  # the one rule environment names follow everywhere

    try:
        check_environment_name(env)
    except ValueError as exc:
        return str(exc)
    return None


def input_problems(
    cloud: str, readers: Sequence[str], publishers: Sequence[str], deployers: Mapping[str, Sequence[str]]
) -> list[str]:
    """Every role input that cannot go into a policy, phrased with the command's flags."""
    problems = []
    for flag, principals in (("--reader", readers), ("--publisher", publishers)):
        for p in principals:
            if why := principal_problem(cloud, p):
                problems.append(f"{flag} {p!r}: {why}")
    for env, principals in deployers.items():
        if why := environment_problem(env):
            problems.append(f"--deployer {env!r}=...: {why}; one environment per --deployer, no wildcard")
        for p in principals:
            if why := principal_problem(cloud, p):
                problems.append(f"--deployer {env}={p!r}: {why}")
    return problems


def _check_inputs(
    cloud: str, readers: Sequence[str], publishers: Sequence[str], deployers: Mapping[str, Sequence[str]], names: Iterable[str]
) -> None:
    problems = [n for n in names if n] + input_problems(cloud, readers, publishers, deployers)
    if problems:
        raise UserError("cannot render the repository policy:\n" + "\n".join(f"  - {p}" for p in problems))


def _same_aws_principal(identity: str, principal: str) -> bool:
    """Whether the caller ARN STS reports (an assumed-role session, a user) is the IAM principal `principal`."""
    who, ref = _CALLER_ARN.fullmatch(identity), _CALLER_ARN.fullmatch(principal)
    if who is None or ref is None or ref.group(3) == "assumed-role":
        return False
    kind, rest = who.group(3), who.group(4)
    # a session ARN carries the role's name but not its path: arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION
    name = rest.split("/")[0] if kind == "assumed-role" else rest.split("/")[-1]
    kind = "role" if kind == "assumed-role" else kind
    return (who.group(1), who.group(2), kind, name) == (ref.group(1), ref.group(2), ref.group(3), ref.group(4).split("/")[-1])


def is_publisher(identity: str, publishers: Iterable[str]) -> bool:
    """Whether the store identity `identity` (an STS caller ARN, an Entra token principal, a local user) is
    one of the publisher principals (IAM ARNs, Entra object ids, or on file:// the user or e-mail)."""
    oid = _TOKEN_OID.search(identity)
    for p in publishers:
        if p == identity or _same_aws_principal(identity, p):
            return True
        if oid is not None and OBJECT_ID.fullmatch(p) and oid.group(1).lower() == p.lower():
            return True
        # file:// identities are '<os user> <git e-mail>': either one names the publisher
        if not p.startswith("arn:") and not OBJECT_ID.fullmatch(p) and p in identity.split():
            return True
    return False


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
    trusted-signer references (kms: ARNs get kms:GetPublicKey for readers). Only `publishers` may create
    version labels; UserError names every input that is not a valid name or principal."""
    deployers = dict(deployers or {})
    signers = dict(signers or {})
    bucket_problem = None if _BUCKET.fullmatch(bucket) and ".." not in bucket else (
        f"bucket {bucket!r}: expected an S3 bucket name (3 to 63 of a-z, 0-9, '.' and '-')"
    )
    _check_inputs("s3", readers, publishers, deployers, [bucket_problem or ""])
    objects = f"arn:aws:s3:::{bucket}/{prefix}"
    principals = sorted({*readers, *publishers, *(p for ps in deployers.values() for p in ps)})
    if not principals:
        raise UserError("a repository policy needs at least one principal (--reader, --publisher or --deployer)")
    # Deployers could squat a version label before the publisher (issue 19, F9): the store refuses it.
    only_publishers_label: dict[str, Any] = {
        "Sid": "OnlyPublishersLabel",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": f"{objects}{LABEL_PATH}*",
    }
    if publishers:
        only_publishers_label["Condition"] = {"ArnNotLike": {"aws:PrincipalArn": sorted(set(publishers))}}
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
            only_publishers_label,
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

    def write_packages(paths: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {
                "Sid": "WritePackages",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": [f"{objects}{p}*" for p in paths],
            }
        ]

    identity: dict[str, Any] = {"reader": {"Version": "2012-10-17", "Statement": read_statements()}}
    identity["publisher"] = {"Version": "2012-10-17", "Statement": read_statements() + write_packages(PACKAGE_PATHS)}
    for env in sorted(deployers):
        stmts = read_statements() + write_packages(DEPLOYER_PACKAGE_PATHS)
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
    (principals are Entra object ids; the assignable scope is the container). Only `publishers` may
    create version labels; UserError names every input that is not a valid name or principal."""
    deployers = dict(deployers or {})
    names = [
        "" if _STORAGE_ACCOUNT.fullmatch(account) else f"account {account!r}: expected a storage account name (3 to 24 of a-z and 0-9)",
        "" if _CONTAINER.fullmatch(container) and 3 <= len(container) <= 63
        else f"container {container!r}: expected a container name (3 to 63 of a-z, 0-9 and single '-' between them)",
        # the prefix is checked by the store's URL rule already; a quote must never reach a condition
        "" if "'" not in prefix else f"prefix {prefix!r}: a quote cannot be part of a path",
    ]
    _check_inputs("azblob", readers, publishers, deployers, names)
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
    deployer_packages = [prefix + p for p in DEPLOYER_PACKAGE_PATHS]
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
                 "condition": _path_condition(container, "add/action", [*deployer_packages, f"{prefix}activity/{env}/"]), "conditionVersion": "2.0"}
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
