"""Functions run in child processes by the concurrency tests (importable by multiprocessing's spawn)."""

from __future__ import annotations

from typing import Any


def append_many(url: str, environment: str, writer: int, count: int, start: Any) -> list[int]:
    """Wait for the start signal, then append `count` records to the log; return the seqs won."""
    from mxinfra.governance import ActivityLog, open_store

    log = ActivityLog(open_store(url))
    start.wait()
    seqs = []
    for i in range(count):
        record = log.append(
            environment,
            actor=f"process-{writer}",
            action="deploy",
            package_sha256="ab" * 32,
            package_version=None,
            changes={"writer": writer, "n": i},
        )
        seqs.append(record.seq)
    return seqs
