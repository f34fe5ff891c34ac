"""The backup CronJob's and restore Job's container scripts, run as they are against a real PostgreSQL:
backup, change every kind of row and file, restore, compare every row and every file. Also the
script's retention against the core's `keep`, on the same names."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
import zlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from postgres import OPEN_TRANSACTIONS, PostgresServer, claiming_server_version, lock_held, pg_restore_of_17, pg_restore_without_restrict_key, require_bin_dir, unrestricted_pg_restore

from mxinfra.backup_archive import check, deflates
from mxinfra.backups import Backups, backup_id, keep, parse_id, retention_env



def _scripts_volume() -> Path:
    """The Jobs' scripts volume as the backup-scripts ConfigMap fills it (the scripts and clean.sql), in a
    directory of its own: the scripts run as the Jobs run them."""
    import atexit
    import tempfile

    from mxinfra_kubernetes.backups import scripts_data

    where = Path(tempfile.mkdtemp(prefix="mxinfra-scripts-"))
    atexit.register(shutil.rmtree, where, True)
    for name, text in scripts_data().items():
        (where / name).write_text(text)
        (where / name).chmod(0o555)
    return where


SCRIPTS = _scripts_volume()
UTC = timezone.utc

# A Mendix-like schema: module$entity tables with bigint ids, strings, decimals (Mendix: 28 digits, 8
# after the point), date-times, booleans, enumerations as strings, a binary, an association table and
# the runtime's own bookkeeping table.
SCHEMA = """
CREATE TABLE "mendixsystem$version" (versionnumber varchar(30), lastsyncdate timestamp, modelversion varchar(200));
CREATE TABLE "orders$customer" (id bigint PRIMARY KEY, name varchar(200), email text, credit numeric(28,8), vip boolean, createddate timestamp);
CREATE TABLE "orders$order" (id bigint PRIMARY KEY, number varchar(20), total numeric(28,8), status varchar(20), placed timestamp, notes text);
CREATE TABLE "orders$order_customer" ("orders$orderid" bigint, "orders$customerid" bigint, PRIMARY KEY ("orders$orderid", "orders$customerid"));
CREATE TABLE "system$filedocument" (id bigint PRIMARY KEY, name varchar(400), size bigint, contents bytea, changeddate timestamp);
CREATE SEQUENCE "orders$order_number_seq" START 1000;
CREATE INDEX "idx_orders$order_placed" ON "orders$order" (placed);
"""
TABLES = ['"mendixsystem$version"', '"orders$customer"', '"orders$order"', '"orders$order_customer"', '"system$filedocument"']


def _literal(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, Decimal)):
        return str(v)
    if isinstance(v, bytes):
        return f"'\\x{v.hex()}'::bytea"
    return "'" + str(v).replace("'", "''") + "'"


def _rows(sql_table: str, rows: list[tuple]) -> str:
    return "".join(f"INSERT INTO {sql_table} VALUES ({', '.join(_literal(v) for v in row)});\n" for row in rows)


def _data(rng: random.Random) -> str:
    names = ["Zoë O'Brien", "Łukasz Żółw", "名前", "tab\there", "new\nline", "back\\slash", "", "Ω" * 190]
    start = datetime(2020, 1, 1)
    customers = [
        (i, rng.choice(names) + str(i), None if i % 7 == 0 else f"c{i}@example.com", Decimal(rng.randrange(-10**27, 10**27)) / 10**8, i % 3 == 0, start + timedelta(seconds=rng.randrange(10**8), microseconds=rng.randrange(10**6)))
        for i in range(1, 301)
    ]
    orders = [
        (10**15 + i, f"ORD-{i:06d}", Decimal(f"{rng.randrange(10**20)}.{rng.randrange(10**8):08d}"), rng.choice(["Draft", "Placed", "Shipped", None]), start + timedelta(minutes=rng.randrange(10**7)), "x" * rng.randrange(0, 3000))
        for i in range(1, 501)
    ]
    links = sorted({(10**15 + rng.randrange(1, 501), rng.randrange(1, 301)) for _ in range(400)})
    files = [(i, f"doc{i}.bin", n, rng.randbytes(n), start + timedelta(days=i)) for i, n in enumerate([0, 1, 255, 4096, 70000], start=1)]
    return (
        _rows('"mendixsystem$version"', [("10.24.15", start, "1.4.2")])
        + _rows('"orders$customer"', customers)
        + _rows('"orders$order"', orders)
        + _rows('"orders$order_customer"', links)
        + _rows('"system$filedocument"', files)
        + "SELECT setval('\"orders$order_number_seq\"', 1500);\n"
    )


def _snapshot(pg: PostgresServer) -> dict[str, str]:
    """Every row of every table, exactly as PostgreSQL writes it (COPY text format, ordered), plus the
    sequence's position and the index."""
    out = {t: pg.psql(f"COPY (SELECT * FROM {t} ORDER BY 1, 2) TO STDOUT") for t in TABLES}
    out["sequence"] = pg.psql('SELECT last_value FROM "orders$order_number_seq"')
    out["indexes"] = pg.psql("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
    return out


def _gzip_member_starts(data: bytes) -> list[int]:
    """Where each gzip member of `data` starts (each decompressed to its end, the rest read as the next)."""
    starts, at = [], 0
    while at < len(data):
        starts.append(at)
        d = zlib.decompressobj(wbits=31)
        d.decompress(data[at:])
        assert d.eof, "a truncated gzip member"
        at = len(data) - len(d.unused_data)
    return starts


def _running(*markers: bytes) -> list[str]:
    """The command lines of the processes still running that hold any of `markers`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if any(m in cmdline for m in markers):
            found.append(cmdline.decode(errors="replace"))
    return found


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}




def _run(script: str, env: dict[str, str], *args: str, path: str | None = None, first: Path | None = None) -> subprocess.CompletedProcess[str]:
    # The scripts as they are, under the POSIX shell the postgres image runs them with; the server's
    # own client tools first on PATH (pg_dump must not be older than the server), after `first` (a
    # wrapper around one of them).
    full = {"PATH": f"{f'{first}:' if first else ''}{require_bin_dir()}:{path or os.environ['PATH']}", **env}
    return subprocess.run(["sh", str(SCRIPTS / script), *args], env=full, capture_output=True, text=True, timeout=120)


def _path_without(tool: str, into: Path) -> str:
    """A PATH of one directory holding every program of this PATH but `tool` (an image without it)."""
    into.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        for found in Path(d).glob("*") if Path(d).is_dir() else ():
            if found.name != tool and not (into / found.name).exists() and os.access(found, os.X_OK) and found.is_file():
                (into / found.name).symlink_to(found.resolve())
    assert not (into / tool).exists()
    return str(into)


# The files are compressed in ranges (BACKUP_RANGE_MB), each its own gzip member: with the default one
# range holds them all; with 1 MiB, files larger than a range and ranges that end inside a file. Deflated
# by zlib through zstd (the official postgres images have it), or by GNU gzip alone in an image without it.
@pytest.mark.parametrize("codec", ["zstd", "gzip"])
@pytest.mark.parametrize("range_mb", [None, 1])
def test_backup_then_restore_gives_back_every_row_and_file(pg: PostgresServer, tmp_path: Path, range_mb: int | None, codec: str) -> None:
    path = _path_without("zstd", tmp_path / "bin") if codec == "gzip" else None
    if codec == "zstd":
        assert subprocess.run(["sh", "-c", "printf mx | zstd -q --format=gzip -c | gzip -dc"], capture_output=True, text=True).stdout == "mx", "no zstd that writes gzip here: ./dev test installs it"
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(21)))
    files, backups = tmp_path / "files", tmp_path / "backups"
    (files / "1a").mkdir(parents=True)
    backups.mkdir()
    (files / "1a" / "f0e1d2c3").write_bytes(random.Random(1).randbytes(100_000))
    (files / "empty").write_bytes(b"")
    (files / "name with spaces").write_text("kept")
    if range_mb is not None:
        (files / "1a" / "large").write_bytes(random.Random(2).randbytes(2_600_000))
        (files / "compressible").write_bytes(b"mendix " * 150_000)
    before, tree_before = _snapshot(pg), _tree(files)
    assert len(before['"orders$order"'].splitlines()) == 500

    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "FILES_DIR": str(files), "BACKUP_NOW": "20261204T020000Z", **retention_env(Backups())}
    if range_mb is not None:
        env["BACKUP_RANGE_MB"] = str(range_mb)
    done = _run("backup.sh", env, path=path)
    assert done.returncode == 0, done.stderr
    data = (backups / "20261204T020000Z.tar.gz").read_bytes()
    starts = _gzip_member_starts(data)
    # the dump's member, the files' ranges (1 with the default, 4 of 1 MiB here: 3.7 MB of tar), and the
    # empty last member whose comment gives where tree/ starts: the second member's offset
    assert len(starts) == (3 if range_mb is None else 6), starts
    if range_mb is not None:
        # each 1 MiB range is judged whole: the compressible file's range deflates either way; with zlib a
        # range of random bytes is stored (level 0: stored blocks of 65535 bytes) rather than deflated
        raw = sum(len(b) for b in _tree(files).values())
        assert len(data) < raw - 500_000, (len(data), raw)
        stored = [at for at in starts[1:-1] if data[at + 10] & 0b110 == 0 and data[at + 11 : at + 13] == b"\xff\xff"]
        assert len(stored) == (2 if codec == "zstd" else 0), (codec, stored, starts)
        if codec == "zstd":
            # the rule is the core's (mxinfra.backup_archive.deflates), judged on each range's own bytes
            ranges = {at: zlib.decompressobj(wbits=31).decompress(data[at:]) for at in starts[1:-1]}
            assert stored == [at for at, raw in ranges.items() if not deflates(raw)]
    assert data[-64:] == b"\x1f\x8b\x08\x10" + bytes(5) + b"\x03" + b"mxinfra-tree-offset=%020d" % starts[1] + b"\x00\x01\x00\x00\xff\xff" + bytes(8)
    assert gzip.decompress(data[-64:]) == b""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data[starts[1]:]))) as tree_only:
        assert tree_only.getnames()[0] == "tree" and not [n for n in tree_only.getnames() if not n.startswith("tree")]
    assert sorted(p.name for p in backups.iterdir()) == ["20261204T020000Z.tar.gz"]  # no leftovers
    # the same id again (two runs in one second): refused, the first archive untouched
    first = (backups / "20261204T020000Z.tar.gz").read_bytes()
    again = _run("backup.sh", env)
    assert again.returncode == 3 and "not overwritten" in again.stderr
    assert (backups / "20261204T020000Z.tar.gz").read_bytes() == first
    with tarfile.open(backups / "20261204T020000Z.tar.gz") as archive:
        names = archive.getnames()
    assert "db/db.backup" in names and "tree/1a/f0e1d2c3" in names and "tree/name with spaces" in names
    # the dump first, so a restore streams it without unpacking the files; the two gzip members are one
    # archive to GNU tar too (no entry lost at the seam, no "lone zero block" warning)
    assert names[:2] == ["db", "db/db.backup"] and names.count("db/db.backup") == 1
    # and Mendix Cloud's description beside it, its values strings: the dump's size, the files' total
    with tarfile.open(backups / "20261204T020000Z.tar.gz") as archive:
        described = json.loads(archive.extractfile(".metadata").read())
        dump_size = archive.getmember("db/db.backup").size
    assert described == {"dumpSize": str(dump_size), "filesSize": str(sum(len(b) for b in tree_before.values()))}
    listed = subprocess.run(["tar", "-tzf", str(backups / "20261204T020000Z.tar.gz")], capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines() == [n + "/" if n in ("db", "tree", "tree/1a") else n for n in names] and listed.stderr == ""

    # Change every kind of thing: rows updated, deleted, inserted; a table emptied; a sequence moved;
    # an index dropped; files changed, removed and added.
    pg.psql(
        """UPDATE "orders$customer" SET name = 'changed', credit = 0 WHERE id % 2 = 0;
        DELETE FROM "orders$order" WHERE id % 3 = 0;
        INSERT INTO "orders$order" VALUES (1, 'NEW', 1.5, 'Draft', now(), NULL);
        TRUNCATE "orders$order_customer";
        UPDATE "system$filedocument" SET contents = '\\x00'::bytea;
        SELECT setval('"orders$order_number_seq"', 99999);
        DROP INDEX "idx_orders$order_placed";"""
    )
    (files / "1a" / "f0e1d2c3").write_bytes(b"overwritten")
    (files / "empty").unlink()
    (files / "added-after-backup").write_text("must go")
    assert _snapshot(pg) != before

    env_restore = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "FILES_DIR": str(files), "BACKUP_ID": "20261204T020000Z"}
    done = _run("restore.sh", env_restore, path=path)
    assert done.returncode == 0, done.stderr
    assert f"restore: inflating with {codec}" in done.stdout, done.stdout
    after = _snapshot(pg)
    for table in before:
        assert after[table] == before[table], table
    assert _tree(files) == tree_before


# what restore.sh and Cloud Foundry's restore must leave: exactly the backup's tables, views and sequences
_RELATIONS = "SELECT c.relkind::text || ' ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S') ORDER BY 1"
_SINCE = """CREATE TABLE "orders$refund" (id bigint PRIMARY KEY, amount numeric(28,8));
INSERT INTO "orders$refund" VALUES (1, 9.5);
CREATE SEQUENCE "orders$refund_number_seq";
CREATE VIEW "orders$open_order" AS SELECT * FROM "orders$order" WHERE status = 'Placed';
DELETE FROM "orders$order" WHERE id % 2 = 0;"""


def test_a_restore_gives_the_backups_database_and_drops_what_came_since(pg: PostgresServer, tmp_path: Path) -> None:
    """Mendix Cloud restores a backup's database, not the backup over today's: a table of an entity added
    since would stay and make the runtime's schema sync fail (the restored model does not know it)."""
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(3)))
    backups = tmp_path / "backups"
    backups.mkdir()
    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "BACKUP_NOW": "20261204T020000Z"}
    assert _run("backup.sh", env).returncode == 0
    before, relations = _snapshot(pg), pg.psql(_RELATIONS)
    assert relations.splitlines() == ['S orders$order_number_seq', 'r mendixsystem$version', 'r orders$customer', 'r orders$order', 'r orders$order_customer', 'r system$filedocument']
    # and the app's own functions and types made since, one of them on a table's row type (it must go
    # before the table, which PostgreSQL would refuse to drop for it)
    pg.psql(_SINCE + """; CREATE TYPE "orders$state" AS ENUM ('a', 'b'); CREATE DOMAIN "orders$amount" AS numeric(28,8);
        CREATE FUNCTION "orders$total_of"(o "orders$order") RETURNS numeric LANGUAGE sql AS 'SELECT o.total';
        CREATE TABLE "orders$note" (id bigint, state "orders$state", amount "orders$amount");
        CREATE FUNCTION "orders$inc"(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1';
        CREATE AGGREGATE "orders$star"(*) (sfunc = "orders$inc", stype = int, initcond = '0');
        CREATE FUNCTION "orders$next"() RETURNS bigint LANGUAGE sql AS 'SELECT 1';
        CREATE TABLE "orders$tagged" (id bigint DEFAULT "orders$next"())""")
    # (a function a table's default calls cannot go before the table: all at once fails, one at a time does it)
    done = _run("restore.sh", {**env, "BACKUP_ID": "20261204T020000Z"})
    assert done.returncode == 0, done.stderr
    assert _snapshot(pg) == before and pg.psql(_RELATIONS) == relations
    assert pg.psql("SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace") == "0\n"
    assert pg.psql("SELECT count(*) FROM pg_type WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'd')") == "0\n"


