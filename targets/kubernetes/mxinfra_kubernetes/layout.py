"""Names, labels and sizes of one environment's Kubernetes objects. Pure (no Pulumi imports)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from mxinfra.naming import LABEL_PREFIX, Naming

from .config import BYTE_QUANTITY, EnvironmentSettings, cpu_milli  # noqa: F401 (cpu_milli: re-exported)

RUNTIME_UID = 1001  # the Docker buildpack's runtime user
POSTGRES_UID = 999  # the postgres image's user
# Every container mxinfra declares runs under the Pod Security Standards' "restricted" profile.
RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
HTTP_PORT = 8080
FILES_PATH = "/opt/mendix/build/data/files"  # where the buildpack keeps local files
# What the namespace must also hold besides the runtime: one database backup job at a time.
JOB_CPU_MILLI, JOB_MEMORY_MB = 500, 512
DB_CPU_REQUEST_MILLI, DB_CPU_LIMIT_MILLI = 250, 1000
# Namespaces the target creates enforce the `restricted` Pod Security Standard, so holders of deploy (may
# patch the StatefulSet) or backups (may create Jobs) cannot run privileged or hostPath pods there.
# Pinned to the version the manifests are validated against; every pod the target creates complies.
POD_SECURITY_VERSION = "v1.30"
POD_SECURITY_LABELS = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "audit", "warn")
    for suffix, value in (("", "restricted"), ("-version", POD_SECURITY_VERSION))
}


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "": 1}


def mib(quantity: str) -> int:
    """A byte quantity ("5Gi", "512Mi", "1G") in MiB, rounded up (config.ByteQuantity admits only these)."""
    m = BYTE_QUANTITY.fullmatch(quantity)
    if not m:
        raise ValueError(f"not a byte quantity: {quantity!r}")
    return math.ceil(float(m.group(1)) * _UNITS[m.group(3) or ""] / 2**20)


def milli(value: int) -> str:
    """Millicores as a quantity string."""
    return f"{value // 1000}" if value % 1000 == 0 else f"{value}m"


@dataclass(frozen=True)
class Layout:
    """The physical names and labels of one environment's objects."""

    naming: Naming
    namespace: str
    create_namespace: bool
    labels: Mapping[str, str]  # stable: every object
    release_labels: Mapping[str, str] = field(default_factory=dict)  # with the package's: the workload only

    @classmethod
    def of(cls, naming: Naming, settings: EnvironmentSettings, labels: Mapping[str, str], release_labels: Mapping[str, str] | None = None) -> Layout:
        """The layout of the environment named by `naming`."""
        ns = settings.namespace or naming.physical()
        return cls(naming, ns, settings.namespace is None, dict(labels), dict(release_labels if release_labels is not None else labels))

    @property
    def workload(self) -> str:
        """The StatefulSet / MendixApp name; 52 characters at most so pod revision labels fit in 63."""
        return self.naming.physical(max_len=52)

    def name(self, kind: str) -> str:
        """The physical name of the environment's `kind` object."""
        return self.naming.physical(kind)

    @property
    def instance(self) -> str:
        """The app.kubernetes.io/instance value shared by all pods of the environment."""
        return self.naming.prefix

    def selector(self, component: str) -> dict[str, str]:
        """Selector labels of a component's pods: stable across releases."""
        return {"app.kubernetes.io/instance": self.instance, "app.kubernetes.io/component": component}

    def object_labels(self, component: str | None = None, *, per_release: bool = False) -> dict[str, str]:
        """Labels of an object: the standard ones (with the package's only on the workload a release
        changes: `per_release`) plus the app.kubernetes.io set."""
        out = dict(self.release_labels if per_release else self.labels)
        out.update({"app.kubernetes.io/name": "mendix", "app.kubernetes.io/instance": self.instance, "app.kubernetes.io/managed-by": "mxinfra"})
        if component:
            out["app.kubernetes.io/component"] = component
        return dict(sorted(out.items()))

    def metadata(self, name: str | None, component: str | None = None, *, per_release: bool = False, namespaced: bool = True, annotations: Mapping[str, str] | None = None) -> dict:
        """ObjectMeta with the labels and an explicit name (so rendered manifests are complete); None
        leaves the name to the provider (builder.Builder.secret says why)."""
        meta: dict = {"labels": self.object_labels(component, per_release=per_release)}
        if name is not None:
            meta = {"name": name, **meta}
        if namespaced:
            meta["namespace"] = self.namespace
        if annotations:
            meta["annotations"] = dict(sorted(annotations.items()))
        return meta
