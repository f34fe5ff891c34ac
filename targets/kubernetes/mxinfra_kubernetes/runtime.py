"""The runtime in plain mode: the Docker-buildpack image as a StatefulSet, with its Services, Ingress and guard
rails (network policy, disruption budget, quota); it asks database.py and storage.py for their bindings.

Imported only while deploying (it imports pulumi_kubernetes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import pulumi_kubernetes as k8s

from mxinfra.settings import Bindings, LocalStorage, buildpack_env

from . import admission
from .builder import Builder
from .config import host_of
from .database import binding as database_binding
from .layout import (
    DB_CPU_LIMIT_MILLI,
    DB_CPU_REQUEST_MILLI,
    FILES_PATH,
    HTTP_PORT,
    JOB_CPU_MILLI,
    JOB_MEMORY_MB,
    RESTRICTED,
    RUNTIME_UID,
    Layout,
    cpu_milli,
    mib,
    milli,
)
from .running import RUNTIME_CONFIG_ANNOTATION, RUNTIME_CONTAINER, SECRET_KINDS, placeholder, pod_fingerprint
from .storage import binding as storage_binding

# Variables that carry database credentials live in their own Secret, so the backups role can read
# the database credentials without reading the admin password.
_DB_VARS = ("DATABASE_URL", "MXRUNTIME_DatabaseUserName", "MXRUNTIME_DatabasePassword")


def deploy(b: Builder) -> dict[str, Any]:
    """Every object of a plain-mode environment; returns the environment's outputs."""
    ctx, s, lay = b.ctx, b.settings, b.layout
    env = ctx.environment
    b.make_namespace(holds_data=_holds_data(b))
    pvcs: list[tuple[str, str]] = []  # (name, size) of the claims, for the quota

    database, db_extra, in_cluster = database_binding(b, pvcs)
    storage = storage_binding(b, pvcs)
    vars_ = buildpack_env(ctx.settings, Bindings(ctx.admin_password, database, storage))
    # MEMORY_LIMIT sits on the container next to its memory limit: the two must change together.
    plain = {k: str(v) for k, v in vars_.plain.items() if k != "MEMORY_LIMIT"}
    # Content-addressed and immutable: the provider replaces a ConfigMap whose data changes, and under a
    # fixed name that is delete-before-create (pods starting in between would find no ConfigMap). A new
    # name per content makes a change create the new ConfigMap, roll the pods onto it (the pod template
    # names it), then delete the old one; `immutable` keeps hand edits out of the reviewed config.
    config_name = config_map_name(lay, plain)
    config = k8s.core.v1.ConfigMap(
        b.logical("config"), metadata=lay.metadata(config_name, "runtime"), data=plain, immutable=True, opts=b.opts()
    )
    b.created["config"] = config
    db_vars = {k: v for k, v in vars_.secret.items() if k in _DB_VARS}
    db_vars.update(db_extra)
    db_secret = b.secret("database-secret", db_vars, component="database")
    runtime_secret = b.secret("secret", {k: v for k, v in vars_.secret.items() if k not in _DB_VARS})
    if in_cluster is not None:
        in_cluster()

    memory = f"{ctx.settings.memory_limit_mb}Mi"
    cpu = s.cpu

    def env_from(secret_name: Callable[[str], Any]) -> list[dict[str, Any]]:
        return [
            {"configMapRef": {"name": config_name}},
            {"secretRef": {"name": secret_name("secret")}},
            {"secretRef": {"name": secret_name("database-secret")}},
        ]

    container: dict[str, Any] = {
        "name": RUNTIME_CONTAINER,
        "image": s.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": [{"name": "MEMORY_LIMIT", "value": ctx.settings.memory_limit}],
        "envFrom": env_from(b.secret_name),
        "resources": {"requests": {"cpu": cpu.request, "memory": memory}, "limits": {"cpu": cpu.limit, "memory": memory}},
        # The runtime answers on / once started; startup covers database migrations of a new release.
        "startupProbe": _http_probe(period=10, failures=60),
        "readinessProbe": _http_probe(period=10, failures=3),
        "livenessProbe": _http_probe(period=20, failures=6),
        "securityContext": {**RESTRICTED, "runAsUser": RUNTIME_UID},
    }
    volumes = []
    if isinstance(storage, LocalStorage):
        container["volumeMounts"] = [{"name": "files", "mountPath": FILES_PATH}]
        volumes.append({"name": "files", "persistentVolumeClaim": {"claimName": lay.name("files")}})
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no service env vars mixed into the buildpack's contract
        "terminationGracePeriodSeconds": 60,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUNTIME_UID, "fsGroup": RUNTIME_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    if volumes:
        pod_spec["volumes"] = volumes
    # What `mxinfra drift` compares what runs with (running.py): the template as declared, the Secrets by
    # their provider-named prefix (their names are known only after apply, their values are no configuration).
    prefixes = [b.logical(kind) for kind in SECRET_KINDS]
    declared = {**pod_spec, "containers": [{**container, "envFrom": env_from(lambda kind: placeholder(b.logical(kind)))}]}
    annotations = {**ctx.prepared.release_annotations, RUNTIME_CONFIG_ANNOTATION: pod_fingerprint(declared, {config_name: plain}, prefixes)}
    headless = _service(b, "headless-service", lay.name("headless"), headless=True)
    statefulset = k8s.apps.v1.StatefulSet(
        b.logical("statefulset"),
        metadata=lay.metadata(lay.workload, "runtime", per_release=True, annotations=annotations),
        spec={
            "serviceName": lay.name("headless"),
            # The buildpack makes the pod with ordinal 0 the cluster leader (scheduled events, DDL).
            "replicas": env.instances,
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": lay.selector("runtime")},
            "template": {
                "metadata": {"labels": lay.object_labels("runtime", per_release=True)},
                "spec": pod_spec,
            },
        },
        opts=b.opts(depends_on=[config, db_secret, runtime_secret, headless, *b.created.get("database-deps", [])]),
    )
    b.created["statefulset"] = statefulset
    ctx.runtime_resource(statefulset)
    _service(b, "service", lay.workload, headless=False)
    host = host_of(s, ctx.deployment.config.app.name, env.name)
    assert host is not None  # check() refused a missing host
    _ingress(b, host)
    _network_policy(b)
    if env.instances >= 2:
        k8s.policy.v1.PodDisruptionBudget(
            b.logical("pdb"),
            metadata=lay.metadata(lay.workload, "runtime", per_release=False),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": lay.selector("runtime")}},
            opts=b.opts(),
        )
    from . import backups

    backups.deploy(b, pvcs, bool(s.database and s.database.url is not None and s.database.requireTls), isinstance(storage, LocalStorage))
    _quota(b, pvcs)
    if env.is_production:
        admission.deploy(b)
    # The Secrets' names change with their values: a backup Job or a runbook takes them from here.
    secrets = {"runtime": b.secret_name("secret"), "database": b.secret_name("database-secret")}
    return {"url": f"https://{host}", "namespace": lay.namespace, "statefulset": lay.workload, "secrets": secrets}