def _backed_up(pg: PostgresServer, tmp_path: Path, seed: int) -> tuple[Path, dict[str, str], bytes]:
    """The Mendix-like database seeded, backed up by backup.sh as archive 20261204T020000Z: the archives'
    directory, the scripts' environment, and the dump's bytes."""
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(seed)))
    backups = tmp_path / "backups"
    backups.mkdir()
    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "BACKUP_NOW": "20261204T020000Z"}
    assert _run("backup.sh", env).returncode == 0
    with tarfile.open(backups / "20261204T020000Z.tar.gz") as whole:
        dump = whole.extractfile("db/db.backup").read()
    return backups, env, dump


def test_a_dump_that_ends_half_way_changes_nothing_at_all(pg: PostgresServer, tmp_path: Path) -> None:
    """pg_restore writes out half of the dump, then fails: what psql ran of it, the drops included, is
    rolled back (no COMMIT was sent), and the restore says it failed."""
    backups, env, dump = _backed_up(pg, tmp_path, 4)
    cut = io.BytesIO()
    with tarfile.open(fileobj=cut, mode="w:gz") as t:
        info = tarfile.TarInfo("db/db.backup")
        info.size = len(dump) * 2 // 3
        t.addfile(info, io.BytesIO(dump[: info.size]))
    (backups / "20261205T020000Z.tar.gz").write_bytes(cut.getvalue())
    pg.psql(_SINCE)
    changed, relations = _snapshot(pg), pg.psql(_RELATIONS)
    done = _run("restore.sh", {**env, "BACKUP_ID": "20261205T020000Z"})
    assert done.returncode == 1 and "the database restore of 20261205T020000Z failed" in done.stderr, done.stderr
    assert _snapshot(pg) == changed and pg.psql(_RELATIONS) == relations and pg.psql('SELECT amount FROM "orders$refund"') == "9.50000000\n"


def _psql_that(tmp_path: Path, restoring: str, asking: str = 'exec "$REAL" "$@"') -> Path:
    """A directory holding a `psql` that runs the real one: `restoring` as the restore's call (the one
    with --output), `asking` as every other call (the sessions and the transaction's status)."""
    where = tmp_path / "wrapped"
    where.mkdir()
    wrapper = where / "psql"
    wrapper.write_text(f'#!/bin/sh\nREAL={require_bin_dir()}/psql\ncase "$*" in\n  *--output=*) {restoring} ;;\n  *) {asking} ;;\nesac\n')
    wrapper.chmod(0o755)
    return where


# What psql says when the server goes away under it (libpq's words), and its exit status for that.
_LOST = 'echo "psql: error: server closed the connection unexpectedly" >&2; exit 2'


def test_a_psql_that_fails_after_its_commit_went_through_is_a_restored_database(pg: PostgresServer, tmp_path: Path) -> None:
    """The connection lost (or psql killed) once COMMIT was sent: psql fails, the database is the backup's.
    The server's word on the transaction decides, not psql's status: before, 'as they were' (exit 1), a
    restore recorded as nothing restored on AWS and Cloud Foundry."""
    backups, env, _ = _backed_up(pg, tmp_path, 13)
    backed_up = _snapshot(pg)
    pg.psql(_SINCE)
    done = _run("restore.sh", {**env, "BACKUP_ID": "20261204T020000Z"}, first=_psql_that(tmp_path, f'"$REAL" "$@"; {_LOST}'))
    assert done.returncode == 0, done.stderr
    assert re.search(r"psql failed \(see above\), but the server says transaction \d+ committed: the database was restored", done.stderr), done.stderr
    assert _snapshot(pg) == backed_up


def test_a_psql_that_fails_before_its_commit_is_a_database_as_it_was(pg: PostgresServer, tmp_path: Path) -> None:
    """The transaction's id was printed but its COMMIT never sent (cut off on the way to psql), and psql
    fails: the server says the transaction aborted, and the restore says nothing changed."""
    backups, env, _ = _backed_up(pg, tmp_path, 14)
    pg.psql(_SINCE)
    changed = _snapshot(pg)
    cut = f"sed '/^COMMIT;$/,$d' | \"$REAL\" \"$@\"; {_LOST}"
    done = _run("restore.sh", {**env, "BACKUP_ID": "20261204T020000Z"}, first=_psql_that(tmp_path, cut))
    assert done.returncode == 1 and "the database restore of 20261204T020000Z failed (see above): the database and the files are as they were" in done.stderr, done.stderr
    assert "committed" not in done.stderr and _snapshot(pg) == changed


def test_a_transaction_the_server_cannot_be_asked_about_is_a_restore_that_may_have_committed(pg: PostgresServer, tmp_path: Path) -> None:
    """psql failed after its transaction's id was printed, and the server does not answer afterwards:
    neither 'restored' nor 'as it was' may be claimed (exit 4: the callers record no outcome for it)."""
    backups, env, _ = _backed_up(pg, tmp_path, 15)
    pg.psql(_SINCE)
    files = tmp_path / "files"
    (files / "ab").mkdir(parents=True)
    (files / "ab" / "kept").write_bytes(b"as it was")
    refused = 'echo "psql: error: connection to server at 127.0.0.1 failed: Connection refused" >&2; exit 2'
    wrapped = _psql_that(tmp_path, f'"$REAL" "$@"; {_LOST}', asking=f'case "$*" in *txid_status*) {refused} ;; *) exec "$REAL" "$@" ;; esac')
    done = _run("restore.sh", {**env, "BACKUP_ID": "20261204T020000Z", "FILES_DIR": str(files), "RESTORE_SETTLE_WAIT": "2"}, first=wrapped)
    assert done.returncode == 4, done.stderr
    assert re.search(r"the server did not say whether transaction \d+ committed within 2s \(its last answer: error: psql: error: connection to server at 127.0.0.1 failed: Connection refused", done.stderr), done.stderr
    assert "the database restore of 20261204T020000Z failed (see above) and may or may not have committed: check the database; the files are as they were" in done.stderr
    assert _tree(files) == {"ab/kept": b"as it was"}


# The server's answer to what became of the transaction, as it would come after a crash and a restart:
# its start is another, or the id lost in the crash is not handed out yet.
_AFTER_A_RESTART = {
    "restarted, then committed": ('"$REAL" "$@" | sed "s/ [^ ]*$/ 1/"', 4, r"the server restarted since transaction \d+ began \(then at [0-9./]+, now at 1\): its id may have gone to another transaction"),
    "the id unassigned": ('"$REAL" "$@" | sed "s/^[a-z ]* /unassigned /"', 1, r"the database restore of 20261204T020000Z failed \(see above\): the database and the files are as they were"),
}


@pytest.mark.parametrize("answer", list(_AFTER_A_RESTART))
def test_after_a_restart_the_servers_committed_is_not_taken_for_the_restores(pg: PostgresServer, tmp_path: Path, answer: str) -> None:
    """txid_current() writes no WAL: a crash can lose the id, and after the restart another transaction may
    get it. So a 'committed' from a server that started since the probe says nothing (exit 4), and an id
    not handed out yet never committed (exit 1)."""
    backups, env, _ = _backed_up(pg, tmp_path, 16)
    pg.psql(_SINCE)
    asking, code, said = _AFTER_A_RESTART[answer]
    wrapped = _psql_that(tmp_path, f'"$REAL" "$@"; {_LOST}', asking=f'case "$*" in *txid_status*) {asking} ;; *) exec "$REAL" "$@" ;; esac')
    done = _run("restore.sh", {**env, "BACKUP_ID": "20261204T020000Z", "RESTORE_SETTLE_WAIT": "5"}, first=wrapped)
    assert done.returncode == code and re.search(said, done.stderr), done.stderr


def test_a_transaction_left_open_by_a_killed_psql_is_ended_and_nothing_restored(pg: PostgresServer, tmp_path: Path) -> None:
    """psql killed while the restore's statement waits for a lock another session holds: its backend would
    keep the transaction open (and its locks) once the lock is free. restore.sh ends that backend, whose
    transaction then aborts: nothing restored, at once, and no session of it left."""
    backups, env, _ = _backed_up(pg, tmp_path, 17)
    pg.psql(_SINCE)
    changed = _snapshot(pg)
    with lock_held(pg.url, "orders$order"):
        started = time.monotonic()
        killed = f'timeout -s KILL 4 "$REAL" "$@"; {_LOST}'
        done = _run("restore.sh", {**env, "BACKUP_ID": "20261204T020000Z", "RESTORE_SETTLE_WAIT": "60"}, first=_psql_that(tmp_path, killed))
        took = time.monotonic() - started
        assert done.returncode == 1 and "the database and the files are as they were" in done.stderr, done.stdout + done.stderr
        assert re.search(r"transaction \d+ was still open with its client gone: its backend \d+ was ended", done.stdout), done.stdout
        assert took < 40, took
        assert pg.psql(OPEN_TRANSACTIONS) == "0\n"
    assert _snapshot(pg) == changed


