"""A real writer process for the fault trials: `python faultworker.py MODE URL ENV NAME COUNT KEY.pem [START]`.

    provider   runs COUNT operations of the activity resource's dynamic provider, as `pulumi up` would:
               a create, then updates, each deploying another package, each update's olds the outputs
               of the operation before. Run again after a crash it replays them from the start with the
               same inputs, like the same `pulumi up` whose state never saw the crashed operation.
    log        appends COUNT records with ActivityLog.append as a CLI action does (a new key per call),
               once the file START exists if given (so that many writers start at once).

Each operation deploys a package of its own (`package(NAME, i)`), so a checker can count the records of
each logical operation. Prints "ready" once the store is open, then one line per finished operation.
Exit 0 when all were recorded; 3 with the message when an append gave up (StoreError).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

APP = "orders"


def package(name: str, i: int) -> str:
    """The package hash operation i of writer `name` deploys (one per operation: the gate looks each up)."""
    return hashlib.sha256(f"{name}-{i}".encode()).hexdigest()


def provider_props(url: str, environment: str, name: str, i: int, key: Path) -> dict[str, Any]:
    """The activity resource's inputs for operation i (only the package and the op name change)."""
    return {
        "environment": environment,
        "app": APP,
        "signer": f"file:{key}",
        "repository": url,
        "packageSha256": package(name, i),
        "packageVersion": f"1.0.{i}",
        "packagePath": "",
        "artifact": None,
        "settingsDigest": f"settings-{name}-{i}",
        "instances": 1,
        "grantsDigest": "g1",
    }


def warm_up(url: str, key: Path) -> None:
    """Import and load what the first append needs, so that a kill timed from "ready" lands in appends."""
    from mxinfra.governance import ActivityLog, open_store  # noqa: F401
    from mxinfra.governance.signing import LocalKeySigner

    LocalKeySigner(key).signature("0" * 64)
    open_store(url).exists("activity/warm-up")


def run_provider(url: str, environment: str, name: str, count: int, key: Path) -> None:
    """Operation 0 is a create, the rest updates, as the engine calls the provider."""
    from mxinfra.governance.record import ActivityProvider

    provider = ActivityProvider()
    warm_up(url, key)
    print("ready", flush=True)
    outs: dict[str, Any] | None = None
    for i in range(count):
        news = provider_props(url, environment, name, i, key)
        if outs is None:
            outs = provider.create(news).outs
        else:
            outs = provider.update(f"activity-{environment}", outs, news).outs
        print(f"{i} {outs['lastRecordSeq']}", flush=True)


def run_log(url: str, environment: str, name: str, count: int, key: Path, start: Path | None = None) -> None:
    """CLI-like appends: each call its own operation, signed with `key`; with `start`, once that file exists."""
    import time

    from mxinfra.governance import ActivityLog, open_store
    from mxinfra.governance.signing import LocalKeySigner

    log = ActivityLog(open_store(url), signer=LocalKeySigner(key))
    warm_up(url, key)
    print("ready", flush=True)
    while start is not None and not start.exists():
        time.sleep(0.005)  # every writer waits for the last one to be ready: they all start at once
    for i in range(count):
        record = log.append(
            environment,
            actor=name,
            action="deploy",
            package_sha256=package(name, i),
            package_version=None,
            changes={"op": f"{name}-{i}"},
            app=APP,
        )
        print(f"{i} {record.seq}", flush=True)


def main(argv: list[str]) -> int:
    """Run one writer; the exit code says whether every operation was recorded."""
    from mxinfra.governance import StoreError

    mode, url, environment, name, count, key, *start = argv
    try:
        if mode == "provider":
            run_provider(url, environment, name, int(count), Path(key))
        else:
            run_log(url, environment, name, int(count), Path(key), Path(start[0]) if start else None)
    except StoreError as exc:
        print(f"gave up: {exc}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
