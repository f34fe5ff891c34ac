"""What git knows about the package being pushed: the commit and the stories its messages reference."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

# Jira-style keys (ORD-123) and issue numbers (#123): what teams put in commit messages.
DEFAULT_STORY_PATTERN = r"\b[A-Z][A-Z0-9]+-\d+\b|#\d+"


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def head_commit(directory: Path) -> str | None:
    """HEAD's commit id, or None outside a git repository."""
    out = _git(directory, "rev-parse", "HEAD")
    return out.strip() if out else None


def stories_since(directory: Path, since: str | None, pattern: str = DEFAULT_STORY_PATTERN) -> list[str]:
    """Story ids in the messages of commits after `since` up to HEAD (HEAD's message alone if unknown)."""
    if since and _git(directory, "merge-base", "--is-ancestor", since, "HEAD") is not None:
        log = _git(directory, "log", "--format=%B", f"{since}..HEAD")
    else:
        log = _git(directory, "log", "-1", "--format=%B", "HEAD")
    if not log:
        return []
    seen: dict[str, None] = {}
    for match in re.finditer(pattern, log):
        seen.setdefault(match.group(0), None)
    return list(seen)
