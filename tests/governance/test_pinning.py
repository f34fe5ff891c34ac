"""The package that deploys is the package that was named, on every backend: an edited index entry or
a repointed version label is refused (naming both hashes), never followed to other bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mda_builders import app_members, write_zip
from scaffold import EXAMPLE_MDA

from mxinfra.cli import main
from mxinfra.governance import PackageIntegrityError, Repository, Store
from mxinfra.governance.promotion import fetch_package
from mxinfra.mda import sha256_file

EXAMPLE_SHA = sha256_file(EXAMPLE_MDA)


@pytest.fixture
def two_packages(store: Store, tmp_path: Path) -> tuple[Repository, str, str]:
    """The example (1.4.2) and an older package (1.4.1), both pushed with labels."""
    older = write_zip(tmp_path / "older.mda", [*app_members(), ("web/old.txt", b"old")])
    repo = Repository(store)
    repo.push(older, version="1.4.1", commit=None, stories=[])
    repo.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    return repo, EXAMPLE_SHA, sha256_file(older)


def test_an_edited_index_entry_never_redirects_a_sha_reference(two_packages, store, store_url, tmp_path, monkeypatch) -> None:
    repo, new, old = two_packages
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert fetch_package(f"sha256:{new}", store_url)[0].name == f"{new}.mda"
    # the attack: index/<new>.json rewritten to describe the older package (which passed acceptance)
    entry = json.loads(store.get(f"index/{old}.json"))
    store.put(f"index/{new}.json", json.dumps(entry).encode())
    for ref in (f"sha256:{new}", f"sha256:{new[:16]}"):
        with pytest.raises(PackageIntegrityError) as err:
            fetch_package(ref, store_url)
        assert new in str(err.value) and old in str(err.value)


def test_bytes_of_another_package_under_the_named_key_are_refused(two_packages, store, store_url, tmp_path, monkeypatch) -> None:
    repo, new, old = two_packages
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store.put(f"packages/{new}.mda", store.get(f"packages/{old}.mda"))
    with pytest.raises(PackageIntegrityError) as err:
        fetch_package(f"sha256:{new}", store_url)
    assert new in str(err.value) and old in str(err.value)
    assert not (tmp_path / "cache" / "mxinfra" / "packages" / f"{new}.mda").exists()


def test_a_repointed_label_is_refused_and_reported(two_packages, store, store_url, tmp_path, monkeypatch, capsys) -> None:
    repo, new, old = two_packages
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert repo.find("1.4.2").sha256 == new
    assert main(["package", "list", "--repository", store_url]) == 0
    # the label is rewritten in place to name the older package
    store.put("versions/1.4.2.json", json.dumps({"version": "1.4.2", "sha256": old}).encode())
    with pytest.raises(PackageIntegrityError) as err:
        fetch_package("1.4.2", store_url)
    assert "repointed" in str(err.value) and old in str(err.value)
    capsys.readouterr()
    assert main(["package", "list", "--repository", store_url]) == 2
    out = capsys.readouterr()
    assert "1.4.2" in out.out  # the table is still shown
    assert "version label 1.4.2 was repointed" in out.err and old in out.err
    # a label claim rewritten to name another label is refused too
    store.put("versions/1.4.2.json", json.dumps({"version": "1.4.1", "sha256": new}).encode())
    with pytest.raises(PackageIntegrityError):
        repo.find("1.4.2")


def test_labels_are_claimed_by_conditional_create(two_packages, store, tmp_path) -> None:
    repo, new, old = two_packages
    third = write_zip(tmp_path / "third.mda", [*app_members(), ("web/third.txt", b"3")])
    from mxinfra.governance.repository import VersionConflictError

    with pytest.raises(VersionConflictError):
        repo.push(third, version="1.4.2", commit=None, stories=[])
    assert json.loads(store.get("versions/1.4.2.json"))["sha256"] == new


def test_plan_refuses_an_edited_entry_naming_both_hashes(project, fake_target, tmp_path, monkeypatch, capsys) -> None:
    from scaffold import app_config

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = (tmp_path / "repo").as_uri()
    older = write_zip(tmp_path / "older.mda", [*app_members(), ("web/old.txt", b"old")])
    assert main(["package", "push", str(older), "--repository", url, "--version", "1.4.1"]) == 0
    assert main(["package", "push", str(EXAMPLE_MDA), "--repository", url, "--version", "1.4.2"]) == 0
    old = sha256_file(older)
    cfg = app_config(**{"mxinfra:repository": url})
    cfg["mxinfra:app"]["package"] = f"sha256:{EXAMPLE_SHA}"
    project.stack("acceptance", cfg)
    assert main(["plan", "-s", "acceptance", "-C", str(project.path)]) == 0
    index = tmp_path / "repo" / "index"
    (index / f"{EXAMPLE_SHA}.json").write_text((index / f"{old}.json").read_text())
    (tmp_path / "cache" / "mxinfra" / "packages" / f"{EXAMPLE_SHA}.mda").unlink()
    capsys.readouterr()
    assert main(["plan", "-s", "acceptance", "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    assert EXAMPLE_SHA in err and old in err and "Traceback" not in err
