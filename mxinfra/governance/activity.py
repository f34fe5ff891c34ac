"""The activity log: per environment, an append-only, hash-chained sequence of deployment events.

Each record is one object `activity/<env>/<seq:012d>.json`, created with put(if_absent=True): two
writers racing for the same seq cannot both win, and the loser re-reads the new tail and tries the
next seq. Each record carries the hash of its predecessor (`prev_hash`) and its own `hash` (SHA-256
of the canonical JSON of every other field), so editing, removing or reordering records breaks the
chain and `verify` names the record. Removing the newest records (truncation) leaves an intact, shorter
chain; the Pulumi state's last record (`verify_head`) reveals that.

Each record is also signed (see signing.py): the signature covers the hash, so it covers the app, the
environment, the seq and the predecessor too, and a record copied from another environment, another
app's log or edited by someone without the key does not verify. `verify(..., signed=True, trust=...)`
names unsigned, badly signed and untrusted records.

Exactly once: each record carries the idempotency key of the operation it records (signed with it). A
store may keep a write whose answer is lost (a 500 or a dropped connection after the commit, a writer
killed after it); the conditional create of that seq then fails for its own writer. So on a conflict the
appender reads the record at that seq and, if it carries its key, takes it as its own; and an operation
retried with the same key (the same `pulumi up` after a crash) finds its stored record by the key's
locator before appending again.

Planted objects: whoever may create objects under `activity/<env>/` (any seq not yet taken: the stores
never overwrite) can put junk, a record with a broken hash, one signed by a key the log is not signed with,
one of another environment or app, or one that does not chain, at the next seq or a million seqs ahead.
None is a record of this log (`_Walk` says exactly what is). Appends skip them: the next record takes the
first free seq after the log's last record and chains to that record. The tail is found by reading on from
the record the head hint names (or, if the hint names none, from the newest checkpoint of the appender's
key, found in O(log n) probes) to the first free seq, so an object beyond a free seq is never read, and an
object at the next seq costs one read. The gate verifies from its newest trusted checkpoint the same way and
ignores them; `verify` names each ("not a record of this log: ignored") apart from the chain's problems and
says whether the chain itself is intact; `repair` never deletes them. A seq left free once such an object
is removed is fine: the record after it chains across. What the head hint names is the log's: an edited
last record is damage, not a planted object.

Self-healing: the side indexes (locators, checkpoints) are written after their record, so a killed
writer can leave them missing. Every appender heals the tail it chains to before it appends, so only
the newest record can lack them; the gate heals the tail it reads (when it may write) and finds a
deploy in the records it verified even without its locator; `repair` heals a whole log and removes the
temporary files killed writers left in a file:// store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UserError
from .repository import utc_now
from .signing import Signer, Trust, check_signature, fingerprint
from .store import Store, StoreError

GENESIS = "0" * 64  # prev_hash of an environment's first record
# The action of a record written before a change is applied (the release intent): it says what a `pulumi up`
# is about to apply, not what runs; the record of its outcome follows it once the change was applied.
INTENT = "intent"
# What `mxinfra backup` records: no workload changes by them (each names what the last record left running).
BACKUP_ACTIONS = ("backup", "backup-download", "backup-export", "restore")
ACTIONS = ("deploy", "settings", "scale", "permissions")
CHECKPOINT_EVERY = 16  # a signed checkpoint every 16 records: the gate reads fewer records than this since one
# Objects a walk along the chain reads before it looks for a newer anchor (a stale head hint): past this, a
# newer checkpoint is found in O(log n) probes instead of reading on record by record.
LEAP_AFTER = 2 * CHECKPOINT_EVERY
# How long an append keeps trying while other writers take the next seq or the store fails transiently.
# Time, not a number of attempts: 32 writers on one environment need many attempts each, a slow store few.
APPEND_BUDGET = 300.0  # 32 writers on one environment of a slow store: a loser of 550 rounds in a row is 1 in 10^7
BUDGET_VARIABLE = "MXINFRA_APPEND_BUDGET"
# Full-jitter exponential backoff after a transient store error: uniform in [0, min(MAX, BASE * 2**attempt)]
# spreads a herd of writers over time, so that most win their next try, without making a lone retry slow.
BACKOFF_BASE = 0.01
BACKOFF_MAX = 1.0
# After a lost race (another writer took the seq: the log moved on, the store is fine) the pause is uniform
# in [0, MAX] whatever the number of losses: every waiting writer has the same chance at each next seq, at
# a bounded request rate. Exponential backoff there made old losers sleep longest (1 in about 1,000 appends
# of 32 writers on a slow store ran out of a 120 s budget); retrying sooner the longer one had waited
# flooded a single-threaded store with 31 writers' probes.
# A temporary file untouched this long (or whose writer process is gone) is a killed writer's leftover.
TEMPORARY_AGE = 3600.0
_ENV = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=@-]{0,127}")
_SEQ_NAME = re.compile(r"(\d{12})\.json")


def append_budget() -> float:
    """Seconds an append keeps trying: MXINFRA_APPEND_BUDGET if set, else APPEND_BUDGET."""
    raw = os.environ.get(BUDGET_VARIABLE)
    if not raw:
        return APPEND_BUDGET
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"{BUDGET_VARIABLE}={raw!r}: expected a number of seconds greater than 0")
    return value


def canonical_json(obj: Any) -> bytes:
    """The bytes hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@dataclass(frozen=True)
class ActivityRecord:
    """One event in an environment's activity log."""

    seq: int
    environment: str
    time: str
    actor: str
    action: str
    package_sha256: str
    package_version: str | None
    artifact: str | None  # what ran besides the package (an image reference, a package URL)
    changes: dict[str, Any] = field(hash=False)
    prev_hash: str
    hash: str
    app: str | None = None  # the app whose log this is (signed: a record copied from another app's log is refused)
    # the operation this records, the same however often it was retried (signed: a record cannot be passed
    # off as another operation's); older records have none, and their hash is computed without it
    idempotency_key: str | None = None
    # the app image verified against the package before the deployment (digest, layer, files compared;
    # signed); records of targets that run the MDA itself, and older records, have none
    image: dict[str, Any] | None = field(default=None, hash=False)
    # the instance count the record leaves running (signed), so that what runs is known from the newest
    # records alone, not from the last record that changed it, however far back; older records have none
    instances: int | None = None
    # the environment's tier when the record was written (signed): production stays production in the
    # log even when nothing runs that says so (issue 19, F18); older records have none
    role: str | None = None
    signature: dict[str, str] | None = field(default=None, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (app, idempotency_key, image, instances, role and signature only when present)."""
        d = asdict(self)
        for optional in ("app", "idempotency_key", "image", "instances", "role", "signature"):
            if d[optional] is None:
                del d[optional]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ActivityRecord:
        """Parse a stored record (no checking of the hash: that is verify's job)."""
        return cls(
            seq=int(d["seq"]),
            environment=str(d["environment"]),
            time=str(d["time"]),
            actor=str(d["actor"]),
            action=str(d["action"]),
            package_sha256=str(d["package_sha256"]),
            package_version=None if d.get("package_version") is None else str(d["package_version"]),
            artifact=None if d.get("artifact") is None else str(d["artifact"]),
            changes=dict(d.get("changes") or {}),
            prev_hash=str(d["prev_hash"]),
            hash=str(d["hash"]),
            app=None if d.get("app") is None else str(d["app"]),
            idempotency_key=None if d.get("idempotency_key") is None else str(d["idempotency_key"]),
            image=dict(d["image"]) if isinstance(d.get("image"), dict) else None,
            instances=_count(d.get("instances")),
            role=None if d.get("role") is None else str(d["role"]),
            signature=d.get("signature"),
        )

    def computed_hash(self) -> str:
        """SHA-256 of the canonical JSON of every field except `hash` and `signature`."""
        return record_hash(self.to_json())


def record_hash(body: dict[str, Any]) -> str:
    """The hash of a record given as a dict ('hash' and 'signature' ignored: the signature covers the hash)."""
    return hashlib.sha256(canonical_json({k: v for k, v in body.items() if k not in ("hash", "signature")})).hexdigest()


def what_runs(last: ActivityRecord | None, *, package_sha256: str = "0" * 64, package_version: str | None = None, artifact: str | None = None) -> dict[str, Any]:
    """The `append` fields of a record that changes no workload (a backup, a grant): what `last` (the newest
    record that says what runs) names as running, package, artifact, instance count and tier, so that
    `mxinfra drift` reads the same state before and after it; without one, the given package and artifact."""
    if last is None:
        return {"package_sha256": package_sha256, "package_version": package_version, "artifact": artifact, "instances": None, "role": None}
    return {"package_sha256": last.package_sha256, "package_version": last.package_version, "artifact": last.artifact, "instances": last.instances, "role": last.role}


def judge_deploy(record: ActivityRecord, trust: Trust | None, app: str | None) -> tuple[bool, str]:
    """Whether a deploy record counts as a trusted deploy, and who signed it or why it does not count: the
    one rule the gate (`ActivityLog.deploy_evidence`, which adds only where the record sits: in the chain,
    not replaced), `mxinfra promote` and `mxinfra trace` share. Without `trust` (trace with no stack) the
    signature is still checked, and the verdict says the signer's trust was not."""
    data = record.to_json()
    if record_hash(data) != record.hash:
        return False, "EDITED (hash does not match)"
    found, why = check_signature(data, record.hash)
    if not found or why is not None:
        return False, f"UNVERIFIED: {why}"
    signer = f"{(record.signature or {}).get('signer')} ({found})"
    if app is not None and record.app != app:
        return False, f"{signer}, but of app {record.app!r}"
    if trust is None:
        return True, f"{signer}; trust not checked (no stack given)"
    if not trust.fingerprints:
        return False, f"UNTRUSTED: {signer}; no key is trusted for {record.environment} (mxinfra:signing)"
    if found not in trust.fingerprints:
        return False, f"UNTRUSTED: {signer} is not a key trusted for {record.environment}"
    return True, signer


def _encode(record: ActivityRecord) -> bytes:
    return (json.dumps(record.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


@dataclass
class Repairs:
    """What `ActivityLog.repair` wrote or removed in one environment's log, and what it left in place."""

    locators: int = 0
    checkpoints: int = 0
    temporaries: int = 0
    head: int = 0
    unsigned_checkpoints: int = 0  # missing checkpoints left alone: writing one needs the environment's key
    # (key, why) of the objects at record keys that are not records of this log: never deleted (append-only)
    ignored: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.locators or self.checkpoints or self.temporaries or self.head or self.ignored)

    def describe(self) -> str:
        """'3 locator(s), 1 checkpoint(s), ...' of what was repaired (and what was left in place), or 'nothing to repair'."""
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.locators, "locator(s)"),
                (self.checkpoints, "checkpoint(s)"),
                (self.temporaries, "temporary file(s) of killed writers removed"),
                (self.head, "head hint"),
            )
            if n
        ]
        text = ", ".join(parts) if parts else ("nothing" if self.ignored else "nothing to repair")
        if self.ignored:
            named = "; ".join(f"{key} ({why})" for key, why in self.ignored[:10])
            if len(self.ignored) > 10:
                named += f"; and {len(self.ignored) - 10} more"
            text += (
                f"; left in place {len(self.ignored)} object(s) that are not records of this log (the log is append-only: "
                f"repair never deletes; once examined, an operator with delete rights may remove them): {named}"
            )
        return text


