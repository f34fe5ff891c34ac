"""The real operations of Azure resource providers, derived from a published API description: the REST
paths and methods in the request builders of the `azure-mgmt-*` SDKs (generated from the
azure-rest-api-specs OpenAPI files), installed as the Azure target's test dependencies.

Azure RBAC names an ARM operation `<Namespace>/<type>[/<child type>...]/<read|write|delete>`, and a POST
to a named sub-path `<Namespace>/<types...>/<sub-path>/action` (e.g. POST .../containerApps/{n}/revisions/{r}/restart
is Microsoft.App/containerApps/revisions/restart/action).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

PACKAGES = {
    "Microsoft.App": "azure.mgmt.appcontainers",
    "Microsoft.DBforPostgreSQL": "azure.mgmt.postgresqlflexibleservers",
    "Microsoft.Insights": "azure.mgmt.monitor",
    "Microsoft.Authorization": "azure.mgmt.authorization",
    "Microsoft.OperationalInsights": "azure.mgmt.loganalytics",
}
# Providers whose SDK is not (yet) among the target's test dependencies (the lock would have to take it):
# the REST requests of their request builders, extracted from the SDK by the same BUILDER with
# `python tests/targets/azure/azure_operations.py` (the SDK installed or on PYTHONPATH), and kept in
# rest_operations.json with the SDK's distribution and version. Once the SDK is a test dependency, move
# its namespace to PACKAGES and drop it from the snapshot.
SNAPSHOT = Path(__file__).with_name("rest_operations.json")
SNAPSHOT_PACKAGES = {
    "Microsoft.DataProtection": ("azure.mgmt.dataprotection", "azure-mgmt-dataprotection"),
    "Microsoft.Storage": ("azure.mgmt.storage", "azure-mgmt-storage"),
}
# Every provider described: by an installed SDK or by the snapshot of one.
PROVIDERS = (*PACKAGES, *SNAPSHOT_PACKAGES)
# `_url = "..."` (newer generators) or `kwargs.pop("template_url", "...")`, then the method of that builder.
BUILDER = re.compile(r"def build_\w+_request\(.*?(?:_url = |\"template_url\",\s*)\"(?P<url>/[^\"]*)\".*?HttpRequest\(method=\"(?P<method>[A-Z]+)\"", re.S)
VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


def operation(url: str, method: str) -> str | None:
    """The RBAC operation of one REST call, or None when the path is not under a provider."""
    m = re.search(r"/providers/(?P<ns>[A-Za-z]+\.[A-Za-z.]+)/(?P<rest>.*)$", url)
    if m is None:
        return None
    statics = [s for s in m["rest"].split("/") if s and not s.startswith("{")]
    if not statics:
        return None
    ns = m["ns"]
    if method == "POST":
        return f"{ns}/{'/'.join(statics)}/action"
    return f"{ns}/{'/'.join(statics)}/{VERBS[method]}"


def sdk_requests(package: str, namespace: str) -> set[tuple[str, str]]:
    """(method, URL) of every request builder of `package` whose operation is `namespace`'s."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed"
    found = set()
    for root in spec.submodule_search_locations:
        for path in Path(root).rglob("*operations*.py"):
            if "/aio/" in str(path):
                continue
            for b in BUILDER.finditer(path.read_text(encoding="utf-8")):
                op = operation(b["url"], b["method"])
                if op is not None and op.lower().startswith(namespace.lower() + "/"):
                    found.add((b["method"], b["url"]))
    return found


@cache
def snapshot() -> dict[str, dict]:
    """rest_operations.json: namespace -> {distribution, version, requests: [[method, URL], ...]}."""
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


@cache
def operations(namespace: str) -> frozenset[str]:
    """Every operation of `namespace` found in its SDK, or in the snapshot of its SDK (lowercase: RBAC
    compares case-insensitively)."""
    if namespace in PACKAGES:
        requests = sdk_requests(PACKAGES[namespace], namespace)
    else:
        requests = {(m, u) for m, u in snapshot()[namespace]["requests"]}
    return frozenset(op.lower() for m, u in requests if (op := operation(u, m)) is not None)


