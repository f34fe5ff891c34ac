"""The activity log under faults (issue 22): exactly once, self-healing, and complete under contention.

Real stores (a directory, the moto S3 server, Azurite), real writer processes killed with SIGKILL, a
fault-injecting proxy in front of the emulators (faultproxy.py), and the product's own ActivityLog and
ActivityProvider. After each experiment the invariants of faulttrials.check: nothing lost, nothing
duplicated, no append given up, seqs contiguous, every locator and checkpoint present after repair, no
temporary file left, `verify` green, the gate finds every deploy. Bounded: a few trials per backend here;
bench/bench_faults.py runs many and prints the table.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Faults, fault_proxy
from faulttrials import Tally, calibrate, check, contention_trial, kill_trial, mixed_writers, signing_key, trust_of
from faultworker import APP, package, provider_props

from mxinfra.cli import main
from mxinfra.governance import ActivityLog, Store, StoreError, activity, open_store
from mxinfra.governance.activity import CHECKPOINT_EVERY
from mxinfra.governance.record import ActivityProvider
from mxinfra.governance.signing import LocalKeySigner, dev_signer

ENV = "acceptance"
KILL_TRIALS = {"file": 4, "s3": 2, "azblob": 2}


def clean(tally: Tally) -> tuple[int, int, int, list[str]]:
    """What must be all zero and empty after any experiment."""
    return tally.lost, tally.duplicated, tally.gave_up, tally.problems


@contextlib.contextmanager
def behind_proxy(cloud: str, make_url: Any, monkeypatch: pytest.MonkeyPatch, faults: Faults) -> Iterator[str]:
    """A fresh repository on `cloud` whose every request goes through a fault proxy; yields its URL."""
    url = make_url(cloud)  # created directly on the emulator, which also points the SDK at it
    if cloud == "s3":
        upstream = os.environ["AWS_ENDPOINT_URL"]
        with fault_proxy(upstream, "s3", faults) as proxy:
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy)
            yield url
        return
    conn = os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    endpoint = next(p.split("=", 1)[1] for p in conn.split(";") if p.startswith("BlobEndpoint="))
    upstream = endpoint.rsplit("/", 1)[0]
    with fault_proxy(upstream, "azure", faults) as proxy:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn.replace(upstream, proxy))
        yield url


# --------------------------------------------------------------------------------------------
# lost answers, dropped connections, 503s: the fault proxy in front of moto and Azurite


@pytest.mark.parametrize("cloud", ["s3", "azblob"])
def test_a_write_the_store_kept_but_whose_answer_was_lost_is_recorded_once(cloud: str, make_url, monkeypatch, tmp_path: Path) -> None:
    """A 500 or a dropped connection after the commit: the SDK retries, the conditional create then fails,
    and the appender must recognise the record at that seq as its own instead of appending it again."""
    key = signing_key(tmp_path)
    faults = Faults(seed=22, error_after_commit=0.25, drop_after_commit=0.25)
    with behind_proxy(cloud, make_url, monkeypatch, faults) as url:
        done, gave_up = mixed_writers(url, ENV, key, provider_ops=3, cli_writers=2, per_writer=2)
        faults.clear()
        tally = check(url, ENV, done, gave_up, key)
    assert faults.injected["error_after_commit"] >= 2 and faults.injected["drop_after_commit"] >= 2, faults.injected
    assert len(done) == 7 and not gave_up
    assert clean(tally) == (0, 0, 0, [])


@pytest.mark.parametrize("cloud", ["s3", "azblob"])
def test_503s_and_latency_cost_retries_not_records(cloud: str, make_url, monkeypatch, tmp_path: Path) -> None:
    """Every request may get a 503 before it reaches the store: the SDK's retry policy and the append's
    budget absorb them; nothing gives up, nothing is doubled."""
    key = signing_key(tmp_path)
    faults = Faults(seed=503, busy_before=0.3, latency=0.002)
    with behind_proxy(cloud, make_url, monkeypatch, faults) as url:
        done, gave_up = mixed_writers(url, ENV, key, provider_ops=3, cli_writers=2, per_writer=3)
        faults.clear()
        tally = check(url, ENV, done, gave_up, key)
    assert faults.injected["busy_before"] >= 20, faults.injected
    assert len(done) == 9 and not gave_up
    assert clean(tally) == (0, 0, 0, [])


# --------------------------------------------------------------------------------------------
# kill -9


def test_a_writer_killed_at_a_random_point_and_run_again_records_each_operation_once(backend: str, make_url, tmp_path: Path) -> None:
    """`pulumi up` killed with SIGKILL anywhere in its appends while a CLI action writes the same log, then
    run again: one record per operation, the side indexes it left missing healed, its temporaries removed."""
    url = make_url(backend)
    key = signing_key(tmp_path)
    window = calibrate(url, key, ops=3)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    total = Tally()
    for trial in range(KILL_TRIALS[backend]):
        total.add(kill_trial(url, f"trial{trial}", key, rng, ops=3, window=window, background=2))
    assert total.trials == KILL_TRIALS[backend]
    assert clean(total) == (0, 0, 0, []), f"seed {seed}"


# --------------------------------------------------------------------------------------------
# contention


def test_32_writers_on_one_environment_all_complete(backend: str, make_url, tmp_path: Path) -> None:
    """32 concurrent writers on one environment: every append completes, exactly once, in one chain.

    (A fixed number of attempts made the unluckiest writers give up: at 32 x 12 on file in about a third
    of the runs, at 32 x 20 always. The emulators serve one request at a time: one append each there.)"""
    url = make_url(backend)
    per_writer = 12 if backend == "file" else 1
    tally = contention_trial(url, "production", signing_key(tmp_path), writers=32, per_writer=per_writer)
    assert tally.trials == 32 * per_writer
    assert clean(tally) == (0, 0, 0, [])


class Rival(Store):
    """A store in which a rival writer appends first whenever the writer under test tries to create a record,
    `wins` times: the worst contention an appender can meet, made deterministic."""

    def __init__(self, inner: Store, rival: ActivityLog, wins: float) -> None:
        self.inner, self.url, self.rival, self.wins, self.won = inner, inner.url, rival, wins, 0

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        record = json.loads(data) if if_absent and key.endswith(".json") and "/by-" not in key and "/checkpoints/" not in key else None
        if record is not None and "seq" in record and self.won < self.wins:
            self.won += 1
            self.rival.append(record["environment"], actor="rival", action="scale", package_sha256="0" * 64, package_version=None, changes={"n": self.won}, app=APP)
        return self.inner.put(key, data, if_absent=if_absent)

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def put_file(self, key: str, path: Path, *, if_absent: bool = False, progress: Any = None) -> bool:
        return self.inner.put_file(key, path, if_absent=if_absent, progress=progress)

    def download(self, key: str, dest: Path, *, progress: Any = None) -> None:
        self.inner.download(key, dest, progress=progress)

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def identity(self) -> str:
        return "tester"


@pytest.fixture
def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The append's clock and sleep, in virtual time: backing off for a minute takes no minute."""
    now = [0.0]
    monkeypatch.setattr(activity, "_now", lambda: now[0])
    monkeypatch.setattr(activity, "_sleep", lambda s: now.__setitem__(0, now[0] + s))
    return now


