"""Where a stack's repository is, which package a stack names, and the staged-promotion rule."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigIssue
from .activity import judge_deploy

if TYPE_CHECKING:
    from ..config import StackConfig
    from ..environments import Environment
    from .activity import ActivityLog, ActivityRecord
    from .signing import Trust

DEFAULT_REPOSITORY = "file://.mxinfra"
SHA_PREFIX = "sha256:"


def repository_url(configured: str | None, base_dir: Path) -> str:
    """The repository URL with a relative file:// path made absolute against the project directory."""
    url = configured or DEFAULT_REPOSITORY
    if url.startswith("file://"):
        path = Path(os.path.expanduser(url[len("file://") :]))
        return "file://" + str(path if path.is_absolute() else (base_dir / path).resolve())
    return url


def is_repository_reference(reference: str, base_dir: Path) -> bool:
    """True when `mxinfra:app.package` names a repository package (sha256:... or a version label)."""
    if reference.startswith(SHA_PREFIX):
        return True
    path = Path(os.path.expanduser(reference))
    looks_like_path = "/" in reference or "\\" in reference or reference.endswith(".mda")
    return not looks_like_path and not (base_dir / path).exists()


def cache_dir() -> Path:
    """The local, content-addressed cache of fetched packages."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "mxinfra" / "packages"


def fetch_package(reference: str, url: str) -> tuple[Path, str | None]:
    """Fetch a repository package into the cache (hash-verified); returns its path and version label."""
    from .repository import Repository
    from .store import open_store

    from ..mda import sha256_file
    from .repository import PackageIntegrityError

    repo = Repository(open_store(url))
    entry = repo.find(reference)
    path = repo.fetch(entry, cache_dir())
    named = reference.strip().lower()[len(SHA_PREFIX) :] if reference.strip().lower().startswith(SHA_PREFIX) else ""
    actual = sha256_file(path)
    # the bytes that deploy are the bytes that were named, whatever the index says
    if actual != entry.sha256 or not actual.startswith(named):
        raise PackageIntegrityError(
            f"{url}: {reference} names sha256:{named or entry.sha256} but the repository delivered sha256:{actual}: refusing it"
        )
    return path, entry.version


def gate_warnings(env: Environment) -> list[str]:
    """The warning every plan and `pulumi up` of a production environment that opted out of the gate shows."""
    if env.ungated_reason is None:
        return []
    return [
        f"{env.name} is a production environment without staged promotion ({env.config_path}.ungated): it deploys "
        f"any package, whether or not another environment ran it; reason given: {env.ungated_reason}"
    ]


def promotion_issues(
    envs: list[Environment],
    package_sha256: str,
    artifacts: Mapping[str, str | None],
    url: str,
    file: str = "",
    *,
    config: StackConfig | None = None,
    base_dir: Path | None = None,
) -> list[ConfigIssue]:
    """Environments that require promotion but whose source has no deploy record of this package (and of
    the same artifact, where the target runs one) signed by a key trusted for the source and naming this
    app, or whose source's log does not verify since its newest trusted checkpoint.

    The cost does not grow with the source's history: a few probes for the tail, at most
    CHECKPOINT_EVERY records since the checkpoint, the package's locators and the records they name."""
    gated = [e for e in envs if e.require_promotion_from]
    if not gated:
        return []
    from .activity import ActivityLog
    from .signing import SigningError, trust_for
    from .store import open_store

    log = ActivityLog(open_store(url))
    raw_values = config.raw.values if config is not None else {}
    app = config.app.name if config is not None else None
    base = base_dir or Path.cwd()
    issues = []
    for env in gated:
        source = env.require_promotion_from
        assert source is not None
        path = f"{env.config_path}.requirePromotionFrom"
        try:
            trust = trust_for(raw_values, source, url, base)
        except SigningError as exc:
            issues.append(ConfigIssue(f"mxinfra:signing.trustedSigners.{source}", str(exc), "check the key reference and your access to it", file))
            continue
        what = f"package sha256:{package_sha256[:12]}"
        artifact = artifacts.get(env.name)
        if artifact is not None:
            what += f" with {artifact}"
        hint = f"deploy it to {source} first, or promote what {source} runs: mxinfra promote --from {source} --to {env.name}"
        if not trust.fingerprints:
            issues.append(ConfigIssue(path, f"{what} has no deploy record in {source!r} (repository {url}; no key is trusted for {source} yet)", hint, file))
            continue
        issues += [ConfigIssue(path, m, fix, file) for m, fix in _gate(log, source, package_sha256, artifact, trust, app, url, what, hint)]
    return issues


def trusted_deploys(log: ActivityLog, source: str, trust: Trust, app: str | None) -> list[ActivityRecord]:
    """The source's deploy records a gate would accept, oldest first: intact, signed by a key trusted for
    the source, of this app, in the chain those keys make (an object of another key, with the head hint
    pointed at it, cannot leave the newest deploys out). `mxinfra promote` chooses among these; the gate asks
    `deploy_evidence`. UserError if the source's log does not verify."""
    return [r for r in log.trusted_records(source, trust=trust, app=app) if r.action == "deploy" and r.environment == source and judge_deploy(r, trust, app)[0]]


def _gate(log: ActivityLog, source: str, package_sha256: str, artifact: str | None, trust: Trust, app: str | None, url: str, what: str, hint: str) -> list[tuple[str, str]]:
    """(message, fix) of why the source's log does not let this package (and artifact) through; [] if it does."""
    cache = _verified_file(url, source, app)
    tail, problems = log.verify_recent(source, trust=trust, app=app, verified=_read_verified(cache))
    # what a trusted key signed, never past it: a record of another key at the tail may be left out of the
    # chain by the next trusted append (appenders do not chain to it), which a later start there would take
    # for a break
    trusted_tip = log._walks[source].base[0] if source in log._walks else 0
    if not problems and trusted_tip:
        _write_verified(cache, trusted_tip, log._stored_hash(source, trusted_tip))
    if problems:
        # A log that does not verify proves nothing about what ran there.
        return [(f"the activity log of {source!r} does not verify: {problems[0]}", "run mxinfra activity verify and restore the log before promoting")]
    record, refused = log.deploy_evidence(source, package_sha256, artifact=artifact, trust=trust, app=app, tail=tail)
    if record is None:
        why = f": refused {'; '.join(refused[:3])}" if refused else ""
        return [(f"{what} has no deploy record in {source!r} signed by a key trusted for it ({trust.describe()}) (repository {url}){why}", hint)]
    return []


def _verified_file(url: str, source: str, app: str | None) -> Path:
    """This machine's cache of the newest record it verified in a log (keyed by repository, environment, app)."""
    import hashlib

    key = hashlib.sha256(f"{url}\n{source}\n{app}".encode()).hexdigest()[:32]
    return cache_dir().parent / "verified" / f"{key}.json"


def _read_verified(path: Path) -> tuple[int, str] | None:
    import json

    try:
        doc = json.loads(path.read_text())
        return int(doc["seq"]), str(doc["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no cache, or a damaged one: verify from the checkpoint


def _write_verified(path: Path, seq: int, digest: str | None) -> None:
    """Remember a verified head (best effort: a read-only home only costs the next gate a few reads)."""
    import json
    import tempfile

    if digest is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"seq": seq, "hash": digest}, f)
        os.replace(tmp, path)
    except OSError:
        pass
