"""Production is gated by default (issue 19, F6): a production environment names the environment its
packages must pass first (`requirePromotionFrom`) or opts out explicitly, with a reason
(`ungated: {reason: ...}`) that every plan and `pulumi up` warn about. On a cloud repository its records
must be signed (`mxinfra:signing.signers.<env>`, no opt-out); on file:// the development key signs."""

from __future__ import annotations

import json

import pytest
from pulumi import RunError

from mxinfra.cli import main
from mxinfra.config import RawConfig, collect_stack_config, load_stack_config
from mxinfra.errors import ConfigError
from mxinfra.governance.activity import ActivityLog
from mxinfra.governance.store import open_store
from mxinfra.program import run
from mxinfra.stackfile import as_pulumi_config, read_project, read_stack_config

from scaffold import app_config, record_deploy

APP = {"name": "orders", "package": "orders.mda", "target": "fake"}
GATE = "mxinfra:environments.production.requirePromotionFrom"
REASON = "a hotfix-only stack: every release is reviewed in the change board, not in acceptance"
S3 = "s3://orders-governance/repo"
KMS_KEY = "kms:arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def problems(values, stack="production"):
    """Every issue of a stack's config, by key (the config layer alone: no package, no target)."""
    _, found = collect_stack_config(RawConfig(values, frozenset(), "Pulumi.x.yaml"), project="orders", stack=stack)
    return {i.path: i for i in found}


def envs(**bodies):
    return {"mxinfra:app": APP, "mxinfra:environments": bodies}


# --- the rule, in the config layer ----------------------------------------------------------------------


def test_production_without_a_gate_is_refused_naming_the_key():
    found = problems(envs(production={"instances": 2}, acceptance={}))
    assert set(found) == {GATE}
    issue = found[GATE]
    assert "required" in issue.message and "production" in issue.message
    # the fix shows both ways out
    assert "requirePromotionFrom: acceptance" in issue.fix and "mxinfra promote --from acceptance --to production" in issue.fix
    assert 'ungated: {reason: "' in issue.fix
    with pytest.raises(ConfigError, match="requirePromotionFrom"):
        load_stack_config(RawConfig(envs(production={}), frozenset(), "Pulumi.x.yaml"), project="orders", stack="production")


def test_the_rule_follows_the_role_not_the_name():
    # a stack named after the role gets a production environment by default: gated too
    assert set(problems({"mxinfra:app": APP})) == {GATE}
    found = problems(envs(live={"role": "production"}, acceptance={}), stack="live")
    assert set(found) == {"mxinfra:environments.live.requirePromotionFrom"}
    assert "--to live" in found["mxinfra:environments.live.requirePromotionFrom"].fix
    # acceptance and test take any package unless they ask for a gate
    assert problems(envs(acceptance={}, test={}, perf={"role": "acceptance"}), stack="acceptance") == {}


def test_a_gate_or_an_explicit_opt_out_satisfies_it():
    assert problems(envs(production={"requirePromotionFrom": "acceptance"})) == {}  # the source may be another stack's
    cfg = load_stack_config(RawConfig(envs(production={"ungated": {"reason": f"  {REASON} "}}), frozenset(), "x"), project="orders", stack="production")
    (env,) = cfg.environments
    assert env.ungated_reason == REASON and env.require_promotion_from is None


@pytest.mark.parametrize(
    "ungated,where,says",
    [
        ({"reason": ""}, "mxinfra:environments.production.ungated.reason", "must not be empty"),
        ({"reason": "   "}, "mxinfra:environments.production.ungated.reason", "must not be empty"),
        ({}, "mxinfra:environments.production.ungated.reason", "required key is missing"),
        (True, "mxinfra:environments.production.ungated", "expected a map"),
        ("because", "mxinfra:environments.production.ungated", "expected a map"),
        ({"reason": "x", "until": "2027-01-01"}, "mxinfra:environments.production.ungated.until", "unknown key"),
    ],
)
def test_an_opt_out_without_a_reason_is_refused(ungated, where, says):
    found = problems(envs(production={"ungated": ungated}))
    # one issue where the opt-out is wrong, not also a knock-on "requirePromotionFrom required"
    assert set(found) == {where}, found
    assert says in found[where].message


def test_an_opt_out_is_for_an_ungated_production_only():
    found = problems(envs(production={"requirePromotionFrom": "acceptance", "ungated": {"reason": REASON}}))
    assert set(found) == {"mxinfra:environments.production.ungated"}
    assert "contradicts requirePromotionFrom" in found["mxinfra:environments.production.ungated"].message
    found = problems(envs(acceptance={"ungated": {"reason": REASON}}), stack="acceptance")
    assert set(found) == {"mxinfra:environments.acceptance.ungated"}
    assert "production environments only" in found["mxinfra:environments.acceptance.ungated"].message


