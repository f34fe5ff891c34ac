"""The package repository on every backend: push once, validate first, find, fetch verified by hash."""

from __future__ import annotations

import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from scaffold import EXAMPLE_MDA
from mda_builders import app_members, write_zip, zinfo

from mxinfra.errors import UserError
from mxinfra.governance import PackageEntry, PackageIntegrityError, Repository, Store
from mxinfra.mda import sha256_file

EXAMPLE_SHA = sha256_file(EXAMPLE_MDA)


def other_mda(tmp_path: Path, name: str = "other.mda", extra: bytes = b"") -> Path:
    """A valid MDA with different bytes from the example."""
    return write_zip(tmp_path / name, [*app_members(), ("web/extra.txt", b"extra" + extra)])


def test_push_stores_package_and_entry(store: Store) -> None:
    repo = Repository(store)
    entry, uploaded = repo.push(EXAMPLE_MDA, version="1.4.2", commit="abc123", stories=["ORD-1", "ORD-2", "ORD-1"])
    assert uploaded is True
    assert entry.sha256 == EXAMPLE_SHA
    assert entry.version == "1.4.2"
    assert entry.project_name == "Orders"
    assert entry.runtime_version == "10.24.15.93102"
    assert entry.model_version == "1.4.2.1234"
    assert entry.size_bytes == EXAMPLE_MDA.stat().st_size
    assert entry.commit == "abc123"
    assert entry.stories == ("ORD-1", "ORD-2")
    assert entry.file_name == "orders-1.4.2.mda"
    assert entry.uploaded_by == store.identity()
    assert entry.uploaded_at.endswith("Z") and "T" in entry.uploaded_at
    assert store.list("") == [
        f"index/{EXAMPLE_SHA}.json",
        f"packages/{EXAMPLE_SHA}.mda",
        "versions/1.4.2.json",
    ]
    assert repo.list() == [entry]
    assert PackageEntry.from_json(json.loads(json.dumps(entry.to_json()))) == entry


def test_pushing_the_same_bytes_again_is_a_no_op(store: Store) -> None:
    repo = Repository(store)
    first, _ = repo.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    before = {k: store.get(k) for k in store.list("")}
    seen: list[int] = []
    again, uploaded = repo.push(EXAMPLE_MDA, version=None, commit="other", stories=["X-1"], progress=seen.append)
    assert uploaded is False
    assert seen == []
    # the entry is unchanged but for the story attached beside it
    assert again.stories == ("X-1",) and again.commit == first.commit and again.version == first.version
    after = {k: store.get(k) for k in store.list("")}
    added = set(after) - set(before)
    assert len(added) == 1 and next(iter(added)).startswith(f"annotations/{first.sha256}/")
    assert {k: v for k, v in after.items() if k not in added} == before
    same_label, uploaded = repo.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    assert uploaded is False and same_label == again
    assert {k: store.get(k) for k in store.list("")} == after


def test_concurrent_pushes_of_the_same_bytes_upload_once(store: Store) -> None:
    repo = Repository(store)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: repo.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[]), range(6)))
    assert [uploaded for _, uploaded in results].count(True) == 1
    assert len({entry for entry, _ in results}) == 1
    assert len(repo.list()) == 1


def test_a_version_label_used_by_other_bytes_is_refused(store: Store, tmp_path: Path) -> None:
    repo = Repository(store)
    repo.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    with pytest.raises(UserError, match="version 1.4.2 is already used by another package"):
        repo.push(other_mda(tmp_path), version="1.4.2", commit=None, stories=[])
    assert len(repo.list()) == 1
    assert store.list("packages/") == [f"packages/{EXAMPLE_SHA}.mda"]


def test_the_same_bytes_keep_their_first_label(store: Store) -> None:
    repo = Repository(store)
    first, _ = repo.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    again, uploaded = repo.push(EXAMPLE_MDA, version="1.4.3", commit=None, stories=[])
    assert (again, uploaded) == (first, False)
    assert store.list("versions/") == ["versions/1.4.2.json"]  # the new label is not claimed either
    with pytest.raises(UserError, match="no package with version 1.4.3"):
        repo.find("1.4.3")


@pytest.mark.parametrize("version", ["", "has space", "../x", "sha256:abc", "a/b", "x" * 200])
def test_invalid_version_labels(store: Store, version: str) -> None:
    with pytest.raises(UserError, match="not a valid label"):
        Repository(store).push(EXAMPLE_MDA, version=version, commit=None, stories=[])
    assert store.list("") == []


def _corrupt_mdas(tmp_path: Path) -> dict[str, Path]:
    truncated = tmp_path / "truncated.mda"
    truncated.write_bytes(EXAMPLE_MDA.read_bytes()[:-200])
    not_zip = tmp_path / "notzip.mda"
    not_zip.write_bytes(b"this is not a zip archive at all")
    traversal = write_zip(tmp_path / "traversal.mda", [*app_members(), (zinfo("../../etc/evil"), b"x")])
    no_metadata = write_zip(tmp_path / "nometa.mda", [("model/model.mdp", b"x"), ("web/index.html", b"x")])
    bad_metadata = write_zip(tmp_path / "badmeta.mda", app_members(b"{not json"))
    symlink = tmp_path / "symlink.mda"
    with zipfile.ZipFile(symlink, "w") as zf:
        for name, data in app_members():
            zf.writestr(zinfo(str(name), mode=0o100644), data)
        zf.writestr(zinfo("web/link", mode=0o120777), b"/etc/passwd")
    missing = tmp_path / "missing.mda"
    return {
        "truncated": truncated,
        "not a zip": not_zip,
        "path traversal": traversal,
        "no metadata": no_metadata,
        "bad metadata": bad_metadata,
        "symlink member": symlink,
        "missing file": missing,
    }


