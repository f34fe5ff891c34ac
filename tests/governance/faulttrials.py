"""Fault trials of the activity log and the invariants checked after each (tests/governance/test_faults.py
runs a few per backend; bench/bench_faults.py many, and prints the table).

Every trial drives the product's own code, ActivityProvider (as `pulumi up` calls it) and ActivityLog.append
(as a CLI action does), against a real store: a directory, the moto S3 server or Azurite, the latter two
optionally behind faultproxy.py. Each logical operation deploys a package of its own, so the records of an
operation are counted by package hash, whatever the code under test does with idempotency keys.

After a trial `check` asserts nothing but reports:
    lost        operations whose writer reported success (or was rerun to success) without a record
    duplicated  records beyond the first of an operation
    gave up     appends that raised (StoreError) instead of recording
    repaired    side indexes missing after the trial (`ActivityLog.repair` writes them) and temporary files of
                killed writers it removed
    problems    every broken invariant: a gap in the seqs, a side index still missing after repair, a
                temporary file left, `verify` not green, a deploy the gate (trusted_deploys, and
                deploy_evidence by locator) does not find, a record of no known operation
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from faultworker import APP, package

from mxinfra.governance import ActivityLog, ActivityRecord, Store, StoreError, open_store
from mxinfra.governance.activity import CHECKPOINT_EVERY
from mxinfra.governance.promotion import trusted_deploys
from mxinfra.governance.record import ActivityProvider
from mxinfra.governance.signing import LocalKeySigner, Trust, fingerprint, generate_key_file
from mxinfra.governance.store import retry_transient

WORKER = Path(__file__).with_name("faultworker.py")


@dataclass
class Tally:
    """The outcome of one or more trials of an experiment on a backend."""

    trials: int = 0
    lost: int = 0
    duplicated: int = 0
    gave_up: int = 0
    repaired: int = 0
    problems: list[str] = field(default_factory=list)
    temporaries: int = 0  # of `repaired`: temporary files of killed writers removed
    interrupted: int = 0  # kill trials: the writer was still running when it was killed (else it had finished)
    exposed: int = 0  # kill trials: some of the killed writer's records were stored (a rerun could double them)
    injected: int = 0  # proxy trials: faults the proxy injected

    def add(self, other: Tally) -> None:
        """Accumulate another trial's outcome."""
        self.trials += other.trials
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.gave_up += other.gave_up
        self.repaired += other.repaired
        self.problems += other.problems
        self.temporaries += other.temporaries
        self.interrupted += other.interrupted
        self.exposed += other.exposed
        self.injected += other.injected


def signing_key(directory: Path) -> Path:
    """A P-256 key for the writers of a trial (the gate trusts it)."""
    return generate_key_file(directory / "writer.pem")


def trust_of(key: Path) -> Trust:
    """The gate's trust in `key`."""
    return Trust(frozenset({fingerprint(LocalKeySigner(key).public_key_der())}), (f"file:{key}",))


def temporaries(url: str, environment: str) -> list[str]:
    """Hidden temporary files under a file:// log (none elsewhere: cloud stores write in one request)."""
    if not url.startswith("file://"):
        return []
    root = Path(url[len("file://") :]) / "activity" / environment
    return sorted(str(p) for p in root.rglob(".*.tmp")) if root.exists() else []


def side_indexes(environment: str, records: list[ActivityRecord]) -> list[str]:
    """The store keys of every locator and checkpoint the records should have."""
    wanted = []
    for r in records:
        if r.idempotency_key:
            wanted.append(ActivityLog.request_key(environment, r.idempotency_key, r.seq))
        if r.action == "deploy":
            wanted.append(ActivityLog.index_key(environment, r.package_sha256, r.seq))
        if r.seq % CHECKPOINT_EVERY == 0:
            wanted.append(ActivityLog.checkpoint_key(environment, r.seq))
    return wanted