def _probed_then_crashed(pg: PostgresServer, rows: Path) -> Any:
    """A restore's transaction that ran its probe only, its backend then killed by SIGKILL (the OOM killer's
    way): the postmaster reinitialises without starting again, the id never written to the WAL. Its Probe,
    once the server is back."""
    import signal

    from mxinfra.backup_archive import RESTORE_PSQL, probed_transaction, transaction_probe

    psql = subprocess.Popen([f"{require_bin_dir()}/psql", *RESTORE_PSQL, f"--output={rows}", f"--dbname={pg.url}"], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert psql.stdin is not None
    psql.stdin.write(b"BEGIN;\n" + transaction_probe("K3y") + b"SELECT pg_catalog.pg_sleep(60);\nCOMMIT;\n")
    psql.stdin.flush()
    until = time.monotonic() + 20
    while time.monotonic() < until and not (rows.exists() and b"mxinfra-transaction K3y " in rows.read_bytes()[:300]):
        time.sleep(0.1)
    with rows.open("rb") as printed:
        probe = probed_transaction(printed, "K3y")
    assert probe is not None
    os.kill(probe.pid, signal.SIGKILL)
    psql.wait(timeout=30)
    until = time.monotonic() + 60
    while True:
        try:
            pg.psql("SELECT 1")
            return probe
        except Exception:
            assert time.monotonic() < until, "the server did not come back after the crash"
            time.sleep(0.5)


def test_after_a_crash_that_lost_the_restores_id_no_committed_is_taken_for_the_restores(pg: PostgresServer, tmp_path: Path) -> None:
    """The restore's txid, never written to the WAL, is lost in a crash and handed out again. Asked first,
    the server has not handed it out yet: never committed (and the question's own transaction, which may
    take it, aborts). Asked after another transaction took it and committed: that 'committed' is another
    run of the server's, unknown, never the restore's."""
    from mxinfra.backup_archive import TRANSACTION_STATUS, transaction_outcome

    def ask(probe: Any) -> str:
        return pg.psql(TRANSACTION_STATUS.format(transaction=probe.transaction)).strip().splitlines()[-1]

    probe = _probed_then_crashed(pg, tmp_path / "first")
    answer = ask(probe)
    assert answer.startswith("unassigned ") and transaction_outcome(probe, answer) == "aborted", answer
    answer = ask(probe)  # the first question's own id may have been the lost one: it did not commit
    assert transaction_outcome(probe, answer) == "aborted", answer

    probe = _probed_then_crashed(pg, tmp_path / "second")
    taken = int(pg.psql("SELECT txid_current()"))
    assert taken <= probe.transaction  # the id was lost: handed out again
    while taken < probe.transaction:
        taken = int(pg.psql("SELECT txid_current()"))
    answer = ask(probe)
    assert answer.startswith("committed ") and answer.split(" ")[1] != probe.started, answer  # another transaction's
    assert transaction_outcome(probe, answer) == "unknown"


def test_a_settle_wait_that_is_not_a_number_is_refused_before_anything(tmp_path: Path) -> None:
    for wait in ("5m", "08"):  # (dash reads 08 as octal, and fails on it)
        done = _run("restore.sh", {"DATABASE_URL": "postgres://nowhere", "BACKUP_DIR": str(tmp_path), "BACKUP_ID": "20261204T020000Z", "RESTORE_SETTLE_WAIT": wait})
        assert done.returncode == 2 and f"restore: RESTORE_SETTLE_WAIT must be a number of seconds (no leading zero), got '{wait}'" in done.stderr, done.stderr


def test_a_wait_for_other_sessions_that_is_not_a_number_is_refused_before_anything(pg: PostgresServer, tmp_path: Path) -> None:
    # Refused before the files' unpacking starts in the background: none of it is left running or staged.
    files, env = _store_changed_since_its_backup(pg, tmp_path, 14)
    done = _run("restore.sh", {**env, "BACKUP_ID": "20261205T020000Z", "RESTORE_ALONE_WAIT": "1m"})
    assert done.returncode == 2 and "restore: RESTORE_ALONE_WAIT must be a number of seconds, got '1m'" in done.stderr, done.stderr
    assert sorted(p.name for p in files.iterdir()) == ["kept"] and (files / "kept").read_bytes() == b"since"


def test_psql_prints_the_probes_row_before_it_runs_the_next_statement(pg: PostgresServer, tmp_path: Path) -> None:
    """What 'no id printed, nothing committed' rests on (backup_archive.TRANSACTION_TAG): psql, as restore.sh
    and Cloud Foundry run it, has the probe's row in its output while the transaction's next statement still
    runs, so a psql killed later (SIGKILL: no buffer flushed at exit) has printed it."""
    from mxinfra.backup_archive import RESTORE_PSQL, probed_transaction, transaction_probe

    rows = tmp_path / "rows"
    psql = subprocess.Popen([f"{require_bin_dir()}/psql", *RESTORE_PSQL, f"--output={rows}", f"--dbname={pg.url}"], stdin=subprocess.PIPE)
    assert psql.stdin is not None
    psql.stdin.write(b"BEGIN;\n" + transaction_probe("K3y") + b"SELECT pg_catalog.pg_sleep(60);\nCOMMIT;\n")
    psql.stdin.flush()
    until = time.monotonic() + 20
    while time.monotonic() < until and not (rows.exists() and b"mxinfra-transaction K3y " in rows.read_bytes()):
        time.sleep(0.1)
    assert psql.poll() is None  # still in pg_sleep: the COMMIT not sent
    psql.kill()
    psql.wait()
    with rows.open("rb") as printed:
        probe = probed_transaction(printed, "K3y")
    assert probe is not None and probe.transaction > 0 and probe.pid > 0
    started = pg.psql("SELECT pg_catalog.concat(pg_catalog.date_part('epoch', pg_catalog.pg_postmaster_start_time()), '/', (SELECT pg_catalog.date_part('epoch', stats_reset) FROM pg_stat_bgwriter))")
    assert probe.started == started.strip() and "/" in started


def test_a_failure_after_a_large_object_still_changes_nothing(pg: PostgresServer, tmp_path: Path) -> None:
    """pg_restore's SQL output commits around each large object unless it is one transaction
    (--single-transaction): an index that fails to build after them must undo the drops and the rows too."""
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(6))
            + 'CREATE TABLE "orders$line" (id bigint); INSERT INTO "orders$line" SELECT g FROM generate_series(1, 300000) g;'
            + 'CREATE INDEX "idx_orders$line" ON "orders$line" (id); SELECT lo_from_bytea(0, \'a large object\');')
    backups = tmp_path / "backups"
    backups.mkdir()
    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "BACKUP_NOW": "20261204T020000Z"}
    assert _run("backup.sh", env).returncode == 0
    pg.psql(_SINCE)
    changed, relations = _snapshot(pg), pg.psql(_RELATIONS)
    # building the index needs more than 1 MB of sort: it fails after the large object was restored
    pg.psql("ALTER DATABASE mendix SET maintenance_work_mem = '1MB'; ALTER DATABASE mendix SET temp_file_limit = '1MB'")
    try:
        done = _run("restore.sh", {**env, "BACKUP_ID": "20261204T020000Z"})
    finally:
        pg.psql("ALTER DATABASE mendix RESET maintenance_work_mem; ALTER DATABASE mendix RESET temp_file_limit")
    assert done.returncode == 1 and "temporary file size exceeds temp_file_limit" in done.stderr, done.stderr
    assert _snapshot(pg) == changed and pg.psql(_RELATIONS) == relations
    assert pg.psql("SELECT count(*) FROM pg_largeobject_metadata") == "1\n"


def test_objects_of_others_that_depend_on_the_apps_tables_stop_the_restore_named(pg: PostgresServer, tmp_path: Path) -> None:
    """CASCADE would drop them without their owners' rights: a view in another schema, a foreign key of
    another owner's table. The restore stops, naming them, and changes nothing."""
    pg.psql("DROP SCHEMA IF EXISTS reporting CASCADE; DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(7)))
    backups = tmp_path / "backups"
    backups.mkdir()
    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "BACKUP_NOW": "20261204T020000Z"}
    assert _run("backup.sh", env).returncode == 0
    pg.psql('CREATE SCHEMA reporting; CREATE VIEW reporting.orders AS SELECT id, total FROM "orders$order"; '
            'CREATE TABLE reporting.snapshot (taken timestamp, customer "orders$customer"); ' + _SINCE)
    changed, relations = _snapshot(pg), pg.psql(_RELATIONS)
    try:
        done = _run("restore.sh", {**env, "BACKUP_ID": "20261204T020000Z"})
        said = " ".join(done.stderr.split())
        assert done.returncode == 1 and "the restore drops what the backup does not hold, and PostgreSQL refuses to drop these for objects that depend on them (of another schema, or of an owner this user cannot act for)" in said, done.stderr
        # PostgreSQL's own words for each: a view on a table, a column of a table's row type
        assert 'view reporting.orders depends on table public."orders$order"' in said and 'column customer of table reporting.snapshot depends on type public."orders$customer"' in said
        assert _snapshot(pg) == changed and pg.psql(_RELATIONS) == relations and pg.psql("SELECT count(*) FROM reporting.orders") != "0\n"
    finally:
        pg.psql("DROP SCHEMA reporting CASCADE")


