"""`mxinfra plan --out`: an environment's objects as one multi-document Kubernetes manifest. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

SECRET = "[secret]"
KEYS_ANNOTATION = "mxinfra.io/secret-keys"  # same as builder.KEYS_ANNOTATION (kept import-light)
PATCHED_ANNOTATION = "mxinfra.io/secret-fields"  # same as operator.PATCHED_ANNOTATION
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


def _set_path(doc: dict[str, Any], path: str) -> None:
    cur = doc.setdefault("spec", {})
    parts = path.split(".")
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = SECRET


def manifests(resources: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Kubernetes objects among the plan's resources, secrets masked, in apply order."""
    docs: list[dict[str, Any]] = []
    patches: list[dict[str, Any]] = []
    for r in resources:
        if not r["type"].startswith("kubernetes:"):
            continue  # providers, random passwords, components
        doc = _document(r["inputs"])
        if r["type"].endswith("Patch"):
            patches.append(doc)
            continue
        if doc.get("kind") == "Secret":
            _mask_secret(doc)
        docs.append(doc)
    # A patch's fields are shown on the object it patches, as "[secret]".
    for patch in patches:
        meta = patch.get("metadata", {})
        for doc in docs:
            m = doc.get("metadata", {})
            if doc.get("kind") == patch.get("kind") and (m.get("name"), m.get("namespace")) == (meta.get("name"), meta.get("namespace")):
                for path in (meta.get("annotations") or {}).get(PATCHED_ANNOTATION, "").split(","):
                    if path:
                        _set_path(doc, path)
                doc["spec"] = _sorted(doc["spec"])

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