def test_a_corrupt_mda_never_enters(store: Store, tmp_path: Path) -> None:
    repo = Repository(store)
    for why, path in _corrupt_mdas(tmp_path).items():
        with pytest.raises(UserError) as info:
            repo.push(path, version=None, commit=None, stories=[])
        assert path.name in str(info.value), why
        assert store.list("") == [], f"{why}: something was uploaded"


def test_an_unpacked_directory_is_refused(store: Store, tmp_path: Path) -> None:
    from mda_builders import write_dir

    app = write_dir(tmp_path / "app", app_members())
    with pytest.raises(UserError, match="is a directory"):
        Repository(store).push(app, version=None, commit=None, stories=[])
    assert store.list("") == []


def test_push_reports_progress_on_a_big_package(store: Store, tmp_path: Path) -> None:
    import os

    big = write_zip(
        tmp_path / "big.mda",
        [*app_members(), (zinfo("native/blob.bin", compress=zipfile.ZIP_STORED), os.urandom(10 * 1024 * 1024))],
    )
    seen: list[int] = []
    entry, uploaded = Repository(store).push(big, version="2.0.0", commit=None, stories=[], progress=seen.append)
    assert uploaded
    assert sum(seen) == big.stat().st_size == entry.size_bytes
    assert len(seen) > 1


def test_list_is_newest_first(store: Store, tmp_path: Path) -> None:
    repo = Repository(store)
    # entries written directly so their upload times differ without sleeping
    for i, when in enumerate(["2025-01-01T00:00:00Z", "2025-03-01T00:00:00Z", "2025-02-01T00:00:00Z"]):
        entry = PackageEntry(f"{i:x}" * 64, f"v{i}", "10.0.0", "1.0", "Orders", 1, when, "me", None, (), "x.mda")
        store.put(Repository.index_key(entry.sha256), json.dumps(entry.to_json()).encode())
    assert [e.version for e in repo.list()] == ["v1", "v2", "v0"]


def test_find_by_version_and_sha(store: Store, tmp_path: Path) -> None:
    repo = Repository(store)
    example, _ = repo.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    other, _ = repo.push(other_mda(tmp_path), version=None, commit=None, stories=[])
    assert repo.find("1.4.2") == example
    assert repo.find(f"sha256:{example.sha256}") == example
    assert repo.find(f"sha256:{example.sha256[:12]}") == example
    assert repo.find(f"SHA256:{other.sha256[:20].upper()}") == other
    with pytest.raises(UserError, match=r"no package with version 9\.9\.9 \(known versions: 1\.4\.2\)"):
        repo.find("9.9.9")
    with pytest.raises(UserError, match="no package sha256:000000000000 in the repository"):
        repo.find("sha256:000000000000")
    with pytest.raises(UserError, match="12 to 64 hexadecimal digits"):
        repo.find(f"sha256:{example.sha256[:11]}")
    with pytest.raises(UserError, match="12 to 64 hexadecimal digits"):
        repo.find("sha256:not-hex-at-all!")


def test_find_an_ambiguous_prefix(store: Store) -> None:
    repo = Repository(store)
    # two SHA-256s sharing 12 leading digits cannot be produced on purpose: write their entries directly
    for sha in ("abcdef012345" + "0" * 52, "abcdef012345" + "1" * 52):
        entry = PackageEntry(sha, None, "10.0.0", "1.0", "Orders", 1, "2025-01-01T00:00:00Z", "me", None, (), "x.mda")
        store.put(Repository.index_key(sha), json.dumps(entry.to_json()).encode())
    with pytest.raises(UserError, match="sha256:abcdef012345 is ambiguous .2 packages"):
        repo.find("sha256:abcdef012345")
    assert repo.find("sha256:abcdef0123451").sha256.endswith("1" * 52)


def test_fetch_downloads_verifies_and_caches(store: Store, tmp_path: Path) -> None:
    repo = Repository(store)
    entry, _ = repo.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    cache = tmp_path / "cache"
    path = repo.fetch(entry, cache)
    assert path == cache / f"{entry.sha256}.mda"
    assert path.read_bytes() == EXAMPLE_MDA.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == [path.name]
    # a second fetch uses the cache even if the store is gone
    store.delete(Repository.package_key(entry.sha256))
    assert repo.fetch(entry, cache) == path


def test_fetch_of_a_tampered_blob_fails_and_leaves_nothing(store: Store, tmp_path: Path) -> None:
    repo = Repository(store)
    entry, _ = repo.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    store.put(Repository.package_key(entry.sha256), EXAMPLE_MDA.read_bytes()[:-1] + b"X")
    cache = tmp_path / "cache"
    mismatch = f"{entry.sha256}.mda: sha256 mismatch .got [0-9a-f]{{64}}.: the stored package was altered"
    with pytest.raises(PackageIntegrityError, match=mismatch):
        repo.fetch(entry, cache)
    assert list(cache.iterdir()) == []
    assert isinstance(PackageIntegrityError("x"), UserError)


def test_fetch_replaces_a_damaged_cache_file(store: Store, tmp_path: Path) -> None:
    repo = Repository(store)
    entry, _ = repo.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{entry.sha256}.mda").write_bytes(b"damaged")
    assert repo.fetch(entry, cache).read_bytes() == EXAMPLE_MDA.read_bytes()


def test_fetch_of_a_missing_blob_is_an_error(store: Store, tmp_path: Path) -> None:
    repo = Repository(store)
    entry, _ = repo.push(EXAMPLE_MDA, version="1.4.2", commit=None, stories=[])
    store.delete(Repository.package_key(entry.sha256))
    with pytest.raises(UserError, match=f"packages/{entry.sha256}.mda does not exist"):
        repo.fetch(entry, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