def test_a_pg_restore_of_17_restores_into_an_older_server(pg: PostgresServer, tmp_path: Path) -> None:
    """pg_restore 17 and newer sets transaction_timeout in its SQL output, which servers before 17 do not
    know (it cannot ask the server's version when it writes SQL): the setting is made conditional."""
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(8)))
    backups = tmp_path / "backups"
    backups.mkdir()
    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "BACKUP_NOW": "20261204T020000Z"}
    assert _run("backup.sh", env).returncode == 0
    before = _snapshot(pg)
    pg.psql(_SINCE)
    pg_restore_of_17(tmp_path / "17")
    dump = tmp_path / "db.backup"
    with tarfile.open(backups / "20261204T020000Z.tar.gz") as whole:
        dump.write_bytes(whole.extractfile("db/db.backup").read())
    written = subprocess.run([str(tmp_path / "17" / "pg_restore"), "--single-transaction", "-f", "-", str(dump)], capture_output=True, check=True).stdout
    assert b"\nSET transaction_timeout = 0;\n" in written  # what the server below would refuse as it is
    assert int(pg.psql("SHOW server_version_num")) < 170000  # the server here is older than 17
    done = subprocess.run(["sh", str(SCRIPTS / "restore.sh")], env={"PATH": f"{tmp_path / '17'}:{require_bin_dir()}:{os.environ['PATH']}", **env, "BACKUP_ID": "20261204T020000Z"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _snapshot(pg) == before


@pytest.mark.parametrize("pg_restore", ["as before the fix", "as it is"])
def test_a_dump_that_fakes_the_restrict_line_in_its_header_runs_nothing(pg: PostgresServer, tmp_path: Path, pg_restore: str) -> None:
    r"""The server version in a dump's header is printed into pg_restore's opening comment as it is: a crafted
    one can bring its own \restrict line, BEGIN and \unrestrict. Only pg_restore's own \restrict, with the
    key this restore gave it, opens the output: refused, the shell escape never runs, nothing changes."""
    backups, env, dump = _backed_up(pg, tmp_path, 10)
    evidence = tmp_path / "shell-escape-ran"
    claimed = f"15.0\n\\restrict k\nBEGIN;\n\\unrestrict k\n\\! touch {evidence}\n--".encode()
    crafted = io.BytesIO()
    with tarfile.open(fileobj=crafted, mode="w:gz") as t:
        body = claiming_server_version(dump, pg.psql("SHOW server_version").strip(), claimed)
        info = tarfile.TarInfo("db/db.backup")
        info.size = len(body)
        t.addfile(info, io.BytesIO(body))
    (backups / "20261205T020000Z.tar.gz").write_bytes(crafted.getvalue())
    pg.psql(_SINCE)
    changed = _snapshot(pg)
    path = f"{require_bin_dir()}:{os.environ['PATH']}"
    if pg_restore == "as before the fix":
        unrestricted_pg_restore(tmp_path / "old", tmp_path / "unused")
        path = f"{tmp_path / 'old'}:{path}"
    done = subprocess.run(["sh", str(SCRIPTS / "restore.sh")], env={"PATH": path, **env, "BACKUP_ID": "20261205T020000Z"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert ("did not open its output with the \\restrict key it was given" if pg_restore == "as before the fix" else "did not begin its output with BEGIN") in done.stderr
    assert not evidence.exists() and _snapshot(pg) == changed


# pg_restore outputs' openings, as read by restore.sh's `opening` and by mxinfra.backup_archive.Opening
OPENINGS = [
    # as 15.14 and newer write it, 17's setting among the settings, then the first statement and the rest
    b"--\n-- PostgreSQL database dump\n--\n\n\\restrict K3y\n\n-- Dumped from database version 15.18\n\nBEGIN;\n\nSET statement_timeout = 0;\n"
    b"SET transaction_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\nDROP TABLE IF EXISTS public.t;\nSET x = 1;\n\\unrestrict K3y\n",
    b"\\restrict K3y\nBEGIN;\nCREATE TABLE public.t (id int);\n",
    # refused: no restrict line, another key (a crafted header's), no BEGIN, a blank line of spaces, CRLF
    b"--\nSET statement_timeout = 0;\n",
    b"-- Dumped from database version 15.0\n\\restrict k\nBEGIN;\n\\unrestrict k\n\\! id\n",
    b"\\restrict K3y\nSET statement_timeout = 0;\n",
    b" \n\\restrict K3y\nBEGIN;\nCREATE TABLE public.t (id int);\n",
    b"\\restrict K3y\r\nBEGIN;\r\n",
    # cut off in the settings: never a complete opening
    b"\\restrict K3y\nBEGIN;\nSET statement_timeout = 0;\n",
]


@pytest.mark.parametrize("output", OPENINGS)
def test_restore_sh_opens_pg_restores_output_as_the_core_does(tmp_path: Path, output: bytes) -> None:
    """The rule in two places (restore.sh has no Python): the same bytes to psql, or a refusal, from both."""
    from mxinfra.backup_archive import Opening, UnsafeDump

    text = (SCRIPTS / "restore.sh").read_text()
    # the function and the one variable of the script it reads (besides the key)
    function = text[text.index('server_run="') : text.index("\n}\n", text.index("opening() {")) + 3]
    done = subprocess.run(["sh", "-c", f'key=K3y\n{function}\nopening', str(SCRIPTS / "restore.sh")], input=output, capture_output=True, timeout=30)
    opening, expected = Opening("K3y"), b""
    lines = output.splitlines(keepends=True)
    try:
        while lines and not opening.done:
            expected += opening.line(lines.pop(0))
        complete = opening.done
        expected += b"".join(lines)
    except UnsafeDump:
        complete = False
    if complete:
        assert done.returncode == 0 and done.stdout == expected, done.stderr
    else:
        assert done.returncode != 0


def test_a_pg_restore_without_restrict_key_is_refused_naming_the_releases(pg: PostgresServer, tmp_path: Path) -> None:
    backups, env, _ = _backed_up(pg, tmp_path, 11)
    pg.psql(_SINCE)
    changed = _snapshot(pg)
    pg_restore_without_restrict_key(tmp_path / "old")
    done = subprocess.run(["sh", str(SCRIPTS / "restore.sh")], env={"PATH": f"{tmp_path / 'old'}:{require_bin_dir()}:{os.environ['PATH']}", **env, "BACKUP_ID": "20261204T020000Z"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "has no --restrict-key, so its output cannot keep a dump's text from running psql's meta-commands" in done.stderr, done.stderr
    assert "15.14" in done.stderr and _snapshot(pg) == changed


def test_a_pg_restore_that_does_not_restrict_psql_is_refused_before_psql_runs_a_line(pg: PostgresServer, tmp_path: Path) -> None:
    r"""psql runs what pg_restore writes out; without \restrict a dump's text could run psql's meta-commands
    (\! runs a shell), so such output is refused: nothing runs, nothing changes."""
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(5)))
    backups = tmp_path / "backups"
    backups.mkdir()
    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "BACKUP_NOW": "20261204T020000Z"}
    assert _run("backup.sh", env).returncode == 0
    pg.psql(_SINCE)
    changed = _snapshot(pg)
    evidence = tmp_path / "shell-escape-ran"
    unrestricted_pg_restore(tmp_path / "old", evidence)
    # the stand-in writes what the check must catch: a shell escape psql would run, and no \restrict
    dump = tmp_path / "db.backup"
    with tarfile.open(backups / "20261204T020000Z.tar.gz") as whole:
        dump.write_bytes(whole.extractfile("db/db.backup").read())
    script = subprocess.run([str(tmp_path / "old" / "pg_restore"), "-f", "-", str(dump)], capture_output=True, check=True).stdout
    assert f"\\! touch {evidence}\n".encode() in script and b"restrict" not in script
    done = subprocess.run(["sh", str(SCRIPTS / "restore.sh")], env={"PATH": f"{tmp_path / 'old'}:{require_bin_dir()}:{os.environ['PATH']}", **env, "BACKUP_ID": "20261204T020000Z"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "did not open its output with the \\restrict key it was given" in done.stderr and "15.14" in done.stderr, done.stderr
    assert not evidence.exists() and _snapshot(pg) == changed


def test_restore_refuses_a_missing_or_malformed_backup(pg: PostgresServer, tmp_path: Path) -> None:
    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(tmp_path)}
    for bad in ("", "../etc/passwd", "20261204T020000Z.tar.gz", "20261204T020000Z; rm -rf /"):
        done = _run("restore.sh", {**env, "BACKUP_ID": bad})
        assert done.returncode == 2 and "YYYYmmddTHHMMSSZ" in done.stderr, bad
    done = _run("restore.sh", {**env, "BACKUP_ID": "20261204T020000Z"})
    assert done.returncode == 2 and "no backup" in done.stderr


def test_a_failed_dump_leaves_no_archive(tmp_path: Path) -> None:
    # A database that does not answer: the run fails, and nothing retention or a restore would take is left.
    (tmp_path / "20261201T020000Z.tar.gz").write_bytes(b"older")
    env = {"DATABASE_URL": "postgres://nobody:x@127.0.0.1:1/none", "BACKUP_DIR": str(tmp_path), "BACKUP_NOW": "20261204T020000Z"}
    done = _run("backup.sh", env)
    assert done.returncode != 0
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".gz" and not p.name.startswith(".")] == ["20261201T020000Z.tar.gz"]


def test_a_failed_database_restore_leaves_the_files_as_they_were(pg: PostgresServer, tmp_path: Path) -> None:
    # The files unpack alongside the database restore; if the database step fails (here: nothing listens),
    # the file store is not touched: no file of the backup comes back, none written since goes.
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(5)))
    files, backups = tmp_path / "files", tmp_path / "backups"
    files.mkdir()
    backups.mkdir()
    (files / "in-the-backup").write_text("old")
    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "FILES_DIR": str(files), "BACKUP_NOW": "20261204T020000Z"}
    assert _run("backup.sh", env).returncode == 0
    (files / "in-the-backup").write_text("changed since")
    (files / "written-since").write_text("new")
    before = _tree(files)
    done = _run("restore.sh", {**env, "DATABASE_URL": "postgres://nobody:x@127.0.0.1:1/none", "BACKUP_ID": "20261204T020000Z", "FILES_DIR": str(files) + "/"})
    assert done.returncode == 1 and "the database and the files are as they were" in done.stderr, done.stderr
    assert _tree(files) == before  # no staging directory left either


def test_a_failed_dump_stops_the_files_archive_too(tmp_path: Path) -> None:
    # The files are archived in the background while pg_dump runs; when the dump fails, no process of the
    # run is left reading the store or writing into the removed directory (the tar is the job the script
    # kills and waits for: before, a subshell held it, and the failure waited for the whole archive).
    files, backups = tmp_path / "files", tmp_path / "backups"
    files.mkdir()
    backups.mkdir()
    for i in range(24):  # about a second of GNU gzip -1 here: still running when the dump has failed
        (files / f"{i:02d}").write_bytes(random.Random(i).randbytes(1 << 20))
    env = {"DATABASE_URL": "postgres://nobody:x@127.0.0.1:1/none", "BACKUP_DIR": str(backups), "FILES_DIR": str(files), "BACKUP_NOW": "20261204T020000Z"}
    # GNU gzip alone (an image without zstd): zlib would store these random ranges in a few milliseconds,
    # done before the dump fails, and the kill this test is about would not happen
    done = _run("backup.sh", env, path=_path_without("zstd", tmp_path / "bin"))
    assert done.returncode == 1 and "pg_dump failed: no archive written" in done.stderr, done.stderr
    assert _running(b".incomplete-20261204T020000Z") == [] and list(backups.iterdir()) == []


def test_a_missing_file_store_is_refused_before_the_dump(pg: PostgresServer, tmp_path: Path) -> None:
    # The file store is not there (its volume not mounted): refused at once, nothing written.
    backups = tmp_path / "backups"
    backups.mkdir()
    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "FILES_DIR": str(tmp_path / "gone"), "BACKUP_NOW": "20261204T020000Z"}
    done = _run("backup.sh", env)
    assert done.returncode == 2 and f"FILES_DIR {tmp_path / 'gone'} is not a directory" in done.stderr, done.stderr
    assert list(backups.iterdir()) == []


def _stamp(t: datetime) -> str:
    return backup_id(t)[: -len(".tar.gz")]


def _prune(tmp_path: Path, times: list[datetime], now: datetime, b: Backups, pinned: datetime | None = None) -> set[datetime]:
    for t in times:
        (tmp_path / backup_id(t)).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a backup: left alone")
    pin = {"BACKUP_KEEP": _stamp(pinned)} if pinned is not None else {}
    done = _run("backup.sh", {"BACKUP_DIR": str(tmp_path), "BACKUP_NOW": _stamp(now), **pin, **retention_env(b)}, "prune")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "notes.txt").exists()
    return {t for p in tmp_path.iterdir() if (t := parse_id(p.name)) is not None}


@pytest.mark.parametrize("seed", range(40))
def test_script_retention_is_the_cores(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    now = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(60 * 365 * 86400))
    span = rng.choice([2, 30, 200, 900])
    times = sorted({(now - timedelta(seconds=rng.randrange(-2 * 86400, span * 86400))).replace(microsecond=0) for _ in range(rng.randrange(0, 120))})
    b = Backups(daily_days=rng.choice([0, 1, 14]), weekly_weeks=rng.choice([0, 1, 13]), monthly_months=rng.choice([0, 1, 12]))
    pinned = rng.choice(times) if times and rng.random() < 0.3 else None
    assert _prune(tmp_path, times, now, b, pinned) == keep(times, now, b, [pinned] if pinned else [])


def test_script_retention_over_years_of_nightlies(tmp_path: Path) -> None:
    now = datetime(2028, 3, 1, 2, 0, tzinfo=UTC)  # the day after a leap day
    times = [now - timedelta(days=i) for i in range(900)]
    kept = _prune(tmp_path, times, now, Backups())
    assert kept == keep(times, now, Backups())
    assert now in kept and now - timedelta(days=14) not in kept


# --- restore from another environment: export.sh sends, restore.sh receives ---------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# what the receiving pod holds of the sender's token "s3cret" (mxinfra_kubernetes.backups.token_sha256)
S3CRET_SHA = hashlib.sha256(b"s3cret").hexdigest()


