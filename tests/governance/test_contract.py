"""The Store contract, run against every backend: file, S3 (moto server) and Azure Blob (Azurite)."""

from __future__ import annotations

import getpass
import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mxinfra.errors import UserError
from mxinfra.governance import MissingKeyError, Store, StoreError, open_store

BIG = 12 * 1024 * 1024 + 12345  # past S3's 8 MiB part size and Azure's 4 MiB blocks, not a multiple of either


def big_file(path: Path, size: int = BIG) -> Path:
    """A file of `size` pseudo-random bytes (random enough that no layer can compress it away)."""
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
    with open(path, "wb") as f:
        written = 0
        n = 0
        while written < size:
            chunk = hashlib.sha256(n.to_bytes(8, "big")).digest() + block
            chunk = chunk[: size - written]
            f.write(chunk)
            written += len(chunk)
            n += 1
    return path


def test_put_get_and_missing(store: Store) -> None:
    assert store.get("a/b.json") is None
    assert store.exists("a/b.json") is False
    assert store.put("a/b.json", b'{"x": 1}') is True
    assert store.get("a/b.json") == b'{"x": 1}'
    assert store.exists("a/b.json") is True
    # unconditional put replaces
    assert store.put("a/b.json", b"second") is True
    assert store.get("a/b.json") == b"second"
    assert store.put("empty", b"") is True
    assert store.get("empty") == b""


def test_put_if_absent_creates_once(store: Store) -> None:
    assert store.put("k/one", b"first", if_absent=True) is True
    assert store.put("k/one", b"second", if_absent=True) is False
    assert store.get("k/one") == b"first"


def test_put_if_absent_has_exactly_one_winner_under_contention(store: Store) -> None:
    def attempt(i: int) -> bool:
        return store.put("race/key", f"writer {i}".encode(), if_absent=True)

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(attempt, range(24)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert store.get("race/key") == f"writer {winner}".encode()


def test_list_is_sorted_and_filtered_by_prefix(store: Store) -> None:
    for key in ["b/2", "a/1", "b/10", "b/1", "bb/1", "c"]:
        store.put(key, key.encode())
    assert store.list("") == ["a/1", "b/1", "b/10", "b/2", "bb/1", "c"]
    assert store.list("b/") == ["b/1", "b/10", "b/2"]
    assert store.list("b") == ["b/1", "b/10", "b/2", "bb/1"]
    assert store.list("b/1") == ["b/1", "b/10"]
    assert store.list("nothing/") == []


def test_delete(store: Store) -> None:
    store.put("d/x", b"1")
    store.delete("d/x")
    assert store.get("d/x") is None
    assert store.list("d/") == []
    store.delete("d/x")  # deleting a missing key is not an error


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "../up", "a/../b", ".hidden", "a/.tmp", "sp ace", "a/"])
def test_invalid_keys_are_refused(store: Store, key: str) -> None:
    with pytest.raises(ValueError, match="invalid store key"):
        store.put(key, b"x")


def test_put_file_and_download_stream_a_multi_megabyte_file(store: Store, tmp_path: Path) -> None:
    src = big_file(tmp_path / "big.bin")
    up: list[int] = []
    assert store.put_file("blobs/big.bin", src, progress=up.append) is True
    assert sum(up) == BIG
    assert len(up) > 1  # streamed in pieces, not one call at the end
    down: list[int] = []
    dest = tmp_path / "out" / "copy.bin"
    store.download("blobs/big.bin", dest, progress=down.append)
    assert sum(down) == BIG
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.bin"]  # no temporary left behind
    assert store.list("blobs/") == ["blobs/big.bin"]


def test_put_file_if_absent(store: Store, tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"small")
    assert store.put_file("f/x", small, if_absent=True) is True
    other = big_file(tmp_path / "other.bin")
    seen: list[int] = []
    assert store.put_file("f/x", other, if_absent=True, progress=seen.append) is False
    assert sum(seen) == 0  # nothing was uploaded
    assert store.get("f/x") == b"small"


def test_big_put_file_if_absent_has_exactly_one_winner(store: Store, tmp_path: Path) -> None:
    files = [big_file(tmp_path / f"f{i}.bin", 9 * 1024 * 1024 + i) for i in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda f: store.put_file("race/big", f, if_absent=True), files))
    assert results.count(True) == 1
    dest = tmp_path / "got.bin"
    store.download("race/big", dest)
    assert dest.read_bytes() == files[results.index(True)].read_bytes()


def test_download_of_a_missing_key(store: Store, tmp_path: Path) -> None:
    dest = tmp_path / "dl" / "x.bin"
    with pytest.raises(MissingKeyError, match="nope/x does not exist") as info:
        store.download("nope/x", dest)
    assert store.url in str(info.value)
    assert not dest.exists()
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


