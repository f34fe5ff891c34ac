"""Who may say "this ran in acceptance", on every backend with its own key custody: a local key file on
file://, AWS KMS (moto's asymmetric Sign on the loopback server) on S3, Azure Key Vault (the real SDK
against the loopback double in keyvault.py) on Azure Blob. Forged, unsigned, wrongly signed and replayed
records are named by `activity verify` and refused by the gate of a production plan."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from keyvault import FakeCredential, keyvault_double
from scaffold import EXAMPLE_MDA, app_config

from mxinfra.cli import main
from mxinfra.governance import signing
from mxinfra.governance.activity import ActivityLog, record_hash
from mxinfra.governance.record import ActivityProvider
from mxinfra.governance.store import open_store
from mxinfra.mda import sha256_file

SHA = sha256_file(EXAMPLE_MDA)
OTHER = "b" * 64


@pytest.fixture
def new_key(backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """new_key(name) -> a reference to a fresh signing key held the way this backend's users hold one."""
    if backend == "file":
        def file_key(name: str) -> str:
            path = tmp_path / "keys" / f"{name}-{len(list(tmp_path.glob('keys/*')))}.pem"
            return f"file:{signing.generate_key_file(path)}"

        return file_key
    if backend == "s3":
        import boto3

        endpoint = request.getfixturevalue("s3_env")
        kms = boto3.client("kms", endpoint_url=endpoint)

        def kms_key(name: str) -> str:
            key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY", Description=name)
            return f"kms:{key['KeyMetadata']['Arn']}"

        return kms_key
    vault = request.getfixturevalue("keyvault")
    return lambda name: vault.create_key(f"{name}-{len(vault.keys)}")


@pytest.fixture
def keyvault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with keyvault_double(tmp_path) as (double, ca):
        monkeypatch.setattr(signing, "KEYVAULT_CLIENT_OPTIONS", {"connection_verify": ca, "verify_challenge_resource": False})
        monkeypatch.setattr(signing, "azure_credential", lambda: FakeCredential())
        yield double


