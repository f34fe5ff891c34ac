"""Benchmark: the promotion gate's cost against the source environment's history, on a real S3 (moto) server.

    .venv/bin/python bench/bench_gate.py [--records 10,1000,10000] [--repeat 5]

Starts a moto server on loopback (tests/governance/servers.py). For each N it builds an acceptance log of
N signed deploy records (each of another package, except the oldest one, seq 1: the package production
names, the worst case for anything that scans) in a bucket of its own, then times `mxinfra plan -s
production --json` of a gated stack (requirePromotionFrom: acceptance, mxinfra:signing naming the
trusted key) in-process, the N's interleaved round by round so that they run side by side under the
same conditions. It prints the median and minimum per N, the ratio of each median to the smallest N's,
and the store round trips (S3 calls) of one plan; then it grows the largest log to the worst case (one
record short of its next checkpoint, the most the gate ever reads) and measures it against the smallest
again. Every plan is cold (the local cache of verified heads is cleared first, as on a fresh CI runner)
except in the last table, where the cache is kept. Then it times `activity append` against each log and
counts its round trips. Prints what it measured; asserts nothing.

The logs are written with the library's own `ActivityLog.append` into an in-memory store (fast) and
uploaded object by object, so the bucket holds exactly what appends would have written (records, package
locators, signed checkpoints, the head hint). The records are signed with a local P-256 key: the gate
verifies signatures locally whichever custody the key has (KMS signing costs only the writer).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "governance"))

from servers import FAKE_AWS, moto_server  # noqa: E402

from mxinfra.mda import sha256_file  # noqa: E402

MDA = ROOT / "examples" / "orders" / "orders-1.4.2.mda"


def memory_store() -> object:
    """A dict-backed Store with the same conditional-create contract (only to build the logs quickly)."""
    from mxinfra.governance.store import Store

    class MemoryStore(Store):
        url = "memory://bench"

        def __init__(self) -> None:
            self.objects: dict[str, bytes] = {}

        def get(self, key: str) -> bytes | None:
            return self.objects.get(key)

        def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
            if if_absent and key in self.objects:
                return False
            self.objects[key] = data
            return True

        def put_file(self, key, path, *, if_absent=False, progress=None):  # type: ignore[no-untyped-def]
            return self.put(key, Path(path).read_bytes(), if_absent=if_absent)

        def download(self, key, dest, *, progress=None):  # type: ignore[no-untyped-def]
            Path(dest).write_bytes(self.objects[key])

        def list(self, prefix: str) -> list[str]:
            return sorted(k for k in self.objects if k.startswith(prefix))

        def exists(self, key: str) -> bool:
            return key in self.objects

        def delete(self, key: str) -> None:
            self.objects.pop(key, None)

        def identity(self) -> str:
            return "bench"

    return MemoryStore()


def build_log(key_path: Path, count: int, package: str) -> dict[str, bytes]:
    """The objects of an acceptance log of `count` signed deploys (the oldest deploys `package`)."""
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.signing import LocalKeySigner

    store = memory_store()
    log = ActivityLog(store, signer=LocalKeySigner(key_path))  # type: ignore[arg-type]
    for i in range(1, count + 1):
        sha = package if i == 1 else f"{i:064x}"
        log.append("acceptance", actor="ci", action="deploy", package_sha256=sha, package_version=None,
                   changes={"packageSha256": {"from": None, "to": sha}}, app="orders")
    return dict(store.objects)  # type: ignore[attr-defined]


def upload(objects: dict[str, bytes], bucket: str) -> int:
    import boto3

    s3 = boto3.client("s3")

    def put(item: tuple[str, bytes]) -> None:
        s3.put_object(Bucket=bucket, Key="repo/" + item[0], Body=item[1])

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put, objects.items()))
    return len(objects)


def make_project(directory: Path, url: str, key_path: Path) -> None:
    (directory / "stacks").mkdir(parents=True)
    (directory / "Pulumi.yaml").write_text("name: orders\nruntime: python\nstackConfigDir: stacks\n")
    (directory / "__main__.py").write_text((ROOT / "__main__.py").read_text())
    config = {
        "mxinfra:app": {"name": "orders", "package": str(MDA), "target": "fake"},
        "mxinfra:repository": url,
        "mxinfra:environments": {"production": {"requirePromotionFrom": "acceptance"}},
        "mxinfra:signing": {"signers": {"production": f"file:{key_path}"}, "trustedSigners": {"acceptance": [f"file:{key_path}"]}},
    }
    (directory / "stacks" / "Pulumi.production.yaml").write_text(yaml.safe_dump({"config": config}))


class CallCounter:
    """Counts the S3 store's calls (each one round trip) while installed."""

    METHODS = ("get", "put", "list", "exists")

    def __init__(self) -> None:
        from mxinfra.governance.store_s3 import S3Store

        self.cls, self.calls, self.saved = S3Store, 0, {}

    def __enter__(self) -> CallCounter:
        for name in self.METHODS:
            original = getattr(self.cls, name)
            self.saved[name] = original

            def counted(store, *args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
                self.calls += 1
                return _original(store, *args, **kwargs)

            setattr(self.cls, name, counted)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self.saved.items():
            setattr(self.cls, name, original)


def time_plan(directory: Path, *, cold: bool = True) -> float:
    """One plan; cold (the default) forgets the heads this machine verified, as a fresh CI runner would."""
    import shutil

    from mxinfra.cli import main

    if cold:
        shutil.rmtree(Path(os.environ["XDG_CACHE_HOME"]) / "mxinfra" / "verified", ignore_errors=True)
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["plan", "-s", "production", "-C", str(directory), "--json"])
    elapsed = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"plan of {directory} failed with exit {rc}:\n{err.getvalue()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="10,1000,10000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(n) for n in args.records.split(",")]

    from fake_target import target

    from mxinfra.governance.activity import CHECKPOINT_EVERY, ActivityLog
    from mxinfra.governance.signing import LocalKeySigner, generate_key_file
    from mxinfra.governance.store import open_store
    from mxinfra.target import register_target

    register_target(target)
    package = sha256_file(MDA)
    with tempfile.TemporaryDirectory() as tmp, moto_server(Path(tmp)) as endpoint:
        scratch = Path(tmp)
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS"):
            os.environ.pop(name, None)
        os.environ.update(FAKE_AWS)
        os.environ["AWS_CONFIG_FILE"] = str(scratch / "no-aws-config")
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(scratch / "no-aws-credentials")
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        os.environ["XDG_CACHE_HOME"] = str(scratch / "cache")
        import boto3

        key_path = generate_key_file(scratch / "acceptance-signer.pem")
        projects: dict[int, Path] = {}
        urls: dict[int, str] = {}
        print(f"moto S3 server {endpoint}; checkpoint every {CHECKPOINT_EVERY} records")
        for n in sizes:
            started = time.perf_counter()
            root = build_log(key_path, n, package)
            bucket = f"bench-{n}-{uuid.uuid4().hex[:8]}"
            boto3.client("s3").create_bucket(Bucket=bucket)
            objects = upload(root, bucket)
            urls[n] = f"s3://{bucket}/repo"
            projects[n] = scratch / f"project-{n}"
            make_project(projects[n], urls[n], key_path)
            print(f"  built {n:>6} records ({objects} objects) in {time.perf_counter() - started:.1f}s")

        for n in sizes:  # warm-up: imports, the MDA and the first connection are paid once, not by the first N
            time_plan(projects[n])
        times: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(args.repeat):
            for n in sizes:  # side by side: every round plans every size
                times[n].append(time_plan(projects[n]))
        calls: dict[int, int] = {}
        for n in sizes:
            with CallCounter() as counter:
                time_plan(projects[n])
            calls[n] = counter.calls

        def table(title: str, rows: list[tuple[str, list[float], int, int]]) -> None:
            base = statistics.median(rows[0][1])
            print(f"\n{title} (median and min of {args.repeat}; S3 calls of one plan, which prepares the stack twice):")
            print(f"  {'records':>12} {'since checkpoint':>17} {'median':>9} {'min':>9} {'ratio':>7} {'S3 calls':>9}")
            for label, ts, since, count in rows:
                med = statistics.median(ts)
                print(f"  {label:>12} {since:>17} {med * 1000:>7.0f}ms {min(ts) * 1000:>7.0f}ms {med / base:>6.2f}x {count:>9}")

        table("gated production plan", [(str(n), times[n], n % CHECKPOINT_EVERY, calls[n]) for n in sizes])

        # the worst case: the largest log with CHECKPOINT_EVERY - 1 records since its newest checkpoint,
        # again side by side with the smallest
        small, large = sizes[0], sizes[-1]
        signer = LocalKeySigner(key_path)
        grow = ActivityLog(open_store(urls[large]), signer=signer)
        extra = (CHECKPOINT_EVERY - 1) - large % CHECKPOINT_EVERY
        for i in range(extra % CHECKPOINT_EVERY):
            grow.append("acceptance", actor="bench", action="deploy", package_sha256=f"{large + i + 1:064x}", package_version=None, changes={}, app="orders")
        worst = large + extra % CHECKPOINT_EVERY
        again: dict[int, list[float]] = {small: [], large: []}
        for _ in range(args.repeat):
            for n in (small, large):
                again[n].append(time_plan(projects[n]))
        with CallCounter() as counter:
            time_plan(projects[large])
        table("worst case", [(str(small), again[small], small % CHECKPOINT_EVERY, calls[small]), (str(worst), again[large], worst % CHECKPOINT_EVERY, counter.calls)])

        # warm: this machine planned the stack before (its cache of verified heads is kept)
        warm: dict[int, list[float]] = {small: [], large: []}
        for _ in range(args.repeat):
            for n in (small, large):
                warm[n].append(time_plan(projects[n], cold=False))
        warm_calls = {}
        for n in (small, large):
            with CallCounter() as counter:
                time_plan(projects[n], cold=False)
            warm_calls[n] = counter.calls
        table("warm cache of verified heads", [(str(small), warm[small], small % CHECKPOINT_EVERY, warm_calls[small]), (str(worst), warm[large], worst % CHECKPOINT_EVERY, warm_calls[large])])

        print(f"\nactivity append against each log ({CHECKPOINT_EVERY} appends each, so each window holds one checkpoint):")
        for n in sizes:
            log = ActivityLog(open_store(urls[n]), signer=signer)
            per: list[float] = []
            with CallCounter() as counter:
                for i in range(CHECKPOINT_EVERY):
                    start = time.perf_counter()
                    log.append("acceptance", actor="bench", action="deploy", package_sha256=f"{n + 100 + i:064x}",
                               package_version=None, changes={}, app="orders")
                    per.append(time.perf_counter() - start)
            print(f"  {n:>8} records: {counter.calls / CHECKPOINT_EVERY:.1f} round trips per append (amortized), median {statistics.median(per) * 1000:.0f}ms")


if __name__ == "__main__":
    main()
