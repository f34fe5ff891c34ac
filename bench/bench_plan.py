"""Benchmark: plan time against environment count, next to the cost of bare resources; CLI start-up.

    .venv/bin/python bench/bench_plan.py [--envs 1,10,50] [--repeat 3]

For each N it writes a scratch project whose stack declares N environments of the test-only target
(tests/fake_target.py), times `mxinfra plan --json` in-process (best of --repeat), counts the resources
registered, then times a minimal program that registers the same number of bare resources under the
same mock runtime. The difference is mxinfra's own overhead; per environment it should stay flat
(linear total). Finally it times `mxinfra --help` in a fresh interpreter and lists any heavy module it
imported. Prints what it measured; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import pulumi  # noqa: E402

from fake_target import Thing, target  # noqa: E402
from mxinfra.cli import main  # noqa: E402
from mxinfra.mockrun import run_mocked  # noqa: E402
from mxinfra.target import register_target  # noqa: E402


def make_project(directory: Path, envs: int) -> None:
    (directory / "stacks").mkdir(parents=True)
    (directory / "Pulumi.yaml").write_text("name: orders\nruntime: python\nstackConfigDir: stacks\n")
    (directory / "__main__.py").write_text((ROOT / "__main__.py").read_text())
    config = {
        "mxinfra:app": {"name": "orders", "package": str(ROOT / "examples/orders/orders-1.4.2.mda"), "target": "fake"},
        "mxinfra:environments": {
            f"env{i}": {"role": ("test", "acceptance", "production")[i % 3], **({"ungated": {"reason": "benchmark"}} if i % 3 == 2 else {})}
            for i in range(envs)
        },
        "mxinfra:access": [{"principal": "group:ops", "environments": ["*"], "permissions": ["deploy", "monitor"]}],
    }
    (directory / "stacks" / "Pulumi.bench.yaml").write_text(yaml.safe_dump({"config": config}))


def time_plan(directory: Path) -> tuple[float, int]:
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        rc = main(["plan", "-s", "bench", "-C", str(directory), "--json"])
    elapsed = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"plan failed with exit {rc}")
    return elapsed, out.getvalue().count('"urn":')


def time_bare(count: int) -> float:
    def program() -> None:
        for i in range(count):
            Thing("bench:index:Bare", f"bare-{i}", {"index": i}, pulumi.ResourceOptions())

    start = time.perf_counter()
    run_mocked(program, project="bare", stack="bench")
    return time.perf_counter() - start


def help_startup(repeat: int) -> tuple[float, list[str]]:
    code = (
        "import sys, time; t=time.perf_counter(); from mxinfra.cli import main\n"
        "try:\n main(['--help'])\nexcept SystemExit: pass\n"
        "heavy=[m for m in sys.modules if m.split('.')[0] in ('pulumi','pulumi_aws','pulumi_kubernetes','boto3','grpc','azure')]\n"
        "print(sorted(set(m.split('.')[0] for m in heavy)))"
    )
    best, heavy = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        best = min(best, time.perf_counter() - start)
        heavy = eval(done.stdout.strip().splitlines()[-1])  # a printed list of module names
    return best, heavy


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="1,10,50")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    register_target(target)
    print(f"{'envs':>5} {'resources':>10} {'plan s':>8} {'bare s':>8} {'overhead s':>11} {'overhead/env ms':>16}")
    for n in (int(x) for x in args.envs.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            make_project(Path(tmp) / "p", n)
            runs = [time_plan(Path(tmp) / "p") for _ in range(args.repeat)]
        plan_s, resources = min(r[0] for r in runs), runs[0][1]
        bare_s = min(time_bare(resources) for _ in range(args.repeat))
        overhead = plan_s - bare_s
        print(f"{n:>5} {resources:>10} {plan_s:>8.3f} {bare_s:>8.3f} {overhead:>11.3f} {overhead / n * 1000:>16.1f}")
    startup, heavy = help_startup(args.repeat)
    print(f"mxinfra --help: {startup * 1000:.0f} ms (fresh interpreter, best of {args.repeat}); heavy modules imported: {heavy or 'none'}")


if __name__ == "__main__":
    main_bench()
