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
