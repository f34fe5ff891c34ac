"""Where a stack's repository is, which package a stack names, and the staged-promotion rule."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigIssue

if TYPE_CHECKING:
    from ..environments import Environment

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

    repo = Repository(open_store(url))
    entry = repo.find(reference)
    return repo.fetch(entry, cache_dir()), entry.version


def promotion_issues(envs: list[Environment], package_sha256: str, url: str, file: str = "") -> list[ConfigIssue]:
    """Environments that require promotion but whose source has no deploy record of this package."""
    gated = [e for e in envs if e.require_promotion_from]
    if not gated:
        return []
    from .activity import ActivityLog
    from .store import open_store

    log = ActivityLog(open_store(url))
    issues = []
    for env in gated:
        source = env.require_promotion_from
        assert source is not None
        deployed = any(r.action == "deploy" and r.package_sha256 == package_sha256 for r in log.records(source))
        if not deployed:
            issues.append(
                ConfigIssue(
                    f"{env.config_path}.requirePromotionFrom",
                    f"package sha256:{package_sha256[:12]} has no deploy record in {source!r} (repository {url})",
                    f"deploy it to {source} first, or promote what {source} runs: mxinfra promote --from {source} --to {env.name}",
                    file,
                )
            )
    return issues
