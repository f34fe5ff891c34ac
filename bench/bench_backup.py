"""Benchmark: the Kubernetes target's backup and restore scripts against a real PostgreSQL, by size.

    .venv/bin/python bench/bench_backup.py [--rows 10000,100000,1000000] [--files-mb 50] [--repeat 3]

Starts a throwaway PostgreSQL on loopback (tests/postgres.py), fills one Mendix-like table with N rows
(a bigint id, a string, a decimal, a timestamp) and a file store of `--files-mb` MB of random bytes in
1 MB files, then times `backup.sh` and `restore.sh` as the CronJob and the restore Job run them. Prints
the median and minimum seconds of each and the archive's size; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from postgres import PostgresServer, require_bin_dir  # noqa: E402

SCRIPTS = ROOT / "targets" / "kubernetes" / "mxinfra_kubernetes" / "scripts"


def _timed(script: str, env: dict[str, str]) -> float:
    full = {"PATH": f"{require_bin_dir()}:{os.environ['PATH']}", **env}
    start = time.perf_counter()
    done = subprocess.run(["sh", str(SCRIPTS / script)], env=full, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{script} failed: {done.stderr}")
    return elapsed


def main() -> None:
    """Parse the options, run each size, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="10000,100000,1000000")
    ap.add_argument("--files-mb", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    pg = PostgresServer.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            files, backups = Path(tmp) / "files", Path(tmp) / "backups"
            files.mkdir()
            backups.mkdir()
            for i in range(args.files_mb):
                (files / f"{i:04d}").write_bytes(os.urandom(1 << 20))
            print(f"{'rows':>10} {'backup median s':>16} {'min':>6} {'restore median s':>17} {'min':>6} {'archive MB':>11}")
            for rows in (int(n) for n in args.rows.split(",")):
                pg.psql(
                    'DROP TABLE IF EXISTS "orders$order"; CREATE TABLE "orders$order" (id bigint PRIMARY KEY, number varchar(20), total numeric(28,8), placed timestamp);'
                    f"INSERT INTO \"orders$order\" SELECT g, 'ORD-' || g, g * 1.25, timestamp '2020-01-01' + g * interval '1 minute' FROM generate_series(1, {rows}) g;"
                )
                took: dict[str, list[float]] = {"backup": [], "restore": []}
                for r in range(args.repeat):
                    stamp = f"20261204T02{r:02d}00Z"
                    env = {"DATABASE_URL": pg.url, "BACKUP_DIR": str(backups), "FILES_DIR": str(files)}
                    took["backup"].append(_timed("backup.sh", {**env, "BACKUP_NOW": stamp}))
                    took["restore"].append(_timed("restore.sh", {**env, "BACKUP_ID": stamp}))
                size = max(p.stat().st_size for p in backups.glob("*.tar.gz")) / 2**20
                b, rs = took["backup"], took["restore"]
                print(f"{rows:>10} {statistics.median(b):>16.2f} {min(b):>6.2f} {statistics.median(rs):>17.2f} {min(rs):>6.2f} {size:>11.1f}")
                for p in backups.glob("*.tar.gz"):
                    p.unlink()
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
