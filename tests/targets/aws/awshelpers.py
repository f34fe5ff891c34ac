"""Helpers of the AWS target's tests: stack configs, parliament linting and a mock run with cloud outputs."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi

from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.mockrun import Sealed, run_mocked
from mxinfra.testing import Resources, walk_inputs
from scaffold import UNGATED

ROOT = Path(__file__).resolve().parents[3]
MDA = ROOT / "examples" / "orders" / "orders-1.4.2.mda"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
ADMIN_PASSWORD = "Known-Admin-Pw-7f3a9c"
LICENSE_KEY = "Known-Licence-Key-51e2"
ENCRYPTION_KEY = "Known-Encryption-Key-0d4b"
SECRET_VALUES = (ADMIN_PASSWORD, LICENSE_KEY, ENCRYPTION_KEY)

DIGEST = "sha256:" + "5e" * 32
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/orders:1.4.2@{DIGEST}"
VPC_CIDR = "10.0.0.0/16"
PRODUCTION_VPC_TAGS = {"mxinfra:tier": "production"}

AWS_BLOCK: dict[str, Any] = {
    "accountId": ACCOUNT,
    "vpcId": "vpc-0a1b2c3d4e5f60718",
    "vpcCidr": VPC_CIDR,
    "subnetIds": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
    "certificateArn": f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/11111111-2222-3333-4444-555555555555",
    "image": IMAGE,
    "ingressCidrs": ["198.51.100.0/24"],
}


def config(role: str = "production", *, aws: dict[str, Any] | None = None, access: list[dict[str, Any]] | None = None, env: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stack config of the example app with one environment named after `role`."""
    body: dict[str, Any] = {"role": role, "memory": 2048, "adminPassword": ADMIN_PASSWORD, "constants": {"Orders.PageSize": 20}}
    if role == "production":
        body.update(instances=2, license={"id": "lic-1", "key": LICENSE_KEY}, secretConstants={"Encryption.EncryptionKey": ENCRYPTION_KEY})
    body.update(env or {})
    if role == "production" and "requirePromotionFrom" not in body:
        body.setdefault("ungated", dict(UNGATED))  # no acceptance deploy recorded here: said explicitly (issue 19, F6)
    block = copy.deepcopy(AWS_BLOCK)
    if role == "production":
        block["vpcTags"] = dict(PRODUCTION_VPC_TAGS)
    block.update(aws or {})
    return {
        "aws:region": REGION,
        "mxinfra:app": {"name": "orders", "package": str(MDA), "target": "aws"},
        "mxinfra:environments": {role: body},
        "mxinfra:access": access
        if access is not None
        else [
            {"principal": f"arn:aws:iam::{ACCOUNT}:role/ReleaseManagers", "environments": [role], "permissions": ["deploy", "monitor", "backups"]},
            {"principal": "210987654321", "environments": [role], "permissions": ["monitor", "alerts"]},
            {"principal": f"arn:aws:iam::{ACCOUNT}:user/alice", "environments": [role], "permissions": ["manage", "api"], "allowOnProduction": True},
        ],
        "mxinfra:aws": block,
    }


def deployment(cfg: dict[str, Any], stack: str = "aws-production") -> Any:
    """The validated deployment of `cfg` (environments marked secret, as the engine would)."""
    return prepare(RawConfig(cfg, frozenset({"mxinfra:environments"})), project="orders", stack=stack, base_dir=ROOT)


def lint(doc: dict[str, Any], *, trust_for: str | None = None, community: bool = False) -> list[tuple[str, Any]]:
    """Parliament's findings on `doc`.

    Trust policies have no Resource element (they are the role's own resource policy), which parliament,
    built for identity policies, reports as MALFORMED; they are linted with the role's ARN as Resource,
    which is exactly what they govern. Nothing else is adjusted. `community` adds parliament's community
    auditors.
    """
    from parliament import analyze_policy_string

    if trust_for is not None:
        doc = copy.deepcopy(doc)
        for stmt in doc["Statement"]:
            assert "Resource" not in stmt
            stmt["Resource"] = trust_for
    policy = analyze_policy_string(json.dumps(doc), include_community_auditors=community)
    return [(f.issue, f.detail) for f in policy.findings]


walk = walk_inputs  # every key and leaf of a structure of inputs, secrets unwrapped


# --- a mock run as `pulumi up` would see it: the cloud's outputs are known --------------------------

FAKE_RDS_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-0f9e8d7c-1111-2222-3333-444455556666-AbCdEf"
FAKE_RUNTIME_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:mxinfra/orders/production/runtime-Xy12Zq"
FAKE_ENDPOINT = "orders-production-db.c9akciq32.eu-west-1.rds.amazonaws.com:5432"


def cloud_outputs(args: Any) -> dict[str, Any]:
    """What AWS would return for the outputs the program uses."""
    state: dict[str, Any] = {"arn": f"arn:aws:mock:{REGION}:{ACCOUNT}:{args.typ.split(':')[-1].lower()}/{args.name}"}
    state.update({k: v for k, v in args.inputs.items() if k == "arn"})
    if args.typ == "aws:rds/instance:Instance":
        state.update(endpoint=FAKE_ENDPOINT, masterUserSecrets=[{"secretArn": FAKE_RDS_SECRET, "secretStatus": "active"}])
    if args.typ == "aws:secretsmanager/secret:Secret":
        state["arn"] = FAKE_RUNTIME_SECRET
    if args.typ == "aws:lb/loadBalancer:LoadBalancer":
        state["dnsName"] = "orders-production-alb-123.eu-west-1.elb.amazonaws.com"
    if args.typ == "random:index/randomPassword:RandomPassword":
        state["result"] = "Generated-Pw-Should-Stay-Secret"
    if args.typ == "random:index/randomId:RandomId":
        state["hex"] = FAKE_SUFFIX
    if args.typ == "aws:secretsmanager/secretVersion:SecretVersion":
        # A new version for a new value: its id depends on the value, as Secrets Manager's does.
        state["versionId"] = secret_version_id(args.inputs.get("secretString"))
    return state


FAKE_SUFFIX = "0a1b2c3d"


def secret_version_id(secret_string: Any) -> str:
    """The version id the mock gives a SecretVersion for `secret_string` (a hash of it)."""
    if isinstance(secret_string, Sealed):
        secret_string = secret_string.value
    return hashlib.sha256(json.dumps(secret_string, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _plain(value: Any) -> Any:
    if isinstance(value, Sealed):
        return {"__secret": _plain(value.value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def run_as_update(program: Callable[[], Any], stack: str = "aws-production") -> dict[str, tuple[str, dict[str, Any]]]:
    """Run `program` as an update (not a preview) with cloud outputs filled in; name -> (type, inputs)."""
    run = run_mocked(program, project="orders", stack=stack, preview=False, outputs=cloud_outputs)
    return {r.name: (r.type, _plain(r.inputs)) for r in run.registrations}


__all__ = ["Resources", "pulumi"]
