"""The database in plain mode: an external PostgreSQL by URL, or one in the namespace (a StatefulSet on a
protected claim, its password generated).

Imported only while deploying (it imports pulumi_kubernetes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random

from mxinfra.settings import DatabaseUrl

from .builder import Builder
from .layout import DB_CPU_LIMIT_MILLI, DB_CPU_REQUEST_MILLI, POSTGRES_UID, RESTRICTED, milli
from .storage import volume_claim


def binding(b: Builder, pvcs: list[tuple[str, str]]) -> tuple[DatabaseUrl, dict[str, Any], Callable[[], None] | None]:
    """The database binding, the variables its Secret adds, and (in-cluster) what creates the
    PostgreSQL workload once that Secret exists (the workload reads its password from it)."""
    db = b.settings.database
    assert db is not None  # check() refused a plain environment without one
    if db.url is not None:
        return DatabaseUrl(pulumi.Output.secret(db.url), require_tls=db.requireTls), {}, None
    spec = db.inCluster
    assert spec is not None
    lay = b.layout
    password = pulumi_random.RandomPassword(b.logical("database-password"), length=32, special=False, opts=b.opts(kubernetes=False))
    host = f"{lay.name('postgres')}.{lay.namespace}.svc:5432"
    url = pulumi.Output.secret(pulumi.Output.concat("postgres://mendix:", password.result, "@", host, "/mendix"))
    claim = volume_claim(b, "postgres-data", lay.name("postgres-data"), spec.size, "database", pvcs)

    def workload() -> None:
        _postgres(b, spec, claim)

    # In-cluster PostgreSQL has no TLS; the traffic stays inside the namespace (see the NetworkPolicy).
    return DatabaseUrl(url, require_tls=False), {"POSTGRES_PASSWORD": password.result}, workload


def _postgres(b: Builder, spec: Any, claim: Any) -> None:
    """The in-cluster PostgreSQL: its Service and its StatefulSet on the claim, protected like data."""
    lay = b.layout
    memory = f"{spec.memory}Mi"
    container = {
        "name": "postgres",
        "image": spec.image,
        "ports": [{"name": "postgres", "containerPort": 5432, "protocol": "TCP"}],
        "env": [
            {"name": "POSTGRES_USER", "value": "mendix"},
            {"name": "POSTGRES_DB", "value": "mendix"},
            {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": b.secret_name("database-secret"), "key": "POSTGRES_PASSWORD"}}},
            # A subdirectory: the volume's root holds lost+found on many storage classes, and under
            # fsGroup it is root-owned but group-writable, so uid 999 can create (and chmod 0700) its own.
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "resources": {
            "requests": {"cpu": milli(DB_CPU_REQUEST_MILLI), "memory": memory},
            "limits": {"cpu": milli(DB_CPU_LIMIT_MILLI), "memory": memory},
        },
        "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "mendix", "-d", "mendix"]}, "periodSeconds": 10},
        "livenessProbe": {"exec": {"command": ["pg_isready", "-U", "mendix", "-d", "mendix"]}, "periodSeconds": 30, "failureThreshold": 6},
        # The official (Debian-based) image runs as postgres = uid/gid 999 without root when PGDATA is writable.
        "securityContext": {**RESTRICTED, "runAsUser": POSTGRES_UID, "runAsGroup": POSTGRES_UID},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
    }
    service = k8s.core.v1.Service(
        b.logical("postgres-service"),
        metadata=lay.metadata(lay.name("postgres"), "database", per_release=False),
        spec={"type": "ClusterIP", "selector": lay.selector("database"), "ports": [{"name": "postgres", "port": 5432, "targetPort": "postgres", "protocol": "TCP"}]},
        opts=b.opts(),
    )
    statefulset = k8s.apps.v1.StatefulSet(
        b.logical("postgres"),
        metadata=lay.metadata(lay.name("postgres"), "database", per_release=False),
        spec={
            "serviceName": lay.name("postgres"),
            "replicas": 1,
            "selector": {"matchLabels": lay.selector("database")},
            "template": {
                "metadata": {"labels": lay.object_labels("database", per_release=False)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": POSTGRES_UID,
                        "runAsGroup": POSTGRES_UID,
                        "fsGroup": POSTGRES_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": lay.name("postgres-data")}}],
                },
            },
        },
        opts=b.opts(protect_data=True, depends_on=[claim]),
    )
    b.created["database-deps"] = [statefulset, service]
