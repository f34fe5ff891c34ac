"""The `egress:` list of a target block: where the app may connect besides what it needs to run. Pure.

Every target limits a runtime's outgoing traffic to its database, its file store and DNS by default;
anything the app calls out to (a REST service, an SMTP relay) is listed, one rule per destination
network, and every target turns the same rules into its own network controls (a NetworkPolicy, a
security group). The schema lives here so that every target block accepts the same shape.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from .errors import ConfigIssue
from .schema import StrictModel
from .exposure import WIDE, is_wide, parse_cidr


class EgressRule(StrictModel):
    """One destination the runtime may connect to: a network, its ports, the protocol and why."""

    cidr: str = Field(description="The destination network, e.g. 203.0.113.10/32 (IPv4 or IPv6)")
    ports: list[int] = Field(min_length=1, max_length=16, description="Destination ports, e.g. [443]")
    protocol: Literal["tcp", "udp"] = "tcp"
    description: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9 ._:/()#,@+=&;{}!$*-]+$", description="What the app reaches there (shown in the plan and on the rule)")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        parse_cidr(v)
        return v

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        for p in v:
            if not 1 <= p <= 65535:
                raise ValueError(f"{p} is not a port (1 to 65535)")
        return sorted(set(v))

    @property
    def is_ipv6(self) -> bool:
        """True for an IPv6 network."""
        return ipaddress.ip_network(self.cidr).version == 6

    @property
    def is_wide(self) -> bool:
        """True for an IPv4 /8 or IPv6 /32, or wider (exposure.is_wide: the one rule for both directions)."""
        return is_wide(self.cidr)


def egress_warnings(rules: list[EgressRule], env: str) -> list[str]:
    """What the plan says about the listed rules: each wide one opens a large part of the internet."""
    return [
        f"egress {r.cidr} ports {','.join(map(str, r.ports))}/{r.protocol} ({r.description}) admits a large part of the internet"
        for r in rules
        if r.is_wide
    ]


def check_egress(rules: list[EgressRule], path: str, production: bool, allow_wide: bool, file: str = "") -> list[ConfigIssue]:
    """A wide rule on a stack with production needs the explicit opt-in `allow_wide` (the key `allowWideEgress`)."""
    if not production or allow_wide:
        return []
    return [
        ConfigIssue(f"{path}[{i}].cidr", f"{r.cidr} ({WIDE}) opens production's outgoing traffic to a large part of the internet", "list the networks the app calls, or opt in with allowWideEgress: true", file)
        for i, r in enumerate(rules)
        if r.is_wide
    ]
