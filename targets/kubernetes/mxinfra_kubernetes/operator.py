"""Operator mode: one `MendixApp` custom resource per environment (docs/mendix.md §4).

Imported only while deploying (it imports pulumi_kubernetes).
"""

from __future__ import annotations

import base64
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from mxinfra.settings import operator_runtime

from . import admission
from .builder import Builder
from .config import host_of
from .running import RUNTIME_CONFIG_ANNOTATION, SECRET_KINDS, mendixapp_fingerprint, placeholder

API_VERSION = "privatecloud.mendix.com/v1alpha1"
KIND = "MendixApp"


def spec(b: Builder, secret_name: Any = None) -> dict[str, Any]:
    """The MendixApp spec without its secret fields (see `_secret_fields`); `secret_name`: how it names the
    runtime Secret (default: the provider-assigned name)."""
    ctx, s = b.ctx, b.settings
    op = s.operator
    assert op is not None  # check() refused operator mode without it
    host = host_of(s, ctx.deployment.config.app.name, ctx.environment.name)
    memory = f"{ctx.settings.memory_limit_mb}Mi"
    runtime = operator_runtime(ctx.settings)
    secret_vars = _secret_vars(b)
    if secret_vars:
        runtime["environmentVariables"] = [
            {"name": k, "valueFrom": {"secretKeyRef": {"name": b.secret_name("secret") if secret_name is None else secret_name, "key": k}}} for k in sorted(secret_vars)
        ]
    tls: dict[str, Any] = {"enableTLS": True}
    if s.ingress.tlsSecret:
        tls["secretName"] = s.ingress.tlsSecret
    out: dict[str, Any] = {
        "mendixRuntimeVersion": op.runtimeVersion or ctx.package.runtime_version,
        "sourceURL": op.sourceURL,
        "appURL": host,
        "tls": tls,
        "replicas": ctx.environment.instances,
        "resources": {"requests": {"cpu": s.cpu.request, "memory": memory}, "limits": {"cpu": s.cpu.limit, "memory": memory}},
        "database": {"servicePlan": op.databasePlan},
        "storage": {"servicePlan": op.storagePlan},
        "ingressClassName": s.ingress.className,
        "runtime": runtime,
    }
    if s.ingress.annotations:
        out["endpointAnnotations"] = dict(sorted(s.ingress.annotations.items()))
    return out


def _secret_fields(b: Builder) -> dict[str, Any]:
    """The CR's secret runtime fields, each a Pulumi secret: the admin password (base64, as the
    Operator reads it) and an offline licence."""
    settings = b.ctx.settings
    out: dict[str, Any] = {"mxAdminPassword": pulumi.Output.secret(b.ctx.admin_password.apply(lambda p: base64.b64encode(p.encode()).decode()))}
    if settings.license_key is not None:
        out["runtimeLicense"] = {"type": "offline", "id": settings.license_id or "", "key": pulumi.Output.secret(settings.license_key.reveal())}
    return out


def _secret_vars(b: Builder) -> dict[str, Any]:
    # Secret constants reach the runtime as MX_<Module>_<Constant> variables read from a Secret.
    return {"MX_" + name.replace(".", "_"): value for name, value in b.ctx.settings.secret_constants.items()}


def _network_policy(b: Builder) -> None:
    """The app's pods (the Operator creates them, labelled `operator.podLabels`): ingress from the
    controller, egress to DNS, each other and the `egress:` list (the service plans' database and storage)."""
    from .network import policy_spec

    op = b.settings.operator
    assert op is not None and op.podLabels  # check() requires both in operator mode
    pods = dict(op.podLabels)
    k8s.networking.v1.NetworkPolicy(
        b.logical("network-policy"),
        metadata=b.layout.metadata(b.layout.name("network"), per_release=False),
        spec=policy_spec(b.settings, pods, {"podSelector": {"matchLabels": pods}}),
        opts=b.opts(),
    )


def deploy(b: Builder) -> dict[str, Any]:
    """The MendixApp CR (its secret fields masked in plan and state) and the Secret its variables come from."""
    ctx, lay = b.ctx, b.layout
    # Deleting the CR (or its namespace) makes the Operator deprovision the environment's database and
    # storage: on production both are protected and retained like data (README: how to really delete).
    b.make_namespace(holds_data=True)
    deps = []
    secret_vars = _secret_vars(b)
    if secret_vars:
        deps.append(b.secret("secret", secret_vars))
    # The admin password (and licence key) must be literal CR fields: they are nested Pulumi secrets in
    # the spec, so the plan and the state mask those fields alone and the rest of the CR stays
    # reviewable. (A separate patch for them would be a second object of the same kind and name, which
    # `renderYamlToDirectory` writes to the same file, losing the CR: found by the engine suite.)
    runtime_spec = spec(b)
    runtime_spec["runtime"] = {**runtime_spec["runtime"], **_secret_fields(b)}
    # What `mxinfra drift` compares what runs with (running.py), the Secret by its provider-named prefix.
    prefixes = [b.logical(kind) for kind in SECRET_KINDS]
    fingerprint = mendixapp_fingerprint(spec(b, secret_name=placeholder(b.logical("secret"))), prefixes)
    annotations = {**ctx.prepared.release_annotations, RUNTIME_CONFIG_ANNOTATION: fingerprint}
    app = k8s.apiextensions.CustomResource(
        b.logical("mendixapp"),
        api_version=API_VERSION,
        kind=KIND,
        metadata=lay.metadata(lay.workload, "runtime", per_release=True, annotations=annotations),
        spec=runtime_spec,
        opts=b.opts(protect_data=True, depends_on=deps),
    )
    ctx.runtime_resource(app)
    _network_policy(b)
    if ctx.environment.is_production:
        admission.deploy(b)
    host = host_of(b.settings, ctx.deployment.config.app.name, ctx.environment.name)
    out: dict[str, Any] = {"url": f"https://{host}", "namespace": lay.namespace, "mendixapp": lay.workload}
    if "secret" in b.created:
        out["secrets"] = {"runtime": b.secret_name("secret")}  # named by the provider: see builder.secret
    return out
