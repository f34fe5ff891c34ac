"""Benchmark: reading, hashing and verifying a large MDA against the hardware floor (run by hand).

    .venv/bin/python bench/bench_mda.py --sizes 100,1024

For each size it writes bench/work/app-<N>MiB.mda (reused if present): thousands of deflated text
members under web/ (JavaScript-like content of 4 KiB to 2 MiB that compresses about 3:1, like a real
web bundle), then runs, alternating, each under `/usr/bin/time -v`:
  - `openssl dgst -sha256 FILE` and `unzip -tq FILE` (the floors: hashing, inflating every member);
  - `mxinfra inspect FILE --json` (central directory + hash) and `mxinfra inspect FILE --verify --json`.
It prints the median wall time of each, the ratio of `--verify` to the slower floor, and peak RSS.
Targets: --verify <= 1.1x max(openssl, unzip); peak RSS < 100 MB and flat from 100 MiB to 1 GiB.
Each command runs once untimed first so everything reads from the page cache.

`--baseline DIR` also runs `inspect --verify` with the `mxinfra` package found in DIR (for example
`git archive HEAD~1 mxinfra | tar -x -C /tmp/base`) in the same rounds: before/after in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(__file__).resolve().parent / "work"
sys.path.insert(0, str(ROOT))

from examples.orders.build_mda import METADATA  # noqa: E402

_WORDS = (
    "function return const let var this that null undefined true false if else for while switch case break "
    "default new class extends import export from async await yield typeof instanceof delete void try catch "
    "finally throw object array string number boolean promise resolve reject then prototype length push pop "
    "mendix widget render props state dispatch reducer entity attribute association microflow nanoflow page"
).split()


def _corpus(rng: random.Random, size: int) -> bytes:
    """JavaScript-like text: words, identifiers with numbers and punctuation (deflates about 3:1)."""
    out = []
    total = 0
    punct = ["(", ")", "{", "}", ";", ".", ",", " = ", " => ", "\n", "  "]
    while total < size:
        w = rng.choice(_WORDS)
        if rng.random() < 0.35:
            w += f"{rng.randrange(1 << 20):x}"
        piece = w + rng.choice(punct)
        out.append(piece)
        total += len(piece)
    return "".join(out).encode()[:size]


def make_mda(size_mib: int) -> Path:
    """Write an MDA of about size_mib MiB (compressed) of deflated, web-bundle-like members."""
    path = WORK / f"app-{size_mib}MiB.mda"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    rng = random.Random(size_mib)
    corpus = _corpus(rng, 8 << 20)
    tmp = path.with_suffix(".partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        zf.writestr("model/metadata.json", json.dumps(METADATA))
        zf.writestr("model/model.mdp", corpus[: 4 << 20])
        zf.writestr("web/index.html", "<!doctype html>")
        n = 0
        fh = zf.fp
        while fh.tell() < size_mib << 20:
            # sizes from 4 KiB to 2 MiB, most of them small, as in a real bundle
            size = int(min(2 << 20, 4096 * rng.paretovariate(0.9)))
            start = rng.randrange(len(corpus) - size)
            zf.writestr(f"web/dist/{n // 500:03d}/module-{n:06d}.js", corpus[start : start + size])
            n += 1
    tmp.rename(path)
    return path


def mxinfra_command() -> list[str]:
    """The installed console script (the one users run), else the module."""
    exe = shutil.which("mxinfra") or str(Path(sys.executable).with_name("mxinfra"))
    return [exe] if Path(exe).exists() else [sys.executable, "-m", "mxinfra.cli"]


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run under /usr/bin/time -v."""
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
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command (the median is reported)")
    parser.add_argument("--baseline", type=Path, help="a directory holding another mxinfra package to time --verify against")
    args = parser.parse_args()
    if not Path("/usr/bin/time").exists():
        raise SystemExit("needs GNU time: apt-get install -y time")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    mx = mxinfra_command()
    envs: dict[str, dict[str, str] | None] = {}
    if args.baseline is not None:
        if not (args.baseline / "mxinfra" / "__init__.py").exists():
            raise SystemExit(f"{args.baseline} holds no mxinfra package")
        # the console script's own directory comes first on sys.path, then PYTHONPATH, then the install
        envs["baseline"] = {**os.environ, "PYTHONPATH": str(args.baseline.resolve())}
    extra = f" {'baseline':>9} {'RSS baseline':>13}" if envs else ""
    print(f"{'size MiB':>9} {'members':>8} {'openssl':>8} {'unzip -t':>9} {'inspect':>8} {'--verify':>9} {'verify/floor':>13} {'RSS inspect':>12} {'RSS verify':>11}{extra}")
    for size in sizes:
        path = make_mda(size)
        with zipfile.ZipFile(path) as zf:
            members = len(zf.infolist())
        cmds = {
            "openssl": ["openssl", "dgst", "-sha256", str(path)],
            "unzip": ["unzip", "-tq", str(path)],
            "inspect": [*mx, "inspect", str(path), "--json"],
            "verify": [*mx, "inspect", str(path), "--verify", "--json"],
        }
        if envs:
            cmds["baseline"] = cmds["verify"]
        for key, cmd in cmds.items():
            measure(cmd, envs.get(key))  # warm the page cache and the interpreter's files
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
        for _ in range(args.repeat):  # interleaved: a noisy neighbour hurts all alike
            for key, cmd in cmds.items():
                runs[key].append(measure(cmd, envs.get(key)))
        wall = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
        rss = {k: max(r[1] for r in v) for k, v in runs.items()}
        floor = max(wall["openssl"], wall["unzip"])
        print(
            f"{size:>9} {members:>8} {wall['openssl']:>8.3f} {wall['unzip']:>9.3f} {wall['inspect']:>8.3f} "
            f"{wall['verify']:>9.3f} {wall['verify'] / floor:>13.2f} {rss['inspect']:>12.1f} {rss['verify']:>11.1f}"
            + (f" {wall['baseline']:>9.3f} {rss['baseline']:>13.1f}" if envs else "")
        )


if __name__ == "__main__":
    main()