def deploy(url: str, signer: str | None, env: str = "acceptance", sha: str = SHA, app: str = "orders") -> dict:
    props = {
        "environment": env,
        "app": app,
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
    return ActivityProvider().create(props).outs


def gated(project, url: str, trusted: list[str], prod_signer: str) -> None:  # type: ignore[no-untyped-def]
    cfg = app_config(**{"mxinfra:repository": url})
    cfg["mxinfra:signing"] = {"signers": {"production": prod_signer}, "trustedSigners": {"acceptance": trusted}}
    cfg["mxinfra:environments"] = {"production": {"requirePromotionFrom": "acceptance"}}
    project.stack("production", cfg)


def plan(project, capsys) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    code = main(["plan", "-s", "production", "-C", str(project.path)])
    return code, capsys.readouterr().err


def verify(url: str, capsys) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    code = main(["activity", "--repository", url, "verify"])
    out = capsys.readouterr()
    return code, out.err + out.out


def test_only_a_record_signed_by_a_trusted_key_passes_the_gate(project, fake_target, store_url, new_key, capsys) -> None:
    trusted, stranger, prod = new_key("acceptance"), new_key("stranger"), new_key("production")
    gated(project, store_url, [trusted], prod)
    code, err = plan(project, capsys)
    assert code == 2 and "no deploy record in 'acceptance'" in err
    # validly signed, but by a key nobody trusts for acceptance
    deploy(store_url, stranger)
    code, err = plan(project, capsys)
    assert code == 2 and "seq 1" in err and "not trusted for acceptance" in err, err
    outs = deploy(store_url, trusted)
    assert (outs["lastRecordSeq"], len(outs["lastRecordHash"])) == (2, 64)
    code, err = plan(project, capsys)
    assert code == 0, err
    record = ActivityLog(open_store(store_url)).records("acceptance")[-1]
    assert record.signature["signer"] == trusted and record.app == "orders"
    # the trusted key's record chains past the stranger's (appenders chain only to keys they trust): that
    # object is named as no record of the log, and the chain is intact
    code, said = verify(store_url, capsys)
    assert code == 2 and "seq 1 (activity/acceptance/000000000001.json): is signed by" in said and "not a record of this log: ignored" in said, said
    assert "the chain itself is intact (1 record(s), the newest seq 2)" in said, said


def test_forged_unsigned_records_are_named_and_refused(project, fake_target, store_url, new_key, capsys) -> None:
    gated(project, store_url, [new_key("acceptance")], new_key("production"))
    log = ActivityLog(open_store(store_url))
    for _ in range(2):  # the attack: anyone who can write to the store appends records
        log.append("acceptance", actor="forged", action="deploy", package_sha256=SHA, package_version=None, changes={}, app="orders")
    assert log.verify("acceptance") == []  # the chain alone is intact: only the signatures tell
    code, err = plan(project, capsys)
    assert code == 2 and "seq 1" in err and "is unsigned" in err, err
    code, out = verify(store_url, capsys)
    assert code == 2 and "seq 1" in out and "seq 2" in out and "unsigned" in out


def test_an_edited_signed_record_is_named_and_refused(project, fake_target, store_url, new_key, capsys) -> None:
    trusted = new_key("acceptance")
    gated(project, store_url, [trusted], new_key("production"))
    deploy(store_url, trusted, sha=OTHER)
    store = open_store(store_url)
    key = "activity/acceptance/000000000001.json"
    rec = json.loads(store.get(key))
    rec["package_sha256"] = SHA  # claim that acceptance ran this package, hash recomputed, signature kept
    rec["hash"] = record_hash(rec)
    store.put(key, json.dumps(rec).encode())
    store.put(f"activity/acceptance/by-package/{SHA}/000000000001.json", b'{"seq": 1}')
    code, err = plan(project, capsys)
    assert code == 2 and "seq 1" in err and "does not verify" in err, err
    code, out = verify(store_url, capsys)
    assert code == 2 and "signature that does not verify" in out


def test_a_record_replayed_from_another_environment_is_refused(project, fake_target, store_url, new_key, capsys) -> None:
    trusted = new_key("deployer")  # the same deployer signs test and acceptance
    gated(project, store_url, [trusted], new_key("production"))
    deploy(store_url, trusted, env="test")
    store = open_store(store_url)
    store.put("activity/acceptance/000000000001.json", store.get("activity/test/000000000001.json"))
    store.put(f"activity/acceptance/by-package/{SHA}/000000000001.json", b'{"seq": 1}')
    code, err = plan(project, capsys)
    assert code == 2 and "seq 1" in err and "of 'test'" in err, err
    code, out = verify(store_url, capsys)
    assert code == 2 and "acceptance: seq 1" in out


def test_a_log_replayed_from_another_app_is_refused(project, fake_target, store_url, make_url, backend, new_key, capsys) -> None:
    trusted = new_key("deployer")  # one platform team's key signs several apps' records
    gated(project, store_url, [trusted], new_key("production"))
    billing = make_url(backend, prefix="billing/repo")
    deploy(billing, trusted, app="billing")
    source, dest = open_store(billing), open_store(store_url)
    for key in source.list("activity/acceptance/"):  # the whole log, locators and hint included
        dest.put(key, source.get(key))
    code, err = plan(project, capsys)
    assert code == 2 and "seq 1" in err and "app 'billing'" in err, err
    capsys.readouterr()
    assert main(["activity", "-s", "production", "-C", str(project.path), "verify"]) == 2
    assert "app 'billing', not 'orders'" in capsys.readouterr().err


@pytest.mark.parametrize("cloud", ["s3", "azblob"])  # file:// has a development default: the test below
def test_cloud_repositories_trust_nothing_by_default(project, fake_target, cloud, make_url, capsys) -> None:
    url = make_url(cloud)
    cfg = app_config(**{"mxinfra:repository": url})
    cfg["mxinfra:environments"] = {"production": {"requirePromotionFrom": "acceptance"}}
    project.stack("production", cfg)
    code, err = plan(project, capsys)
    assert code == 2
    assert "mxinfra:signing.trustedSigners.acceptance: required" in err and "mxinfra:signing.signers.production: required" in err
    # an unsigned deploy (no signer configured for acceptance) never counts
    deploy(url, None)
    assert ActivityLog(open_store(url)).records("acceptance")[0].signature is None


def test_development_key_on_file_repositories(project, fake_target, tmp_path, capsys) -> None:
    url = (tmp_path / "repo").as_uri()
    cfg = app_config(**{"mxinfra:repository": url})
    cfg["mxinfra:environments"] = {"production": {"requirePromotionFrom": "acceptance"}}
    project.stack("production", cfg)
    deploy(url, None)  # no signer configured: the repository's development key, created on first use
    key = tmp_path / "repo" / "keys" / "dev-signing.pem"
    assert key.is_file() and oct(key.stat().st_mode & 0o777) == "0o600"
    assert plan(project, capsys)[0] == 0
    ActivityLog(open_store(url)).append("acceptance", actor="forged", action="deploy", package_sha256=SHA, package_version=None, changes={}, app="orders")
    code, err = plan(project, capsys)
    assert code == 2 and "seq 2" in err and "unsigned" in err


def test_signing_config_is_validated(project, fake_target, tmp_path, capsys) -> None:
    cfg = app_config()
    cfg["mxinfra:signing"] = {
        "signers": {"production": "sha256:" + "0" * 64, "nowhere": "kms:alias/x"},
        "trustedSigners": {"acceptance": ["gpg:abc"], "test": []},
        "extra": 1,
    }
    project.stack("production", cfg)
    code, err = plan(project, capsys)
    assert code == 2
    assert "mxinfra:signing.extra: unknown key" in err
    cfg.pop("mxinfra:signing")
    cfg["mxinfra:signing"] = {"signers": {"production": "sha256:" + "0" * 64, "nowhere": "kms:alias/x"}, "trustedSigners": {"acceptance": ["gpg:abc"], "test": []}}
    project.stack("production", cfg)
    code, err = plan(project, capsys)
    assert code == 2
    assert "mxinfra:signing.signers.production: a fingerprint can be trusted but cannot sign" in err
    assert "mxinfra:signing.signers.nowhere: unknown environment 'nowhere'" in err
    assert "mxinfra:signing.trustedSigners.acceptance[0]: 'gpg:abc' is not a key reference" in err
    assert "mxinfra:signing.trustedSigners.test: no key" in err


def test_a_wrong_kind_of_kms_key_is_refused(s3_env) -> None:
    import boto3

    rsa = boto3.client("kms", endpoint_url=s3_env).create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")
    with pytest.raises(signing.SigningError, match="expected ECC_NIST_P256/SIGN_VERIFY"):
        signing.open_signer(f"kms:{rsa['KeyMetadata']['KeyId']}", Path(".")).public_key_der()
    with pytest.raises(signing.SigningError, match="cannot get its public key"):
        signing.open_signer("kms:alias/no-such-key", Path(".")).public_key_der()


def test_key_vault_signs_through_the_sdk(keyvault) -> None:
    ref = keyvault.create_key("acceptance")
    signer = signing.open_signer(ref, Path("."))
    sig = signer.signature("c" * 64)
    found, why = signing.check_signature({"signature": sig}, "c" * 64)
    assert why is None and found == signing.fingerprint(keyvault.public_der("acceptance"))
    assert signing.check_signature({"signature": sig}, "d" * 64)[1] is not None  # bound to the hash
    assert ("POST", ref.split("127.0.0.1", 1)[1].split("/", 1)[1].join(["/", "/sign"])) in keyvault.calls


def test_trace_says_who_signed_each_deployment(tmp_path, capsys) -> None:
    url = (tmp_path / "repo").as_uri()
    assert main(["package", "push", str(EXAMPLE_MDA), "--repository", url, "--story", "ORD-42"]) == 0
    deploy(url, None)
    ActivityLog(open_store(url)).append("production", actor="forged", action="deploy", package_sha256=SHA, package_version=None, changes={}, app="orders")
    capsys.readouterr()
    assert main(["trace", "ORD-42", "--repository", url, "--json"]) == 0
    deployments = json.loads(capsys.readouterr().out)["packages"][0]["deployments"]
    by_env = {d["environment"]: d["signed_by"] for d in deployments}
    dev = signing.fingerprint(signing.dev_signer(url).public_key_der())
    # without a stack trace cannot know which keys are trusted, and says so (promotion.judge_deploy)
    assert by_env["acceptance"].endswith(f"({dev}); trust not checked (no stack given)") and by_env["acceptance"].startswith("file:")
    assert by_env["production"] == "UNVERIFIED: is unsigned"


def test_trace_with_a_stack_gives_the_gates_verdict(tmp_path, capsys) -> None:
    """trace, the gate and promote share one notion of a trusted deploy: with -s, trace asks the same question."""
    from scaffold import copy_example, record_deploy

    example = copy_example(tmp_path / "ex")
    url = (example / ".mxinfra").as_uri()
    assert main(["package", "push", str(EXAMPLE_MDA), "-C", str(example), "-s", "acceptance", "--story", "ORD-7"]) == 0
    record_deploy(example, "acceptance")
    ActivityLog(open_store(url)).append("acceptance", actor="forged", action="deploy", package_sha256=SHA, package_version=None, changes={}, app="orders")
    capsys.readouterr()
    assert main(["trace", "ORD-7", "-C", str(example), "-s", "acceptance", "--json"]) == 0
    verdicts = [d["signed_by"] for d in json.loads(capsys.readouterr().out)["packages"][0]["deployments"]]
    dev = signing.fingerprint(signing.dev_signer(url).public_key_der())
    assert verdicts[0].endswith(f"({dev})") and "trust not checked" not in verdicts[0]
    assert verdicts[1] == "UNVERIFIED: is unsigned"


def test_trace_with_a_stack_trusts_nothing_of_an_environment_it_trusts_no_key_for(tmp_path, capsys) -> None:
    """A log someone made up (`activity/prod-eu/`, their own key): with -s, no key the stack trusts signed it
    (hostile review: the verdict said trust was not checked, as if no stack had been given)."""
    from scaffold import copy_example

    example = copy_example(tmp_path / "ex")
    url = (example / ".mxinfra").as_uri()
    assert main(["package", "push", str(EXAMPLE_MDA), "-C", str(example), "-s", "acceptance", "--story", "ORD-9"]) == 0
    own = signing.LocalKeySigner(signing.generate_key_file(tmp_path / "mallory.pem"))
    ActivityLog(open_store(url), signer=own).append("prod-eu", actor="mallory", action="deploy", package_sha256=SHA, package_version=None, changes={}, app="orders")
    capsys.readouterr()
    assert main(["trace", "ORD-9", "-C", str(example), "-s", "acceptance", "--json"]) == 0
    (verdict,) = [d["signed_by"] for d in json.loads(capsys.readouterr().out)["packages"][0]["deployments"] if d["environment"] == "prod-eu"]
    assert verdict.startswith("UNTRUSTED: ") and verdict.endswith("no key is trusted for prod-eu (mxinfra:signing)"), verdict


def test_promote_ignores_forged_deploys(tmp_path, capsys) -> None:
    from scaffold import copy_example, record_deploy

    example = copy_example(tmp_path / "ex")
    record_deploy(example, "acceptance")
    url = (example / ".mxinfra").as_uri()
    # a forged, newer deploy of another package: promote must not pick it
    ActivityLog(open_store(url)).append("acceptance", actor="forged", action="deploy", package_sha256=OTHER, package_version=None, changes={}, app="orders")
    before = (example / "stacks" / "Pulumi.production.yaml").read_text()
    # promote asks the gate before writing (one notion of a trusted deploy): a log holding a forged
    # record does not verify, so nothing is promoted from it and the stack file is unchanged
    assert main(["promote", "-C", str(example), "--from", "acceptance", "--to", "production", "-s", "production"]) == 2
    assert "does not verify" in capsys.readouterr().err
    assert (example / "stacks" / "Pulumi.production.yaml").read_text() == before
