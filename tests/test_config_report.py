"""Every config problem in one report, at the user's keys, without pydantic internals or knock-on issues;
hostile stack files (alias bombs, numbers of thousands of digits) refused quickly with exit 2."""

from __future__ import annotations

import time

import pytest

from mxinfra.cli import main
from mxinfra.config import RawConfig, collect_stack_config
from mxinfra.stackfile import MAX_EXPANDED_NODES, read_project, read_stack_config

from scaffold import app_config


def plan_error(project, capsys, config, stack="production") -> str:
    project.stack(stack, config)
    assert main(["plan", "-s", stack, "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def issue_lines(err: str) -> list[str]:
    return [line.strip()[2:] for line in err.splitlines() if line.strip().startswith("- ")]


def test_five_problems_of_three_layers_in_one_report(project, fake_target, capsys):
    cfg = app_config(
        **{
            "mxinfra:colour": "blue",  # unknown key (schema)
            "mxinfra:environments": {
                "production": {
                    "constants": {"Orders.NoSuchThing": 1, "Orders.PageSize": "1h"},  # undefined; not an Integer (MDA)
                    "scheduledEvents": ["Orders.SE_NoSuchEvent"],  # unknown event (MDA)
                    "adminPassword": {"secure": "v1:AAAA"},
                    "ungated": {"reason": "the report's layers are under test, not the promotion gate"},
                },
            },
            "mxinfra:access": [{"principal": "group:ops", "environments": ["production"], "permissions": ["api"]}],  # api on production (access)
        }
    )
    lines = issue_lines(plan_error(project, capsys, cfg))
    wanted = [
        "mxinfra:colour: unknown key",
        "mxinfra:access[0]",
        "mxinfra:environments.production.constants.Orders.NoSuchThing: constant 'Orders.NoSuchThing' is not defined",
        "mxinfra:environments.production.constants.Orders.PageSize: expected a whole number",
        "mxinfra:environments.production.scheduledEvents[0]: scheduled event 'Orders.SE_NoSuchEvent' is not in the app's model",
    ]
    for w in wanted:
        assert any(line.startswith(w) for line in lines), f"{w!r} not in {lines}"
    assert any("api" in line and line.startswith("mxinfra:access[0]") for line in lines)
    assert len(lines) == 5, lines


def test_mda_checks_run_on_environments_that_parsed_when_another_did_not(project, fake_target, capsys):
    cfg = app_config(
        **{
            "mxinfra:environments": {
                "acceptance": {"instances": "many"},
                "test": {"constants": {"Orders.Nope": 1}},
            }
        }
    )
    lines = issue_lines(plan_error(project, capsys, cfg, stack="test"))
    assert [line.split(":")[1].split(" ")[0] for line in lines] == ["environments.acceptance.instances", "environments.test.constants.Orders.Nope"]


@pytest.mark.parametrize(
    ("value", "fix"),
    [("none", "did you mean 'NONE'?"), ("All", "did you mean 'ALL'?"), ("sometimes", ""), (5, "")],
)
def test_scheduled_events_gives_one_issue_at_the_users_key(value, fix):
    raw = RawConfig({"mxinfra:app": app_config()["mxinfra:app"], "mxinfra:environments": {"test": {"scheduledEvents": value}}}, frozenset(), "Pulumi.test.yaml")
    _, issues = collect_stack_config(raw, project="orders", stack="test")
    assert [i.path for i in issues] == ["mxinfra:environments.test.scheduledEvents"]
    assert issues[0].message.startswith("expected ALL, NONE or a list of event names")
    assert issues[0].fix == fix
    assert "literal" not in str(issues[0]) and "list[str]" not in str(issues[0])


def test_union_members_never_appear_in_key_paths():
    raw = RawConfig({"mxinfra:app": app_config()["mxinfra:app"], "mxinfra:environments": {"test": {"constants": {"Orders.PageSize": [1]}}}}, frozenset(), "Pulumi.test.yaml")
    _, issues = collect_stack_config(raw, project="orders", stack="test")
    assert [(i.path, i.message) for i in issues] == [
        ("mxinfra:environments.test.constants.Orders.PageSize", "expected true or false, a whole number, a number or a string (got list)")
    ]


def test_a_misspelt_top_level_key_is_one_issue_with_its_hint(project, fake_target, capsys):
    cfg = app_config(
        **{
            "mxinfra:enviroments": {"test": {"instances": 1}},
            "mxinfra:access": [{"principal": "group:ops", "environments": ["test", "acceptance"], "permissions": ["deploy"]}],
        }
    )
    lines = issue_lines(plan_error(project, capsys, cfg, stack="dev"))
    assert lines == ["mxinfra:enviroments: unknown key (did you mean 'environments'?)"]


def test_an_environment_name_suggests_its_valid_form():
    raw = RawConfig({"mxinfra:app": app_config()["mxinfra:app"], "mxinfra:environments": {"PreProd": {"role": "acceptance"}}}, frozenset(), "Pulumi.x.yaml")
    _, issues = collect_stack_config(raw, project="orders", stack="x")
    assert [(i.path, i.fix) for i in issues] == [("mxinfra:environments.PreProd", "rename it to 'preprod'")]


def test_an_alias_bomb_is_refused_in_under_a_second(project, capsys):
    lines = ["config:", "  mxinfra:app: {name: orders, package: x.mda, target: fake}", "  mxinfra:bomb:", "    a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    (project.path / "stacks" / "Pulumi.test.yaml").write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    assert main(["plan", "-s", "test", "-C", str(project.path)]) == 2
    assert time.perf_counter() - start < 1.0
    err = capsys.readouterr().err
    assert "aliases" in err and "Pulumi.test.yaml" in err and "Traceback" not in err


def test_aliases_within_the_budget_still_work(project):
    (project.path / "stacks" / "Pulumi.test.yaml").write_text(
        "config:\n  mxinfra:app: &app {name: orders, package: x.mda, target: fake}\n  orders:copy: *app\n"
    )
    raw = read_stack_config(read_project(project.path), "test")
    assert raw.values["orders:copy"] == {"name": "orders", "package": "x.mda", "target": "fake"}
    assert MAX_EXPANDED_NODES >= 10_000


@pytest.mark.parametrize("field", ["instances", "memory"])
def test_numbers_of_thousands_of_digits_are_range_errors_at_their_key(project, fake_target, capsys, field):
    text = "config:\n  mxinfra:app: {name: orders, package: x.mda, target: fake}\n  mxinfra:environments:\n    test:\n      " + field + ": " + "9" * 5000 + "\n"
    (project.path / "stacks" / "Pulumi.test.yaml").write_text(text)
    assert main(["plan", "-s", "test", "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    assert f"mxinfra:environments.test.{field}: expected a whole number" in err and "Traceback" not in err
    assert len(err) < 2000  # the value is not echoed in full


@pytest.mark.parametrize(("value", "ok"), [(2**31, True), (2**63 - 1, True), (-(2**63), True), (2**63, False), (-(2**63) - 1, False), ("1" + "0" * 30, False)])
def test_integer_constants_are_range_checked(project, fake_target, capsys, value, ok):
    """Issue 18: Mendix's Integer/Long is one 64-bit type (real models return java.lang.Long); values past
    2^31-1 were refused and the message for 2^63 named the 32-bit maximum."""
    cfg = app_config(**{"mxinfra:environments": {"test": {"constants": {"Orders.PageSize": value}}}})
    project.stack("test", cfg)
    rc = main(["plan", "-s", "test", "-C", str(project.path), "--json"])
    err = capsys.readouterr().err
    assert rc == (0 if ok else 2), err
    if not ok:
        assert "mxinfra:environments.test.constants.Orders.PageSize: expected a whole number from -9223372036854775808 to 9223372036854775807" in err


def test_every_problem_of_one_environment_in_one_report(project, fake_target, capsys):
    """Issue 18: an unknown key or a null/list constant hid that environment's constant and event checks."""
    envs = {"test": {"instancez": 2, "constants": {"Orders.PageSize": None, "Orders.Pagesize": 3, "Orders.VatRate": "NaN", "Orders.ApiUrl": [1]}, "scheduledEvents": ["Orders.SE_Nope"]}}
    project.stack("test", app_config(**{"mxinfra:environments": envs}))
    assert main(["plan", "-s", "test", "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    p = "mxinfra:environments.test"
    for expected in (
        f"{p}.instancez: unknown key",
        f"{p}.constants.Orders.PageSize: expected true or false, a whole number, a number or a string (got null)",
        f"{p}.constants.Orders.ApiUrl:",
        f"{p}.constants.Orders.Pagesize: constant 'Orders.Pagesize' is not defined",
        f"{p}.constants.Orders.VatRate: expected a number",
        f"{p}.scheduledEvents[0]: scheduled event 'Orders.SE_Nope' is not in the app's model",
    ):
        assert expected in err, (expected, err)
    assert "problem(s)" in err and err.count("\n  - ") == 6, err


def test_a_constant_name_split_by_pulumi_config_path_says_which_command_to_run(project, fake_target, capsys):
    """Issue 18: `pulumi config set --secret --path ...secretConstants.Encryption.EncryptionKey` nests the
    name; the quoted form `secretConstants["Encryption.EncryptionKey"]` is what works."""
    envs = {"test": {"secretConstants": {"Encryption": {"EncryptionKey": {"secure": "v1:x"}}}}}
    project.stack("test", app_config(**{"mxinfra:environments": envs}))
    assert main(["plan", "-s", "test", "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    assert "mxinfra:environments.test.secretConstants.Encryption: is a map ('Encryption.EncryptionKey')" in err
    assert """pulumi config set --secret --path 'mxinfra:environments.test.secretConstants["Encryption.EncryptionKey"]' VALUE""" in err
    assert "expected a string" not in err
    # the form that command writes is accepted
    envs = {"test": {"secretConstants": {"Encryption.EncryptionKey": {"secure": "v1:x"}}}}
    project.stack("test", app_config(**{"mxinfra:environments": envs}))
    assert main(["plan", "-s", "test", "-C", str(project.path)]) == 0, capsys.readouterr().err


def test_a_plain_constant_named_like_a_key_is_a_warning_naming_secret_constants(project, fake_target, capsys):
    envs = {"test": {"constants": {"Encryption.EncryptionKey": "0123456789abcdef", "Orders.ApiUrl": "https://x"}}}
    project.stack("test", app_config(**{"mxinfra:environments": envs}))
    assert main(["plan", "-s", "test", "-C", str(project.path)]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "mxinfra:environments.test.constants.Encryption.EncryptionKey looks like a secret" in text
    assert """secretConstants["Encryption.EncryptionKey"]""" in text
    assert "Orders.ApiUrl looks like" not in text


def test_an_uppercase_environment_is_one_message_and_hides_nothing(project, capsys):
    """Issue 18: `Production` gave a second, confusing issue in the target block ("unknown environment",
    with an empty list) and hid that environment's own constant problem."""
    cfg = app_config(target="kubernetes", **{
        "mxinfra:environments": {"Production": {"requirePromotionFrom": "acceptance", "constants": {"Orders.PageSize": "lots"}}},
        "mxinfra:access": [{"principal": "group:ops", "environments": ["Production"], "permissions": ["deploy"]}],
        "mxinfra:kubernetes": {"environments": {"Production": {"image": "registry.example.com/x@sha256:" + "a" * 64}, "Stagin": {}}},
    })
    project.stack("p", cfg)
    assert main(["plan", "-s", "p", "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    assert "mxinfra:environments.Production: environment name 'Production' must be at most 20 lowercase letters and digits" in err
    assert "(rename it to 'production')" in err
    assert "mxinfra:environments.Production.constants.Orders.PageSize: expected a whole number" in err
    assert "mxinfra:kubernetes.environments.Production" not in err  # not a knock-on issue
    assert "mxinfra:kubernetes.environments.Stagin: unknown environment 'Stagin'" in err
    assert err.count("\n  - ") == 3, err
