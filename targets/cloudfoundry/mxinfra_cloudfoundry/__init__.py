"""The Cloud Foundry target of mxinfra: the cf-mendix-buildpack over the Cloud Controller v3 API."""

from __future__ import annotations

from .target import CloudFoundryTarget

target = CloudFoundryTarget()

__all__ = ["CloudFoundryTarget", "target"]
