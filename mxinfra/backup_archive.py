"""The backup archive as Mendix Cloud gives one: a .tar.gz of `.metadata` (a JSON description), `db/db.backup`
(a `pg_dump` custom-format dump) and `tree/` (the file store's files, each at tree/xx/yy/<name>: see
`tree_path`). Written and read here for the targets that move an
environment's data through the machine running mxinfra (Cloud Foundry, through service keys); the
Kubernetes Jobs and the AWS export task write the same layout with tar and gzip (mxinfra/backup_scripts/backup.sh). Pure: no cloud.

Both directions stream through the disk with flat memory: `pack` compresses on every core and hashes
the bytes as it writes them (one pass), `unpack` reads the archive once. An archive is written beside its final name and renamed when
complete, so an interrupted `pack` never leaves a file that looks like a backup.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import secrets
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .errors import UserError

DUMP = "db/db.backup"
TREE = "tree"
# Mendix Cloud's description of a backup, beside db/ and tree/ in every archive it writes: JSON strings
# duration, dumpSize, modelVersion, databaseSize, filesSize (docs.mendix.com, "Restoring a Backup", format
# of a backup file). Read past, never trusted: nothing here depends on what it says.
METADATA = ".metadata"
METADATA_MAX = 1 << 16
# How a dump is put back over an environment's database, on every target: pg_restore writes it out as SQL
# with RESTORE_FLAGS (without the source's owners and grants: the destination's user owns what it
# restores; --single-transaction: one BEGIN at its start and one COMMIT at its very end, written only
# once it read the whole dump, and none around large objects), psql runs it with RESTORE_PSQL, and
# `Opening` passes its opening lines on, judged and with CLEAN_SQL put in after its settings, inside its
# transaction: a failure anywhere leaves the database as it was. The Kubernetes target's
# backup_scripts/restore.sh does the same in sh (its ConfigMap carries CLEAN_SQL as clean.sql).
RESTORE_FLAGS = ("--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--file=-")
# psql prints only rows, bare (the probe's line below): the caller names the file (--output) they go to.
RESTORE_PSQL = ("--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "--set=ON_ERROR_STOP=1")
# psql runs what pg_restore writes out, and an archive may come from anywhere: a crafted dump must not reach
# psql's meta-commands (\! runs a shell). pg_restore of these versions and newer opens its output with
# \restrict, after which psql refuses them (CVE-2025-8714); output without it is refused.
# The first minor release of each major whose pg_restore writes \restrict (18 and later all do).
RESTRICTING_MINORS = {17: 6, 16: 10, 15: 14, 14: 19, 13: 22}
RESTRICTING_VERSIONS = "PostgreSQL " + ", ".join(f"{major}.{minor}" for major, minor in RESTRICTING_MINORS.items()) + " or newer"
# pg_restore 17 and newer sets transaction_timeout, which older servers do not know; writing SQL it cannot
# ask the server's version as it does when it connects, so the setting is made conditional.
TRANSACTION_TIMEOUT = b"SET transaction_timeout = 0;\n"
ANY_SERVER_TIMEOUT = b"SELECT pg_catalog.set_config('transaction_timeout', '0', false) WHERE pg_catalog.current_setting('server_version_num')::int >= 170000;\n"


# A psql that fails may have failed after its COMMIT went through (its connection lost, or itself killed,
# before the answer came back): its status cannot tell a restored database from one as it was. So the
# transaction's first statement, right after BEGIN and before anything of the dump runs (`transaction_probe`,
# put in by `Opening`; pg_catalog's functions only, which a dump's search_path cannot shadow), prints
# `TRANSACTION_TAG <restrict key> <txid> <backend pid> <backend start> <the server's run>`, and psql prints each
# result as it comes (checked: tests/targets/kubernetes/test_k8s_backups_postgres.py). A failed restore that printed no
# such line never got past that statement, so it committed nothing; one that did asks the server
# (`TRANSACTION_STATUS`, PostgreSQL 10 and newer) until `transaction_outcome` says it is settled, for at most
# SETTLE_WAIT seconds; else (the server not reached) it does not know. A transaction still 'in progress'
# has lost its client, which will never send its COMMIT: its backend is ended (`TERMINATE`), so that it
# aborts rather than hold its locks. restore.sh does the same in sh.
TRANSACTION_TAG = "mxinfra-transaction"
# Which run of the server answers: its start, and when its shared statistics were last reset, which a
# crash-restart does too (the postmaster reinitialises after a backend's crash without starting again).
_STARTED = (
    "pg_catalog.concat(pg_catalog.date_part('epoch', pg_catalog.pg_postmaster_start_time()), '/', "
    "(SELECT pg_catalog.date_part('epoch', b.stats_reset) FROM pg_catalog.pg_stat_bgwriter b))"
)
# An id this run of the server has not handed out yet is UNASSIGNED: a crash lost it, so its transaction
# never committed (a commit record would have moved the counter past it). Told by an id of the question's
# own (the next one: not below a lost one) before txid_status, which would refuse it in the server's own
# language ("... is in the future"). A snapshot's xmax would not do: a transaction still open may be past it.
UNASSIGNED = "unassigned"
# The question runs in a fresh session, the dump's settings long gone; its search_path is pinned all the same,
# since a restored dump may have put operators in public. Its transaction is left open, so it aborts when its session ends: its own id, maybe the lost
# one, never reads 'committed' to the next question. (Its SELECT is its last statement: psql before 15
# prints only the last one's rows of a --command.)
TRANSACTION_STATUS = (
    "BEGIN; SET LOCAL search_path = pg_catalog; SELECT concat_ws(' ', CASE WHEN {transaction} >= txid_current() "
    "THEN '" + UNASSIGNED + "' ELSE txid_status({transaction}) END, " + _STARTED + ")"
)
# The backend the probe ran in, and only it: its pid, the transaction's id and its start.
_BACKEND_START = "pg_catalog.date_part('epoch', {backend}.backend_start)"
TERMINATE = (
    "SET search_path = pg_catalog; SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a "
    "WHERE a.pid = {pid} AND a.backend_xid::text = '{xid}' AND " + _BACKEND_START.format(backend="a") + "::text = '{backend_start}'"
)
SETTLE_WAIT = 300
SETTLE_EVERY = 2
# a question that hangs is no answer (seconds)
ASK_TIMEOUT = 30


@dataclass(frozen=True)
class Probe:
    """What the restore's transaction printed of itself."""

    transaction: int
    pid: int
    backend_start: str
    started: str

    @property
    def xid(self) -> int:
        """The id as pg_stat_activity shows it (32 bits: the txid without its epoch)."""
        return self.transaction % (1 << 32)


