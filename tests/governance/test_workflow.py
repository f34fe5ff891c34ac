"""Governance end to end on the file backend: the activity resource's provider, staged promotion,
`promote`, `trace`, package references in stack config. Backends themselves: test_contract.py."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from mxinfra.cli import main
from mxinfra.governance.activity import ActivityLog
from mxinfra.governance.record import ActivityProvider, TRACKED
from mxinfra.governance.repository import Repository
from mxinfra.governance.store import open_store

from scaffold import EXAMPLE_MDA, app_config


def props(repo_url: str, env: str = "acceptance", sha: str = "a" * 64, **over):
    p = {
        "environment": env,
        "app": "orders",
        "repository": repo_url,
        "packageSha256": sha,
        "packageVersion": "1.4.2.1234",
        "packagePath": "",
        "settingsDigest": "s1",
        "instances": 1,
        "grantsDigest": "g1",
    }
    p.update(over)
    return p


@pytest.fixture
def repo_url(tmp_path):
    return f"file://{tmp_path / 'repo'}"


def test_provider_create_update_diff_delete(repo_url):
    provider = ActivityProvider()
    created = provider.create(props(repo_url))
    assert created.id == "activity-acceptance"
    log = ActivityLog(open_store(repo_url))
    first = log.records("acceptance")
    assert [(r.action, r.seq) for r in first] == [("deploy", first[0].seq)]
    assert first[0].package_sha256 == "a" * 64 and first[0].actor

    same = provider.diff("activity-acceptance", created.outs, props(repo_url))
    assert same.changes is False and not same.replaces
    scaled = props(repo_url, instances=3)
    d = provider.diff("activity-acceptance", created.outs, scaled)
    assert d.changes is True and not d.replaces
    provider.update("activity-acceptance", created.outs, scaled)
    provider.update("activity-acceptance", scaled, props(repo_url, instances=3, sha="b" * 64, grantsDigest="g2"))
    provider.delete("activity-acceptance", props(repo_url, instances=3, sha="b" * 64, grantsDigest="g2"))
    records = log.records("acceptance")
    assert [r.action for r in records] == ["deploy", "scale", "deploy", "destroy"]
    assert records[1].changes == {"instances": {"from": 1, "to": 3}}
    assert set(records[2].changes) == {"packageSha256", "grantsDigest"}
    assert log.verify("acceptance") == []
    assert set(TRACKED) == {"packageSha256", "artifact", "settingsDigest", "instances", "grantsDigest"}


def test_counts_the_engine_sends_as_floats_are_recorded_as_counts(repo_url):
    # the real engine passes a dynamic provider its numbers as floats (found by the engine suite)
    provider = ActivityProvider()
    created = provider.create(props(repo_url, instances=1.0))
    provider.update("activity-acceptance", created.outs, props(repo_url, instances=3.0))
    records = ActivityLog(open_store(repo_url)).records("acceptance")
    assert records[0].changes["instances"] == {"from": None, "to": 1}
    assert records[1].changes == {"instances": {"from": 1, "to": 3}}
    assert all(type(v) is int for v in (records[0].changes["instances"]["to"], records[1].changes["instances"]["to"]))


def test_a_new_image_is_a_deployment(repo_url):
    provider = ActivityProvider()
    first = props(repo_url, artifact="registry.example.com/orders:1.4.2")
    provider.create(first)
    swapped = props(repo_url, artifact="registry.example.com/orders:untested")
    assert provider.diff("x", first, swapped).changes is True
    provider.update("x", first, swapped)
    last = ActivityLog(open_store(repo_url)).records("acceptance")[-1]
    assert last.action == "deploy" and last.artifact == "registry.example.com/orders:untested"
    assert last.changes == {"artifact": {"from": "registry.example.com/orders:1.4.2", "to": "registry.example.com/orders:untested"}}


def test_a_rebuilt_package_with_the_same_version_still_records_and_labels_nothing(repo_url, tmp_path):
    from mxinfra.mda import sha256_file

    rebuilt = tmp_path / "rebuilt.mda"
    with zipfile.ZipFile(EXAMPLE_MDA) as src, zipfile.ZipFile(rebuilt, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.comment = b"rebuilt"
    provider = ActivityProvider()
    provider.create(props(repo_url, sha=sha256_file(EXAMPLE_MDA), packagePath=str(EXAMPLE_MDA)))
    provider.update("x", props(repo_url), props(repo_url, sha=sha256_file(rebuilt), packagePath=str(rebuilt)))
    records = ActivityLog(open_store(repo_url)).records("acceptance")
    assert [r.action for r in records] == ["deploy", "deploy"]
    entries = {e.sha256: e.version for e in Repository(open_store(repo_url)).list()}
    # transported for promotion, labelled by no deployment (issue 19, F9: labels are the publishers')
    assert entries == {sha256_file(EXAMPLE_MDA): None, sha256_file(rebuilt): None}


def test_gate_refuses_when_the_source_log_does_not_verify(repo_url):
    from mxinfra.environments import Environment, Role
    from mxinfra.governance.promotion import promotion_issues

    prod = Environment(name="production", role=Role.PRODUCTION, require_promotion_from="acceptance", config_path="mxinfra:environments.production")
    ActivityProvider().create(props(repo_url, sha="a" * 64))
    assert promotion_issues([prod], "a" * 64, {}, repo_url) == []
    assert promotion_issues([prod], "b" * 64, {}, repo_url)  # another package
    store = open_store(repo_url)
    key = store.list("activity/acceptance/")[0]
    rec = json.loads(store.get(key))
    rec["actor"] = "forged"
    Path(repo_url[len("file://"):], key).write_text(json.dumps(rec))
    issues = promotion_issues([prod], "a" * 64, {}, repo_url)
    assert issues and "does not verify" in issues[0].message


def test_first_deploy_pushes_the_package_once(repo_url):
    sha = __import__("mxinfra.mda", fromlist=["sha256_file"]).sha256_file(EXAMPLE_MDA)
    ActivityProvider().create(props(repo_url, sha=sha, packagePath=str(EXAMPLE_MDA)))
    entries = Repository(open_store(repo_url)).list()
    assert [e.sha256 for e in entries] == [sha]


def gated_project(project, repo_url):
    cfg = app_config(**{"mxinfra:repository": repo_url})
    cfg["mxinfra:environments"] = {"production": {"requirePromotionFrom": "acceptance"}}
    project.stack("production", cfg)
    acc = app_config(**{"mxinfra:repository": repo_url})
    project.stack("acceptance", acc)
    return project


def test_production_refuses_a_package_that_did_not_pass_acceptance(project, fake_target, repo_url, capsys):
    gated_project(project, repo_url)
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    assert "requirePromotionFrom" in err and "no deploy record in 'acceptance'" in err
    # once acceptance ran it (as `pulumi up` would record), production accepts it
    sha = __import__("mxinfra.mda", fromlist=["sha256_file"]).sha256_file(EXAMPLE_MDA)
    ActivityProvider().create(props(repo_url, sha=sha, packagePath=str(EXAMPLE_MDA)))
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 0


def test_plan_writes_nothing_to_the_repository(project, fake_target, tmp_path, capsys):
    project.stack("acceptance", app_config())
    assert main(["plan", "-s", "acceptance", "-C", str(project.path)]) == 0
    assert not (project.path / ".mxinfra").exists()
    capsys.readouterr()
    doc_rc = main(["plan", "-s", "acceptance", "-C", str(project.path), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc_rc == 0
    activity = [r for r in doc["resources"] if r["name"] == "orders-acceptance-activity"]
    assert activity and activity[0]["type"] == "pulumi-python:dynamic:Resource"
    assert activity[0]["inputs"]["__provider"] == "[dynamic provider]"
    assert activity[0]["inputs"]["instances"] == 1
    assert not (project.path / ".mxinfra").exists()


def test_promote_rewrites_the_stack_file_keeping_comments(project, fake_target, repo_url, capsys):
    gated_project(project, repo_url)
    f = project.path / "stacks" / "Pulumi.production.yaml"
    f.write_text("# production: only what passed acceptance\n" + f.read_text().replace("  mxinfra:environments:", "  # gated\n  mxinfra:environments:"))
    assert main(["promote", "-C", str(project.path), "--from", "acceptance", "--to", "production"]) == 2
    assert "no deploy recorded" in capsys.readouterr().err
    sha = __import__("mxinfra.mda", fromlist=["sha256_file"]).sha256_file(EXAMPLE_MDA)
    ActivityProvider().create(props(repo_url, sha=sha, packagePath=str(EXAMPLE_MDA)))
    assert main(["promote", "-C", str(project.path), "--from", "acceptance", "--to", "production"]) == 0
    text = f.read_text()
    assert text.startswith("# production: only what passed acceptance") and "# gated" in text
    assert yaml.safe_load(text)["config"]["mxinfra:app"]["package"] == f"sha256:{sha}"
    assert str(EXAMPLE_MDA) in capsys.readouterr().out


def test_stack_naming_a_repository_package(project, fake_target, repo_url, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["package", "push", str(EXAMPLE_MDA), "--repository", repo_url, "--version", "1.4.2", "--story", "ORD-42"]) == 0
    assert main(["package", "push", str(EXAMPLE_MDA), "--repository", repo_url]) == 0
    assert "nothing uploaded" in capsys.readouterr().out
    cfg = app_config(**{"mxinfra:repository": repo_url})
    cfg["mxinfra:app"]["package"] = "1.4.2"
    project.stack("acceptance", cfg)
    assert main(["plan", "-s", "acceptance", "-C", str(project.path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    sha = doc["package"]["sha256"]
    assert (tmp_path / "cache" / "mxinfra" / "packages" / f"{sha}.mda").exists()
    # a tampered repository blob is never used
    (Path(repo_url[len("file://"):]) / "packages" / f"{sha}.mda").write_bytes(b"PK tampered")
    (tmp_path / "cache" / "mxinfra" / "packages" / f"{sha}.mda").unlink()
    assert main(["plan", "-s", "acceptance", "-C", str(project.path)]) == 2
    assert "sha256" in capsys.readouterr().err.lower()


def test_trace_a_story_to_its_deployments(repo_url, capsys):
    assert main(["package", "push", str(EXAMPLE_MDA), "--repository", repo_url, "--version", "1.4.2", "--story", "ORD-42"]) == 0
    sha = __import__("mxinfra.mda", fromlist=["sha256_file"]).sha256_file(EXAMPLE_MDA)
    ActivityProvider().create(props(repo_url, env="acceptance", sha=sha))
    ActivityProvider().create(props(repo_url, env="production", sha=sha))
    capsys.readouterr()
    assert main(["trace", "ORD-42", "--repository", repo_url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["version"] for p in doc["packages"]] == ["1.4.2"]
    assert [d["environment"] for d in doc["packages"][0]["deployments"]] == ["acceptance", "production"]
    assert main(["trace", "ORD-99", "--repository", repo_url]) == 0
    assert "no package" in capsys.readouterr().out


def test_activity_listing_csv_and_verify(repo_url, capsys):
    ActivityProvider().create(props(repo_url))
    ActivityProvider().update("x", props(repo_url), props(repo_url, instances=2))
    capsys.readouterr()
    assert main(["activity", "--repository", repo_url, "-e", "acceptance", "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("time,environment,action") and len(lines) == 3
    assert ",scale," in lines[1]  # newest first
    assert main(["activity", "--repository", repo_url, "verify"]) == 0
    store = open_store(repo_url)
    key = store.list("activity/acceptance/")[0]
    rec = json.loads(store.get(key))
    rec["actor"] = "someone-else"
    Path(repo_url[len("file://"):], key).write_text(json.dumps(rec))
    capsys.readouterr()
    assert main(["activity", "--repository", repo_url, "verify"]) == 2
    err = capsys.readouterr().err
    assert key in err or f"seq {rec['seq']}" in err, err


def test_the_verified_image_is_signed_into_the_record(repo_url, capsys):
    """Issue 20: the record carries what `pulumi up` verified the image to hold, under the signature."""
    verified = {"digest": "sha256:" + "a" * 64, "layer": "sha256:" + "b" * 64, "members": 3, "verified": True}
    ActivityProvider().create({**props(repo_url), "image": verified})
    capsys.readouterr()
    assert main(["activity", "--repository", repo_url, "-e", "acceptance", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["image"] == verified and row["artifact"] is None
    assert main(["activity", "--repository", repo_url, "verify"]) == 0
    store = open_store(repo_url)
    key = store.list("activity/acceptance/")[0]
    rec = json.loads(store.get(key))
    rec["image"]["digest"] = "sha256:" + "c" * 64  # another image passed off as the verified one
    Path(repo_url[len("file://"):], key).write_text(json.dumps(rec))
    capsys.readouterr()
    assert main(["activity", "--repository", repo_url, "verify"]) == 2


def test_push_takes_commit_and_stories_from_git(tmp_path, repo_url, capsys):
    work = tmp_path / "app"
    work.mkdir()
    mda = work / "app.mda"
    mda.write_bytes(EXAMPLE_MDA.read_bytes())

    def git(*args):
        subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.test", *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "ORD-7 add invoices, fixes #12")
    assert main(["package", "push", str(mda), "--repository", repo_url]) == 0
    entry = Repository(open_store(repo_url)).list()[0]
    assert entry.stories == ("ORD-7", "#12") and entry.commit and len(entry.commit) == 40


@pytest.mark.parametrize("stack", ["production", "aws-production"])
def test_bundled_production_stacks_are_gated(stack, tmp_path, capsys):
    from scaffold import copy_example, record_deploy

    fresh = copy_example(tmp_path / "fresh")
    assert main(["plan", "-s", stack, "-C", str(fresh)]) == 2
    assert "no deploy record in 'acceptance'" in capsys.readouterr().err
    # acceptance ran the same package, but another target's image: still not what production would run
    other = "aws-acceptance" if stack == "production" else "acceptance"
    record_deploy(fresh, other)
    assert main(["plan", "-s", stack, "-C", str(fresh)]) == 2
    assert "has no deploy record" in capsys.readouterr().err
    record_deploy(fresh, "aws-acceptance" if stack == "aws-production" else "acceptance")
    assert main(["plan", "-s", stack, "-C", str(fresh)]) == 0


def test_missing_or_unreachable_repository_exits_2_naming_url_and_cause(s3_env, monkeypatch, capsys):
    assert main(["package", "list", "--repository", "s3://no-such-bucket-mx/p"]) == 2
    err = capsys.readouterr().err
    assert "s3://no-such-bucket-mx/p" in err and "does not exist" in err and "Traceback" not in err
    from servers import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["activity", "--repository", "s3://bucket/p"]) == 2
    err = capsys.readouterr().err
    assert "s3://bucket/p: unreachable" in err
    assert main(["package", "list", "--repository", "ftp://x/y"]) == 2
    assert "ftp://x/y" in capsys.readouterr().err


def test_promote_changes_exactly_one_line_of_the_example_stack(tmp_path, capsys):
    from scaffold import copy_example, record_deploy

    example = copy_example(tmp_path / "ex")
    record_deploy(example, "acceptance")
    stack_file = example / "stacks" / "Pulumi.production.yaml"
    before = stack_file.read_text().splitlines()
    assert main(["promote", "-C", str(example), "--from", "acceptance", "--to", "production"]) == 2
    assert "-s STACK" in capsys.readouterr().err  # both examples declare production
    assert main(["promote", "-C", str(example), "--from", "acceptance", "--to", "production", "-s", "production"]) == 0
    after = stack_file.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 1
    assert changed[0][0].strip() == "package: examples/orders/orders-1.4.2.mda"
    assert changed[0][1].strip().startswith("package: sha256:")
    # and the promoted stack now plans: production gets exactly what acceptance ran
    assert main(["plan", "-s", "production", "-C", str(example)]) == 0


def test_stories_can_be_attached_after_the_first_push(repo_url, capsys):
    sha = __import__("mxinfra.mda", fromlist=["sha256_file"]).sha256_file(EXAMPLE_MDA)
    # deployed from a file first: the activity resource pushed it without stories
    ActivityProvider().create(props(repo_url, sha=sha, packagePath=str(EXAMPLE_MDA)))
    assert main(["package", "push", str(EXAMPLE_MDA), "--repository", repo_url, "--story", "ORD-1", "--story", "ORD-2"]) == 0
    assert main(["package", "push", str(EXAMPLE_MDA), "--repository", repo_url, "--story", "ORD-2"]) == 0
    capsys.readouterr()
    assert main(["trace", "ORD-1", "--repository", repo_url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["sha256"] for p in doc["packages"]] == [sha]
    assert [d["environment"] for d in doc["packages"][0]["deployments"]] == ["acceptance"]
    assert Repository(open_store(repo_url)).list()[0].stories == ("ORD-1", "ORD-2")
    assert len(open_store(repo_url).list(f"annotations/{sha}/")) == 1  # nothing new the second time


NEW_IMAGE = "registry.example.com/orders/orders:1.4.3@sha256:" + "7" * 64


def test_promote_carries_the_artifact_the_gate_compares(tmp_path, capsys):
    """Issue 18: promote wrote the package but not the image acceptance ran, so the gate refused and its
    hint said to run promote (a loop). Now both land in one write and the promoted stack plans."""
    from scaffold import copy_example, record_deploy

    example = copy_example(tmp_path / "ex")
    acceptance = example / "stacks" / "Pulumi.acceptance.yaml"
    old_image = yaml.safe_load(acceptance.read_text())["config"]["mxinfra:kubernetes"]["image"]
    acceptance.write_text(acceptance.read_text().replace(old_image, NEW_IMAGE))
    record_deploy(example, "acceptance")
    production = example / "stacks" / "Pulumi.production.yaml"
    before = production.read_text().splitlines()
    assert main(["plan", "-s", "production", "-C", str(example)]) == 2  # acceptance ran another image
    capsys.readouterr()
    assert main(["promote", "-C", str(example), "--from", "acceptance", "--to", "production", "-s", "production"]) == 0
    out = capsys.readouterr().out
    assert "mxinfra:kubernetes.image" in out and NEW_IMAGE in out
    after = production.read_text().splitlines()
    changed = [(a.strip(), b.strip()) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 2, changed
    assert changed[0][1].startswith("package: sha256:") and changed[1] == (f"image: {old_image}", f"image: {NEW_IMAGE}")
    assert main(["plan", "-s", "production", "-C", str(example)]) == 0, capsys.readouterr().err


def test_promote_refuses_a_source_the_destination_does_not_take(tmp_path, capsys):
    """--from must be the destination's requirePromotionFrom: the gate would refuse it later anyway."""
    from scaffold import copy_example, record_deploy

    example = copy_example(tmp_path / "ex")
    record_deploy(example, "test")
    production = example / "stacks" / "Pulumi.production.yaml"
    before = production.read_text()
    assert main(["promote", "-C", str(example), "--from", "test", "--to", "production", "-s", "production"]) == 2
    err = capsys.readouterr().err
    assert "requirePromotionFrom is 'acceptance'" in err and "--from acceptance" in err
    assert production.read_text() == before


def test_the_plan_header_names_a_repository_package_by_its_label(project, fake_target, repo_url, capsys, tmp_path, monkeypatch):
    """Issue 18: the header showed the cache file's name (`<sha256>.mda`)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["package", "push", str(EXAMPLE_MDA), "--repository", repo_url, "--version", "1.4.2"]) == 0
    cfg = app_config(**{"mxinfra:repository": repo_url})
    cfg["mxinfra:app"]["package"] = "1.4.2"
    project.stack("acceptance", cfg)
    capsys.readouterr()
    assert main(["plan", "-s", "acceptance", "-C", str(project.path)]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "package 1.4.2 from the repository (sha256 " in header and ".mda" not in header