def _receiving(env: dict[str, str], path: str | None = None) -> subprocess.Popen[str]:
    full = {"PATH": f"{require_bin_dir()}:{path or os.environ['PATH']}", **env}
    return subprocess.Popen(["sh", str(SCRIPTS / "restore.sh")], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# Both ends hash the archive by OpenSSL where it is (the postgres images have it), by sha256sum in an image without.
@pytest.mark.parametrize("hasher", ["openssl", "sha256sum"])
def test_an_archive_sent_by_export_is_checked_and_restored_into_another_database(pg: PostgresServer, tmp_path: Path, hasher: str) -> None:
    path = _path_without("openssl", tmp_path / "bin") if hasher == "sha256sum" else None
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(7)))
    source, files, theirs, dest_files = tmp_path / "src-backups", tmp_path / "src-files", tmp_path / "dst-backups", tmp_path / "dst-files"
    for d in (source, files, theirs, dest_files):
        d.mkdir()
    (files / "a").write_bytes(random.Random(2).randbytes(300_000))
    (dest_files / "only-here").write_text("replaced")
    before, tree_before = _snapshot(pg), _tree(files)
    done = _run("backup.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(source), "FILES_DIR": str(files), "BACKUP_NOW": "20261204T020000Z"})
    assert done.returncode == 0, done.stderr
    pg.psql('CREATE DATABASE "dst"')
    dst_url = pg.url.rsplit("/", 1)[0] + "/dst"
    try:
        port = _free_port()
        receiver = _receiving({"DATABASE_URL": dst_url, "BACKUP_DIR": str(theirs), "FILES_DIR": str(dest_files), "BACKUP_ID": "20261204T020000Z", "BACKUP_SOURCE": "production", "BACKUP_PORT": str(port), "BACKUP_TOKEN_SHA256": S3CRET_SHA, "BACKUP_WAIT": "60"}, path)
        # a stranger first: refused, and the receiver waits on for the export
        assert _wait_port(port)
        stranger = socket.create_connection(("127.0.0.1", port), timeout=30)
        stranger.sendall(b"mxinfra-backup/1 guess 20261204T020000Z 5 " + b"0" * 64 + b"\nhello")
        try:
            assert stranger.recv(10) == b""  # closed on it, no "ok"
        except ConnectionResetError:
            pass  # closed with "hello" unread: the same refusal
        stranger.close()
        sent = _run("export.sh", {"BACKUP_DIR": str(source), "BACKUP_ID": "20261204T020000Z", "BACKUP_TARGET": f"127.0.0.1:{port}", "BACKUP_TOKEN": "s3cret"}, path=path)
        out, err = receiver.communicate(timeout=120)
        assert sent.returncode == 0 and receiver.returncode == 0, (sent.stderr, err)
        assert "refused a connection" in err and "restored 20261204T020000Z of production" in out
        assert f"export: hashing with {hasher} beside the send" in sent.stdout and f"restore: hashing with {hasher}" in out
        archive = source / "20261204T020000Z.tar.gz"
        sha = hashlib.sha256(archive.read_bytes()).hexdigest()
        assert f"sent 20261204T020000Z ({archive.stat().st_size} bytes, sha256 {sha})" in sent.stdout
        # kept apart from the destination's own archives: its retention and list never see it
        assert sorted(str(p.relative_to(theirs)) for p in theirs.rglob("*")) == ["from-production", "from-production/20261204T020000Z.tar.gz"]
        after = {t: pg.psql(f"COPY (SELECT * FROM {t} ORDER BY 1, 2) TO STDOUT", database="dst") for t in TABLES}
        assert after == {t: before[t] for t in TABLES}
        assert _tree(dest_files) == tree_before
    finally:
        pg.psql('DROP DATABASE IF EXISTS "dst"')


def _wait_port(port: int) -> bool:
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("hasher", ["openssl", "sha256sum"])
def test_a_wrong_token_or_a_corrupt_archive_restores_nothing(pg: PostgresServer, tmp_path: Path, hasher: str) -> None:
    path = _path_without("openssl", tmp_path / "bin") if hasher == "sha256sum" else None
    pg.psql('DROP SCHEMA public CASCADE; CREATE SCHEMA public; CREATE TABLE "orders$order" (id bigint PRIMARY KEY); INSERT INTO "orders$order" VALUES (1), (2);')
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "20261204T020000Z.tar.gz").write_bytes(b"not what was sent")
    # a wrong token, the sha256 the receiving pod's spec shows (not the token), a corrupted copy
    for token, header_sha in (("wrong", None), (S3CRET_SHA, None), ("s3cret", "0" * 64)):
        port = _free_port()
        receiver = _receiving({"DATABASE_URL": pg.url, "BACKUP_DIR": str(tmp_path / "dst"), "BACKUP_ID": "20261204T020000Z", "BACKUP_SOURCE": "production", "BACKUP_PORT": str(port), "BACKUP_TOKEN_SHA256": S3CRET_SHA, "BACKUP_WAIT": "3"}, path)
        assert _wait_port(port)
        if header_sha is None:
            sent = _run("export.sh", {"BACKUP_DIR": str(tmp_path / "src"), "BACKUP_ID": "20261204T020000Z", "BACKUP_TARGET": f"127.0.0.1:{port}", "BACKUP_TOKEN": token})
            # refused at the header (`no`): no second try, no sha256 pass first
            assert sent.returncode == 1 and "refused the header (the token, the archive id or its size)" in sent.stderr and "mxinfra-backup/1" not in sent.stderr, sent.stderr
        else:
            # bytes that do not match the sha256 announced (a corrupted copy): refused after the transfer; in
            # mxinfra-backup/1's header, as an export deployed before /2 sends it (still received)
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(f"mxinfra-backup/1 s3cret 20261204T020000Z 4 {header_sha}\n".encode() + b"abcd")
                assert s.recv(10) == b"bad\n"
        out, err = receiver.communicate(timeout=60)
        assert receiver.returncode != 0, err
        assert ("no archive arrived" in err) if header_sha is None else ("not " + header_sha in err and f"hashing with {hasher}" in out)
        assert not [p for p in (tmp_path / "dst").rglob("*") if p.is_file()]
    assert pg.psql('SELECT count(*) FROM "orders$order"').strip() == "2"


# An `openssl` that passes the scripts' check (the digest of "mx") and then, hashing an archive, stalls after
# reading it all, gives the digest FAKE_SLEEP seconds late (slow), or ends without one.
FAKE_OPENSSL = """#!/bin/sh
# everything read first; "mx" is the scripts' check, answered as OpenSSL would
in=$(mktemp)
cat > "$in"
if [ "$(wc -c < "$in")" = 2 ] && [ "$(cat "$in")" = mx ]; then rm -f "$in"; echo "d7f890c4f72a3d49b69870b2dc2850c698e7b841eb2dd7cd21e4de551a29f4c4 *stdin"; exit 0; fi
case "$FAKE_HASHER" in
  stall) rm -f "$in"; exec sleep "$FAKE_SLEEP" ;;
  slow) sleep "$FAKE_SLEEP"; d=$(sha256sum < "$in"); rm -f "$in"; echo "${d%% *} *stdin" ;;
  *) rm -f "$in" ;;
esac
"""


def _fake_openssl(into: Path) -> str:
    """A PATH whose first directory holds FAKE_OPENSSL as `openssl`."""
    into.mkdir()
    (into / "openssl").write_text(FAKE_OPENSSL)
    (into / "openssl").chmod(0o755)
    return f"{into}:{os.environ['PATH']}"


@pytest.mark.parametrize("fault", ["stall", "empty"])
def test_a_hasher_that_stalls_or_says_nothing_fails_the_receive_in_time(pg: PostgresServer, tmp_path: Path, fault: str) -> None:
    """The receiver hashes as the bytes arrive: a hasher stuck after them must not hold it past BACKUP_WAIT
    (nor leave it waiting on the hasher as it stops), and one that gives no digest is a failure saying so."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "20261204T020000Z.tar.gz").write_bytes(random.Random(3).randbytes(3 << 20))
    fake = _fake_openssl(tmp_path / "fake")
    sleep = f"60.{os.getpid()}{random.randrange(10**6)}"  # this run's stalled hasher, told from any other
    port = _free_port()
    receiver = _receiving({"DATABASE_URL": pg.url, "BACKUP_DIR": str(tmp_path / "dst"), "BACKUP_ID": "20261204T020000Z", "BACKUP_SOURCE": "production", "BACKUP_PORT": str(port), "BACKUP_TOKEN_SHA256": S3CRET_SHA, "BACKUP_WAIT": "3", "FAKE_HASHER": fault, "FAKE_SLEEP": sleep}, fake)
    assert _wait_port(port)
    started = time.monotonic()
    sent = _run("export.sh", {"BACKUP_DIR": str(tmp_path / "src"), "BACKUP_ID": "20261204T020000Z", "BACKUP_TARGET": f"127.0.0.1:{port}", "BACKUP_TOKEN": "s3cret"})
    out, err = receiver.communicate(timeout=30)
    assert time.monotonic() - started < 15, (out, err)
    assert sent.returncode != 0 and receiver.returncode != 0 and "restore: hashing with openssl" in out
    if fault == "stall":
        assert "hashing the archive (openssl dgst -sha256 -r) did not end within 3s of its last byte" in err, err
    else:
        assert "hashing the archive (openssl dgst -sha256 -r) gave no sha256" in err, err
    assert not [p for p in (tmp_path / "dst").rglob("*") if p.is_file()]  # not even the bytes that came
    assert not [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p) == b"sleep\0" + sleep.encode() + b"\0"]


def test_export_whose_hasher_gives_no_sha256_leaves_nothing_received(pg: PostgresServer, tmp_path: Path) -> None:
    """The sha256 follows the bytes (the hasher reads the archive beside the send): one that gives none ends
    the connection short of it, the export fails saying so and the receiver keeps nothing."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "20261204T020000Z.tar.gz").write_bytes(random.Random(4).randbytes(2 << 20))
    fake = _fake_openssl(tmp_path / "fake")
    port = _free_port()
    receiver = _receiving({"DATABASE_URL": pg.url, "BACKUP_DIR": str(tmp_path / "dst"), "BACKUP_ID": "20261204T020000Z", "BACKUP_SOURCE": "production", "BACKUP_PORT": str(port), "BACKUP_TOKEN_SHA256": S3CRET_SHA, "BACKUP_WAIT": "20"})
    assert _wait_port(port)
    sent = _run("export.sh", {"BACKUP_DIR": str(tmp_path / "src"), "BACKUP_ID": "20261204T020000Z", "BACKUP_TARGET": f"127.0.0.1:{port}", "BACKUP_TOKEN": "s3cret", "FAKE_HASHER": "empty"}, path=fake)
    out, err = receiver.communicate(timeout=60)
    assert sent.returncode == 1 and "gave no sha256: the receiver keeps nothing" in sent.stderr and "export: sent" not in sent.stdout, sent.stderr
    assert receiver.returncode != 0 and f"the {2 << 20} bytes of the archive were not followed by their sha256" in err, err
    assert not [p for p in (tmp_path / "dst").rglob("*") if p.is_file()]  # not even the bytes that came


@pytest.mark.parametrize("after", [b"", b"0" * 64 + b"\n", b"not a sha256\n"])
def test_bytes_not_followed_by_their_sha256_are_not_kept(pg: PostgresServer, tmp_path: Path, after: bytes) -> None:
    """mxinfra-backup/2: the header, answered `go`, the bytes, then their sha256 on a line; none (the
    connection ends), another one or anything else is refused after the transfer."""
    port = _free_port()
    receiver = _receiving({"DATABASE_URL": pg.url, "BACKUP_DIR": str(tmp_path / "dst"), "BACKUP_ID": "20261204T020000Z", "BACKUP_SOURCE": "production", "BACKUP_PORT": str(port), "BACKUP_TOKEN_SHA256": S3CRET_SHA, "BACKUP_WAIT": "20"})
    assert _wait_port(port)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"mxinfra-backup/2 s3cret 20261204T020000Z 4\n")
        assert s.recv(10) == b"go\n"
        s.sendall(b"abcd" + after)
        s.shutdown(socket.SHUT_WR)
        answer = s.recv(10)
    out, err = receiver.communicate(timeout=60)
    assert receiver.returncode == 1  # restore.sh's "nothing restored", whatever errno the failure left
    if after.startswith(b"0"):
        assert answer == b"bad\n" and "arrived with sha256 " + hashlib.sha256(b"abcd").hexdigest() + ", not " + "0" * 64 in err, err
    else:
        assert answer == b"" and "the 4 bytes of the archive were not followed by their sha256" in err, err
    assert not [p for p in (tmp_path / "dst").rglob("*") if p.is_file()]  # not even the bytes that came


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_export_refuses_a_missing_or_malformed_backup(tmp_path: Path) -> None:
    env = {"BACKUP_DIR": str(tmp_path), "BACKUP_TARGET": "127.0.0.1:1", "BACKUP_TOKEN": "t"}
    for bad in ("", "../x", "20261204T020000Z.tar.gz"):
        done = _run("export.sh", {**env, "BACKUP_ID": bad})
        assert done.returncode == 2 and "YYYYmmddTHHMMSSZ" in done.stderr, bad
    done = _run("export.sh", {**env, "BACKUP_ID": "20261204T020000Z"})
    assert done.returncode == 2 and "no backup" in done.stderr


