"""Benchmark: the Kubernetes target's backup and restore scripts against a real PostgreSQL, by size, and
against the floor: the same work done by hand with the plain tools.

    .venv/bin/python bench/bench_backup.py [--db-mb 64,256] [--files-mb 256] [--repeat 2] [--scripts DIR] [--cache cold|warm] [--touch-free]

`--scripts` times another copy of the scripts (e.g. `git show HEAD~1:...` into a directory) to compare versions.

Starts a throwaway PostgreSQL on loopback (tests/postgres.py), fills one Mendix-like table (a bigint id, a
string, a decimal, a timestamp, a text) to about `--db-mb` MB on disk (table and index) and a file store of
`--files-mb` MB of random bytes in 1 MB files, then times, each `--repeat` times:

- backup: `backup.sh` as the CronJob runs it, against the floor `pg_dump -Fc` to a file plus `cp -R` of the
  files (what the script adds: the tar.gz of both, the rename, retention);
- restore: `restore.sh` as the restore Job runs it, against the floor `pg_restore` (the script's flags:
  --clean --if-exists --no-owner --no-privileges --single-transaction) of that dump plus removing the
  files and `cp -R` of the copy back (what the script adds: unpacking the archive);
- transfer: `export.sh` sending the archive to `restore.sh` receiving it on loopback (the restore from
  another environment's copy step, without its restore), against the floor `cp` of the archive.

Before each timed step, untimed: a VACUUM and a CHECKPOINT of the server and a sync of the machine, so that
none of autovacuum's vacuum of the table a restore wrote (an insert-only table is vacuumed once it grew by
1,000 rows and 20%), the server's checkpoint of the WAL a step wrote, or the kernel's writeback of its files
is timed in the next step. Then, with `--cache cold` (the default), every file of the scratch directory and
of the server's data directory is dropped from the page cache (posix_fadvise DONTNEED; no root needed), so
each step and its floor read their inputs from the disk alike, as a restore of last night's archive does.
With `--cache warm` they stay as the steps before left them (a restore then reads the archive the backup just
wrote, from the cache; on the VM of 2026-12-07 that restore measured up to 1.9x the floor: the VM's first
touch of memory it had handed back to the host, see the Kubernetes README). `--touch-free`, also untimed
before each step, writes a byte into every page of the free memory but 1 GiB and frees it: on a VM whose
balloon reports free pages to the host, each step then writes into pages the host backs; the rate of each
touch is printed (a first touch of reported pages is several times slower). It holds all but 1 GiB of the
free memory for a moment: run it with the machine to itself.

Prints, per size and step, the median and minimum seconds of the script and the floor, the ratio of the
medians, and the peak resident memory of the largest process of each run (the client side: the server's
own memory is not counted). Asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from postgres import PostgresServer, require_bin_dir  # noqa: E402

SCRIPTS = Path()  # the Jobs' scripts volume (_volume), filled in main
SERVER: PostgresServer | None = None  # the throwaway server, vacuumed and checkpointed before each timed step
RESTORE_FLAGS = "--clean --if-exists --no-owner --no-privileges --single-transaction --exit-on-error"
EVICT: list[Path] = []  # the trees dropped from the page cache before each timed step (--cache cold)
TOUCHED: list[float] | None = None  # MiB/s of each touch of the free memory before a timed step (--touch-free)


def _evict(roots: list[Path]) -> None:
    """Drop every regular file under `roots` from the page cache (after a sync, all its pages are clean)."""
    for root in roots:
        for path in root.rglob("*"):
            try:
                if not path.is_file() or path.is_symlink():
                    continue
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue  # gone meanwhile (a server's temporary file), or not ours to read
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _touch_free() -> None:
    """Write a byte into each page of the free memory but 1 GiB, then free it; its rate into TOUCHED."""
    assert TOUCHED is not None
    with open("/proc/meminfo") as info:
        free = next(int(line.split()[1]) * 1024 for line in info if line.startswith("MemFree:"))
    size = free - (1 << 30)
    if size < 1 << 20:
        return
    start = time.perf_counter()
    block = bytearray(size)
    block[::4096] = b"\x01" * len(range(0, size, 4096))
    del block
    TOUCHED.append((size >> 20) / (time.perf_counter() - start))


def _path() -> str:
    return f"{require_bin_dir()}:{os.environ['PATH']}"


# GNU time's %M: the largest resident set of the process tree (wait4 folds in the reaped children). Not
# Python's own wait4: a child's peak would start at the forked Python's size, which exec keeps counting.
GNU_TIME = Path("/usr/bin/time")


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Seconds and peak RSS in KiB (0 without GNU time)."""
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as err:
        wrapped = [str(GNU_TIME), "-f", "%M", "-o", rss.name, *argv] if GNU_TIME.exists() else argv
        # what the step before left to do is done first, untimed, else it lands in this step: the vacuum
        # autovacuum would start on the table a restore just wrote, the server's checkpoint of the WAL it
        # wrote, the kernel's writeback of what it left in the page cache
        if SERVER is not None:
            SERVER.psql("VACUUM; CHECKPOINT;")
        os.sync()
        _evict(EVICT)
        if TOUCHED is not None:
            _touch_free()
        start = time.perf_counter()
        done = subprocess.run(wrapped, env={"PATH": _path(), **env}, stdout=subprocess.DEVNULL, stderr=err)
        elapsed = time.perf_counter() - start
        if done.returncode:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed: {err.read().decode(errors='replace')}")
        peak = Path(rss.name).read_text().split()
    return elapsed, int(peak[-1]) if peak else 0


