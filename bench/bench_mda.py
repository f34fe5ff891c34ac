"""Benchmark: digesting and inspecting a large MDA against `openssl dgst -sha256` (run by hand).

    python bench/bench_mda.py --sizes 100,1024

For each size it writes bench/work/app-<N>MiB.mda (incompressible content under web/; reused if
present), then times `openssl dgst -sha256` and `mxinfra inspect FILE --json` (or, while the CLI
does not exist, a `python -c` doing open_mda + check_members + sha256) under `/usr/bin/time -v`
for peak RSS. Targets: inspect/openssl <= 1.25, peak RSS < 100 MB and flat across sizes.
Each command runs once untimed first so both read from the page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(__file__).resolve().parent / "work"
sys.path.insert(0, str(ROOT))

from examples.orders.build_mda import METADATA  # noqa: E402

PIECE = 64 << 20  # content is split into members of this size, like a big web/ bundle


def make_mda(size_mib: int) -> Path:
    """Write an MDA holding size_mib MiB of random bytes under web/ (stored: random does not compress)."""
    path = WORK / f"app-{size_mib}MiB.mda"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    remaining = size_mib << 20
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("model/metadata.json", json.dumps(METADATA))
        zf.writestr("web/index.html", "<!doctype html>")
        n = 0
        while remaining:
            take = min(PIECE, remaining)
            with zf.open(zipfile.ZipInfo(f"web/dist/chunk-{n:04d}.bin"), "w", force_zip64=True) as out:
                left = take
                while left:
                    block = os.urandom(min(left, 8 << 20))
                    out.write(block)
                    left -= len(block)
            remaining -= take
            n += 1
    tmp.rename(path)
    return path


def inspect_command(path: Path) -> tuple[list[str], str]:
    """The command to measure and a label for it."""
    exe = shutil.which("mxinfra")
    if exe:
        return [exe, "inspect", str(path), "--json"], "mxinfra inspect --json"
    try:
        import mxinfra.cli  # noqa: F401

        return [sys.executable, "-m", "mxinfra.cli", "inspect", str(path), "--json"], "python -m mxinfra.cli inspect --json"
    except ImportError:
        code = (
            "import sys; from mxinfra.mda import open_mda; p = open_mda(sys.argv[1]); "
            "p.check_members(); print(p.sha256())"
        )
        return [sys.executable, "-c", code, str(path)], "python -c open_mda+check_members+sha256 (no CLI yet)"


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run under /usr/bin/time -v."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    rss_mb = int(match.group(1)) / 1024 if match else float("nan")
    return wall, rss_mb


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1024", help="comma-separated sizes in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command (best is reported)")
    args = parser.parse_args()
    if not Path("/usr/bin/time").exists():
        raise SystemExit("needs GNU time: apt-get install -y time")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = []
    label = ""
    for size in sizes:
        path = make_mda(size)
        openssl = ["openssl", "dgst", "-sha256", str(path)]
        inspect, label = inspect_command(path)
        measure(openssl)  # warm the page cache for both
        # alternate the two so a noisy neighbour hurts both alike; best of N for each
        ssl_runs, insp_runs = [], []
        for _ in range(args.repeat):
            ssl_runs.append(measure(openssl)[0])
            insp_runs.append(measure(inspect))
        ssl_s = min(ssl_runs)
        insp_s = min(r[0] for r in insp_runs)
        rss = max(r[1] for r in insp_runs)
        rows.append((size, ssl_s, insp_s, insp_s / ssl_s, rss))
    print(f"inspect = {label}")
    print(f"{'size MiB':>9} {'openssl s':>10} {'inspect s':>10} {'ratio':>6} {'peak RSS MB':>12}")
    for size, ssl_s, insp_s, ratio, rss in rows:
        print(f"{size:>9} {ssl_s:>10.3f} {insp_s:>10.3f} {ratio:>6.2f} {rss:>12.1f}")


if __name__ == "__main__":
    main()