# The probe's row ends in a line of PADDING characters: a psql that buffered its output whole (none of the
# supported ones is known to, but the claim must not rest on it) has written the tag line out before
# it runs the next statement, whatever its buffer (the file's block size: 4 KiB to 1 MiB).
PADDING = 1 << 20


def transaction_probe(key: str) -> bytes:
    """The statement that opens the restore's transaction: prints `TRANSACTION_TAG <key> <txid> <pid> <backend
    start> <server run>` and a line of padding."""
    backend_start = "(SELECT " + _BACKEND_START.format(backend="s") + " FROM pg_catalog.pg_stat_activity s WHERE s.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid())"
    line = f"pg_catalog.concat_ws(' ', '{TRANSACTION_TAG} {key}'::pg_catalog.text, pg_catalog.txid_current(), pg_catalog.pg_backend_pid(), {backend_start}, {_STARTED})"
    return f"SELECT pg_catalog.concat({line}, pg_catalog.chr(10), pg_catalog.repeat('#', {PADDING}));\n".encode()


def probed_transaction(rows: Iterable[bytes], key: str) -> Probe | None:
    """What the probe printed among the `rows` psql printed (`RESTORE_PSQL`, a line each); None if it printed nothing."""
    tag = f"{TRANSACTION_TAG} {key} ".encode()
    for line in rows:
        fields = line.rstrip(b"\r\n")[len(tag) :].split(b" ") if line.startswith(tag) else []
        if len(fields) == 4 and fields[0].isdigit() and fields[1].isdigit() and fields[2] and fields[3]:
            return Probe(int(fields[0]), int(fields[1]), fields[2].decode("ascii", "replace"), fields[3].decode("ascii", "replace"))
    return None


