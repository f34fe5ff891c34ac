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
