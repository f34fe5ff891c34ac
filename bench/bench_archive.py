"""Benchmark: writing and reading the backup archive on the machine running mxinfra (mxinfra.backup_archive,
what Cloud Foundry's `mxinfra backup download` and `restore --archive` do after pg_dump and before
pg_restore), against the plain tools doing the same by hand.

    .venv/bin/python bench/bench_archive.py [--dump-mb 512] [--files-mb 512] [--repeat 3]

Makes a dump-like file of `--dump-mb` MB (rows of text and numbers: compressible, like pg_dump's custom
format taken with --compress=0) and `--files-mb` MB of random bytes in 1 MB files (a file store's documents
do not compress), then times, each `--repeat` times, as whole processes:

- pack: `pack()` on one thread and on every core, against `tar -cf - db tree | gzip -1` (GNU tar and gzip,
  one core: what the Kubernetes target's backup.sh would do without its ranges) and `cat` of the inputs
  into one file (reading and writing the bytes: the floor of any archive);
- unpack: `unpack()` (which also checks every member's CRC and the sha256), against `tar -xzf` and `cat`.

Prints the median and minimum seconds of each, the ratio of the medians to the plain tools, and the peak
resident memory of each run (GNU time's %M). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GNU_TIME = Path("/usr/bin/time")


def _timed(argv: list[str], cwd: Path) -> tuple[float, int]:
    """Seconds and peak RSS in KiB of one run (0 without GNU time)."""
    with tempfile.NamedTemporaryFile() as rss:
        wrapped = [str(GNU_TIME), "-f", "%M", "-o", rss.name, *argv] if GNU_TIME.exists() else argv
        start = time.perf_counter()
        done = subprocess.run(wrapped, cwd=cwd, capture_output=True)
        elapsed = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace')}")
        peak = Path(rss.name).read_text().split()
    return elapsed, int(peak[-1]) if peak else 0


def write_dump(path: Path, dump_mb: int) -> None:
    """A dump-like file of about `dump_mb` MB: rows of text and numbers (compressible, like pg_dump's custom
    format taken with --compress=0). bench_restore_upload.py writes its dump with it too."""
    path.parent.mkdir(parents=True)
    row = b"".join(b"%d\tORD-%06d\t%d.25\t2026-01-01 10:%02d:00\tsome notes about the order\n" % (i, i, i * 3, i % 60) for i in range(2000))
    with open(path, "wb") as f:
        for _ in range(dump_mb * 1048576 // len(row) + 1):
            f.write(row)


def _fill(work: Path, dump_mb: int, files_mb: int) -> None:
    write_dump(work / "db" / "db.backup", dump_mb)
    tree = work / "tree"
    for i in range(files_mb):
        d = tree / f"{i % 16:02x}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"doc-{i}").write_bytes(os.urandom(1048576))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump-mb", type=int, default=512)
    parser.add_argument("--files-mb", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="mxinfra-bench-archive-", dir=ROOT / "bench" / "work" if (ROOT / "bench" / "work").is_dir() else None) as scratch:
        work = Path(scratch)
        src = work / "src"
        _fill(src, args.dump_mb, args.files_mb)
        cores = os.cpu_count() or 1
        pack = "import sys; from pathlib import Path; from mxinfra.backup_archive import pack; pack(Path('src/db/db.backup'), Path('src/tree'), Path(sys.argv[1]), workers=int(sys.argv[2]))"
        unpack = "import sys; from pathlib import Path; from mxinfra.backup_archive import unpack; unpack(Path(sys.argv[1]), Path(sys.argv[2]))"
        steps = {
            "pack, 1 thread": lambda i: [py, "-c", pack, f"p1-{i}.tar.gz", "1"],
            f"pack, {cores} threads": lambda i: [py, "-c", pack, f"pn-{i}.tar.gz", str(cores)],
            "tar | gzip -1": lambda i: ["sh", "-c", f"tar -C src -cf - db tree | gzip -1 > t-{i}.tar.gz"],
            "cat (floor)": lambda i: ["sh", "-c", f"find src -type f -exec cat {{}} + > c-{i}.bin"],
            "unpack": lambda i: [py, "-c", unpack, "archive.tar.gz", f"u-{i}"],
            "tar -xzf": lambda i: ["sh", "-c", f"mkdir x-{i} && tar -C x-{i} -xzf archive.tar.gz"],
            "cat archive (floor)": lambda i: ["sh", "-c", f"cat archive.tar.gz > a-{i}.bin"],
        }
        env_path = str(ROOT)
        os.environ["PYTHONPATH"] = env_path
        subprocess.run([py, "-c", pack, "archive.tar.gz", str(cores)], cwd=work, check=True)
        size = (work / "archive.tar.gz").stat().st_size
        print(f"bench_archive: dump {args.dump_mb} MB (text rows) + files {args.files_mb} MB (random, 1 MB each) -> archive {size / 1048576:.0f} MB; "
              f"{args.repeat} runs each; {cores} cores; load {os.getloadavg()[0]:.2f}")
        results: dict[str, tuple[float, float, int]] = {}
        for name, argv in steps.items():
            times, peaks = [], []
            for i in range(args.repeat):
                t, peak = _timed(argv(i), work)
                times.append(t)
                peaks.append(peak)
                for leftover in work.glob(f"*-{i}*"):
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            results[name] = (statistics.median(times), min(times), max(peaks))
        print(f"  {'step':<22} {'median s':>9} {'min s':>7} {'peak MiB':>9}")
        for name, (med, low, peak) in results.items():
            print(f"  {name:<22} {med:9.2f} {low:7.2f} {peak / 1024:9.1f}")
        p1, pn, tg, cat = (results[k][0] for k in ("pack, 1 thread", f"pack, {cores} threads", "tar | gzip -1", "cat (floor)"))
        un, tx, cat_a = (results[k][0] for k in ("unpack", "tar -xzf", "cat archive (floor)"))
        print(f"  pack on {cores} threads: {pn / tg:.2f}x tar | gzip -1, {p1 / pn:.2f}x faster than on one, {pn / cat:.1f}x the cat floor")
        print(f"  unpack: {un / tx:.2f}x tar -xzf (which checks no sha256), {un / cat_a:.1f}x the cat floor")
        print(f"  load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