@pytest.mark.parametrize("value", ["0", "64M", "-1", "08"])
def test_a_range_size_that_is_not_a_whole_number_of_mib_is_refused(tmp_path: Path, value: str) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    env = {"DATABASE_URL": "postgres://nobody:x@127.0.0.1:1/none", "BACKUP_DIR": str(backups), "BACKUP_NOW": "20261204T020000Z", "BACKUP_RANGE_MB": value}
    done = _run("backup.sh", env)
    assert done.returncode == 2 and "BACKUP_RANGE_MB must be a whole number of MiB" in done.stderr, done.stderr
    assert list(backups.iterdir()) == []


def _tar(entries: dict[str, bytes]) -> bytes:
    """A whole tar archive (end marker included) of `entries`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            t.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _trailer(offset: int) -> bytes:
    return b"\x1f\x8b\x08\x10" + bytes(5) + b"\x03" + b"mxinfra-tree-offset=%020d" % offset + b"\x00\x01\x00\x00\xff\xff" + bytes(8)


def _real_db_member(pg: PostgresServer, tmp_path: Path, seed: int) -> tuple[Path, Path, dict[str, str], bytes]:
    """An empty file store, the backups directory, the scripts' env, and the db/ gzip member of a real
    backup of fresh rows: the start of an archive whose tree/ a test crafts."""
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(seed)))
    files, backups = tmp_path / "files", tmp_path / "backups"
    files.mkdir()
    backups.mkdir()
    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "BACKUP_NOW": "20261204T020000Z"}
    assert _run("backup.sh", env).returncode == 0
    real = (backups / "20261204T020000Z.tar.gz").read_bytes()
    return files, backups, env, real[: _gzip_member_starts(real)[1]]


def _store_changed_since_its_backup(pg: PostgresServer, tmp_path: Path, seed: int) -> tuple[Path, dict[str, str]]:
    """A file store whose backup 20261205T020000Z holds `kept` as b"before", changed to b"since" after it (a
    restore that did nothing leaves b"since"), and the scripts' env with FILES_DIR."""
    files, _, env, _ = _real_db_member(pg, tmp_path, seed)
    (files / "kept").write_bytes(b"before")
    env = {**env, "FILES_DIR": str(files)}
    assert _run("backup.sh", {**env, "BACKUP_NOW": "20261205T020000Z"}).returncode == 0
    (files / "kept").write_bytes(b"since")
    return files, env


@pytest.mark.parametrize("offset_kind", ["right", "off-member", "absent"])
def test_restore_unpacks_the_files_from_where_the_last_member_says(pg: PostgresServer, tmp_path: Path, offset_kind: str) -> None:
    # An archive whose tar stream ends after tree A (its end marker), with tree B in members after it:
    # read from the start, tar reads past A's end (so that every member's CRC is checked) and finds A and
    # B; read from the offset the last member gives, B alone. So which files come back tells which way
    # restore.sh read: the offset when it lands on a gzip member, else the start (an archive of Mendix
    # Cloud or an older backup has no such member).
    files, backups, env, db_member = _real_db_member(pg, tmp_path, 9)
    a = gzip.compress(_tar({"tree/from-the-start": b"A"}))
    b = gzip.compress(_tar({"tree/from-the-offset": b"B"}))
    offset = {"right": len(db_member) + len(a), "off-member": len(db_member) + len(a) + 1, "absent": None}[offset_kind]
    crafted = db_member + a + b + (_trailer(offset) if offset is not None else b"")
    (backups / "20261205T020000Z.tar.gz").write_bytes(crafted)
    done = _run("restore.sh", {**env, "FILES_DIR": str(files), "BACKUP_ID": "20261205T020000Z"})
    assert done.returncode == 0, done.stderr
    assert _tree(files) == ({"from-the-offset": b"B"} if offset_kind == "right" else {"from-the-start": b"A", "from-the-offset": b"B"})


def test_files_whose_inflater_fails_after_tars_end_are_not_restored(pg: PostgresServer, tmp_path: Path) -> None:
    # A member with a bad CRC after the tree's tar: tar alone would find the whole tree; only the inflater
    # fails. The file store must stay as it was (exit 3: the database was restored, the files were not).
    files, backups, env, db_member = _real_db_member(pg, tmp_path, 10)
    (files / "kept").write_bytes(b"before")
    bad = bytearray(gzip.compress(bytes(512)))
    bad[-8] ^= 0xFF  # its CRC-32
    tree = gzip.compress(_tar({"tree/from-the-archive": b"B"})) + bytes(bad)
    (backups / "20261205T020000Z.tar.gz").write_bytes(db_member + tree + _trailer(len(db_member)))
    done = _run("restore.sh", {**env, "FILES_DIR": str(files), "BACKUP_ID": "20261205T020000Z"})
    assert done.returncode == 3, done.stderr
    assert "the files restore of 20261205T020000Z failed" in done.stderr
    assert _tree(files) == {"kept": b"before"}


