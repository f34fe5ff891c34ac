"""`mxinfra package policy` takes only names that cannot widen a document (issue 19, F20): `--deployer
ENV=PRINCIPAL` needs an environment name (`*` would append to every log; a quote would end the Azure ABAC
condition's string) and a principal of the repository's cloud. Version labels are the publishers' (F9):
the bucket policy and the Azure conditions keep every other principal out of `versions/`."""

from __future__ import annotations

import json
import re

import pytest

from mxinfra.cli import main
from mxinfra.errors import UserError
from mxinfra.governance.policy import BLOB, azure_policies, s3_policies

ACCOUNT = "111122223333"
BUILD = f"arn:aws:iam::{ACCOUNT}:role/ci/build"
DEPLOY_ACC = f"arn:aws:iam::{ACCOUNT}:role/deploy-acc"
DEPLOY_PROD = f"arn:aws:iam::{ACCOUNT}:role/deploy-prod"
READER_OID, BUILD_OID, ACC_OID, PROD_OID = (f"0f8fad5b-d9cb-469f-a165-7086772895{i:02d}" for i in range(4))
S3 = "s3://orders-repo/governance"
AZ = "azblob://ordersrepo/governance/repo"


def findings(doc: dict) -> list:
    from parliament import analyze_policy_string

    return [(f.issue, f.detail) for f in analyze_policy_string(json.dumps(doc)).findings]


