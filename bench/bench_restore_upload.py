"""Benchmark: the part of the AWS `mxinfra backup restore --archive` a user waits for on their machine (the
archive judged by the core's reader and uploaded into the imports bucket), against the floor: the same
file uploaded by hand.

    .venv/bin/python bench/bench_restore_upload.py [--dump-mb 256] [--files-mb 256] [--repeat 3]

Packs an archive with the core's `pack` (a dump of `--dump-mb` MB of text rows, `--files-mb` MB of random
1 MB files at Mendix Cloud's tree/xx/yy/<name>), starts moto's S3 server on loopback
(tests/governance/servers.py), then times, each `--repeat` times, in a process of its own:

- command: what `restore_archive` does before it starts the machine: `check()` (inflating and judging
  every member, hashing) on a thread while `_upload` sends the file (16 MiB parts, hashed on the way);
- one after the other: `check()`, then `_upload` (what the command did before it read on both cores);
- judge alone: `check()`;
- upload_file (floor): boto3's `upload_file` of the archive, nothing judged or hashed.

The steps alternate. Prints the median and minimum seconds of each, the ratio of the medians to the floor,
and each process's peak resident memory (GNU time's %M). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "governance"))

sys.path.insert(0, str(ROOT / "bench"))

from bench_archive import write_dump  # noqa: E402
from servers import FAKE_AWS, moto_server  # noqa: E402

GNU_TIME = Path("/usr/bin/time")
BUCKET = "orders-test-imports-123456789012-eu-west-1"

# Each step as `python -c` in a fresh process (argv: endpoint, archive, key); prints its seconds.
COMMON = """
import sys, time, boto3
from pathlib import Path
from mxinfra.backup_archive import check, stored_keys
from mxinfra_aws.backup_actions import _Judging, _upload
endpoint, archive, key = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1")
start = time.perf_counter()
"""
STEPS = {
    "command": COMMON + f"""
judging = _Judging(lambda: check(archive, None, stored_keys()))
sha = _upload(s3, archive, {BUCKET!r}, key, "123456789012")
assert judging.result().sha256 == sha
print(time.perf_counter() - start)
""",
    "one after the other": COMMON + f"""
judged = check(archive, None, stored_keys())
assert _upload(s3, archive, {BUCKET!r}, key, "123456789012") == judged.sha256
print(time.perf_counter() - start)
""",
    "judge alone": COMMON + """
check(archive, None, stored_keys())
print(time.perf_counter() - start)
""",
    "upload_file (floor)": COMMON + f"""
s3.upload_file(str(archive), {BUCKET!r}, key)
print(time.perf_counter() - start)
""",
}


def _fill(src: Path, dump_mb: int, files_mb: int) -> None:
    write_dump(src / "db" / "db.backup", dump_mb)
    for i in range(files_mb):
        name = f"{i:08x}-0000-4000-8000-000000000000"
        d = src / "tree" / name[:2] / name[2:4]
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(os.urandom(1048576))


def _run(code: str, endpoint: str, archive: Path, key: str) -> tuple[float, int]:
    """Seconds (as the process measured them) and peak RSS in KiB (0 without GNU time)."""
    env = {**os.environ, **FAKE_AWS, "PYTHONPATH": str(ROOT)}
    with tempfile.NamedTemporaryFile() as rss:
        argv = [sys.executable, "-c", code, endpoint, str(archive), key]
        wrapped = [str(GNU_TIME), "-f", "%M", "-o", rss.name, *argv] if GNU_TIME.exists() else argv
        done = subprocess.run(wrapped, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"a step failed: {done.stderr}")
        peak = int(Path(rss.name).read_text().split()[-1]) if GNU_TIME.exists() else 0
    return float(done.stdout.strip().splitlines()[-1]), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dump-mb", type=int, default=256)
    ap.add_argument("--files-mb", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import boto3

    from mxinfra.backup_archive import pack

    with tempfile.TemporaryDirectory(prefix="mxinfra-bench-restore-upload-") as tmp, moto_server(Path(tmp)) as endpoint:
        work = Path(tmp)
        _fill(work / "src", args.dump_mb, args.files_mb)
        archive = work / "20261205T010203Z.tar.gz"
        pack(work / "src" / "db" / "db.backup", work / "src" / "tree", archive)
        os.environ.update(FAKE_AWS)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        size = archive.stat().st_size
        print(f"bench_restore_upload: dump {args.dump_mb} MB + files {args.files_mb} MB -> archive {size / 1048576:.0f} MB; {args.repeat} runs each; load {os.getloadavg()[0]:.2f}")
        times: dict[str, list[float]] = {k: [] for k in STEPS}
        peaks: dict[str, int] = dict.fromkeys(STEPS, 0)
        names = list(STEPS)
        for i in range(args.repeat):
            for n, step in enumerate(names if i % 2 == 0 else names[::-1]):
                seconds, peak = _run(STEPS[step], endpoint, archive, f"{i}-{n}.tar.gz")
                times[step].append(seconds)
                peaks[step] = max(peaks[step], peak)
                s3.delete_object(Bucket=BUCKET, Key=f"{i}-{n}.tar.gz")
        floor = statistics.median(times["upload_file (floor)"])
        print(f"  {'step':<22} {'median s':>9} {'min s':>7} {'ratio':>6} {'peak MiB':>9}")
        for step in names:
            med = statistics.median(times[step])
            print(f"  {step:<22} {med:9.2f} {min(times[step]):7.2f} {med / floor:5.2f}x {peaks[step] / 1024:9.1f}")
        print(f"  load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
