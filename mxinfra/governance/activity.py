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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UserError
from .repository import utc_now
from .signing import Signer, Trust, check_signature
from .store import Store, StoreError

GENESIS = "0" * 64  # prev_hash of an environment's first record
ACTIONS = ("deploy", "settings", "scale", "permissions")
MAX_ATTEMPTS = 100
CHECKPOINT_EVERY = 16  # a signed checkpoint every 16 records: the gate reads fewer records than this since one
_ENV = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SEQ_NAME = re.compile(r"(\d{12})\.json")


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
    signature: dict[str, str] | None = field(default=None, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (app and signature only when present: older records have neither)."""
        d = asdict(self)
        for optional in ("app", "signature"):
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


class ActivityLog:
    """The activity logs of every environment in a Store.

    Besides the records, each environment's prefix `activity/<env>/` holds:
        head.json                       {"seq": n}: where the tail was, a hint only (never trusted; a wrong
                                        one costs a few probes); the one object that is ever overwritten
        by-package/<sha>/<seq>.json     a deploy record's locator, written with it: the gate finds the
                                        source's deploys of a package without reading the whole log
        checkpoints/<seq>.json          every CHECKPOINT_EVERY records, signed by the appender after it
                                        verified the records since the previous checkpoint: the gate
                                        verifies only from the newest checkpoint a trusted key signed
    """

    def __init__(self, store: Store, *, signer: Signer | None = None) -> None:
        self.store = store
        self.signer = signer

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
    def checkpoint_key(environment: str, seq: int) -> str:
        """The store key of the checkpoint at `seq` (a multiple of CHECKPOINT_EVERY)."""
        return f"activity/{environment}/checkpoints/{seq:012d}.json"

    def _seq_keys(self, environment: str) -> list[tuple[int, str]]:
        """(seq, key) of every record object, by seq; foreign names are ignored."""
        prefix = f"activity/{self._check_env(environment)}/"
        found = []
        for key in self.store.list(prefix):
            m = _SEQ_NAME.fullmatch(key[len(prefix) :])
            if m:
                found.append((int(m.group(1)), key))
        return sorted(found)

    def _tail_hash(self, key: str) -> str:
        """The hash a new record must chain to: the stored hash of the record at `key`."""
        raw = self.store.get(key)
        if raw is None:  # pragma: no cover - records are never deleted by governance
            raise StoreError(self.store.url, f"{key} vanished while appending")
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

    def tail(self, environment: str, start: int | None = None) -> int:
        """The seq of the newest record (0 if none), found in a few round trips whatever the log's length.

        Starts at the head hint (or `start`), gallops forward while records exist and bisects back; a
        hint that points past the tail or at a hole costs O(log n) probes, never a listing."""
        self._check_env(environment)
        exists = lambda seq: self.store.exists(self.key(environment, seq))  # noqa: E731
        lo = self._hint(environment) if start is None else start
        if lo > 0 and not exists(lo):
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
    ) -> ActivityRecord:
        """Append a signed record to the environment's chain; safe against any number of concurrent writers.

        A constant number of round trips whatever the history (7 for a deploy): the head hint, two probes,
        the tail record, the conditional create, the package locator and the hint again (plus a checkpoint
        every CHECKPOINT_EVERY records, which reads the records since the previous one)."""
        self._check_env(environment)
        when = time or utc_now()
        canonical_json(changes)  # fail now, not after winning a seq, if `changes` is not JSON
        tail = self.tail(environment)
        seq, prev_hash = (tail + 1, self._tail_hash(self.key(environment, tail))) if tail else (1, GENESIS)
        for attempt in range(MAX_ATTEMPTS):
            body: dict[str, Any] = {
                "seq": seq,
                "environment": environment,
                "time": when,
                "actor": actor,
                "action": action,
                "package_sha256": package_sha256,
                "package_version": package_version,
                "artifact": artifact,
                "changes": changes,
                "prev_hash": prev_hash,
            }
            if app is not None:
                body["app"] = app
            digest = record_hash(body)
            signature = self.signer.signature(digest) if self.signer is not None else None
            record = ActivityRecord(**body, hash=digest, signature=signature)
            if self.store.put(self.key(environment, seq), _encode(record), if_absent=True):
                self._after_append(record)
                return record
            # another writer took this seq: find the new tail (a few probes even if the hint was stale)
            tail = self.tail(environment, start=seq)
            prev_hash = self._tail_hash(self.key(environment, tail))
            seq = tail + 1
            # jitter spreads a herd of writers out so that most succeed on their next try
            _sleep(random.uniform(0.0, 0.005 * min(attempt + 1, 10)))
        raise StoreError(
            self.store.url, f"could not append to the activity log of {environment} after {MAX_ATTEMPTS} attempts"
        )

    def _after_append(self, record: ActivityRecord) -> None:
        env = record.environment
        if record.action == "deploy":
            locator = {"seq": record.seq, "hash": record.hash}
            self.store.put(self.index_key(env, record.package_sha256, record.seq), _json(locator), if_absent=True)
        if self.signer is not None and record.seq % CHECKPOINT_EVERY == 0:
            self._write_checkpoint(record)
        # the hint is advisory: under a container-wide immutability policy it cannot be rewritten, and
        # then tail() gallops from the last hint that was written
        with contextlib.suppress(StoreError):
            self.store.put(self.head_key(env), _json({"seq": record.seq}))

    def _write_checkpoint(self, record: ActivityRecord) -> None:
        """Sign 'records up to this one chain correctly' after checking the records since the previous checkpoint."""
        assert self.signer is not None
        start = self._newest_checkpoint(record.environment, record.seq - 1, trust=None, app=record.app)
        problems = self._verify_range(record.environment, start, record.seq, trust=None, app=record.app, signed=True)
        if problems:
            return  # never vouch for a damaged chain: readers then verify from an older checkpoint
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
        self.store.put(self.checkpoint_key(record.environment, record.seq), _json(doc), if_absent=True)

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
        for seq, key, data, problem in self._read_keys(keys):
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
        problems += self._verify_range(environment, start, tail, trust=None, app=app, signed=True)
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
        seqs = sorted(
            {int(m.group(1)) for k in self.store.list(prefix) if (m := _SEQ_NAME.fullmatch(k[len(prefix) :]))},
            reverse=True,
        )
        refused = []
        for seq in seqs:
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


def _sleep(seconds: float) -> None:
    time.sleep(seconds)
