"""Issue 18, item 6: activity records name the secrets that changed (never a value or a hash) and the
constants that changed (from/to). The provider is driven as the engine drives it: numbers as floats,
secrets plain (the dynamic provider does not accept secrets) or wrapped in the secret signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path

import pulumi
import pytest

from mxinfra.components import ENVIRONMENT_TYPE, MendixApp
from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.environments import Secret
from mxinfra.governance.activity import ActivityLog
from mxinfra.governance import signing
from mxinfra.governance.record import ActivityProvider, ReleaseIntentProvider, secrets_digest
from mxinfra.governance.store import open_store
from mxinfra.testing import Sealed, walk_inputs

from scaffold import UNGATED, app_config

KEY = "5e" * 32
OTHER_KEY = "a7" * 32
PASSWORD, ROTATED = "Adm1n-Pw-2025!x", "Adm1n-Pw-2026!y"
ENCRYPTION, ENCRYPTION_NEW = "enc-key-one-1234", "enc-key-two-5678"
# The engine's secret envelope (sdk/go/common/resource/properties.go): signature key and secret signature.
SIG_KEY, SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"


def wrapped(value):
    return {SIG_KEY: SECRET_SIG, "value": value}


def secret_values(password=PASSWORD, encryption=ENCRYPTION, **more):
    return {"adminPassword": password, "secretConstants.Encryption.EncryptionKey": encryption, **more}


def props(repo_url: str, *, key=KEY, secrets=None, constants=None, shape="plain", **over):
    digest = secrets_digest(key, secrets if secrets is not None else secret_values())
    p = {
        "environment": "acceptance",
        "app": "orders",
        "repository": repo_url,
        "packageSha256": "a" * 64,
        "packageVersion": "1.4.2.1234",
        "packagePath": "",
        "settingsDigest": "s1",
        "instances": 1.0,
        "grantsDigest": "g1",
        # the engine sends every number as a float
        "constants": {"Orders.PageSize": 25.0, "Orders.VatRate": "0.21"} if constants is None else constants,
        "secretsDigest": wrapped(digest) if shape == "wrapped" else digest,
    }
    p.update(over)
    return p


def legacy(repo_url: str, **over):
    """Inputs as a program from before this change declared them: no constants, no secretsDigest."""
    p = props(repo_url, **over)
    del p["constants"], p["secretsDigest"]
    return p


@pytest.fixture
def repo_url(tmp_path):
    return f"file://{tmp_path / 'repo'}"


def records(repo_url):
    return ActivityLog(open_store(repo_url)).records("acceptance")


def raw_records(repo_url) -> list[str]:
    """Every record as stored, the text an auditor (or anyone with read access) sees."""
    store = open_store(repo_url)
    keys = [k for k in store.list("activity/acceptance/") if re.fullmatch(r"activity/acceptance/\d{12}\.json", k)]
    return [store.get(k).decode() for k in sorted(keys)]


def hashes_and_values(*digest_inputs) -> set[str]:
    """Every value and every hash a record must never carry."""
    out = set()
    for key, values in digest_inputs:
        digest = secrets_digest(key, values)
        out |= set(values.values()) | set(digest["secrets"].values()) | {digest["keyId"]}
    return out


SHAPES = [("plain", "plain"), ("wrapped", "wrapped"), ("plain", "wrapped"), ("wrapped", "plain")]


@pytest.mark.parametrize(("old_shape", "new_shape"), SHAPES)
def test_a_rotated_secret_is_one_record_naming_only_that_secret(repo_url, old_shape, new_shape):
    provider = ActivityProvider()
    created = provider.create(props(repo_url, shape=old_shape))
    same = props(repo_url, shape=new_shape)
    assert provider.diff("x", created.outs, same).changes is False  # the envelope alone is no change
    rotated = props(repo_url, secrets=secret_values(password=ROTATED), shape=new_shape)
    assert provider.diff("x", created.outs, rotated).changes is True
    provider.update("x", created.outs, rotated)
    rec = records(repo_url)
    assert [r.action for r in rec] == ["deploy", "settings"]
    assert rec[1].changes == {"secrets": {"changed": ["adminPassword"], "added": [], "removed": []}}
    leaked = hashes_and_values((KEY, secret_values()), (KEY, secret_values(password=ROTATED)))
    stored = raw_records(repo_url)
    assert len(stored) == 2 and "adminPassword" in stored[1]
    for text in stored:
        assert not [s for s in leaked if s in text], text


def test_the_first_record_names_the_secrets_and_constants_it_started_with(repo_url):
    ActivityProvider().create(props(repo_url))
    (first,) = records(repo_url)
    assert first.action == "deploy"
    assert first.changes["secrets"] == {"changed": [], "added": ["adminPassword", "secretConstants.Encryption.EncryptionKey"], "removed": []}
    assert first.changes["constants"] == {"Orders.PageSize": {"from": None, "to": 25}, "Orders.VatRate": {"from": None, "to": "0.21"}}
    assert type(first.changes["constants"]["Orders.PageSize"]["to"]) is int
    assert "secretsDigest" not in first.changes and not [s for s in hashes_and_values((KEY, secret_values())) if s in raw_records(repo_url)[0]]


def test_a_changed_constant_lists_from_and_to(repo_url):
    provider = ActivityProvider()
    created = provider.create(props(repo_url))
    changed = props(
        repo_url,
        settingsDigest="s2",
        constants={"Orders.PageSize": 50.0, "Orders.ApiUrl": "https://api.example.test/v2"},
    )
    assert provider.diff("x", created.outs, changed).changes is True
    provider.update("x", created.outs, changed)
    last = records(repo_url)[-1]
    assert last.action == "settings"
    assert last.changes == {
        "settingsDigest": {"from": "s1", "to": "s2"},
        "constants": {
            "Orders.ApiUrl": {"from": None, "to": "https://api.example.test/v2"},
            "Orders.PageSize": {"from": 25, "to": 50},
            "Orders.VatRate": {"from": "0.21", "to": None},
        },
    }
    assert type(last.changes["constants"]["Orders.PageSize"]["from"]) is int


def test_a_changed_secret_constant_is_named_without_from_or_to(repo_url):
    provider = ActivityProvider()
    created = provider.create(props(repo_url))
    rotated = props(repo_url, secrets=secret_values(encryption=ENCRYPTION_NEW))
    provider.update("x", created.outs, rotated)
    last = records(repo_url)[-1]
    # a secret constant is never listed under constants, only by name under secrets
    assert last.changes == {"secrets": {"changed": ["secretConstants.Encryption.EncryptionKey"], "added": [], "removed": []}}
    leaked = hashes_and_values((KEY, secret_values()), (KEY, secret_values(encryption=ENCRYPTION_NEW)))
    assert not [s for s in leaked if s in raw_records(repo_url)[-1]]


def test_secrets_added_and_removed_are_named(repo_url):
    provider = ActivityProvider()
    created = provider.create(props(repo_url))
    licensed = props(repo_url, settingsDigest="s2", secrets={"adminPassword": PASSWORD, "license.key": "LK-1"})
    provider.update("x", created.outs, licensed)
    last = records(repo_url)[-1]
    assert last.changes["secrets"] == {"changed": [], "added": ["license.key"], "removed": ["secretConstants.Encryption.EncryptionKey"]}
    assert set(last.changes) == {"settingsDigest", "secrets"}


def test_a_state_from_before_the_upgrade_claims_no_change_of_secrets_or_constants(repo_url):
    provider = ActivityProvider()
    old = provider.create(legacy(repo_url))  # the state an earlier version wrote
    upgraded = props(repo_url)
    # the new inputs must reach the state (the baseline), so this is an update ...
    assert provider.diff("x", old.outs, upgraded).changes is True
    stored = provider.update("x", old.outs, upgraded)
    # ... that writes no record: nothing was applied
    assert [r.action for r in records(repo_url)] == ["deploy"]
    assert stored.outs["lastRecordSeq"] == old.outs["lastRecordSeq"] and stored.outs["lastRecordHash"] == old.outs["lastRecordHash"]
    assert stored.outs["secretsDigest"] == upgraded["secretsDigest"]
    # from then on, a rotation is recorded
    assert provider.diff("x", stored.outs, props(repo_url)).changes is False
    provider.update("x", stored.outs, props(repo_url, secrets=secret_values(password=ROTATED)))
    assert records(repo_url)[-1].changes == {"secrets": {"changed": ["adminPassword"], "added": [], "removed": []}}


def test_an_upgrade_together_with_a_deploy_records_only_the_deploy(repo_url):
    provider = ActivityProvider()
    old = provider.create(legacy(repo_url))
    provider.update("x", old.outs, props(repo_url, packageSha256="b" * 64, secrets=secret_values(password=ROTATED)))
    last = records(repo_url)[-1]
    assert last.action == "deploy"
    assert last.changes == {"packageSha256": {"from": "a" * 64, "to": "b" * 64}}


def test_a_program_without_the_new_inputs_changes_nothing(repo_url):
    # a mock run (no key) or an older program against a newer state: no update for their absence
    provider = ActivityProvider()
    created = provider.create(props(repo_url))
    assert provider.diff("x", created.outs, legacy(repo_url)).changes is False


def test_a_new_signer_or_trusted_key_is_stored_for_the_destroy_record_without_a_record(repo_url, tmp_path):
    """The delete writes its record with the signer and trusted keys the state holds: a signer rotation's first
    step (the new key listed in trustedSigners) must reach the state, or a destroy before the next release
    would chain past the new key's records (review of the appender fix)."""
    provider = ActivityProvider()
    created = provider.create(props(repo_url))
    new_key = f"file:{signing.generate_key_file(tmp_path / 'next.pem')}"
    for over in ({"trustedSigners": [new_key]}, {"signer": new_key}):
        news = props(repo_url, **over)
        assert provider.diff("x", created.outs, news).changes is True, over
        stored = provider.update("x", created.outs, news)
        assert [r.action for r in records(repo_url)] == ["deploy"] and all(stored.outs[k] == v for k, v in over.items())


