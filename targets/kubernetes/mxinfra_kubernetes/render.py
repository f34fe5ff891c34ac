"""`mxinfra plan --out`: an environment's objects as one multi-document Kubernetes manifest. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

SECRET = "[secret]"
AUTONAME_SUFFIX = "(known after apply)"  # = mxinfra.target.KNOWN_AFTER_APPLY (kept import-light)
KEYS_ANNOTATION = "mxinfra.io/secret-keys"  # same as builder.KEYS_ANNOTATION (kept import-light)


def autoname(resource_name: str) -> str:
    """How a Secret the provider names (`<resource name>-<8 random characters>`) is shown before apply."""
    return f"{resource_name}-{AUTONAME_SUFFIX}"


_ORDER = [
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "NetworkPolicy",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "PersistentVolumeClaim",
    "Service",
    "StatefulSet",
    "PodDisruptionBudget",
    "Ingress",
    "MendixApp",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
]


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _document(inputs: Mapping[str, Any]) -> dict[str, Any]:
    # apiVersion, kind and metadata first, as people write manifests; the rest sorted.
    doc = {k: _sorted(inputs[k]) for k in ("apiVersion", "kind", "metadata") if k in inputs}
    doc.update({k: _sorted(inputs[k]) for k in sorted(inputs) if k not in doc})
    return doc


def _mask_secret(doc: dict[str, Any]) -> None:
    keys = (doc.get("metadata", {}).get("annotations") or {}).get(KEYS_ANNOTATION, "")
    for field in ("data", "stringData"):
        if field in doc:
            value = doc[field]
            names = sorted(value) if isinstance(value, dict) else [k for k in keys.split(",") if k]
            doc[field] = {k: SECRET for k in names}


def manifests(resources: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Kubernetes objects among the plan's resources, secrets masked, in apply order."""
    docs: list[dict[str, Any]] = []
    for r in resources:
        if not r["type"].startswith("kubernetes:"):
            continue  # providers, random passwords, components
        doc = _document(r["inputs"])
        meta = doc.get("metadata")
        if meta is not None and "name" not in meta:  # named by the provider on apply
            doc["metadata"] = {"name": autoname(r["name"]), **meta}
        if doc.get("kind") == "Secret":
            _mask_secret(doc)
        docs.append(doc)

    def key(doc: dict[str, Any]) -> tuple[int, str, str]:
        kind = doc.get("kind", "")
        rank = _ORDER.index(kind) if kind in _ORDER else len(_ORDER)
        return (rank, kind, doc.get("metadata", {}).get("name", ""))

    return sorted(docs, key=key)


def write(env: str, resources: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """Write `out_dir/kubernetes/<env>.yaml`; returns the written paths."""
    docs = manifests(resources)
    path = out_dir / "kubernetes" / f"{env}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# {env}: rendered by mxinfra plan (secret values are shown as {SECRET})\n"
    path.write_text(header + yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, explicit_start=True))
    return [path]
