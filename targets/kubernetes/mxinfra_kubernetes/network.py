"""The environment's NetworkPolicy: what may reach the runtime, and where the runtime may connect. Pure.

Incoming: port 8080 from the ingress controller's namespace, and the environment's own pods. Outgoing
(a default deny once the policy selects the pods): DNS to the cluster DNS namespace, the environment's own
pods (cluster peers, the in-cluster database), the external database on its port, the file store's
endpoint on its port, and each rule of `egress:`. In operator mode the database and file store come from
the Operator's service plans, whose addresses the target does not know: list them in `egress:`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mxinfra.egress import EgressRule

from .config import EnvironmentSettings, object_store
from .layout import HTTP_PORT

DNS_PORT = 53


def storage_port(s: EnvironmentSettings) -> int | None:
    """The file store endpoint's port (None for local files: nothing to reach)."""
    st = s.storage
    if st is None or st.local is not None:
        return None
    if st.s3 is not None and st.s3.endpoint:
        parts = urlsplit(st.s3.endpoint)
        return parts.port or (80 if parts.scheme == "http" else 443)
    if st.azure is not None and st.azure.endpoint:
        parts = urlsplit(st.azure.endpoint)
        return parts.port or (80 if parts.scheme == "http" else 443)
    return 443  # AWS S3 or Azure Blob over HTTPS


def backup_store_port(s: EnvironmentSettings) -> int | None:
    """The port of the backup archives' store endpoint (None: the archives are on a claim); https: 443
    unless the endpoint names one."""
    store = object_store(s)
    if store is None:
        return None
    return (urlsplit(store.endpoint).port if store.endpoint else None) or 443


def to_networks(networks: list[str] | None) -> dict[str, Any]:
    """An egress rule's `to` for `networks`; none: any address, on the rule's ports only."""
    return {"to": [{"ipBlock": {"cidr": c}} for c in networks]} if networks else {}


def _rule(r: EgressRule) -> dict[str, Any]:
    return {"to": [{"ipBlock": {"cidr": r.cidr}}], "ports": [{"port": p, "protocol": r.protocol.upper()} for p in r.ports]}


def egress_rules(s: EnvironmentSettings, own: dict[str, Any]) -> list[dict[str, Any]]:
    """The NetworkPolicy's egress rules for the environment (mode, database, storage, egress list)."""
    out: list[dict[str, Any]] = [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": s.dns_namespace}}}],
            "ports": [{"port": DNS_PORT, "protocol": "UDP"}, {"port": DNS_PORT, "protocol": "TCP"}],
        },
        {"to": [own]},
    ]
    if s.mode == "plain":
        db = s.database
        if db is not None and db.url is not None:
            out.append({**to_networks(db.networks), "ports": [{"port": db.port, "protocol": "TCP"}]})
        port = storage_port(s)
        if port is not None and s.storage is not None:
            out.append({**to_networks(s.storage.networks), "ports": [{"port": port, "protocol": "TCP"}]})
    out += [_rule(r) for r in s.egress]
    return out


def policy_spec(s: EnvironmentSettings, pods: dict[str, str], own: dict[str, Any]) -> dict[str, Any]:
    """The NetworkPolicy spec governing the pods labelled `pods`."""
    controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": s.ingress.controllerNamespace}}}
    return {
        # Only this environment's pods are governed, so a shared namespace keeps its other traffic.
        "podSelector": {"matchLabels": dict(sorted(pods.items()))},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {"from": [controller], "ports": [{"port": HTTP_PORT, "protocol": "TCP"}]},
            {"from": [own]},
        ],
        "egress": egress_rules(s, own),
    }


def open_destinations(s: EnvironmentSettings) -> list[str]:
    """Default egress rules that admit any address (on their port): the plan names them."""
    out = []
    if s.mode == "plain":
        if s.database is not None and s.database.url is not None and not s.database.networks:
            out.append(f"the database (tcp/{s.database.port}; set {s.paths['database']}.networks)")
        port = storage_port(s)
        if port is not None and s.storage is not None and not s.storage.networks:
            out.append(f"the file store (tcp/{port}; set {s.paths['storage']}.networks)")
        port = backup_store_port(s)
        if port is not None and not s.backups.networks:
            # the backup and restore pods only (their own policy), but the whole pod: postgres's step too
            out.append(f"the backup store, from the backup and restore pods (tcp/{port}; set {s.paths['backups']}.networks)")
    return out
