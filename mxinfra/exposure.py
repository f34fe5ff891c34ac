"""Rules every target shares about network exposure and cluster instances. Pure.

- Which address ranges count as public: production refuses them without an explicit opt-in.
- How `instances` splits into the one cluster leader and its followers on platforms without ordinals.
"""

from __future__ import annotations

import ipaddress

# On production, a range this wide (or wider) counts as public: `10.0.0.0/8` included.
PUBLIC_PREFIX_MAX = 8


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
    """True for a CIDR production treats as public: prefix length PUBLIC_PREFIX_MAX or shorter."""
    return ipaddress.ip_network(cidr).prefixlen <= PUBLIC_PREFIX_MAX


def leader_follower_counts(instances: int) -> tuple[int, int]:
    """(leader, followers) for `instances`: exactly one leader runs (none when stopped), the rest follow.

    The leader alone runs scheduled events and the database sync; see `settings.instance_env` for the
    variable that tells each instance which it is.
    """
    if instances < 0:
        raise ValueError("instances is 0 or more")
    return min(instances, 1), max(instances - 1, 0)
