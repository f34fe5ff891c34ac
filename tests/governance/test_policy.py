"""The repository's least-privilege policies: S3 documents lint clean with parliament; Azure roles are
create-only and their assignments are confined to each role's paths."""

from __future__ import annotations

import json

import pytest

from mxinfra.cli import main
from mxinfra.governance.policy import BLOB, azure_policies, s3_policies

ACC_KEY = "kms:arn:aws:kms:eu-west-1:111122223333:key/0d6a7c1e-0000-4000-8000-000000000001"
PROD_KEY = "kms:arn:aws:kms:eu-west-1:111122223333:key/0d6a7c1e-0000-4000-8000-000000000002"
# Entra object ids of the reader, the publisher (build) and the acceptance deployer
READER_OID, BUILD_OID, ACC_OID = (f"0f8fad5b-d9cb-469f-a165-7086772895{i:02d}" for i in range(3))


def findings(doc: dict) -> list:
    from parliament import analyze_policy_string

    return [(f.issue, f.detail) for f in analyze_policy_string(json.dumps(doc)).findings]


@pytest.fixture
def rendered() -> dict:
    return s3_policies(
        "orders-repo",
        "governance/",
        readers=["arn:aws:iam::111122223333:role/ci"],
        publishers=["arn:aws:iam::111122223333:role/build"],
        deployers={"acceptance": ["arn:aws:iam::111122223333:role/deploy-acc"], "production": ["arn:aws:iam::111122223333:role/deploy-prod"]},
        signers={"acceptance": ACC_KEY, "production": PROD_KEY},
        trusted=[ACC_KEY],
    )


def test_every_s3_document_lints_clean(rendered) -> None:
    assert findings(rendered["bucketPolicy"]) == []
    assert set(rendered["identityPolicies"]) == {"reader", "publisher", "deployer:acceptance", "deployer:production"}
    for name, doc in rendered["identityPolicies"].items():
        assert findings(doc) == [], name


def test_s3_least_privilege(rendered) -> None:
    def writes(doc: dict) -> set[str]:
        out = set()
        for st in doc["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if "s3:PutObject" in actions:
                out |= set(st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])
        return out

    base = "arn:aws:s3:::orders-repo/governance/"
    pols = rendered["identityPolicies"]
    assert writes(pols["reader"]) == set()
    packages = {f"{base}{p}*" for p in ("packages/", "index/", "versions/", "annotations/")}
    assert writes(pols["publisher"]) == packages
    # a deployer pushes the package it deploys from a file, never a version label (issue 19, F9)
    assert writes(pols["deployer:acceptance"]) == packages - {f"{base}versions/*"} | {f"{base}activity/acceptance/*"}
    assert f"{base}activity/acceptance/*" not in writes(pols["deployer:production"])
    sign = [st for st in pols["deployer:acceptance"]["Statement"] if "kms:Sign" in st["Action"]]
    assert [st["Resource"] for st in sign] == [ACC_KEY[len("kms:") :]]
    assert not any("Delete" in a for d in pols.values() for st in d["Statement"] for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]]))
    deny = {st["Sid"]: st for st in rendered["bucketPolicy"]["Statement"]}
    assert deny["CreateOnlyNeverOverwrite"]["Condition"] == {"Bool": {"s3:ObjectCreationOperation": "true"}, "Null": {"s3:if-none-match": "true"}}
    assert deny["CreateOnlyNeverOverwrite"]["NotResource"] == f"{base}activity/*/head.json"
    assert "s3:DeleteObjectVersion" in deny["NobodyDeletes"]["Action"] and deny["NobodyDeletes"]["Principal"] == "*"


def test_azure_roles_are_create_only_and_path_confined() -> None:
    doc = azure_policies("ordersrepo", "governance", "repo/", readers=[READER_OID], publishers=[BUILD_OID], deployers={"acceptance": [ACC_OID]})
    actions = {d["properties"]["roleName"]: d["properties"]["permissions"][0]["dataActions"] for d in doc["roleDefinitions"]}
    assert actions["mxinfra repository reader"] == [f"{BLOB}/read"]
    assert actions["mxinfra repository appender"] == [f"{BLOB}/read", f"{BLOB}/add/action"]
    assert actions["mxinfra repository head writer"] == [f"{BLOB}/write"]
    assert not any("delete" in a for acts in actions.values() for a in acts)
    by = {(a["principalId"], a["role"]): a for a in doc["roleAssignments"]}
    acc = by[(ACC_OID, "mxinfra repository appender")]["condition"]
    assert "StringStartsWith 'repo/activity/acceptance/'" in acc and "activity/production" not in acc
    assert "'governance'" in acc and acc.count("(") == acc.count(")")
    assert "activity/" not in by[(BUILD_OID, "mxinfra repository appender")]["condition"]
    assert "StringEquals 'repo/activity/acceptance/head.json'" in by[(ACC_OID, "mxinfra repository head writer")]["condition"]
    assert (READER_OID, "mxinfra repository reader") in by and "condition" not in by[(READER_OID, "mxinfra repository reader")]


def test_policy_command(project, capsys) -> None:
    from scaffold import app_config

    cfg = app_config(**{"mxinfra:repository": "s3://orders-repo/governance"})
    cfg["mxinfra:signing"] = {"signers": {"production": PROD_KEY}, "trustedSigners": {"acceptance": [ACC_KEY]}}
    project.stack("production", cfg)
    assert main(["package", "policy", "-s", "production", "-C", str(project.path), "--deployer", "production=arn:aws:iam::111122223333:role/p"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert findings(doc["bucketPolicy"]) == [] and findings(doc["identityPolicies"]["deployer:production"]) == []
    assert main(["package", "policy", "--repository", "azblob://acct/cont/p", "--reader", READER_OID]) == 0
    assert "roleDefinitions" in json.loads(capsys.readouterr().out)
    assert main(["package", "policy", "--repository", "s3://b/p", "--deployer", "nonsense"]) == 2
    assert "ENV=PRINCIPAL" in capsys.readouterr().err


def test_the_no_overwrite_condition_keys_exist_for_put_object(rendered) -> None:
    """parliament does not report unknown condition keys, so check them against its IAM definition."""
    import os

    import parliament

    with open(os.path.join(os.path.dirname(parliament.__file__), "iam_definition.json")) as f:
        s3 = next(svc for svc in json.load(f) if svc["prefix"] == "s3")
    put = next(p for p in s3["privileges"] if p["privilege"] == "PutObject")
    known = {k for rt in put["resource_types"] for k in rt["condition_keys"]}
    deny = next(st for st in rendered["bucketPolicy"]["Statement"] if st["Sid"] == "CreateOnlyNeverOverwrite")
    used = {k for op in deny["Condition"].values() for k in op}
    assert used == {"s3:if-none-match", "s3:ObjectCreationOperation"} and used <= known
