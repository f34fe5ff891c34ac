"""The runtime version is shown as metadata.json writes it (`5.15.0`, not `5.15.0.0`), and still compares."""

from __future__ import annotations

import json
import zipfile

from mxinfra.cli import main
from mxinfra.mda import RuntimeVersion

from mda_builders import MINIMAL_METADATA


def three_part_mda(path):
    meta = dict(MINIMAL_METADATA, RuntimeVersion="5.15.0", ProjectName="Legacy")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/metadata.json", json.dumps(meta))
        z.writestr("model/model.mdp", "x")
        z.writestr("web/index.html", "x")
    return path


def test_written_form_is_kept_and_order_is_numeric():
    v = RuntimeVersion.parse("5.15.0")
    assert str(v) == "5.15.0"
    assert v == RuntimeVersion(5, 15, 0, 0)
    assert RuntimeVersion.parse("10.24.15.93102") > v > RuntimeVersion.parse("5.9.9.99999")
    assert str(RuntimeVersion.parse("10.24.15.93102")) == "10.24.15.93102"


def test_inspect_and_package_list_show_it_as_written(tmp_path, capsys):
    mda = three_part_mda(tmp_path / "legacy.mda")
    assert main(["inspect", str(mda), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runtimeVersion"] == "5.15.0"
    repo = f"file://{tmp_path / 'repo'}"
    assert main(["package", "push", str(mda), "--repository", repo, "--commit", "abc123"]) == 0
    capsys.readouterr()
    assert main(["package", "list", "--json", "--repository", repo]) == 0
    assert [e["runtime_version"] for e in json.loads(capsys.readouterr().out)] == ["5.15.0"]


def test_the_operator_cr_gets_it_as_written(tmp_path, project, capsys):
    mda = three_part_mda(tmp_path / "legacy.mda")
    project.stack(
        "test",
        {
            "mxinfra:app": {"name": "legacy", "package": str(mda), "target": "kubernetes"},
            "mxinfra:kubernetes": {
                "mode": "operator",
                "ingress": {"domain": "apps.example.com"},
                "operator": {"sourceURL": "https://packages.example.com/legacy.mda", "databasePlan": "pg", "storagePlan": "s3", "podLabels": {"app": "legacy-test"}},
            },
        },
    )
    assert main(["plan", "-s", "test", "-C", str(project.path), "--json"]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    crs = [r for r in doc["resources"] if r["type"].endswith("MendixApp") and r["type"].startswith("kubernetes:")]
    assert [cr["inputs"]["spec"]["mendixRuntimeVersion"] for cr in crs] == ["5.15.0"]


def test_a_pre_release_version_as_modelers_wrote_it_is_read(tmp_path, capsys):
    """Issue 18: real metadata says `5.8.0-rc1`; the buildpack's parser reads it, and so must we."""
    v = RuntimeVersion.parse("5.8.0-rc1")
    assert str(v) == "5.8.0-rc1" and (v.major, v.minor, v.patch, v.prerelease) == (5, 8, 0, "rc1")
    assert RuntimeVersion.parse("5.7.9") < v < RuntimeVersion.parse("5.8.0") < RuntimeVersion.parse("5.8.0.1")
    meta = dict(MINIMAL_METADATA, RuntimeVersion="5.8.0-rc1", ProjectName="Legacy")
    with zipfile.ZipFile(tmp_path / "rc.mda", "w") as z:
        z.writestr("model/metadata.json", json.dumps(meta))
        z.writestr("model/model.mdp", "x")
        z.writestr("web/index.html", "x")
    assert main(["inspect", str(tmp_path / "rc.mda"), "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["runtimeVersion"] == "5.8.0-rc1"


def test_a_bad_version_message_says_what_is_accepted():
    import pytest

    for bad in ("5.8", "5.8.0.1.2", "5.8.0-", "5.8.0-rc 1", "v5.8.0"):
        with pytest.raises(ValueError) as e:
            RuntimeVersion.parse(bad)
        assert "three or four dot-separated numbers" in str(e.value) and "four numbers" not in str(e.value)