def transaction_outcome(probe: Probe, answer: str | None) -> str | None:
    """What the server's `answer` to TRANSACTION_STATUS (its last row; None: not answered) says: 'committed',
    'aborted' (also an id UNASSIGNED), 'in progress' (end its backend, ask again), 'unknown' (final: the
    server restarted since, so a 'committed' may be another transaction's that got the lost id) or None
    (ask again)."""
    words = (answer or "").strip().rsplit(" ", 1)
    if len(words) != 2 or words[0] not in ("committed", "aborted", "in progress", UNASSIGNED):
        return None
    status, started = words
    if status == UNASSIGNED:
        return "aborted"
    if status == "committed" and started != probe.started:
        # another run of the server: another transaction's, that got the id the crash lost (one of ours that
        # committed kept it); an 'aborted' is true of ours either way, and an 'in progress' ends only the
        # probe's own backend (TERMINATE)
        return "unknown"
    return status


def settled(ask: Callable[[], str | None], wait: float | None = None, every: float = SETTLE_EVERY) -> bool | None:
    """Whether the server says the restore's transaction committed (True) or not (False), asking (`ask`:
    `transaction_outcome`'s word) until it is settled; None when it cannot say, or after `wait` seconds (SETTLE_WAIT)."""
    until = time.monotonic() + (SETTLE_WAIT if wait is None else wait)
    while True:
        said = ask()
        if said in ("committed", "aborted", "unknown"):
            return None if said == "unknown" else said == "committed"
        if time.monotonic() >= until:
            return None
        time.sleep(every)


class MaybeRestored(UserError):
    """A database restore whose transaction may have committed: its psql failed and the server could not
    say (never recorded as nothing restored)."""


class UnsafeDump(UserError):
    """pg_restore's SQL output is not what psql may run: not restricted by our key, or not one transaction."""


def restrict_key() -> str:
    """A new key for pg_restore's --restrict-key: its output then opens with `\\restrict <key>`, which no
    dump can write (a dump's header fields are printed into the output's opening comments, newlines and
    all), and a pg_restore too old to restrict refuses the option: nothing reaches psql."""
    return secrets.token_hex(32)


class Opening:
    """pg_restore's SQL output (written with --restrict-key=`key`) read from its start a line at a time
    (`line`), as psql must get it: its opening comments, then exactly `\\restrict <key>` (else UnsafeDump:
    psql would run a crafted dump's meta-commands), then BEGIN (else UnsafeDump: not one transaction) and
    the probe after it, then its settings (transaction_timeout made conditional), then CLEAN_SQL before
    its first statement.
    `done` once that statement is passed on: the rest goes to psql as it is."""

    def __init__(self, key: str, pg_restore: str = "pg_restore") -> None:
        self.state, self.pg_restore, self.restricting = "start", pg_restore, b"\\restrict " + key.encode() + b"\n"
        self.probe = transaction_probe(key)

    @property
    def done(self) -> bool:
        """Whether the opening is over (the rest of the output is psql's as it is)."""
        return self.state == "done"

    def line(self, line: bytes) -> bytes:
        """What psql gets for this line of the opening."""
        # exactly an empty line or a comment: restore.sh's `opening` reads lines the same way
        quiet = line == b"\n" or line.startswith(b"--")
        if self.state == "start":
            if quiet:
                return line
            if line != self.restricting:
                raise UnsafeDump(
                    f"{self.pg_restore} did not open its output with the \\restrict key it was given, which keeps a dump's text from "
                    f"running psql's meta-commands: use the client tools of {RESTRICTING_VERSIONS}; nothing was restored"
                )
            self.state = "restricted"
            return line
        if self.state == "restricted":
            if quiet:
                return line
            if line != b"BEGIN;\n":
                raise UnsafeDump(f"{self.pg_restore} --single-transaction did not begin its output with BEGIN: nothing was restored")
            self.state = "settings"
            return line + self.probe
        if line == TRANSACTION_TIMEOUT:
            return ANY_SERVER_TIMEOUT
        if quiet or line.startswith((b"SET ", b"SELECT pg_catalog.set_config(")):
            return line
        self.state = "done"
        return CLEAN_SQL.encode() + line


