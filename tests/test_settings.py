"""Runtime settings against every rule of docs/mendix.md §2 (the buildpacks' contract)."""

from __future__ import annotations

import json

import pytest

from mxinfra.environments import Environment, License, Role, Secret, SecretConstant
from mxinfra.errors import ConfigError
from mxinfra.mda import Metadata
from mxinfra.settings import (
    AzureBlobStorage,
    Bindings,
    DatabaseParts,
    DatabaseUrl,
    S3Storage,
    buildpack_env,
    check_against_metadata,
    derive,
    heap_mb,
    operator_runtime,
)

META = Metadata.from_json(
    json.dumps(
        {
            "RuntimeVersion": "10.24.15.93102",
            "ModelVersion": "1.0.0.1",
            "ProjectID": "p",
            "ProjectName": "P",
            "AdminUser": "MxAdmin",
            "Roles": {},
            "Constants": [
                {"Name": "M.Url", "Type": "String", "DefaultValue": "https://x", "Description": ""},
                {"Name": "M.Size", "Type": "Integer", "DefaultValue": "50", "Description": ""},
                {"Name": "M.On", "Type": "Boolean", "DefaultValue": "True", "Description": ""},
                {"Name": "M.Rate", "Type": "Decimal", "DefaultValue": "0.21", "Description": ""},
                {"Name": "M.When", "Type": "DateTime", "DefaultValue": "2026-01-01T00:00:00Z", "Description": ""},
                {"Name": "M.Key", "Type": "String", "DefaultValue": "", "Description": ""},
            ],
            "ScheduledEvents": [{"Name": "M.Nightly", "Description": ""}, {"Name": "M.Hourly", "Description": ""}],
        }
    ),
    source="test.mda",
)


def env(**kw):
    kw.setdefault("name", "production")
    kw.setdefault("role", Role.PRODUCTION)
    kw.setdefault("config_path", "mxinfra:environments.production")
    return Environment(**kw)


@pytest.mark.parametrize(
    ("limit", "heap"),
    [(512, 256), (1024, 512), (2047, 1023), (2048, 1024), (4095, 3071), (4096, 2560), (8192, 6144), (16384, 13312), (32768, 28672), (65536, 61440)],
)
def test_heap_follows_the_buildpack_table(limit, heap):
    assert heap_mb(limit) == heap


def test_constants_resolve_stack_value_over_model_default_and_are_typed():
    s = derive(env(constants={"M.Size": "25", "M.On": "false", "M.Rate": 0.5}), META)
    assert s.constants == {"M.Url": "https://x", "M.Size": 25, "M.On": False, "M.Rate": "0.5", "M.When": "2026-01-01T00:00:00Z", "M.Key": ""}
    assert s.overrides == {"M.On": False, "M.Rate": "0.5", "M.Size": 25}
    e = buildpack_env(s, Bindings("pw"))
    # CONSTANTS carries only what the stack sets; Integer constants become integers
    assert json.loads(e.plain["CONSTANTS"]) == {"M.On": False, "M.Rate": "0.5", "M.Size": 25}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("M.Size", "lots", "whole number"), ("M.Size", 2.5, "whole number"), ("M.On", "yes", "true or false"), ("M.Rate", "abc", "number"), ("M.When", "tomorrow", "ISO 8601")],
)
def test_values_that_do_not_parse_as_the_constant_type(name, value, expected):
    issues = check_against_metadata(env(constants={name: value}), META)
    assert len(issues) == 1 and expected in issues[0].message
    assert issues[0].path == f"mxinfra:environments.production.constants.{name}"


def test_unknown_constant_suggests_close_match():
    with pytest.raises(ConfigError) as exc:
        derive(env(constants={"M.Sise": 1}), META)
    issue = exc.value.issues[0]
    assert issue.path.endswith("constants.M.Sise") and "M.Size" in issue.fix


def test_secret_constants_go_to_secret_env_only():
    s = derive(env(secret_constants=(SecretConstant("M.Key", Secret("k" * 32)),)), META)
    e = buildpack_env(s, Bindings("pw"))
    assert e.secret["MX_M_Key"] == Secret("k" * 32)
    assert "k" * 32 not in json.dumps({k: str(v) for k, v in e.plain.items()})
    assert "CONSTANTS" not in e.plain