def check(url: str, environment: str, expected: set[str], allowed: set[str], key: Path) -> Tally:
    """Count lost and duplicated operations in a log, repair it, and report every broken invariant.

    `expected` are the package hashes of operations that must have exactly one record; `allowed` those
    that may have at most one (an append that gave up: nothing of it may be half there either)."""
    store = open_store(url)
    log = ActivityLog(store)
    tally = Tally()
    records = log.records(environment)
    counts = Counter(r.package_sha256 for r in records)
    tally.lost = sum(1 for sha in expected if counts[sha] == 0)
    tally.duplicated = sum(c - 1 for c in counts.values() if c > 1)
    unknown = set(counts) - expected - allowed
    if unknown:
        tally.problems.append(f"{environment}: records of no operation: {sorted(unknown)[:3]}")
    if [r.seq for r in records] != list(range(1, len(records) + 1)):
        tally.problems.append(f"{environment}: seqs are not contiguous: {[r.seq for r in records]}")
    wanted = side_indexes(environment, records)
    listed = set(store.list(f"activity/{environment}/"))
    missing = [k for k in wanted if k not in listed]  # before anything (the gate too) heals them
    trust = trust_of(key)
    problems = log.verify(environment, signed=True, trust=trust, app=APP)
    tally.problems += [f"{environment}: verify: {p}" for p in problems]
    deploys = [r for r in records if r.action == "deploy"]
    # the gate as a plan runs it: from the newest trusted checkpoint, then each package's evidence
    gate = ActivityLog(store)
    tail, problems = gate.verify_recent(environment, trust=trust, app=APP)
    tally.problems += [f"{environment}: gate: {p}" for p in problems]
    missed = [r.seq for r in deploys if gate.deploy_evidence(environment, r.package_sha256, artifact=None, trust=trust, app=APP, tail=tail)[0] is None]
    if missed:
        tally.problems.append(f"{environment}: the gate does not find the deploys at seqs {missed}")
    trusted = {r.seq for r in trusted_deploys(log, environment, trust, APP)}
    if trusted != {r.seq for r in deploys}:
        tally.problems.append(f"{environment}: trusted_deploys misses seqs {sorted({r.seq for r in deploys} - trusted)}")
    done = ActivityLog(store, signer=LocalKeySigner(key)).repair(environment)
    tally.repaired, tally.temporaries = len(missing) + done.temporaries, done.temporaries
    listed = set(store.list(f"activity/{environment}/"))
    tally.problems += [f"{environment}: {k} missing after repair" for k in wanted if k not in listed]
    left = temporaries(url, environment)
    if left:
        tally.problems.append(f"{environment}: temporary files left after repair: {left[:3]}")
    # after repair the locators alone must lead the gate to every deploy (no records read beforehand)
    fresh = ActivityLog(store)
    missed = [r.seq for r in deploys if fresh.deploy_evidence(environment, r.package_sha256, artifact=None, trust=trust, app=APP, tail=tail)[0] is None]
    if missed:
        tally.problems.append(f"{environment}: after repair the gate's locators miss seqs {missed}")
    return tally


# -- writers


def cli_writer(url: str, environment: str, name: str, count: int, key: Path, done: set[str], gave_up: set[str], start: threading.Barrier | None = None, store: Store | None = None) -> None:
    """Append `count` records as a CLI action does (a new operation per call), noting what succeeded."""
    store = store or retry_transient(lambda: open_store(url), budget=60)
    log = ActivityLog(store, signer=LocalKeySigner(key))
    if start is not None:
        start.wait()
    for i in range(count):
        sha = package(name, i)
        try:
            log.append(environment, actor=name, action="deploy", package_sha256=sha, package_version=None, changes={"op": f"{name}-{i}"}, app=APP)
            done.add(sha)
        except StoreError:
            gave_up.add(sha)


def provider_writer(url: str, environment: str, name: str, count: int, key: Path, done: set[str], gave_up: set[str]) -> None:
    """Run `count` operations of the activity resource's provider (a create, then updates), as the engine does."""
    from faultworker import provider_props

    provider = ActivityProvider()
    outs = None
    for i in range(count):
        news = provider_props(url, environment, name, i, key)
        try:
            outs = provider.create(news).outs if outs is None else provider.update(f"activity-{environment}", outs, news).outs
            done.add(news["packageSha256"])
        except StoreError:
            gave_up.add(news["packageSha256"])
            return  # the engine stops the resource's operations at the first failure


# -- experiments


def contention_trial(url: str, environment: str, key: Path, writers: int, per_writer: int) -> Tally:
    """`writers` concurrent writers (threads) append `per_writer` records each. They share one store client
    (the SDK clients are thread-safe; 32 of them would cost seconds of CPU to create, not contention)."""
    done: set[str] = set()
    gave_up: set[str] = set()
    start = threading.Barrier(writers)
    store = open_store(url)
    with ThreadPoolExecutor(max_workers=writers) as pool:
        jobs = [pool.submit(cli_writer, url, environment, f"w{w}", per_writer, key, done, gave_up, start, store) for w in range(writers)]
        for job in jobs:
            job.result()
    tally = check(url, environment, done, gave_up, key)
    tally.trials = writers * per_writer
    tally.gave_up = len(gave_up)
    return tally