# The restored database is the backup's, as on Mendix Cloud: the tables, views, sequences, functions and
# types in `public` that the dump does not hold go too (a table of an entity added since would make the
# runtime's schema sync fail: the restored model does not know it, and creating it again finds it there).
# Only what the restoring user may drop with its own rights (pg_has_role USAGE: a NOINHERIT member may
# not); what goes with another object (a serial column's sequence, an index, a partition, a table's row
# type) or belongs to an extension is left to it. Nothing is dropped with CASCADE, which would take
# objects of others that depend on these (a view or a column's type in another schema, another owner's
# foreign key or default) without their owners' rights: PostgreSQL judges each DROP. First all of them
# at once, one statement a kind (one subtransaction); should that fail, the app's foreign keys between
# its own tables go first (a cycle of them would keep every table), then each object alone, again until
# nothing more goes, and whatever is left stops the restore in PostgreSQL's own words. pg_restore's
# --clean then finds nothing of public left to drop but is kept: a dump with other schemas still
# replaces their objects.
# The objects CLEAN_SQL drops, as they stand (asked again on each pass: dropped ones are gone); no temporary
# table, which would need the TEMP privilege that hardened databases revoke from PUBLIC.
_DOOMED = """
  SELECT o.rank, o.kind, o.name, o.catalog, o.oid FROM (
    SELECT CASE c.relkind WHEN 'v' THEN 1 WHEN 'm' THEN 2 WHEN 'f' THEN 4 WHEN 'S' THEN 6 ELSE 5 END AS rank,
           CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                          WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind,
           format('%I.%I', n.nspname, c.relname) AS name, 'pg_class'::regclass AS catalog, c.oid
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND pg_has_role(c.relowner, 'USAGE')
    UNION ALL
    SELECT 3, 'ROUTINE', p.oid::regprocedure::text, 'pg_proc'::regclass, p.oid
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p', 'a') AND pg_has_role(p.proowner, 'USAGE')
    UNION ALL
    SELECT 7, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text, 'pg_type'::regclass, t.oid
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = 'public' AND t.typtype IN ('c', 'd', 'e', 'r') AND pg_has_role(t.typowner, 'USAGE')
      AND (t.typtype <> 'c' OR (SELECT k.relkind FROM pg_class k WHERE k.oid = t.typrelid) = 'c')
  ) o
  WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = o.catalog AND d.objid = o.oid AND d.refobjid <> o.oid AND d.deptype IN ('a', 'i', 'e'))"""
CLEAN_SQL = """SET LOCAL client_min_messages = warning;
DO $mxinfra$
DECLARE
  stmt text;
  r record;
  dropped boolean;
  why text;
  blocked text;
BEGIN
  SELECT string_agg(format('DROP %s IF EXISTS %s', kind, names), '; ' ORDER BY rank) INTO stmt
  FROM (SELECT rank, kind, string_agg(name, ', ') AS names FROM (""" + _DOOMED + """) x GROUP BY rank, kind) k;
  IF stmt IS NULL THEN
    RETURN;
  END IF;
  BEGIN
    EXECUTE stmt;
    RETURN;
  EXCEPTION WHEN dependent_objects_still_exist THEN
    NULL;  -- one at a time, below
  END;
  FOR r IN
    SELECT k.conrelid::regclass::text AS tab, k.conname FROM pg_constraint k
    WHERE k.contype = 'f'
      AND k.conrelid IN (SELECT oid FROM (""" + _DOOMED + """) x WHERE catalog = 'pg_class'::regclass)
      AND k.confrelid IN (SELECT oid FROM (""" + _DOOMED + """) x WHERE catalog = 'pg_class'::regclass)
  LOOP
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tab, r.conname);
  END LOOP;
  LOOP
    dropped := false;
    blocked := NULL;
    FOR r IN SELECT kind, name FROM (""" + _DOOMED + """) x ORDER BY rank, name LOOP
      BEGIN
        EXECUTE format('DROP %s IF EXISTS %s', r.kind, r.name);
        dropped := true;
      EXCEPTION WHEN dependent_objects_still_exist THEN
        GET STACKED DIAGNOSTICS why = PG_EXCEPTION_DETAIL;
        blocked := concat_ws('; ', blocked, r.name || ' (' || replace(why, E'\\n', ', ') || ')');
      END;
    END LOOP;
    EXIT WHEN blocked IS NULL OR NOT dropped;
  END LOOP;
  IF blocked IS NOT NULL THEN
    RAISE EXCEPTION 'mxinfra: the restore drops what the backup does not hold, and PostgreSQL refuses to drop these for objects that depend on them (of another schema, or of an owner this user cannot act for): %; drop or move those first; nothing was restored', blocked;
  END IF;
END
$mxinfra$;
"""


_CHUNK = 1 << 20


class ArchiveError(UserError):
    """An archive that is not a Mendix Cloud backup, or one with an entry that would land outside it."""


