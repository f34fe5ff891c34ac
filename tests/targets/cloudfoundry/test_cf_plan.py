"""`mxinfra plan` on the Cloud Foundry example stacks: they plan, render manifest.yml, keep secrets, and bad
config exits 2 with the key path."""

from __future__ import annotations

import pytest

from mxinfra.testing import engine_secrets
import yaml

from mxinfra.cli import main

from cfhelpers import BUILDPACK_URL, SECRET_VALUES, config

PLACEHOLDERS = ("AdminPasswordPlaceholder", "LicenseKeyPlaceholder", "ProductionKeyPlaceholder", "AcceptanceKeyPlaceholder")


@pytest.mark.parametrize("stack", ["cf-test", "cf-acceptance", "cf-production"])
def test_example_stack_plans_and_renders(stack, capsys, tmp_path, cf_project):
    env = stack.removeprefix("cf-")
    rc = main(["plan", "-s", stack, "-C", str(cf_project), "--out", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "note: next deploy:" in out.out
    manifest = tmp_path / "cloudfoundry" / env / "manifest.yml"
    text = manifest.read_text()
    for p in PLACEHOLDERS:
        assert p not in out.out + out.err + text
    app = yaml.safe_load(text)["applications"][0]
    assert app["name"] == f"orders-{env}"
    assert app["buildpacks"] == [BUILDPACK_URL] and app["stack"] == "cflinuxfs4"  # Cloud Foundry gets the URL, mxinfra checks the digest
    assert app["path"] == "examples/orders/orders-1.4.2.mda"  # project-relative
    assert app["env"]["ADMIN_PASSWORD"] == "((ADMIN_PASSWORD))"
    assert app["health-check-type"] == "http"


def test_production_is_promotion_gated(capsys, tmp_path):
    from scaffold import copy_example

    dest = copy_example(tmp_path / "fresh")
    rc = main(["plan", "-s", "cf-production", "-C", str(dest)])
    err = capsys.readouterr().err
    assert rc == 2 and "acceptance" in err and "Traceback" not in err


def test_production_manifest_matches_the_stack(capsys, tmp_path, cf_project, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one note per line
    assert main(["plan", "-s", "cf-production", "-C", str(cf_project), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    app = yaml.safe_load((tmp_path / "cloudfoundry" / "production" / "manifest.yml").read_text())["applications"][0]
    # Written from the stack file (Pulumi.cf-production.yaml), not from the code under test.
    assert app["instances"] == 2 and app["memory"] == "4096M" and app["disk_quota"] == "2048M" and app["timeout"] == 900
    assert app["routes"] == [{"route": "orders.cfapps.eu10.hana.ondemand.com"}]
    assert app["services"] == ["orders-production-database", "orders-production-files"]
    assert app["env"] == {
        "ADMIN_PASSWORD": "((ADMIN_PASSWORD))",
        "CONSTANTS": '{"Orders.ApiUrl":"https://api.example.com","Orders.PageSize":50}',
        "LICENSE_ID": "00000000-1111-2222-3333-444444444444",
        "LICENSE_KEY": "((LICENSE_KEY))",
        "MEMORY_LIMIT": "4096M",
        "MXRUNTIME_DTAPMode": "P",
        "MX_Encryption_EncryptionKey": "((MX_Encryption_EncryptionKey))",
        "SCHEDULED_EVENTS": "ALL",
    }
    assert "service orders-production-database: postgresql-db/standard, protected (retained on destroy)" in out
    assert "space role" not in out  # production roles are never standing
    assert "mxinfra access grant" in out
    # its own space, created by mxinfra without SSH, and no SSH into the app
    assert "space orders-production created by mxinfra, SSH disallowed, protected (retained on destroy)" in out
    assert "app orders-production: SSH disabled (the app feature)" in out
    # the example's file:// repository is out of the expiry app's reach: the plan says who expires grants
    assert "no expiry app (grantExpiry)" in out and "no grantExpiry: production grants are removed only when someone runs" in out


def test_plan_json_protects_production_data(capsys, cf_project):
    import json

    assert main(["plan", "-s", "cf-production", "-C", str(cf_project), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in doc["resources"]}
    for name in ("orders-production-database", "orders-production-files"):
        assert by_name[name]["options"] == {"protect": True, "retainOnDelete": True}
    assert "options" not in by_name["orders-production-app"]
    assert by_name["orders-production-app"]["inputs"]["secretEnvironment"] == "[secret]"


def test_known_secret_values_never_printed(project, capsys, tmp_path):
    project.stack("cf-production", config("production"))
    with engine_secrets("mxinfra:environments"):
        rc = main(["plan", "-s", "cf-production", "-C", str(project.path), "--out", str(tmp_path)])
        out = capsys.readouterr()
        rc_json = main(["plan", "-s", "cf-production", "-C", str(project.path), "--json"])
        out_json = capsys.readouterr()
    assert rc == 0 and rc_json == 0, out.err
    written = "".join(p.read_text() for p in tmp_path.rglob("*.yml"))
    assert "((LICENSE_KEY))" in written
    for text in (out.out, out.err, written, out_json.out):
        for value in SECRET_VALUES:
            assert value not in text


def bad(project, capsys, cfg):
    for body in cfg["mxinfra:environments"].values():
        for key in ("adminPassword", "license", "secretConstants"):
            body.pop(key, None)
    project.stack("cf-production", cfg)
    rc = main(["plan", "-s", "cf-production", "-C", str(project.path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_valid_config_plans(project, capsys):
    rc, err = bad(project, capsys, config("production"))
    assert rc == 0, err


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/mendix/cf-mendix-buildpack",
        "https://github.com/mendix/cf-mendix-buildpack.git",
        "https://github.com/mendix/cf-mendix-buildpack#master",
        "https://github.com/mendix/cf-mendix-buildpack/archive/refs/heads/master.zip",
        "https://github.com/mendix/cf-mendix-buildpack/releases/latest/download/cf-mendix-buildpack.zip",
        "http://github.com/mendix/cf-mendix-buildpack/releases/download/v5.0.20/cf-mendix-buildpack.zip",
        "https://example.com/buildpacks/cf-mendix-buildpack.zip",
    ],
)
def test_buildpack_must_be_a_pinned_release(project, capsys, url):
    rc, err = bad(project, capsys, config("test", cf={"buildpack": url}))
    assert rc == 2 and "mxinfra:cloudfoundry.buildpack" in err


def test_unknown_permission_mapping(project, capsys):
    rc, err = bad(project, capsys, config("test", cf={"deployRole": "space_admin"}))
    assert rc == 2 and "mxinfra:cloudfoundry.deployRole" in err


@pytest.mark.parametrize("perm", ["backups", "alerts", "api"])
def test_permissions_without_a_space_role_are_refused(project, capsys, perm):
    access = [{"principal": "user:corp-idp/alice@example.com", "environments": ["test"], "permissions": ["monitor", perm]}]
    rc, err = bad(project, capsys, config("test", access=access))
    assert rc == 2 and "mxinfra:access[0].permissions[1]" in err and "no Cloud Foundry space role" in err


def test_production_principal_of_a_non_mfa_origin(project, capsys):
    access = [
        {"principal": "user:corp-idp/alice@example.com", "environments": ["production"], "permissions": ["deploy"]},
        {"principal": "user:sap.ids/bob@example.com", "environments": ["production"], "permissions": ["monitor"]},
        {"principal": "user:uaa/carol", "environments": ["production"], "permissions": ["monitor"]},
    ]
    rc, err = bad(project, capsys, config("production", access=access))
    assert rc == 2 and "mxinfra:access[1].principal" in err and "mxinfra:access[2].principal" in err
    assert "mxinfra:access[0]" not in err and "'uaa' origin cannot enforce it" in err
    # the same principals outside production are fine
    test_access = [dict(a, environments=["test"]) for a in access]
    rc, err = bad(project, capsys, config("test", access=test_access))
    assert rc == 0, err


def test_uaa_cannot_be_listed_as_mfa_origin(project, capsys):
    rc, err = bad(project, capsys, config("production", cf={"mfaOrigins": ["uaa"]}))
    assert rc == 2 and "mxinfra:cloudfoundry.mfaOrigins" in err


# (group:ORIGIN/NAME is a valid form: test_cf_groups.py)
@pytest.mark.parametrize("principal", ["alice", "user:alice", "group:ops", "group:corp-idp/", "user:corp-idp/", "arn:aws:iam::123456789012:role/X"])
def test_principal_form(project, capsys, principal):
    access = [{"principal": principal, "environments": ["test"], "permissions": ["monitor"]}]
    rc, err = bad(project, capsys, config("test", access=access))
    assert rc == 2 and "mxinfra:access[0].principal" in err


def test_memory_the_buildpack_cannot_run_in(project, capsys):
    rc, err = bad(project, capsys, config("test", env={"memory": 768}))
    assert rc == 2 and "mxinfra:environments.test.memory" in err and "1024" in err


def test_several_instances_need_an_object_store(project, capsys):
    cfg = config("test", env={"instances": 2})
    del cfg["mxinfra:cloudfoundry"]["storage"]
    rc, err = bad(project, capsys, cfg)
    assert rc == 2 and "mxinfra:cloudfoundry.storage" in err


@pytest.mark.parametrize(
    "change,path",
    [
        ({"api": "http://api.cf.example.com"}, "mxinfra:cloudfoundry.api"),
        ({"orgGuid": "0b4f3a1e-1111-2222-3333-444455556666"}, "mxinfra:cloudfoundry"),
        ({"spaceGuid": "not-a-guid"}, "mxinfra:cloudfoundry.spaceGuid"),
        ({"database": {"offering": "postgresql-db"}}, "mxinfra:cloudfoundry.database"),
        ({"database": {"existing": "db", "plan": "x"}}, "mxinfra:cloudfoundry.database"),
        ({"hostnames": {"prod": "orders"}}, "mxinfra:cloudfoundry.hostnames.prod"),
        ({"releaseData": ["test"]}, "mxinfra:cloudfoundry.releaseData[0]"),
        ({"diskMb": 512}, "mxinfra:cloudfoundry.diskMb"),
        ({"colour": "blue"}, "mxinfra:cloudfoundry.colour"),
    ],
)
def test_bad_block_values(project, capsys, change, path):
    rc, err = bad(project, capsys, config("test", cf=change))
    assert rc == 2 and path in err, err


def test_importing_the_target_imports_no_pulumi_or_requests():
    import subprocess
    import sys

    from cfhelpers import ROOT

    code = "import sys, mxinfra_cloudfoundry; from mxinfra.cli import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\nprint('HEAVY', sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'requests', 'yaml')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "HEAVY []" in out, out


# --- F23: production stages only a buildpack pinned by digest ---------------------------------------------


def test_production_needs_a_buildpack_pinned_by_digest(project, capsys):
    rc, err = bad(project, capsys, config("production", cf={"buildpack": BUILDPACK_URL}))
    assert rc == 2 and "mxinfra:cloudfoundry.buildpack: environment 'production' is production" in err
    assert "#sha256=<64 hex>" in err and "Cloud Foundry does not verify what it downloads" in err
    rc, err = bad(project, capsys, config("test", cf={"buildpack": BUILDPACK_URL}))
    assert rc == 0, err  # outside production and promotion the URL of a release is enough
    gated = config("acceptance", cf={"buildpack": BUILDPACK_URL}, env={"requirePromotionFrom": "test"})
    rc, err = bad(project, capsys, gated)
    assert rc == 2 and "promotion-gated (from test)" in err


@pytest.mark.parametrize("fragment", ["#sha256=abc", "#sha256=" + "A" * 64, "#sha512=" + "a" * 128, "#v5.0.20"])
def test_a_malformed_digest_is_refused(project, capsys, fragment):
    rc, err = bad(project, capsys, config("production", cf={"buildpack": BUILDPACK_URL + fragment}))
    assert rc == 2 and "mxinfra:cloudfoundry.buildpack" in err


# --- F3: production has a space of its own --------------------------------------------------------------


def two_environments(cf=None):
    cfg = config("production", cf=cf)
    cfg["mxinfra:environments"]["acceptance"] = {"role": "acceptance", "memory": 2048}
    cfg["mxinfra:access"][0]["environments"] = ["acceptance", "production"]
    return cfg


def test_production_sharing_a_space_in_the_stack_is_refused(project, capsys):
    rc, err = bad(project, capsys, two_environments())  # one `space` for both
    assert rc == 2 and "mxinfra:cloudfoundry.space: production environment 'production' and acceptance environment 'acceptance' share space 'orders'" in err
    rc, err = bad(project, capsys, two_environments({"space": None, "spaces": {"production": "orders", "acceptance": "orders"}}))
    assert rc == 2 and "mxinfra:cloudfoundry.spaces.production:" in err
    rc, err = bad(project, capsys, two_environments({"space": None, "spaces": {"production": "orders-prod", "acceptance": "orders-acc"}}))
    assert rc == 0, err


def test_spaces_by_tier_and_their_mistakes(project, capsys):
    rc, err = bad(project, capsys, two_environments({"space": None, "spaces": {"production": "orders-prod", "acceptance": "orders-acc"}}))
    assert rc == 0, err
    rc, err = bad(project, capsys, two_environments({"space": None, "spaces": {"production": "orders-prod", "staging": "orders-acc"}}))
    assert rc == 2 and "mxinfra:cloudfoundry.spaces.staging: 'staging' is neither an environment of this stack nor a tier" in err
    assert "mxinfra:cloudfoundry.spaces: no space for environment 'acceptance'" in err
    rc, err = bad(project, capsys, config("production", cf={"spaces": {"production": "orders-prod"}}))
    assert rc == 2 and "give exactly one of space" in err  # space and spaces


def test_production_sharing_a_space_with_another_stack_is_refused(project, capsys):
    acc = config("acceptance")  # space: orders
    for key in ("adminPassword",):
        acc["mxinfra:environments"]["acceptance"].pop(key, None)
    project.stack("cf-acceptance", acc)
    rc, err = bad(project, capsys, config("production"))  # space: orders too
    assert rc == 2 and "mxinfra:cloudfoundry.space: space 'orders' of production environment 'production' is also the space of acceptance environment 'acceptance' of stack cf-acceptance" in err
    # and acceptance's own plan refuses too: its standing roles would land in production's space
    rc = main(["plan", "-s", "cf-acceptance", "-C", str(project.path)])
    err = capsys.readouterr().err
    assert rc == 2 and "is also the space of production environment 'production' of stack cf-production" in err
    # a space of its own, named by environment or by tier
    rc, err = bad(project, capsys, config("production", cf={"space": None, "spaces": {"production": "orders-production"}}))
    assert rc == 0, err


def test_every_problem_in_one_report(project, capsys):
    rc, err = bad(project, capsys, two_environments({"buildpack": BUILDPACK_URL}))
    assert rc == 2 and "mxinfra:cloudfoundry.buildpack" in err and "mxinfra:cloudfoundry.space:" in err


# --- F24: no machine path in the inputs -------------------------------------------------------------------


def test_two_checkouts_plan_the_same_inputs(tmp_path, capsys):
    """The same stack planned from two directories declares byte-identical resources (--json)."""
    from scaffold import copy_example, record_deploy

    outputs = []
    for where in ("one", "two/deeper"):
        dest = copy_example(tmp_path / where)
        record_deploy(dest, "cf-acceptance")
        assert main(["plan", "-s", "cf-production", "-C", str(dest), "--json"]) == 0
        text = capsys.readouterr().out
        assert str(tmp_path) not in text
        outputs.append(text)
    assert outputs[0] == outputs[1]
