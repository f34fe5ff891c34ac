"""What runs in an environment, read from the cluster for `mxinfra drift` and the check at `pulumi up`
(mxinfra.drift compares it with the activity log). No Pulumi imports.

Compared with the log's records: the image (plain mode) or `sourceURL` (operator mode), which the log
records as the artifact; the instance count; the package the workload's release annotation names. The
records carry only a digest of the settings, which the objects in the cluster cannot be turned back into;
so the runtime configuration is compared with what the last release wrote on the workload instead: each
release annotates it (`RUNTIME_CONFIG_ANNOTATION`) with a fingerprint of what the runtime gets besides the
image and the Secrets' values (containers, env, ConfigMap contents, volumes; the Operator's runtime
version and runtime section), and the same fingerprint is computed from what runs. A hand edit of the pod
template, a recreated ConfigMap or an injected container shows; an edit that also rewrites the annotation
does not (on production the admission policy refuses both: admission.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mxinfra.drift import Observed

from .cluster import ClusterAccess, get_object

RUNTIME_CONTAINER = "mendix"
RUNTIME_CONFIG_ANNOTATION = "mxinfra.io/runtime-config-sha256"
PACKAGE_ANNOTATION = "mxinfra.io/package-sha256"
ROLE_LABEL = "mxinfra.io/role"  # the tier the release labelled the workload with (naming.kubernetes_labels)
# The Secret kinds of an environment (builder.Builder.secret): named by the provider, `<prefix>-<random>`.
SECRET_KINDS = ("secret", "database-secret")
MENDIXAPPS = "/apis/privatecloud.mendix.com/v1alpha1"
# The parts of a MendixApp spec that say what the runtime runs with (besides sourceURL and replicas, which
# are compared on their own): the runtime version and the runtime section without its secret fields.
OPERATOR_RUNTIME_FIELDS = ("dtapMode", "scheduledEventExecution", "myScheduledEvents", "microflowConstants", "customConfiguration", "environmentVariables")


def placeholder(prefix: str) -> str:
    """How a fingerprint names any of the provider-named Secrets `<prefix>-<random>`: a new value is a new
    name (builder.Builder.secret), and the values are no configuration this fingerprint may hold."""
    return f"{prefix}-*"


def _normal(value: Any, prefixes: Sequence[str]) -> Any:
    """`value` with every provider-generated Secret name of the environment replaced by its placeholder."""
    if isinstance(value, str):
        for prefix in prefixes:
            if re.fullmatch(re.escape(prefix) + r"-[a-z0-9]+", value):
                return placeholder(prefix)
        return value
    if isinstance(value, Mapping):
        return {k: _normal(v, prefixes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal(v, prefixes) for v in value]
    return value


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def referenced_config_maps(pod_spec: Mapping[str, Any]) -> list[str]:
    """The ConfigMaps a pod spec takes values from (envFrom, env valueFrom, volumes), sorted."""
    names = set()
    for c in [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]:
        for e in c.get("envFrom") or []:
            if (e.get("configMapRef") or {}).get("name"):
                names.add(e["configMapRef"]["name"])
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("configMapKeyRef") or {}
            if ref.get("name"):
                names.add(ref["name"])
    for v in pod_spec.get("volumes") or []:
        if (v.get("configMap") or {}).get("name"):
            names.add(v["configMap"]["name"])
    return sorted(names)


def _container(c: Mapping[str, Any], prefixes: Sequence[str]) -> dict[str, Any]:
    # Only fields the API server does not default, so the declared template and the live one hash alike.
    # The runtime container's image is compared on its own (the artifact); any other container's is here.
    return {
        "name": c.get("name"),
        "image": None if c.get("name") == RUNTIME_CONTAINER else c.get("image"),
        "command": list(c.get("command") or []),
        "args": list(c.get("args") or []),
        "env": _normal(list(c.get("env") or []), prefixes),
        "envFrom": _normal(list(c.get("envFrom") or []), prefixes),
        "volumeMounts": [
            {"name": m.get("name"), "mountPath": m.get("mountPath"), "subPath": m.get("subPath") or "", "readOnly": bool(m.get("readOnly"))}
            for m in c.get("volumeMounts") or []
        ],
    }


def _volume(v: Mapping[str, Any], prefixes: Sequence[str]) -> dict[str, Any]:
    sources = {k: s for k, s in v.items() if k != "name"}
    kinds = sorted(sources)
    ref = None
    for kind in kinds:
        s = sources[kind] or {}
        ref = s.get("claimName") or s.get("name") or s.get("secretName") or ref
    return {"name": v.get("name"), "kinds": kinds, "ref": _normal(ref, prefixes)}


def pod_fingerprint(pod_spec: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, Any] | None], prefixes: Sequence[str]) -> str:
    """The fingerprint of what a pod template runs besides the runtime image and the Secrets' values:
    containers (their images, commands, env, mounts), volumes, the service account, and the content of
    every ConfigMap it reads (`config_maps`: name -> data, None for one that does not exist)."""
    view = {
        "containers": [_container(c, prefixes) for c in pod_spec.get("containers") or []],
        "initContainers": [_container(c, prefixes) for c in pod_spec.get("initContainers") or []],
        "volumes": sorted((_volume(v, prefixes) for v in pod_spec.get("volumes") or []), key=lambda v: str(v["name"])),
        # the API server fills in `default`; a pod that names none runs as it
        "serviceAccountName": pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default",
        "automountServiceAccountToken": pod_spec.get("automountServiceAccountToken"),
        "configMaps": {name: None if config_maps.get(name) is None else dict(config_maps[name] or {}) for name in referenced_config_maps(pod_spec)},
    }
    return _digest(view)


def mendixapp_fingerprint(spec: Mapping[str, Any], prefixes: Sequence[str]) -> str:
    """The fingerprint of what a MendixApp runs with besides `sourceURL` and `replicas`: the runtime version
    and its runtime settings (constants, scheduled events, DTAP mode, custom settings, variables), never the
    admin password or the licence (secret fields). Fields the Operator may default are left out."""
    runtime = spec.get("runtime") or {}
    view = {"mendixRuntimeVersion": spec.get("mendixRuntimeVersion"), "runtime": {k: runtime.get(k) for k in OPERATOR_RUNTIME_FIELDS}}
    return _digest(_normal(view, prefixes))


def _kubectl(namespace: str) -> str:
    return f"kubectl -n {namespace}"


def observe_plain(access: ClusterAccess, environment: str, namespace: str, workload: str, prefixes: Sequence[str], timeout: float = 10.0) -> Observed:
    """The runtime StatefulSet of a plain-mode environment (and the ConfigMaps its pods read)."""
    what = f"StatefulSet {namespace}/{workload}"
    restore = {
        "artifact": f"{_kubectl(namespace)} set image statefulset/{workload} {RUNTIME_CONTAINER}={{value}}",
        "instances": f"{_kubectl(namespace)} scale statefulset/{workload} --replicas={{value}}",
        "config": f"{_kubectl(namespace)} rollout undo statefulset/{workload}, to the revision the release made",
    }
    sts = get_object(access, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{workload}", f"StatefulSet {namespace}/{workload}", timeout)
    if sts is None:
        return Observed(environment, what, exists=False, artifact_kind="image", restore=restore)
    annotations = (sts.get("metadata") or {}).get("annotations") or {}
    pod_spec = ((sts.get("spec") or {}).get("template") or {}).get("spec") or {}
    runtime = [c for c in pod_spec.get("containers") or [] if c.get("name") == RUNTIME_CONTAINER]
    maps = {}
    for name in referenced_config_maps(pod_spec):
        cm = get_object(access, f"/api/v1/namespaces/{namespace}/configmaps/{name}", f"ConfigMap {namespace}/{name}", timeout)
        maps[name] = None if cm is None else (cm.get("data") or {})
    released = annotations.get(RUNTIME_CONFIG_ANNOTATION)
    return Observed(
        environment,
        what,
        exists=True,
        package_sha256=annotations.get(PACKAGE_ANNOTATION),
        artifact=runtime[0].get("image") if runtime else None,
        artifact_kind="image",
        instances=(sts.get("spec") or {}).get("replicas", 1),
        released_config=released,
        running_config=pod_fingerprint(pod_spec, maps, prefixes),
        config_note=None if released else f"{what} carries no {RUNTIME_CONFIG_ANNOTATION} (a release of this version writes it)",
        restore=restore,
        role=((sts.get("metadata") or {}).get("labels") or {}).get(ROLE_LABEL),
    )


def observe_operator(access: ClusterAccess, environment: str, namespace: str, workload: str, prefixes: Sequence[str], timeout: float = 10.0) -> Observed:
    """The MendixApp of an operator-mode environment."""
    what = f"MendixApp {namespace}/{workload}"
    patch = f"{_kubectl(namespace)} patch mendixapp {workload} --type merge -p"
    restore = {
        "artifact": patch + " '{{\"spec\":{{\"sourceURL\":\"{value}\"}}}}'",
        "instances": patch + " '{{\"spec\":{{\"replicas\":{value}}}}}'",
        "config": "apply the MendixApp spec the release declared (`pulumi stack export` holds it)",
    }
    app = get_object(access, f"{MENDIXAPPS}/namespaces/{namespace}/mendixapps/{workload}", what, timeout)
    if app is None:
        return Observed(environment, what, exists=False, artifact_kind="sourceURL", restore=restore)
    annotations = (app.get("metadata") or {}).get("annotations") or {}
    spec = app.get("spec") or {}
    released = annotations.get(RUNTIME_CONFIG_ANNOTATION)
    return Observed(
        environment,
        what,
        exists=True,
        package_sha256=annotations.get(PACKAGE_ANNOTATION),
        artifact=spec.get("sourceURL"),
        artifact_kind="sourceURL",
        instances=spec.get("replicas"),
        released_config=released,
        running_config=mendixapp_fingerprint(spec, prefixes),
        config_note=None if released else f"{what} carries no {RUNTIME_CONFIG_ANNOTATION} (a release of this version writes it)",
        restore=restore,
        role=((app.get("metadata") or {}).get("labels") or {}).get(ROLE_LABEL),
    )
