"""The environment model: roles (tiers), validated environments and secret values. Pure."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NewType, Union

EnvironmentName = NewType("EnvironmentName", str)
Scalar = Union[bool, int, float, str]
ScheduledEventsSpec = Union[Literal["ALL", "NONE"], tuple[str, ...]]


class Role(str, enum.Enum):
    """The tier of an environment; any environment name may have any role."""

    TEST = "test"
    ACCEPTANCE = "acceptance"
    PRODUCTION = "production"

    @classmethod
    def from_name(cls, name: str) -> Role | None:
        """The role an environment named exactly after one takes by default."""
        try:
            return cls(name)
        except ValueError:
            return None

    @property
    def dtap_mode(self) -> str:
        """The runtime's DTAPMode for this tier (D is never used: it relaxes the runtime's security)."""
        return {Role.TEST: "T", Role.ACCEPTANCE: "A", Role.PRODUCTION: "P"}[self]


# What a secret value reads as offline (`mxinfra plan` cannot decrypt): checks of the value itself wait
# for the program under the engine, which has it.
OFFLINE_SECRET = "[secret]"


class Secret:
    """A value that must only ever leave mxinfra as a Pulumi secret; its repr never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The plain value, for handing to `pulumi.Output.secret` and nowhere else."""
        return self._value

    def __repr__(self) -> str:
        return "Secret([secret])"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass(frozen=True)
class License:
    """A runtime licence: the id in the clear, the key secret."""

    id: str
    key: Secret


@dataclass(frozen=True)
class SecretConstant:
    """A constant whose value is a secret (e.g. an encryption key): rendered only into secret env vars."""

    name: str
    value: Secret


@dataclass(frozen=True)
class Environment:
    """One validated environment of the app."""

    name: EnvironmentName
    role: Role
    instances: int = 1
    memory_mb: int = 1024
    constants: Mapping[str, Scalar] = field(default_factory=dict)
    secret_constants: tuple[SecretConstant, ...] = ()
    scheduled_events: ScheduledEventsSpec = "ALL"
    runtime_settings: Mapping[str, Scalar] = field(default_factory=dict)
    license: License | None = None
    admin_password: Secret | None = None
    require_promotion_from: str | None = None
    # A production environment's explicit opt-out of staged promotion (`ungated: {reason: ...}`), warned on
    # every plan and `pulumi up`; None everywhere else (production is gated by default).
    ungated_reason: str | None = None
    config_path: str = ""
    # A mxinfra.backups.Backups (typed loosely: that module imports this one); None reads as the defaults.
    backups: Any = None

    @property
    def is_production(self) -> bool:
        """True for production-tier environments, whatever their name."""
        return self.role is Role.PRODUCTION


# The one rule app and environment names follow everywhere (config, package policy, every target's names).
_LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
# Every resource name is `<app>-<environment>[-<kind>]`: with no '-' in environment names that prefix
# reads back one way only, so `orders`/`prod-eu` and `orders-prod`/`eu` cannot name the same IAM role,
# database, bucket, namespace or app (issue 19, F15).
_ENVIRONMENT = re.compile(r"^[a-z][a-z0-9]*$")
MAX_NAME = 20


def check_environment_name(v: str) -> None:
    """Refuse an environment name that would make `<app>-<environment>` read back more than one way (ValueError)."""
    if len(v) > MAX_NAME or not _ENVIRONMENT.fullmatch(v):
        raise ValueError(
            f"environment name {v!r} must be at most {MAX_NAME} lowercase letters and digits, starting with a letter "
            "(no '-': resource names are <app>-<environment>, which must read back one way only)"
        )


def check_label(v: str, what: str) -> None:
    """Refuse an app name (or another label) every cloud's names cannot derive from (ValueError saying why)."""
    if len(v) > MAX_NAME or not _LABEL.fullmatch(v):
        raise ValueError(
            f"{what} {v!r} must be a lowercase DNS label of at most {MAX_NAME} characters "
            "(a-z, 0-9 and '-', starting with a letter), so every cloud's names can derive from it"
        )


def label_fix(name: str, environment: bool = False) -> str:
    """`PreProd` -> "rename it to 'preprod'", when a valid form is near."""
    if environment:
        fixed = re.sub(r"[^a-z0-9]+", "", name.strip().lower())[:MAX_NAME]
        return f"rename it to {fixed!r}" if fixed and _ENVIRONMENT.fullmatch(fixed) else "rename the entry"
    fixed = re.sub(r"[^a-z0-9-]+", "-", name.strip().lower()).strip("-")[:MAX_NAME].rstrip("-")
    if fixed and _LABEL.fullmatch(fixed):
        return f"rename it to {fixed!r}"
    return "rename the entry"
