"""Names for an environment's resources: Pulumi logical names and cloud-safe physical names. Pure."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


def shorten(name: str, max_len: int, sep: str = "-") -> str:
    """`name` if it fits, else a prefix plus a short stable hash of the whole, `max_len` long at most."""
    if len(name) <= max_len:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()
    size = min(8, max_len // 2)
    keep = max_len - size - len(sep)
    head = name[:keep].rstrip("-_.") if keep > 0 else ""
    # Names must start with a letter on most clouds: keep a letter in front when the prefix vanished.
    return (head + sep + digest[:size]) if head else ("x" + digest[: max_len - 1])


@dataclass(frozen=True)
class Naming:
    """The names of one environment's resources, stable across runs (no random suffixes)."""

    app: str
    environment: str

    @property
    def prefix(self) -> str:
        """The component's name, which every child's logical name starts with."""
        return f"{self.app}-{self.environment}"

    def logical(self, kind: str) -> str:
        """The Pulumi logical name of this environment's `kind` resource."""
        return f"{self.prefix}-{kind}"

    def physical(self, kind: str = "", *, max_len: int = 63, charset: str = "a-z0-9-") -> str:
        """A cloud name for `kind`: lowercase, only `charset` characters, at most `max_len` long."""
        raw = (f"{self.prefix}-{kind}" if kind else self.prefix).lower()
        cleaned = re.sub(f"[^{charset}]", "", raw)
        return shorten(cleaned, max_len, "-" if "-" in charset else "")


def app_naming(app: str) -> Naming:
    """Naming for what the app's environments share (the environment part is 'shared')."""
    return Naming(app, "shared")


LABEL_PREFIX = "mxinfra.io/"


def standard_tags(app: str, environment: str, role: str, package_sha256: str, model_version: str) -> dict[str, str]:
    """The tags every cloud resource carries, for traceability from a resource back to its package."""
    return {
        "mxinfra:app": app,
        "mxinfra:environment": environment,
        "mxinfra:role": role,
        "mxinfra:package-sha256": package_sha256,
        "mxinfra:model-version": model_version,
    }


# Tags that change with every release. A release (a new package, artifact or configuration) may change
# only what the deploy identity may write on every target: the workload and its configuration. So
# these go on the workload alone (`PreparedEnvironment.release_tags`); every other resource carries the
# stable ones, and a release leaves it untouched (issue 18: re-labelling the Namespace made `pulumi up`
# as the deploy group fail).
PER_RELEASE_TAGS = ("mxinfra:package-sha256", "mxinfra:model-version")


def stable_tags(tags: dict[str, str]) -> dict[str, str]:
    """`tags` without the per-release ones: what every resource a release does not change carries."""
    return {k: v for k, v in tags.items() if k not in PER_RELEASE_TAGS}


def _label_value(value: str) -> str:
    # Kubernetes label values: at most 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends.
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63]
    return cleaned.strip("-_.")


def kubernetes_labels(tags: dict[str, str]) -> dict[str, str]:
    """The standard tags as Kubernetes labels (the package hash shortened; the full one is an annotation)."""
    out = {}
    for key, value in tags.items():
        name = LABEL_PREFIX + key.split(":", 1)[1]
        out[name] = _label_value(value[:12] if key == "mxinfra:package-sha256" else value)
    return out


def kubernetes_annotations(tags: dict[str, str]) -> dict[str, str]:
    """The standard tags as Kubernetes annotations, values unshortened."""
    return {LABEL_PREFIX + key.split(":", 1)[1]: value for key, value in tags.items()}
