"""The environment's PostgreSQL: a service instance of the configured marketplace offering (or an
existing one), bound to the app. The buildpack reads its credentials from VCAP_SERVICES, so no
database URL ever passes through mxinfra."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mxinfra.environments import Environment
from mxinfra.target import EnvironmentContext

from .config import CloudFoundryConfig, ServiceConfig, where
from .provider import CfServiceInstance


def metadata(ctx: EnvironmentContext, *, release: bool = False) -> dict[str, Any]:
    """CAPI metadata: the standard tags as labels (short) and annotations (whole); the package's only on
    what a release changes (`release`: the app)."""
    p = ctx.prepared
    if release:
        return {"labels": dict(p.release_labels), "annotations": dict(p.release_annotations)}
    return {"labels": dict(p.labels), "annotations": dict(p.annotations)}


def service(ctx: EnvironmentContext, cfg: CloudFoundryConfig, kind: str, svc: ServiceConfig, after: Sequence[Any] = ()) -> CfServiceInstance:
    """A service instance `<app>-<env>-<kind>`: managed from offering/plan, or the existing one named."""
    props: dict[str, Any] = {**where(cfg, ctx.environment), "name": svc.existing or ctx.naming.physical(kind), "metadata": metadata(ctx), "timeouts": cfg.timeouts.model_dump()}
    if svc.existing:
        props["existing"] = svc.existing
    else:
        props.update(offering=svc.offering, plan=svc.plan, parameters=dict(svc.parameters))
    # Production data is never deleted by a destroy unless the environment is listed in releaseData.
    protect = svc.existing is None and ctx.environment.name not in cfg.releaseData
    return CfServiceInstance(ctx.naming.logical(kind), props, ctx.opts(protect_data=protect, depends_on=list(after)))


def create(ctx: EnvironmentContext, cfg: CloudFoundryConfig, after: Sequence[Any] = ()) -> CfServiceInstance:
    """The database service instance (created after `after`: the space, when the target creates it)."""
    return service(ctx, cfg, "database", cfg.database, after)
