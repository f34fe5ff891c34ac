"""Showing untrusted text (package metadata, repository entries, config values) on a terminal."""

from __future__ import annotations

import re
from typing import Any

# C0/C1 control characters (escape sequences start with them); newlines and tabs are kept.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(value: object) -> str:
    """`value` as text with control characters shown as \\xNN, so nothing can drive the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def text(value: object, style: str = "") -> Any:
    """A rich Text of `value`: never parsed as markup, control characters neutralised."""
    from rich.text import Text

    return Text(clean(value), style=style)


# Wide enough that no table cell is cut and no line wrapped: CI logs and pipes keep full sha256s.
UNWRAPPED_WIDTH = 100_000


def console(*, stderr: bool = False, markup: bool = False) -> Any:
    """A rich Console for stdout or stderr: untrusted text is never markup; output that is not a terminal
    (a pipe, a file, a CI log) is never wrapped or truncated."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr, highlight=False, markup=markup)
    return Console(stderr=stderr, highlight=False, markup=markup, soft_wrap=True, width=UNWRAPPED_WIDTH)