@dataclass(frozen=True)
class Written:
    """What `pack` wrote: the archive's size in bytes and the sha256 of its bytes."""

    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class Unpacked:
    """Where `unpack` put the dump and the files (`tree` has only directories when the backup had no files),
    and the size and sha256 of the archive's bytes as they were read (`check`: the paths are not written)."""

    dump: Path
    tree: Path
    files: int
    size: int
    sha256: str


class _Members:
    """A write-only file that gzips what is written in blocks of BLOCK bytes, each its own gzip member,
    compressed on every core at once (zlib lets go of the GIL while it compresses) and written in order to
    `sink`. Members read as one stream (RFC 1952; gzip, GNU tar and Python's gzip module all do), which is
    how the Kubernetes target's backup.sh uses both cores too. At most a block a worker and one more (and one filling)
    is held, and there are at most MAX_WORKERS: memory stays flat whatever the archive and the host."""

    BLOCK = 8 << 20
    MAX_WORKERS = 8

    def __init__(self, sink: Any, workers: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.sink, self.workers = sink, min(max(1, workers), self.MAX_WORKERS)
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="mxinfra-gzip")
        self.buffer = bytearray()
        self.pending: list[Any] = []
        self.closed = False

    def write(self, data: Any) -> int:
        self.buffer += data
        while len(self.buffer) >= self.BLOCK:
            self._submit(bytes(self.buffer[: self.BLOCK]))
            del self.buffer[: self.BLOCK]
        return len(data)

    def _submit(self, block: bytes) -> None:
        self.pending.append(self.pool.submit(_member, block))
        while len(self.pending) > self.workers + 1:
            self.sink.write(self.pending.pop(0).result())

    def close(self) -> None:
        """Compress what is left and write every member, in order (once: a second call does nothing)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.buffer or not self.pending:
                self._submit(bytes(self.buffer))
                self.buffer.clear()
            for done in self.pending:
                self.sink.write(done.result())
            self.pending.clear()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Stop without writing what is left (the archive is being thrown away)."""
        self.closed = True
        self.pending.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


# A block is judged by its first MiB: if that does not deflate (as a gzip member at level 1) to under
# STORE_AT bytes, 90% of it, the block is stored (level 0) instead: a file store is mostly documents and
# images, whose deflating costs most of an archive's time for a few per cent. The Kubernetes target's
# backup.sh judges its ranges the same way (the postgres image has no Python; a test holds the two to one
# answer on the same bytes).
SAMPLE = 1 << 20
STORE_AT = 943718


def deflates(block: bytes) -> bool:
    """Whether `block` is deflated at level 1 (else stored): its first MiB deflates to under STORE_AT bytes."""
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    return len(c.compress(block[:SAMPLE]) + c.flush()) < STORE_AT


def _member(block: bytes) -> bytes:
    """One gzip member of `block`, deflated at level 1 or stored (`deflates`); no name, no time: the same
    bytes give the same member."""
    c = zlib.compressobj(1 if deflates(block) else 0, zlib.DEFLATED, 31)
    return c.compress(block) + c.flush()


