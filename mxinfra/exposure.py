"""Rules every target shares about network exposure and cluster instances. Pure.

- Which address ranges count as public: production refuses them without an explicit opt-in.
- How `instances` splits into the one cluster leader and its followers on platforms without ordinals.
"""

from __future__ import annotations

import ipaddress

# A range this wide (or wider) counts as public on production, and an egress rule this wide opens a large
# part of the internet: `10.0.0.0/8` included. Per address family: an IPv6 /8 is 2^120 addresses, so the
# IPv6 bound is a /32, a whole provider's allocation from a regional registry (RFC 6177, RIR policy).
WIDE_PREFIX_MAX = {4: 8, 6: 32}
WIDE = "an IPv4 /8 or IPv6 /32, or wider"  # how messages name such a range


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR block from config (host bits must be zero); ValueError says what is wrong with it."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise ValueError(f"{text!r} is not a CIDR block: {e}") from None


def is_public(cidr: str) -> bool:
    """True for a CIDR that admits the whole internet (`0.0.0.0/0`, `::/0`)."""
    return ipaddress.ip_network(cidr).prefixlen == 0


def is_wide(cidr: str) -> bool:
    """True for a CIDR production treats as public: an IPv4 /8 or an IPv6 /32, or wider."""
    net = ipaddress.ip_network(cidr)
    return net.prefixlen <= WIDE_PREFIX_MAX[net.version]


def leader_follower_counts(instances: int) -> tuple[int, int]:
    """(leader, followers) for `instances`: exactly one leader runs (none when stopped), the rest follow.

    The leader alone runs scheduled events and the database sync; see `settings.instance_env` for the
    variable that tells each instance which it is.
    """
    if instances < 0:
        raise ValueError("instances is 0 or more")
    return min(instances, 1), max(instances - 1, 0)