def config_map_name(lay: Layout, plain: Mapping[str, str]) -> str:
    """`<app>-<env>-config-<first 10 hex of the data's SHA-256>`: a new name for every new content."""
    digest = hashlib.sha256(json.dumps(dict(plain), sort_keys=True).encode()).hexdigest()
    return f"{lay.name('config')}-{digest[:10]}"


def _holds_data(b: Builder) -> bool:
    """True when the namespace holds data (a claim) that deleting it would destroy."""
    from .backups import claim

    db, st = b.settings.database, b.settings.storage
    has_backups = claim(b.settings, b.ctx.environment) is not None
    return (db is not None and db.inCluster is not None) or (st is not None and st.local is not None) or has_backups


def _http_probe(*, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures}


def _service(b: Builder, kind: str, name: str, *, headless: bool) -> k8s.core.v1.Service:
    lay = b.layout
    spec: dict[str, Any] = {"selector": lay.selector("runtime"), "ports": [{"name": "http", "port": HTTP_PORT if headless else 80, "targetPort": "http", "protocol": "TCP"}]}
    if headless:
        # The StatefulSet's governing service: stable pod DNS names (<name>-0 is the leader).
        spec.update({"clusterIP": "None", "publishNotReadyAddresses": True})
    else:
        spec["type"] = "ClusterIP"
    svc = k8s.core.v1.Service(b.logical(kind), metadata=lay.metadata(name, "runtime", per_release=False), spec=spec, opts=b.opts())
    b.created[kind] = svc
    return svc


