"""Which tags a resource carries: the package's only on what a release changes. Pure.

A release (a new package, image or configuration) changes the task definitions and the services; if the
package's hash and model version were tags of every resource, each release would also re-tag the security
groups, the database, the bucket, the roles... and `pulumi up` under the `deploy` role, which may touch only
the task definitions and services, would fail. Traceability stays: the task definitions and services, the
things that run the package, carry `mxinfra:package-sha256` and `mxinfra:model-version`.
"""

from __future__ import annotations

from collections.abc import Mapping

PER_RELEASE = ("mxinfra:package-sha256", "mxinfra:model-version")


def stable(tags: Mapping[str, str]) -> dict[str, str]:
    """`tags` without the per-release ones: for every resource a release does not change."""
    return {k: v for k, v in tags.items() if k not in PER_RELEASE}
