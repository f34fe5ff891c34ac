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
    """A short form of a user's value for a message, as YAML writes it (`true`, `null`, `[1, 2]`, not
    Python's `True`, `None`): never thousands of digits, never a crash."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    try:
        text = _yaml_form(value)
    except ValueError:  # e.g. an int past the interpreter's digit limit
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else f"{text[: limit - 14]}... ({len(text)} chars)"


def _yaml_form(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return ".nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_form(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_yaml_form(k)}: {_yaml_form(v)}" for k, v in value.items()) + "}"
    return repr(value)


def suggest(word: str, candidates: Sequence[str]) -> str:
    """A 'did you mean' hint for `word`, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""