def test_hashes_under_a_new_key_are_a_new_baseline_not_a_rotation(repo_url):
    provider = ActivityProvider()
    created = provider.create(props(repo_url))
    rekeyed = props(repo_url, key=OTHER_KEY)
    assert provider.diff("x", created.outs, rekeyed).changes is True
    provider.update("x", created.outs, rekeyed)
    assert len(records(repo_url)) == 1
    # with a real change at the same time, the record claims nothing about secrets
    provider.update("x", rekeyed, props(repo_url, key=KEY, instances=2.0, secrets=secret_values(password=ROTATED)))
    assert records(repo_url)[-1].changes == {"instances": {"from": 1, "to": 2}}


def test_an_unknown_digest_in_a_preview_is_a_change():
    from pulumi.output import Unknown

    olds = props("file:///unused")
    news = {**olds, "secretsDigest": Unknown()}
    assert ActivityProvider().diff("x", olds, news).changes is True


def test_the_digest_is_keyed_and_binds_each_name():
    values = {"adminPassword": "hunter2", "license.key": "hunter2"}
    digest = secrets_digest(KEY, values)
    assert set(digest["secrets"]) == {"adminPassword", "license.key"}
    expected = hmac.new(bytes.fromhex(KEY), b"adminPassword\0hunter2", hashlib.sha256).hexdigest()
    assert digest["secrets"]["adminPassword"] == expected
    # not a plain digest of the value (guessable for a weak secret), and one value under two names differs
    assert hashlib.sha256(b"hunter2").hexdigest() not in digest["secrets"].values()
    assert digest["secrets"]["adminPassword"] != digest["secrets"]["license.key"]
    other = secrets_digest(OTHER_KEY, values)
    assert other["keyId"] != digest["keyId"] and not set(other["secrets"].values()) & set(digest["secrets"].values())
    assert KEY not in json.dumps(digest)
    assert secrets_digest(None, values) is None
    assert secrets_digest(KEY, {"adminPassword": None})["secrets"] == {}


