"""Issue 19, F9: version labels are the publishers'. A deployment of a package from a file pushed it under
its model version, so any environment's deployer could claim a label first (and a taken label was
silently dropped after the change was applied). Now a deployment pushes the package unlabelled, and a
label that a publisher gave other bytes refuses the deployment before anything is applied."""

from __future__ import annotations

import shutil
from pathlib import Path

from scaffold import EXAMPLE_MDA, app_config, example_release

from mxinfra.cli import main
from mxinfra.governance.record import ActivityProvider
from mxinfra.governance.repository import Repository
from mxinfra.governance.store import open_store

MODEL = "1.4.2.1234"  # the example package's model version


def test_a_deployment_from_a_file_claims_no_label(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLE_MDA, tmp_path / "orders.mda")
    url = f"file://{tmp_path / 'repo'}"
    from mxinfra.mda import open_mda

    sha = open_mda(tmp_path / "orders.mda").sha256()
    ActivityProvider().create(
        {
            "environment": "test", "app": "orders", "repository": url, "packageSha256": sha, "packageVersion": MODEL,
            "packagePath": "orders.mda", "settingsDigest": "s", "instances": 1, "grantsDigest": "g",
        }
    )
    repo = Repository(open_store(url))
    assert [p.sha256 for p in repo.list()] == [sha]  # transported for promotion
    assert repo.claim_of(MODEL) is None  # but no label claimed by a deployer


def test_a_label_that_names_other_bytes_refuses_the_plan_before_anything(project, fake_target, tmp_path: Path, capsys) -> None:
    url = f"file://{tmp_path / 'repo'}"
    other = example_release(tmp_path / "other.mda", "1.4.3.1301")
    Repository(open_store(url)).push(other, version=MODEL, commit=None, stories=())  # a publisher's label
    project.stack("test", app_config(**{"mxinfra:repository": url}))
    assert main(["plan", "-s", "test", "-C", str(project.path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "mxinfra:app.package" in err and f"version {MODEL} is already used by another package" in err, err
    assert f"deploy the labelled one (package: {MODEL})" in err and "Traceback" not in err
    # the same package under a label of its own bytes plans
    Repository(open_store(url)).push(EXAMPLE_MDA, version="1.4.2-good", commit=None, stories=())
    project.stack("test", app_config(**{"mxinfra:repository": f"file://{tmp_path / 'fresh'}"}))
    assert main(["plan", "-s", "test", "-C", str(project.path)]) == 0
