"""Config checks every target shares, stated once (issue 19): a secret stored in plain text, and a
production ingress open to the internet. The core and the targets call these instead of writing their
own, so a message, a fix and a threshold are the same everywhere. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import ConfigIssue
from .exposure import WIDE, is_public, is_wide
from .schema import RawConfig


def plain_text(raw: RawConfig, path: str, value: object | None, file: str = "") -> ConfigIssue | None:
    """The issue of a secret value configured at `path` (`mxinfra:block.a.b`) in plain text; None when it
    is absent or stored encrypted (secure:)."""
    if value is None or raw.is_secret(path):
        return None
    return ConfigIssue(path, "is stored in plain text", f"store it encrypted: pulumi config set --secret --path '{path}' VALUE", file)


def wide_ingress(cidrs: Iterable[str], key: str, environment: str, file: str = "") -> list[ConfigIssue]:
    """One issue per network in `key` (a list of CIDRs) that opens production environment `environment`
    to the whole internet or a wide part of it (wider than exposure.WIDE); the opt-out is the caller's."""
    return [
        ConfigIssue(
            f"{key}[{i}]",
            f"{cidr} opens production environment {environment!r} to the whole internet"
            if is_public(cidr)
            else f"{cidr} ({WIDE}) opens production environment {environment!r} to a large part of the internet",
            "list the networks that need access, or opt in with allowPublicIngress: true",
            file,
        )
        for i, cidr in enumerate(cidrs)
        if is_wide(cidr)
    ]
