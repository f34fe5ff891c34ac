"""The package repository: MDAs stored once by content hash, with an index entry per package.

Layout in the store:
    packages/<sha256>.mda      the package bytes (written first)
    versions/<label>.json      {"sha256": ..., "by": ...}: claims a version label for one package, atomically
    index/<sha256>.json        the PackageEntry (written last: a listed package is always fetchable)
Every object is created with put(if_absent=True) and never rewritten, so entries are immutable and
concurrent pushes cannot overwrite each other.

The key is the authority, not the content: `index/<sha>.json` must describe the package `<sha>` and
`versions/<label>.json` must name a package whose entry carries that label, and the bytes fetched must
hash to the key's sha. Someone who can write to the store and edits an entry or repoints a label gets
a refusal naming both hashes (and `package list` reports the label), never another package deployed.

Labels are the publishers' (issue 19, F9): the first claim of a label wins for good, so a label claimed
by anyone else (an environment's deployer pushing a package it deploys from a file) takes the name from
the release it was meant for. A Repository told its publishers (`mxinfra:signing.publishers`) refuses a
labelled push by anyone else and reports labels claimed by anyone else; the rendered repository policy
makes the store refuse them too, which is what makes the claimant a claim records trustworthy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..mda import open_mda, sha256_file
from .policy import is_publisher
from .store import Store, StoreError

_SHA = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]+")
_VERSION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
MIN_PREFIX = 12


class VersionConflictError(UserError):
    """A version label cannot be given to these bytes (the base of the two reasons below)."""


class LabelTakenError(VersionConflictError):
    """A version label already names other bytes (labels are never reassigned)."""


class NotAPublisherError(VersionConflictError):
    """Someone who is not a publisher tried to give a package a version label, or the store refused the claim."""


class PackageIntegrityError(UserError):
    """A fetched package's bytes do not match its recorded SHA-256."""


class LabelRepointedError(PackageIntegrityError):
    """A version label names a package whose entry does not carry that label (the label was rewritten)."""


