"""Archives in object storage (`backups.s3`, `backups.azure`): the backup Job's two steps and the
restore Job's two, run as they are: backup.sh and restore.sh against a real PostgreSQL, store.sh with
the rclone the Jobs run (built from its Go module) and only busybox's applets beside it (the rclone
image is Alpine), against moto's S3 server and Azurite, with the rclone settings the plan renders."""

from __future__ import annotations

import random
import subprocess
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from object_store import AZURITE_ACCOUNT, AZURITE_KEY, alpine_path  # noqa: F401  (a fixture; s3_server and azurite: tests/conftest.py)
from postgres import PostgresServer
from test_k8s_backups_postgres import SCHEMA, SCRIPTS, _data, _run, _snapshot, _tree

from mxinfra.backups import Backups, keep, parse_id, retention_env
from mxinfra_kubernetes.backups import files_env, files_remote, files_secret_values, remote, store_env, store_secret_values
from mxinfra_kubernetes.config import KubernetesConfig, for_environment

UTC = timezone.utc
KINDS = ["s3", "azure-key", "azure-sas"]




class Store:
    """One bucket or container on an emulator, and the environment the rclone container gets for it:
    store_env's plain values and store_secret_values' credentials, as the CronJob and Secret carry them."""

    def __init__(self, kind: str, endpoint: str, name: str, *, files: bool = False, suffix: str | None = None) -> None:
        self.kind, self.name = kind, name
        if kind == "s3":
            import boto3

            self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
            self.s3.create_bucket(Bucket=name)
            block = {"s3": {"bucket": name, "endpoint": endpoint, "accessKeyId": "testing", "secretAccessKey": "testing", **({"keySuffix": suffix} if suffix else {})}}
        else:
            from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

            service = BlobServiceClient(account_url=endpoint, credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})
            self.container = service.create_container(name)
            credential: dict[str, str] = {"accountKey": AZURITE_KEY}
            if kind == "azure-sas":
                permissions = ContainerSasPermissions(read=True, write=True, delete=True, list=True)
                expiry = datetime.now(UTC) + timedelta(hours=1)
                credential = {"sasToken": generate_container_sas(AZURITE_ACCOUNT, name, account_key=AZURITE_KEY, permission=permissions, expiry=expiry)}
            block = {"azure": {"accountName": AZURITE_ACCOUNT, "container": name, "endpoint": endpoint, **credential}}
        # the block as the plan reads it: the archives' store (backups.s3/azure) or the runtime's file store (storage.s3/azure)
        self.settings = for_environment(KubernetesConfig.model_validate({"storage": block} if files else {"backups": block}), "test")
        rendered = files_env(self.settings, "backup-files") if files else store_env(self.settings, "backup-store")
        self.env = {e["name"]: e["value"] for e in rendered if "value" in e}
        self.env.update({k: str(v) for k, v in (files_secret_values if files else store_secret_values)(self.settings).items()})
        self.prefix = "" if files else "orders/test/"
        self.remote = files_remote(self.settings) if files else remote(self.settings, "orders", "test")

    def keys(self) -> list[str]:
        """The names under the environment's prefix, as the store lists them."""
        prefix = self.prefix
        if self.kind == "s3":
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
            return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", []))
        return sorted(b.name[len(prefix) :] for b in self.container.list_blobs(name_starts_with=prefix))

    def put(self, name: str, data: bytes) -> None:
        if self.kind == "s3":
            self.s3.put_object(Bucket=self.name, Key=f"{self.prefix}{name}", Body=data)
        else:
            self.container.upload_blob(f"{self.prefix}{name}", data, overwrite=True)

    def get(self, name: str) -> bytes:
        if self.kind == "s3":
            return bytes(self.s3.get_object(Bucket=self.name, Key=f"{self.prefix}{name}")["Body"].read())
        return bytes(self.container.download_blob(f"{self.prefix}{name}").readall())

    def delete(self, name: str) -> None:
        if self.kind == "s3":
            self.s3.delete_object(Bucket=self.name, Key=f"{self.prefix}{name}")
        else:
            self.container.delete_blob(f"{self.prefix}{name}")


_made = iter(range(10**6))


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest) -> Store:
    kind = request.param
    endpoint = request.getfixturevalue("s3_server" if kind == "s3" else "azurite")
    return Store(kind, endpoint, f"backups-{kind}-{next(_made)}")