def test_a_cloud_repository_needs_a_signer_for_production_gated_or_not():
    signer_key = "mxinfra:signing.signers.production"
    # ungated: no opt-out from signing (unsigned records are trusted by no gate, no audit)
    found = problems({**envs(production={"ungated": {"reason": REASON}}), "mxinfra:repository": S3})
    assert set(found) == {signer_key}
    assert "production environment" in found[signer_key].message and "s3://" in found[signer_key].message
    assert "kms:arn:aws:kms:" in found[signer_key].fix
    found = problems({**envs(production={"ungated": {"reason": REASON}}), "mxinfra:repository": "azblob://acct/governance/repo"})
    assert set(found) == {signer_key} and "azurekv:https://" in found[signer_key].fix
    # gated: the signer once (not twice), and the keys trusted for the source
    found = problems({**envs(production={"requirePromotionFrom": "acceptance"}), "mxinfra:repository": S3})
    assert set(found) == {signer_key, "mxinfra:signing.trustedSigners.acceptance"}
    # both rules at once, in the one report
    found = problems({**envs(production={}), "mxinfra:repository": S3})
    assert set(found) == {GATE, signer_key}
    # with a signer: accepted
    signed = {**envs(production={"ungated": {"reason": REASON}}), "mxinfra:repository": S3, "mxinfra:signing": {"signers": {"production": KMS_KEY}}}
    assert problems(signed) == {}
    # acceptance on a cloud repository is not required to sign (its records gate nothing here)
    assert problems({**envs(acceptance={}), "mxinfra:repository": S3}, stack="acceptance") == {}


def test_a_file_repository_signs_with_the_development_key(project, fake_target, tmp_path, capsys):
    """No signer configured on file://: the repository is local, its development key signs and is trusted."""
    url = (tmp_path / "repo").as_uri()
    assert problems({**envs(production={"ungated": {"reason": REASON}}), "mxinfra:repository": url}) == {}
    assert problems({**envs(production={"requirePromotionFrom": "acceptance"}), "mxinfra:repository": url}) == {}
    project.stack("acceptance", app_config(**{"mxinfra:repository": url}))
    project.stack("production", app_config(**{"mxinfra:repository": url, "mxinfra:environments": {"production": {"requirePromotionFrom": "acceptance"}}}))
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 2
    assert "no deploy record in 'acceptance'" in capsys.readouterr().err
    record_deploy(project.path, "acceptance")
    (record,) = ActivityLog(open_store(url)).records("acceptance")
    assert record.signature is not None and record.signature["signer"] == f"file:{tmp_path / 'repo' / 'keys' / 'dev-signing.pem'}"
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 0, capsys.readouterr().err


# --- the plan and `pulumi up`: one code path (prepare) --------------------------------------------------


def test_the_plan_reports_a_missing_gate_with_every_other_problem(project, fake_target, capsys):
    cfg = app_config(**{"mxinfra:environments": {"production": {"constants": {"Orders.NoSuchThing": 1}}}, "mxinfra:fake": {"imagee": "x"}})
    project.stack("production", cfg)
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    assert f"{GATE}: required" in err and "ungated: {reason:" in err
    assert "mxinfra:environments.production.constants.Orders.NoSuchThing" in err and "mxinfra:fake.imagee" in err
    assert err.count("\n  - ") == 3, err


def test_an_ungated_production_plans_with_a_warning_naming_the_reason(project, fake_target, capsys):
    project.stack("production", app_config(**{"mxinfra:environments": {"production": {"ungated": {"reason": REASON}}}}))
    assert main(["plan", "-s", "production", "-C", str(project.path), "--json"]) == 0
    (env,) = json.loads(capsys.readouterr().out)["environments"]
    (warning,) = [w for w in env["warnings"] if "without staged promotion" in w]
    assert "mxinfra:environments.production.ungated" in warning and "deploys any package" in warning and warning.endswith(REASON)
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the tree wraps long lines at the console's width
    assert "warning:" in out and "without staged promotion" in out and "change board" in out


def _program(project, stack="production"):
    config, secret_keys = as_pulumi_config(read_stack_config(read_project(project.path), stack))
    return lambda pulumi_run: pulumi_run(lambda: run(project.path), config=config, secret_keys=secret_keys, stack=stack, project="orders")


def test_pulumi_up_refuses_an_ungated_production_in_the_same_words(project, fake_target, pulumi_run, capsys):
    project.stack("production", app_config(**{"mxinfra:environments": {"production": {"instances": 2}}}))
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 2
    offline = capsys.readouterr().err
    with pytest.raises(RunError) as refused:
        _program(project)(pulumi_run)
    assert f"{GATE}: required" in str(refused.value) and f"{GATE}: required" in offline
    assert "ungated: {reason:" in str(refused.value)


def test_pulumi_up_refuses_production_unsigned_on_a_cloud_repository(project, fake_target, pulumi_run):
    cfg = app_config(**{"mxinfra:repository": S3, "mxinfra:environments": {"production": {"ungated": {"reason": REASON}}}})
    project.stack("production", cfg)
    with pytest.raises(RunError, match="mxinfra:signing.signers.production: required"):
        _program(project)(pulumi_run)


def test_pulumi_up_of_an_ungated_production_warns_naming_the_reason(project, fake_target, pulumi_run):
    project.stack("production", app_config(**{"mxinfra:environments": {"production": {"ungated": {"reason": REASON}}}}))
    res = _program(project)(pulumi_run)
    assert any(w.startswith("production: production is a production environment without staged promotion") and REASON in w for w in res.warnings), res.warnings
