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
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UserError
from .repository import utc_now
from .signing import Signer, Trust, check_signature, fingerprint
from .store import Store, StoreError

GENESIS = "0" * 64  # prev_hash of an environment's first record
ACTIONS = ("deploy", "settings", "scale", "permissions")
CHECKPOINT_EVERY = 16  # a signed checkpoint every 16 records: the gate reads fewer records than this since one
# How long an append keeps trying while other writers take the next seq or the store fails transiently.
# Time, not a number of attempts: 32 writers on one environment need many attempts each, a slow store few.
APPEND_BUDGET = 120.0
BUDGET_VARIABLE = "MXINFRA_APPEND_BUDGET"
# Full-jitter exponential backoff between attempts: uniform in [0, min(MAX, BASE * 2**attempt)] spreads a herd
# of writers over time, so that most win their next try, without making a lone retry slow.
BACKOFF_BASE = 0.01
BACKOFF_MAX = 1.0
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
    signature: dict[str, str] | None = field(default=None, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (app, idempotency_key, image and signature only when present)."""
        d = asdict(self)
        for optional in ("app", "idempotency_key", "image", "signature"):
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
            signature=d.get("signature"),
        )

    def computed_hash(self) -> str:
        """SHA-256 of the canonical JSON of every field except `hash` and `signature`."""
        return record_hash(self.to_json())


def record_hash(body: dict[str, Any]) -> str:
    """The hash of a record given as a dict ('hash' and 'signature' ignored: the signature covers the hash)."""
    return hashlib.sha256(canonical_json({k: v for k, v in body.items() if k not in ("hash", "signature")})).hexdigest()


def _encode(record: ActivityRecord) -> bytes:
    return (json.dumps(record.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


@dataclass
class Repairs:
    """What `ActivityLog.repair` wrote or removed in one environment's log."""

    locators: int = 0
    checkpoints: int = 0
    temporaries: int = 0
    head: int = 0
    unsigned_checkpoints: int = 0  # missing checkpoints left alone: writing one needs the environment's key

    def __bool__(self) -> bool:
        return bool(self.locators or self.checkpoints or self.temporaries or self.head)

    def describe(self) -> str:
        """'3 locator(s), 1 checkpoint(s), ...' of what was repaired, or 'nothing to repair'."""
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
        return ", ".join(parts) if parts else "nothing to repair"


class ActivityLog:
    """The activity logs of every environment in a Store.

    Besides the records, each environment's prefix `activity/<env>/` holds:
        head.json                       {"seq": n}: where the tail was, a hint only (never trusted; a wrong
                                        one costs a few probes); the one object that is ever overwritten
        by-package/<sha>/<seq>.json     a deploy record's locator, written with it: the gate finds the
                                        source's deploys of a package without reading the whole log
        by-key/<key>/<seq>.json         the locator of the record of an idempotency key: a retried operation
                                        finds its stored record; written last, so it also says that the
                                        record's other locators were written
        checkpoints/<seq>.json          every CHECKPOINT_EVERY records, signed by the appender after it
                                        verified the records since the previous checkpoint: the gate
                                        verifies only from the newest checkpoint a trusted key signed
    """

    def __init__(self, store: Store, *, signer: Signer | None = None, budget: float | None = None) -> None:
        self.store = store
        self.signer = signer
        self._budget = budget
        self._own_fingerprint: str | None = None
        # records verify_recent read, by environment and seq: the gate's evidence even without a locator
        self._verified: dict[str, dict[int, dict[str, Any]]] = {}

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
    def request_key(environment: str, idempotency_key: str, seq: int) -> str:
        """The store key of the locator of the record `seq` that carries `idempotency_key`."""
        return f"activity/{environment}/by-key/{idempotency_key}/{seq:012d}.json"

    @staticmethod
    def checkpoint_key(environment: str, seq: int) -> str:
        """The store key of the checkpoint at `seq` (a multiple of CHECKPOINT_EVERY)."""
        return f"activity/{environment}/checkpoints/{seq:012d}.json"

    def _seq_keys(self, environment: str, listed: list[str] | None = None) -> list[tuple[int, str]]:
        """(seq, key) of every record object, by seq; foreign names are ignored."""
        prefix = f"activity/{self._check_env(environment)}/"
        found = []
        for key in self.store.list(prefix) if listed is None else listed:
            m = _SEQ_NAME.fullmatch(key[len(prefix) :])
            if m:
                found.append((int(m.group(1)), key))
        return sorted(found)

    @staticmethod
    def _chain_hash(raw: bytes) -> str:
        """The hash a new record must chain to, from the stored bytes of the record before it."""
        try:
            return str(json.loads(raw)["hash"])
        except (ValueError, KeyError, TypeError):
            # a damaged tail must not stop a deployment from being recorded; verify reports the damage
            return hashlib.sha256(raw).hexdigest()

    # -- finding the tail without listing the log

    def _hint(self, environment: str) -> int:
        raw = self.store.get(self.head_key(environment))
        try:
            seq = int(json.loads(raw or b"{}").get("seq", 0))
        except (ValueError, TypeError, AttributeError):
            return 0
        return max(seq, 0)

    def tail(self, environment: str, start: int | None = None, *, start_exists: bool = False) -> int:
        """The seq of the newest record (0 if none), found in a few round trips whatever the log's length.

        Starts at the head hint (or `start`, which `start_exists` says was just seen), gallops forward while
        records exist and bisects back; a hint that points past the tail or at a hole costs O(log n)
        probes, never a listing."""
        self._check_env(environment)
        exists = lambda seq: self.store.exists(self.key(environment, seq))  # noqa: E731
        lo = self._hint(environment) if start is None else start
        if lo > 0 and not start_exists and not exists(lo):
            hi = lo
            lo = 0
        else:
            step = 1
            hi = lo + step
            while exists(hi):
                lo, step = hi, step * 2
                hi = lo + step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if exists(mid):
                lo = mid
            else:
                hi = mid
        return lo

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
    ) -> ActivityRecord:
        """Append a signed record to the environment's chain exactly once; safe against any number of
        concurrent writers, lost answers and killed writers.

        `idempotency_key` names the operation: an append with the key of a record already stored returns
        that record instead of writing another (give the same key when retrying the same operation; without
        one, a key is made for this call, which still makes its own retries exactly once). With
        `superseded_by` (an action, e.g. "destroy"), a stored record with the key counts only if no record
        of that action of the same app follows it: a create after a destroy is a new operation.

        Conflicts and transient store errors are retried with jittered backoff for `budget` seconds. A few
        round trips whatever the history: the head hint, two probes, the tail record and its locator (a
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
        body["idempotency_key"] = key
        budget = self.budget
        deadline = _now() + budget
        # a fresh key cannot have been stored by an earlier run: only a caller's key is looked up
        looked_up = idempotency_key is None
        start: int | None = None  # where the tail search starts (None: the head hint)
        taken: bytes | None = None  # the record found at `start` after losing it (saves two round trips)
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
                tail = self.tail(environment, start, start_exists=taken is not None)
                if taken is not None and tail == start:
                    raw = taken
                else:
                    raw = self.store.get(self.key(environment, tail)) if tail else None
                taken = None
                if tail and raw is None:  # pragma: no cover - records are never deleted by governance
                    raise StoreError(self.store.url, f"{self.key(environment, tail)} vanished while appending")
                data = _parse(raw) if raw is not None else None
                if data is not None and self._is_own(data, key, environment, tail):
                    return self._finish(ActivityRecord.from_json(data))
                self._heal(environment, tail, data)
                if not looked_up:
                    own = self._find_own(environment, key, tail, superseded_by)
                    looked_up = True
                    if own is not None:
                        return self._finish(own)
                seq = tail + 1
                prev_hash = self._chain_hash(raw) if raw is not None else GENESIS
                record = self._signed({**body, "seq": seq, "prev_hash": prev_hash})
                try:
                    stored = self.store.put(self.key(environment, seq), _encode(record), if_absent=True)
                except StoreError as exc:
                    if exc.transient:
                        unknown = seq
                    raise
                if stored:
                    return self._finish(record)
                # the seq is taken: by this very append when the store kept a write whose answer was lost
                # (until it is read back, it may be: a failed read must not let the append move on)
                unknown = seq
                taken = self.store.get(self.key(environment, seq))
                found = _parse(taken) if taken is not None else None
                if found is not None and self._is_own(found, key, environment, seq):
                    return self._finish(ActivityRecord.from_json(found))
                unknown = None
                start, cause = seq, f"other writers took seq {seq}"
            except StoreError as exc:
                if not exc.transient:
                    raise
                cause = exc.cause or str(exc)
            attempt += 1
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
        """Whether a record of `action` of `app` lies after `seq` (read back from the tail, a batch at a time)."""
        top = tail
        while top > seq:
            low = max(seq + 1, top - 7)
            batch = [(s, self.key(environment, s)) for s in range(top, low - 1, -1)]
            for _, _, data, _ in self._read_keys(batch):
                if data is not None and data.get("action") == action and data.get("app") == app:
                    return True
            top = low - 1
        return False

    def _finish(self, record: ActivityRecord) -> ActivityRecord:
        """Write a stored record's side indexes and the head hint; the record is the append's result."""
        env = record.environment
        try:
            self._write_indexes(env, record.seq, record.to_json())
        except StoreError as exc:
            if not exc.transient:
                raise
            # the record is stored: the next appender writes what is missing (it heals the tail it reads)
        # the hint is advisory: under a container-wide immutability policy it cannot be rewritten, and
        # then tail() gallops from the last hint that was written
        with contextlib.suppress(StoreError):
            self.store.put(self.head_key(env), _json({"seq": record.seq}))
        return record

    def _write_indexes(self, environment: str, seq: int, data: dict[str, Any], listed: set[str] | None = None) -> tuple[int, int]:
        """Write record `seq`'s missing side indexes, idempotently: (locators, checkpoints) written.

        The key's locator comes last: once it exists, so does the package locator (the one probe that tells
        a healer there is nothing to do). `listed` is what a listing found (no probes then)."""
        locators = checkpoints = 0
        present = (lambda k: k in listed) if listed is not None else (lambda k: False)  # noqa: E731
        if data.get("action") == "deploy" and isinstance(data.get("package_sha256"), str):
            index = self.index_key(environment, data["package_sha256"], seq)
            if not present(index) and self.store.put(index, _json({"seq": seq, "hash": data.get("hash")}), if_absent=True):
                locators += 1
        if self.signer is not None and seq % CHECKPOINT_EVERY == 0:
            checkpoint = self.checkpoint_key(environment, seq)
            if not present(checkpoint) and self._write_checkpoint(ActivityRecord.from_json(data)):
                checkpoints += 1
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
        """Sign 'records up to this one chain correctly' after checking the records since the previous
        checkpoint; whether a checkpoint was written (never for a damaged chain, nor twice)."""
        assert self.signer is not None
        start = self._newest_checkpoint(record.environment, record.seq - 1, trust=None, app=record.app)
        problems = self._verify_range(record.environment, start, record.seq, trust=None, app=record.app, signed=True)
        if problems:
            return False  # never vouch for a damaged chain: readers then verify from an older checkpoint
        body = {
            "kind": "checkpoint",
            "environment": record.environment,
            "app": record.app,
            "seq": record.seq,
            "hash": record.hash,
            "from_seq": start[0],
        }
        digest = record_hash(body)
        doc = {**body, "signature": self.signer.signature(digest)}
        return self.store.put(self.checkpoint_key(record.environment, record.seq), _json(doc), if_absent=True)

    # -- repairing

    def repair(self, environment: str, *, older_than: float = TEMPORARY_AGE) -> Repairs:
        """Write every side index killed or interrupted writers left missing in the environment's log (the
        locators; the checkpoints when this log has a signer), bring the head hint to the tail, and remove
        their temporary files (only those of writers that are gone, or untouched for `older_than` seconds).

        Reads the whole log, like verify; writes only what is missing, with conditional creates."""
        prefix = f"activity/{self._check_env(environment)}/"
        listed = self.store.list(prefix)
        present = set(listed)
        found = Repairs()
        tail = 0
        for seq, _key, data, _problem in self._read_keys(self._seq_keys(environment, listed)):
            tail = max(tail, seq)
            if data is None or data.get("seq") != seq:
                continue  # verify names a damaged record; an index of it would help no one
            locators, checkpoints = self._write_indexes(environment, seq, data, present)
            found.locators += locators
            found.checkpoints += checkpoints
            if self.signer is None and seq % CHECKPOINT_EVERY == 0 and self.checkpoint_key(environment, seq) not in present:
                found.unsigned_checkpoints += 1
        found.temporaries = self.store.clean_temporaries(prefix, older_than=older_than)
        if tail and self._hint(environment) != tail:
            with contextlib.suppress(StoreError):
                self.store.put(self.head_key(environment), _json({"seq": tail}))
                found.head = 1
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

    def _read_all(self, environment: str) -> list[tuple[int, str, dict[str, Any] | None, str | None]]:
        keys = self._seq_keys(environment)
        return self._read_keys(keys)

    def _read_keys(self, keys: list[tuple[int, str]]) -> list[tuple[int, str, dict[str, Any] | None, str | None]]:
        with ThreadPoolExecutor(max_workers=8) as pool:  # cloud stores: one round trip per record
            read = list(pool.map(self._read, [k for _, k in keys]))
        return [(seq, key, data, problem) for (seq, _), (key, data, problem) in zip(keys, read, strict=True)]

    def records(self, environment: str) -> list[ActivityRecord]:
        """The environment's records, oldest first (UserError if one is unreadable: run verify)."""
        out = []
        for seq, key, data, problem in self._read_all(environment):
            if data is None:
                raise UserError(f"{self.store.url}: {key} (seq {seq}) {problem}: run `mxinfra activity verify`")
            out.append(ActivityRecord.from_json(data))
        return out

    def environments(self) -> list[str]:
        """Every environment that has a log, sorted."""
        envs = {k.split("/")[1] for k in self.store.list("activity/") if k.count("/") == 2}
        return sorted(envs)

    # -- verifying

    @staticmethod
    def _signature_problems(
        data: dict[str, Any], environment: str, *, trust: Trust | None, app: str | None, signed: bool
    ) -> list[str]:
        """Why a record (already hash-checked) does not count: unsigned, bad signature, untrusted key, other app."""
        problems = []
        if data.get("signature") is None:
            if signed or trust is not None:
                problems.append("is unsigned: anyone who can write to the store could have written it")
        else:
            found, why = check_signature(data, str(data.get("hash")))
            if why is not None:
                problems.append(why)
            elif trust is not None and found not in trust.fingerprints:
                ref = data["signature"].get("signer") if isinstance(data["signature"], dict) else None
                problems.append(
                    f"is signed by {found} ({ref}), which is not trusted for {environment} (trusted: {trust.describe()})"
                )
        if app is not None and data.get("app") != app:
            named = f"app {data.get('app')!r}" if data.get("app") is not None else "no app"
            problems.append(f"belongs to {named}, not {app!r}: copied from another app's log")
        return problems

    def verify(
        self, environment: str, *, signed: bool = False, trust: Trust | None = None, app: str | None = None
    ) -> list[str]:
        """[] if the chain is intact; else one message per problem, naming the record's seq and key.

        Reads every record. A present signature is always checked; with `signed` an unsigned record is a
        problem; with `trust` a record signed by another key is; with `app` a record of another app is."""
        problems: list[str] = []
        expected_seq = 1
        prev_hash: str | None = GENESIS
        for seq, key, data, problem in self._read_all(environment):
            where = f"seq {seq} ({key})"
            if data is None:
                problems.append(f"{where}: {problem}")
                expected_seq, prev_hash = seq + 1, None
                continue
            problems += [f"{where}: {p}" for p in self._record_problems(data, seq, environment, expected_seq, prev_hash)]
            problems += [f"{where}: {p}" for p in self._signature_problems(data, environment, trust=trust, app=app, signed=signed)]
            expected_seq, prev_hash = seq + 1, str(data.get("hash"))
        return problems

    @staticmethod
    def _record_problems(
        data: dict[str, Any], seq: int, environment: str, expected_seq: int, prev_hash: str | None
    ) -> list[str]:
        """Chain problems of one record: a gap before it, edited content, moved, or not linked to its predecessor."""
        problems = []
        record = ActivityRecord.from_json(data)
        if seq > expected_seq:
            missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}-{seq - 1}"
            problems.append(f"record(s) {missing} before it are missing (deleted)")
        if record.computed_hash() != record.hash or record_hash(data) != record.hash:
            problems.append("content was edited (its hash does not match its content)")
        if record.seq != seq or record.environment != environment:
            problems.append(f"holds seq {record.seq} of {record.environment!r}: records were moved, reordered or copied")
        if prev_hash is not None and record.prev_hash != prev_hash and seq == expected_seq:
            problems.append(
                "does not chain to the record before it (prev_hash mismatch): records were reordered, replaced or edited"
            )
        return problems

    def _verify_range(
        self,
        environment: str,
        start: tuple[int, str],
        end: int,
        *,
        trust: Trust | None,
        app: str | None,
        signed: bool,
    ) -> list[str]:
        """Verify records start.seq+1 .. end against a trusted starting point (seq, hash): one read per record."""
        first, prev_hash = start
        keys = [(s, self.key(environment, s)) for s in range(first + 1, end + 1)]
        problems = []
        expected = first + 1
        prev: str | None = prev_hash
        read = self._read_keys(keys)
        self._verified.setdefault(environment, {}).update({seq: data for seq, _, data, _ in read if data is not None})
        for seq, key, data, problem in read:
            where = f"seq {seq} ({key})"
            if data is None:
                why = "is missing (deleted)" if problem == "disappeared while reading" else problem
                problems.append(f"{where}: {why}")
                expected, prev = seq + 1, None
                continue
            problems += [f"{where}: {p}" for p in self._record_problems(data, seq, environment, expected, prev)]
            problems += [f"{where}: {p}" for p in self._signature_problems(data, environment, trust=trust, app=app, signed=signed)]
            expected, prev = seq + 1, str(data.get("hash"))
        return problems

    def _checkpoint(self, environment: str, seq: int, *, trust: Trust | None, app: str | None) -> str | None:
        """The hash a valid checkpoint at `seq` vouches for (signed by a trusted key, or any valid key without trust)."""
        raw = self.store.get(self.checkpoint_key(environment, seq))
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            body = {k: v for k, v in doc.items() if k != "signature"}
            if body.get("kind") != "checkpoint" or body.get("environment") != environment or body.get("seq") != seq:
                return None
            if app is not None and body.get("app") != app:
                return None
            found, why = check_signature(doc, record_hash(body))
        except (ValueError, TypeError, AttributeError):
            return None
        if why is not None or (trust is not None and found not in trust.fingerprints):
            return None
        return str(body["hash"])

    def _newest_checkpoint(self, environment: str, before: int, *, trust: Trust | None, app: str | None) -> tuple[int, str]:
        """(seq, hash) of the newest valid checkpoint at or below `before`, else (0, GENESIS)."""
        seq = before // CHECKPOINT_EVERY * CHECKPOINT_EVERY
        while seq > 0:
            vouched = self._checkpoint(environment, seq, trust=trust, app=app)
            if vouched is not None:
                return seq, vouched
            seq -= CHECKPOINT_EVERY
        return 0, GENESIS

    def verify_recent(
        self, environment: str, *, trust: Trust, app: str | None, verified: tuple[int, str] | None = None
    ) -> tuple[int, list[str]]:
        """(tail seq, problems) checking the chain from the newest trusted checkpoint to the tail.

        The cost is at most CHECKPOINT_EVERY records plus a few probes, whatever the log's length: the
        records before the checkpoint were verified by the trusted key that signed it. `verified` is a
        (seq, hash) this machine verified before: when it is newer than the checkpoint and the log still
        holds it, verification starts there instead."""
        tail = self.tail(environment)
        start = self._newest_checkpoint(environment, tail, trust=trust, app=app)
        if verified is not None and start[0] < verified[0] <= tail and self._stored_hash(environment, verified[0]) == verified[1]:
            start = verified
        problems = []
        if start[0] and (start[0] > tail or self._stored_hash(environment, start[0]) != start[1]):
            problems.append(f"seq {start[0]} ({self.key(environment, start[0])}): differs from its signed checkpoint")
        # every record since must chain and be validly signed; only the evidence must be by a trusted key
        # (an environment may have several deployers, not all of them trusted by every gate)
        self._verified[environment] = {}
        problems += self._verify_range(environment, start, tail, trust=None, app=app, signed=True)
        if not problems and tail:
            # a killed writer's record lacks its locators until the next append; a gate that may write
            # heals them now (a read-only one still finds the deploy among the records it read)
            with contextlib.suppress(StoreError):
                self._heal(environment, tail, self._verified[environment].get(tail))
        return tail, problems

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
        each candidate was refused. Reads the locators of this package and one or two records each."""
        prefix = f"activity/{environment}/by-package/{package_sha256}/"
        seqs = {int(m.group(1)) for k in self.store.list(prefix) if (m := _SEQ_NAME.fullmatch(k[len(prefix) :]))}
        # deploys among the records verify_recent read count even if a killed writer left no locator
        seqs |= {
            s
            for s, d in self._verified.get(environment, {}).items()
            if d.get("action") == "deploy" and d.get("package_sha256") == package_sha256
        }
        refused = []
        for seq in sorted(seqs, reverse=True):
            key = self.key(environment, seq)
            where = f"seq {seq} ({key})"
            if seq > tail:
                continue
            _, data, problem = self._read(key)
            if data is None:
                refused.append(f"{where}: {problem}")
                continue
            why = [p for p in self._record_problems(data, seq, environment, seq, None) if "missing" not in p]
            why += self._signature_problems(data, environment, trust=trust, app=app, signed=True)
            record = ActivityRecord.from_json(data)
            if not why and (record.action != "deploy" or record.package_sha256 != package_sha256):
                why.append("is not a deploy of this package")
            if not why and artifact is not None and record.artifact != artifact:
                continue  # the same package with another image: not what this stack runs
            if not why and seq < tail and self._prev_of(environment, seq + 1) != record.hash:
                why.append("is not the record its successor chains to (replaced)")
            if why:
                refused.append(f"{where}: {'; '.join(why)}")
                continue
            return record, refused
        return None, refused

    def _prev_of(self, environment: str, seq: int) -> str | None:
        _, data, _ = self._read(self.key(environment, seq))
        return None if data is None else str(data.get("prev_hash"))

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
