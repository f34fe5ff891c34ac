"""The activity log on every backend: append-only, hash-chained, safe under concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mxinfra.errors import UserError
from mxinfra.governance import ActivityLog, ActivityRecord, Store
from mxinfra.governance.activity import GENESIS

SHA = "ab" * 32


def add(log: ActivityLog, env: str = "production", action: str = "deploy", **changes: object) -> ActivityRecord:
    return log.append(
        env, actor="alice", action=action, package_sha256=SHA, package_version="1.4.2", changes=dict(changes)
    )


def test_append_and_read_back(store: Store) -> None:
    log = ActivityLog(store)
    first = log.append(
        "production",
        actor="alice",
        action="deploy",
        package_sha256=SHA,
        package_version="1.4.2",
        changes={"package": {"before": None, "after": SHA}},
        time="2025-05-01T10:00:00Z",
    )
    second = add(log, action="scale", instances={"before": 1, "after": 2})
    assert first.seq == 1 and second.seq == 2
    assert first.prev_hash == GENESIS
    assert second.prev_hash == first.hash
    assert first.hash == first.computed_hash()
    assert first.time == "2025-05-01T10:00:00Z"
    assert second.time.endswith("Z")
    assert log.records("production") == [first, second]
    assert first.idempotency_key and second.idempotency_key and first.idempotency_key != second.idempotency_key
    assert store.list("activity/") == sorted([
        "activity/production/000000000001.json",
        "activity/production/000000000002.json",
        # each record's locator under its idempotency key, the deploy's under its package hash (the scale
        # record has none), and the tail hint
        f"activity/production/by-key/{first.idempotency_key}/000000000001.json",
        f"activity/production/by-key/{second.idempotency_key}/000000000002.json",
        f"activity/production/by-package/{SHA}/000000000001.json",
        "activity/production/head.json",
    ])
    assert json.loads(store.get("activity/production/head.json")) == {"seq": 2}
    assert log.verify("production") == []
    assert log.records("nowhere") == [] and log.verify("nowhere") == []


def test_environments_and_last_deploy(store: Store) -> None:
    log = ActivityLog(store)
    assert log.environments() == []
    assert log.last_deploy("production") is None
    add(log, "acceptance")
    deploy = add(log, "production", n=1)
    add(log, "production", action="settings", constants={"before": {}, "after": {"A.B": "1"}})
    assert log.environments() == ["acceptance", "production"]
    assert log.last_deploy("production") == deploy
    # chains are per environment
    assert log.records("acceptance")[0].prev_hash == GENESIS


def test_changes_must_be_json(store: Store) -> None:
    with pytest.raises(TypeError):
        add(ActivityLog(store), bad=object())
    assert store.list("") == []


@pytest.mark.parametrize("env", ["", "a/b", "../x", "has space"])
def test_invalid_environment_names(store: Store, env: str) -> None:
    with pytest.raises(UserError, match="environment name"):
        add(ActivityLog(store), env)


# --------------------------------------------------------------------------------------------
# tampering


def _seed(log: ActivityLog, n: int = 5) -> None:
    for i in range(n):
        add(log, n=i)


def _raw(store: Store, seq: int) -> dict:
    return json.loads(store.get(ActivityLog.key("production", seq)) or b"null")


def test_an_edited_record_is_named(store: Store) -> None:
    log = ActivityLog(store)
    _seed(log)
    data = _raw(store, 3)
    data["actor"] = "mallory"
    store.put(ActivityLog.key("production", 3), json.dumps(data).encode())
    problems = log.verify("production")
    assert len(problems) == 1
    assert "seq 3 (activity/production/000000000003.json): content was edited" in problems[0]


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link(store: Store) -> None:
    from mxinfra.governance.activity import record_hash

    log = ActivityLog(store)
    _seed(log)
    data = _raw(store, 3)
    data["package_sha256"] = "cd" * 32
    data["hash"] = record_hash(data)
    store.put(ActivityLog.key("production", 3), json.dumps(data).encode())
    problems = log.verify("production")
    assert problems and all("seq 4 (activity/production/000000000004.json)" in p for p in problems)
    assert "prev_hash mismatch" in problems[0]


def test_a_deleted_record_is_named(store: Store) -> None:
    log = ActivityLog(store)
    _seed(log)
    store.delete(ActivityLog.key("production", 3))
    problems = log.verify("production")
    assert problems == [
        "seq 4 (activity/production/000000000004.json): record(s) seq 3 before it are missing (deleted)"
    ]


def test_swapped_records_are_named(store: Store) -> None:
    log = ActivityLog(store)
    _seed(log)
    two, three = store.get(ActivityLog.key("production", 2)), store.get(ActivityLog.key("production", 3))
    assert two and three
    store.put(ActivityLog.key("production", 2), three)
    store.put(ActivityLog.key("production", 3), two)
    problems = "\n".join(log.verify("production"))
    assert "seq 2 (activity/production/000000000002.json): holds seq 3" in problems
    assert "seq 3 (activity/production/000000000003.json): holds seq 2" in problems
    assert "reordered" in problems


def test_an_unreadable_record(store: Store) -> None:
    log = ActivityLog(store)
    _seed(log, 3)
    store.put(ActivityLog.key("production", 2), b"{garbage")
    problems = log.verify("production")
    assert problems[0].startswith("seq 2 (activity/production/000000000002.json): is not a valid record")
    with pytest.raises(UserError, match="000000000002.json .seq 2. is not a valid record"):
        log.records("production")
    # a damaged tail never stops a deployment from being recorded
    store.put(ActivityLog.key("production", 3), b"{garbage")
    assert add(log).seq == 4


# --------------------------------------------------------------------------------------------
# concurrency

THREADS, PER_THREAD = 8, 10
PROCESSES, PER_PROCESS = 4, 10


def _check_complete(log: ActivityLog, env: str, writers: int, per_writer: int, actor: str) -> None:
    records = log.records(env)
    assert [r.seq for r in records] == list(range(1, writers * per_writer + 1))
    assert log.verify(env) == []
    got = sorted((r.changes["writer"], r.changes["n"]) for r in records)
    assert got == [(w, n) for w in range(writers) for n in range(per_writer)]  # nothing lost, nothing doubled
    assert {r.actor for r in records} == {f"{actor}-{w}" for w in range(writers)}


def test_concurrent_threads_lose_nothing(store: Store) -> None:
    log = ActivityLog(store)
    barrier = threading.Barrier(THREADS)

    def writer(w: int) -> list[int]:
        barrier.wait()
        return [
            log.append(
                "production",
                actor=f"thread-{w}",
                action="deploy",
                package_sha256=SHA,
                package_version=None,
                changes={"writer": w, "n": i},
            ).seq
            for i in range(PER_THREAD)
        ]

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        won = [seq for seqs in pool.map(writer, range(THREADS)) for seq in seqs]
    assert sorted(won) == list(range(1, THREADS * PER_THREAD + 1))
    _check_complete(log, "production", THREADS, PER_THREAD, "thread")


def test_concurrent_processes_lose_nothing(store_url: str, store: Store) -> None:
    from workers import append_many

    ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs threads and sockets
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(PROCESSES) as pool:
            jobs = [pool.apply_async(append_many, (store_url, "production", w, PER_PROCESS, start)) for w in range(PROCESSES)]
            time.sleep(0.5)  # let every child import and open its store, so that they really start together
            start.set()
            won = [seq for job in jobs for seq in job.get(timeout=300)]
    assert sorted(won) == list(range(1, PROCESSES * PER_PROCESS + 1))
    _check_complete(ActivityLog(store), "production", PROCESSES, PER_PROCESS, "process")