class _Hashing:
    """A write-only file that hashes and counts what passes through to `raw`."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.hash, self.size = raw, hashlib.sha256(), 0

    def write(self, data: Any) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def pack(dump: Path, tree: Path, out: Path, workers: int | None = None, metadata: Mapping[str, str] | None = None) -> Written:
    """Write `out` (a new file, readable by its owner only: it holds every row and file) from the dump and
    the files under `tree` (in the layout `tree_path` gives), atomically, compressing on `workers` threads
    (default: every core), with a `.metadata` as Mendix Cloud writes one (dumpSize and filesSize, and what
    `metadata` adds: duration, modelVersion, databaseSize); its size and sha256. UserError naming the file
    when it cannot."""
    if out.exists():
        raise UserError(f"{out}: exists already: not overwritten")
    try:
        # a name of its own (never another run's), created 0600 whatever the umask
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".incomplete", dir=out.parent)
    except OSError as e:
        raise UserError(f"{out.parent}: cannot write the archive there ({e.strerror or e})") from None
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb") as raw:
            sink = _Hashing(raw)
            # gzip level 1: the dump is taken uncompressed and the files are mostly compressed already; a
            # higher level costs several times the CPU for a few percent (backup_scripts/backup.sh chose the same)
            members = _Members(sink, workers if workers is not None else _cores())
            try:
                with tarfile.open(fileobj=members, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                    tar.add(dump, arcname=DUMP, recursive=False, filter=_plain)
                    tar.add(tree, arcname=TREE, recursive=False, filter=_plain)
                    files_size = 0
                    for path in _walk(tree):
                        info = _plain(tar.gettarinfo(path, arcname=f"{TREE}/{path.relative_to(tree).as_posix()}"))
                        if not info.isfile():
                            tar.addfile(info)
                            continue
                        files_size += info.size
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    # last: its sizes are known only now (Mendix Cloud's readers take it from anywhere)
                    described = json.dumps({"dumpSize": str(dump.stat().st_size), "filesSize": str(files_size), **dict(metadata or {})}, indent=4).encode()
                    info = _plain(tarfile.TarInfo(METADATA))
                    info.size, info.mtime = len(described), int(time.time())
                    tar.addfile(info, io.BytesIO(described))
            except BaseException:
                members.abort()
                raise
            members.close()
            raw.flush()
            os.fsync(raw.fileno())
        claim(partial, out)
    except FileExistsError:
        raise UserError(f"{out}: appeared while the archive was written: not overwritten") from None
    except OSError as e:
        raise UserError(f"{out}: the archive could not be written ({e.strerror or e}): nothing was kept") from None
    finally:
        partial.unlink(missing_ok=True)
    return Written(out, sink.size, sink.hash.hexdigest())


def _cores() -> int:
    """The cores this process may run on (its affinity and cgroup cpuset, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def claim(partial: Path, out: Path) -> None:
    """Give the complete archive its final name, never over a file that appeared there meanwhile."""
    try:
        # a hard link, then the partial name removed: unlike a rename it never replaces an existing file
        os.link(partial, out)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        # a file system without hard links (FAT, SMB shares): claim the name with an empty file, then
        # rename over that placeholder, which is ours
        os.close(os.open(out, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            os.replace(partial, out)
        except OSError:
            out.unlink(missing_ok=True)  # the placeholder is ours: no empty file under the archive's name
            raise
    try:
        fd = os.open(out.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)  # the name itself survives a crash
    except OSError:
        pass
    finally:
        os.close(fd)


def _walk(root: Path) -> Iterator[Path]:
    """Every directory and regular file under `root`, sorted (the same files give the same order)."""
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.is_symlink():
            raise UserError(f"{entry}: a symbolic link in the files to back up: expected regular files and directories")
        yield entry
        if entry.is_dir():
            yield from _walk(entry)


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """No owner, group or machine-specific mode bits in the archive: it moves between machines."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


class _HashingReader:
    """A read-only file that hashes and counts what is read from `raw` (the archive's bytes, as they are unpacked)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.hash, self.size = raw, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hash.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True


def check(archive: Path, sha256: str | None = None, file_name: Callable[[str], str | None] | None = None) -> Unpacked:
    """Read the archive as `unpack` does, writing nothing: the same ArchiveErrors, and one for a file of
    tree/ for which `file_name(path)` says why it cannot be restored; the number of files, the size and
    sha256 of the bytes read (one pass: what was judged is what was hashed)."""
    return _read(archive, None, sha256, file_name)


def unpack(archive: Path, into: Path, sha256: str | None = None, file_name: Callable[[str], str | None] | None = None) -> Unpacked:
    """Extract a backup archive's dump and files into the empty directory `into`. ArchiveError (naming the
    archive and the entry) for anything but a Mendix Cloud backup: a link, a device, a path outside the
    archive or outside db/db.backup and tree/, a member twice, no dump, a damaged or cut-off archive; and,
    with `sha256`, for bytes that are not those (hashed as they are read: the file checked earlier may have
    been replaced since); and for a file of tree/ for which `file_name(path)` says why it cannot be restored."""
    return _read(archive, into, sha256, file_name)


def _read(archive: Path, into: Path | None, sha256: str | None, file_name: Callable[[str], str | None] | None = None) -> Unpacked:
    """`unpack`, or with `into` None `check` (every member read and judged, nothing written)."""
    base = into if into is not None else Path(".")
    dump = base / "db" / "db.backup"
    tree = base / TREE
    if into is not None:
        tree.mkdir(parents=True)
    seen: set[str] = set()
    kinds: dict[str, bool] = {}  # path -> is a directory: a file and a directory never share a path
    files = 0
    try:
        # gzip's own reader, read to its end: it checks each member's CRC-32 and length, which tarfile's
        # stream mode does not (a flipped byte in a file would be restored as it is)
        with open(archive, "rb") as raw, gzip.GzipFile(fileobj=(hashed := _HashingReader(raw)), mode="rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:  # type: ignore[arg-type]
            for member in tar:
                name = _member_name(archive, member)
                if name in seen:
                    raise ArchiveError(f"{archive}: entry {member.name!r} appears twice: a backup archive has each entry once")
                seen.add(name)
                _no_clash(archive, member, name, kinds)
                if file_name is not None and member.isfile() and name.startswith(TREE + "/") and (why := file_name(name[len(TREE) + 1 :])) is not None:
                    raise ArchiveError(f"{archive}: entry {member.name!r}: {why}")
                try:
                    files += _place(tar, member, name, dump, tree, archive, write=into is not None)
                except OSError as e:
                    if isinstance(e, gzip.BadGzipFile):
                        raise
                    raise ArchiveError(f"{archive}: entry {member.name!r} cannot be written to {into} ({e.strerror or e})") from None
            while rest := gz.read(_CHUNK):
                # past the tar's end marker: only its padding (a reader that starts elsewhere, e.g. at a
                # member the archive's trailer names, must find nothing this reader did not judge)
                if rest.strip(b"\0"):
                    raise ArchiveError(f"{archive}: data after the tar's end: a backup archive ends with its end marker (and zeros)")
            while hashed.read(_CHUNK):
                pass  # (gzip stops at its last member; nothing may follow unhashed)
            got = hashed.hash.hexdigest()
    except FileNotFoundError:
        raise ArchiveError(f"{archive}: no such file") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ArchiveError(f"{archive}: not a readable .tar.gz backup archive ({type(e).__name__}: {e}): expected {DUMP} and tree/ in a gzip-compressed tar") from None
    if sha256 is not None and got != sha256:
        raise ArchiveError(f"{archive}: its bytes changed since they were checked (sha256 {got}, not {sha256}): nothing was restored")
    if DUMP not in seen:
        raise ArchiveError(f"{archive}: no {DUMP} in the archive: a backup archive holds the database dump there (pg_dump --format=custom) and the files under tree/")
    return Unpacked(dump, tree, files, hashed.size, got)


# The characters a name's first four may be for it to be filed at xx/yy/<name> (a UUID's are): ASCII only,
# so the Kubernetes scripts' tar, in the C locale where a character is a byte, decides as this does.
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def _nests(name: str) -> bool:
    """Whether a name is filed at xx/yy/<name>: 4 characters or more, no '/', the first four letters,
    digits, '.', '_' or '-' (as a UUID's are), neither pair '..'."""
    return len(name) >= 4 and "/" not in name and all(c in _PLAIN for c in name[:4]) and ".." not in (name[:2], name[2:4])


def tree_path(key: str, suffix: str = "") -> str:
    """Where the file of object-store key `key` lies under tree/: Mendix Cloud's layout, `xx/yy/<name>`
    (the name is the key without the store's `suffix`, xx and yy its first two pairs of characters), as
    Mendix Cloud's own archives and the runtime's local file store keep files; the key itself where it is
    no such name (see `_nests`), or lacks the suffix. UserError for a key that would read back as another
    one, or whose first segment is two bytes long (it would share tree/xx with Mendix Cloud's folders)."""
    name = key[: len(key) - len(suffix)] if suffix and key.endswith(suffix) else None if suffix else key
    if name is not None and _nests(name):
        return f"{name[:2]}/{name[2:4]}/{name}"
    if (back := store_key(key, suffix)) != key:
        raise UserError(f"object {key!r} is named like a file of Mendix Cloud's layout (xx/yy/<name>): it would be restored as {back!r}")
    if len(key.split("/", 1)[0].encode()) == 2:
        raise UserError(f"object {key!r} would be kept at tree/{key.split('/', 1)[0]}, where Mendix Cloud's layout keeps folders of files (xx/yy/<name>)")
    return key


def store_key(path: str, suffix: str = "") -> str:
    """The object-store key of the file at tree/<path>, the inverse of `tree_path`: `<name><suffix>` for a
    file at xx/yy/<name>, else the path itself (archives of mxinfra before 2026-12 kept keys as paths)."""
    parts = path.split("/")
    if len(parts) == 3 and _nests(parts[2]) and parts[0] == parts[2][:2] and parts[1] == parts[2][2:4]:
        return parts[2] + suffix
    return path


def stored_keys(suffix: str = "") -> Callable[[str], str | None]:
    """A `file_name` judge for `check` and `unpack` when the files go back into an object store: why a file
    of tree/ cannot go back (its key is another file's, or, with the store's `suffix`, a key kept as a
    path that lacks it: the runtime would never find it); None when it can. Keeps the keys it has seen."""
    seen: set[str] = set()

    def judge(path: str) -> str | None:
        key = store_key(path, suffix)
        if suffix and not key.endswith(suffix):
            return f"would go back as the key {key!r}, but the file store keeps only keys ending in {suffix!r} (its keySuffix)"
        if key in seen:
            return f"would go back as the key {key!r}, which another file of the archive goes back as"
        seen.add(key)
        return None

    return judge


def _no_clash(archive: Path, member: tarfile.TarInfo, name: str, kinds: dict[str, bool]) -> None:
    """Refuse an entry whose path, or a folder of it, is already the other kind (a file where a folder is)."""
    parts = name.split("/")
    for i in range(1, len(parts)):
        folder = "/".join(parts[:i])
        if kinds.setdefault(folder, True) is False:
            raise ArchiveError(f"{archive}: entry {member.name!r} lies under {folder!r}, which the archive has as a file")
    if kinds.setdefault(name, member.isdir()) is not member.isdir():
        raise ArchiveError(f"{archive}: entry {member.name!r} is a {'directory' if member.isdir() else 'file'} where the archive has a {'file' if member.isdir() else 'directory'}")


def _place(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, dump: Path, tree: Path, archive: Path, *, write: bool = True) -> int:
    """Write one member where it belongs (only read it, without `write`); 1 for a file of the file store, else 0."""
    if name == METADATA:
        # Mendix Cloud's description: read past (bounded: it is a few fields), never written out
        if not member.isfile() or member.size > METADATA_MAX:
            raise ArchiveError(f"{archive}: entry {member.name!r} must be a file of at most {METADATA_MAX} bytes (Mendix Cloud's JSON description of the backup)")
        _extract(tar, member, None, archive)
        return 0
    if name in ("db", TREE):
        if not member.isdir():
            raise ArchiveError(f"{archive}: entry {member.name!r} must be a directory")
        return 0
    if name == DUMP:
        _extract(tar, member, dump if write else None, archive)
        return 0
    if not name.startswith(TREE + "/"):
        raise ArchiveError(f"{archive}: entry {member.name!r} is not part of a backup: expected only {METADATA}, {DUMP} and tree/ (the files)")
    target = tree / name[len(TREE) + 1 :]
    if member.isdir():
        if write:
            target.mkdir(parents=True, exist_ok=True)
        return 0
    _extract(tar, member, target if write else None, archive)
    return 1


def _member_name(archive: Path, member: tarfile.TarInfo) -> str:
    """The member's path; ArchiveError for one that is not a plain file or directory under a plain name
    inside the archive."""
    raw = member.name
    path = PurePosixPath(raw)
    parts = [p for p in path.parts if p not in ("", ".")]
    if path.is_absolute() or ".." in parts or not parts:
        raise ArchiveError(f"{archive}: entry {raw!r} would be written outside the archive's directory: refused")
    # Only names in their plain form: tar programs read `tree//x` or `./tree/x` otherwise than this reader
    # (GNU tar keeps `//x` absolute after --strip-components), so what is judged here is what is extracted.
    if raw.rstrip("/") != "/".join(parts) or (raw.endswith("/") and not member.isdir()):
        raise ArchiveError(f"{archive}: entry {raw!r} is not a plain relative name (no '.', empty or trailing segments): expected e.g. tree/a/b")
    if not (member.isfile() or member.isdir()):
        kind = "a link" if member.issym() or member.islnk() else "a device or special file"
        raise ArchiveError(f"{archive}: entry {raw!r} is {kind}: a backup archive holds only regular files and directories")
    return "/".join(parts)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path | None, archive: Path) -> None:
    """Copy one member's bytes to `target` (None: read them only), a MiB at a time."""
    source = tar.extractfile(member)
    if source is None:
        raise ArchiveError(f"{archive}: entry {member.name!r} has no content")
    if target is None:
        with source:
            while source.read(_CHUNK):
                pass
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with source, open(target, "xb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