def test_identity(store: Store, backend: str) -> None:
    who = store.identity()
    if backend == "file":
        assert who.split()[0] == getpass.getuser()
    elif backend == "s3":
        assert who.startswith("arn:aws:")  # moto's STS answers with its default account ARN
        assert ":123456789012:" in who
    else:
        assert who == "account:devstoreaccount1"


@pytest.mark.parametrize("cloud", ["s3", "azblob"])  # file repositories are separate directories
def test_prefixes_isolate_repositories(cloud: str, make_url) -> None:  # type: ignore[no-untyped-def]
    base = make_url(cloud, "one")
    other = base.rsplit("/", 1)[0] + "/two"
    a, b = open_store(base), open_store(other)
    a.put("k", b"a")
    assert b.get("k") is None and b.list("") == []
    assert a.list("") == ["k"]


# --------------------------------------------------------------------------------------------
# opening and errors


def test_unknown_scheme_lists_the_three_forms() -> None:
    with pytest.raises(StoreError) as info:
        open_store("ftp://host/x")
    msg = str(info.value)
    assert msg.startswith("ftp://host/x: ")
    for form in ("file://", "s3://", "azblob://"):
        assert form in msg
    assert isinstance(info.value, UserError)


@pytest.mark.parametrize("url", ["s3://", "azblob://acct", "azblob:///c", "file://", "no-scheme"])
def test_incomplete_urls(url: str) -> None:
    with pytest.raises(StoreError, match="expected file://"):
        open_store(url)


def test_file_url_is_relative_to_base_dir(tmp_path: Path) -> None:
    store = open_store("file://.mxinfra", base_dir=tmp_path)
    store.put("x/y", b"1")
    assert (tmp_path / ".mxinfra" / "x" / "y").read_bytes() == b"1"


def test_file_store_on_a_regular_file_names_url_and_cause(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match=r"file://afile: .*is not a directory"):
        open_store("file://afile", base_dir=tmp_path)


def test_file_store_unwritable_names_url_and_cause(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    store = open_store("file://blocker/repo", base_dir=tmp_path)  # the parent is a file: cannot create it
    with pytest.raises(StoreError, match=r"file://blocker/repo: cannot write k"):
        store.put("k", b"1")


def test_s3_missing_bucket(s3_env: str) -> None:
    with pytest.raises(StoreError, match=r"^s3://no-such-bucket-mx/p: bucket no-such-bucket-mx does not exist$"):
        open_store("s3://no-such-bucket-mx/p")


def test_s3_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch, s3_env: str) -> None:
    from servers import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError, match=r"^s3://bucket/p: unreachable: .*127\.0\.0\.1"):
        open_store("s3://bucket/p")


def test_azblob_missing_container(azure_env: str) -> None:
    with pytest.raises(StoreError, match=r"^azblob://devstoreaccount1/nope/p: container nope does not exist$"):
        open_store("azblob://devstoreaccount1/nope/p")


def test_azblob_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch, azure_env: str) -> None:
    from servers import azurite_connection_string, free_port

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection_string(free_port()))
    with pytest.raises(StoreError, match=r"^azblob://devstoreaccount1/c/p: unreachable: "):
        open_store("azblob://devstoreaccount1/c/p")


def test_azblob_connection_string_for_another_account_is_refused(azure_env: str) -> None:
    with pytest.raises(StoreError, match="AZURE_STORAGE_CONNECTION_STRING is for account devstoreaccount1, not prodacct"):
        open_store("azblob://prodacct/c/p")


def test_importing_governance_loads_no_cloud_sdk() -> None:
    code = (
        "import sys, mxinfra.governance, mxinfra.governance.store_file;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'azure')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stdout + out.stderr


def _token(claims: dict) -> str:
    import base64
    import json

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.signature"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"upn": "alice@contoso.com", "oid": "1111"}, "alice@contoso.com (oid 1111)"),
        ({"unique_name": "bob@contoso.com"}, "bob@contoso.com"),
        ({"appid": "app-guid", "oid": "2222"}, "app:app-guid (oid 2222)"),  # service principal, managed identity
        ({"oid": "3333"}, "oid:3333"),
        ({"sub": "s"}, "sub:s"),
    ],
)
def test_azure_principal_from_token_claims(claims: dict, expected: str) -> None:
    from mxinfra.governance.store_azure import principal_from_token

    assert principal_from_token(_token(claims)) == expected
    assert principal_from_token("not-a-jwt") == "unknown principal (unreadable token)"
