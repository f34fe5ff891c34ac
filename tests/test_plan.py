"""`mxinfra plan` end to end: the real program of a project, offline, through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mxinfra.cli import main
from mxinfra.testing import engine_secrets

from scaffold import ROOT, UNGATED, app_config

PROD_PASSWORD = "Known-Admin-Password-123"
DB_URL = "postgres://app:Known-Db-Password-456@db.internal:5432/orders"


def stack_config():
    return app_config(
        **{
            "mxinfra:environments": {
                "production": {"instances": 2, "memory": 2048, "adminPassword": {"secure": "v1:AAAA"}, "ungated": UNGATED},
                "acceptance": {"constants": {"Orders.PageSize": 10}, "scheduledEvents": ["Orders.SE_SendInvoices"]},
            },
            "mxinfra:access": [{"principal": "group:ops", "environments": ["production", "acceptance"], "permissions": ["deploy", "monitor"]}],
            "mxinfra:fake": {"databaseUrl": {"secure": "v1:BBBB"}},
        }
    )


def plan_json(capsys, *args):
    rc = main(["plan", *args, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out), out.out


def test_plan_json_shape_and_attribution(project, fake_target, capsys):
    project.stack("production", stack_config())
    doc, _ = plan_json(capsys, "-s", "production", "-C", str(project.path))
    assert doc["stack"] == "production" and doc["project"] == "orders"
    assert [(e["name"], e["role"]) for e in doc["environments"]] == [("production", "production"), ("acceptance", "acceptance")]
    assert doc["environments"][0]["warnings"] == [
        "production is a production environment without staged promotion (mxinfra:environments.production.ungated): it deploys "
        f"any package, whether or not another environment ran it; reason given: {UNGATED['reason']}",
        "this platform cannot enforce MFA",
    ]
    assert doc["environments"][1]["warnings"] == []
    by_name = {r["name"]: r for r in doc["resources"]}
    assert set(by_name["orders-production-runtime"]) == {"urn", "type", "name", "parent", "environment", "inputs"}
    assert by_name["orders-production-runtime"]["environment"] == "production"
    assert by_name["orders-acceptance-db"]["environment"] == "acceptance"
    assert by_name["orders-cluster"]["environment"] is None
    assert by_name["orders-production-db"]["options"] == {"protect": True, "retainOnDelete": True}
    assert by_name["orders-acceptance-runtime"]["inputs"]["env"]["SCHEDULED_EVENTS"] == "Orders.SE_SendInvoices"
    # secrets masked, cloud-only values computed
    assert by_name["orders-production-secret"]["inputs"]["data"] == "[secret]"
    assert by_name["orders-acceptance-admin-password"]["type"] == "random:index/randomPassword:RandomPassword"
    urns = [r["urn"] for r in doc["resources"]]
    assert urns == sorted(urns)


def test_plan_output_is_deterministic(project, fake_target, capsys):
    project.stack("production", stack_config())
    _, first = plan_json(capsys, "-s", "production", "-C", str(project.path))
    _, second = plan_json(capsys, "-s", "production", "-C", str(project.path))
    assert first == second


def test_no_secret_value_in_output_or_artifacts(project, fake_target, capsys, tmp_path):
    # With known plaintext values behind the secure markers, nothing may print them.
    cfg = stack_config()
    cfg["mxinfra:environments"]["production"]["adminPassword"] = PROD_PASSWORD
    cfg["mxinfra:fake"]["databaseUrl"] = DB_URL
    project.stack("production", cfg)
    # stored in plain text: refused, and the refusal does not echo the value
    rc = main(["plan", "-s", "production", "-C", str(project.path)])
    err = capsys.readouterr().err
    assert rc == 2 and "plain text" in err and PROD_PASSWORD not in err
    # the same values marked secret by the engine (whole key secret) are masked everywhere
    with engine_secrets("mxinfra:environments", "mxinfra:fake"):
        out_dir = tmp_path / "out"
        rc = main(["plan", "-s", "production", "-C", str(project.path), "--json", "--out", str(out_dir)])
        out = capsys.readouterr()
        assert rc == 0, out.err
        rc = main(["plan", "-s", "production", "-C", str(project.path)])
        tree = capsys.readouterr().out
    written = "".join(p.read_text() for p in out_dir.rglob("*") if p.is_file())
    assert written
    for text in (out.out, out.err, tree, written):
        assert PROD_PASSWORD not in text and "Known-Db-Password" not in text


def test_config_errors_exit_2_with_every_message(project, fake_target, capsys):
    cfg = stack_config()
    cfg["mxinfra:environments"]["production"]["constants"] = {"Orders.PageSise": 5}
    cfg["mxinfra:environments"]["acceptance"]["scheduledEvents"] = ["Nope"]
    cfg["mxinfra:fake"]["imagee"] = "x"
    project.stack("production", cfg)
    rc = main(["plan", "-s", "production", "-C", str(project.path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "mxinfra:environments.production.constants.Orders.PageSise" in err and "Orders.PageSize" in err
    assert "mxinfra:environments.acceptance.scheduledEvents[0]" in err
    assert "mxinfra:fake.imagee" in err and "image" in err
    assert "Traceback" not in err


def test_unknown_target_lists_installed(project, fake_target, capsys):
    project.stack("production", app_config(target="nope"))
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    assert "unknown target 'nope'" in err and "fake" in err


def test_missing_stack_file_and_project(project, capsys, tmp_path):
    assert main(["plan", "-s", "nope", "-C", str(project.path)]) == 2
    assert "no stack file" in capsys.readouterr().err
    assert main(["plan", "-s", "x", "-C", str(tmp_path)]) == 2
    assert "Pulumi.yaml" in capsys.readouterr().err


def test_bad_package_exits_2(project, fake_target, capsys, tmp_path):
    bad = tmp_path / "bad.mda"
    bad.write_bytes(b"not a zip")
    cfg = app_config()
    cfg["mxinfra:app"]["package"] = str(bad)
    project.stack("production", cfg)
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 2
    assert "bad.mda" in capsys.readouterr().err


def test_artifacts_written_per_environment(project, fake_target, capsys, tmp_path):
    project.stack("production", stack_config())
    rc = main(["plan", "-s", "production", "-C", str(project.path), "--out", str(tmp_path / "o")])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "o" / "fake").iterdir()) == ["acceptance.json", "production.json"]


def test_help_does_not_import_pulumi_or_cloud_sdks():
    code = (
        "import sys; from mxinfra.cli import main\n"
        "try:\n main(['--help'])\nexcept SystemExit: pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_aws', 'pulumi_kubernetes', 'pulumi_azure_native', 'boto3', 'grpc'))\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "HEAVY []" in out, out


def test_planning_a_kubernetes_stack_loads_no_other_cloud_sdk(tmp_path):
    from scaffold import copy_example

    example = copy_example(tmp_path / "ex")
    code = (
        "import sys, io, contextlib; from mxinfra.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()): rc = main(['plan', '-s', 'acceptance', '-C', {str(example)!r}, '--json'])\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'pulumi_aws', 'pulumi_azure_native', 'boto3', 'botocore', 'azure'})\n"
        "print('RC', rc, 'LOADED', loaded)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "RC 0 LOADED []" in out, out


@pytest.mark.parametrize("stack", ["test", "operator", "aws-test"])
def test_the_same_stack_plans_byte_identically_from_two_checkouts(tmp_path, capsys, stack):
    from scaffold import copy_example

    one = copy_example(tmp_path / "one")
    two = copy_example(tmp_path / "elsewhere" / "deeper" / "two")
    _, first = plan_json(capsys, "-s", stack, "-C", str(one))
    _, second = plan_json(capsys, "-s", stack, "-C", str(two))
    assert first == second
    assert str(tmp_path) not in first  # no machine path in any resource input


def gated(project, tmp_path):
    repo = f"file://{tmp_path / 'repo'}"
    cfg = stack_config()
    cfg["mxinfra:repository"] = repo
    cfg["mxinfra:environments"] = {"production": {"requirePromotionFrom": "acceptance", "adminPassword": {"secure": "v1:AAAA"}}}
    cfg["mxinfra:access"][0]["environments"] = ["production"]
    project.stack("production", cfg)
    return cfg


def test_a_gated_stack_shows_its_full_plan_then_the_refusal(project, fake_target, capsys, tmp_path):
    gated(project, tmp_path)
    assert main(["plan", "-s", "production", "-C", str(project.path), "--json"]) == 2
    out = capsys.readouterr()
    doc = json.loads(out.out)  # the whole plan, as for an ungated stack
    assert "orders-production-runtime" in {r["name"] for r in doc["resources"]}
    assert "requirePromotionFrom" in out.err and "no deploy record in 'acceptance'" in out.err


def test_a_gated_stack_with_other_problems_reports_them_without_a_plan(project, fake_target, capsys, tmp_path):
    cfg = gated(project, tmp_path)
    cfg["mxinfra:environments"]["production"]["constants"] = {"Orders.NoSuchConstant": 1}
    project.stack("production", cfg)
    assert main(["plan", "-s", "production", "-C", str(project.path), "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "Orders.NoSuchConstant" in out.err and "no deploy record" in out.err


def test_pulumi_up_of_a_gated_stack_stops_before_declaring_anything(project, fake_target, pulumi_run, tmp_path, monkeypatch):
    import pulumi

    from mxinfra.program import run
    from mxinfra.stackfile import as_pulumi_config, read_project, read_stack_config

    gated(project, tmp_path)
    config, secret_keys = as_pulumi_config(read_stack_config(read_project(project.path), "production"))
    monkeypatch.chdir(project.path)
    with pytest.raises(pulumi.RunError, match="no deploy record in 'acceptance'"):
        pulumi_run(lambda: run(base_dir=project.path), config=config, secret_keys=secret_keys, stack="production")


def test_out_must_be_a_directory(project, fake_target, capsys, tmp_path):
    project.stack("production", stack_config())
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert main(["plan", "-s", "production", "-C", str(project.path), "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err and target.read_text() == "keep me"


def test_a_project_without_its_program_is_a_config_problem(project, fake_target, capsys):
    """Issue 18 (found by the installed-wheel test): a project with no __main__.py crashed as an internal error."""
    project.stack("production", app_config(target="fake"))
    (project.path / "__main__.py").unlink()
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    assert "__main__.py: no such file" in err and "from mxinfra.program import run" in err and "Traceback" not in err


def test_a_misspelt_target_gets_did_you_mean(project, fake_target, capsys):
    project.stack("production", app_config(target="kubernets"))
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    assert "unknown target 'kubernets'" in err and "did you mean 'kubernetes'?" in err


def _hostile_member(kind: str) -> tuple[object, bytes, str]:
    import stat

    from mda_builders import zinfo

    if kind == "dotdot":
        return "model/../../outside.txt", b"escape", "model/../../outside.txt"
    if kind == "symlink":
        return zinfo("web/passwd", mode=stat.S_IFLNK | 0o777), b"/etc/passwd", "web/passwd"
    return "web/bomb.bin", b"\0" * (50 << 20), "web/bomb.bin"  # deflates ~1000:1


@pytest.mark.parametrize("kind", ["dotdot", "symlink", "bomb"])
def test_the_plan_refuses_an_archive_that_inspect_refuses(project, fake_target, capsys, tmp_path, kind):
    """Issue 19, F11: `plan` and `pulumi up` accepted archives that `inspect` and `package push` refuse
    (a `..` member, a link, a compression bomb): the member checks run in `prepare`, which both take."""
    import zipfile

    from mda_builders import write_zip
    from scaffold import EXAMPLE_MDA, app_config

    with zipfile.ZipFile(EXAMPLE_MDA) as z:
        members = [(i.filename, z.read(i)) for i in z.infolist()]
    name, data, shown = _hostile_member(kind)
    evil = write_zip(tmp_path / "evil.mda", [*members, (name, data)])
    project.stack("test", app_config(**{"mxinfra:app": {"name": "orders", "package": str(evil), "target": "fake"}}))
    assert main(["plan", "-s", "test", "-C", str(project.path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "mxinfra:app.package" in err and shown in err and "Traceback" not in err
    assert main(["inspect", str(evil)]) == 2