@dataclass
class Examination:
    """What `ActivityLog.examine` found in one environment's log."""

    environment: str
    problems: list[tuple[int, str, str]]  # (seq, key, why) damage to the chain itself
    ignored: list[tuple[int, str, str]]  # (seq, key, why) objects at record keys that are not records of this log
    records: int  # records of the log
    tail: int  # seq of its newest record (0: none)

    @property
    def intact(self) -> bool:
        """Whether the chain itself verifies (objects that are not records of this log do not count)."""
        return not self.problems

    def messages(self) -> list[str]:
        """One line per problem and per ignored object, by seq, then (if objects were ignored) whether the chain
        itself is intact; [] for an intact log with nothing else in it."""
        lines = [(seq, 0, f"seq {seq} ({key}): {why}") for seq, key, why in self.problems]
        lines += [(seq, 1, f"seq {seq} ({key}): {why}; not a record of this log: ignored") for seq, key, why in self.ignored]
        out = [line for _, _, line in sorted(lines)]
        if self.ignored:
            n = len(self.ignored)
            if self.intact:
                out.append(
                    f"the chain itself is intact ({self.records} record(s), the newest seq {self.tail}); the {n} object(s) "
                    "named above are not records of this log and were ignored: they stop neither appends nor promotion. "
                    "The log is append-only and nothing was deleted: find out who wrote them (the store's access logs), "
                    "then an operator with delete rights may remove them"
                )
            else:
                out.append(f"the chain itself does not verify (see above); besides, {n} object(s) that are not records of this log were ignored")
        return out


@dataclass
class _Object:
    """An object stored under a record's key, as one reader judges it."""

    seq: int
    key: str
    data: dict[str, Any] | None  # the parsed record (None: not even one)
    why: str | None  # why it is not a record of this log (None: intact, in its place, of the app, signed as required)
    claimed: str | None  # the hash it claims: what the record after it chains to, if it is the log's
    prev: str | None
    fp: str | None  # fingerprint of the key whose signature verifies (None: unsigned)
    signer: str | None  # how the record names that key


class _Walk:
    """One environment's chain, followed in seq order through the objects under its record keys from an
    anchor: a record known to be the log's (the head hint's, a checkpoint's, this machine's last verified),
    or genesis.

    A record of this log parses, its hash matches its content, it names its own seq, environment and the
    reader's app, it is signed (when the reader requires it) with a signature that verifies, and its
    prev_hash is the hash of the record of this log before it. Which way the chain goes is decided by the
    records signed by an authoritative key (one the reader trusts; every key for a reader that trusts none):
    a record signed by another key that chains to the newest record is tentative until an authoritative
    record chains through it (a link) or past it (ignored). An object that does not chain waits for a later
    record: one that chains past it leaves it ignored; an authoritative one that chains to the hash it claims
    makes it a damaged record of the log (a problem). What is still undecided at the end is the log's if the
    head hint says an append reached it (an edited newest record is a problem, not a planted object), else
    it was planted at the frontier and is ignored. A seq with no object is fine when the record after it
    chains across (an ignored object someone removed), a deletion when it does not."""

    def __init__(self, environment: str, anchor: tuple[int, str, _Object | None], authority: frozenset[str] | None, trust: Trust | None = None) -> None:
        seq, digest, obj = anchor
        self.environment = environment
        self.authority = authority
        self.trust = trust
        self.anchor = seq
        self.anchor_hash = digest
        self.base = (seq, digest)  # the newest member signed by an authoritative key (or the anchor)
        self.head = (seq, digest)  # the newest member
        # ("pending" | "limbo", object, why it is a problem if it is the log's, why it is not a record of this log)
        self.tentative: list[tuple[str, _Object, str, str]] = []
        self.members: dict[int, _Object | None] = {seq: obj} if seq else {}
        self.damaged: set[int] = set()
        self.ignored: dict[int, tuple[str, str]] = {}
        self.problems: list[tuple[int, str, str]] = []
        self.expected = seq + 1
        self.fed = 0
        self.tip = (seq, digest)  # set by finish: the newest member that is not damaged (what an append chains to)

    def _authoritative(self, obj: _Object) -> bool:
        return self.authority is None or (obj.fp is not None and obj.fp in self.authority)

    def _untrusted(self, obj: _Object) -> str:
        if obj.fp is None:
            return "is unsigned: anyone who can write to the store could have written it"
        who = f"{obj.fp} ({obj.signer})"
        if self.trust is not None:
            return f"is signed by {who}, which is not trusted for {self.environment} (trusted: {self.trust.describe()})"
        return f"is signed by {who}, not by a key the records around it are signed with"

    def feed(self, obj: _Object) -> None:
        """The next object, in seq order (a seq without an object is simply not fed)."""
        self.fed += 1
        gap = obj.seq > self.expected
        missing = f"seq {self.expected}" if obj.seq == self.expected + 1 else f"seq {self.expected}-{obj.seq - 1}"
        self.expected = obj.seq + 1
        if obj.why is not None:
            self.tentative.append(("limbo", obj, obj.why, obj.why))
            return
        authoritative = self._authoritative(obj)
        if obj.prev == self.head[1]:
            self._link(obj, authoritative)
            return
        if authoritative and self._reroute(obj):
            return
        last = self.tentative[-1] if self.tentative else None
        if authoritative and not gap and last is not None and last[0] == "limbo" and last[1].data is None and last[1].seq == obj.seq - 1:
            # right after an object that is not even a record: it is this log's damaged record (its hash, which
            # this one chains to, is lost), the link cannot be checked
            self._settle(len(self.tentative) - 1, chain_at=True)
            self.head = self.base = (last[1].seq, "")
            self._link(obj, True)
            return
        if gap:
            problem = f"record(s) {missing} before it are missing (deleted)"
            alone = f"stands after {missing}, where nothing is stored, and no record of this log chains to it"
        else:
            problem = "does not chain to the record before it (prev_hash mismatch): records were reordered, replaced or edited"
            alone = "does not chain to the record before it (its prev_hash names no record of this log)"
        self.tentative.append(("limbo", obj, problem, alone))

    def _link(self, obj: _Object, authoritative: bool) -> None:
        if authoritative:
            self._settle(len(self.tentative))  # the tentative members are links of its chain; the rest it skips
        self.members[obj.seq] = obj
        self.head = (obj.seq, obj.claimed or "")
        if authoritative:
            self.base = self.head
        else:
            why = self._untrusted(obj)
            self.tentative.append(("pending", obj, why, why))

    def _reroute(self, obj: _Object) -> bool:
        """An authoritative record that chains to an earlier point than the newest member: the base, a tentative
        member (those after it are not the log's), or the hash an undecided object claims (it is the log's, damaged)."""
        if obj.prev == self.base[1]:
            self._settle(0)
            self.head = self.base
            self._link(obj, True)
            return True
        for i, (kind, t, _, _) in enumerate(self.tentative):
            if t.claimed is None or obj.prev != t.claimed:
                continue
            if kind == "pending":
                self._settle(i + 1)
            else:
                self._settle(i, chain_at=True)
            self.head = self.base = (t.seq, t.claimed)
            self._link(obj, True)
            return True
        return False

    def _settle(self, keep: int, *, chain_at: bool = False) -> None:
        """Decide the tentative entries: those before `keep` are in the chain (members kept, objects skipped);
        with `chain_at`, the one at `keep` is a damaged record of the log; the rest are not the log's."""
        for i, (kind, t, problem, alone) in enumerate(self.tentative):
            if i < keep:
                if kind == "limbo":
                    self.ignored[t.seq] = (t.key, alone)
            elif i == keep and chain_at:
                self.members[t.seq] = t
                self.damaged.add(t.seq)
                self.problems.append((t.seq, t.key, problem))
            else:
                if kind == "pending":
                    self.members.pop(t.seq, None)
                self.ignored[t.seq] = (t.key, alone)
        self.tentative = []

    def finish(self, hint: int) -> _Walk:
        """Decide what is still tentative, given the head hint (the seq the last append reported)."""
        keep = max((i for i, (kind, t, _, _) in enumerate(self.tentative) if kind == "pending" and t.seq <= hint), default=-1)
        for i, (kind, t, problem, alone) in enumerate(self.tentative):
            if i <= keep:
                if kind == "limbo":
                    self.ignored[t.seq] = (t.key, alone)
            elif kind == "pending":
                self.members.pop(t.seq, None)
                self.ignored[t.seq] = (t.key, alone)
            elif t.seq <= hint:
                self.members[t.seq] = t
                self.damaged.add(t.seq)
                self.problems.append((t.seq, t.key, problem))
            else:
                self.ignored[t.seq] = (t.key, alone)
        self.tentative = []
        good = [seq for seq in self.members if seq not in self.damaged]
        if good:
            newest = max(good)
            obj = self.members[newest]
            self.tip = (newest, obj.claimed or "") if obj is not None else (newest, self.anchor_hash)
        else:
            self.tip = (self.anchor, self.anchor_hash)
        return self

    @property
    def tail(self) -> int:
        """The seq of the newest record of the log (damaged or not)."""
        return max(self.members, default=self.anchor)

    def record_members(self) -> list[tuple[int, _Object | None]]:
        """(seq, object) of the log's records the walk read, oldest first (the anchor's object may be None)."""
        return sorted(self.members.items())


