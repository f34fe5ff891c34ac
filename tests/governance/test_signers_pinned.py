"""Trusted signers are immutable references (issue 19, F8): a KMS alias, a bare key id and a Key Vault key
without a version are pointers someone can move, so naming one as a trusted signer is a config error; a
full key ARN, a versioned Key Vault key or a sha256: fingerprint keeps a re-pointed alias from making the
gate accept a forged record. Real KMS (moto's server) and the real Key Vault SDK (the loopback double)."""

from __future__ import annotations

from pathlib import Path

import pytest
from keyvault import FakeCredential, keyvault_double
from scaffold import EXAMPLE_MDA, app_config

from mxinfra.cli import main
from mxinfra.governance import signing
from mxinfra.governance.record import ActivityProvider
from mxinfra.mda import sha256_file

SHA = sha256_file(EXAMPLE_MDA)
OTHER = "b" * 64
KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/0d6a7c1e-0000-4000-8000-000000000001"


def deploy(url: str, signer: str, sha: str) -> None:
    """What the activity resource of acceptance writes on a deploy, signed by `signer`."""
    ActivityProvider().create(
        {
            "environment": "acceptance",
            "app": "orders",
            "repository": url,
            "packageSha256": sha,
            "packageVersion": "1.4.2.1234",
            "packagePath": "",
            "artifact": None,
            "settingsDigest": "s",
            "instances": 1,
            "grantsDigest": "g",
            "signer": signer,
        }
    )


def gated(project, url: str, trusted: list[str], prod_signer: str) -> None:  # type: ignore[no-untyped-def]
    cfg = app_config(**{"mxinfra:repository": url})
    cfg["mxinfra:signing"] = {"signers": {"production": prod_signer}, "trustedSigners": {"acceptance": trusted}}
    cfg["mxinfra:environments"] = {"production": {"requirePromotionFrom": "acceptance"}}
    project.stack("production", cfg)


def plan(project, capsys) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    code = main(["plan", "-s", "production", "-C", str(project.path)])
    return code, capsys.readouterr().err


