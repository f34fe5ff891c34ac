"""Benchmark: the activity log under faults, on file://, a moto S3 server and Azurite (issue 22).

    .venv/bin/python bench/bench_faults.py [--backends file,s3,azblob] [--experiments contention,kill,...]
        [--writers 32] [--appends 50] [--cloud-appends 5] [--kill 100] [--cloud-kill 60] [--ops 100] [--seed N]

Experiments (tests/governance/faulttrials.py runs them, with the product's own ActivityProvider and
ActivityLog against real stores; faultproxy.py injects the network faults in front of moto and Azurite):

    contention     WRITERS concurrent writer processes append APPENDS records each to one environment
    kill           a `pulumi up` (the activity provider in a process of its own) is killed with SIGKILL at
                   a random moment of its appends while a CLI action writes the same log, then runs again
    error500       a 500 answers a write the store committed (p=0.1 per PUT)
    drop           the connection closes unanswered after the store committed a write (p=0.1 per PUT)
    busy503        a 503 answers a request before it reaches the store (p=0.2 per request)
    latency        every request waits 20 ms first, 8 writers at once

The proxy experiments run OPS operations: a `pulumi up` and three CLI writers at once on one environment.
After each trial the invariants are checked (faulttrials.check): a record per operation that succeeded
(else lost), never two (duplicated), appends that raised instead of recording (gave up), and what
`ActivityLog.repair` still had to write or remove afterwards (repaired: locators, checkpoints, temporary
files of killed writers). Any other broken invariant (a gap, verify not green, a deploy the gate misses,
an index still missing after repair) is printed below the table. Prints what it measured; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "governance"))

from faultproxy import Faults, fault_proxy  # noqa: E402
from faulttrials import Tally, calibrate, check, kill_trial, mixed_writers, process_contention_trial, signing_key  # noqa: E402
from servers import FAKE_AWS, azurite_binary, azurite_server, moto_server  # noqa: E402

EXPERIMENTS = ("contention", "kill", "error500", "drop", "busy503", "latency")
PROXY_FAULTS = {
    "error500": ("500 after commit, p=0.1", {"error_after_commit": 0.1}),
    "drop": ("connection dropped after commit, p=0.1", {"drop_after_commit": 0.1}),
    "busy503": ("503 before the write, p=0.2", {"busy_before": 0.2}),
    "latency": ("20 ms latency, 8 writers", {"latency": 0.02}),
}


class Backends:
    """Fresh repositories on each backend (servers started once, on demand) and their environment variables."""

    def __init__(self, stack: contextlib.ExitStack, work: Path) -> None:
        self.stack, self.work = stack, work
        self.moto: str | None = None
        self.azurite: str | None = None

    def url(self, backend: str) -> str:
        """A fresh, empty repository; sets the environment that points the SDK at its server."""
        if backend == "file":
            return (self.work / f"repo-{uuid.uuid4().hex[:8]}").as_uri()
        if backend == "s3":
            import boto3

            if self.moto is None:
                self.moto = self.stack.enter_context(moto_server(self.work))
            os.environ["AWS_ENDPOINT_URL"] = self.moto
            bucket = f"mx-{uuid.uuid4().hex[:20]}"
            boto3.client("s3", endpoint_url=self.moto).create_bucket(Bucket=bucket)
            return f"s3://{bucket}/bench"
        from azure.storage.blob import BlobServiceClient

        if self.azurite is None:
            if azurite_binary() is None:
                raise SystemExit("Azurite is not installed (./dev test installs it into .tools)")
            self.azurite = self.stack.enter_context(azurite_server(self.work))
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = self.azurite
        container = f"mx-{uuid.uuid4().hex[:20]}"
        BlobServiceClient.from_connection_string(self.azurite).create_container(container)
        return f"azblob://devstoreaccount1/{container}/bench"

    @contextlib.contextmanager
    def proxied(self, backend: str, faults: Faults) -> Iterator[str]:
        """A fresh repository on a cloud backend whose requests go through a fault proxy."""
        url = self.url(backend)
        if backend == "s3":
            assert self.moto is not None
            with fault_proxy(self.moto, "s3", faults) as proxy:
                os.environ["AWS_ENDPOINT_URL"] = proxy
                yield url
            os.environ["AWS_ENDPOINT_URL"] = self.moto
            return
        assert self.azurite is not None
        endpoint = next(p.split("=", 1)[1] for p in self.azurite.split(";") if p.startswith("BlobEndpoint="))
        upstream = endpoint.rsplit("/", 1)[0]
        with fault_proxy(upstream, "azure", faults) as proxy:
            os.environ["AZURE_STORAGE_CONNECTION_STRING"] = self.azurite.replace(upstream, proxy)
            yield url
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = self.azurite


def run_contention(backends: Backends, backend: str, key: Path, writers: int, appends: int) -> Tally:
    """One run of `writers` processes appending `appends` records each (trials: the appends)."""
    return process_contention_trial(backends.url(backend), "production", key, writers, appends)


def run_kill(backends: Backends, backend: str, key: Path, trials: int, rng: random.Random) -> Tally:
    """`trials` kill -9 trials, each on an environment of its own in one repository."""
    url = backends.url(backend)
    window = calibrate(url, key, ops=3)
    total = Tally()
    for trial in range(trials):
        total.add(kill_trial(url, f"trial{trial}", key, rng, ops=3, window=window, background=2))
    return total


def run_proxy(backends: Backends, backend: str, key: Path, experiment: str, ops: int, seed: int) -> Tally:
    """Rounds of a `pulumi up` and CLI writers (five operations each) through the fault proxy until `ops`."""
    total = Tally()
    _, settings = PROXY_FAULTS[experiment]
    writers = 7 if experiment == "latency" else 3
    per_round = 5 + writers * 5
    for n in range(max(1, -(-ops // per_round))):
        faults = Faults(seed=seed + n, **settings)
        with backends.proxied(backend, faults) as url:
            done, gave_up = mixed_writers(url, "acceptance", key, provider_ops=5, cli_writers=writers, per_writer=5)
            faults.clear()
            tally = check(url, "acceptance", done, gave_up, key)
        tally.trials, tally.gave_up, tally.injected = per_round, len(gave_up), sum(faults.injected.values())
        total.add(tally)
    return total


def main() -> None:
    """Run the chosen experiments on the chosen backends and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="file,s3,azblob")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument("--writers", type=int, default=32, help="contention: concurrent writer processes")
    parser.add_argument("--appends", type=int, default=50, help="contention: appends per writer on file")
    parser.add_argument("--cloud-appends", type=int, default=5, help="contention: appends per writer on S3 and Azure")
    parser.add_argument("--kill", type=int, default=100, help="kill trials on file")
    parser.add_argument("--cloud-kill", type=int, default=60, help="kill trials on S3 and Azure")
    parser.add_argument("--ops", type=int, default=100, help="operations per proxy experiment")
    parser.add_argument("--seed", type=int, default=22)
    args = parser.parse_args()
    backends_wanted = [b for b in args.backends.split(",") if b]
    experiments = [e for e in args.experiments.split(",") if e]
    for name, value in FAKE_AWS.items():
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)
    rows: list[tuple[str, str, Tally, float]] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        os.environ["AWS_CONFIG_FILE"] = str(work / "no-aws-config")
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(work / "no-aws-credentials")
        backends = Backends(stack, work)
        key = signing_key(work)
        rng = random.Random(args.seed)
        for experiment in experiments:
            for backend in backends_wanted:
                runs: dict[str, tuple[str, Callable[[], Tally]]] = {
                    "contention": (
                        f"{args.writers} writers x {args.appends if backend == 'file' else args.cloud_appends} appends",
                        lambda: run_contention(backends, backend, key, args.writers, args.appends if backend == "file" else args.cloud_appends),
                    ),
                    "kill": ("kill -9 mid-append, then rerun", lambda: run_kill(backends, backend, key, args.kill if backend == "file" else args.cloud_kill, rng)),
                }
                if experiment in PROXY_FAULTS:
                    if backend == "file":
                        continue  # no network between a writer and a directory
                    label = PROXY_FAULTS[experiment][0]
                    runs[experiment] = (label, lambda: run_proxy(backends, backend, key, experiment, args.ops, args.seed))
                label, run = runs[experiment]
                started = time.monotonic()
                tally = run()
                elapsed = time.monotonic() - started
                rows.append((label, backend, tally, elapsed))
                problems += [f"{label} / {backend}: {p}" for p in tally.problems]
                note = f"  (killed while running: {tally.interrupted}, with records stored: {tally.exposed})" if experiment == "kill" else ""
                note += f"  (faults injected: {tally.injected})" if experiment in PROXY_FAULTS else ""
                print(f"  {label:<40} {backend:<7} {tally.trials:>6} trials  {elapsed:6.1f}s{note}", file=sys.stderr, flush=True)
    print("| experiment | backend | trials | lost | duplicated | gave up | repaired |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, backend, t, _ in rows:
        print(f"| {label} | {backend} | {t.trials} | {t.lost} | {t.duplicated} | {t.gave_up} | {t.repaired} |")
    print()
    for label, backend, t, elapsed in rows:
        details = [f"{elapsed:.0f} s"]
        if t.repaired:
            details.append(f"repaired: {t.temporaries} temporary file(s), {t.repaired - t.temporaries} index(es)")
        if t.injected:
            details.append(f"{t.injected} faults injected")
        if label.startswith("kill"):
            details.append(f"{t.interrupted} killed while running, {t.exposed} with some of their records stored")
        print(f"  {label} / {backend}: {'; '.join(details)}")
    if problems:
        print(f"\n{len(problems)} other broken invariant(s):")
        for p in problems[:50]:
            print(f"  - {p}")
    else:
        print("\nevery other invariant held after every trial (contiguous seqs, verify green, the gate finds every deploy,")
        print("every locator and checkpoint present after repair, no temporary file left)")


if __name__ == "__main__":
    main()
