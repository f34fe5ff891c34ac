"""`mxinfra plan` on the AWS example stacks: rendered policies lint clean, no secrets, bad config exits 2."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mxinfra.cli import main
from mxinfra.testing import engine_secrets

from awshelpers import ACCOUNT, ADMIN_PASSWORD, ENCRYPTION_KEY, LICENSE_KEY, ROOT, config, lint

STACKS = ("aws-test", "aws-acceptance", "aws-production")
# Decoded payloads of the example stacks' `secure:` placeholders: they must never be printed.
PLACEHOLDERS = ("AdminPasswordPlaceholder", "LicenseKeyPlaceholder", "ProductionKeyPlaceholder", "AcceptanceKeyPlaceholder")


@pytest.mark.parametrize("stack", STACKS)
def test_example_stack_plans_and_renders_lint_clean(stack, capsys, tmp_path, example_project):
    env = stack.removeprefix("aws-")
    rc = main(["plan", "-s", stack, "-C", str(example_project), "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "note: Fargate task size" in out.out
    files = sorted((tmp_path / "aws" / env).glob("*.json"))
    names = {f.name for f in files}
    assert {"task-role.trust.json", "task-role-policy.json", "execution-role.trust.json", "execution-role-policy.json", "files-policy.json", "role-deploy.trust.json", "role-deploy-policy.json"} <= names
    for f in files:
        doc = json.loads(f.read_text())
        trust_for = None
        if f.name.endswith(".trust.json"):
            kind = f.name.removesuffix(".trust.json").removeprefix("role-").removesuffix("-role")
            trust_for = f"arn:aws:iam::{ACCOUNT}:role/mxinfra/orders-{env}-{kind}"
        assert lint(doc, trust_for=trust_for) == [], f.name
    written = out.out + out.err + "".join(f.read_text() for f in files)
    for p in PLACEHOLDERS:
        assert p not in written


def test_production_roles_in_rendered_files(capsys, tmp_path, example_project):
    assert main(["plan", "-s", "aws-production", "-C", str(example_project), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # the example production runs 2 instances: a leader and a follower service, no leader warning
    assert "leader + 1 follower(s)" in out and "verify the image's leader election" not in out
    assert out.count("note: Fargate task size") == 1
    d = tmp_path / "aws" / "production"
    prefix = f"arn:aws:ecs:eu-west-1:{ACCOUNT}"
    deploy = {s["Sid"]: s["Resource"] for s in json.loads((d / "role-deploy-policy.json").read_text())["Statement"]}
    services = [f"{prefix}:service/orders-aws-production-cluster/orders-production{x}" for x in ("", "-follower")]
    assert deploy["UpdateService"] == services
    assert deploy["RegisterTaskDefinition"] == [f"{prefix}:task-definition/orders-production{x}:*" for x in ("", "-follower")]
    monitor = {s["Sid"]: s["Resource"] for s in json.loads((d / "role-monitor-policy.json").read_text())["Statement"]}
    assert monitor["ServiceState"] == services
    for perm in ("deploy", "monitor", "backups", "manage"):
        stmt = json.loads((d / f"role-{perm}.trust.json").read_text())["Statement"][0]
        assert stmt["Condition"]["Bool"] == {"aws:MultiFactorAuthPresent": "true"}
        assert stmt["Condition"]["NumericLessThanEquals"] == {"aws:MultiFactorAuthAge": "14400"}


def test_plan_json(capsys, example_project):
    rc = main(["plan", "-s", "aws-production", "-C", str(example_project), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    doc = json.loads(out.out)
    db = next(r for r in doc["resources"] if r["name"] == "orders-production-db")
    assert db["options"] == {"protect": True, "retainOnDelete": True}


def test_known_secret_values_never_printed(project, capsys, tmp_path):
    # Known plaintext values behind the secret keys, as the engine would decrypt them.
    project.stack("aws-production", config("production"))
    with engine_secrets("mxinfra:environments"):
        rc = main(["plan", "-s", "aws-production", "-C", str(project.path), "--out", str(tmp_path)])
        out = capsys.readouterr()
    assert rc == 0, out.err
    written = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert written
    for text in (out.out, out.err, written):
        for value in (ADMIN_PASSWORD, LICENSE_KEY, ENCRYPTION_KEY):
            assert value not in text


def bad(project, capsys, cfg):
    for body in cfg["mxinfra:environments"].values():
        for key in ("adminPassword", "license", "secretConstants"):
            body.pop(key, None)
    project.stack("aws-production", cfg)
    rc = main(["plan", "-s", "aws-production", "-C", str(project.path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_missing_subnets(project, capsys):
    cfg = config("production")
    del cfg["mxinfra:aws"]["subnetIds"]
    rc, err = bad(project, capsys, cfg)
    assert rc == 2 and "mxinfra:aws.subnetIds: required key is missing" in err


def test_one_subnet_is_not_enough(project, capsys):
    rc, err = bad(project, capsys, config("production", aws={"subnetIds": ["subnet-0a1b2c3d4e5f60001"]}))
    assert rc == 2 and "mxinfra:aws.subnetIds" in err


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_public_ingress_on_production_needs_opt_in(project, capsys, cidr):
    rc, err = bad(project, capsys, config("production", aws={"ingressCidrs": ["10.0.0.0/8", cidr]}))
    assert rc == 2 and "mxinfra:aws.ingressCidrs[1]" in err and "allowPublicIngress" in err
    # the same on test is allowed
    rc, _ = bad(project, capsys, config("test", aws={"ingressCidrs": [cidr]}))
    assert rc == 0


def test_invalid_principal(project, capsys):
    access = [
        {"principal": "arn:aws:iam::123456789012:role/Ok", "environments": ["production"], "permissions": ["deploy"]},
        {"principal": "group:release-managers", "environments": ["production"], "permissions": ["deploy"]},
        {"principal": "arn:aws:iam::123456789012:group/Ops", "environments": ["production"], "permissions": ["monitor"]},
    ]
    rc, err = bad(project, capsys, config("production", access=access))
    assert rc == 2 and "mxinfra:access[1].principal" in err and "mxinfra:access[2].principal" in err
    assert "mxinfra:access[0]" not in err


def test_impossible_fargate_size(project, capsys):
    rc, err = bad(project, capsys, config("production", env={"memory": 131072}))
    assert rc == 2 and "mxinfra:environments.production.memory" in err and "122880" in err


def test_missing_region_and_bad_values(project, capsys):
    cfg = config("test", aws={"accountId": "1234", "ingressCidrs": ["10.0.0.300/8"], "hostnames": {"prod": "x.example.com"}})
    del cfg["aws:region"]
    rc, err = bad(project, capsys, cfg)
    assert rc == 2
    assert "mxinfra:aws.accountId" in err and "mxinfra:aws.ingressCidrs" in err


def test_region_and_hostnames_checked(project, capsys):
    cfg = config("test", aws={"hostnames": {"prod": "x.example.com"}})
    del cfg["aws:region"]
    rc, err = bad(project, capsys, cfg)
    assert rc == 2 and "aws:region: required key is missing" in err and "mxinfra:aws.hostnames.prod" in err


def test_importing_the_target_does_not_import_pulumi_aws():
    code = "import sys, mxinfra_aws; from mxinfra.cli import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\nprint('HEAVY', sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_aws', 'boto3')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "HEAVY []" in out, out


@pytest.mark.parametrize(
    "cluster",
    [
        "arn:aws:ecs:eu-west-1:123456789012:foo",  # no cluster/ part: used to crash with an IndexError
        "arn:aws:ecs:eu-west-1:123456789012:cluster/",
        "arn:aws:ecs:eu-west-1:123456789012:cluster/a/b",
        "platform\n",
        "plat form",
        "x" * 256,
    ],
)
def test_unparseable_cluster(project, capsys, cluster):
    rc, err = bad(project, capsys, config("test", aws={"cluster": cluster}))
    assert rc == 2 and "mxinfra:aws.cluster" in err


@pytest.mark.parametrize("cluster", ["arn:aws:ecs:eu-west-1:210987654321:cluster/platform", "arn:aws:ecs:us-east-1:123456789012:cluster/platform"])
def test_cluster_in_another_account_or_region(project, capsys, cluster):
    rc, err = bad(project, capsys, config("test", aws={"cluster": cluster}))
    assert rc == 2 and "mxinfra:aws.cluster" in err


@pytest.mark.parametrize("cluster", ["platform", "Platform_2-x", f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/platform"])
def test_valid_cluster(project, capsys, cluster):
    rc, err = bad(project, capsys, config("test", aws={"cluster": cluster}))
    assert rc == 0, err


@pytest.mark.parametrize("seconds,ok", [(900, False), (3599, False), (3600, True), (43200, True)])
def test_iam_session_range(project, capsys, seconds, ok):
    access = [{"principal": f"arn:aws:iam::{ACCOUNT}:role/Ops", "environments": ["test"], "permissions": ["monitor"], "maxSessionSeconds": seconds}]
    rc, err = bad(project, capsys, config("test", access=access))
    if ok:
        assert rc == 0, err
    else:
        assert rc == 2 and "mxinfra:access[0].maxSessionSeconds" in err and "AWS roles allow 3600 to 43200 seconds" in err


@pytest.mark.parametrize("account", ["١٢٣٤٥٦٧٨٩٠١٢", "123456789012\n", "12345678901２"])
def test_account_id_only_ascii_digits(project, capsys, account):
    rc, err = bad(project, capsys, config("test", aws={"accountId": account}))
    assert rc == 2 and "mxinfra:aws.accountId" in err


@pytest.mark.parametrize(
    "principal",
    ["١٢٣٤٥٦٧٨٩٠١٢", "123456789012\n", f"arn:aws:iam::{ACCOUNT}:role/Ops\n", f"arn:aws:iam::{ACCOUNT}:role/Opé", "arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:role/Ops"],
)
def test_principal_only_iam_characters(project, capsys, principal):
    access = [{"principal": principal, "environments": ["test"], "permissions": ["monitor"]}]
    rc, err = bad(project, capsys, config("test", access=access))
    assert rc == 2 and "mxinfra:access[0].principal" in err


@pytest.mark.parametrize("region", ["eu-west", "EU-WEST-1", "euwest1", "eu-west-1\n", "eu-west-١"])
def test_region_must_look_like_a_region(project, capsys, region):
    cfg = config("test")
    cfg["aws:region"] = region
    rc, err = bad(project, capsys, cfg)
    assert rc == 2 and "aws:region" in err


def test_regions_accepted(project, capsys):
    for region in ("us-gov-west-1", "ap-southeast-2", "cn-north-1"):
        cfg = config("test", aws={"certificateArn": f"arn:aws:acm:{region}:{ACCOUNT}:certificate/1111"})
        cfg["aws:region"] = region
        rc, err = bad(project, capsys, cfg)
        assert rc == 0, err


def test_storage_ceiling_below_allocated(project, capsys):
    rc, err = bad(project, capsys, config("test", aws={"database": {"allocatedStorageGb": 50, "maxAllocatedStorageGb": 30}}))
    assert rc == 2 and "mxinfra:aws.database.maxAllocatedStorageGb" in err
    rc, err = bad(project, capsys, config("test", aws={"database": {"allocatedStorageGb": 50, "maxAllocatedStorageGb": 50}}))
    assert rc == 0, err


@pytest.mark.parametrize(
    "cidr,public",
    [("10.0.0.0/8", True), ("64.0.0.0/2", True), ("2000::/3", True), ("2000::/9", True), ("2001:db8::/32", True), ("10.0.0.0/9", False), ("198.51.100.0/24", False), ("2001:db8::/33", False)],
)
def test_wide_ingress_on_production_counts_as_public(project, capsys, cidr, public):
    rc, err = bad(project, capsys, config("production", aws={"ingressCidrs": ["198.51.100.0/24", cidr]}))
    if public:
        assert rc == 2 and "mxinfra:aws.ingressCidrs[1]" in err and "allowPublicIngress" in err
        rc, err = bad(project, capsys, config("production", aws={"ingressCidrs": [cidr], "allowPublicIngress": True}))
        assert rc == 0, err
    else:
        assert rc == 0, err
    # not on test
    rc, _ = bad(project, capsys, config("test", aws={"ingressCidrs": [cidr]}))
    assert rc == 0
