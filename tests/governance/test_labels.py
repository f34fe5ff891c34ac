"""Version labels are the publishers' (issue 19, F9): a publisher is a principal of the stack's
`mxinfra:signing.publishers` (the repository policy's --publisher). A labelled push by anyone else is
refused before anything is uploaded; a taken label fails a push loudly, naming who holds it; `package
list -s STACK` names every label claimed by a non-publisher. Two real identities on moto's STS (assumed
roles), the file backend's own identity elsewhere."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from mda_builders import MINIMAL_METADATA, app_members, write_zip
from scaffold import EXAMPLE_MDA, app_config

from mxinfra.cli import main
from mxinfra.governance import Repository, open_store
from mxinfra.governance.policy import is_publisher
from mxinfra.governance.record import ActivityProvider
from mxinfra.governance.repository import LabelTakenError, NotAPublisherError
from mxinfra.mda import sha256_file

ACCOUNT = "123456789012"  # moto's account
BUILD_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ci/build"
DEPLOY_ROLE = f"arn:aws:iam::{ACCOUNT}:role/deploy-test"


def mda(tmp_path: Path, name: str, model_version: str) -> Path:
    """A valid MDA of its own bytes whose model version (the label a deploy from a file carries) is given."""
    metadata = {**MINIMAL_METADATA, "ModelVersion": model_version}
    return write_zip(tmp_path / f"{name}.mda", [*app_members(metadata), ("web/build.txt", name.encode())])


def deploy_from_file(url: str, package: Path, version: str, env: str = "test") -> dict:
    """What the activity resource does on a deploy of a package named by its path: push it (unlabelled:
    labels are the publishers'), append a record."""
    return ActivityProvider().create(
        {
            "environment": env,
            "app": "orders",
            "repository": url,
            "packageSha256": sha256_file(package),
            "packageVersion": version,
            "packagePath": str(package),
            "artifact": None,
            "settingsDigest": "s",
            "instances": 1,
            "grantsDigest": "g",
            "signer": None,
        }
    ).outs


@pytest.fixture
def roles(s3_env: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """act(role_arn): from now on, every AWS call is made as a session of that role (moto's STS)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=s3_env)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]})
    for arn in (BUILD_ROLE, DEPLOY_ROLE):
        path, name = "/" + "/".join(arn.split(":role/")[1].split("/")[:-1]), arn.rsplit("/", 1)[1]
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):  # the moto server lives for the session
            iam.create_role(RoleName=name, Path=path.rstrip("/") + "/", AssumeRolePolicyDocument=trust)
    sts = boto3.client("sts", endpoint_url=s3_env)

    def act(role: str) -> None:
        creds = sts.assume_role(RoleArn=role, RoleSessionName="session")["Credentials"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
        monkeypatch.setenv("AWS_SESSION_TOKEN", creds["SessionToken"])

    return act


def run(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_deployer_cannot_squat_a_label_unnoticed(project, fake_target, make_url, roles, tmp_path, capsys) -> None:
    url = make_url("s3")
    cfg = app_config(**{"mxinfra:repository": url})
    cfg["mxinfra:signing"] = {"publishers": [BUILD_ROLE]}
    project.stack("production", cfg)
    stack = ["-s", "production", "-C", str(project.path)]
    squat, release = mda(tmp_path, "squat", "1.5.0"), mda(tmp_path, "release", "1.5.0")

    # test's deployer deploys a branch build from a file first: the activity resource pushes it, unlabelled
    roles(DEPLOY_ROLE)
    deploy_from_file(url, squat, "1.5.0")
    assert open_store(url).get("versions/1.5.0.json") is None  # issue 19, F9: a deployment claims no label
    # a deployer who pushes another build with the label itself (moto does not evaluate the bucket policy
    # that forbids it, and the library cannot know who it is not: the listing must say)
    from mxinfra.governance.repository import Repository

    squat = mda(tmp_path, "squat-2", "1.5.0")
    Repository(open_store(url)).push(squat, version="1.5.0", commit=None, stories=())
    assert json.loads(open_store(url).get("versions/1.5.0.json"))["sha256"] == sha256_file(squat)
    # the publisher's release under that label fails loudly, naming who holds it
    roles(BUILD_ROLE)
    code, _, err = run(capsys, "package", "push", str(release), "--version", "1.5.0", *stack)
    assert code == 2 and "Traceback" not in err, err
    assert "version 1.5.0 is already used by another package" in err
    assert f"claimed by arn:aws:sts::{ACCOUNT}:assumed-role/deploy-test/session, who is not a publisher" in err
    # and the listing names the squatted label (exit 2, the table still shown)
    code, out, err = run(capsys, "package", "list", *stack)
    assert code == 2 and "1.5.0" in out, err
    assert f"version label 1.5.0 (sha256:{sha256_file(squat)}) was claimed by arn:aws:sts::{ACCOUNT}:assumed-role/deploy-test/session" in err
    assert "who is not a publisher (mxinfra:signing.publishers: " + BUILD_ROLE in err
    # without -s nobody is known to be a publisher: the listing cannot judge, and says nothing
    assert run(capsys, "package", "list", "--repository", url)[0] == 0


def test_only_a_publisher_labels_a_push(project, fake_target, make_url, roles, tmp_path, capsys) -> None:
    url = make_url("s3")
    cfg = app_config(**{"mxinfra:repository": url})
    cfg["mxinfra:signing"] = {"publishers": [BUILD_ROLE]}
    project.stack("production", cfg)
    stack = ["-s", "production", "-C", str(project.path)]
    store = open_store(url)

    roles(DEPLOY_ROLE)
    code, _, err = run(capsys, "package", "push", str(EXAMPLE_MDA), "--version", "1.4.2", *stack)
    assert code == 2 and "Traceback" not in err
    assert "only publishers give packages version labels" in err and "assumed-role/deploy-test/session is not one" in err
    assert store.list("") == []  # refused before anything was uploaded
    # no label asked for: the bytes are stored by hash, the model version is left for the publisher
    code, _, err = run(capsys, "package", "push", str(EXAMPLE_MDA), *stack)
    assert code == 0 and "not labelled '1.4.2.1234'" in err, err
    assert store.list("versions/") == []

    roles(BUILD_ROLE)
    release = mda(tmp_path, "release", "1.6.0")
    assert run(capsys, "package", "push", str(release), "--version", "1.6.0", *stack)[0] == 0
    claim = json.loads(store.get("versions/1.6.0.json"))
    assert claim["sha256"] == sha256_file(release) and claim["by"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/build/session"
    assert run(capsys, "package", "list", *stack)[0] == 0


def test_publishers_are_checked_against_the_repository_cloud(project, fake_target, capsys) -> None:
    cfg = app_config(**{"mxinfra:repository": "s3://orders-repo/governance"})
    cfg["mxinfra:signing"] = {"publishers": ["build", "arn:aws:iam::123456789012:role/*"]}
    project.stack("production", cfg)
    code, _, err = run(capsys, "package", "list", "-s", "production", "-C", str(project.path))
    assert code == 2 and "Traceback" not in err
    assert "mxinfra:signing.publishers[0]: 'build': expected an IAM role or user ARN" in err
    assert "mxinfra:signing.publishers[1]: 'arn:aws:iam::123456789012:role/*'" in err
    # the same check in a plan
    assert run(capsys, "plan", "-s", "production", "-C", str(project.path))[0] == 2


def test_the_repository_refuses_a_non_publisher_label(store_url, tmp_path) -> None:
    store = open_store(store_url)
    me = store.identity()
    stranger = Repository(store, publishers=["someone-else"])
    assert not stranger.may_label()
    with pytest.raises(NotAPublisherError, match=f"only publishers give packages version labels, and {me} is not one"):
        stranger.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    assert store.list("") == []
    entry, _ = stranger.push(EXAMPLE_MDA, version=None, commit=None, stories=[])  # bytes by hash only
    assert entry.version is None and store.list("versions/") == []
    publisher = Repository(store, publishers=[me])
    other = mda(tmp_path, "other", "1.4.2")
    assert publisher.push(other, version="1.4.2", commit=None, stories=[])[0].version == "1.4.2"
    assert publisher.label_conflict("1.4.2", sha256_file(other)) is None
    taken = publisher.label_conflict("1.4.2", entry.sha256)
    assert taken is not None and f"claimed by {me}" in taken and "not a publisher" not in taken
    with pytest.raises(LabelTakenError):
        publisher.push(mda(tmp_path, "third", "1.4.2"), version="1.4.2", commit=None, stories=[])
    assert publisher.label_problems() == []
    assert "claimed by " + me in stranger.label_problems()[0] and "not a publisher" in stranger.label_problems()[0]


def test_a_label_claimed_before_claims_named_their_claimant_is_judged_by_its_entry(tmp_path) -> None:
    url = (tmp_path / "repo").as_uri()
    store = open_store(url)
    Repository(store).push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    # a claim as the previous release wrote it: the package and the label, nobody named
    store.put("versions/1.4.2.json", json.dumps({"version": "1.4.2", "sha256": sha256_file(EXAMPLE_MDA)}).encode())
    problems = Repository(store, publishers=["someone-else"]).label_problems()
    assert len(problems) == 1 and f"claimed by {store.identity()}, who is not a publisher" in problems[0]
    assert Repository(store, publishers=[store.identity()]).label_problems() == []


def test_a_deploy_keeps_its_record_when_the_store_refuses_it_a_label(tmp_path) -> None:
    """Under the rendered policy the store refuses a deployer any write under versions/ (here `versions` is a
    file, so nothing can be created under it): the activity resource still pushes the package and records
    the deploy, unlabelled, instead of failing a deployment that was already applied."""
    url = (tmp_path / "repo").as_uri()
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "versions").write_text("nothing can be created under here\n")
    package = mda(tmp_path, "branch", "1.5.0")
    outs = deploy_from_file(url, package, "1.5.0")
    assert outs["lastRecordSeq"] == 1
    entry = Repository(open_store(url)).find(f"sha256:{sha256_file(package)}")
    assert entry.version is None


@pytest.mark.parametrize(
    ("identity", "publisher", "expected"),
    [
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/build/ci-42", BUILD_ROLE, True),  # a session of the role (path dropped)
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/build/ci-42", f"arn:aws:iam::{ACCOUNT}:role/build", True),
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/build/ci-42", f"arn:aws:iam::{ACCOUNT}:user/build", False),
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/build/ci-42", "arn:aws:iam::210987654321:role/ci/build", False),
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy-test/x", BUILD_ROLE, False),
        (f"arn:aws:iam::{ACCOUNT}:user/alice", f"arn:aws:iam::{ACCOUNT}:user/alice", True),
        ("alice@example.com (oid 0f8fad5b-d9cb-469f-a165-70867728950e)", "0f8fad5b-d9cb-469f-a165-70867728950e", True),
        ("app:1234 (oid 0f8fad5b-d9cb-469f-a165-70867728950e)", "0f8fad5b-d9cb-469f-a165-70867728950f", False),
        ("account:devstoreaccount1", "0f8fad5b-d9cb-469f-a165-70867728950e", False),
        ("alice alice@example.com", "alice@example.com", True),
        ("alice alice@example.com", "bob", False),
    ],
)
def test_who_is_a_publisher(identity: str, publisher: str, expected: bool) -> None:
    assert is_publisher(identity, [publisher]) is expected
