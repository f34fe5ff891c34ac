"""The console script starts inspect's hash before the CLI is imported (mxinfra.launch), and the archive
reader takes that hash over only for the same, unchanged file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from mxinfra import digest
from mxinfra.launch import _inspected
from mxinfra.mda import open_mda

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "orders" / "orders-1.4.2.mda"


def test_only_a_plain_inspect_of_one_file_starts_early():
    assert _inspected(["inspect", "app.mda"]) == "app.mda"
    assert _inspected(["inspect", "app.mda", "--json"]) == "app.mda"
    assert _inspected(["inspect", "app.mda", "--verify"]) is None  # verify hashes in its own pass
    assert _inspected(["plan", "-s", "x"]) is None
    assert _inspected(["inspect"]) is None
    assert _inspected(["inspect", "a.mda", "b.mda"]) is None


def test_the_early_hash_is_taken_over_for_the_same_file(tmp_path):
    path = tmp_path / "app.mda"
    path.write_bytes(EXAMPLE.read_bytes())
    digest.start_early(str(path))
    (early,) = digest._EARLY.values()
    pkg = open_mda(path, hash_ahead=True)
    assert pkg._prefetch is early and digest._EARLY == {}
    assert pkg.sha256() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_changed_since_is_hashed_again(tmp_path):
    path = tmp_path / "app.mda"
    path.write_bytes(EXAMPLE.read_bytes())
    digest.start_early(str(path))
    (early,) = digest._EARLY.values()
    early.result()  # the old bytes are hashed
    data = bytearray(EXAMPLE.read_bytes())
    data[10] ^= 1  # inside the first local header's fields: the archive still opens
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # another modification time, whatever the clock's resolution
    pkg = open_mda(path, hash_ahead=True)
    assert pkg._prefetch is not early and digest._EARLY == {}
    assert pkg.sha256() == hashlib.sha256(bytes(data)).hexdigest()


def test_the_console_script_inspects_through_the_launcher():
    script = Path(sys.executable).with_name("mxinfra")
    run = subprocess.run([str(script), "inspect", str(EXAMPLE), "--json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert hashlib.sha256(EXAMPLE.read_bytes()).hexdigest() in run.stdout
    assert "mxinfra.launch" in script.read_text()


def test_the_console_script_hashes_in_a_child_process(tmp_path):
    """`mxinfra inspect FILE` forks its hasher before the CLI is imported: the main process's Python (the
    member checks) and the hash share no GIL. Its digest and progress are the file's; a refused archive's
    hasher is killed and reaped."""
    path = tmp_path / "big.mda"
    data = EXAMPLE.read_bytes() + b"\0" * (3 * digest._ForkedHash.REPORT_EVERY)  # past a few progress reports
    path.write_bytes(data)
    digest.start_early(str(path), fork=True)
    (early,) = digest._EARLY.values()
    assert isinstance(early, digest._ForkedHash) and early._pid != os.getpid()
    seen: list[int] = []
    digest._EARLY.clear()
    assert early.result(seen.append) == (hashlib.sha256(data).hexdigest(), len(data))
    assert sum(seen) == len(data) and len(seen) >= 3
    # a hash nobody wants any more: the child is gone (no zombie left to the parent)
    digest.start_early(str(path), fork=True)
    (stale,) = digest._EARLY.values()
    pid = stale._pid
    digest._EARLY.clear()
    stale.cancel()
    try:
        os.waitpid(pid, os.WNOHANG)
        reaped = False
    except ChildProcessError:
        reaped = True
    assert reaped


def test_a_forked_hash_that_cannot_read_says_so(tmp_path):
    path = tmp_path / "app.mda"
    path.write_bytes(EXAMPLE.read_bytes())
    fd = os.open(path, os.O_WRONLY)  # a descriptor the child cannot read from
    early = digest._ForkedHash(fd)
    try:
        early.result()
    except OSError as exc:
        assert "Bad file descriptor" in str(exc)
    else:
        raise AssertionError("a failed read gave a digest")