def policy(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    code = main(["package", "policy", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("repository", "deployer", "said"),
    [
        (S3, f"*={DEPLOY_ACC}", "--deployer '*'=...: environment name '*' must be at most 20 lowercase letters and digits"),
        (S3, f"acceptance/*={DEPLOY_ACC}", "--deployer 'acceptance/*'=...: environment name"),
        (S3, f"Acceptance={DEPLOY_ACC}", "--deployer 'Acceptance'=...: environment name"),
        (S3, f"acc?={DEPLOY_ACC}", "--deployer 'acc?'=...: environment name"),
        (AZ, f"acceptance' OR '1'='1={ACC_OID}", "--deployer \"acceptance' OR '1'\"=...: environment name"),
        (AZ, f"x')) OR ((true={ACC_OID}", "environment name \"x')) OR ((true\" must be at most 20 lowercase letters and digits"),
        (S3, "acceptance=*", "--deployer acceptance='*': expected an IAM role or user ARN"),
        (S3, f"acceptance=arn:aws:iam::{ACCOUNT}:role/*", "expected an IAM role or user ARN"),
        (S3, "acceptance=arn:aws:iam::*:role/deploy", "expected an IAM role or user ARN"),
        (S3, f'acceptance=arn:aws:iam::{ACCOUNT}:role/d"}},{{"Effect":"Allow', "expected an IAM role or user ARN"),
        (AZ, f"acceptance={ACC_OID}' OR '1'='1", "expected an Entra object id"),
        (AZ, "acceptance=deployers", "expected an Entra object id"),
    ],
)
def test_a_deployer_that_would_widen_the_policy_is_refused(repository, deployer, said, capsys) -> None:
    code, out, err = policy(capsys, "--repository", repository, "--deployer", deployer)
    assert code == 2 and out == "" and "Traceback" not in err
    assert said in err, err


def test_every_wrong_input_is_named_at_once(capsys) -> None:
    code, _, err = policy(
        capsys, "--repository", S3, "--reader", "*", "--publisher", f"arn:aws:iam::{ACCOUNT}:user/*", "--deployer", f"*={DEPLOY_ACC}"
    )
    assert code == 2
    assert "--reader '*'" in err and f"--publisher 'arn:aws:iam::{ACCOUNT}:user/*'" in err and "--deployer '*'" in err
    code, _, err = policy(capsys, "--repository", AZ, "--reader", "r-oid", "--publisher", BUILD)
    assert code == 2 and "--reader 'r-oid': expected an Entra object id" in err and f"--publisher '{BUILD}'" in err


@pytest.mark.parametrize(
    ("repository", "said"),
    [
        ("azblob://ordersrepo/gov'ernance/repo", "container \"gov'ernance\""),
        ("azblob://orders'repo/governance/repo", "account \"orders'repo\""),
        ("s3://*/governance", "bucket '*'"),
    ],
)
def test_store_names_that_would_widen_the_policy_are_refused(repository, said, capsys) -> None:
    code, out, err = policy(capsys, "--repository", repository, "--reader", READER_OID if "azblob" in repository else BUILD)
    assert code == 2 and out == "" and said in err, err


def test_the_renderers_refuse_them_too() -> None:
    with pytest.raises(UserError, match="environment name '\\*'"):
        s3_policies("orders-repo", "governance/", deployers={"*": [DEPLOY_ACC]})
    with pytest.raises(UserError, match="environment name"):
        azure_policies("ordersrepo", "governance", "repo/", deployers={"acc' OR '1'='1": [ACC_OID]})


def test_only_publishers_create_labels_on_s3(capsys) -> None:
    code, out, err = policy(
        capsys, "--repository", S3, "--reader", f"arn:aws:iam::{ACCOUNT}:role/ci-readonly", "--publisher", BUILD,
        "--deployer", f"acceptance={DEPLOY_ACC}", "--deployer", f"production={DEPLOY_PROD}",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert findings(doc["bucketPolicy"]) == []
    for name, identity in doc["identityPolicies"].items():
        assert findings(identity) == [], name
    deny = {st["Sid"]: st for st in doc["bucketPolicy"]["Statement"]}["OnlyPublishersLabel"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:PutObject"
    assert deny["Resource"] == "arn:aws:s3:::orders-repo/governance/versions/*"
    assert deny["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": [BUILD]}}

    def writes(policy_doc: dict) -> set[str]:
        return {
            r
            for st in policy_doc["Statement"]
            if "s3:PutObject" in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
            for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])
        }

    labels = "arn:aws:s3:::orders-repo/governance/versions/*"
    assert labels in writes(doc["identityPolicies"]["publisher"])
    assert labels not in writes(doc["identityPolicies"]["deployer:acceptance"]) | writes(doc["identityPolicies"]["deployer:production"])
    # nobody named as publisher: nobody labels
    none = s3_policies("orders-repo", "governance/", deployers={"acceptance": [DEPLOY_ACC]})
    deny = {st["Sid"]: st for st in none["bucketPolicy"]["Statement"]}["OnlyPublishersLabel"]
    assert "Condition" not in deny and findings(none["bucketPolicy"]) == []


def test_only_publishers_create_labels_on_azure(capsys) -> None:
    code, out, err = policy(
        capsys, "--repository", AZ, "--reader", READER_OID, "--publisher", BUILD_OID,
        "--deployer", f"acceptance={ACC_OID}", "--deployer", f"production={PROD_OID}",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    by = {(a["principalId"], a["role"]): a["condition"] for a in doc["roleAssignments"] if "condition" in a}
    assert "StringStartsWith 'repo/versions/'" in by[(BUILD_OID, "mxinfra repository appender")]
    for oid, env in ((ACC_OID, "acceptance"), (PROD_OID, "production")):
        appender = by[(oid, "mxinfra repository appender")]
        assert "versions/" not in appender and f"StringStartsWith 'repo/activity/{env}/'" in appender
    # every string literal in every condition is one the renderer meant: the names are data, never syntax
    meant = {f"{BLOB}/add/action", f"{BLOB}/write", "governance", "repo/activity/acceptance/head.json", "repo/activity/production/head.json"}
    meant |= {f"repo/{p}" for p in ("packages/", "index/", "versions/", "annotations/", "activity/acceptance/", "activity/production/")}
    for condition in by.values():
        assert condition.count("'") % 2 == 0 and set(re.findall(r"'([^']*)'", condition)) <= meant, condition


def test_the_stack_names_the_publishers(project, capsys) -> None:
    from scaffold import app_config

    cfg = app_config(**{"mxinfra:repository": S3})
    cfg["mxinfra:signing"] = {"publishers": [BUILD]}
    project.stack("production", cfg)
    code, out, err = policy(capsys, "-s", "production", "-C", str(project.path), "--deployer", f"production={DEPLOY_PROD}")
    assert code == 0, err
    doc = json.loads(out)
    deny = {st["Sid"]: st for st in doc["bucketPolicy"]["Statement"]}["OnlyPublishersLabel"]
    assert deny["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": [BUILD]}}
    assert doc["attachTo"]["publisher"] == [BUILD]


def test_a_mutable_key_in_the_stack_never_reaches_a_policy(project, capsys) -> None:
    from scaffold import app_config

    cfg = app_config(**{"mxinfra:repository": S3})
    cfg["mxinfra:signing"] = {"signers": {"production": "kms:arn:aws:kms:*:111122223333:key/*"}}
    project.stack("production", cfg)
    code, out, err = policy(capsys, "-s", "production", "-C", str(project.path), "--deployer", f"production={DEPLOY_PROD}")
    assert code == 2 and out == "" and "Traceback" not in err
    assert "mxinfra:signing.signers.production: 'kms:arn:aws:kms:*:111122223333:key/*' is a mutable reference" in err