def _store_step(path: str, store: Store, step: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """store.sh as the rclone container runs it: busybox's sh and applets, rclone, nothing else."""
    where = {"FILES_REMOTE": store.remote} if step.endswith("-files") else {"BACKUP_REMOTE": store.remote}
    full = {"PATH": path, "HOME": env.get("BACKUP_DIR", env.get("FILES_DIR", "/nonexistent")), **where, **store.env, **env}
    return subprocess.run(["sh", str(SCRIPTS / "store.sh"), step], env=full, capture_output=True, text=True, timeout=120)


def test_a_backup_in_the_store_restores_every_row_and_file(pg: PostgresServer, store: Store, alpine_path: str, tmp_path: Path) -> None:
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(7)))
    files, scratch = tmp_path / "files", tmp_path / "scratch-backup"
    (files / "1a").mkdir(parents=True)
    scratch.mkdir()
    (files / "1a" / "doc").write_bytes(random.Random(3).randbytes(300_000))
    (files / "empty").write_bytes(b"")
    before, tree_before = _snapshot(pg), _tree(files)

    stamp = "20261205T020000Z"
    made = _run("backup.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(scratch), "FILES_DIR": str(files), "BACKUP_NOW": stamp})
    assert made.returncode == 0, made.stderr
    archive = (scratch / f"{stamp}.tar.gz").read_bytes()
    up = _store_step(alpine_path, store, "upload", {"BACKUP_DIR": str(scratch), **retention_env(Backups())})
    assert up.returncode == 0, up.stderr
    assert f"backup: stored {stamp}.tar.gz in {store.remote} ({len(archive)} bytes)" in up.stdout
    assert up.stdout.splitlines()[-1] == f"backup: archives: {stamp}.tar.gz "  # what `mxinfra backup list` reads
    assert store.keys() == [f"{stamp}.tar.gz"] and store.get(f"{stamp}.tar.gz") == archive
    assert sorted(p.name for p in scratch.iterdir()) == []  # the scratch volume is left empty
    if store.kind == "s3":
        assert store.s3.head_object(Bucket=store.name, Key=f"orders/test/{stamp}.tar.gz")["ServerSideEncryption"] == "AES256"

    pg.psql('DELETE FROM "orders$order" WHERE id % 2 = 0; UPDATE "orders$customer" SET name = \'x\';')
    (files / "1a" / "doc").write_bytes(b"changed")
    (files / "added").write_text("goes")
    assert _snapshot(pg) != before

    scratch = tmp_path / "scratch-restore"
    scratch.mkdir()
    got = _store_step(alpine_path, store, "fetch", {"BACKUP_DIR": str(scratch), "BACKUP_ID": stamp})
    assert got.returncode == 0, got.stderr
    assert (scratch / f"{stamp}.tar.gz").read_bytes() == archive
    done = _run("restore.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(scratch), "FILES_DIR": str(files), "BACKUP_ID": stamp})
    assert done.returncode == 0, done.stderr
    after = _snapshot(pg)
    for table in before:
        assert after[table] == before[table], table
    assert _tree(files) == tree_before


def test_an_archive_is_never_overwritten_and_a_missing_one_never_fetched(store: Store, alpine_path: str, tmp_path: Path) -> None:
    store.put("20261205T020000Z.tar.gz", b"the first")
    (tmp_path / "20261205T020000Z.tar.gz").write_bytes(b"the second")
    again = _store_step(alpine_path, store, "upload", {"BACKUP_DIR": str(tmp_path)})
    assert again.returncode == 3 and "exists in" in again.stderr and "not overwritten" in again.stderr
    assert store.get("20261205T020000Z.tar.gz") == b"the first"
    scratch = tmp_path / "fetch"
    scratch.mkdir()
    missing = _store_step(alpine_path, store, "fetch", {"BACKUP_DIR": str(scratch), "BACKUP_ID": "20261205T020001Z"})
    assert missing.returncode == 2 and f"no backup 20261205T020001Z in {store.remote}" in missing.stderr
    for bad in ("", "latest", "20261205T020000Z.tar.gz", "../20261205T020000Z"):
        refused = _store_step(alpine_path, store, "fetch", {"BACKUP_DIR": str(scratch), "BACKUP_ID": bad})
        assert refused.returncode == 2 and "BACKUP_ID must name a backup" in refused.stderr, bad
    assert list(scratch.iterdir()) == []


def test_a_store_that_refuses_the_credentials_fails_the_upload(store: Store, alpine_path: str, tmp_path: Path) -> None:
    (tmp_path / "20261205T020000Z.tar.gz").write_bytes(b"archive")
    if store.kind == "s3":
        # moto accepts any key by default; a bucket that is not there is what it refuses
        store.remote = store.remote.replace(store.name, "no-such-bucket")
    elif store.kind == "azure-key":
        store.env["RCLONE_CONFIG_STORE_KEY"] = "d3Jvbmc="
    else:
        store.env["RCLONE_CONFIG_STORE_SAS_URL"] = store.env["RCLONE_CONFIG_STORE_SAS_URL"].replace("sig=", "sig=AAAA")
    failed = _store_step(alpine_path, store, "upload", {"BACKUP_DIR": str(tmp_path)})
    assert failed.returncode != 0
    assert "backup: archives:" not in failed.stdout and store.keys() == []
    assert (tmp_path / "20261205T020000Z.tar.gz").exists()  # nothing deleted before the store took it


def _stamp(t: datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ")


@pytest.mark.parametrize("seed", range(4))
def test_retention_in_the_store_is_the_cores(s3_server: str, alpine_path: str, tmp_path: Path, seed: int) -> None:
    store = Store("s3", s3_server, f"retention-{seed}")
    rng = random.Random(seed)
    now = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
    times = sorted({now - timedelta(days=rng.randrange(1, 500), seconds=rng.randrange(86400)) for _ in range(60)})
    for t in times:
        store.put(f"{_stamp(t)}.tar.gz", b"")
    store.put("notes.txt", b"not an archive: never touched")
    b = Backups(daily_days=rng.choice([1, 14]), weekly_weeks=rng.choice([0, 13]), monthly_months=rng.choice([1, 12]))
    pinned = rng.choice(times)
    (tmp_path / f"{_stamp(now)}.tar.gz").write_bytes(b"new")
    done = _store_step(alpine_path, store, "upload", {"BACKUP_DIR": str(tmp_path), "BACKUP_KEEP": _stamp(pinned), **retention_env(b)})
    assert done.returncode == 0, done.stderr
    kept = {t for k in store.keys() if (t := parse_id(k)) is not None}
    assert kept == keep([*times, now], now, b, [pinned])
    assert "notes.txt" in store.keys()
    removed = [line for line in done.stdout.splitlines() if line.startswith("backup: retention removed ")]
    assert len(removed) == len(times) + 1 - len(kept) > 0
    listed = done.stdout.splitlines()[-1].removeprefix("backup: archives: ").split()
    assert listed == sorted((f"{_stamp(t)}.tar.gz" for t in kept), reverse=True)


@pytest.mark.parametrize("kind", ["s3", "azure-key"])
def test_a_file_store_in_object_storage_goes_into_the_archive_and_back(request: pytest.FixtureRequest, pg: PostgresServer, alpine_path: str, tmp_path: Path, kind: str) -> None:
    endpoint = request.getfixturevalue("s3_server" if kind == "s3" else "azurite")
    suffix = ".orders-test" if kind == "s3" else None  # S3_KEY_SUFFIX: the runtime's objects, in a shared bucket
    files = Store(kind, endpoint, f"files-{kind}-{next(_made)}", files=True, suffix=suffix)
    mine = suffix or ""
    # the runtime names an object by its file's UUID (and the suffix); a key too short to nest stays as it is
    originals = {f"0a1b2c3d-5551-46f8{mine}": random.Random(5).randbytes(200_000), f"empty{mine}": b"", f"9f8e7d6c{mine}": b"second document", f"abc{mine}": b"short"}
    for name, data in originals.items():
        files.put(name, data)
    if suffix:
        files.put("11111111.orders-acceptance", b"another environment's document")
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(8)))
    before = _snapshot(pg)

    scratch, copy = tmp_path / "out", tmp_path / "files"
    scratch.mkdir()
    copy.mkdir()
    pulled = _store_step(alpine_path, files, "pull-files", {"FILES_DIR": str(copy), **({"FILES_SUFFIX": suffix} if suffix else {})})
    assert pulled.returncode == 0, pulled.stderr
    assert _tree(copy) == originals  # the runtime's objects, no other environment's
    # what the Job's backup container gets beside FILES_DIR for a file store in object storage (backups.pod_spec)
    layout = {"FILES_LAYOUT": "keys", **({"FILES_SUFFIX": suffix} if suffix else {})}
    made = _run("backup.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(scratch), "FILES_DIR": str(copy), "BACKUP_NOW": "20261205T030000Z", **layout})
    assert made.returncode == 0, made.stderr
    # Mendix Cloud's layout: tree/xx/yy/<the key without the suffix>, whatever keeps the files
    listed = subprocess.run(["tar", "-tzf", str(scratch / "20261205T030000Z.tar.gz")], capture_output=True, text=True, check=True).stdout.split()
    assert sorted(n for n in listed if n.startswith("tree/") and not n.endswith("/")) == [
        "tree/0a/1b/0a1b2c3d-5551-46f8", "tree/9f/8e/9f8e7d6c", f"tree/abc{mine}", "tree/em/pt/empty"]

    pg.psql('DELETE FROM "orders$order"')
    files.put(f"0a1b2c3d-5551-46f8{mine}", b"overwritten")
    files.delete(f"9f8e7d6c{mine}")
    files.put(f"added-since{mine}", b"written after the backup")

    restored_copy = tmp_path / "restore-files"
    restored_copy.mkdir()
    back = _run("restore.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(scratch), "FILES_DIR": str(restored_copy), "BACKUP_ID": "20261205T030000Z", **layout})
    assert back.returncode == 0, back.stderr
    pushed = _store_step(alpine_path, files, "push-files", {"FILES_DIR": str(restored_copy), **({"FILES_SUFFIX": suffix} if suffix else {})})
    assert pushed.returncode == 0, pushed.stderr
    assert _snapshot(pg) == before
    for name, data in originals.items():
        assert files.get(name) == data, name
    # a copy, not a sync: what the runtime wrote since stays (the restored rows do not refer to it)
    assert files.get(f"added-since{mine}") == b"written after the backup"
    if suffix:
        assert files.get("11111111.orders-acceptance") == b"another environment's document"


def test_files_move_between_a_claim_and_object_storage_in_both_directions(pg: PostgresServer, s3_server: str, alpine_path: str, tmp_path: Path) -> None:
    """One archive layout on every file store: a claim's backup restores into S3 under the runtime's keys
    (name and suffix), an S3 backup restores onto a claim where the runtime's local store looks."""
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(9)))
    claim = tmp_path / "claim"
    (claim / "0a" / "1b").mkdir(parents=True)
    (claim / "0a" / "1b" / "0a1b2c3d-5551").write_bytes(b"from the claim")
    kept = tmp_path / "kept"
    kept.mkdir()
    assert _run("backup.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(kept), "FILES_DIR": str(claim), "BACKUP_NOW": "20261205T040000Z"}).returncode == 0
    files = Store("s3", s3_server, f"moved-{next(_made)}", files=True, suffix=".orders-prod")
    copy = tmp_path / "copy"
    copy.mkdir()
    back = _run("restore.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(kept), "FILES_DIR": str(copy), "BACKUP_ID": "20261205T040000Z", "FILES_LAYOUT": "keys", "FILES_SUFFIX": ".orders-prod"})
    assert back.returncode == 0, back.stderr
    pushed = _store_step(alpine_path, files, "push-files", {"FILES_DIR": str(copy), "FILES_SUFFIX": ".orders-prod"})
    assert pushed.returncode == 0, pushed.stderr
    assert files.keys() == ["0a1b2c3d-5551.orders-prod"] and files.get("0a1b2c3d-5551.orders-prod") == b"from the claim"

    # and back: that bucket's backup onto an empty claim
    files.put("9f8e7d6c-aaaa.orders-prod", b"from the bucket")
    pulled_copy = tmp_path / "pulled"
    pulled_copy.mkdir()
    assert _store_step(alpine_path, files, "pull-files", {"FILES_DIR": str(pulled_copy), "FILES_SUFFIX": ".orders-prod"}).returncode == 0
    made = _run("backup.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(kept), "FILES_DIR": str(pulled_copy), "BACKUP_NOW": "20261205T050000Z", "FILES_LAYOUT": "keys", "FILES_SUFFIX": ".orders-prod"})
    assert made.returncode == 0, made.stderr
    other = tmp_path / "other-claim"
    other.mkdir()
    back = _run("restore.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(kept), "FILES_DIR": str(other), "BACKUP_ID": "20261205T050000Z"})
    assert back.returncode == 0, back.stderr
    assert _tree(other) == {"0a/1b/0a1b2c3d-5551": b"from the claim", "9f/8e/9f8e7d6c-aaaa": b"from the bucket"}


# Keys at the edges of the layout, and where the archive files them (written out, not computed): a UUID,
# a name of exactly 4 characters, dots that are not a pair "..", a pair "..", a character outside ASCII or
# a control character among the first four, a short key, a key with a "/", upper case.
EDGES = {
    "0d3e301f-5551-46f8-ad44-8de2be084c95": "0d/3e/0d3e301f-5551-46f8-ad44-8de2be084c95",
    "abcd": "ab/cd/abcd",
    "ab.cd-x": "ab/.c/ab.cd-x",
    "a.b.cdef": "a./b./a.b.cdef",
    "..abcdef": "..abcdef",
    "ab..cdef": "ab..cdef",
    "\u00e9abcdef": "\u00e9abcdef",
    "ab\u00e9-cdef": "ab\u00e9-cdef",
    "x\ny-abcd": "x\ny-abcd",
    "abc": "abc",
    "some dir/with space": "some dir/with space",
    "UPPER-case": "UP/PE/UPPER-case",
}


@pytest.mark.parametrize("suffix", ["", ".orders-test"])
def test_the_scripts_file_every_key_where_the_core_does_and_give_it_back(pg: PostgresServer, tmp_path: Path, suffix: str) -> None:
    """backup.sh and restore.sh (tar in the C locale) against mxinfra.backup_archive's tree_path and
    store_key (Python, by character): the same place for every key, and the same key back."""
    from mxinfra.backup_archive import store_key, tree_path

    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA)
    copy = tmp_path / "copy"
    for key in EDGES:
        (copy / (key + suffix)).parent.mkdir(parents=True, exist_ok=True)
        (copy / (key + suffix)).write_bytes(key.encode())
    kept = tmp_path / "kept"
    kept.mkdir()
    layout = {"FILES_LAYOUT": "keys", **({"FILES_SUFFIX": suffix} if suffix else {})}
    made = _run("backup.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(kept), "FILES_DIR": str(copy), "BACKUP_NOW": "20261205T060000Z", **layout})
    assert made.returncode == 0, made.stderr
    with tarfile.open(kept / "20261205T060000Z.tar.gz") as archive:
        filed = {archive.extractfile(m).read().decode(): m.name.removeprefix("tree/") for m in archive.getmembers() if m.isfile() and m.name.startswith("tree/")}
    # where each key's bytes were filed: for a key the layout nests, its name without the suffix
    assert filed == {k: (v if "/" in v and v != k else v + suffix) for k, v in EDGES.items()}
    assert filed == {k: tree_path(k + suffix, suffix) for k in EDGES}
    back = tmp_path / "back"
    back.mkdir()
    restored = _run("restore.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(kept), "FILES_DIR": str(back), "BACKUP_ID": "20261205T060000Z", **layout})
    assert restored.returncode == 0, restored.stderr
    assert {str(p.relative_to(back)): p.read_bytes().decode() for p in back.rglob("*") if p.is_file()} == {k + suffix: k for k in EDGES}
    assert all(store_key(path, suffix) == k + suffix for k, path in filed.items())


def test_a_key_at_a_two_byte_tree_folder_is_refused_by_the_backup_as_by_the_core(pg: PostgresServer, tmp_path: Path) -> None:
    from mxinfra.backup_archive import tree_path
    from mxinfra.errors import UserError

    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "ab").write_bytes(b"a short key")
    (copy / "abcdef").write_bytes(b"filed at tree/ab/cd/abcdef: tree/ab would be a file and a folder")
    kept = tmp_path / "kept"
    kept.mkdir()
    made = _run("backup.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(kept), "FILES_DIR": str(copy), "BACKUP_NOW": "20261205T040000Z", "FILES_LAYOUT": "keys"})
    assert made.returncode != 0 and "is two bytes long up to its first /: Mendix Cloud keeps folders of files there" in made.stderr
    assert list(kept.iterdir()) == []
    with pytest.raises(UserError, match="object 'ab' would be kept at tree/ab, where Mendix Cloud's layout keeps folders of files"):
        tree_path("ab")


def test_two_files_of_a_stored_archive_that_land_on_one_key_fail_the_files_and_lose_neither(pg: PostgresServer, tmp_path: Path) -> None:
    """An archive in the store (restore by id or --from, no check on this machine) with tree/abcd and
    tree/ab/cd/abcd: both are the key abcd; tar refuses the second rather than write over the first."""
    import io

    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA)
    kept = tmp_path / "kept"
    kept.mkdir()
    assert _run("backup.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(kept), "BACKUP_NOW": "20261205T040000Z"}).returncode == 0
    with tarfile.open(kept / "20261205T040000Z.tar.gz") as whole:
        dump = whole.extractfile("db/db.backup").read()
    crafted = io.BytesIO()
    with tarfile.open(fileobj=crafted, mode="w:gz") as t:
        for name, body in (("db/db.backup", dump), ("tree/abcd", b"flat"), ("tree/ab/cd/abcd", b"nested")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    (kept / "20261205T050000Z.tar.gz").write_bytes(crafted.getvalue())
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "abcd").write_bytes(b"as it was")
    done = _run("restore.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(kept), "FILES_DIR": str(copy), "BACKUP_ID": "20261205T050000Z", "FILES_LAYOUT": "keys"})
    assert done.returncode == 3 and "the files restore of 20261205T050000Z failed (see above): the database was restored" in done.stderr, done.stderr
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == {"abcd": b"as it was"}


def test_an_object_key_laid_out_like_mendix_clouds_files_is_refused_by_the_backup(pg: PostgresServer, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    (copy / "ab" / "cd").mkdir(parents=True)
    (copy / "ab" / "cd" / "abcdef").write_bytes(b"would come back as abcdef")
    kept = tmp_path / "kept"
    kept.mkdir()
    made = _run("backup.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(kept), "FILES_DIR": str(copy), "BACKUP_NOW": "20261205T040000Z", "FILES_LAYOUT": "keys"})
    assert made.returncode != 0 and "an object key of the file store is laid out like a file of Mendix Cloud (xx/yy/<name>)" in made.stderr
    assert list(kept.iterdir()) == []


def test_a_delete_the_store_refuses_is_a_warning_once_the_archive_is_stored(s3_server: str, alpine_path: str, tmp_path: Path) -> None:
    store = Store("s3", s3_server, f"locked-{next(_made)}")
    old = "20250101T020000Z.tar.gz"  # past every tier: retention removes it
    store.put(old, b"old")
    # rclone as it is, except that the store refuses deletes (an object lock, a key without delete)
    locked = tmp_path / "bin"
    locked.mkdir()
    real = subprocess.run(["sh", "-c", "command -v rclone"], env={"PATH": alpine_path}, capture_output=True, text=True, check=True).stdout.strip()
    (locked / "rclone").write_text(f'#!/bin/sh\nif [ "$1" = deletefile ]; then echo "AccessDenied: object locked" >&2; exit 1; fi\nexec {real} "$@"\n')
    (locked / "rclone").chmod(0o755)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "20261205T020000Z.tar.gz").write_bytes(b"new")
    done = _store_step(f"{locked}:{alpine_path}", store, "upload", {"BACKUP_DIR": str(scratch), **retention_env(Backups())})
    assert done.returncode == 0, done.stderr  # stored: no failed backup to run again
    assert f"backup: warning: retention could not remove {old}" in done.stderr
    assert store.keys() == [old, "20261205T020000Z.tar.gz"]
    assert done.stdout.splitlines()[-1] == f"backup: archives: 20261205T020000Z.tar.gz {old} "  # list stays true


def test_files_named_for_another_store_are_not_pushed(s3_server: str, alpine_path: str, tmp_path: Path) -> None:
    files = Store("s3", s3_server, f"suffixed-{next(_made)}", files=True, suffix=".orders-production")
    restored = tmp_path / "files"
    restored.mkdir()
    (restored / "0a1b.orders-acceptance").write_bytes(b"another environment's naming")
    (restored / "2c3d.orders-production").write_bytes(b"ours")
    pushed = _store_step(alpine_path, files, "push-files", {"FILES_DIR": str(restored), "FILES_SUFFIX": ".orders-production"})
    assert pushed.returncode == 2 and "1 of the archive's 2 files do not end in '.orders-production'" in pushed.stderr and "none copied" in pushed.stderr
    assert files.keys() == []
    bad = _store_step(alpine_path, files, "push-files", {"FILES_DIR": str(restored), "FILES_SUFFIX": "[prod]"})
    assert bad.returncode == 2 and "FILES_SUFFIX may hold letters, digits and . _ - only" in bad.stderr
