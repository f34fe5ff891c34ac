"""The release guard: before a program declares anything under a real engine, what runs must be what
the activity log's last signed records say (`mxinfra.drift` compares; the target reads what runs).
Every target with `Target.running` calls `guard` from its `deploy_app`, so the rule and its verdict live
here once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .drift import CannotObserve, DriftError, Observed, check

if TYPE_CHECKING:
    from .target import Deployment


def under_mocks() -> bool:
    """True under the SDK's mock runtime (`mxinfra plan`, tests): no engine, and nothing deployed to ask."""
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.settings import get_monitor

    return isinstance(get_monitor(), MockMonitor)


def guard(
    deployment: Deployment,
    observe: Callable[[str], Observed],
    component: Any,
    base_dir: Path,
    *,
    unreadable: tuple[type[BaseException], ...] = (),
    source: str = "the platform",
) -> None:
    """The release guard every target with `Target.running` runs before it declares anything, under a
    real engine (preview or update): what runs must be what each environment's last signed record says.
    An unrecorded change stops the run naming it (pulumi.RunError); a difference that is not one is a
    warning. What runs cannot be read (`CannotObserve`, or a target's `unreadable` errors): the run stops
    too (fail closed: the identity that deploys can read what it deploys)."""
    import pulumi

    try:
        differences, _ = check(deployment, [p.environment.name for p in deployment.environments], observe, base_dir)
    except (CannotObserve, *unreadable) as e:
        raise pulumi.RunError(f"what runs could not be read from {source} to compare it with the activity log: {e}") from None
    if any(x.blocking for x in differences):
        raise pulumi.RunError(str(DriftError(differences)))
    if differences:
        pulumi.log.warn(str(DriftError(differences)), resource=component)