def test_an_append_that_loses_150_races_in_a_row_still_records(tmp_path: Path, virtual_clock: list[float]) -> None:
    """Not a fixed number of attempts: a writer keeps trying, backing off, for its time budget."""
    store = open_store((tmp_path / "repo").as_uri())
    signer = LocalKeySigner(signing_key(tmp_path))
    rival = Rival(store, ActivityLog(store, signer=signer), wins=150)
    record = ActivityLog(rival, signer=signer).append(ENV, actor="ci", action="deploy", package_sha256=package("ci", 0), package_version=None, changes={}, app=APP)
    assert rival.won == 150 and record.seq == 151
    assert 0 < virtual_clock[0] < activity.APPEND_BUDGET
    assert ActivityLog(store).verify(ENV, signed=True) == []


def test_an_append_out_of_time_says_what_to_do_and_wrote_nothing(tmp_path: Path, virtual_clock: list[float]) -> None:
    store = open_store((tmp_path / "repo").as_uri())
    signer = LocalKeySigner(signing_key(tmp_path))
    rival = Rival(store, ActivityLog(store, signer=signer), wins=float("inf"))
    with pytest.raises(StoreError) as info:
        ActivityLog(rival, signer=signer, budget=10).append(ENV, actor="ci", action="deploy", package_sha256=package("ci", 0), package_version=None, changes={}, app=APP)
    message = str(info.value)
    assert f"could not append to the activity log of {ENV} within 10 s" in message
    assert "nothing of this append was stored" in message and "run the command again" in message
    assert activity.BUDGET_VARIABLE in message
    records = ActivityLog(store).records(ENV)
    assert records and all(r.actor == "rival" for r in records)
    assert virtual_clock[0] <= 10