@pytest.mark.parametrize(
    ("spec", "mode", "var"),
    [("ALL", "ALL", "ALL"), ("NONE", "NONE", "NONE"), (("M.Nightly", "M.Hourly"), "SPECIFIED", "M.Nightly,M.Hourly"), ((), "NONE", "NONE")],
)
def test_scheduled_events(spec, mode, var):
    s = derive(env(scheduled_events=spec), META)
    assert s.scheduled_event_mode == mode
    assert buildpack_env(s, Bindings("pw")).plain["SCHEDULED_EVENTS"] == var
    op = operator_runtime(s)
    assert op["scheduledEventExecution"] == mode
    assert op.get("myScheduledEvents", []) == (list(spec) if mode == "SPECIFIED" else [])


def test_scheduled_event_not_in_model():
    issues = check_against_metadata(env(scheduled_events=("M.Nightlly",)), META)
    assert issues[0].path.endswith("scheduledEvents[0]") and "M.Nightly" in issues[0].fix


@pytest.mark.parametrize(("role", "mode"), [(Role.TEST, "T"), (Role.ACCEPTANCE, "A"), (Role.PRODUCTION, "P")])
def test_dtap_mode_by_role_never_development(role, mode):
    s = derive(env(role=role), META)
    e = buildpack_env(s, Bindings("pw"))
    assert e.plain["MXRUNTIME_DTAPMode"] == mode and "DEVELOPMENT_MODE" not in e.plain
    assert operator_runtime(s)["dtapMode"] == mode


def test_memory_limit_always_set():
    s = derive(env(memory_mb=3072), META)
    assert buildpack_env(s, Bindings("pw")).plain["MEMORY_LIMIT"] == "3072M"
    assert s.heap_mb == 2048


def test_admin_password_and_licence_are_secret():
    s = derive(env(license=License("LID", Secret("LKEY"))), META)
    e = buildpack_env(s, Bindings(admin_password="PW"))
    assert e.secret["ADMIN_PASSWORD"] == "PW" and e.secret["LICENSE_KEY"] == Secret("LKEY")
    assert e.plain["LICENSE_ID"] == "LID"


def test_database_url_is_secret_and_tls_required():
    e = buildpack_env(derive(env(), META), Bindings("pw", database=DatabaseUrl("postgres://u:p@h:5432/d")))
    assert e.secret["DATABASE_URL"] == "postgres://u:p@h:5432/d"
    assert json.loads(e.plain["DATABASE_CONNECTION_PARAMS"]) == {"sslmode": "require"}
    assert not any(k.startswith("MXRUNTIME_Database") for k in e.plain)


def test_database_parts_switch_off_url_handling():
    db = DatabaseParts("PostgreSQL", "h:5432", "d", user="USER-REF", password="PASS-REF")
    e = buildpack_env(derive(env(), META), Bindings("pw", database=db))
    assert "DATABASE_URL" not in e.secret and "DATABASE_URL" not in e.plain
    assert e.plain["MXRUNTIME_DatabaseType"] == "PostgreSQL" and e.plain["MXRUNTIME_DatabaseUseSsl"] == "true"
    assert e.secret["MXRUNTIME_DatabaseUserName"] == "USER-REF" and e.secret["MXRUNTIME_DatabasePassword"] == "PASS-REF"


def test_s3_without_keys_uses_role_credentials():
    e = buildpack_env(derive(env(), META), Bindings("pw", storage=S3Storage(bucket="b", endpoint="https://s3.eu-west-1.amazonaws.com")))
    # the buildpacks ignore S3_* without keys: the store must be configured as runtime settings
    assert not any(k.startswith("S3_") for k in (*e.plain, *e.secret))
    assert json.loads(e.plain["CUSTOM_RUNTIME_SETTINGS"]) == {
        "com.mendix.core.StorageService": "com.mendix.storage.s3",
        "com.mendix.storage.s3.BucketName": "b",
        "com.mendix.storage.s3.EndPoint": "https://s3.eu-west-1.amazonaws.com",
        "com.mendix.storage.s3.UseSSE": True,
        "com.mendix.storage.s3.UseInstanceProfile": True,
    }


def test_s3_with_keys_keeps_them_secret():
    e = buildpack_env(derive(env(), META), Bindings("pw", storage=S3Storage(bucket="b", endpoint="https://minio", access_key_id="AK", secret_access_key="SK")))
    assert e.secret["S3_ACCESS_KEY_ID"] == "AK" and e.secret["S3_SECRET_ACCESS_KEY"] == "SK"
    assert e.plain["S3_ENDPOINT"] == "https://minio"


