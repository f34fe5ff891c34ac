"""The activity log: per environment, an append-only, hash-chained sequence of deployment events.

Each record is one object `activity/<env>/<seq:012d>.json`, created with put(if_absent=True): two
writers racing for the same seq cannot both win, and the loser re-reads the new tail and tries the
next seq. Each record carries the hash of its predecessor (`prev_hash`) and its own `hash` (SHA-256
of the canonical JSON of every other field), so editing, removing or reordering records breaks the
chain and `verify` names the record. Removing the newest records (truncation) leaves an intact, shorter
chain; only an anchor outside the store could reveal that.
"""

from __future__ import annotations

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
from .store import Store, StoreError

GENESIS = "0" * 64  # prev_hash of an environment's first record
ACTIONS = ("deploy", "settings", "scale", "permissions")
MAX_ATTEMPTS = 100
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

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

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
        )

    def computed_hash(self) -> str:
        """SHA-256 of the canonical JSON of every field except `hash`."""
        body = self.to_json()
        del body["hash"]
        return hashlib.sha256(canonical_json(body)).hexdigest()


def record_hash(body: dict[str, Any]) -> str:
    """The hash of a record given as a dict (any 'hash' key ignored)."""
    return hashlib.sha256(canonical_json({k: v for k, v in body.items() if k != "hash"})).hexdigest()


def _encode(record: ActivityRecord) -> bytes:
    return (json.dumps(record.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


class ActivityLog:
    """The activity logs of every environment in a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _check_env(environment: str) -> str:
        if not _ENV.fullmatch(environment):
            raise UserError(f"environment name {environment!r}: expected letters, digits, '.', '_' and '-'")
        return environment

    @staticmethod
    def key(environment: str, seq: int) -> str:
        """The store key of record `seq` of `environment`."""
        return f"activity/{environment}/{seq:012d}.json"

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
    ) -> ActivityRecord:
        """Append a record to the environment's chain; safe against any number of concurrent writers."""
        self._check_env(environment)
        when = time or utc_now()
        canonical_json(changes)  # fail now, not after winning a seq, if `changes` is not JSON
        keys = self._seq_keys(environment)
        if keys:
            seq, prev_hash = keys[-1][0] + 1, self._tail_hash(keys[-1][1])
        else:
            seq, prev_hash = 1, GENESIS
        for attempt in range(MAX_ATTEMPTS):
            body = {
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
            record = ActivityRecord(**body, hash=record_hash(body))  # type: ignore[arg-type]
            if self.store.put(self.key(environment, seq), _encode(record), if_absent=True):
                return record
            # another writer took this seq: chain to its record and try the next one
            prev_hash = self._tail_hash(self.key(environment, seq))
            seq += 1
            # jitter spreads a herd of writers out so that most succeed on their next try
            _sleep(random.uniform(0.0, 0.005 * min(attempt + 1, 10)))
        raise StoreError(
            self.store.url, f"could not append to the activity log of {environment} after {MAX_ATTEMPTS} attempts"
        )

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

    def verify(self, environment: str) -> list[str]:
        """[] if the chain is intact; else one message per problem, naming the record's seq and key."""
        problems: list[str] = []
        expected_seq = 1
        prev_hash = GENESIS
        for seq, key, data, problem in self._read_all(environment):
            where = f"seq {seq} ({key})"
            if data is None:
                problems.append(f"{where}: {problem}")
                expected_seq, prev_hash = seq + 1, None  # type: ignore[assignment]
                continue
            record = ActivityRecord.from_json(data)
            if seq > expected_seq:
                missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}-{seq - 1}"
                problems.append(f"{where}: record(s) {missing} before it are missing (deleted)")
            if record.computed_hash() != record.hash or record_hash(data) != record.hash:
                problems.append(f"{where}: content was edited (its hash does not match its content)")
            if record.seq != seq or record.environment != environment:
                problems.append(
                    f"{where}: holds seq {record.seq} of {record.environment!r}: records were moved or reordered"
                )
            if prev_hash is not None and record.prev_hash != prev_hash and seq == expected_seq:
                problems.append(
                    f"{where}: does not chain to the record before it (prev_hash mismatch): "
                    "records were reordered, replaced or edited"
                )
            expected_seq, prev_hash = seq + 1, record.hash
        return problems

    def last_deploy(self, environment: str) -> ActivityRecord | None:
        """The newest record with action 'deploy', or None."""
        for record in reversed(self.records(environment)):
            if record.action == "deploy":
                return record
        return None


def _sleep(seconds: float) -> None:
    time.sleep(seconds)