@pytest.fixture
def kms(s3_env: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("kms", endpoint_url=s3_env)


def new_kms_key(kms) -> str:  # type: ignore[no-untyped-def]
    return str(kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"])


def test_a_repointed_kms_alias_cannot_make_the_gate_accept_a_forged_record(project, fake_target, make_url, kms, capsys) -> None:
    url = make_url("s3")
    a, b, prod = new_kms_key(kms), new_kms_key(kms), new_kms_key(kms)
    kms.create_alias(AliasName="alias/acceptance-signer", TargetKeyId=a)
    gated(project, url, ["kms:alias/acceptance-signer"], f"kms:{prod}")
    deploy(url, f"kms:{a}", OTHER)  # what really ran in acceptance, signed with A
    # the attack: whoever may move the alias points it at their key B and signs a deploy of SHA with it
    kms.update_alias(AliasName="alias/acceptance-signer", TargetKeyId=b)
    deploy(url, f"kms:{b}", SHA)
    signing._trusted_cache.clear()  # a later plan is a new process: nothing remembers where the alias pointed
    code, err = plan(project, capsys)
    assert code == 2, err
    assert "mxinfra:signing.trustedSigners.acceptance[0]: 'kms:alias/acceptance-signer' is a mutable reference" in err
    assert "a KMS alias can be re-pointed" in err and "expected kms:arn:aws:kms:REGION:ACCOUNT:key/KEY-ID" in err
    assert "Traceback" not in err
    # pinned to A's key ARN, the forged record is refused by the fingerprint of the key that signed it
    gated(project, url, [f"kms:{a}"], f"kms:{prod}")
    code, err = plan(project, capsys)
    # (B's appender trusts only B, so its record does not even chain to A's: the gate finds a break at seq 2)
    assert code == 2 and "seq 2" in err and "records were reordered, replaced or edited" in err, err
    deploy(url, f"kms:{a}", SHA)  # the real deploy of SHA, signed with A, passes
    assert plan(project, capsys)[0] == 0


def test_a_new_key_vault_version_cannot_make_the_gate_accept_a_forged_record(project, fake_target, make_url, tmp_path, monkeypatch, capsys) -> None:
    url = make_url("azblob")
    with keyvault_double(tmp_path) as (vault, ca):
        monkeypatch.setattr(signing, "KEYVAULT_CLIENT_OPTIONS", {"connection_verify": ca, "verify_challenge_resource": False})
        monkeypatch.setattr(signing, "azure_credential", lambda: FakeCredential())
        v1 = vault.create_key("acceptance")
        pinned = signing.fingerprint(vault.public_der("acceptance"))
        prod = vault.create_key("production")
        unversioned = v1.rsplit("/", 1)[0]
        gated(project, url, [unversioned], prod)
        deploy(url, v1, OTHER)
        # the attack: whoever may create keys adds a version (the double keeps only the newest) and signs with it
        forger = vault.create_key("acceptance")
        deploy(url, forger, SHA)
        signing._trusted_cache.clear()
        code, err = plan(project, capsys)
        assert code == 2, err
        assert f"mxinfra:signing.trustedSigners.acceptance[0]: '{unversioned}' is a mutable reference" in err
        assert "without a version" in err and "expected azurekv:https://VAULT.vault.azure.net/keys/NAME/VERSION" in err
        # the first version's fingerprint, pinned beside it: the new version's record is refused
        gated(project, url, [pinned], prod)
        code, err = plan(project, capsys)
        # (the new version's appender trusts only itself: its record does not chain to the first version's)
        assert code == 2 and "seq 2" in err and "records were reordered, replaced or edited" in err, err


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("kms:alias/acceptance-signer", "a KMS alias can be re-pointed"),
        ("kms:arn:aws:kms:eu-west-1:111122223333:alias/acceptance-signer", "a KMS alias can be re-pointed"),
        ("kms:0d6a7c1e-0000-4000-8000-000000000001", "whatever account and region the caller's credentials use"),
        ("kms:arn:aws:kms:*:111122223333:key/*", "not a full KMS key ARN"),
        ("kms:arn:aws:kms:eu-west-1::key/0d6a7c1e-0000-4000-8000-000000000001", "not a full KMS key ARN"),
        ("azurekv:https://acme.vault.azure.net/keys/acceptance", "without a version"),
    ],
)
def test_mutable_references_are_config_errors(project, fake_target, tmp_path, ref, why, capsys) -> None:
    cfg = app_config(**{"mxinfra:repository": (tmp_path / "repo").as_uri()})
    cfg["mxinfra:signing"] = {"signers": {"production": ref}, "trustedSigners": {"acceptance": ["sha256:" + "0" * 64, ref]}}
    project.stack("production", cfg)
    code, err = plan(project, capsys)
    assert code == 2 and "Traceback" not in err
    # named where it is trusted and where it signs (`activity verify` trusts a signer's key too)
    assert f"mxinfra:signing.trustedSigners.acceptance[1]: {ref!r} is a mutable reference: " in err
    assert f"mxinfra:signing.signers.production: {ref!r} is a mutable reference: " in err
    assert why in err and "or the key's sha256:FINGERPRINT" in err
    with pytest.raises(signing.SigningError, match="mutable reference"):
        signing.trusted_fingerprint(ref, tmp_path)  # whatever calls it without the config check


@pytest.mark.parametrize(
    "ref",
    [
        f"kms:{KEY_ARN}",
        "kms:arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef",
        "azurekv:https://acme.vault.azure.net/keys/acceptance/0123456789abcdef0123456789abcdef",
        "sha256:" + "a" * 64,
        "file:keys/acceptance.pem",
    ],
)
def test_immutable_references_are_accepted(ref) -> None:
    assert signing.mutable_reason(ref) is None
    assert signing.check_pinned(signing.check_reference(ref, for_signing=False)) == ref


def test_a_signature_that_does_not_verify_with_the_key_read_is_refused(tmp_path) -> None:
    class MovedKey(signing.LocalKeySigner):
        """A key backend whose reference named one key when its public key was read and another when it signed."""

        def public_key_der(self) -> bytes:
            return signing.LocalKeySigner(signing.generate_key_file(tmp_path / "other.pem")).public_key_der()

    moved = MovedKey(signing.generate_key_file(tmp_path / "signing.pem"), "kms:alias/moving")
    with pytest.raises(signing.SigningError, match="kms:alias/moving: the signature does not verify with the public key read for it"):
        moved.signature("c" * 64)
    good = signing.LocalKeySigner(tmp_path / "signing.pem")
    assert signing.check_signature({"signature": good.signature("c" * 64)}, "c" * 64)[1] is None


def test_a_key_arn_is_asked_of_its_own_region(kms, monkeypatch) -> None:
    arn = new_kms_key(kms)  # in moto's us-east-1
    # the caller's credentials default to another region: the ARN, not the caller, says where the key is
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert signing.trusted_fingerprint(f"kms:{arn}", Path(".")).startswith("sha256:")