def test_azure_blob():
    e = buildpack_env(derive(env(), META), Bindings("pw", storage=AzureBlobStorage("acct", "files", account_key="KEY")))
    assert e.plain["AZURE_CONTAINER_NAME"] == "files"
    assert e.plain["MXRUNTIME_com_mendix_core_StorageService"] == "com.mendix.storage.azure"
    assert e.plain["MXRUNTIME_com_mendix_storage_azure_AccountName"] == "acct"
    assert e.secret["MXRUNTIME_com_mendix_storage_azure_AccountKey"] == "KEY"


def test_custom_runtime_settings_pass_through():
    s = derive(env(runtime_settings={"com.mendix.core.SessionTimeout": 600000}), META)
    assert json.loads(buildpack_env(s, Bindings("pw")).plain["CUSTOM_RUNTIME_SETTINGS"]) == {"com.mendix.core.SessionTimeout": 600000}
    assert json.loads(operator_runtime(s)["customConfiguration"]) == {"com.mendix.core.SessionTimeout": 600000}


def test_operator_constants_are_strings():
    s = derive(env(constants={"M.Size": 7, "M.On": True}), META)
    assert operator_runtime(s)["microflowConstants"] == {"M.On": "true", "M.Size": "7"}


def test_instance_index_marks_the_leader():
    from mxinfra.settings import instance_env

    assert instance_env(0) == {"CF_INSTANCE_INDEX": "0"} and instance_env(3) == {"CF_INSTANCE_INDEX": "3"}
    with pytest.raises(ValueError):
        instance_env(-1)


@pytest.mark.parametrize(
    "value",
    ["NaN", "nan", "sNaN", "Infinity", "-Infinity", float("nan"), float("inf"), "1" * 21, "0.123456789", "1e30", 12345678901234567.891, True],
)
def test_decimals_mendix_cannot_hold_are_refused(value):
    """Issue 18: Mendix's Decimal holds 20 digits before the point and 8 after; no NaN or Infinity."""
    issues = check_against_metadata(env(constants={"M.Rate": value}), META)
    assert len(issues) == 1, issues
    assert issues[0].path == "mxinfra:environments.production.constants.M.Rate"
    assert "Decimal" in issues[0].message


def test_an_unquoted_decimal_that_yaml_rounded_names_the_quoted_form():
    issues = check_against_metadata(env(constants={"M.Rate": 12345678901234567.891}), META)
    assert "rounded by YAML" in issues[0].message and "quoted" in issues[0].message


@pytest.mark.parametrize(("value", "sent"), [("1" * 20 + ".12345678", "1" * 20 + ".12345678"), (0.21, "0.21"), ("-3.5", "-3.5"), (7, "7"), ("12345678901234567.891", "12345678901234567.891")])
def test_decimals_within_mendix_precision_pass_exactly(value, sent):
    assert check_against_metadata(env(constants={"M.Rate": value}), META) == []
    assert derive(env(constants={"M.Rate": value}), META).overrides["M.Rate"] == sent


@pytest.mark.parametrize(("value", "form"), [(None, "null"), (True, "true"), (False, "false"), ([1, None], "[1, null]"), ({"a": True}, "{'a': true}")])
def test_messages_show_values_as_yaml_writes_them(value, form):
    issues = check_against_metadata(env(constants={"M.Size": value}), META)
    assert f"(got {form})" in issues[0].message
    assert "None" not in issues[0].message and "True" not in issues[0].message


def test_decimal_fraction_digits_follow_the_runtime_version():
    """Mendix 11.6 allows up to 18 digits after the point (docs/mendix.md); earlier runtimes 8."""
    from mxinfra.mda import RuntimeVersion
    from mxinfra.settings import parse_constant

    rate = META.constant("M.Rate")
    with pytest.raises(ValueError, match="8 after"):
        parse_constant(rate, "0.123456789", RuntimeVersion(10, 24, 15, 93102))
    assert parse_constant(rate, "0.123456789012345678", RuntimeVersion(11, 6, 0)) == "0.123456789012345678"
    with pytest.raises(ValueError, match="18 after"):
        parse_constant(rate, "0.1234567890123456789", RuntimeVersion(11, 6, 0))
