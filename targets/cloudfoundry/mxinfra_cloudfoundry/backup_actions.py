"""`mxinfra backup download|restore` on Cloud Foundry (mxinfra/backup_cli.py says what the core asks of a
target): the environment's data taken out, and put back, through service keys, from the machine that runs
the command, as a Mendix Cloud backup archive (mxinfra.backup_archive). No Pulumi imports.

- download: a service key of the database instance and one of the file store's (a user-provided store
  gives its credentials directly), a `pg_dump --format=custom` of the database and a copy of every object
  of the bucket, packed as `<id>.tar.gz`. The keys are deleted when done, whatever happened.
- restore (an archive): the app stopped (Mendix Cloud also restores only a stopped environment), the dump
  restored in one transaction (`pg_restore --clean --if-exists`: a failure leaves the database as it was),
  then the files copied into the bucket (copied, never synced: an object the archive lacks stays), the app
  started again if it was running, the keys deleted.
- list and create are refused: the brokers keep their backups where the Cloud Controller shows none
  (targets/cloudfoundry/README.md, "Backups"); `download` is the on-demand backup here.

Why service keys and not the app's binding: a key is a credential of its own, minted for this command and
revoked by the broker when it is deleted, and the Cloud Controller's audit events name who created it; the
app's binding is the running app's credential. Creating a key is a Space Developer's (or Supporter's)
right: the `deploy` permission's role, a declared platform limit (capabilities.py), so on production it is
the release identity or a person's time-boxed grant that runs these commands.

Why from this machine: nothing runs in the foundation to do it (an app or task would need a droplet with
the PostgreSQL client and the credentials in its environment). The database is usually reachable only
inside the foundation: `--database-via HOST:PORT` names the local end of a tunnel (`cf ssh -N -L`) and is
used instead of the key's host and port. The bucket is the hyperscaler's and is reached directly.

No secret is put on a command line or in a message: the database's password goes to pg_dump and
pg_restore in their environment (PGPASSWORD), the store's keys to boto3 in memory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from mxinfra.backup_archive import (
    ASK_TIMEOUT,
    RESTORE_FLAGS,
    RESTORE_PSQL,
    RESTRICTING_VERSIONS,
    TERMINATE,
    TRANSACTION_STATUS,
    MaybeRestored,
    Opening,
    Probe,
    UnsafeDump,
    pack,
    probed_transaction,
    restrict_key,
    settled,
    stored_keys,
    transaction_outcome,
    unpack,
)
from mxinfra.backups import ID_FORMAT, FilesNotRestored, NothingRestored
from mxinfra.errors import UserError

from .file_stores import file_store_of, pull, push

KEY_PREFIX = "mxinfra-backup-"
# A Space Supporter may create a key but neither read its credentials nor delete it (CAPI v3's permitted
# roles): it would leave a working key behind, so only the developer role is named.
KEY_RIGHTS = "a space role that may create, read and delete service keys in the environment's space: space_developer (the deploy permission)"
NOT_HERE = (
    "Cloud Foundry's brokers keep their own backups, which the Cloud Controller neither lists nor takes on demand "
    "(targets/cloudfoundry/README.md, \"Backups\"): `mxinfra backup download -s {stack} -e {env} -o DIR` takes a backup "
    "now through service keys and `mxinfra backup restore --archive FILE --from ENV` puts one back"
)
PG_TOOLS = (
    "PostgreSQL's client tools (pg_dump, pg_restore, psql) of the server's major version or newer, and a release that writes \\restrict "
    f"({RESTRICTING_VERSIONS}), on PATH (Debian: apt install postgresql-client)"
)


@dataclass(frozen=True)
class Database:
    """Where and as whom pg_dump and pg_restore connect (libpq's variables; the password never on a command line)."""

    host: str
    port: str
    user: str
    password: str
    name: str
    sslmode: str

    def environ(self) -> dict[str, str]:
        """The process environment for a libpq client: the caller's, without its PG* settings, plus these."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return {**base, "PGHOST": self.host, "PGPORT": self.port, "PGUSER": self.user, "PGPASSWORD": self.password, "PGDATABASE": self.name, "PGSSLMODE": self.sslmode, "PGCONNECT_TIMEOUT": "20"}


def database_of(credentials: Mapping[str, Any], what: str, via: str | None) -> Database:
    """The database a key's credentials name: `uri` (what the buildpack reads into DATABASE_URL), else the
    separate fields; `via` (HOST:PORT, a tunnel's local end) replaces the host and port."""
    uri = credentials.get("uri")
    fields: dict[str, str] = {}
    if isinstance(uri, str) and uri.split("://", 1)[0] in ("postgres", "postgresql"):
        try:
            u = urlsplit(uri)
            query = parse_qs(u.query)
            fields = {
                "host": u.hostname or "",
                "port": str(u.port or 5432),
                "user": unquote(u.username or ""),
                "password": unquote(u.password or ""),
                "name": unquote(u.path.lstrip("/")),
                "sslmode": (query.get("sslmode") or ["require"])[0],
            }
        except ValueError:
            # never the parser's message: it quotes the part it could not read, which may be the password
            raise UserError(f"{what}: its uri is not a URI libpq reads (postgres://user:password@host:port/database, the password percent-encoded)") from None
    else:
        def pick(*names: str) -> str:
            return next((str(credentials[n]) for n in names if credentials.get(n) not in (None, "")), "")

        fields = {
            "host": pick("hostname", "host"),
            "port": pick("port") or "5432",
            "user": pick("username", "user"),
            "password": pick("password"),
            "name": pick("dbname", "database", "name"),
            "sslmode": pick("sslmode") or "require",
        }
    missing = [k for k in ("host", "user", "password", "name") if not fields[k]]
    if missing:
        raise UserError(f"{what}: the credentials name no PostgreSQL database (no postgres:// uri, and no {', '.join(missing)}): is it a PostgreSQL service?")
    if via is not None:
        host, _, port = via.rpartition(":")
        # [::1]:63432, an IPv6 tunnel end: libpq takes the address without its brackets
        fields.update(host=host[1:-1] if host.startswith("[") and host.endswith("]") else host, port=port)
    return Database(**fields)


class KeyActions:
    """`mxinfra backup` on one Cloud Foundry environment (see the module's docstring)."""

    def __init__(self, client: Any, block: Any, environment: Any, stack: str, app: str, database: str, files: str | None, place: str, timeout: float) -> None:
        self.client, self.block, self.env, self.stack = client, block, environment, stack
        self.app_name, self.database_name, self.files_name = app, database, files
        self.where = place
        self.timeout = timeout
        self._space: str | None = None
        self.warnings: list[str] = []

    # --- the core's questions ----------------------------------------------------------------------

    def refusal(self, action: str) -> str | None:
        """Why `action` cannot run here: list and create never do (the brokers' backups are not the Cloud
        Controller's); download and restore need the space, and keys, which the Cloud Controller judges."""
        if action in ("list", "create", "export"):
            return f"{self.env.name}: no `mxinfra backup {action}` on Cloud Foundry. " + NOT_HERE.format(stack=self.stack, env=self.env.name)
        return None

    def download_now(self, out_dir: Path, now: datetime, via: str | None = None) -> dict[str, Any]:
        """Take a backup now (a dump and the files, through new keys) and write `<id>.tar.gz` into `out_dir`;
        the id, the archive's size and sha256, and how many files it holds."""
        tool = _tool("pg_dump")
        counted = len(self.warnings)
        backup = _id(now)
        out = out_dir / f"{backup}.tar.gz"
        if out.exists():
            raise UserError(f"{out}: exists already: not overwritten")
        started = time.monotonic()
        with _scratch(f".{backup}-", out_dir) as scratch:
            work = Path(scratch)
            (work / "tree").mkdir()
            with self._keys(backup) as creds:
                db = database_of(creds["database"], f"service key of {self.database_name}", via)
                _run([tool, "--format=custom", "--compress=0", "--no-owner", "--no-privileges", f"--file={work / 'dump'}"], db, f"pg_dump of {self.database_name}")
                files = 0
                if "files" in creds:
                    files = pull(file_store_of(creds["files"], f"service key of {self.files_name}"), work / "tree")
            written = pack(work / "dump", work / "tree", out, metadata={"duration": str(round(time.monotonic() - started))})
        return {"id": backup, "path": str(written.path), "size": written.size, "sha256": written.sha256, "files": files, **({"warnings": len(self.warnings) - counted} if len(self.warnings) > counted else {})}

    def restore_archive(self, archive: Path, now: datetime, via: str | None, vouch: Callable[[str, int], None], before: Callable[[], None] | None = None) -> dict[str, Any]:
        """Restore the archive over the environment's database and files, the app stopped meanwhile; what
        was restored (files copied, what became of the app). The archive is unpacked and checked in one
        pass, its sha256 and size (of the bytes unpacked) given to `vouch`, before anything changes; then
        `before` runs (production's backup, the restore's intent record)."""
        tools = (_tool("pg_restore"), _tool("psql"))
        # beside the archive: the same file system the user chose for it (the system's /tmp may be small, or RAM)
        with _scratch(".mxinfra-restore-", archive.resolve().parent) as scratch:
            # every file must go back under a key of its own, judged before anything changes
            unpacked = unpack(archive, Path(scratch), None, stored_keys())
            if unpacked.files and self.files_name is None:
                raise UserError(f"{archive}: holds {unpacked.files} file(s), but {self.env.name} keeps its files on the instance's disk (no mxinfra:cloudfoundry.storage): nothing to restore them into; nothing was changed")
            vouch(unpacked.sha256, unpacked.size)
            if before is not None:
                before()
            counted = len(self.warnings)  # this restore's warnings, not those of the backup taken before it
            app = self._capi(f"looking up the app {self.app_name}", lambda: self.client.find_app(self._space_guid(), self.app_name))
            running = app is not None and app.get("state") == "STARTED"
            outcome: dict[str, Any] = {} if running else {"app": "not running"}
            with self._keys(_id(now)) as creds:
                db = database_of(creds["database"], f"service key of {self.database_name}", via)
                store = file_store_of(creds["files"], f"service key of {self.files_name}") if "files" in creds else None
                try:
                    # the outcome a RestoreFailed records (kept by reference) gets the app's below
                    if running:
                        try:
                            self._capi(f"stopping the app {self.app_name}", lambda: self.client.stop(app["guid"]))
                            # no instance may hold the database while it is replaced
                            self._capi(f"waiting for the app {self.app_name} to stop", lambda: self.client.wait_stopped(self.client.web_process(app["guid"])["guid"], self.timeout))
                        except UserError as e:
                            raise NothingRestored(f"{e}; nothing was restored", outcome) from None
                    try:
                        late = _restore_dump(tools, unpacked.dump, db, f"restoring the database {self.database_name}")
                    except MaybeRestored:
                        raise  # not known to have restored nothing: the intent stands alone
                    except UserError as e:  # one transaction, refused: the database is as it was, no file touched yet
                        raise NothingRestored(str(e), outcome) from None
                    if late is not None:
                        self.warnings.append(late)
                    outcome["files"] = 0
                    if store is not None:
                        try:
                            outcome["files"] = push(store, unpacked.tree)
                        except UserError as e:
                            raise FilesNotRestored(f"{self.env.name}: the database was restored from {archive.name}, but its files were not all copied back: {e}", outcome) from None
                finally:
                    if running:
                        # also when the stop, the wait or the restore failed: the app never stays stopped unsaid
                        outcome["app"] = self._start_again(app["guid"])
            if len(self.warnings) > counted:
                outcome["warnings"] = len(self.warnings) - counted
        return outcome

    def _start_again(self, guid: str) -> str:
        """Start the app the restore stopped; a failure is a warning (the restore itself stands), never lost."""
        try:
            self._capi(f"starting the app {self.app_name} again", lambda: self.client.start(guid))
        except UserError as e:
            self.warnings.append(f"{e}: start it (cf start {self.app_name})")
            return "stopped, not started again"
        return "stopped, then started"

    # --- keys -------------------------------------------------------------------------------------

    @contextmanager
    def _keys(self, backup: str) -> Iterator[dict[str, dict[str, Any]]]:
        """The credentials of the database and the file store, through keys made for this command and
        deleted after it, whatever happened (a user-provided instance's own credentials, no key). A key that
        cannot be deleted is a warning naming it, printed at once (also when the command fails)."""
        made: list[tuple[str, str, str]] = []  # (guid, instance, key name)
        creds: dict[str, dict[str, Any]] = {}
        before = len(self.warnings)
        try:
            for kind, name in (("database", self.database_name), ("files", self.files_name)):
                if name is None:
                    continue
                instance = self._capi(f"looking up the service instance {name}", lambda name=name: self.client.find_service_instance(self._space_guid(), name))
                if instance is None:
                    raise UserError(f"{self.env.name}: no service instance {name} in {self.where}: has the environment been deployed?")
                if instance.get("type") == "user-provided":
                    creds[kind] = self._capi(f"reading the credentials of {name}", lambda i=instance: self.client.instance_credentials(i["guid"]))
                    continue
                # a name no other run uses (two in the same second must never delete each other's key)
                key = f"{KEY_PREFIX}{backup}-{secrets.token_hex(3)}"
                try:
                    guid = self.client.create_key(instance["guid"], key, self.timeout, {"annotations": {"mxinfra.io/purpose": "mxinfra backup: deleted when the command ends"}})
                except Exception as e:  # noqa: BLE001 (re-raised below, as the Cloud Controller's refusal)
                    # the broker's job may have failed or timed out after the key was made: delete it all the same
                    left = self._found_key(instance["guid"], key)
                    if left is not None:
                        made.append((left, name, key))
                    self._capi(f"creating the service key {key} of {name}", lambda e=e: _raise(e))
                    raise
                made.append((guid, name, key))
                creds[kind] = self._capi(f"reading the service key {key} of {name}", lambda g=guid: self.client.binding_credentials(g))
            yield creds
        finally:
            for guid, instance_name, key in made:
                try:
                    self.client.delete_binding(guid, self.timeout)
                except Exception as e:  # noqa: BLE001 (any failure: the key is named, never hidden)
                    self.warnings.append(f"the service key {key} of {instance_name} could not be deleted ({type(e).__name__}: {str(e)[:200]}): delete it (cf delete-service-key {instance_name} {key} -f): it holds working credentials")
            for w in self.warnings[before:]:
                sys.stderr.write(f"warning: {w}\n")

    def _found_key(self, instance: str, name: str) -> str | None:
        """The guid of the key `name` of the instance, if it exists (None also when it cannot be read)."""
        try:
            found = next(self.client.list("/v3/service_credential_bindings", names=name, service_instance_guids=instance, type="key"), None)
        except Exception:  # noqa: BLE001 (the caller's error is the one to report)
            return None
        return str(found["guid"]) if found else None

    def _space_guid(self) -> str:
        if self._space is None:
            from .config import where

            self._space = self._capi("finding the space", lambda: self.client.space_guid(where(self.block, self.env)))
        return self._space

    def _capi(self, doing: str, call: Callable[[], Any]) -> Any:
        """A Cloud Controller call; its refusal as a UserError naming what was being done and the rights needed."""
        import requests

        from .capi import CapiError
        from .uaa import CredentialsError

        try:
            return call()
        except CredentialsError as e:
            raise UserError(f"{self.env.name}: {doing} ({self.where}): {e}") from None
        except CapiError as e:
            fix = f": the identity needs {KEY_RIGHTS}" if e.status in (401, 403) else ""
            raise UserError(f"{self.env.name}: the Cloud Controller refused {doing} ({self.where}): {e}{fix}") from None
        except requests.RequestException as e:
            raise UserError(f"{self.env.name}: {doing}: the Cloud Controller {self.block.api} cannot be reached ({type(e).__name__})") from None


@contextmanager
def _scratch(prefix: str, where: Path) -> Iterator[str]:
    """A directory only its owner reads, removed afterwards; a UserError naming `where` if none can be made there."""
    try:
        made = tempfile.TemporaryDirectory(prefix=prefix, dir=where)
    except OSError as e:
        raise UserError(f"{where}: cannot work there ({e.strerror or e}): the dump and the files are staged beside the archive") from None
    with made as path:
        yield path


def _raise(e: BaseException) -> None:
    raise e


def _id(now: datetime) -> str:
    """The backup id of a backup taken at `now` (its UTC start time, the core's format)."""
    return now.astimezone(timezone.utc).strftime(ID_FORMAT)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise UserError(f"`mxinfra backup` on Cloud Foundry runs {name} on this machine, and it is not on PATH: install {PG_TOOLS}")
    return found


def _run(argv: list[str], db: Database, what: str) -> None:
    """Run a PostgreSQL client against `db`; a UserError with its own message when it fails."""
    done = subprocess.run(argv, env=db.environ(), stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode:
        said = " ".join((done.stderr or done.stdout).split())[-1200:]
        raise UserError(f"{what} at {db.host}:{db.port} failed (exit {done.returncode}): {said}")


def _restore_dump(tools: tuple[str, str], dump: Path, db: Database, what: str) -> str | None:
    """Put `dump` back over `db` as every target does (mxinfra.backup_archive: the dump as pg_restore writes
    it out as SQL, one transaction that it commits at its end once it read the whole dump, its opening
    judged and the probe and CLEAN_SQL put in by `Opening`); a UserError saying so, the database as it was,
    when pg_restore or psql fails or the output is not safe to run, unless the server says the transaction
    committed all the same (then what to warn of), or cannot say (MaybeRestored)."""
    pg_restore, psql = tools
    env = db.environ()
    helped = subprocess.run([pg_restore, "--help"], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    if "--restrict-key" not in helped.stdout:
        raise UserError(
            f"{what}: {pg_restore} has no --restrict-key, so its output cannot keep a dump's text from running psql's meta-commands: "
            f"use the client tools of {RESTRICTING_VERSIONS}; nothing was restored"
        )
    with tempfile.TemporaryFile() as errors, tempfile.TemporaryFile() as rows:
        # psql's errors and pg_restore's into one file, the rows psql prints into another (never a pipe that
        # could fill and stall)
        server = subprocess.Popen([psql, *RESTORE_PSQL], stdin=subprocess.PIPE, stdout=rows, stderr=errors, env=env)
        assert server.stdin is not None
        key = restrict_key()
        reader = subprocess.Popen([pg_restore, *RESTORE_FLAGS, f"--restrict-key={key}", str(dump)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, env=env)
        assert reader.stdout is not None
        read, opening, head = False, Opening(key, pg_restore), b""
        try:
            # the opening judged and CLEAN_SQL put in (UnsafeDump before psql has read a line of it);
            # nothing at all: pg_restore failed, and says why below
            while not opening.done and (line := reader.stdout.readline()):
                head += opening.line(line)
            server.stdin.write(head)
            # pg_restore's own output commits, at its end (--single-transaction): nothing to add after it
            shutil.copyfileobj(reader.stdout, server.stdin, 1 << 20)
            read = reader.wait() == 0 and opening.done
        except UnsafeDump as e:
            raise UserError(f"{what}: {e}") from None
        except BrokenPipeError:
            pass  # psql stopped at an error (ON_ERROR_STOP): its status and words say which
        finally:
            reader.stdout.close()
            if reader.poll() is None:
                reader.kill()
            reader.wait()
            try:
                server.stdin.close()
            except BrokenPipeError:
                pass
            # without pg_restore's COMMIT psql ends inside the transaction, and the server rolls it back
            status = server.wait()
        if status == 0 and read:
            return None
        errors.seek(0)
        said = " ".join(errors.read().decode(errors="replace").split())[-1200:]
        failed = f"{what} at {db.host}:{db.port} failed (pg_restore {'stopped' if reader.returncode < 0 else f'exit {reader.returncode}'}, psql exit {status}): {said}"
        rows.seek(0)
        probe = probed_transaction(rows, key)
    # no probe printed: psql never got past the transaction's first statement, so nothing of it committed
    committed = False if probe is None else settled(lambda: _transaction_outcome(psql, probe, env))
    if committed:
        return f"{failed}; but the server says transaction {probe.transaction} committed: the database was restored"
    if committed is None:
        raise MaybeRestored(f"{failed}; the server did not say whether transaction {probe.transaction} committed: the database may or may not have been restored (check it)")
    raise UserError(f"{failed}; the database is as it was")


def _transaction_outcome(psql: str, probe: Probe, env: Mapping[str, str]) -> str | None:
    """What the server says of the restore's transaction (mxinfra.backup_archive.transaction_outcome); one
    still in progress, whose client is gone, has its backend ended (it aborts: asked again)."""

    def ask(sql: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run([psql, *RESTORE_PSQL, f"--command={sql}"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=ASK_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None

    asked = ask(TRANSACTION_STATUS.format(transaction=probe.transaction))
    # its answer is its last row, its errors apart (a warning at connect is no answer)
    said = (asked.stdout.strip().splitlines() or [""])[-1] if asked is not None and asked.returncode == 0 else None
    outcome = transaction_outcome(probe, said)
    if outcome == "in progress":
        ask(TERMINATE.format(pid=probe.pid, xid=probe.xid, backend_start=probe.backend_start))
        return None
    return outcome


def connect(deployment: Any, environment: str, timeout: float | None = None) -> KeyActions:
    """The actions on `environment`, through the Cloud Controller of the stack's block."""
    from .config import where
    from .running import connect as client_of
    from .running import service_names

    block = deployment.target_config
    prepared = deployment.environment(environment)
    w = where(block, prepared.environment)
    place = f"space {w.get('space') or w.get('spaceGuid')}, org {w.get('org') or w.get('orgGuid')}, {block.api}"
    try:
        client = client_of(block.api, block)
    except UserError as e:
        raise UserError(f"{environment}: signing in to {block.api}: {e}") from None
    database, files = service_names(block, prepared.naming)
    return KeyActions(client, block, prepared.environment, deployment.config.stack, prepared.naming.physical(max_len=63), database, files, place, timeout or float(block.timeouts.job))