def _script(name: str, env: dict[str, str]) -> tuple[float, int]:
    return _timed(["sh", str(SCRIPTS / name)], env)


def _volume(into: Path, directory: Path | None) -> Path:
    """The Jobs' scripts volume as the backup-scripts ConfigMap fills it (the checkout's scripts and the
    core's clean.sql), with the scripts of `directory` instead where it is given."""
    from mxinfra.backup_scripts import SCRIPT_NAMES
    from mxinfra_kubernetes.backups import scripts_data

    data = scripts_data()
    if directory is not None:
        missing = [n for n in ("backup.sh", "restore.sh", "export.sh") if not (directory / n).is_file()]
        if missing:
            raise SystemExit(f"--scripts {directory}: missing {', '.join(missing)}")
        # every script that version has (its perl files only where it has them: before, they were inline)
        data.update({n: (directory / n).read_text() for n in SCRIPT_NAMES if (directory / n).is_file()})
    into.mkdir()
    for name, text in data.items():
        (into / name).write_text(text)
    return into


def _shell(cmd: str, env: dict[str, str]) -> tuple[float, int]:
    return _timed(["sh", "-c", cmd], env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _transfer(archive: Path, stamp: str, work: Path) -> tuple[float, int]:
    """export.sh sending `archive` to restore.sh's receiver (stopped after the receive: no database)."""
    port, dest = _free_port(), work / "received"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    env = {"BACKUP_DIR": str(dest), "BACKUP_ID": stamp, "BACKUP_SOURCE": "production", "BACKUP_PORT": str(port), "BACKUP_TOKEN_SHA256": hashlib.sha256(b"bench").hexdigest(), "BACKUP_WAIT": "600"}
    # DATABASE_URL of nothing: the receive completes, the pg_restore after it fails at once (ignored below)
    receiver = subprocess.Popen(["sh", str(SCRIPTS / "restore.sh")], env={"PATH": _path(), "DATABASE_URL": "postgres://x@127.0.0.1:1/none", **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert receiver.stdout is not None
    if receiver.stdout.readline().split()[:2] != ["restore:", "waiting"]:  # listening now
        raise SystemExit("transfer: the receiver did not start")
    # timed by _timed alone: what it does first, untimed (the server's vacuum and checkpoint, the sync, the
    # eviction, the touch), is not the transfer's (until 2026-12-07 this step's time included it)
    sent = _script("export.sh", {"BACKUP_DIR": str(archive.parent), "BACKUP_ID": stamp, "BACKUP_TARGET": f"127.0.0.1:{port}", "BACKUP_TOKEN": "bench"})
    try:
        receiver.wait(timeout=600)
    finally:
        receiver.kill()
    got = dest / "from-production" / archive.name
    if not got.exists() or got.stat().st_size != archive.stat().st_size:
        raise SystemExit("transfer: the archive did not arrive whole")
    shutil.rmtree(dest)
    return sent


def _fill(pg: PostgresServer, mb: int) -> int:
    """The table filled to about `mb` MB (table + index); its row count."""
    pg.psql('DROP TABLE IF EXISTS "orders$order"; CREATE TABLE "orders$order" (id bigint PRIMARY KEY, number varchar(20), total numeric(28,8), placed timestamp, notes text);')
    insert = "INSERT INTO \"orders$order\" SELECT g, 'ORD-' || g, g * 1.25, timestamp '2020-01-01' + g * interval '1 minute', md5(g::text) || md5((g * 7)::text) FROM generate_series({a}, {b}) g;"
    sample = 100_000
    pg.psql(insert.format(a=1, b=sample))
    per_row = int(pg.psql("SELECT pg_total_relation_size('\"orders$order\"')").strip()) / sample
    rows = max(sample, int(mb * 2**20 / per_row))
    for a in range(sample + 1, rows + 1, 1_000_000):
        pg.psql(insert.format(a=a, b=min(rows, a + 999_999)))
    pg.psql('VACUUM ANALYZE "orders$order"')
    return rows


def _line(step: str, script: list[tuple[float, int]], floor: list[tuple[float, int]]) -> str:
    s, f = [t for t, _ in script], [t for t, _ in floor]
    ratio = statistics.median(s) / statistics.median(f)
    return f"  {step:<9} {statistics.median(s):>9.2f} {min(s):>7.2f} {statistics.median(f):>9.2f} {min(f):>7.2f} {ratio:>6.2f}x {max(m for _, m in script) / 1024:>10.1f} {max(m for _, m in floor) / 1024:>9.1f}"


def main() -> None:
    """Parse the options, run each size, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db-mb", default="64,256", help="database sizes in MB, comma-separated")
    ap.add_argument("--files-mb", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--scripts", type=Path, help="a directory with other versions of backup.sh, restore.sh and export.sh")
    ap.add_argument("--cache", choices=("cold", "warm"), default="cold", help="drop the steps' files from the page cache before each (default) or not")
    ap.add_argument("--touch-free", action="store_true", help="touch every page of the free memory but 1 GiB before each step (a VM's reported pages)")
    args = ap.parse_args()
    global SCRIPTS, SERVER, TOUCHED
    TOUCHED = [] if args.touch_free else None
    pg = SERVER = PostgresServer.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            SCRIPTS = _volume(Path(tmp) / "scripts", args.scripts)
            work = Path(tmp)
            if args.cache == "cold":
                EVICT[:] = [work, pg.root]
            files, backups, floor_dir = work / "files", work / "backups", work / "floor"
            for d in (files, backups, floor_dir):
                d.mkdir()
            for i in range(args.files_mb):
                (files / f"{i:04d}").write_bytes(os.urandom(1 << 20))
            cache = "dropped from the page cache before each step" if args.cache == "cold" else "left in the page cache as the step before left them"
            print(f"files: {args.files_mb} MB in 1 MB files of random bytes; {args.repeat} runs each; inputs {cache}; seconds, peak RSS in MiB")
            for mb in (int(n) for n in args.db_mb.split(",")):
                rows = _fill(pg, mb)
                db_mb = int(pg.psql("SELECT pg_total_relation_size('\"orders$order\"')").strip()) / 2**20
                took: dict[str, list[tuple[float, int]]] = {k: [] for k in ("backup", "floor-backup", "restore", "floor-restore", "transfer", "floor-copy")}
                env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "FILES_DIR": str(files)}
                for r in range(args.repeat):
                    stamp = f"20261204T02{r:02d}00Z"
                    took["backup"].append(_script("backup.sh", {**env, "BACKUP_NOW": stamp}))
                    shutil.rmtree(floor_dir)
                    floor_dir.mkdir()
                    took["floor-backup"].append(_shell(f'pg_dump -Fc --no-owner --no-privileges -f "{floor_dir}/db.backup" -d "{pg.url}" && cp -R "{files}/." "{floor_dir}/tree/"', {}))
                    took["restore"].append(_script("restore.sh", {**env, "BACKUP_ID": stamp}))
                    took["floor-restore"].append(_shell(f'pg_restore {RESTORE_FLAGS} -d "{pg.url}" "{floor_dir}/db.backup" && find "{files}" -mindepth 1 -maxdepth 1 -exec rm -rf {{}} + && cp -R "{floor_dir}/tree/." "{files}/"', {}))
                    archive = backups / f"{stamp}.tar.gz"
                    took["transfer"].append(_transfer(archive, stamp, work))
                    took["floor-copy"].append(_shell(f'cp "{archive}" "{work}/copy.tar.gz" && rm "{work}/copy.tar.gz"', {}))
                size = max(p.stat().st_size for p in backups.glob("*.tar.gz")) / 2**20
                print(f"\ndatabase {db_mb:.0f} MB ({rows} rows) + files {args.files_mb} MB -> archive {size:.0f} MB, dump {(floor_dir / 'db.backup').stat().st_size / 2**20:.0f} MB")
                print(f"  {'step':<9} {'median':>9} {'min':>7} {'floor med':>9} {'min':>7} {'ratio':>7} {'peak MiB':>10} {'floor MiB':>9}")
                print(_line("backup", took["backup"], took["floor-backup"]))
                print(_line("restore", took["restore"], took["floor-restore"]))
                print(_line("transfer", took["transfer"], took["floor-copy"]))
                for p in backups.glob("*.tar.gz"):
                    p.unlink()
            if TOUCHED:
                print(f"\nthe free memory touched before each step: {len(TOUCHED)} times, {min(TOUCHED):.0f} to {max(TOUCHED):.0f} MiB/s (median {statistics.median(TOUCHED):.0f})")
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
