"""Benchmark: the AWS `mxinfra backup download`'s fetch of the export task's archive (the part of the
command a user waits for once the task is done), against the floor: the same object fetched by hand.

    .venv/bin/python bench/bench_download.py [--mb 128,512] [--repeat 3]

Starts moto's S3 server on loopback (tests/governance/servers.py), puts an archive of `--mb` MB of random
bytes into a bucket with its sha256 as metadata (as `store.sh put` does), then times, each `--repeat`
times, in a process of its own:

- download: the command's fetch, `backup_actions._stream` (GetObject, written a MiB at a time into an
  owner-only part file, hashed on the way) and the comparison with the stored sha256;
- floor: boto3's GetObject body written to a file a MiB at a time, nothing hashed or checked.

The two alternate, each run after the other's file is removed and the disk synced. Prints, per size, the
median and minimum seconds of each, the ratio of the medians, and each process's peak resident memory
(GNU time's %M). Asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "governance"))

from servers import FAKE_AWS, moto_server  # noqa: E402

GNU_TIME = Path("/usr/bin/time")
BUCKET = "orders-test-exports-123456789012-eu-west-1"

# The two fetches, each run as `python -c` in a fresh process (argv: endpoint, key, out file).
COMMON = """
import os, sys, time, boto3
from pathlib import Path
from mxinfra_aws.backup_actions import _stream  # imported by both: only the fetch is timed
endpoint, key, out = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1")
start = time.perf_counter()
answer = s3.get_object(Bucket=%r, Key=key)
""" % BUCKET
DOWNLOAD = COMMON + """
part = Path(out)
size, sha = _stream(answer["Body"], os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), part, key)
assert answer["Metadata"]["mxinfra-sha256"] == sha and answer["ContentLength"] == size
print(time.perf_counter() - start)
"""
FLOOR = COMMON + """
with open(out, "wb") as f:
    while chunk := answer["Body"].read(1 << 20):
        f.write(chunk)
print(time.perf_counter() - start)
"""


def _run(code: str, endpoint: str, key: str, out: Path) -> tuple[float, int]:
    """Seconds (as the process measured them, from GetObject on) and peak RSS in KiB (0 without GNU time)."""
    out.unlink(missing_ok=True)
    env = {**os.environ, **FAKE_AWS}
    with tempfile.NamedTemporaryFile() as rss:
        argv = [sys.executable, "-c", code, endpoint, key, str(out)]
        wrapped = [str(GNU_TIME), "-f", "%M", "-o", rss.name, *argv] if GNU_TIME.exists() else argv
        done = subprocess.run(wrapped, env=env, capture_output=True, text=True, check=True)
        peak = int(Path(rss.name).read_text().split()[-1]) if GNU_TIME.exists() else 0
    return float(done.stdout.strip().splitlines()[-1]), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", default="128,512", help="archive sizes in MB, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import boto3

    with tempfile.TemporaryDirectory(prefix="mxinfra-bench-download-") as tmp, moto_server(Path(tmp)) as endpoint:
        os.environ.update(FAKE_AWS)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        print(f"{'size':>7} {'step':<9} {'median s':>9} {'min s':>7} {'ratio':>6} {'peak RSS':>10}")
        for mb in (int(x) for x in args.mb.split(",")):
            data = os.urandom(mb << 20)
            key = f"20261205T{mb:06d}Z.tar.gz"
            s3.put_object(Bucket=BUCKET, Key=key, Body=data, Metadata={"mxinfra-sha256": hashlib.sha256(data).hexdigest()})
            del data
            times: dict[str, list[float]] = {"download": [], "floor": []}
            peaks: dict[str, int] = {"download": 0, "floor": 0}
            steps = [("download", DOWNLOAD), ("floor", FLOOR)]
            for i in range(args.repeat):
                # alternated, and each run alone on the disk: the second writer of 512 MB otherwise waits on
                # the first one's write-back
                for step, code in steps if i % 2 == 0 else steps[::-1]:
                    for old in Path(tmp).glob("*.out"):
                        old.unlink()
                    subprocess.run(["sync"], check=False)
                    seconds, peak = _run(code, endpoint, key, Path(tmp) / f"{step}.out")
                    times[step].append(seconds)
                    peaks[step] = max(peaks[step], peak)
            floor = statistics.median(times["floor"])
            for step in ("download", "floor"):
                med = statistics.median(times[step])
                print(f"{mb:>5}MB {step:<9} {med:>9.2f} {min(times[step]):>7.2f} {med / floor:>5.2f}x {peaks[step] / 1024:>8.1f}MiB")
            s3.delete_object(Bucket=BUCKET, Key=key)


if __name__ == "__main__":
    main()