class ActivityLog:
    """The activity logs of every environment in a Store.

    Besides the records, each environment's prefix `activity/<env>/` holds:
        head.json                       {"seq": n}: where the tail was, a hint only (never trusted; a wrong
                                        one costs a few probes); the one object that is ever overwritten
        by-package/<sha>/<seq>.json     a deploy record's locator, written with it: the gate finds the
                                        source's deploys of a package without reading the whole log
        by-archive/<sha>/<seq>.json     a backup-download record's locator under the archive's sha256: a
                                        restore finds where an archive came from without reading the log
        by-key/<key>/<seq>.json         the locator of the record of an idempotency key: a retried operation
                                        finds its stored record; written last, so it also says that the
                                        record's other locators were written
        checkpoints/<slot>.json         for every CHECKPOINT_EVERY seqs (slot = a multiple of it), signed by
                                        the appender of the slot's first record after it verified the records
                                        since the previous checkpoint: the gate verifies only from the newest
                                        checkpoint a trusted key signed

    Anyone who may create objects under the prefix can put anything at a seq not yet taken. Such an object
    is not a record of this log (see `_Walk`): appends skip it (the next record takes the first free seq
    and chains to the log's last record), the gate and `verify` ignore it, and `verify` names it.
    """

    def __init__(self, store: Store, *, signer: Signer | None = None, budget: float | None = None, trust: Trust | None = None) -> None:
        self.store = store
        self.signer = signer
        # An appender's trust (signing.appender_trust): the keys whose records it chains to and checkpoints
        # over. Without it, a record the head hint names is taken with its key when this key has no
        # checkpoint (a rotated key's first append): anyone who may create objects could have made it.
        self.trust = trust
        self._budget = budget
        self._own_fingerprint: str | None = None
        # the chain verify_recent followed, by environment: the gate's evidence even without a locator
        self._walks: dict[str, _Walk] = {}

    @property
    def budget(self) -> float:
        """Seconds an append keeps trying: the constructor's, else `append_budget()`."""
        return self._budget if self._budget is not None else append_budget()

    @staticmethod
    def _check_env(environment: str) -> str:
        if not _ENV.fullmatch(environment):
            raise UserError(f"environment name {environment!r}: expected letters, digits, '.', '_' and '-'")
        return environment

    @staticmethod
    def key(environment: str, seq: int) -> str:
        """The store key of record `seq` of `environment`."""
        return f"activity/{environment}/{seq:012d}.json"

    @staticmethod
    def head_key(environment: str) -> str:
        """The store key of the environment's tail hint."""
        return f"activity/{environment}/head.json"

    @staticmethod
    def index_key(environment: str, package_sha256: str, seq: int) -> str:
        """The store key of a deploy record's locator under its package hash."""
        return f"activity/{environment}/by-package/{package_sha256}/{seq:012d}.json"

    @staticmethod
    def archive_key(environment: str, archive_sha256: str, seq: int) -> str:
        """The store key of a backup-download record's locator under the archive's hash."""
        return f"activity/{environment}/by-archive/{archive_sha256}/{seq:012d}.json"

    @staticmethod
    def request_key(environment: str, idempotency_key: str, seq: int) -> str:
        """The store key of the locator of the record `seq` that carries `idempotency_key`."""
        return f"activity/{environment}/by-key/{idempotency_key}/{seq:012d}.json"

    @staticmethod
    def checkpoint_key(environment: str, seq: int) -> str:
        """The store key of the checkpoint of the slot of `seq` (a multiple of CHECKPOINT_EVERY)."""
        return f"activity/{environment}/checkpoints/{seq // CHECKPOINT_EVERY * CHECKPOINT_EVERY:012d}.json"

    def _seq_keys(self, environment: str, listed: list[str] | None = None) -> list[tuple[int, str]]:
        """(seq, key) of every object at a record key, by seq; foreign names are ignored."""
        prefix = f"activity/{self._check_env(environment)}/"
        found = []
        for key in self.store.list(prefix) if listed is None else listed:
            m = _SEQ_NAME.fullmatch(key[len(prefix) :])
            if m:
                found.append((int(m.group(1)), key))
        return sorted(found)

    # -- what counts as a record of this log

    def _object(self, environment: str, seq: int, raw: bytes, *, app: str | None, signed: bool) -> _Object:
        """Judge the object stored at record `seq`: why it is not a record of this log, if it is not."""
        key = self.key(environment, seq)
        data: Any = None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            record = ActivityRecord.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            claimed = data.get("hash") if isinstance(data, dict) else None
            return _Object(seq, key, None, f"is not a valid record ({exc})", claimed if isinstance(claimed, str) else None, None, None, None)
        reasons = []
        if record.computed_hash() != record.hash or record_hash(data) != record.hash:
            reasons.append("content was edited (its hash does not match its content)")
        if record.seq != seq or record.environment != environment:
            reasons.append(f"holds seq {record.seq} of {record.environment!r}: records were moved, reordered or copied")
        fp = signer = None
        signature = data.get("signature")
        if signature is None:
            if signed:
                reasons.append("is unsigned: anyone who can write to the store could have written it")
        else:
            found, why = check_signature(data, record.hash)
            if why is not None:
                reasons.append(why)
            else:
                fp, signer = found, str(signature.get("signer")) if isinstance(signature, dict) else None
        if app is not None and record.app != app:
            named = f"app {record.app!r}" if record.app is not None else "no app"
            reasons.append(f"belongs to {named}, not {app!r}: copied from another app's log")
        return _Object(seq, key, data, "; ".join(reasons) or None, record.hash, record.prev_hash, fp, signer)

    def _read_object(self, environment: str, seq: int, *, app: str | None, signed: bool) -> _Object | None:
        raw = self.store.get(self.key(environment, seq))
        return None if raw is None else self._object(environment, seq, raw, app=app, signed=signed)

    def _follow(
        self,
        environment: str,
        anchor: tuple[int, str, _Object | None],
        *,
        app: str | None,
        signed: bool,
        authority: frozenset[str] | None,
        hint: int,
        trust: Trust | None = None,
        leap: Callable[[int], tuple[int, str, _Object | None] | None] | None = None,
        until: int | None = None,
        frontier: int | None = None,
    ) -> tuple[_Walk, int]:
        """Follow the chain from `anchor` through the objects after it, one read each, to the first seq without
        one (past a hole only while the head hint, naming a record of this log, says the log goes on): the walk
        and that free seq. A far object is never reached: nothing lies between it and the log but free seqs.
        After LEAP_AFTER objects (a stale hint) `leap` may name a newer anchor to go on from. `frontier` is
        where an append is known to have reached (default: the hint), see `_Walk.finish`."""
        walk = _Walk(environment, anchor, authority, trust)
        n = anchor[0] + 1
        hint_holds: bool | None = None
        leapt = leap is None
        while until is None or n <= until:
            raw = self.store.get(self.key(environment, n))
            if raw is None:
                if n < hint:
                    if hint_holds is None:
                        named = self._read_object(environment, hint, app=app, signed=signed)
                        hint_holds = named is not None and named.why is None and (authority is None or named.fp in authority)
                    if hint_holds:
                        n += 1
                        continue
                break
            walk.feed(self._object(environment, n, raw, app=app, signed=signed))
            n += 1
            if not leapt and walk.fed >= LEAP_AFTER:
                leapt = True
                assert leap is not None
                newer = leap(n)
                if newer is not None and newer[0] >= n:
                    walk = _Walk(environment, newer, authority, trust)
                    n = newer[0] + 1
        return walk.finish(hint if frontier is None else frontier), n

    def _walk_all(
        self, environment: str, *, app: str | None, signed: bool | None, trust: Trust | None, listed: list[str] | None = None, frontier: int | None = None
    ) -> tuple[_Walk, int]:
        """Follow the chain through every object of the log from genesis (reads everything): the walk and the
        head hint. Without `trust`, the key of the record the hint names is taken for the log's (an append wrote
        it); `signed` None: signatures are required if that record is signed."""
        keys = self._seq_keys(environment, listed)
        raws = self._get_many([key for _, key in keys])
        hint = self._hint(environment)
        raw_hint = next((raw for (seq, _), raw in zip(keys, raws, strict=True) if seq == hint), None)
        named = self._object(environment, hint, raw_hint, app=app, signed=False) if raw_hint is not None else None
        if signed is None:
            signed = named is not None and named.fp is not None
        authority: frozenset[str] | None
        if trust is not None:
            authority = frozenset(trust.fingerprints)
        elif self.signer is not None:
            authority = frozenset({self._signer_fingerprint() or ""})
        else:
            authority = frozenset({named.fp}) if named is not None and named.why is None and named.fp else None
        walk = _Walk(environment, (0, GENESIS, None), authority, trust)
        for (seq, _), raw in zip(keys, raws, strict=True):
            if raw is not None:  # removed while listing: as if it was never there
                walk.feed(self._object(environment, seq, raw, app=app, signed=signed))
        return walk.finish(hint if frontier is None else frontier), hint

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        with ThreadPoolExecutor(max_workers=8) as pool:  # cloud stores: one round trip per object
            return list(pool.map(self.store.get, keys))

    # -- finding the tail without listing the log

    def _hint(self, environment: str) -> int:
        raw = self.store.get(self.head_key(environment))
        try:
            seq = int(json.loads(raw or b"{}").get("seq", 0))
        except (ValueError, TypeError, AttributeError):
            return 0
        return max(seq, 0)

    def tail(self, environment: str, start: int | None = None, *, start_exists: bool = False) -> int:
        """The seq of the newest record of this log (0 if none), found in a few round trips whatever the log's
        length and whatever was planted in it.

        Starts at the record the head hint (or `start`) names and reads on to the first free seq; a hint that
        is missing, wrong or names no record of this log costs O(log n) checkpoint probes, never a listing."""
        self._check_env(environment)
        walk, _ = self._locate(environment, app=None, start=start)
        return walk.tip[0]

    def _locate(self, environment: str, *, app: str | None, start: int | None = None, start_raw: bytes | None = None) -> tuple[_Walk, int]:
        """The chain an append extends and the seq it takes: (walk, first free seq after the log's last record).

        The anchor is the record the head hint names (or `start`, a record a concurrent writer just stored),
        if it is a record of this log signed by this appender's key; signed by another key (the environment's
        previous signer, or anyone's if someone moved the hint), the newest checkpoint of this appender's key
        decides, else that record is taken and its key too. Records after the anchor signed by other keys are
        not chained to: whoever can create objects could have made them."""
        own = self._signer_fingerprint()
        signed = own is not None
        authority = frozenset({own}) if own is not None else None
        if authority is not None and self.trust is not None:
            authority = authority | self.trust.fingerprints
        hint = self._hint(environment) if start is None else start
        anchor: tuple[int, str, _Object | None] | None = None
        # without a record the hint names, where the last append got to is unknown: records of other keys
        # that chain are then kept (a rotated key's, when the hint is lost), not taken for planted ones
        frontier = sys.maxsize
        if hint:
            raw = start_raw if start_raw is not None else self.store.get(self.key(environment, hint))
            named = self._object(environment, hint, raw, app=app, signed=signed) if raw is not None else None
            usable = named is not None and named.why is None and bool(named.claimed)
            if usable:
                frontier = hint
            if named is not None and usable and (authority is None or named.fp in authority):
                anchor = (hint, str(named.claimed), named)
            elif start is not None:
                return self._locate(environment, app=app)  # not ours to chain to: from the head hint
            elif named is not None and usable and authority is not None:
                anchor = self._own_checkpoint(environment, hint, app=app, authority=authority)
                if anchor is None and self.trust is None:
                    anchor = (hint, str(named.claimed), named)
                    authority = authority | {named.fp or ""}
        if anchor is None:
            anchor = self._fallback_anchor(environment, hint, app=app, signed=signed, authority=authority)
        if self.trust is not None and authority is not None:
            # records of keys it does not trust are never chained to, wherever the hint points
            frontier = 0

        def leap(n: int) -> tuple[int, str, _Object | None] | None:
            if authority is not None:
                return self._own_checkpoint(environment, n - 1, app=app, authority=authority, newer=True)
            return self._run_end(environment, n - 1, app=app)

        return self._follow(environment, anchor, app=app, signed=signed, authority=authority, hint=hint, leap=leap, frontier=frontier)

    def _fallback_anchor(
        self, environment: str, hint: int, *, app: str | None, signed: bool, authority: frozenset[str] | None
    ) -> tuple[int, str, _Object | None]:
        """An anchor when the hint names no record of this log: the seq before it, else the newest checkpoint of
        a key in `authority`, else genesis."""
        if hint > 1:
            before = self._read_object(environment, hint - 1, app=app, signed=signed)
            if before is not None and before.why is None and before.claimed and (authority is None or before.fp in authority):
                return hint - 1, before.claimed, before
        if authority is not None:
            found = self._own_checkpoint(environment, hint, app=app, authority=authority)
            if found is not None:
                return found
        return 0, GENESIS, None

    def _own_checkpoint(
        self, environment: str, near: int, *, app: str | None, authority: frozenset[str], newer: bool = False
    ) -> tuple[int, str, _Object | None] | None:
        """The record vouched for by the newest checkpoint signed by a key in `authority`, searched from `near`'s
        slot down (or, with `newer`, up), if that record still holds what the checkpoint vouches for."""

        def accept(slot: int) -> tuple[int, str] | None:
            found = self._checkpoint(environment, slot, authority=authority, app=app)
            return None if found is None else found[:2]

        found = self._newer_checkpoint(environment, near, accept) if newer or not near else self._newest_checkpoint(environment, near, accept)
        if found is None:
            return None
        obj = self._read_object(environment, found[0], app=app, signed=True)
        if obj is None or obj.why is not None or obj.claimed != found[1]:
            return None
        return found[0], found[1], obj

    def _run_end(self, environment: str, start: int, *, app: str | None) -> tuple[int, str, _Object | None] | None:
        """For a log nobody signs (no checkpoints): where the run of objects from `start` ends, found by galloping
        probes and bisection, if a record stands there."""
        exists = lambda seq: self.store.exists(self.key(environment, seq))  # noqa: E731
        lo, step = start, 1
        while exists(lo + step):
            lo, step = lo + step, step * 2
        hi = lo + step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if exists(mid):
                lo = mid
            else:
                hi = mid
        obj = self._read_object(environment, lo, app=app, signed=False)
        return (lo, obj.claimed, obj) if obj is not None and obj.why is None and obj.claimed else None

    # -- checkpoints

    def _checkpoint(self, environment: str, slot: int, *, authority: frozenset[str] | None, app: str | None) -> tuple[int, str, str] | None:
        """(seq, hash, signer's fingerprint) a valid checkpoint of `slot` vouches for (signed by a key in
        `authority`, or any key that verifies without one), else None."""
        raw = self.store.get(self.checkpoint_key(environment, slot))
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            body = {k: v for k, v in doc.items() if k != "signature"}
            seq = body.get("seq")
            if body.get("kind") != "checkpoint" or body.get("environment") != environment or not isinstance(seq, int):
                return None
            if not slot <= seq < slot + CHECKPOINT_EVERY or not isinstance(body.get("hash"), str):
                return None
            if app is not None and body.get("app") != app:
                return None
            found, why = check_signature(doc, record_hash(body))
        except (ValueError, TypeError, AttributeError):
            return None
        if why is not None or found is None or (authority is not None and found not in authority):
            return None
        return seq, str(body["hash"]), found

    @staticmethod
    def _newest_checkpoint(environment: str, near: int, accept: Callable[[int], tuple[int, str] | None]) -> tuple[int, str] | None:
        """What the newest checkpoint `accept` takes at or below `near`'s slot vouches for; None if none.

        O(log) probes whatever `near` is (a head hint a million seqs off costs ~2 log2 probes, never one per
        slot): the slot itself, then exponentially farther down, then bisection between the newest slot taken
        and the oldest refused above it."""
        del environment
        every = CHECKPOINT_EVERY
        slot = near // every * every
        if slot <= 0:
            return None
        got = accept(slot)
        if got is not None:
            return got
        hi, step, low_slot, low = slot, every, 0, None
        while True:
            probe = slot - step
            if probe <= 0:
                break
            got = accept(probe)
            if got is not None:
                low_slot, low = probe, got
                break
            hi, step = probe, step * 2
        return _bisect_slots(low_slot, low, hi, every, accept)

    @staticmethod
    def _newer_checkpoint(environment: str, after: int, accept: Callable[[int], tuple[int, str] | None]) -> tuple[int, str] | None:
        """What the newest checkpoint `accept` takes above `after`'s slot vouches for (galloping up, then bisection); None if the next slot's is not."""
        del environment
        every = CHECKPOINT_EVERY
        base = after // every * every
        low_slot, low, step = base, None, every
        while True:
            got = accept(base + step)
            if got is None:
                hi = base + step
                break
            low_slot, low, step = base + step, got, step * 2
        if low is None:
            return None
        return _bisect_slots(low_slot, low, hi, every, accept)

    # -- appending

    def append(
        self,
        environment: str,
        *,
        actor: str,
        action: str,
        package_sha256: str,
        package_version: str | None,
        changes: dict[str, Any],
        time: str | None = None,
        artifact: str | None = None,
        app: str | None = None,
        idempotency_key: str | None = None,
        superseded_by: str | None = None,
        image: dict[str, Any] | None = None,
        instances: int | None = None,
        role: str | None = None,
    ) -> ActivityRecord:
        """Append a signed record to the environment's chain exactly once; safe against any number of
        concurrent writers, lost answers and killed writers, and against objects planted in the log.

        `idempotency_key` names the operation: an append with the key of a record already stored returns
        that record instead of writing another (give the same key when retrying the same operation; without
        one, a key is made for this call, which still makes its own retries exactly once). With
        `superseded_by` (an action, e.g. "destroy"), a stored record with the key counts only if no record
        of that action of the same app follows it: a create after a destroy is a new operation.

        The record takes the first free seq after the log's last record and chains to that record: objects
        in between that are not records of this log (junk, broken hashes, other environments' or apps'
        records, records that do not chain, records signed by keys other than the one the log's records
        around them are signed with) are skipped, so a planted object never stops appends and is never
        chained to. An object planted far ahead is never read.

        Conflicts and transient store errors are retried with jittered backoff for `budget` seconds. A few
        round trips whatever the history: the head hint, the record it names, a probe of the next seq (plus
        one read per object planted right after the last record), the probe of that record's key locator (a
        killed writer's missing indexes are written then), the conditional create, the package locator, the
        key's locator and the hint again (plus a checkpoint every CHECKPOINT_EVERY records)."""
        self._check_env(environment)
        when = time or utc_now()
        canonical_json(changes)  # fail now, not after winning a seq, if `changes` is not JSON
        if idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise ValueError(f"idempotency key {idempotency_key!r}: expected up to 128 of [A-Za-z0-9_.+=@-]")
        key = idempotency_key or uuid.uuid4().hex
        body: dict[str, Any] = {
            "environment": environment,
            "time": when,
            "actor": actor,
            "action": action,
            "package_sha256": package_sha256,
            "package_version": package_version,
            "artifact": artifact,
            "changes": changes,
        }
        if app is not None:
            body["app"] = app
        if image is not None:
            body["image"] = image
        if instances is not None:
            body["instances"] = int(instances)
        if role is not None:
            body["role"] = role
        body["idempotency_key"] = key
        budget = self.budget
        deadline = _now() + budget
        lost_race = False
        # a fresh key cannot have been stored by an earlier run: only a caller's key is looked up
        looked_up = idempotency_key is None
        start: int | None = None  # a seq another writer just took: the chain goes on from there
        taken: bytes | None = None  # what was found there (saves a round trip)
        unknown: int | None = None  # a seq whose conditional create failed without an answer
        attempt, cause = 0, "no attempt finished"
        while True:
            try:
                if unknown is not None:
                    # the store may have kept that write: it is this append's if it carries the key
                    own = self._own_record(environment, unknown, key)
                    if own is not None:
                        return self._finish(own)
                    unknown = None
                walk, seq = self._locate(environment, app=app, start=start, start_raw=taken)
                start = taken = None
                tail, prev_hash = walk.tip
                tip = walk.members.get(tail)
                data = tip.data if tip is not None else None
                if data is not None and self._is_own(data, key, environment, tail):
                    return self._finish(ActivityRecord.from_json(data))
                self._heal(environment, tail, data)
                if not looked_up:
                    own = self._find_own(environment, key, tail, superseded_by)
                    looked_up = True
                    if own is not None:
                        return self._finish(own)
                record = self._signed({**body, "seq": seq, "prev_hash": prev_hash if tail else GENESIS})
                try:
                    stored = self.store.put(self.key(environment, seq), _encode(record), if_absent=True)
                except StoreError as exc:
                    if exc.transient:
                        unknown = seq
                    raise
                if stored:
                    return self._finish(record, prev_seq=tail)
                # the seq is taken: by this very append when the store kept a write whose answer was lost
                # (until it is read back, it may be: a failed read must not let the append move on)
                unknown = seq
                taken = self.store.get(self.key(environment, seq))
                found = _parse(taken) if taken is not None else None
                if found is not None and self._is_own(found, key, environment, seq):
                    return self._finish(ActivityRecord.from_json(found))
                unknown = None
                start = seq if taken is not None else None
                cause, lost_race = f"other writers took seq {seq}", True
            except StoreError as exc:
                if not exc.transient:
                    raise
                cause, lost_race = exc.cause or str(exc), False
            attempt += 1
            if lost_race:
                pause = random.uniform(0.0, BACKOFF_MAX)
            else:
                pause = random.uniform(0.0, min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(attempt, 16)))
            if _now() + pause > deadline:
                raise self._gave_up(environment, key, idempotency_key is not None, budget, attempt, cause, unknown)
            _sleep(pause)

    def _signed(self, body: dict[str, Any]) -> ActivityRecord:
        """The record of `body` with its hash and (with a signer) its signature."""
        digest = record_hash(body)
        signature = self.signer.signature(digest) if self.signer is not None else None
        return ActivityRecord(**body, hash=digest, signature=signature)

    def _gave_up(
        self, environment: str, key: str, stable: bool, budget: float, attempts: int, cause: str, unknown: int | None
    ) -> StoreError:
        """The error of an append that ran out of time, saying what was (not) stored and what to do."""
        again = "retry the operation (with the same idempotency key it is recorded once)" if stable else "run the command again"
        if unknown is None:
            stored = "nothing of this append was stored"
        else:
            # the last write got no answer and could not be read back either
            stored = (
                f"the write of seq {unknown} got no answer and could not be read back: "
                f"`mxinfra activity -e {environment}` shows whether it is there (idempotency key {key})"
            )
        return StoreError(
            self.store.url,
            f"could not append to the activity log of {environment} within {budget:.0f} s ({attempts} attempts; "
            f"last: {cause}); {stored}. Check that the store is reachable, then {again}; under heavy contention "
            f"give appends more time with {BUDGET_VARIABLE}=SECONDS",
        )

    def _signer_fingerprint(self) -> str | None:
        if self.signer is None:
            return None
        if self._own_fingerprint is None:
            self._own_fingerprint = fingerprint(self.signer.public_key_der())
        return self._own_fingerprint

    def _is_own(self, data: dict[str, Any], key: str, environment: str, seq: int) -> bool:
        """Whether a stored record is this appender's record of the operation `key`: intact, in its place,
        and signed by this appender's key (a record anyone could write proves nothing)."""
        if data.get("idempotency_key") != key or data.get("seq") != seq or data.get("environment") != environment:
            return False
        if record_hash(data) != data.get("hash"):
            return False
        mine = self._signer_fingerprint()
        if mine is None:
            return True
        found, why = check_signature(data, str(data.get("hash")))
        return why is None and found == mine

    def _own_record(self, environment: str, seq: int, key: str) -> ActivityRecord | None:
        """The record at `seq` if it is this appender's record of `key`, else None."""
        _, data, _ = self._read(self.key(environment, seq))
        if data is None or not self._is_own(data, key, environment, seq):
            return None
        return ActivityRecord.from_json(data)

    def _find_own(self, environment: str, key: str, tail: int, superseded_by: str | None) -> ActivityRecord | None:
        """An earlier run's stored record of `key`, found by its locator (only the tail, checked before, can
        lack one: each appender heals the record it chains to before it appends)."""
        prefix = f"activity/{environment}/by-key/{key}/"
        seqs = sorted(
            {int(m.group(1)) for k in self.store.list(prefix) if (m := _SEQ_NAME.fullmatch(k[len(prefix) :]))},
            reverse=True,
        )
        for seq in seqs:
            if seq > tail:
                continue  # a locator of no record: written by someone else than an appender
            own = self._own_record(environment, seq, key)
            if own is None:
                continue
            if superseded_by is not None and self._followed_by(environment, seq, tail, superseded_by, own.app):
                return None
            return own
        return None

    def _followed_by(self, environment: str, seq: int, tail: int, action: str, app: str | None) -> bool:
        """Whether a record of `action` of `app` lies after `seq` (read back from the tail, a batch at a time);
        only records this appender's key signed count (anyone could plant a "destroy")."""
        mine = self._signer_fingerprint()
        top = tail
        while top > seq:
            low = max(seq + 1, top - 7)
            batch = [(s, self.key(environment, s)) for s in range(top, low - 1, -1)]
            for s, _, data, _ in self._read_keys(batch):
                if data is None or data.get("action") != action or data.get("app") != app:
                    continue
                if record_hash(data) != data.get("hash") or data.get("seq") != s:
                    continue
                if mine is not None and check_signature(data, str(data.get("hash")))[0] != mine:
                    continue
                return True
            top = low - 1
        return False

    def _finish(self, record: ActivityRecord, prev_seq: int | None = None) -> ActivityRecord:
        """Write a stored record's side indexes and the head hint; the record is the append's result.
        `prev_seq` is the record it chains to, when known (a checkpoint goes to the first record of a slot)."""
        env = record.environment
        try:
            self._write_indexes(env, record.seq, record.to_json(), prev_seq=prev_seq)
        except StoreError as exc:
            if not exc.transient:
                raise
            # the record is stored: the next appender writes what is missing (it heals the tail it reads)
        # the hint is advisory: under a container-wide immutability policy it cannot be rewritten, and
        # then the tail is found from the last hint that was written
        with contextlib.suppress(StoreError):
            self.store.put(self.head_key(env), _json({"seq": record.seq}))
        return record

    @staticmethod
    def _first_in_slot(seq: int, prev_seq: int | None) -> bool:
        """Whether record `seq` is the first record of its checkpoint slot (its predecessor `prev_seq` lies in
        an earlier one; unknown: assume the seq before it, as when nothing was skipped)."""
        if seq < CHECKPOINT_EVERY:
            return False
        prev = seq - 1 if prev_seq is None else prev_seq
        return prev // CHECKPOINT_EVERY < seq // CHECKPOINT_EVERY

    def _write_indexes(
        self, environment: str, seq: int, data: dict[str, Any], listed: set[str] | None = None, prev_seq: int | None = None
    ) -> tuple[int, int]:
        """Write record `seq`'s missing side indexes, idempotently: (locators, checkpoints) written.

        The key's locator comes last: once it exists, so does the package locator (the one probe that tells
        a healer there is nothing to do). `listed` is what a listing found (no probes then)."""
        locators = checkpoints = 0
        present = (lambda k: k in listed) if listed is not None else (lambda k: False)  # noqa: E731
        if data.get("action") == "deploy" and isinstance(data.get("package_sha256"), str):
            index = self.index_key(environment, data["package_sha256"], seq)
            if not present(index) and self.store.put(index, _json({"seq": seq, "hash": data.get("hash")}), if_absent=True):
                locators += 1
        if self.signer is not None and self._first_in_slot(seq, prev_seq):
            checkpoint = self.checkpoint_key(environment, seq)
            if not present(checkpoint) and self._write_checkpoint(ActivityRecord.from_json(data)):
                checkpoints += 1
        archive = _downloaded_archive(data)
        if archive is not None:
            index = self.archive_key(environment, archive, seq)
            if not present(index) and self.store.put(index, _json({"seq": seq, "hash": data.get("hash")}), if_absent=True):
                locators += 1
        key = data.get("idempotency_key")
        if isinstance(key, str) and _IDEMPOTENCY_KEY.fullmatch(key):
            locator = self.request_key(environment, key, seq)
            if not present(locator) and self.store.put(locator, _json({"seq": seq, "hash": data.get("hash")}), if_absent=True):
                locators += 1
        return locators, checkpoints

    def _heal(self, environment: str, seq: int, data: dict[str, Any] | None) -> tuple[int, int]:
        """Write what a killed writer of record `seq` left missing; (locators, checkpoints) written."""
        if not seq or data is None or data.get("seq") != seq:
            return 0, 0  # nothing to chain to, or a damaged record: verify names it
        key = data.get("idempotency_key")
        # one probe: the key's locator is written last, so its writer (or a healer) wrote the others before
        done = isinstance(key, str) and bool(_IDEMPOTENCY_KEY.fullmatch(key)) and self.store.exists(self.request_key(environment, key, seq))
        locators, checkpoints = (0, 0) if done else self._write_indexes(environment, seq, data)
        if done and self.signer is not None and seq % CHECKPOINT_EVERY == 0:
            # a checkpoint needs a signer: a writer without one (or the gate) may have healed the locators only
            if not self.store.exists(self.checkpoint_key(environment, seq)) and self._write_checkpoint(ActivityRecord.from_json(data)):
                checkpoints += 1
        # a killed writer's temporary files are left to `repair`: finding them walks the log's directory,
        # too much for every append that meets a record whose (live) writer is still writing its locators
        return locators, checkpoints

    def _write_checkpoint(self, record: ActivityRecord) -> bool:
        """Sign 'records up to this one chain correctly' for the slot of `record` after checking the records
        since the previous checkpoint; whether a checkpoint was written (never for a damaged chain, nor twice).

        The previous checkpoint is this key's, or another key's that still matches the record it vouches for
        (a checkpoint someone planted with a key of their own is passed over, not trusted)."""
        assert self.signer is not None
        environment = record.environment
        slot = record.seq // CHECKPOINT_EVERY * CHECKPOINT_EVERY
        if slot == 0:
            return False
        mine = self._signer_fingerprint() or ""
        signer_fp = check_signature(record.to_json(), record.hash)[0]
        if self.trust is not None:
            # with trust, the record's own signer counts only if trusted (repair checkpoints others' records)
            authority = self.trust.fingerprints | {mine}
            if signer_fp not in authority:
                return False
        else:
            authority = frozenset({mine} | ({signer_fp} if signer_fp else set()))

        def accept(candidate: int) -> tuple[int, str] | None:
            found = self._checkpoint(environment, candidate, authority=None, app=record.app)
            if found is None:
                return None
            if found[2] not in authority and (self.trust is not None or self._stored_hash(environment, found[0]) != found[1]):
                return None  # with trust: only its keys' checkpoints start a walk (another key's may vouch for anything)
            return found[:2]

        start = self._newest_checkpoint(environment, slot - 1, accept) or (0, GENESIS)
        walk, _ = self._follow(environment, (*start, None), app=record.app, signed=True, authority=authority, hint=record.seq, until=record.seq)
        held = walk.members.get(record.seq)
        if walk.problems or held is None or record.seq in walk.damaged or held.claimed != record.hash:
            return False  # never vouch for a damaged chain: readers then verify from an older checkpoint
        if self.trust is not None and any(o is not None and o.fp not in authority for seq, o in walk.members.items() if seq > start[0]):
            return False  # nor for one through a record no key it trusts signed: readers would start past it
        body = {
            "kind": "checkpoint",
            "environment": environment,
            "app": record.app,
            "seq": record.seq,
            "hash": record.hash,
            "from_seq": start[0],
        }
        digest = record_hash(body)
        doc = {**body, "signature": self.signer.signature(digest)}
        return self.store.put(self.checkpoint_key(environment, record.seq), _json(doc), if_absent=True)

    # -- repairing

    def repair(self, environment: str, *, older_than: float = TEMPORARY_AGE) -> Repairs:
        """Write every side index killed or interrupted writers left missing for the records of the log (the
        locators; the checkpoints when this log has a signer), bring the head hint to the log's last record,
        and remove their temporary files (only those of writers that are gone, or untouched for `older_than`
        seconds). Objects that are not records of this log are named and left in place: repair never deletes
        anything of the log, and never indexes or points the hint at such an object.

        Reads the whole log, like verify; writes only what is missing, with conditional creates."""
        prefix = f"activity/{self._check_env(environment)}/"
        listed = self.store.list(prefix)
        present = set(listed)
        found = Repairs()
        # with an appender's trust: the chain its keys make, whatever the hint names (a record of another key
        # there is named, never indexed, checkpointed or pointed at); without, as verify reads the log
        if self.trust is not None:
            walk, hint = self._walk_all(environment, app=None, signed=True, trust=self.trust, listed=listed, frontier=0)
        else:
            walk, hint = self._walk_all(environment, app=None, signed=None, trust=None, listed=listed)
        prev = 0
        for seq, obj in walk.record_members():
            if obj is None or obj.data is None or obj.why is not None or seq in walk.damaged:
                prev = seq
                continue  # verify names a damaged record; an index of it would help no one
            locators, checkpoints = self._write_indexes(environment, seq, obj.data, present, prev_seq=prev)
            found.locators += locators
            found.checkpoints += checkpoints
            if self.signer is None and self._first_in_slot(seq, prev) and self.checkpoint_key(environment, seq) not in present:
                found.unsigned_checkpoints += 1
            prev = seq
        found.temporaries = self.store.clean_temporaries(prefix, older_than=older_than)
        tail = walk.tip[0]
        if tail and hint != tail:
            with contextlib.suppress(StoreError):
                self.store.put(self.head_key(environment), _json({"seq": tail}))
                found.head = 1
        found.ignored = [(key, why) for _, (key, why) in sorted(walk.ignored.items())]
        return found

    # -- reading

    def _read(self, key: str) -> tuple[str, dict[str, Any] | None, str | None]:
        """(key, parsed dict or None, problem or None) of one stored record."""
        raw = self.store.get(key)
        if raw is None:
            return key, None, "disappeared while reading"
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            ActivityRecord.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            return key, None, f"is not a valid record ({exc})"
        return key, data, None

    def _read_keys(self, keys: list[tuple[int, str]]) -> list[tuple[int, str, dict[str, Any] | None, str | None]]:
        with ThreadPoolExecutor(max_workers=8) as pool:  # cloud stores: one round trip per record
            read = list(pool.map(self._read, [k for _, k in keys]))
        return [(seq, key, data, problem) for (seq, _), (key, data, problem) in zip(keys, read, strict=True)]

    def records(self, environment: str) -> list[ActivityRecord]:
        """The records of the environment's log, oldest first: objects that are not records of this log are left
        out (verify names them); UserError if a record of the log is unreadable (run verify)."""
        walk, _ = self._walk_all(environment, app=None, signed=False, trust=None)
        out = []
        for seq, obj in walk.record_members():
            if obj is None:
                continue
            if obj.data is None:
                raise UserError(f"{self.store.url}: {obj.key} (seq {seq}) {obj.why}: run `mxinfra activity verify`")
            out.append(ActivityRecord.from_json(obj.data))
        return out

    def environments(self) -> list[str]:
        """Every environment that has a log, sorted."""
        envs = {k.split("/")[1] for k in self.store.list("activity/") if k.count("/") == 2}
        return sorted(envs)

    # -- verifying

    def _examined(self, environment: str, *, signed: bool, trust: Trust | None, app: str | None) -> tuple[_Walk, list[tuple[int, str, str]]]:
        """The whole chain (every object read) and its problems, as `examine` reports them."""
        walk, _ = self._walk_all(environment, app=app, signed=signed, trust=trust)
        problems = list(walk.problems)
        if trust is not None or signed:
            for seq, obj in walk.record_members():
                if obj is None or seq in walk.damaged:
                    continue
                if obj.fp is None:
                    problems.append((seq, obj.key, "is unsigned: anyone who can write to the store could have written it"))
                elif trust is not None and obj.fp not in trust.fingerprints:
                    problems.append((seq, obj.key, f"is signed by {obj.fp} ({obj.signer}), which is not trusted for {environment} (trusted: {trust.describe()})"))
        return walk, problems

    def trusted_records(self, environment: str, *, trust: Trust, app: str | None) -> list[ActivityRecord]:
        """The records of the environment's chain as the gate reads it (only keys in `trust` decide where it
        goes: an object of another key cannot reroute it past a genuine record), oldest first; UserError
        naming the problems if that chain does not verify (a log that does not verify proves nothing)."""
        walk, problems = self._examined(environment, signed=True, trust=trust, app=app)
        if problems:
            shown = "; ".join(f"seq {seq} ({key}): {why}" for seq, key, why in sorted(problems)[:3])
            more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
            raise UserError(f"{self.store.url}: the activity log of {environment!r} does not verify: {shown}{more} (run `mxinfra activity verify -e {environment}`)")
        return [ActivityRecord.from_json(obj.data) for seq, obj in walk.record_members() if obj is not None and obj.data is not None and seq not in walk.damaged]

    def examine(self, environment: str, *, signed: bool = False, trust: Trust | None = None, app: str | None = None) -> Examination:
        """Read every object of the log: the damage to the chain of its records (problems) and, apart, the
        objects that are not records of this log (ignored: planted, or written by a key the chain does not go
        through). A present signature is always checked; with `signed` an unsigned record is not a record of
        the log; with `trust` a record signed by another key is not one (or, if the chain goes through it, a
        problem); with `app` a record of another app is not one."""
        walk, problems = self._examined(environment, signed=signed, trust=trust, app=app)
        records = sum(1 for seq, obj in walk.record_members() if obj is not None and seq not in walk.damaged)
        ignored = [(seq, key, why) for seq, (key, why) in sorted(walk.ignored.items())]
        return Examination(environment, sorted(problems), ignored, records, walk.tip[0])

    def verify(
        self, environment: str, *, signed: bool = False, trust: Trust | None = None, app: str | None = None
    ) -> list[str]:
        """[] if the chain is intact and nothing else is stored at its record keys; else one message per
        problem and per object that is not a record of this log (naming seq and key), and, when objects were
        ignored, a last line saying whether the chain itself is intact (see `examine`)."""
        return self.examine(environment, signed=signed, trust=trust, app=app).messages()

    def verify_recent(
        self, environment: str, *, trust: Trust, app: str | None, verified: tuple[int, str] | None = None
    ) -> tuple[int, list[str]]:
        """(tail seq, problems) checking the chain from the newest trusted checkpoint to the tail.

        The cost is at most CHECKPOINT_EVERY records (plus one read per object planted among them) and a
        few probes, whatever the log's length and wherever objects were planted: the records before the
        checkpoint were verified by the trusted key that signed it, and the walk from it stops at the first
        free seq past the head hint. Objects that are not records of this log are ignored (never evidence,
        never a problem). `verified` is a (seq, hash) this machine verified before: when it is newer than the
        checkpoint and the log still holds it, verification starts there instead."""
        self._check_env(environment)
        hint = self._hint(environment)
        authority = frozenset(trust.fingerprints)

        def accept(slot: int) -> tuple[int, str] | None:
            found = self._checkpoint(environment, slot, authority=authority, app=app)
            return None if found is None else found[:2]

        start = self._newest_checkpoint(environment, hint, accept) if hint else self._newer_checkpoint(environment, 0, accept)
        anchor: tuple[int, str, _Object | None] = (0, GENESIS, None)
        if start is not None:
            held = self._read_object(environment, start[0], app=app, signed=True)
            if held is None or held.data is None or record_hash(held.data) != start[1] or held.claimed != start[1]:
                return start[0], [f"seq {start[0]} ({self.key(environment, start[0])}): differs from its signed checkpoint"]
            anchor = (start[0], start[1], held)
        if verified is not None and anchor[0] < verified[0]:
            held = self._read_object(environment, verified[0], app=app, signed=True)
            if held is not None and held.why is None and held.claimed == verified[1]:
                anchor = (verified[0], verified[1], held)

        def leap(n: int) -> tuple[int, str, _Object | None] | None:
            found = self._newer_checkpoint(environment, n - 1, accept)
            if found is None:
                return None
            held = self._read_object(environment, found[0], app=app, signed=True)
            return (found[0], found[1], held) if held is not None and held.why is None and held.claimed == found[1] else None

        walk, _ = self._follow(environment, anchor, app=app, signed=True, authority=authority, hint=hint, trust=trust, leap=leap)
        self._walks[environment] = walk
        problems = [f"seq {seq} ({key}): {why}" for seq, key, why in sorted(walk.problems)]
        base = walk.members.get(walk.base[0])
        if not problems and base is not None and base.data is not None:
            # a killed writer's record lacks its locators until the next append; a gate that may write
            # heals them now (a read-only one still finds the deploy among the records it read)
            with contextlib.suppress(StoreError):
                self._heal(environment, walk.base[0], base.data)
        return walk.tail, problems

    def recent(self, environment: str, *, trust: Trust, app: str | None) -> tuple[list[ActivityRecord], list[str]]:
        """(records, problems): the records `verify_recent` verified, from the newest trusted checkpoint to the
        tail, oldest first. What the newest records say, at a cost that does not grow with the history."""
        _, problems = self.verify_recent(environment, trust=trust, app=app)
        walk = self._walks[environment]
        records = []
        for seq, obj in walk.record_members():
            if obj is None or obj.data is None or seq in walk.damaged or seq in walk.ignored:
                continue
            if obj.fp not in trust.fingerprints:
                # as `verify` judges it: the chain goes through a record no trusted key signed
                problems.append(f"seq {seq} ({obj.key}): {walk._untrusted(obj)}")
            records.append(ActivityRecord.from_json(obj.data))
        return records, problems

    def earlier(self, environment: str, record: ActivityRecord) -> ActivityRecord | None:
        """The record `record` chains to (None after genesis), read back from its seq past objects that are
        not it. Its content hashes to the `prev_hash` that `record` names, so it is as verified as `record`.
        UserError when the log no longer holds it (run `mxinfra activity verify`)."""
        if record.prev_hash == GENESIS:
            return None
        for seq in range(record.seq - 1, 0, -1):
            _, data, _ = self._read(self.key(environment, seq))
            if data is not None and data.get("hash") == record.prev_hash and record_hash(data) == record.prev_hash:
                return ActivityRecord.from_json(data)
        raise UserError(
            f"{self.store.url}: the record before seq {record.seq} of {environment!r} (hash {record.prev_hash[:16]}) "
            "is missing: run `mxinfra activity verify`"
        )

    def last_record(self, environment: str, *, app: str | None = None) -> ActivityRecord | None:
        """The newest record of the environment's log that says what runs (not an intent; None if there is
        none), in a few round trips whatever its length: what a record that changes no workload (a backup,
        a grant) names as running."""
        self._check_env(environment)
        walk, _ = self._locate(environment, app=app)
        obj = walk.members.get(walk.tip[0])
        record = ActivityRecord.from_json(obj.data) if obj is not None and obj.data is not None else None
        while record is not None and record.action == INTENT:
            record = self.earlier(environment, record)  # an intent says what was about to run, not what runs
        return record

    def _stored_hash(self, environment: str, seq: int) -> str | None:
        """The hash of the record at `seq`, only if its content still hashes to it (else None)."""
        _, data, _ = self._read(self.key(environment, seq))
        if data is None or record_hash(data) != data.get("hash"):
            return None
        return str(data["hash"])

    def deploy_evidence(
        self,
        environment: str,
        package_sha256: str,
        *,
        artifact: str | None,
        trust: Trust,
        app: str | None,
        tail: int,
    ) -> tuple[ActivityRecord | None, list[str]]:
        """A deploy record of this package (and artifact) that counts, found by its locator; else the reasons
        each candidate was refused. Reads the locators of this package and one or two records each (a few more
        when objects were planted right after one)."""
        walk = self._walks.get(environment)
        members = walk.members if walk is not None else {}
        ignored = walk.ignored if walk is not None else {}
        damaged = walk.damaged if walk is not None else set()
        prefix = f"activity/{environment}/by-package/{package_sha256}/"
        seqs = {int(m.group(1)) for k in self.store.list(prefix) if (m := _SEQ_NAME.fullmatch(k[len(prefix) :]))}
        # deploys among the records verify_recent read count even if a killed writer left no locator
        seqs |= {
            s
            for s, o in members.items()
            if o is not None and o.data is not None and s not in damaged
            and o.data.get("action") == "deploy" and o.data.get("package_sha256") == package_sha256
        }
        authority = frozenset(trust.fingerprints)
        refused = []
        for seq in sorted(seqs, reverse=True):
            key = self.key(environment, seq)
            where = f"seq {seq} ({key})"
            if seq in ignored:
                refused.append(f"{where}: {ignored[seq][1]}; not a record of this log")
                continue
            if seq > tail:
                continue
            obj = members.get(seq)
            if obj is None:
                obj = self._read_object(environment, seq, app=app, signed=True)
                if obj is None:
                    refused.append(f"{where}: disappeared while reading")
                    continue
            why = [obj.why] if obj.why is not None else []
            if not why and obj.fp not in authority:
                why.append(f"is signed by {obj.fp} ({obj.signer}), which is not trusted for {environment} (trusted: {trust.describe()})")
            data = obj.data or {}
            if not why and (data.get("action") != "deploy" or data.get("package_sha256") != package_sha256):
                why.append("is not a deploy of this package")
            if not why:
                trusted, verdict = judge_deploy(ActivityRecord.from_json(data), trust, app)
                if not trusted:  # the rule promote and trace apply, word for word
                    why.append(verdict)
            if not why and artifact is not None and data.get("artifact") != artifact:
                continue  # the same package with another image: not what this stack runs
            if not why and seq < tail and not self._chained_to(environment, obj, walk, authority, app=app, tail=tail):
                why.append("is not the record its successor chains to (replaced)")
            if why:
                refused.append(f"{where}: {'; '.join(why)}")
                continue
            return ActivityRecord.from_json(data), refused
        return None, refused

    def archive_evidence(self, environment: str, archive_sha256: str, *, trust: Trust, app: str | None) -> tuple[ActivityRecord | None, list[str]]:
        """A backup-download record of this environment naming an archive with this sha256, signed by a key of
        `trust`, found by its locator (one listing and a read per candidate, whatever the log's length);
        else the reasons each candidate was refused. What `restore --archive` asks of where an archive came from."""
        self._check_env(environment)
        if not re.fullmatch(r"[0-9a-f]{64}", archive_sha256):
            return None, [f"{archive_sha256!r} is not a sha256"]
        prefix = f"activity/{environment}/by-archive/{archive_sha256}/"
        seqs = {int(m.group(1)) for k in self.store.list(prefix) if (m := _SEQ_NAME.fullmatch(k[len(prefix) :]))}
        refused = []
        for seq in sorted(seqs, reverse=True):
            where = f"seq {seq} ({self.key(environment, seq)})"
            obj = self._read_object(environment, seq, app=app, signed=True)
            if obj is None:
                refused.append(f"{where}: not in the log")
                continue
            why = [obj.why] if obj.why is not None else []
            if not why and obj.fp not in trust.fingerprints:
                why.append(f"is signed by {obj.fp} ({obj.signer}), which is not trusted for {environment} (trusted: {trust.describe()})")
            if not why and _downloaded_archive(obj.data or {}) != archive_sha256:
                why.append("is not a download of this archive")
            if why:
                refused.append(f"{where}: {'; '.join(why)}")
                continue
            return ActivityRecord.from_json(obj.data or {}), refused
        return None, refused

    def _chained_to(self, environment: str, obj: _Object, walk: _Walk | None, authority: frozenset[str], *, app: str | None, tail: int) -> bool:
        """Whether the record of the log after `obj` chains to it: known from the walk for the records it
        followed, else read forward past objects that are not records of this log."""
        if walk is not None and obj.seq in walk.members and obj.seq >= walk.anchor:
            return any(s > obj.seq for s in walk.members)
        for n in range(obj.seq + 1, tail + 1):
            later = self._read_object(environment, n, app=app, signed=True)
            if later is None or later.why is not None:
                continue  # a removed or planted object: the record after it tells
            if later.prev == obj.claimed:
                return True
            if later.fp in authority:
                return False  # a record the environment's key signed chains to another: this one was replaced
        return False

    def last_deploy(self, environment: str) -> ActivityRecord | None:
        """The newest record with action 'deploy', or None."""
        for record in reversed(self.records(environment)):
            if record.action == "deploy":
                return record
        return None

    def verify_head(self, environment: str, seq: int, hash_: str) -> str | None:
        """None if the log still holds record `seq` with hash `hash_` (the Pulumi state's last record), else why not."""
        key = self.key(environment, seq)
        _, data, problem = self._read(key)
        if data is None:
            if problem == "disappeared while reading":
                return f"seq {seq} ({key}), the last record the Pulumi state knows, is missing: the log was truncated"
            return f"seq {seq} ({key}), the last record the Pulumi state knows, {problem}"
        if data.get("hash") != hash_ or record_hash(data) != hash_:
            return (
                f"seq {seq} ({key}) is not the record the Pulumi state knows (state: {hash_[:16]}, "
                f"log: {str(data.get('hash'))[:16]}): the log was rewritten"
            )
        return None


def _count(value: Any) -> int | None:
    """A stored instance count, or None when absent or not a count (the hash check judges the record)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _downloaded_archive(data: Mapping[str, Any]) -> str | None:
    """The sha256 of the archive a backup-download record says was written (None for other records)."""
    if data.get("action") != "backup-download":
        return None
    backup = (data.get("changes") or {}).get("backup") if isinstance(data.get("changes"), Mapping) else None
    sha = backup.get("sha256") if isinstance(backup, Mapping) else None
    return sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) else None


def _json(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _parse(raw: bytes) -> dict[str, Any] | None:
    """A stored record's JSON object, or None if it is not one (verify names it)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _now() -> float:
    return time.monotonic()


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _bisect_slots(low_slot: int, low: Any, hi: int, every: int, accept: Callable[[int], Any]) -> Any:
    """Narrow (low_slot, hi) to adjacent checkpoint slots: the newest slot `accept` takes (its value, or `low`)."""
    while hi - low_slot > every:
        mid = max((low_slot + hi) // 2 // every * every, low_slot + every)
        got = accept(mid)
        if got is not None:
            low_slot, low = mid, got
        else:
            hi = mid
    return low