# --------------------------------------------------------------------------------------------
# exactly once through the provider, and the key is signed


def test_the_same_pulumi_operation_retried_after_a_crash_is_one_record(tmp_path: Path) -> None:
    """The engine retries an operation whose result never reached the state with the same inputs."""
    key = signing_key(tmp_path)
    url = (tmp_path / "repo").as_uri()
    provider = ActivityProvider()
    first = provider_props(url, ENV, "up", 0, key)
    created = provider.create(first)
    assert provider.create(first).outs["lastRecordSeq"] == created.outs["lastRecordSeq"] == 1
    second = provider_props(url, ENV, "up", 1, key)
    updated = provider.update("x", created.outs, second)
    assert provider.update("x", created.outs, second).outs == updated.outs
    provider.delete("x", updated.outs)
    provider.delete("x", updated.outs)
    # a create after a destroy, with the very inputs of the first create, is a new operation
    recreated = provider.create(first)
    assert provider.create(first).outs["lastRecordSeq"] == recreated.outs["lastRecordSeq"] == 4
    log = ActivityLog(open_store(url))
    assert [r.action for r in log.records(ENV)] == ["deploy", "deploy", "destroy", "deploy"]
    keys = [r.idempotency_key for r in log.records(ENV)]
    assert keys[0] == keys[3] and len(set(keys)) == 3  # the same create, once per lifetime of the resource
    assert log.verify(ENV, signed=True, trust=trust_of(key), app=APP) == []


def test_the_idempotency_key_is_signed_and_older_records_without_one_still_verify(store: Store, tmp_path: Path) -> None:
    key = signing_key(tmp_path)
    signer = LocalKeySigner(key)
    log = ActivityLog(store, signer=signer)
    # a record as written before idempotency keys existed: no key in the hashed and signed body
    body = {"seq": 1, "environment": ENV, "time": "2025-01-01T00:00:00Z", "actor": "old", "action": "deploy", "package_sha256": "a" * 64, "package_version": None, "artifact": None, "changes": {}, "prev_hash": activity.GENESIS, "app": APP}
    old = activity.ActivityRecord(**body, hash=activity.record_hash(body))
    old = activity.ActivityRecord(**body, hash=old.hash, signature=signer.signature(old.hash))
    store.put(ActivityLog.key(ENV, 1), activity._encode(old), if_absent=True)
    new = log.append(ENV, actor="ci", action="deploy", package_sha256="b" * 64, package_version=None, changes={}, app=APP, idempotency_key="op-2")
    assert new.seq == 2 and new.idempotency_key == "op-2" and new.prev_hash == old.hash
    # the old tail's locator, which the old writer may not have written, is there now
    assert store.exists(ActivityLog.index_key(ENV, "a" * 64, 1))
    assert log.verify(ENV, signed=True, trust=trust_of(key), app=APP) == []
    edited = json.loads(store.get(ActivityLog.key(ENV, 2)) or b"{}")
    edited["idempotency_key"] = "op-other"
    store.put(ActivityLog.key(ENV, 2), json.dumps(edited).encode())
    assert any("seq 2" in p and "edited" in p for p in log.verify(ENV))
    # an edited copy is not taken for the operation's record: the retry appends it again, signed
    again = log.append(ENV, actor="ci", action="deploy", package_sha256="b" * 64, package_version=None, changes={}, app=APP, idempotency_key="op-other")
    assert again.seq == 3


# --------------------------------------------------------------------------------------------
# self-healing side indexes


def _fill(log: ActivityLog, count: int) -> list[Any]:
    return [log.append(ENV, actor="ci", action="deploy", package_sha256=package("fill", i), package_version=None, changes={}, app=APP) for i in range(count)]


def _side_indexes(record: Any) -> list[str]:
    keys = [ActivityLog.index_key(ENV, record.package_sha256, record.seq), ActivityLog.request_key(ENV, record.idempotency_key, record.seq)]
    if record.seq % CHECKPOINT_EVERY == 0:
        keys.append(ActivityLog.checkpoint_key(ENV, record.seq))
    return keys