def test_the_secrets_key_is_created_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    provider = ReleaseIntentProvider()
    props = {"environment": "uat", "app": "orders", "repository": "file://repo", "packageSha256": "a" * 64, "instances": 1.0}
    first, second = provider.create(props), provider.create({**props, "environment": "test"})
    assert len(bytes.fromhex(first.outs["key"])) == 32 and first.outs["key"] != second.outs["key"]
    # a newly pickled provider (another SDK) must not make a new key, nor anything but the inputs a change
    assert provider.diff("release-intent", first.outs, {**props, "__provider": "other"}).changes is False
    assert provider.diff("release-intent", first.outs, {**props, "instances": 2.0}).replaces == []
    assert provider.update("release-intent", first.outs, {**props, "instances": 2.0}).outs["key"] == first.outs["key"]
    # the state of the SecretsKey it replaces (aliased): its key is kept, no intent is claimed
    migrated = provider.update("release-intent", {"key": first.outs["key"]}, props)
    assert migrated.outs["key"] == first.outs["key"] and migrated.outs["lastRecordSeq"] is None


# ---- the component: the inputs it builds --------------------------------------------------------------

ENVIRONMENTS = {
    "production": {
        "adminPassword": PASSWORD,
        "license": {"id": "L-1", "key": "LK-secret-1"},
        "constants": {"Orders.PageSize": 20},
        "secretConstants": {"Encryption.EncryptionKey": ENCRYPTION},
        "ungated": UNGATED,
    },
    "uat": {"role": "acceptance"},
}