def process_contention_trial(url: str, environment: str, key: Path, writers: int, per_writer: int, env: dict[str, str] | None = None) -> Tally:
    """As contention_trial, with each writer a process of its own (faultworker.py log), all started at once."""
    start = key.parent / f"start-{environment}-{time.monotonic_ns()}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "log", url, environment, f"p{w}", str(per_writer), str(key), str(start)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for w in range(writers)
    ]  # fmt: skip
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready" (or nothing, if it failed: communicate below tells)
    start.touch()
    outputs = [p.communicate(timeout=2400) for p in procs]
    done = {package(f"p{w}", int(line.split()[0])) for w, (out, _) in enumerate(outputs) for line in out.splitlines() if line[:1].isdigit()}
    allowed = {package(f"p{w}", i) for w in range(writers) for i in range(per_writer)} - done
    tally = check(url, environment, done, allowed, key)
    tally.trials = writers * per_writer
    tally.gave_up = sum(1 for p in procs if p.returncode == 3)  # a writer stops at its first give-up
    tally.problems += [f"writer p{w} failed: {err.strip()[-300:]}" for w, (p, (_, err)) in enumerate(zip(procs, outputs)) if p.returncode not in (0, 3)]
    return tally


def calibrate(url: str, key: Path, ops: int, env: dict[str, str] | None = None) -> float:
    """Seconds the provider writer takes from "ready" to its last operation (a kill window of that length
    lands in its appends)."""
    argv = [sys.executable, str(WORKER), "provider", url, "calibration", "up", str(ops), str(key)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    proc.stdout.readline()
    started = time.monotonic()
    for _ in range(ops):
        proc.stdout.readline()
    elapsed = time.monotonic() - started
    _, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"the writer failed: {err.strip()[-400:]}")
    return elapsed


def kill_trial(url: str, environment: str, key: Path, rng: random.Random, *, ops: int, window: float, background: int, env: dict[str, str] | None = None) -> Tally:
    """A `pulumi up` (faultworker.py provider, `ops` operations) is killed with SIGKILL at a random moment
    while another writer appends to the same environment, then runs again to completion; then check."""
    done: set[str] = set()
    gave_up: set[str] = set()
    argv = [sys.executable, str(WORKER), "provider", url, environment, "up", str(ops), str(key)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    ready = proc.stdout.readline().strip()
    other = threading.Thread(target=cli_writer, args=(url, environment, "cli", background, key, done, gave_up))
    other.start()
    if ready == "ready":
        time.sleep(rng.uniform(0.0, window))
    running = proc.poll() is None
    proc.kill()  # SIGKILL: no cleanup of any kind
    proc.communicate()
    ours = {package("up", i) for i in range(ops)}
    stored = [r for r in ActivityLog(open_store(url)).records(environment) if r.package_sha256 in ours]
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    other.join()
    problems = []
    if rerun.returncode == 0:
        done |= ours
    else:
        gave_up |= ours
        if rerun.returncode != 3:
            problems.append(f"{environment}: the rerun failed ({rerun.returncode}): {rerun.stderr.strip()[-400:]}")
    tally = check(url, environment, done, gave_up, key)
    tally.trials, tally.interrupted, tally.exposed = 1, int(running), int(bool(stored))
    tally.gave_up = (rerun.returncode == 3) + len(gave_up - ours)
    tally.problems = problems + tally.problems
    return tally


def mixed_writers(url: str, environment: str, key: Path, *, provider_ops: int, cli_writers: int, per_writer: int) -> tuple[set[str], set[str]]:
    """A `pulumi up` (provider operations) and CLI actions write one environment at once (threads), through
    whatever faults the store behind `url` injects: the package hashes (recorded, given up)."""
    done: set[str] = set()
    gave_up: set[str] = set()
    jobs: list[Callable[[], None]] = [lambda: provider_writer(url, environment, "up", provider_ops, key, done, gave_up)]
    jobs += [lambda w=w: cli_writer(url, environment, f"cli{w}", per_writer, key, done, gave_up) for w in range(cli_writers)]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for job in [pool.submit(j) for j in jobs]:
            job.result()
    return done, gave_up