def utc_now() -> str:
    """The current time as ISO 8601 UTC with a Z, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PackageEntry:
    """The index entry of one package in the repository."""

    sha256: str
    version: str | None
    runtime_version: str
    model_version: str
    project_name: str
    size_bytes: int
    uploaded_at: str
    uploaded_by: str
    commit: str | None
    stories: tuple[str, ...]
    file_name: str

    @property
    def ref(self) -> str:
        """The unambiguous reference: 'sha256:<hex>'."""
        return f"sha256:{self.sha256}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (stories as a list)."""
        return {
            "sha256": self.sha256,
            "version": self.version,
            "runtime_version": self.runtime_version,
            "model_version": self.model_version,
            "project_name": self.project_name,
            "size_bytes": self.size_bytes,
            "uploaded_at": self.uploaded_at,
            "uploaded_by": self.uploaded_by,
            "commit": self.commit,
            "stories": list(self.stories),
            "file_name": self.file_name,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PackageEntry:
        """Parse a dict written by to_json (unknown keys ignored, for forward compatibility)."""
        return cls(
            sha256=str(d["sha256"]),
            version=None if d.get("version") is None else str(d["version"]),
            runtime_version=str(d.get("runtime_version", "")),
            model_version=str(d.get("model_version", "")),
            project_name=str(d.get("project_name", "")),
            size_bytes=int(d.get("size_bytes", 0)),
            uploaded_at=str(d.get("uploaded_at", "")),
            uploaded_by=str(d.get("uploaded_by", "")),
            commit=None if d.get("commit") is None else str(d["commit"]),
            stories=tuple(str(s) for s in d.get("stories", ())),
            file_name=str(d.get("file_name", "")),
        )


@dataclass(frozen=True)
class LabelClaim:
    """What `versions/<label>.json` says: the package it names, and who claimed it when (None in old claims)."""

    label: str
    sha256: str
    by: str | None
    at: str | None


def _encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


class Repository:
    """Packages in a Store, addressed by SHA-256, labelled by version (by its publishers, when they are known)."""

    def __init__(self, store: Store, publishers: Sequence[str] | None = None) -> None:
        self.store = store
        # None: no publisher is configured (a development repository): whoever pushes may label.
        self.publishers = None if publishers is None else tuple(publishers)
        self._identity: str | None = None

    def identity(self) -> str:
        """Who this process acts as in the store (asked once: on S3 it is an STS call)."""
        if self._identity is None:
            self._identity = self.store.identity()
        return self._identity

    def may_label(self) -> bool:
        """Whether this caller may give packages version labels: a publisher, or anyone when none is configured."""
        return self.publishers is None or is_publisher(self.identity(), self.publishers)

    def _not_a_publisher(self) -> str:
        return (
            f"{self.store.url}: only publishers give packages version labels, and {self.identity()} is not one "
            f"(mxinfra:signing.publishers: {', '.join(self.publishers or ()) or 'none'}): "
            "push without a label (deploy it by sha256:), or have a publisher push it"
        )

    @staticmethod
    def package_key(sha256: str) -> str:
        """Where a package's bytes live."""
        return f"packages/{sha256}.mda"

    @staticmethod
    def index_key(sha256: str) -> str:
        """Where a package's index entry lives."""
        return f"index/{sha256}.json"

    @staticmethod
    def version_key(version: str) -> str:
        """Where a version label's claim lives."""
        return f"versions/{version}.json"

    def _entry(self, sha256: str) -> PackageEntry | None:
        raw = self.store.get(self.index_key(sha256))
        if raw is None:
            return None
        try:
            entry = PackageEntry.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{self.store.url}: index entry {self.index_key(sha256)} is unreadable: {exc}") from None
        if entry.sha256 != sha256:
            # an edited entry must never redirect a reference to other bytes
            raise PackageIntegrityError(
                f"{self.store.url}: {self.index_key(sha256)} was altered: it names sha256:{entry.sha256}, "
                f"not sha256:{sha256}; refusing both (restore the entry)"
            )
        added = self._annotated_stories(sha256)
        if added:
            entry = dataclasses.replace(entry, stories=tuple(dict.fromkeys((*entry.stories, *added))))
        return entry

    def _annotated_stories(self, sha256: str) -> list[str]:
        """Stories attached after the first push (the index entry itself never changes)."""
        stories: list[str] = []
        for key in self.store.list(f"annotations/{sha256}/"):
            raw = self.store.get(key)
            try:
                stories += [str(s) for s in json.loads(raw or b"{}").get("stories", [])]
            except (ValueError, AttributeError) as exc:
                raise UserError(f"{self.store.url}: annotation {key} is unreadable: {exc}") from None
        return stories

    def annotate(self, sha256: str, stories: Sequence[str], commit: str | None = None) -> None:
        """Attach more stories to a stored package, append-only (a package deployed before it was
        pushed with its stories stays traceable)."""
        stamp = utc_now().replace("-", "").replace(":", "")
        key = f"annotations/{sha256}/{stamp}-{uuid.uuid4().hex[:12]}.json"
        body = {"stories": list(dict.fromkeys(stories)), "commit": commit, "at": utc_now(), "by": self.identity()}
        self.store.put(key, _encode(body), if_absent=True)

    def push(
        self,
        path: Path,
        *,
        version: str | None,
        commit: str | None,
        stories: Sequence[str],
        progress: Callable[[int], None] | None = None,
    ) -> tuple[PackageEntry, bool]:
        """Validate and upload an MDA once; (entry, True) if uploaded, (existing entry, False) if already there.

        A `version` label is claimed only by a publisher (NotAPublisherError before anything is uploaded)
        and only while free or already these bytes' (LabelTakenError, naming who holds it)."""
        if version is not None and (not _VERSION.fullmatch(version) or version.startswith("sha256")):
            raise UserError(
                f"version {version!r} is not a valid label: expected letters, digits and . _ + - "
                "(at most 128, not starting with 'sha256')"
            )
        if version is not None and not self.may_label():
            raise NotAPublisherError(self._not_a_publisher())
        # validate before anything is uploaded: a corrupt or hostile MDA never enters the repository
        package = open_mda(path)
        if not package.is_archive:
            raise UserError(f"{path}: is a directory: push the .mda file MxBuild produced")
        # every member inflated against its CRC-32 (a flipped byte inside one is invisible otherwise)
        sha = package.verify()

        existing = self._entry(sha)
        if existing is not None:
            # entries are immutable: the first push's label and commit stay (the caller can tell the
            # user when the requested label differs); new stories are attached beside the entry
            new = [st for st in dict.fromkeys(stories) if st not in existing.stories]
            if new:
                self.annotate(sha, new, commit)
                existing = dataclasses.replace(existing, stories=(*existing.stories, *new))
            return existing, False
        if version is not None:
            self._claim_version(version, sha)

        entry = PackageEntry(
            sha256=sha,
            version=version,
            runtime_version=str(package.metadata.runtime_version),
            model_version=package.metadata.model_version,
            project_name=package.metadata.project_name,
            size_bytes=package.size_bytes,
            uploaded_at=utc_now(),
            uploaded_by=self.identity(),
            commit=commit,
            stories=tuple(dict.fromkeys(stories)),  # de-duplicated, order kept
            file_name=Path(path).name,
        )
        # bytes first, index last: a listed package can always be fetched
        self.store.put_file(self.package_key(sha), Path(path), if_absent=True, progress=progress)
        if not self.store.put(self.index_key(sha), _encode(entry.to_json()), if_absent=True):
            # someone pushed the same bytes at the same moment: theirs is the entry
            winner = self._entry(sha)
            if winner is None:  # pragma: no cover - the key existed a moment ago and is never deleted
                raise UserError(f"{self.store.url}: index entry for sha256:{sha} vanished")
            return winner, False
        return entry, True

    def _claim_version(self, version: str, sha: str) -> None:
        """Atomically bind a version label to a package; LabelTakenError if it names other bytes."""
        key = self.version_key(version)
        body = {"version": version, "sha256": sha, "by": self.identity(), "at": utc_now()}
        try:
            if self.store.put(key, _encode(body), if_absent=True):
                return
        except StoreError as exc:
            # The rendered repository policy lets only publishers create versions/: a refusal there is
            # the store saying so (the caller may still push the bytes without a label).
            raise NotAPublisherError(
                f"{self.store.url}: could not claim version label {version} ({exc.cause or exc}); "
                "only the repository's publishers give packages version labels: push without a label, or as a publisher"
            ) from None
        claim = self.claim_of(version)
        if claim is None:  # pragma: no cover - the create failed because the claim exists; claims are never deleted
            raise LabelTakenError(f"{self.store.url}: {key} exists but could not be read: push again")
        if claim.sha256 != sha:
            raise LabelTakenError(self._taken(claim))
        # the same bytes claimed it before an interrupted push: finish that push

    def label_conflict(self, version: str, sha256: str) -> str | None:
        """Why `version` cannot name the package `sha256` (it names other bytes, and who claimed it), or None.

        Cheap (one read): what a deployment of a package from a file can ask before anything is applied."""
        claim = self.claim_of(version)
        return None if claim is None or claim.sha256 == sha256 else self._taken(claim)

    def _taken(self, claim: LabelClaim) -> str:
        who = claim.by or self._uploader(claim.sha256) or "an unknown principal"
        flag = "" if self.publishers is None or is_publisher(who, self.publishers) else ", who is not a publisher"
        return (
            f"{self.store.url}: version {claim.label} is already used by another package (sha256:{claim.sha256}, "
            f"claimed by {who}{flag}{' at ' + claim.at if claim.at else ''}): labels are never reassigned: "
            "pick a new version label (or deploy this package by sha256:)"
        )

    def _uploader(self, sha256: str) -> str | None:
        """Who pushed a package (the claimant of a label claimed before claims recorded it), or None."""
        raw = self.store.get(self.index_key(sha256))
        try:
            return str(json.loads(raw)["uploaded_by"]) if raw else None
        except (ValueError, KeyError, TypeError):
            return None

    def list(self) -> list[PackageEntry]:
        """Every package, newest first."""
        shas = [k[len("index/") : -len(".json")] for k in self.store.list("index/") if k.endswith(".json")]
        with ThreadPoolExecutor(max_workers=8) as pool:  # cloud stores: one round trip per entry
            entries = [e for e in pool.map(self._entry, shas) if e is not None]
        return sorted(entries, key=lambda e: (e.uploaded_at, e.sha256), reverse=True)

    def find(self, ref: str) -> PackageEntry:
        """The package named by 'sha256:<hex>' (a unique prefix of 12+ hex digits will do) or a version label."""
        ref = ref.strip()
        if ref.lower().startswith("sha256:"):
            hexpart = ref[len("sha256:") :].lower()
            if not _HEX.fullmatch(hexpart) or len(hexpart) < MIN_PREFIX or len(hexpart) > 64:
                raise UserError(
                    f"{ref!r}: expected sha256: followed by {MIN_PREFIX} to 64 hexadecimal digits"
                )
            if len(hexpart) == 64:
                matches = [hexpart] if self.store.exists(self.index_key(hexpart)) else []
            else:
                matches = [
                    k[len("index/") : -len(".json")]
                    for k in self.store.list(f"index/{hexpart}")
                    if k.endswith(".json")
                ]
            if not matches:
                raise UserError(f"{self.store.url}: no package {ref} in the repository")
            if len(matches) > 1:
                shown = ", ".join(f"sha256:{m[:16]}" for m in matches[:5])
                raise UserError(f"{self.store.url}: {ref} is ambiguous ({len(matches)} packages: {shown}): give more digits")
            entry = self._entry(matches[0])
            assert entry is not None
            return entry
        if not _VERSION.fullmatch(ref):
            raise UserError(f"{ref!r}: expected a version label or sha256:<hex>")
        target = self._label_target(ref)
        if target is not None:
            entry = self._entry(target)
            if entry is not None:
                if entry.version != ref:
                    raise LabelRepointedError(self._repointed(ref, target, entry.version))
                return entry
        # a label claimed by an interrupted push has no entry: report it like any unknown label
        known = [e.version for e in self.list() if e.version]
        hint = f" (known versions: {', '.join(known[:10])})" if known else " (the repository has no labelled packages)"
        raise UserError(f"{self.store.url}: no package with version {ref}{hint}")

    def _label_target(self, label: str) -> str | None:
        """The sha256 `versions/<label>.json` names, or None; UserError if unreadable or for another label."""
        claim = self.claim_of(label)
        return None if claim is None else claim.sha256

    def claim_of(self, label: str) -> LabelClaim | None:
        """The claim `versions/<label>.json` holds, or None; UserError if unreadable or for another label."""
        key = self.version_key(label)
        raw = self.store.get(key)
        if raw is None:
            return None
        try:
            claim = json.loads(raw)
            sha, named = str(claim["sha256"]), claim.get("version", label)
            by, at = claim.get("by"), claim.get("at")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{self.store.url}: {key} is unreadable: {exc}") from None
        if not _SHA.fullmatch(sha) or named != label:
            raise LabelRepointedError(f"{self.store.url}: {key} was altered (it claims {named!r} -> {sha!r}); refusing it")
        return LabelClaim(label, sha, None if by is None else str(by), None if at is None else str(at))

    def _repointed(self, label: str, sha: str, actual: str | None) -> str:
        return (
            f"{self.store.url}: version label {label} was repointed: {self.version_key(label)} names sha256:{sha}, "
            f"whose entry is version {actual or '(none)'}; labels are immutable: refusing it "
            "(restore the label, or deploy by sha256:)"
        )

    def label_problems(self, entries: Sequence[PackageEntry] | None = None) -> list[str]:
        """One message per version label that does not name the package carrying it (repointed or altered)
        and, when the publishers are known, per label claimed by someone who is not one."""
        by_sha = {e.sha256: e for e in (self.list() if entries is None else entries)}
        problems = []
        for key in self.store.list("versions/"):
            if not key.endswith(".json"):
                continue
            label = key[len("versions/") : -len(".json")]
            try:
                claim = self.claim_of(label)
            except UserError as exc:
                problems.append(str(exc))
                continue
            entry = by_sha.get(claim.sha256 if claim else "")
            if entry is not None and entry.version != label:
                problems.append(self._repointed(label, entry.sha256, entry.version))
                continue
            if claim is not None and self.publishers is not None:
                # a claim written before claims named their claimant: the push that claimed it wrote the entry
                who = claim.by or (entry.uploaded_by if entry is not None else None)
                if who is None or not is_publisher(who, self.publishers):
                    problems.append(
                        f"{self.store.url}: version label {label} (sha256:{claim.sha256}) was claimed by "
                        f"{who or 'an unknown principal'}, who is not a publisher "
                        f"(mxinfra:signing.publishers: {', '.join(self.publishers) or 'none'}): "
                        "do not deploy it by that label; the publisher's release needs a new label"
                    )
        return problems

    def fetch(self, entry: PackageEntry, cache_dir: Path) -> Path:
        """The package as a local file cache_dir/<sha256>.mda, downloaded if needed and always hash-verified."""
        if not _SHA.fullmatch(entry.sha256):
            raise PackageIntegrityError(f"{entry.sha256!r} is not a SHA-256")
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        final = cache_dir / f"{entry.sha256}.mda"
        if final.is_file():
            if sha256_file(final) == entry.sha256:
                return final
            final.unlink()  # a damaged cache entry: fetch it again rather than use or trust it
        fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.sha256[:16]}.", suffix=".part", dir=cache_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            self.store.download(self.package_key(entry.sha256), tmp)
            actual = sha256_file(tmp)
            if actual != entry.sha256:
                raise PackageIntegrityError(
                    f"{self.store.url}: {self.package_key(entry.sha256)}: sha256 mismatch (got {actual}): "
                    "the stored package was altered or damaged; it was not used"
                )
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return final


def label_issue(url: str, version: str, sha256: str, *, required: bool) -> str | None:
    """Why a deployment of the package `sha256` from a file, recorded as `version`, must not go on: the
    repository's label `version` names other bytes (or, when `required`, the repository cannot be read,
    so nothing could be recorded); None when it may."""
    from ..errors import UserError
    from .store import open_store

    try:
        return Repository(open_store(url)).label_conflict(version, sha256)
    except UserError as exc:
        return f"the repository cannot be read, so the deployment could not be recorded: {exc}" if required else None
