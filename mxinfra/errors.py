"""Errors the user can fix (exit 2) as opposed to bugs (exit 1)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass


class UserError(Exception):
    """Input at fault: the CLI prints the message (no traceback) and exits 2."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the stack config, located by its key path."""

    path: str
    message: str
    fix: str = ""
    file: str = ""

    def __str__(self) -> str:
        return self.describe(with_file=True)

    def describe(self, with_file: bool) -> str:
        """`path: message (fix)`, prefixed by the file when asked."""
        where = f"{self.file}: " if with_file and self.file else ""
        hint = f" ({self.fix})" if self.fix else ""
        return f"{where}{self.path}: {self.message}{hint}"


class ConfigError(UserError):
    """Every problem found in a stack's config, collected rather than stopping at the first."""

    def __init__(self, issues: list[ConfigIssue], source: str = "") -> None:
        self.issues = list(issues)
        self.source = source
        head = f"{len(self.issues)} problem(s) in the stack config" + (f" {source}" if source else "")
        # The header names the file once; only an issue from another file repeats its own.
        lines = [f"  - {i.describe(with_file=i.file != source)}" for i in self.issues]
        super().__init__(head + ":\n" + "\n".join(lines))


def shown(value: object, limit: int = 60) -> str:
    """A short repr of a user's value for a message: never thousands of digits, never a crash."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    try:
        text = repr(value)
    except ValueError:  # e.g. an int past the interpreter's digit limit
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else f"{text[: limit - 14]}... ({len(text)} chars)"


def suggest(word: str, candidates: Sequence[str]) -> str:
    """A 'did you mean' hint for `word`, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""