def test_an_append_heals_what_a_killed_writer_left_missing(store: Store, tmp_path: Path) -> None:
    """A writer killed after its record was stored leaves its locators and checkpoint missing; the next
    appender, which chains to that record, writes them before it appends."""
    log = ActivityLog(store, signer=LocalKeySigner(signing_key(tmp_path)))
    tail = _fill(log, CHECKPOINT_EVERY)[-1]
    for key in _side_indexes(tail):
        store.delete(key)
    log.append(ENV, actor="ci", action="scale", package_sha256=package("fill", 0), package_version=None, changes={}, app=APP)
    assert all(store.exists(k) for k in _side_indexes(tail))


class ReadOnly(Store):
    """The store as a planner with read-only credentials sees it: every write is denied."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.url = inner, inner.url

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        raise StoreError(self.url, f"access denied (403) while trying to write {key}")

    def put_file(self, key: str, path: Path, *, if_absent: bool = False, progress: Any = None) -> bool:
        raise StoreError(self.url, f"access denied (403) while trying to write {key}")

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def download(self, key: str, dest: Path, *, progress: Any = None) -> None:
        self.inner.download(key, dest, progress=progress)

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        raise StoreError(self.url, "access denied")

    def identity(self) -> str:
        return "planner"


def test_the_gate_finds_a_deploy_whose_writer_was_killed_before_its_locator(store: Store, tmp_path: Path) -> None:
    """Read-only, the gate still finds the newest deploy among the records it verified; allowed to write,
    it also heals the locators."""
    key = signing_key(tmp_path)
    trust = trust_of(key)
    tail = _fill(ActivityLog(store, signer=LocalKeySigner(key)), 5)[-1]
    for index in _side_indexes(tail):
        store.delete(index)
    planner = ActivityLog(ReadOnly(store))
    seq, problems = planner.verify_recent(ENV, trust=trust, app=APP)
    found, refused = planner.deploy_evidence(ENV, tail.package_sha256, artifact=None, trust=trust, app=APP, tail=seq)
    assert (seq, problems, refused) == (5, [], []) and found is not None and found.seq == 5
    assert not any(store.exists(k) for k in _side_indexes(tail))
    ActivityLog(store).verify_recent(ENV, trust=trust, app=APP)
    assert all(store.exists(k) for k in _side_indexes(tail))


def test_verify_repair_heals_a_whole_log_and_says_what_it_repaired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = (tmp_path / "repo").as_uri()
    store = open_store(url)
    records = _fill(ActivityLog(store, signer=dev_signer(url)), 2 * CHECKPOINT_EVERY + 1)
    missing = [records[2], records[CHECKPOINT_EVERY - 1], records[2 * CHECKPOINT_EVERY - 1]]  # seqs 3, 16, 32
    for record in missing:
        for key in _side_indexes(record):
            store.delete(key)
    store.delete(ActivityLog.head_key(ENV))
    where = tmp_path / "repo" / "activity" / ENV
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = where / f".000000000034.json.{gone.stdout.strip()}@{_host()}.abcd1234.tmp"
    live = where / f".000000000034.json.{os.getpid()}@{_host()}.efgh5678.tmp"
    legacy = where / ".000000000035.json.old12345.tmp"
    for path in (dead, live, legacy):
        path.write_bytes(b"{partial")
    hours_ago = time.time() - 2 * 3600
    os.utime(legacy, (hours_ago, hours_ago))
    assert main(["activity", "verify", "--repair", "--repository", url]) == 0
    out = capsys.readouterr().out
    assert f"{ENV}: repaired 6 locator(s), 2 checkpoint(s), 2 temporary file(s) of killed writers removed, 1 head hint" in out
    assert "activity log intact: 33 signed record(s)" in out
    assert all(store.exists(k) for r in missing for k in _side_indexes(r))
    assert live.exists() and not dead.exists() and not legacy.exists()  # a live writer's file is never touched
    assert main(["activity", "verify", "--repair", "--repository", url]) == 0
    assert f"{ENV}: nothing to repair" in capsys.readouterr().out


def _host() -> str:
    from mxinfra.governance import store_file

    return store_file._HOST
