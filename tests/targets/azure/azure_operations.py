"""The real operations of Azure resource providers, derived from a published API description: the REST
paths and methods in the request builders of the `azure-mgmt-*` SDKs (generated from the
azure-rest-api-specs OpenAPI files), installed as the Azure target's test dependencies.

Azure RBAC names an ARM operation `<Namespace>/<type>[/<child type>...]/<read|write|delete>`, and a POST
to a named sub-path `<Namespace>/<types...>/<sub-path>/action` (e.g. POST .../containerApps/{n}/revisions/{r}/restart
is Microsoft.App/containerApps/revisions/restart/action).
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path

PACKAGES = {
    "Microsoft.App": "azure.mgmt.appcontainers",
    "Microsoft.DBforPostgreSQL": "azure.mgmt.postgresqlflexibleservers",
    "Microsoft.Insights": "azure.mgmt.monitor",
    "Microsoft.Authorization": "azure.mgmt.authorization",
    "Microsoft.OperationalInsights": "azure.mgmt.loganalytics",
}
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


@cache
def operations(namespace: str) -> frozenset[str]:
    """Every operation of `namespace` found in its SDK (lowercase: RBAC compares case-insensitively)."""
    spec = importlib.util.find_spec(PACKAGES[namespace])
    assert spec is not None and spec.submodule_search_locations, f"{PACKAGES[namespace]} is not installed"
    found = set()
    for root in spec.submodule_search_locations:
        for path in Path(root).rglob("*operations*.py"):
            if "/aio/" in str(path):
                continue
            for b in BUILDER.finditer(path.read_text(encoding="utf-8")):
                op = operation(b["url"], b["method"])
                if op is not None and op.lower().startswith(namespace.lower() + "/"):
                    found.add(op.lower())
    return frozenset(found)


# Linked-access actions have no REST path of their own: ARM checks them when a PUT names another resource
# (the container app's managed environment, its user-assigned identity). They are listed in Microsoft's
# resource-provider operations reference (learn.microsoft.com/azure/role-based-access-control/permissions/
# containers for Microsoft.App, .../permissions/identity for Microsoft.ManagedIdentity).
LINKED_ACTIONS = frozenset({
    "microsoft.app/managedenvironments/join/action",
    "microsoft.managedidentity/userassignedidentities/assign/action",
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
    known = next((ns for ns in PACKAGES if ns.lower() == namespace.lower()), None)
    if known is None:
        return False
    ops = known_operations(known)
    if "*" not in action:
        return action.lower() in ops
    pattern = re.compile("^" + ".*".join(re.escape(part) for part in action.lower().split("*")) + "$")
    return any(pattern.match(op) for op in ops)
