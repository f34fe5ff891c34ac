"""Issue 19, F10: objects planted in an environment's log do not poison it.

Whoever may create objects under `activity/<env>/` (the stores are create-only: never an overwrite) can put
anything at any seq not yet taken: junk, a record with a broken hash, a record signed by a key nobody
trusts, a record of another environment or app, one that does not chain, and at the next seq or a million
seqs ahead. None of them is a record of this log: appends go on at the next free seq and chain to the last
record of the log, the gate finds the genuine deploys, `verify` names each planted object and says whether
the chain itself is intact, and nothing costs more than a few reads whatever the seq of a planted object.
On every backend, with the store's requests counted.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from mxinfra.cli import main
from mxinfra.governance import Store, open_store, signing
from mxinfra.drift import recorded_state
from mxinfra.errors import UserError
from mxinfra.governance.activity import CHECKPOINT_EVERY, GENESIS, ActivityLog, ActivityRecord, record_hash, what_runs
from mxinfra.governance.promotion import trusted_deploys

ENV, APP = "acceptance", "orders"
SHA = "c" * 64
FAR = 10**6
_unique = itertools.count(1)


class Counting(Store):
    """A store that counts the requests reaching the backend and fails past `limit` (so that a test of
    code that reads a million objects fails in seconds instead of running for hours)."""

    def __init__(self, inner: Store, limit: int = 2000) -> None:
        self.inner, self.url, self.calls, self.limit = inner, inner.url, 0, limit

    def _count(self) -> None:
        self.calls += 1
        if self.calls > self.limit:
            raise AssertionError(f"more than {self.limit} store requests")

    def get(self, key: str) -> bytes | None:
        self._count()
        return self.inner.get(key)

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        self._count()
        return self.inner.put(key, data, if_absent=if_absent)

    def put_file(self, key: str, path: Path, *, if_absent: bool = False, progress: Any = None) -> bool:
        self._count()
        return self.inner.put_file(key, path, if_absent=if_absent, progress=progress)

    def download(self, key: str, dest: Path, *, progress: Any = None) -> None:
        self._count()
        self.inner.download(key, dest, progress=progress)

    def list(self, prefix: str) -> list[str]:
        self._count()
        return self.inner.list(prefix)

    def exists(self, key: str) -> bool:
        self._count()
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self._count()
        self.inner.delete(key)

    def identity(self) -> str:
        return self.inner.identity()

    def measure(self) -> int:
        """The requests counted since the last call."""
        calls, self.calls = self.calls, 0
        return calls


@pytest.fixture
def signer(tmp_path: Path) -> signing.Signer:
    return signing.LocalKeySigner(signing.generate_key_file(tmp_path / "acceptance.pem"))


@pytest.fixture
def stranger(tmp_path: Path) -> signing.Signer:
    """A valid key nobody trusts for acceptance (any writer can make one)."""
    return signing.LocalKeySigner(signing.generate_key_file(tmp_path / "stranger.pem"))


def trust_of(signer: signing.Signer) -> signing.Trust:
    return signing.Trust(frozenset({signing.fingerprint(signer.public_key_der())}), (signer.ref,))


def append(log: ActivityLog, sha: str = SHA, **changes: Any) -> ActivityRecord:
    return log.append(ENV, actor="ci", action="deploy", package_sha256=sha, package_version=None, changes=changes, app=APP)


def fill(store: Store, signer: signing.Signer, count: int) -> list[ActivityRecord]:
    log = ActivityLog(store, signer=signer)
    return [append(log, f"{i:064x}", n=i) for i in range(1, count + 1)]


def stored(store: Store, seq: int) -> dict[str, Any]:
    return json.loads(store.get(ActivityLog.key(ENV, seq)) or b"null")


def forged(seq: int, prev_hash: str, key: signing.Signer | None, **over: Any) -> bytes:
    """A record as an appender would write it at `seq`, signed with `key` (None: unsigned)."""
    body = {"seq": seq, "environment": ENV, "time": "2025-06-01T00:00:00Z", "actor": "mallory", "action": "deploy",
            "package_sha256": SHA, "package_version": None, "artifact": None, "changes": {}, "prev_hash": prev_hash,
            "app": APP, "idempotency_key": f"planted-{seq}", **over}
    body["hash"] = record_hash(body)
    if key is not None:
        body["signature"] = key.signature(body["hash"])
    return json.dumps(body).encode()


def planted(kind: str, store: Store, seq: int, tail: ActivityRecord, signer: signing.Signer, stranger: signing.Signer) -> bytes:
    """An object a create-only writer can make at `seq` (`tail` is the log's last record)."""
    if kind == "junk":
        return b"\x00\x01 not a record at all"
    if kind == "broken-hash":
        # a genuine record of this log, signature and all, moved to `seq` and linked to the tail
        copy = stored(store, 1)
        copy.update(seq=seq, prev_hash=tail.hash)
        return json.dumps(copy).encode()
    if kind == "untrusted-signer":
        return forged(seq, tail.hash, stranger)  # intact, chains to the tail, validly signed: by the wrong key
    if kind == "unsigned":
        return forged(seq, tail.hash, None)
    # genuine records of another environment and of another app (the same deployer's key signs them), copied:
    # they chain to their own logs
    if kind == "other-environment":
        return forged(seq, "a" * 64, signer, environment="test")
    if kind == "other-app":
        return forged(seq, "b" * 64, signer, app="billing")
    if kind == "does-not-chain":
        return forged(seq, "e" * 64, stranger)
    raise AssertionError(kind)


KINDS = ["junk", "broken-hash", "untrusted-signer", "unsigned", "other-environment", "other-app", "does-not-chain"]


def gate(log: ActivityLog, trust: signing.Trust, sha: str = SHA) -> tuple[int, list[str], ActivityRecord | None, list[str]]:
    tail, problems = log.verify_recent(ENV, trust=trust, app=APP)
    record, refused = log.deploy_evidence(ENV, sha, artifact=None, trust=trust, app=APP, tail=tail)
    return tail, problems, record, refused


# --------------------------------------------------------------------------------------------
# an object planted at the next seq


@pytest.mark.parametrize("kind", KINDS)
def test_an_object_planted_at_the_next_seq_is_skipped_by_appends_and_the_gate(store: Store, signer, stranger, kind: str) -> None:
    records = fill(store, signer, 3)
    tail = records[-1]
    store.put(ActivityLog.key(ENV, 4), planted(kind, store, 4, tail, signer, stranger), if_absent=True)
    # the next append takes the first free seq and chains to the log's last record, not to the planted object
    record = append(ActivityLog(store, signer=signer), n=4)
    assert (record.seq, record.prev_hash) == (5, tail.hash)
    again = append(ActivityLog(store, signer=signer), "d" * 64, n=5)
    assert (again.seq, again.prev_hash) == (6, record.hash)
    # the gate verifies the chain around it and finds the genuine deploy
    tail_seq, problems, evidence, _ = gate(ActivityLog(store), trust_of(signer))
    assert (tail_seq, problems) == (6, [])
    assert evidence is not None and evidence.seq == 5
    # verify names the object and why, and says the chain itself is intact
    found = ActivityLog(store).verify(ENV, signed=True, trust=trust_of(signer), app=APP)
    key = ActivityLog.key(ENV, 4)
    assert [m for m in found if m.startswith("seq ")] == [m for m in found if m.startswith(f"seq 4 ({key}): ")], found
    assert any("not a record of this log: ignored" in m for m in found), found
    assert any("the chain itself is intact" in m for m in found), found
    assert [r.seq for r in ActivityLog(store).records(ENV)] == [1, 2, 3, 5, 6]


def test_a_planted_record_by_an_untrusted_key_names_the_key(store: Store, signer, stranger) -> None:
    records = fill(store, signer, 2)
    store.put(ActivityLog.key(ENV, 3), planted("untrusted-signer", store, 3, records[-1], signer, stranger), if_absent=True)
    append(ActivityLog(store, signer=signer))
    found = "\n".join(ActivityLog(store).verify(ENV, signed=True, trust=trust_of(signer), app=APP))
    assert signing.fingerprint(stranger.public_key_der()) in found and "not trusted for acceptance" in found, found
    # without knowing the trusted keys, verify takes the key of the newest record (the head hint's) for the log's
    found = "\n".join(ActivityLog(store).verify(ENV, signed=True, app=APP))
    assert "seq 3 (" in found and "not a record of this log: ignored" in found and "the chain itself is intact" in found, found


def test_junk_at_every_next_seq_never_stops_appends(store: Store, signer) -> None:
    """An attacker who plants junk at each next seq as soon as one is taken costs every append one read."""
    log = ActivityLog(store, signer=signer)
    last = append(log, n=0)
    for i in range(1, 6):
        store.put(ActivityLog.key(ENV, last.seq + 1), b"junk", if_absent=True)
        record = append(log, f"{i:064x}", n=i)
        assert (record.seq, record.prev_hash) == (last.seq + 2, last.hash)
        last = record
    _, problems, evidence, _ = gate(ActivityLog(store), trust_of(signer), f"{5:064x}")
    assert problems == [] and evidence is not None and evidence.seq == last.seq
    found = ActivityLog(store).verify(ENV, signed=True, trust=trust_of(signer), app=APP)
    assert sum("not a record of this log: ignored" in m for m in found) == 5, found


def test_a_junk_run_across_a_checkpoint_keeps_the_gate_short(store: Store, signer) -> None:
    """Junk on the seq a checkpoint would vouch for: the first record after it writes the checkpoint."""
    fill(store, signer, CHECKPOINT_EVERY - 1)
    for seq in range(CHECKPOINT_EVERY, CHECKPOINT_EVERY + 3):
        store.put(ActivityLog.key(ENV, seq), b"junk", if_absent=True)
    first = append(ActivityLog(store, signer=signer))
    assert first.seq == CHECKPOINT_EVERY + 3
    fill(store, signer, 8)
    counted = Counting(store)
    tail, problems, evidence, _ = gate(ActivityLog(counted), trust_of(signer))
    assert (tail, problems) == (first.seq + 8, []) and evidence is not None and evidence.seq == first.seq
    # hint, the checkpoint of seq 16's slot (it vouches for seq 19), seq 19, 8 records and a miss, the heal
    # probe, the locators: not the whole log from seq 1
    assert counted.calls <= CHECKPOINT_EVERY + 6, counted.calls


# --------------------------------------------------------------------------------------------
# an object planted far ahead: the cost does not grow with its seq


def _costs(store: Store, signer: signing.Signer) -> tuple[int, int, ActivityRecord]:
    """(requests of one append, requests of one gate lookup of its deploy, the record)."""
    counted = Counting(store)
    record = append(ActivityLog(counted, signer=signer), f"{next(_unique):064x}")
    writes = counted.measure()
    tail, problems, evidence, _ = gate(ActivityLog(counted), trust_of(signer), record.package_sha256)
    assert problems == [] and evidence is not None and evidence.seq == record.seq and tail == record.seq
    return writes, counted.measure(), record


@pytest.mark.parametrize("where", ["hint intact", "after repair", "hint names it", "no hint"])
def test_an_object_planted_a_million_seqs_ahead_costs_nothing(store: Store, signer, stranger, where: str) -> None:
    fill(store, signer, CHECKPOINT_EVERY + 4)
    base_append, base_gate, _ = _costs(store, signer)  # seq 21
    last = fill(store, signer, CHECKPOINT_EVERY - 1)[-1]  # up to seq 36: the next is as far past a checkpoint as 21
    far = last.seq + FAR
    store.put(ActivityLog.key(ENV, far), forged(far, last.hash, stranger), if_absent=True)
    store.put(ActivityLog.key(ENV, far + 1), b"junk", if_absent=True)

    def misplace_hint() -> None:
        if where == "hint names it":  # someone who may rewrite the hint points it at the planted record
            store.put(ActivityLog.head_key(ENV), json.dumps({"seq": far}).encode())
        elif where == "no hint":
            store.delete(ActivityLog.head_key(ENV))

    if where == "after repair":
        ActivityLog(store, signer=signer).repair(ENV)
        assert json.loads(store.get(ActivityLog.head_key(ENV)) or b"{}") == {"seq": last.seq}
    misplace_hint()
    counted = Counting(store)
    record = append(ActivityLog(counted, signer=signer), f"{next(_unique):064x}")
    writes = counted.measure()
    assert (record.seq, record.prev_hash) == (last.seq + 1, last.hash)
    misplace_hint()
    tail, problems, evidence, _ = gate(ActivityLog(counted), trust_of(signer), record.package_sha256)
    reads = counted.measure()
    assert (tail, problems) == (record.seq, []) and evidence is not None and evidence.seq == record.seq
    print(f"\n{store.url.split(':')[0]}, {where}: append {writes} (no plant: {base_append}), gate {reads} (no plant: {base_gate})")
    # a wrong hint costs O(log) probes for the newest checkpoint, never a read per seq up to the planted one
    extra = 0 if where in ("hint intact", "after repair") else 48
    assert writes <= base_append + extra and reads <= base_gate + extra, (base_append, writes, base_gate, reads)
    # (the head hint says how far appends got: verify reads one that names a planted record as a truncated log)
    ActivityLog(store, signer=signer).repair(ENV)
    found = ActivityLog(store).verify(ENV, signed=True, trust=trust_of(signer), app=APP)
    assert any(f"seq {far} (" in m and "not a record of this log: ignored" in m for m in found), found
    assert not any("missing" in m for m in found), found


def _pad(store: Store, signer: signing.Signer, residue: int) -> None:
    """Append until the next record's seq is `residue` modulo CHECKPOINT_EVERY (the gate's reads depend on it)."""
    log = ActivityLog(store, signer=signer)
    while (log.tail(ENV) + 1) % CHECKPOINT_EVERY != residue:
        append(log, f"{next(_unique):064x}")


def test_append_and_gate_cost_the_same_at_any_length_and_any_plant(store: Store, signer, stranger) -> None:
    """The measured request counts: flat in the number of records and in where objects were planted."""
    residue = 5
    _pad(store, signer, residue)
    costs = {"5 records": _costs(store, signer)[:2]}
    _pad(store, signer, residue)
    costs["21 records"] = _costs(store, signer)[:2]
    for _ in range(3):
        _pad(store, signer, residue - 1)
        append(ActivityLog(store, signer=signer), f"{next(_unique):064x}")
    costs["69 records"] = _costs(store, signer)[:2]
    tail = ActivityLog(store).records(ENV)[-1]
    for offset in (FAR, 10**9, 10**11):
        store.put(ActivityLog.key(ENV, tail.seq + offset), b"junk", if_absent=True)
    store.put(ActivityLog.key(ENV, tail.seq + FAR + 1), forged(tail.seq + FAR + 1, tail.hash, stranger), if_absent=True)
    _pad(store, signer, residue)
    costs["planted far ahead"] = _costs(store, signer)[:2]
    _pad(store, signer, residue - 1)
    tail = ActivityLog(store).records(ENV)[-1]
    store.put(ActivityLog.key(ENV, tail.seq + 1), planted("does-not-chain", store, tail.seq + 1, tail, signer, stranger), if_absent=True)
    costs["planted at the next seq"] = _costs(store, signer)[:2]
    _pad(store, signer, residue)
    costs["a slot later"] = _costs(store, signer)[:2]
    print(f"\nrequests (append, gate lookup) on {store.url.split(':')[0]}: {costs}")
    first = costs["21 records"]
    assert costs["69 records"] == costs["planted far ahead"] == costs["a slot later"] == first, costs
    planted_next = costs["planted at the next seq"]
    assert planted_next[0] <= first[0] + 1 and planted_next[1] <= first[1] + 1, costs  # one read of the planted object


@pytest.mark.parametrize("hint", ["kept", "lost"])
def test_a_rotated_key_continues_the_chain(store: Store, signer, stranger, hint: str) -> None:
    """Records signed by another key are not chained to when they arrive after the appender's own, but the
    record the hint names (the environment's previous signer after a key rotation) is, and so is a chain
    found without a hint."""
    old = fill(store, signer, CHECKPOINT_EVERY + 3)
    if hint == "lost":
        store.delete(ActivityLog.head_key(ENV))
    new = append(ActivityLog(store, signer=stranger))  # the environment's new key
    assert (new.seq, new.prev_hash) == (old[-1].seq + 1, old[-1].hash)
    both = signing.Trust(trust_of(signer).fingerprints | trust_of(stranger).fingerprints, (signer.ref, stranger.ref))
    assert gate(ActivityLog(store), both)[1:3] == ([], new)
    assert ActivityLog(store).verify(ENV, signed=True, trust=both, app=APP) == []


@pytest.mark.parametrize("length", [5, 2 * CHECKPOINT_EVERY - 2])
def test_a_planted_record_the_hint_names_is_never_chained_to_nor_vouched_for(store: Store, signer, stranger, length: int) -> None:
    """Hostile review: a record signed by a throwaway key, chaining to the tail and naming another package and
    image, with the hint pointed at it. An appender that knows the keys it trusts (every caller gives its own
    and the environment's trustedSigners) chains to the log's last trusted record; its next record repeats
    nothing of the planted one (a backup record names what the last record left running); no checkpoint
    vouches for a chain through it; the release guard's reading says what really runs. With 2 x 16 - 2
    records the planted one takes seq 31 and the real one 32, a checkpoint slot."""
    real = fill(store, signer, length)
    evil = "evil.example/app@sha256:" + "f" * 64
    at = real[-1].seq + 1
    store.put(ActivityLog.key(ENV, at), forged(at, real[-1].hash, stranger, package_sha256="9" * 64, artifact=evil), if_absent=True)
    store.put(ActivityLog.head_key(ENV), json.dumps({"seq": at}).encode())
    log = ActivityLog(store, signer=signer, trust=signing.appender_trust(signer, None))
    last = log.last_record(ENV, app=APP)
    assert last is not None and last.hash == real[-1].hash
    record = log.append(ENV, actor="dba", action="backup", **what_runs(last), app=APP, changes={"backup": {"id": "b1"}})
    assert (record.seq, record.prev_hash, record.package_sha256, record.artifact) == (at + 1, real[-1].hash, real[-1].package_sha256, None)
    for key in store.list(f"activity/{ENV}/checkpoints/"):
        assert json.loads(store.get(key) or b"{}")["seq"] != at, key
    records, problems = ActivityLog(store).recent(ENV, trust=trust_of(signer), app=APP)
    # (from the checkpoint the real record's append wrote at seq 32, vouching for 30 -> 32, when it fell on one)
    assert problems == [] and records[-1].hash == record.hash and at not in [r.seq for r in records]
    assert recorded_state(ENV, records).package_sha256 == real[-1].package_sha256 and recorded_state(ENV, records).artifact is None
    found = ActivityLog(store).verify(ENV, signed=True, trust=trust_of(signer), app=APP)
    assert any(f"seq {at} (" in m and "not a record of this log: ignored" in m for m in found), found
    assert any("the chain itself is intact" in m for m in found), found


def test_pulumi_ups_record_chains_past_a_planted_record_the_hint_names(tmp_path: Path, stranger) -> None:
    """The same through the activity resource's provider (what `pulumi up` runs): it builds its appender's
    trust from its signer and the `trustedSigners` input the program gives it."""
    from mxinfra.governance.record import ActivityProvider

    key = signing.generate_key_file(tmp_path / "acceptance-key.pem")
    url = f"file://{tmp_path / 'repo'}"
    store = open_store(url)
    real = fill(store, signing.LocalKeySigner(key), 3)
    store.put(ActivityLog.key(ENV, 4), forged(4, real[-1].hash, stranger), if_absent=True)
    store.put(ActivityLog.head_key(ENV), json.dumps({"seq": 4}).encode())
    olds = {"environment": ENV, "app": APP, "repository": url, "packageSha256": SHA, "packageVersion": None, "packagePath": "",
            "artifact": None, "settingsDigest": "s", "instances": 1, "grantsDigest": "g", "signer": f"file:{key}", "trustedSigners": [],
            "lastRecordSeq": 3, "lastRecordHash": real[-1].hash}
    outs = ActivityProvider().update("activity", olds, {**olds, "instances": 2}).outs
    assert outs["lastRecordSeq"] == 5 and stored(store, 5)["prev_hash"] == real[-1].hash


def test_promote_reads_the_chain_the_trusted_keys_make(store: Store, signer, stranger) -> None:
    """Hostile review: a record of a throwaway key past a hole, chaining to an older deploy, with the hint
    pointed at it, made a reading that took the hint's key for the log's skip the newest deploy, so that
    `mxinfra promote` chose the superseded package. `trusted_deploys` reads the chain the trusted keys make,
    and a log the hint says goes on past a hole does not verify: promote refuses rather than choose."""
    log = ActivityLog(store, signer=signer, trust=signing.appender_trust(signer, None))
    first, newest = append(log, "1" * 64), append(log, "2" * 64)
    assert [r.seq for r in trusted_deploys(ActivityLog(store), ENV, trust_of(signer), APP)] == [first.seq, newest.seq]
    store.put(ActivityLog.key(ENV, 10), forged(10, first.hash, stranger), if_absent=True)
    store.put(ActivityLog.head_key(ENV), json.dumps({"seq": 10}).encode())
    assert [r.seq for r in ActivityLog(store).records(ENV)] == [first.seq, 10]  # the reading that has no trust
    with pytest.raises(UserError, match=r"does not verify: seq 10 .*missing"):
        trusted_deploys(ActivityLog(store), ENV, trust_of(signer), APP)
    # the next trusted append goes on from the newest deploy (past the planted object): promote chooses it again
    latest = append(log, "3" * 64)
    assert latest.prev_hash == newest.hash
    assert [r.seq for r in trusted_deploys(ActivityLog(store), ENV, trust_of(signer), APP)] == [first.seq, newest.seq, latest.seq]


def test_an_appenders_reading_repair_and_checkpoints_pass_a_planted_record_by(store: Store, signer, stranger) -> None:
    """Review of the fix: `verify --repair` (which writes checkpoints and the hint) and `last_record` on an
    appender's log (the Cloud Foundry expiry repeats what runs from it) read the chain the appender's keys
    make; a checkpoint of another key starts no walk of an appender's."""
    trust = signing.appender_trust(signer, None)
    real = fill(store, signer, 5)
    slot = CHECKPOINT_EVERY
    store.put(ActivityLog.key(ENV, slot), forged(slot, real[-1].hash, stranger, package_sha256="9" * 64), if_absent=True)
    store.put(ActivityLog.head_key(ENV), json.dumps({"seq": slot}).encode())
    last = ActivityLog(store, signer=signer, trust=trust).last_record(ENV, app=APP)  # what the CF expiry repeats
    assert last is not None and last.hash == real[-1].hash
    done = ActivityLog(store, signer=signer, trust=trust).repair(ENV)
    assert done.checkpoints == 0 and not store.exists(ActivityLog.checkpoint_key(ENV, slot))
    assert json.loads(store.get(ActivityLog.head_key(ENV)) or b"{}") == {"seq": real[-1].seq}
    assert [key for key, _ in done.ignored] == [ActivityLog.key(ENV, slot)]
    record = append(ActivityLog(store, signer=signer, trust=trust))
    assert (record.seq, record.prev_hash) == (real[-1].seq + 1, real[-1].hash)
    # a checkpoint of another key taking the next slot's name first, vouching for a record it planted far in
    # that slot: appenders go on writing their own checkpoints at the slots after it (the gate's cost stays flat)
    far, slot2 = 3 * CHECKPOINT_EVERY - 1, 2 * CHECKPOINT_EVERY
    store.put(ActivityLog.key(ENV, far), forged(far, "e" * 64, stranger), if_absent=True)
    body = {"kind": "checkpoint", "environment": ENV, "app": APP, "seq": far, "hash": json.loads(store.get(ActivityLog.key(ENV, far)) or b"{}")["hash"], "from_seq": 0}
    store.put(ActivityLog.checkpoint_key(ENV, slot2), json.dumps({**body, "signature": stranger.signature(record_hash(body))}).encode(), if_absent=True)
    log = ActivityLog(store, signer=signer, trust=trust)
    for _ in range(4 * CHECKPOINT_EVERY):
        append(log, f"{next(_unique):064x}")
    mine = sorted(c["seq"] for c in (json.loads(store.get(k) or b"{}") for k in store.list(f"activity/{ENV}/checkpoints/")) if c["signature"]["signer"] == signer.ref)
    assert [s for s in mine if s > far] == [3 * CHECKPOINT_EVERY, 4 * CHECKPOINT_EVERY], mine


def test_a_rotated_key_the_environment_trusts_continues_the_chain_and_one_it_does_not_never_does(store: Store, signer, stranger) -> None:
    """A new key's first append chains to the previous key's records when trustedSigners names that key (as
    the gate needs it to), and not otherwise: without a checkpoint of its own, the record the hint names is
    then one it has no reason to believe."""
    old = fill(store, signer, CHECKPOINT_EVERY + 3)
    listed = append(ActivityLog(store, signer=stranger, trust=signing.appender_trust(stranger, trust_of(signer))))
    assert (listed.seq, listed.prev_hash) == (old[-1].seq + 1, old[-1].hash)
    alone = append(ActivityLog(store, signer=signer, trust=signing.appender_trust(signer, None)))
    # the old key, trusting itself alone, goes on from its own last record (the new key's is not its to chain to)
    assert (alone.seq, alone.prev_hash) == (listed.seq + 1, old[-1].hash)


def test_a_stale_head_hint_costs_probes_not_a_read_per_record(store: Store, signer) -> None:
    """Under an immutability policy the hint keeps its first value: the append leaps to its newest checkpoint."""
    records = fill(store, signer, 8 * CHECKPOINT_EVERY)
    store.put(ActivityLog.head_key(ENV), json.dumps({"seq": 1}).encode())
    counted = Counting(store)
    record = append(ActivityLog(counted, signer=signer))
    assert (record.seq, record.prev_hash) == (records[-1].seq + 1, records[-1].hash)
    assert counted.calls < 4 * CHECKPOINT_EVERY, counted.calls  # not one read per record since seq 1
    counted.measure()
    store.put(ActivityLog.head_key(ENV), json.dumps({"seq": 1}).encode())
    _, problems, evidence, _ = gate(ActivityLog(counted), trust_of(signer))
    assert problems == [] and evidence is not None and evidence.seq == record.seq
    assert counted.calls < 4 * CHECKPOINT_EVERY, counted.calls


# --------------------------------------------------------------------------------------------
# verify, repair and recovery


def test_verify_and_repair_name_planted_objects_and_delete_nothing(store_url: str, signer, stranger, capsys) -> None:
    store = open_store(store_url)
    records = fill(store, signer, 3)
    junk, far = ActivityLog.key(ENV, 4), ActivityLog.key(ENV, 3 + FAR)
    store.put(junk, b"junk", if_absent=True)
    store.put(far, forged(3 + FAR, records[-1].hash, stranger), if_absent=True)
    append(ActivityLog(store, signer=signer))
    capsys.readouterr()
    assert main(["activity", "--repository", store_url, "verify", "--repair"]) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    assert junk in text and far in text and "not a record of this log" in text, text
    assert "is not a valid record" in text, text
    assert "the chain itself is intact" in text and "delete rights" in text, text
    assert "missing" not in text, text
    # append-only: repair removed nothing and left the head hint at the log's last record
    assert store.exists(junk) and store.exists(far)
    assert json.loads(store.get(ActivityLog.head_key(ENV)) or b"{}") == {"seq": 5}
    # recovery: someone with delete rights removes what verify named; the chain across the hole is intact
    store.delete(junk)
    store.delete(far)
    capsys.readouterr()
    assert main(["activity", "--repository", store_url, "verify"]) == 0, capsys.readouterr()
    assert append(ActivityLog(store, signer=signer)).seq == 6
    assert ActivityLog(store).verify(ENV, signed=True, trust=trust_of(signer), app=APP) == []


def test_a_damaged_record_of_the_log_is_still_a_problem(store: Store, signer) -> None:
    """What the head hint says was written is the log's: an edited last record is not "planted"."""
    records = fill(store, signer, 3)
    data = stored(store, 3)
    data["actor"] = "mallory"
    store.put(ActivityLog.key(ENV, 3), json.dumps(data).encode())
    _, problems, _, _ = gate(ActivityLog(store), trust_of(signer), records[2].package_sha256)
    assert problems and "seq 3 " in problems[0] and "edited" in problems[0], problems
    found = ActivityLog(store).verify(ENV, signed=True, trust=trust_of(signer), app=APP)
    assert found and "seq 3 " in found[0] and "edited" in found[0] and "ignored" not in found[0], found


def test_concurrent_appends_with_junk_planted_ahead(store: Store, signer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fill(store, signer, 2)
    for seq in (3, 5, 9):
        store.put(ActivityLog.key(ENV, seq), b"junk", if_absent=True)

    def writer(w: int) -> list[int]:
        log = ActivityLog(store, signer=signer)
        return [append(log, f"{w:032x}{i:032x}", w=w, i=i).seq for i in range(3)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        won = sorted(s for seqs in pool.map(writer, range(4)) for s in seqs)
    assert len(won) == len(set(won)) == 12 and not {3, 5, 9} & set(won)
    records = ActivityLog(store).records(ENV)
    assert len(records) == 14 and all(r.prev_hash == p.hash for p, r in zip(records, records[1:]))
    assert records[0].prev_hash == GENESIS
    found = ActivityLog(store).verify(ENV, signed=True, trust=trust_of(signer), app=APP)
    assert sum("not a record of this log: ignored" in m for m in found) == 3, found
