"""The environment's file storage: an object-store service instance (e.g. SAP BTP `objectstore`) bound
to the app; the buildpack configures the runtime from its VCAP_SERVICES credentials."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mxinfra.target import EnvironmentContext

from .config import CloudFoundryConfig
from .database import service
from .provider import CfServiceInstance


def create(ctx: EnvironmentContext, cfg: CloudFoundryConfig, after: Sequence[Any] = ()) -> CfServiceInstance | None:
    """The object-store service instance, or None (files on the instance's disk)."""
    if cfg.storage is None:
        return None
    return service(ctx, cfg, "files", cfg.storage, after)