def _ingress(b: Builder, host: str) -> None:
    lay, ing = b.layout, b.settings.ingress
    meta = lay.metadata(lay.workload, "runtime", per_release=False, annotations=ing.annotations or None)
    k8s.networking.v1.Ingress(
        b.logical("ingress"),
        metadata=meta,
        spec={
            "ingressClassName": ing.className,
            "tls": [{"hosts": [host], "secretName": ing.tlsSecret or lay.name("tls")}],
            "rules": [
                {
                    "host": host,
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": lay.workload, "port": {"name": "http"}}}}]},
                }
            ],
        },
        opts=b.opts(),
    )


def _network_policy(b: Builder) -> None:
    from .network import policy_spec

    lay = b.layout
    pods = {"app.kubernetes.io/instance": lay.instance}
    k8s.networking.v1.NetworkPolicy(
        b.logical("network-policy"),
        metadata=lay.metadata(lay.name("network"), per_release=False),
        spec=policy_spec(b.settings, pods, {"podSelector": {"matchLabels": pods}}),
        opts=b.opts(),
    )


def _quota(b: Builder, pvcs: list[tuple[str, str]]) -> None:
    ctx, lay = b.ctx, b.layout
    env, cpu = ctx.environment, b.settings.cpu
    db = b.settings.database.inCluster if b.settings.database else None
    # The runtime's instances (up to the ceiling the deploy group may scale to without touching the
    # quota, which it cannot write), the in-cluster database if any, and one backup job.
    ceiling = max(env.instances, ctx.config.maxInstances or 0)
    pods = ceiling + (1 if db else 0) + 1
    job_cpu = max(JOB_CPU_MILLI, b.settings.backups.cpu)  # the backup Job's own allowance, if larger
    mem = ceiling * ctx.settings.memory_limit_mb + (db.memory if db else 0) + JOB_MEMORY_MB
    req_cpu = ceiling * cpu_milli(cpu.request) + (DB_CPU_REQUEST_MILLI if db else 0) + job_cpu
    lim_cpu = ceiling * cpu_milli(cpu.limit) + (DB_CPU_LIMIT_MILLI if db else 0) + job_cpu
    hard = {
        "pods": str(pods),
        "requests.cpu": milli(req_cpu),
        "limits.cpu": milli(lim_cpu),
        "requests.memory": f"{mem}Mi",
        "limits.memory": f"{mem}Mi",
        "persistentvolumeclaims": str(len(pvcs)),
    }
    if pvcs:
        hard["requests.storage"] = f"{sum(mib(size) for _, size in pvcs)}Mi"
    k8s.core.v1.ResourceQuota(b.logical("quota"), metadata=lay.metadata(lay.name("quota"), per_release=False), spec={"hard": hard}, opts=b.opts())
    # Containers that name no resources (e.g. a backup job) get the job allowance; none may outgrow the runtime.
    largest = max(ctx.settings.memory_limit_mb, db.memory if db else 0)
    k8s.core.v1.LimitRange(
        b.logical("limits"),
        metadata=lay.metadata(lay.name("limits"), per_release=False),
        spec={
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": milli(JOB_CPU_MILLI), "memory": f"{JOB_MEMORY_MB}Mi"},
                    "defaultRequest": {"cpu": milli(JOB_CPU_MILLI), "memory": f"{JOB_MEMORY_MB}Mi"},
                    "max": {"cpu": milli(max(cpu_milli(cpu.limit), DB_CPU_LIMIT_MILLI if db else 0, job_cpu)), "memory": f"{largest}Mi"},
                }
            ]
        },
        opts=b.opts(),
    )