@pytest.fixture
def secret_aware_fake_target(fake_target, monkeypatch):
    """The fake target, passing the core's Secret values on as Pulumi secrets (as every real target does)."""
    import fake_target as module

    real = module.buildpack_env

    def buildpack_env(settings, bindings):
        env = real(settings, bindings)
        env.secret = {k: pulumi.Output.secret(v.reveal()) if isinstance(v, Secret) else v for k, v in env.secret.items()}
        return env

    monkeypatch.setattr(module, "buildpack_env", buildpack_env)
    return fake_target


def run(pulumi_run, preview=True):
    d = prepare(RawConfig(app_config(**{"mxinfra:environments": ENVIRONMENTS}), frozenset({"mxinfra:environments"})), project="orders", stack="production", base_dir=Path("."))
    # plays the engine: the key resource's output after create
    cloud = (lambda args: {"key": KEY} if args.typ == "pulumi-python:dynamic/mxinfra:ReleaseIntent" else {})
    return pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="production", project="orders", preview=preview, outputs=cloud)


def test_the_secrets_key_is_a_secret_child_of_each_environment(secret_aware_fake_target, pulumi_run):
    res = run(pulumi_run)
    for env in ("production", "uat"):
        comp = res.one(ENVIRONMENT_TYPE, f"orders-{env}")
        key = res.one("pulumi-python:dynamic/mxinfra:ReleaseIntent", f"orders-{env}-release-intent")
        assert key.parent == comp.urn and key.name.startswith(comp.name + "-")
        assert key.additional_secret_outputs == ["key"]
        # no data: a lost key only makes the next update a new baseline (see the rekeyed test above)
        assert not key.protect and not key.retain_on_delete
        activity = res.one("pulumi-python:dynamic:Resource", f"orders-{env}-activity")
        assert key.urn in activity.dependencies  # behind the production anchor like every other child
        assert activity.additional_secret_outputs == ["secretsDigest"]
        assert isinstance(activity.inputs["secretsDigest"], Sealed)
        assert not isinstance(activity.inputs["constants"], Sealed)
    assert res.one("pulumi-python:dynamic:Resource", "orders-production-activity").inputs["constants"] == {"Orders.PageSize": 20}
    assert res.one("pulumi-python:dynamic:Resource", "orders-uat-activity").inputs["constants"] == {}


def test_the_digest_covers_every_secret_the_core_hands_the_runtime(secret_aware_fake_target, pulumi_run):
    res = run(pulumi_run, preview=False)
    activity = res.one("pulumi-python:dynamic:Resource", "orders-production-activity")
    sealed = activity.inputs["secretsDigest"]
    assert isinstance(sealed, Sealed)
    digest = sealed.value
    key = bytes.fromhex(KEY)

    def mac(name, value):
        return hmac.new(key, f"{name}\0{value}".encode(), hashlib.sha256).hexdigest()

    assert digest["secrets"] == {
        "adminPassword": mac("adminPassword", PASSWORD),
        "license.key": mac("license.key", "LK-secret-1"),
        "secretConstants.Encryption.EncryptionKey": mac("secretConstants.Encryption.EncryptionKey", ENCRYPTION),
    }
    # no secret value reaches the activity resource's inputs, secret or not
    assert not {PASSWORD, "LK-secret-1", ENCRYPTION} & {str(v) for v in walk_inputs(activity.inputs)}


def test_the_plan_shows_the_digest_as_a_secret(project, fake_target, capsys):
    from mxinfra.cli import main
    from mxinfra.testing import engine_secrets

    envs = {"acceptance": {"adminPassword": PASSWORD, "constants": {"Orders.PageSize": 20}}}
    project.stack("acceptance", app_config(**{"mxinfra:environments": envs}))
    with engine_secrets("mxinfra:environments.acceptance.adminPassword"):
        assert main(["plan", "-s", "acceptance", "-C", str(project.path), "--json"]) == 0
    out = capsys.readouterr().out
    activity = next(r for r in json.loads(out)["resources"] if r["name"] == "orders-acceptance-activity")
    assert activity["inputs"]["secretsDigest"] == "[secret]"
    assert activity["inputs"]["constants"] == {"Orders.PageSize": 20}
    assert PASSWORD not in out


def test_the_activity_table_names_a_rotation_not_a_first_deployment(tmp_path, capsys):
    from mxinfra.cli import main

    repo_url = f"file://{tmp_path / 'repo'}"
    provider = ActivityProvider()
    created = provider.create(props(repo_url))
    provider.update("activity-acceptance", created.outs, props(repo_url, secrets=secret_values(password=ROTATED)))
    assert main(["activity", "--repository", repo_url, "-e", "acceptance"]) == 0
    out = capsys.readouterr().out
    assert out.count("first deployment") == 1 and "secrets" in out