def write_snapshot() -> None:
    """Rewrite rest_operations.json from the installed SDKs of SNAPSHOT_PACKAGES."""
    doc = {}
    for namespace, (package, distribution) in sorted(SNAPSHOT_PACKAGES.items()):
        doc[namespace] = {
            "distribution": distribution,
            "version": metadata.version(distribution),
            "requests": sorted([m, u] for m, u in sdk_requests(package, namespace)),
        }
    # One request per line, so that a refresh reads as a diff of operations.
    lines = ["{"]
    for i, (namespace, entry) in enumerate(doc.items()):
        requests = ",\n".join(f"   {json.dumps(r)}" for r in entry["requests"])
        head = f' {json.dumps(namespace)}: {{"distribution": {json.dumps(entry["distribution"])}, "version": {json.dumps(entry["version"])}, "requests": [\n'
        lines.append(head + requests + "\n ]}" + ("," if i < len(doc) - 1 else ""))
    lines.append("}")
    SNAPSHOT.write_text("\n".join(lines) + "\n", encoding="utf-8")


# Linked-access actions have no REST path of their own: ARM checks them when a PUT names another resource
# (the container app's managed environment, its user-assigned identity; a Flexible Server's delegated subnet
# and private DNS zone). They are listed in Microsoft's resource-provider operations reference
# (learn.microsoft.com/azure/role-based-access-control/permissions/containers for Microsoft.App,
# .../permissions/identity for Microsoft.ManagedIdentity, .../permissions/networking for Microsoft.Network:
# "Joins a virtual network", "Joins a Private DNS Zone").
LINKED_ACTIONS = frozenset({
    "microsoft.app/managedenvironments/join/action",
    "microsoft.managedidentity/userassignedidentities/assign/action",
    "microsoft.network/virtualnetworks/subnets/join/action",
    "microsoft.network/privatednszones/join/action",
})


# Operations with no REST path in the SDKs, listed in Microsoft's resource-provider operations reference
# (learn.microsoft.com/azure/role-based-access-control/permissions/compute for Microsoft.App,
# .../permissions/monitor for Microsoft.OperationalInsights) with these descriptions:
DOCUMENTED_ACTIONS = {
    # the Azure-AsyncOperation URL a container app's long-running PUT returns (polled at the subscription)
    "microsoft.app/locations/containerappoperationstatuses/read": "Get a Container App Long Running Operation Status",
    # the legacy GET form of the workspace's shared keys (the built-in Log Analytics Reader's NotActions)
    "microsoft.operationalinsights/workspaces/sharedkeys/read": "Retrieves the shared keys for the workspace",
    # log queries (api.loganalytics.io, and the per-table form of table-level access)
    "microsoft.operationalinsights/workspaces/query/read": "Run queries over the data in the workspace",
    "microsoft.operationalinsights/workspaces/query/containerappconsolelogs/read": "Read data from the ContainerAppConsoleLogs table",
    "microsoft.operationalinsights/workspaces/query/containerappsystemlogs/read": "Read data from the ContainerAppSystemLogs table",
}


def known_operations(namespace: str) -> frozenset[str]:
    """Every operation of `namespace`: its SDK's REST operations and the documented ones above (lowercase)."""
    return operations(namespace) | {a for a in DOCUMENTED_ACTIONS if a.startswith(namespace.lower() + "/")}


def is_real(action: str) -> bool:
    """Whether `action` (possibly with `*` wildcards) names at least one real operation of its provider."""
    if action.lower() in LINKED_ACTIONS:
        return True
    namespace = action.split("/", 1)[0]
    known = next((ns for ns in PROVIDERS if ns.lower() == namespace.lower()), None)
    if known is None:
        return False
    ops = known_operations(known)
    if "*" not in action:
        return action.lower() in ops
    pattern = re.compile("^" + ".*".join(re.escape(part) for part in action.lower().split("*")) + "$")
    return any(pattern.match(op) for op in ops)


if __name__ == "__main__":
    write_snapshot()
    print(f"wrote {SNAPSHOT}", file=sys.stderr)
