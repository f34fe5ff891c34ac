"""A real PostgreSQL for tests: Debian's `postgresql` package, a throwaway cluster on loopback.

`PostgresServer.start()` runs initdb in a new temporary directory (as the `postgres` user when the tests
run as root: the server refuses to run as root), then pg_ctl on a free port of 127.0.0.1 with its unix
socket in that directory and password (SCRAM) authentication, as a cluster's database would have.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

USER, PASSWORD, DATABASE = "mendix", "backup-test-password", "mendix"


def bin_dir() -> Path | None:
    """The newest installed server's bin directory (Debian keeps them per major version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def require_bin_dir() -> Path:
    """The server's bin directory; without one, skip locally and fail under CI (where .ci/run installs it)."""
    found = bin_dir()
    if found is None:
        message = "PostgreSQL is not installed: apt-get install -y postgresql"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(root: Path) -> None:
    """The server's TLS key and certificate in `root`, owned by the server's user."""
    from tls import self_signed

    for path in self_signed(root):
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(path, owner.pw_uid, owner.pw_gid)


@dataclass
class PostgresServer:
    """One running throwaway cluster."""

    bin: Path
    root: Path
    port: int

    @property
    def url(self) -> str:
        """The libpq URI a Mendix runtime's DATABASE_URL would be."""
        return f"postgres://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    @classmethod
    def start(cls, *, tls: bool = False) -> PostgresServer:
        """initdb and start a cluster; the caller stops it. `tls`: it also accepts TLS (a self-signed key),
        as a managed database does, so that a client's sslmode=require can connect."""
        bin_ = require_bin_dir()
        # Not under pytest's tmp_path: that is private to root, and the server runs as `postgres`.
        root = Path(tempfile.mkdtemp(prefix="mxinfra-pg-"))
        (root / "pwfile").write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
            os.chown(root / "pwfile", owner.pw_uid, owner.pw_gid)
        server = cls(bin_, root, _free_port())
        server._run("initdb", "-D", str(root / "data"), "--username", USER, "--pwfile", str(root / "pwfile"), "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C")
        opts = f"-c listen_addresses=127.0.0.1 -c port={server.port} -c unix_socket_directories={root} -c fsync=off"
        if tls:
            opts += f" -c ssl=on -c ssl_cert_file={root / 'server.crt'} -c ssl_key_file={root / 'server.key'}"
            _self_signed(root)
        server._run("pg_ctl", "-D", str(root / "data"), "-o", opts, "-l", str(root / "log"), "-w", "-t", "60", "start")
        server.psql(f"CREATE DATABASE {DATABASE}", database="postgres")
        return server

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if done.returncode:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr}{done.stdout}{log}")

    def psql(self, sql: str, database: str = DATABASE) -> str:
        """Run SQL with psql (stop at the first error); returns its unaligned output."""
        url = self.url.rsplit("/", 1)[0] + f"/{database}"
        done = subprocess.run(
            ["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-q", "-d", url],
            input=sql, capture_output=True, text=True, check=False,
        )
        if done.returncode:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def unrestricted_pg_restore(bin_dir: Path, evidence: Path) -> None:
    r"""A pg_restore whose output is as before PostgreSQL 17.6/16.10/15.14 (the real one's, without its own
    \restrict and \unrestrict lines; the key it is given ignored, as no real one would: this tests what
    reads the output), with what a crafted dump could carry into it: a psql shell escape."""
    real = require_bin_dir() / "pg_restore"
    bin_dir.mkdir()
    (bin_dir / "pg_restore").write_text(
        "#!/bin/sh\n"
        f'case "$1" in --help|--version) exec "{real}" "$1" ;; esac\n'
        'for a do shift; case "$a" in --restrict-key=*) ;; *) set -- "$@" "$a" ;; esac; done\n'
        f""""{real}" --restrict-key=standin "$@" | grep -vxF -e '\\restrict standin' -e '\\unrestrict standin' """
        f"""| sed 's|^SET statement_timeout = 0;|\\\\! touch {evidence}\\nSET statement_timeout = 0;|'\n"""
    )
    (bin_dir / "pg_restore").chmod(0o755)


def pg_restore_without_restrict_key(bin_dir: Path) -> None:
    """A pg_restore from before PostgreSQL 17.6/16.10/15.14: no --restrict-key (it refuses the option)."""
    real = require_bin_dir() / "pg_restore"
    bin_dir.mkdir()
    (bin_dir / "pg_restore").write_text(
        "#!/bin/sh\n"
        f'case "$*" in *--help*) "{real}" --help | grep -v restrict-key; exit ;; *--restrict-key*) echo "pg_restore: unrecognized option" >&2; exit 1 ;; esac\n'
        f'exec "{real}" "$@"\n'
    )
    (bin_dir / "pg_restore").chmod(0o755)


def pg_restore_of_17(bin_dir: Path) -> None:
    """A pg_restore as PostgreSQL 17 and newer writes its output: the real one's, with the setting it adds
    among the opening ones (SET transaction_timeout = 0;), which servers before 17 refuse."""
    real = require_bin_dir() / "pg_restore"
    bin_dir.mkdir()
    (bin_dir / "pg_restore").write_text(f"""#!/bin/sh\n"{real}" "$@" | sed '0,/^SET statement_timeout = 0;$/s//SET statement_timeout = 0;\\nSET transaction_timeout = 0;/'\n""")
    (bin_dir / "pg_restore").chmod(0o755)


def claiming_server_version(dump: bytes, version: str, claimed: bytes) -> bytes:
    """A custom-format dump whose header says another server version: pg_restore prints that field, as it
    is (newlines and all), into its output's opening comment (-- Dumped from database version ...)."""
    old = version.encode()
    for size in (4, 8):  # the header's integers: a sign byte, then the dump's int size, least significant first
        field = b"\x00" + len(old).to_bytes(size, "little") + old
        if field in dump[:4096]:
            return dump.replace(field, b"\x00" + len(claimed).to_bytes(size, "little") + claimed, 1)
    raise AssertionError(f"no server version {version!r} in the dump's header")


@contextmanager
def lock_held(url: str, table: str) -> Iterator[None]:
    """Another session holding `table` (ACCESS SHARE, in an open transaction) until the block ends: a
    restore that drops it waits."""
    holder = subprocess.Popen([f"{require_bin_dir()}/psql", "--no-psqlrc", "--quiet", f"--dbname={url}"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert holder.stdin is not None
    holder.stdin.write(f'BEGIN; LOCK TABLE "{table}" IN ACCESS SHARE MODE; SELECT pg_catalog.pg_sleep(120);\n'.encode())
    holder.stdin.flush()
    try:
        yield
    finally:
        holder.kill()
        holder.wait()


# The sessions that hold a transaction id, but this one and a lock_held's.
OPEN_TRANSACTIONS = "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND query NOT LIKE '%pg_sleep%'"