def test_a_restore_that_may_not_begin_stops_its_files_unpacking_whole(pg: PostgresServer, tmp_path: Path) -> None:
    # Another session of the app's user stays connected (RESTORE_ALONE_WAIT=0): nothing is restored. The
    # files were being unpacked in the background by then, by an inflater that keeps writing (zeros, which
    # tar reads on past); it is stopped with tar, not left writing, and the staging directory is gone.
    files, env = _store_changed_since_its_backup(pg, tmp_path, 12)
    fake = tmp_path / "fake"
    fake.mkdir()
    # a name unique to this run: no other run's process matches it
    endless = fake / f"zeros-{random.Random().randrange(10**9)}"
    endless.symlink_to(shutil.which("cat"))
    real = shutil.which("zstd")
    assert real, "no zstd here: ./dev test installs it"
    # the files' inflater (its standard input is the archive itself; the other inflaters read a pipe)
    (fake / "zstd").write_text(f'#!/bin/sh\nif [ "$*" = "-q -dc" ] && [ -f /dev/stdin ]; then exec {endless} /dev/zero; fi\nexec {real} "$@"\n')
    (fake / "zstd").chmod(0o755)
    holder = subprocess.Popen([str(require_bin_dir() / "psql"), pg.url, "-c", "SELECT pg_sleep(60)"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if "pg_sleep" in pg.psql("SELECT query FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"):
                break
            time.sleep(0.05)
        # its output to a file: a process left behind would hold a pipe open, and the run would hang
        with (tmp_path / "err").open("w+") as err:
            full = {"PATH": f"{fake}:{require_bin_dir()}:{os.environ['PATH']}", **env, "BACKUP_ID": "20261205T020000Z", "RESTORE_ALONE_WAIT": "0"}
            rc = subprocess.run(["sh", str(SCRIPTS / "restore.sh")], env=full, stdout=subprocess.DEVNULL, stderr=err, timeout=60).returncode
            err.seek(0)
            said = err.read()
        left = _running(endless.name.encode())
    finally:
        holder.kill()
        holder.wait()
        subprocess.run(["pkill", "-f", endless.name], check=False)
    assert rc == 1 and re.search(r"\d+ other session\(s\) of the database's user still connected after 0s .*: nothing was restored", said), said
    assert left == [], left
    assert sorted(p.name for p in files.iterdir()) == ["kept"] and (files / "kept").read_bytes() == b"since"


def test_what_a_restore_killed_hard_left_is_not_backed_up_and_the_next_restore_removes_it(pg: PostgresServer, tmp_path: Path) -> None:
    # restore.sh stages the files in the store (.mxinfra-restore-<id>, .mxinfra-upload-<id>); a pod killed
    # past its grace period leaves that behind. It is not the app's: never archived, never counted.
    files, backups, env, _ = _real_db_member(pg, tmp_path, 15)
    (files / "doc").write_bytes(b"kept")
    for step in ("restore", "upload"):
        half = files / f".mxinfra-{step}-20261101T000000Z" / "tree"
        half.mkdir(parents=True)
        (half / "half").write_bytes(b"x" * 1000)
    env = {**env, "FILES_DIR": str(files)}
    assert _run("backup.sh", {**env, "BACKUP_NOW": "20261205T020000Z"}).returncode == 0
    with tarfile.open(backups / "20261205T020000Z.tar.gz") as archive:
        names = archive.getnames()
        described = json.loads(archive.extractfile(".metadata").read())
    assert [n for n in names if n.startswith("tree")] == ["tree", "tree/doc"], names
    assert described["filesSize"] == "4"
    done = _run("restore.sh", {**env, "BACKUP_ID": "20261205T020000Z"})
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in files.iterdir()) == ["doc"]


def test_a_database_only_backup_restores_without_a_file_store(pg: PostgresServer, tmp_path: Path) -> None:
    # Files in S3 or Azure: the Jobs have no FILES_DIR at all (backups.py), and both scripts run without it.
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(13)))
    before = _snapshot(pg)
    backups = tmp_path / "backups"
    backups.mkdir()
    done = _run("backup.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "BACKUP_NOW": "20261204T020000Z"})
    assert done.returncode == 0, done.stderr
    pg.psql('DELETE FROM "orders$order"')
    done = _run("restore.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "BACKUP_ID": "20261204T020000Z"})
    assert done.returncode == 0, done.stderr
    assert _snapshot(pg) == before


def test_a_signal_to_the_backup_stops_its_files_session_too(tmp_path: Path) -> None:
    # The files are archived in a session of their own (setsid); a SIGTERM to the script alone (a timeout,
    # a person's ^C) must stop that session as well, and leave no archive.
    files, backups = tmp_path / "files", tmp_path / "backups"
    files.mkdir()
    backups.mkdir()
    for i in range(48):
        (files / f"{i:02d}").write_bytes(random.Random(i).randbytes(1 << 20))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection and never answers: pg_dump waits
    try:
        # GNU gzip alone (no zstd): 48 MiB of random bytes keep the files' session busy past the signal
        env = {"PATH": f"{require_bin_dir()}:{_path_without('zstd', tmp_path / 'bin')}", "DATABASE_URL": f"postgres://nobody:x@127.0.0.1:{silent.getsockname()[1]}/none",
               "BACKUP_DIR": str(backups), "FILES_DIR": str(files), "BACKUP_NOW": "20261204T020000Z", "BACKUP_RANGE_MB": "1"}
        proc = subprocess.Popen(["sh", str(SCRIPTS / "backup.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    finally:
        silent.close()
    assert proc.returncode == 1 and "interrupted: no archive written" in err, err
    time.sleep(0.3)
    assert _running(b".incomplete-20261204T020000Z", b"tree-job") == [] and list(backups.iterdir()) == []


def test_an_archive_put_over_http_survives_strangers_and_is_restored(pg: PostgresServer, tmp_path: Path) -> None:
    """restore.sh's HTTP receiver (BACKUP_RECEIVE=http, `mxinfra backup restore --archive` through the pod
    proxy): a connection reset before it says anything, a wrong path and a chunked PUT are answered (or
    dropped) and waited past, as is an empty body; the real PUT is checked and restored; read from the archive's start."""
    pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;" + SCHEMA + _data(random.Random(9)))
    source, files, dest = tmp_path / "src", tmp_path / "files", tmp_path / "dst"
    for d in (source, files, dest):
        d.mkdir()
    (files / "doc").write_bytes(b"a document")
    before = _snapshot(pg)
    assert _run("backup.sh", {"DATABASE_URL": pg.url, "BACKUP_DIR": str(source), "FILES_DIR": str(files), "BACKUP_NOW": "20261204T020000Z"}).returncode == 0
    # zeros after the last gzip member (a tape-blocked copy): the caller's check and GNU gzip read past
    # them; zstd would refuse them, so an archive from outside goes through gzip
    (source / "20261204T020000Z.tar.gz").write_bytes((source / "20261204T020000Z.tar.gz").read_bytes() + bytes(1024))
    assert check(source / "20261204T020000Z.tar.gz").files == 1
    archive = (source / "20261204T020000Z.tar.gz").read_bytes()
    sha = hashlib.sha256(archive).hexdigest()
    pg.psql('DELETE FROM "orders$order"')
    (files / "doc").unlink()
    port = _free_port()
    receiver = _receiving({"DATABASE_URL": pg.url, "BACKUP_DIR": str(dest), "FILES_DIR": str(files), "BACKUP_ID": "20261204T020000Z", "BACKUP_SOURCE": "upload", "BACKUP_RECEIVE": "http", "BACKUP_PORT": str(port), "BACKUP_TOKEN_SHA256": S3CRET_SHA, "BACKUP_WAIT": "60"})
    assert _wait_port(port)

    def put(head: bytes, body: bytes = b"") -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(head + body)
            answer = b""
            while data := s.recv(65536):
                answer += data
            return answer

    reset = socket.create_connection(("127.0.0.1", port))
    reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    reset.close()  # a reset with nothing said (a scan, an aborted dial): no answer can be written to it
    assert put(f"PUT /guess/{sha}/20261204T020000Z.tar.gz HTTP/1.1\r\nContent-Length: 0\r\n\r\n".encode()).startswith(b"HTTP/1.1 404")
    # what the Job's spec shows (the token's sha256) is not the token: a reader of the spec sends nothing
    assert put(f"PUT /{S3CRET_SHA}/{sha}/20261204T020000Z.tar.gz HTTP/1.1\r\nContent-Length: 0\r\n\r\n".encode()).startswith(b"HTTP/1.1 404")
    assert put(f"PUT /s3cret/{sha}/20261204T020000Z.tar.gz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode()).startswith(b"HTTP/1.1 411")
    # the right path with an empty body: no archive is empty (refused as the TCP receiver refuses a size of 0)
    empty = put(f"PUT /s3cret/{sha}/20261204T020000Z.tar.gz HTTP/1.1\r\nContent-Length: 0\r\n\r\n".encode())
    assert empty.startswith(b"HTTP/1.1 400") and empty.endswith(b"an empty body: no archive is empty\n"), empty
    answer = put(f"PUT /s3cret/{sha}/20261204T020000Z.tar.gz HTTP/1.1\r\nHost: pod\r\nContent-Length: {len(archive)}\r\n\r\n".encode(), archive)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok\n")
    out, err = receiver.communicate(timeout=120)
    assert receiver.returncode == 0, err
    assert f"received 20261204T020000Z from this machine ({len(archive)} bytes, sha256 {sha})" in out and "restore: inflating with gzip" in out
    assert "restore: hashing with openssl" in out  # as the archive arrived (the postgres images have OpenSSL)
    assert _snapshot(pg) == before and (files / "doc").read_bytes() == b"a document"
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["uploaded", "uploaded/20261204T020000Z.tar.gz"]


def _longname(name: str) -> bytes:
    """A GNU long-name header and its data, as tar writes before a member whose name is long."""
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, len(name) + 1
    data = name.encode() + b"\0"
    return info.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512)


@pytest.mark.parametrize("via", ["upload", "export"])
def test_an_uploaded_archive_is_judged_as_gnu_tar_reads_it_before_anything_is_restored(pg: PostgresServer, tmp_path: Path, via: str) -> None:
    """Two long-name headers before one member: Python's tarfile (the caller's check) takes the first name,
    GNU tar the last. The Job unpacks with GNU tar alone and judges what it wrote: a name outside db/ and
    tree/ is refused, nothing is restored, nothing written outside its directory. The same for an archive
    another environment's export Job sends (`restore --from`): that environment's holders, a lower tier's
    among them, could have written it, so it is judged as one from outside."""
    pg.psql('DROP SCHEMA public CASCADE; CREATE SCHEMA public; CREATE TABLE "orders$order" (id bigint PRIMARY KEY); INSERT INTO "orders$order" VALUES (1), (2);')
    files, dest = tmp_path / "files", tmp_path / "dst"
    files.mkdir()
    dest.mkdir()
    (files / "kept").write_text("the store as it was")
    dump = subprocess.run([str(require_bin_dir() / "pg_dump"), "--format=custom", f"--dbname={pg.url}"], capture_output=True, check=True).stdout
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo("db/db.backup")
        info.size = len(dump)
        t.addfile(info, io.BytesIO(dump))
    raw = body.getvalue().rstrip(b"\0")
    raw += b"\0" * (-len(raw) % 512)
    payload = b"planted"
    member = tarfile.TarInfo("tree/ok")
    member.size = len(payload)
    raw += _longname("tree/ok") + _longname(f"{tmp_path.name}-planted") + member.tobuf(tarfile.GNU_FORMAT) + payload + b"\0" * (-len(payload) % 512) + b"\0" * 1024
    archive = gzip.compress(raw)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as t:
        assert t.getnames() == ["db/db.backup", "tree/ok"]  # what the caller's reader sees
    sha = hashlib.sha256(archive).hexdigest()
    pg.psql('DELETE FROM "orders$order" WHERE id = 2')
    port = _free_port()
    receive = {"BACKUP_SOURCE": "upload", "BACKUP_RECEIVE": "http"} if via == "upload" else {"BACKUP_SOURCE": "acceptance"}
    receiver = _receiving({"DATABASE_URL": pg.url, "BACKUP_DIR": str(dest), "FILES_DIR": str(files), "BACKUP_ID": "20261204T020000Z", **receive, "BACKUP_PORT": str(port), "BACKUP_TOKEN_SHA256": S3CRET_SHA, "BACKUP_WAIT": "60"})
    assert _wait_port(port)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        if via == "upload":
            s.sendall(f"PUT /s3cret/{sha}/20261204T020000Z.tar.gz HTTP/1.1\r\nContent-Length: {len(archive)}\r\n\r\n".encode() + archive)
            assert s.recv(100).startswith(b"HTTP/1.1 200")
        else:  # as export.sh sends it
            s.sendall(f"mxinfra-backup/2 s3cret 20261204T020000Z {len(archive)}\n".encode())
            assert s.recv(10) == b"go\n"
            s.sendall(archive + f"{sha}\n".encode())
            assert s.recv(10) == b"ok\n"
    out, err = receiver.communicate(timeout=120)
    assert "restore: inflating with gzip" in out  # (GNU gzip for an archive from outside: zstd takes other formats too)
    assert receiver.returncode != 0 and "is not a backup archive (only .metadata, db/db.backup and plain files under tree/)" in err and "planted" in err
    assert pg.psql('SELECT count(*) FROM "orders$order"').strip() == "1"  # not restored
    assert sorted(p.name for p in files.iterdir()) == ["kept"] and not list(tmp_path.parent.glob(f"{tmp_path.name}-planted"))


def test_restore_sh_asks_the_server_what_the_core_asks():
    """The questions in two places (restore.sh has no Python): the same SQL for the server's run, the
    transaction's status and ending its backend, with restore.sh's arguments in the core's places."""
    from mxinfra.backup_archive import _STARTED, TERMINATE, TRANSACTION_STATUS

    text = (SCRIPTS / "restore.sh").read_text()
    assert f'server_run="{_STARTED}"' in text
    asked = text.replace("$server_run", _STARTED)
    assert TRANSACTION_STATUS.format(transaction="$1") in asked
    assert TERMINATE.format(pid="$2", xid="$(($1 % 4294967296))", backend_start="$3") in asked


def _export_to_peer(peer: Any, source: Path, env: dict[str, str], path: str | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """export.sh sending archive 20261204T020000Z of `source` to `peer(listener)` run in a thread on a
    loopback listener (two connections queued at most); its result and how long it took."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(2)
        listener.settimeout(30)
        thread = threading.Thread(target=peer, args=(listener,))
        thread.start()
        started = time.monotonic()
        sent = _run("export.sh", {"BACKUP_DIR": str(source), "BACKUP_ID": "20261204T020000Z", "BACKUP_TARGET": f"127.0.0.1:{listener.getsockname()[1]}", "BACKUP_TOKEN": "s3cret", **env}, path=path)
        took = time.monotonic() - started
        thread.join(30)
    return sent, took


def test_export_sends_the_sha256_first_to_a_receiver_deployed_before_mxinfra_backup_2(tmp_path: Path) -> None:
    """A receiver deployed before mxinfra-backup/2 (restore.sh's perl until 2026-12-07, as below: a header of
    five fields or the connection closed) never answers `go`: export.sh sends again with the sha256 in the
    header."""
    archive = random.Random(5).randbytes(3 << 20)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "20261204T020000Z.tar.gz").write_bytes(archive)
    heads: list[bytes] = []
    got: list[bytes] = []

    def receive_as_before(listener: socket.socket) -> None:
        for _ in range(2):
            c, _ = listener.accept()
            with c, c.makefile("rb") as r:
                head = r.readline()
                heads.append(head)
                fields = head.decode().split(" ")
                if fields[0] != "mxinfra-backup/1" or len(fields) != 5:
                    continue  # refused: closed
                got.append(r.read(int(fields[3])))
                c.sendall(b"ok\n" if hashlib.sha256(got[-1]).hexdigest() == fields[4].strip() else b"bad\n")
                return

    sent, _ = _export_to_peer(receive_as_before, tmp_path / "src", {})
    sha = hashlib.sha256(archive).hexdigest()
    assert heads == [f"mxinfra-backup/2 s3cret 20261204T020000Z {len(archive)}\n".encode(), f"mxinfra-backup/1 s3cret 20261204T020000Z {len(archive)} {sha}\n".encode()]
    assert got == [archive]
    assert sent.returncode == 0 and "closed on the mxinfra-backup/2 header" in sent.stderr and f"sent 20261204T020000Z ({len(archive)} bytes, sha256 {sha})" in sent.stdout, sent.stderr


def test_a_receiver_keeps_an_archive_sent_as_an_export_deployed_before_sends_it(pg: PostgresServer, tmp_path: Path) -> None:
    """mxinfra-backup/1 (export.sh until 2026-12-07): the sha256 in the header, no `go`: received and checked."""
    archive = random.Random(6).randbytes(1 << 20)
    port = _free_port()
    receiver = _receiving({"DATABASE_URL": pg.url, "BACKUP_DIR": str(tmp_path / "dst"), "BACKUP_ID": "20261204T020000Z", "BACKUP_SOURCE": "production", "BACKUP_PORT": str(port), "BACKUP_TOKEN_SHA256": S3CRET_SHA, "BACKUP_WAIT": "20"})
    assert _wait_port(port)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"mxinfra-backup/1 s3cret 20261204T020000Z {len(archive)} {hashlib.sha256(archive).hexdigest()}\n".encode() + archive)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b"ok\n"
    out, _ = receiver.communicate(timeout=60)
    assert f"received 20261204T020000Z from the export Job ({len(archive)} bytes" in out
    assert (tmp_path / "dst" / "from-production" / "20261204T020000Z.tar.gz").read_bytes() == archive


def _archive_and_receiver(pg: PostgresServer, tmp_path: Path, seed: int, wait: int) -> tuple[bytes, int, subprocess.Popen[str]]:
    """A MiB of random bytes as archive 20261204T020000Z of `tmp_path`/src, and restore.sh receiving it from
    production into `tmp_path`/dst on a free port, listening: the archive, the port, the receiver."""
    archive = random.Random(seed).randbytes(1 << 20)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "20261204T020000Z.tar.gz").write_bytes(archive)
    port = _free_port()
    receiver = _receiving({"DATABASE_URL": pg.url, "BACKUP_DIR": str(tmp_path / "dst"), "BACKUP_ID": "20261204T020000Z", "BACKUP_SOURCE": "production", "BACKUP_PORT": str(port), "BACKUP_TOKEN_SHA256": S3CRET_SHA, "BACKUP_WAIT": str(wait)})
    assert _wait_port(port)
    return archive, port, receiver


def test_a_connection_that_does_not_finish_its_header_within_30_s_is_dropped_and_the_sender_received(pg: PostgresServer, tmp_path: Path) -> None:
    """The receiver serves one connection at a time: one that trickles its header (a byte every 2 s, never a
    line) is closed after 30 s in all, not held as long as it keeps sending, and the export queued behind it
    is received."""
    archive, port, receiver = _archive_and_receiver(pg, tmp_path, 8, 120)
    trickler = socket.create_connection(("127.0.0.1", port), timeout=5)
    started = time.monotonic()
    export = subprocess.Popen(["sh", str(SCRIPTS / "export.sh")], env={"PATH": os.environ["PATH"], "BACKUP_DIR": str(tmp_path / "src"), "BACKUP_ID": "20261204T020000Z", "BACKUP_TARGET": f"127.0.0.1:{port}", "BACKUP_TOKEN": "s3cret"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    closed_after = None
    try:
        for byte in b"mxinfra-backup/2 s3cret 20261204T020000Z" * 2:
            try:
                trickler.sendall(bytes([byte]))
                time.sleep(2)
                trickler.setblocking(False)
                if trickler.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except BlockingIOError:
                pass  # still open, nothing said
            except (ConnectionResetError, BrokenPipeError):
                closed_after = time.monotonic() - started
                break
            finally:
                trickler.setblocking(True)
        sent_out, sent_err = export.communicate(timeout=60)
        out, _ = receiver.communicate(timeout=60)
    finally:
        trickler.close()
        export.kill()
        receiver.kill()
    assert closed_after is not None and 29 <= closed_after <= 40, closed_after
    assert export.returncode == 0, sent_err
    assert f"received 20261204T020000Z from the export Job ({len(archive)} bytes, sha256 {hashlib.sha256(archive).hexdigest()})" in out


@pytest.mark.parametrize("hasher", ["real", "empty"])
def test_a_served_archive_is_announced_with_its_sha256_only_after_the_hash_beside_the_serve(tmp_path: Path, hasher: str) -> None:
    """`mxinfra backup download`'s export: the archive served once over HTTP while the hasher reads it beside,
    the size and sha256 logged after (the caller checks its bytes against them); a hasher that gives no
    digest fails the export with no such line, so the caller keeps nothing."""
    import urllib.request

    archive = random.Random(9).randbytes(3 << 20)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "20261204T020000Z.tar.gz").write_bytes(archive)
    port = _free_port()
    path = _fake_openssl(tmp_path / "fake") if hasher == "empty" else os.environ["PATH"]
    env = {"PATH": path, "BACKUP_DIR": str(tmp_path / "src"), "BACKUP_ID": "20261204T020000Z", "BACKUP_SERVE_PORT": str(port), "BACKUP_TOKEN_SHA256": S3CRET_SHA, "BACKUP_WAIT": "30", "FAKE_HASHER": hasher}
    export = subprocess.Popen(["sh", str(SCRIPTS / "export.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_port(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/s3cret/20261204T020000Z.tar.gz", timeout=30) as got:
            assert got.read() == archive
        out, err = export.communicate(timeout=30)
    finally:
        export.kill()
    # the line callers read (those before 2026-12-07 too), logged once served
    served = f"export: serving 20261204T020000Z ({len(archive)} bytes, sha256 {hashlib.sha256(archive).hexdigest()}) on port {port}"
    if hasher == "real":
        assert export.returncode == 0 and out.splitlines()[-2:] == [served, "export: served 20261204T020000Z"], (out, err)
        assert out.splitlines()[0] == f"export: listening on port {port} for 20261204T020000Z ({len(archive)} bytes), hashing with openssl beside"
    else:
        assert export.returncode == 1 and "gave no sha256" in err and "export: serving" not in out, (out, err)


@pytest.mark.parametrize("peer", ["silent", "no", "pipe"])
def test_export_stops_at_once_and_leaves_no_hasher_when_the_receiver_stalls_refuses_or_goes_away(tmp_path: Path, peer: str) -> None:
    """A receiver that never answers the header (within BACKUP_WAIT), says `no`, or takes a MiB after `go`
    and goes away: the export fails saying which, tries no mxinfra-backup/1 after it, and its hasher (one
    stalled here) does not outlive it."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "20261204T020000Z.tar.gz").write_bytes(random.Random(10).randbytes(8 << 20))
    fake = _fake_openssl(tmp_path / "fake")
    sleep = f"60.{os.getpid()}{random.randrange(10**6)}"  # this run's stalled hasher, told from any other
    heads: list[bytes] = []

    def receiver(listener: socket.socket) -> None:
        c, _ = listener.accept()
        with c, c.makefile("rb") as r:
            heads.append(r.readline())
            if peer == "silent":
                time.sleep(6)
            elif peer == "no":
                c.sendall(b"no\n")
            else:
                c.sendall(b"go\n")
                r.read(1 << 20)
        try:
            listener.settimeout(3)
            heads.append(listener.accept()[0].makefile("rb").readline())  # a second try: none expected
        except OSError:
            pass

    sent, took = _export_to_peer(receiver, tmp_path / "src", {"BACKUP_WAIT": "3", "FAKE_HASHER": "stall", "FAKE_SLEEP": sleep}, path=fake)
    said = {"silent": "did not answer the mxinfra-backup/2 header within 3s", "no": "refused the header (the token, the archive id or its size)", "pipe": "the receiver went away"}[peer]
    assert sent.returncode == 1 and said in sent.stderr and "export: sent" not in sent.stdout, sent.stderr
    assert heads == [b"mxinfra-backup/2 s3cret 20261204T020000Z 8388608\n"] and took < 10, (heads, took)
    assert not [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p) == b"sleep\0" + sleep.encode() + b"\0"]


def test_a_sender_that_closed_after_its_header_is_waited_past(pg: PostgresServer, tmp_path: Path) -> None:
    """A sender that gave up before `go` left its header queued: the receiver answers it, finds the
    connection closed, keeps nothing and takes the export that comes next."""
    archive, port, receiver = _archive_and_receiver(pg, tmp_path, 11, 30)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as gone:
        gone.sendall(f"mxinfra-backup/2 s3cret 20261204T020000Z {len(archive)}\n".encode())
        gone.shutdown(socket.SHUT_WR)
    sent = _run("export.sh", {"BACKUP_DIR": str(tmp_path / "src"), "BACKUP_ID": "20261204T020000Z", "BACKUP_TARGET": f"127.0.0.1:{port}", "BACKUP_TOKEN": "s3cret"})
    out, err = receiver.communicate(timeout=60)
    assert sent.returncode == 0, sent.stderr
    assert "a sender closed after its header: waiting on" in err and f"received 20261204T020000Z from the export Job ({len(archive)} bytes" in out, (out, err)
    assert sorted(p.name for p in (tmp_path / "dst" / "from-production").iterdir()) == ["20261204T020000Z.tar.gz"]


def test_a_header_of_an_empty_archive_is_refused(pg: PostgresServer, tmp_path: Path) -> None:
    """No backup archive is empty: a /2 header of size 0 is answered `no`, and the receive waits on."""
    archive, port, receiver = _archive_and_receiver(pg, tmp_path, 12, 20)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"mxinfra-backup/2 s3cret 20261204T020000Z 0\n")
        assert s.recv(10) == b"no\n"
    sent = _run("export.sh", {"BACKUP_DIR": str(tmp_path / "src"), "BACKUP_ID": "20261204T020000Z", "BACKUP_TARGET": f"127.0.0.1:{port}", "BACKUP_TOKEN": "s3cret"})
    out, err = receiver.communicate(timeout=60)
    assert sent.returncode == 0 and "refused a connection" in err and f"received 20261204T020000Z from the export Job ({len(archive)} bytes" in out, (sent.stderr, err)


def test_a_receive_stopped_by_sigterm_leaves_nothing_behind(pg: PostgresServer, tmp_path: Path) -> None:
    """A Job deleted half-way (its pod's first process, restore.sh, gets SIGTERM): the receiver is stopped
    with it and removes what it had written; restore.sh says nothing was restored (exit 1)."""
    archive, port, receiver = _archive_and_receiver(pg, tmp_path, 13, 60)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"mxinfra-backup/2 s3cret 20261204T020000Z {4 * len(archive)}\n".encode())
        assert s.recv(10) == b"go\n"
        s.sendall(archive)  # a quarter of what the header said
        incoming = tmp_path / "dst" / "from-production" / "20261204T020000Z.tar.gz.incoming"
        for _ in range(100):
            if incoming.exists() and incoming.stat().st_size == len(archive):
                break
            time.sleep(0.05)
        assert incoming.stat().st_size == len(archive)
        receiver.send_signal(signal.SIGTERM)
        out, err = receiver.communicate(timeout=30)
    assert receiver.returncode == 1 and "restore: stopped (SIGTERM): nothing kept" in err, (out, err)
    assert not [p for p in (tmp_path / "dst").rglob("*") if p.is_file()]
    assert not _running(f"{tmp_path}/dst".encode())


def test_a_silent_connection_does_not_hold_back_the_download(tmp_path: Path) -> None:
    """The download's export serves one request: a connection that says nothing is dropped after 30 s and the
    caller's request behind it is served."""
    import urllib.request

    archive = random.Random(14).randbytes(1 << 20)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "20261204T020000Z.tar.gz").write_bytes(archive)
    port = _free_port()
    env = {"PATH": os.environ["PATH"], "BACKUP_DIR": str(tmp_path / "src"), "BACKUP_ID": "20261204T020000Z", "BACKUP_SERVE_PORT": str(port), "BACKUP_TOKEN_SHA256": S3CRET_SHA, "BACKUP_WAIT": "90"}
    export = subprocess.Popen(["sh", str(SCRIPTS / "export.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_port(port)  # (its own probe connection: closed at once, refused)
        silent = socket.create_connection(("127.0.0.1", port), timeout=60)
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/s3cret/20261204T020000Z.tar.gz", timeout=60) as got:
            assert got.read() == archive
        took = time.monotonic() - started
        out, err = export.communicate(timeout=30)
        silent.close()
    finally:
        export.kill()
    assert export.returncode == 0 and 29 <= took <= 40, (took, err)


def test_the_fallback_hash_of_a_large_archive_may_take_longer_than_the_wait(tmp_path: Path) -> None:
    """Against a receiver deployed before /2, the sha256 comes first: a local hash of a large archive gets
    the wait and a second per 50 MB (here 2 s + 2 s for 100 MB), not BACKUP_WAIT alone."""
    archive = random.Random(15).randbytes(100_000_000)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "20261204T020000Z.tar.gz").write_bytes(archive)
    heads: list[bytes] = []

    def receive_as_before(listener: socket.socket) -> None:
        for _ in range(2):
            c, _ = listener.accept()
            with c, c.makefile("rb") as r:
                heads.append(r.readline())
                fields = heads[-1].decode().split(" ")
                if fields[0] == "mxinfra-backup/1":
                    got = r.read(int(fields[3]))
                    c.sendall(b"ok\n" if hashlib.sha256(got).hexdigest() == fields[4].strip() else b"bad\n")
                    return

    sent, took = _export_to_peer(receive_as_before, tmp_path / "src", {"BACKUP_WAIT": "2", "FAKE_HASHER": "slow", "FAKE_SLEEP": "3"}, path=_fake_openssl(tmp_path / "fake"))
    assert sent.returncode == 0 and took >= 3, (sent.stderr, took)
    assert [h.split(b" ")[0] for h in heads] == [b"mxinfra-backup/2", b"mxinfra-backup/1"]
