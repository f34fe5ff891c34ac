"""Issue 19, F1 and F18 on the azure target: `mxinfra drift` (and the release guard before every `pulumi up`)
reads what the environment's container apps run from Azure Resource Manager and names every difference
from the activity log's last signed record.

There is no Container Apps emulator. ARM is played by a loopback HTTPS server (`Arm`) for exactly the calls
the SDK makes, `ContainerApps_Get`, `ContainerAppsRevisions_ListRevisions` and
`ContainerApps_ListByResourceGroup` (their pages, by nextLink), and
held to Microsoft's published REST description of the API version the installed azure-mgmt-appcontainers
speaks (spec/, see its README): the request's path and api-version must be the operation's, and every body
served, documents and errors alike, is validated against the operation's response schema, closed against
invented properties. The documents are a container app as `pulumi up` leaves it (runtime.py: the leader
app with one replica, the workers' with the rest, the release tags, revision mode Single), laid out as the
API description's own example `ContainerApps_Get.json`, and its revisions as `Revisions_List.json` lays
them out: every write of the template is a new revision, which in Single mode takes all the traffic and
deactivates the others. A hand change is what a holder of production `deploy` can do with
`Microsoft.App/containerApps/write` and `revisions/activate`: another image, other replicas (`az
containerapp update`), another revision mode, traffic pinned to an older revision, an older revision
activated, another container app created beside the release's (`az containerapp create` in the environment's
managed environment with the runtime identity: `managedEnvironments/join` and `userAssignedIdentities/assign`
are deploy's too). The records are written by the activity resource's own provider
(scaffold.record_deploy), signed, as a real `pulumi up` writes them.
"""

from __future__ import annotations

import copy
import email.utils
import json
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from mxinfra.drift import CannotObserve

from azhelpers import DIGEST, SUB, config, deployment
from registry import free_port, make_tls
from scaffold import encrypted as stack_file
from scaffold import record_deploy, run_drift

import mxinfra_azure.running as running
from mxinfra_azure import roles
from mxinfra_azure.running import CONFIG_NOTE

SPEC = Path(__file__).parent / "spec" / "specification"
OPENAPI = SPEC / "app/resource-manager/Microsoft.App/ContainerApps/stable/2026-07-01/openapi.json"
GET_PATH = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.App/containerApps/{containerAppName}"
LIST_PATH = GET_PATH + "/revisions"
APPS_PATH = GET_PATH.removesuffix("/{containerAppName}")

STACK = "azure-production"
GROUP = "orders-production-rg"
LEADER, WORKER = "orders-production", "orders-production-worker"
IMAGE = f"acme.azurecr.io/orders@{DIGEST}"
EVIL = "acme.azurecr.io/orders@sha256:" + "66" * 32
TOKEN = "eyJ0eXAiOiJKV1QifQ.arm-token-of-rita.sig"
UPDATE = f"az containerapp update --subscription {SUB} --resource-group {GROUP} --name"
IDENTITY = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/orders-production-runtime"


# --- Microsoft's API description, as a validator -------------------------------------------------------------


def _allof_bases(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for part in node.get("allOf", []) if isinstance(node.get("allOf"), list) else []:
            if isinstance(part, dict) and "$ref" in part:
                found.add(part["$ref"].rsplit("/", 1)[-1])
        for value in node.values():
            _allof_bases(value, found)
    elif isinstance(node, list):
        for value in node:
            _allof_bases(value, found)
    return found


def _spec() -> tuple[dict[str, Any], Registry]:
    """The copied description files as JSON Schema 2020-12 resources, every object definition closed."""
    docs = {p.resolve().as_uri(): json.loads(p.read_text()) for p in SPEC.rglob("*.json")}
    bases: set[str] = set()
    for doc in docs.values():
        _allof_bases(doc, bases)
    for doc in docs.values():
        for name, schema in doc.get("definitions", {}).items():
            # Swagger leaves objects open; a double that may invent properties proves nothing. A definition
            # used only as an allOf base is closed by the one that extends it (unevaluatedProperties sees both).
            if "properties" in schema and "additionalProperties" not in schema and name not in bases:
                schema["unevaluatedProperties"] = False
    for doc in docs.values():
        _dispatch_discriminated(doc)
    registry = Registry().with_resources((uri, Resource.from_contents(doc, default_specification=DRAFT202012)) for uri, doc in docs.items())
    return docs[OPENAPI.resolve().as_uri()], registry


def _dispatch_discriminated(doc: dict[str, Any]) -> None:
    """Swagger's polymorphism as JSON Schema: where a schema names a base with a `discriminator`, the value
    is held to the subtype its discriminator names (x-ms-discriminator-value, else the subtype's name), the
    way Azure's SDKs read it; the bare base would let any subtype's property through with any type."""
    defs = doc.get("definitions", {})
    subtypes: dict[str, dict[str, str]] = {}
    for name, schema in defs.items():
        for part in schema.get("allOf", []) if isinstance(schema.get("allOf"), list) else []:
            base = part.get("$ref", "").removeprefix("#/definitions/") if isinstance(part, dict) else ""
            if base in defs and "discriminator" in defs[base]:
                subtypes.setdefault(base, {})[schema.get("x-ms-discriminator-value", name)] = name
    for base, kinds in subtypes.items():
        key = defs[base]["discriminator"]
        defs[f"{base}.dispatch"] = {
            # a value no subtype of the copy names is refused: copy that subtype then
            "allOf": [{"$ref": f"#/definitions/{base}"}, {"properties": {key: {"enum": sorted(kinds)}}, "required": [key]}]
            + [{"if": {"properties": {key: {"const": value}}, "required": [key]}, "then": {"$ref": f"#/definitions/{sub}"}} for value, sub in sorted(kinds.items())]
        }

    def rewrite(node: Any, in_allof: bool = False) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if not in_allof and isinstance(ref, str) and ref.startswith("#/definitions/") and ref.removeprefix("#/definitions/") in subtypes:
                node["$ref"] = ref + ".dispatch"
            for k, v in node.items():
                rewrite(v, k == "allOf")
        elif isinstance(node, list):
            for v in node:
                rewrite(v, in_allof)

    rewrite({k: v for k, v in doc.items() if k != "definitions"})
    for name, schema in list(defs.items()):
        if not name.endswith(".dispatch"):
            rewrite(schema)


OPENAPI_DOC, REGISTRY = _spec()
API_VERSION = OPENAPI_DOC["info"]["version"]
GET = OPENAPI_DOC["paths"][GET_PATH]["get"]
LIST = OPENAPI_DOC["paths"][LIST_PATH]["get"]
APPS = OPENAPI_DOC["paths"][APPS_PATH]["get"]


def _path_re(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[A-Za-z]+\\\}", "([^/]+)", re.escape(template)) + "$")


PATH_RE = _path_re(GET_PATH)
LIST_RE = _path_re(LIST_PATH)
APPS_RE = _path_re(APPS_PATH)


def spec_validator(status: int, operation: dict[str, Any] = GET) -> Draft202012Validator:
    """The schema of the operation's (ContainerApps_Get's unless named) response `status`. A status it
    declares no schema for (ContainerApps_Get's 404: x-ms-error-response) is held to the operation's
    default, the error response every ARM error of it is (ErrorResponse; DefaultErrorResponse for the
    revisions)."""
    response = operation["responses"].get(str(status))
    if response is None or "schema" not in response:
        response = operation["responses"]["default"]
    ref = urllib.parse.urljoin(OPENAPI.resolve().as_uri(), response["schema"]["$ref"])
    return Draft202012Validator({"$ref": ref}, registry=REGISTRY)


def check_body(status: int, body: Any, operation: dict[str, Any] = GET) -> None:
    errors = sorted(spec_validator(status, operation).iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        raise AssertionError(f"not a {operation['operationId']} {status} body of API version {API_VERSION}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]))


def check_revisions(status: int, body: Any) -> None:
    check_body(status, body, LIST)


def check_apps(status: int, body: Any) -> None:
    check_body(status, body, APPS)


# --- the ARM double ---------------------------------------------------------------------------------------------


def app_document(name: str, image: str, replicas: int, tags: dict[str, str], index: int, *, revision: str = "0000001") -> dict[str, Any]:
    """A container app as `pulumi up` leaves it (runtime.py), in the layout of the API description's example
    ContainerApps_Get.json (examples/ of 2026-07-01)."""
    env = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.App/managedEnvironments/orders-production-env"
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.App/containerApps/{name}",
        "name": name,
        "type": "Microsoft.App/containerApps",
        "location": "West Europe",
        "tags": dict(tags),
        "systemData": {"createdBy": "pulumi-deployer@example.com", "createdByType": "Application", "createdAt": "2026-11-30T09:12:44.0000000Z"},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY: {"clientId": "14adfa4f-eedf-1dc0-ba29-a6d1a69ab3df", "principalId": "74adfa4f-dedf-8dc0-ca29-b6d1a69ab312"}}},
        "properties": {
            "provisioningState": "Succeeded",
            "runningStatus": "Running",
            "managedEnvironmentId": env,
            "environmentId": env,
            "workloadProfileName": "Consumption",
            "latestRevisionName": f"{name}--{revision}",
            "latestReadyRevisionName": f"{name}--{revision}",
            "latestRevisionFqdn": f"{name}--{revision}.kindsky-1a2b3c4d.westeurope.azurecontainerapps.io",
            "outboundIpAddresses": ["20.23.1.17"],
            "configuration": {
                "activeRevisionsMode": "Single",
                "ingress": {
                    "fqdn": f"{name}.kindsky-1a2b3c4d.westeurope.azurecontainerapps.io",
                    "external": True,
                    "allowInsecure": False,
                    "targetPort": 8080,
                    "transport": "auto",
                    "ipSecurityRestrictions": [],
                    "traffic": [{"latestRevision": True, "weight": 100}],
                },
                "secrets": [{"name": "admin-password", "keyVaultUrl": "https://orders-production-a1b2c3.vault.azure.net/secrets/ADMIN-PASSWORD/0a1b2c", "identity": IDENTITY}],
                "registries": [{"server": "acme.azurecr.io", "identity": IDENTITY}],
                "maxInactiveRevisions": 100,
            },
            "template": {
                "containers": [
                    {
                        "name": "mendix",
                        "image": image,
                        "env": [{"name": "CF_INSTANCE_INDEX", "value": str(index)}, {"name": "ADMIN_PASSWORD", "secretRef": "admin-password"}],
                        "resources": {"cpu": 1.0, "memory": "2Gi", "ephemeralStorage": "4Gi"},
                        "probes": [{"type": "Startup", "httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"}, "initialDelaySeconds": 60, "periodSeconds": 60, "failureThreshold": 10, "timeoutSeconds": 5}],
                    }
                ],
                "scale": {"minReplicas": replicas, "maxReplicas": max(replicas, 1), "cooldownPeriod": 300, "pollingInterval": 30},
                "terminationGracePeriodSeconds": 120,
            },
        },
    }


def revision_document(app: str, name: str, template: dict[str, Any], *, active: bool, weight: int, replicas: int) -> dict[str, Any]:
    """A revision of the container app `app`, in the layout of the API description's example
    Revisions_List.json (examples/ of 2026-07-01)."""
    return {
        "name": name,
        "type": "Microsoft.App/containerApps/revisions",
        "id": f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.App/containerApps/{app}/revisions/{name}",
        "properties": {
            "active": active,
            "createdTime": "2026-11-30T09:12:44+00:00",
            "fqdn": f"{name}.kindsky-1a2b3c4d.westeurope.azurecontainerapps.io",
            "lastActiveTime": "2026-11-30T09:12:44+00:00",
            "replicas": replicas,
            "template": copy.deepcopy(template),
            "trafficWeight": weight,
            "healthState": "Healthy" if active else "None",
            "provisioningState": "Provisioned" if active else "Deprovisioned",
            "runningState": "Running" if active and replicas else "Stopped",
        },
    }


class Arm:
    """ARM for ContainerApps_Get, ContainerAppsRevisions_ListRevisions and ContainerApps_ListByResourceGroup
    on loopback HTTPS: `apps` (name -> document) is what exists, `revisions` (app -> revision name ->
    document, oldest first) its revisions, listed `page_size` a page (`loop`: every nextLink names the first
    page again), and the group's apps listed `apps_page_size` a page (`apps_loop` likewise); `deny` answers
    403 as ARM does to an identity without the reads, `deny_revisions` to one without revisions/read alone;
    every request and every failure is kept."""

    def __init__(self, ca: Path, cert: Path, key: Path) -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.revisions: dict[str, dict[str, dict[str, Any]]] = {}
        self.page_size = 100
        self.loop = False
        self.apps_page_size = 100
        self.apps_loop = False
        self.groups = {GROUP}
        self.deny: str | None = None  # the principal ARM names in its 403
        self.deny_revisions: str | None = None
        self.requests: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.ca = ca
        arm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def date_time_string(self, timestamp: float | None = None) -> str:
                # ARM's Date header, from ARM's clock: `clock_behind` seconds behind this machine's (a double may set it)
                return email.utils.formatdate((time.time() if timestamp is None else timestamp) - getattr(arm, "clock_behind", 0.0), usegmt=True)

            def do_GET(self) -> None:  # noqa: N802
                self.reply(*arm.answer(self.path, self.headers.get("Authorization")))

            def do_PUT(self) -> None:  # noqa: N802
                self.reply(*arm.write("PUT", self.path, self.headers.get("Authorization"), self.rfile.read(int(self.headers.get("Content-Length") or 0))))

            def do_POST(self) -> None:  # noqa: N802
                self.reply(*arm.write("POST", self.path, self.headers.get("Authorization"), self.rfile.read(int(self.headers.get("Content-Length") or 0))))

            def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-ms-request-id", "3f1c2b7e-0000-4000-8000-000000000001")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def put(self, document: dict[str, Any]) -> None:
        """A containerApps/write: a template not yet a revision is a new one (the latestRevisionName the
        document names), active; in Single mode it takes all the traffic and every other is deactivated, in
        Multiple mode `configuration.ingress.traffic` says each revision's weight."""
        check_body(200, document)
        name, props = document["name"], document["properties"]
        self.apps[name] = copy.deepcopy(document)
        revisions = self.revisions.setdefault(name, {})
        latest = props["latestRevisionName"]
        scale = props["template"]["scale"]
        replicas = 0 if props.get("runningStatus") == "Stopped" else scale["maxReplicas"]
        if latest not in revisions:
            revisions[latest] = revision_document(name, latest, props["template"], active=True, weight=0, replicas=replicas)
        revisions[latest]["properties"]["replicas"] = replicas
        if props["configuration"].get("activeRevisionsMode", "Single") == "Single":
            for key, revision in revisions.items():
                if key != latest:
                    revision["properties"].update(active=False, trafficWeight=0, replicas=0, healthState="None", provisioningState="Deprovisioned", runningState="Stopped")
            revisions[latest]["properties"]["trafficWeight"] = 100
            return
        for key, revision in revisions.items():
            weight = 0
            for rule in props["configuration"]["ingress"]["traffic"]:
                if rule.get("revisionName") == key or (rule.get("latestRevision") and key == latest):
                    weight += rule["weight"]
            revision["properties"]["trafficWeight"] = weight

    def activate(self, name: str, revision: str) -> None:
        """A revisions/activate of an older revision: it runs again (its replicas), with no traffic of its own."""
        props = self.revisions[name][revision]["properties"]
        props.update(active=True, replicas=props["template"]["scale"]["maxReplicas"], healthState="Healthy", provisioningState="Provisioned", runningState="Running")

    def answer(self, raw: str, auth: str | None) -> tuple[int, dict[str, Any]]:
        url = urllib.parse.urlsplit(raw)
        query = urllib.parse.parse_qs(url.query)
        self.requests.append({"path": url.path, "query": query, "auth": auth})
        listed = LIST_RE.match(url.path)
        if listed is not None:
            return self.list_revisions(raw, url.path, query, auth, *(urllib.parse.unquote(x) for x in listed.groups()))
        grouped = APPS_RE.match(url.path)
        if grouped is not None:
            return self.list_apps(raw, url.path, query, auth, *(urllib.parse.unquote(x) for x in grouped.groups()))
        m = PATH_RE.match(url.path)
        if m is None or query.get("api-version") != [API_VERSION]:
            self.failures.append(f"not a {GET['operationId']} request of API version {API_VERSION}: GET {raw}")
            return self.error(400, "InvalidResourceType", f"The resource type could not be found for {url.path} in api-version {query.get('api-version')}.")
        sub, group, name = (urllib.parse.unquote(x) for x in m.groups())
        if auth != f"Bearer {TOKEN}":
            return self.error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing or invalid.")
        if self.deny is not None:
            scope = f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.App/containerApps/{name}"
            return self.error(
                403,
                "AuthorizationFailed",
                f"The client '{self.deny}' with object id '0a1b2c3d-0000-4000-8000-000000000009' does not have authorization to perform action "
                f"'Microsoft.App/containerApps/read' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            )
        if sub != SUB or group not in self.groups:
            return self.error(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.")
        if name not in self.apps:
            return self.error(404, "ResourceNotFound", f"The Resource 'Microsoft.App/containerApps/{name}' under resource group '{group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
        return self.serve(200, self.apps[name])

    def list_revisions(self, raw: str, path: str, query: dict[str, list[str]], auth: str | None, sub: str, group: str, name: str) -> tuple[int, dict[str, Any]]:
        """ContainerAppsRevisions_ListRevisions: a page of `page_size` from `$skiptoken`, the next one's
        nextLink absolute, as ARM writes it."""
        if query.get("api-version") != [API_VERSION]:
            self.failures.append(f"not a {LIST['operationId']} request of API version {API_VERSION}: GET {raw}")
            return self.error(400, "InvalidResourceType", f"The resource type could not be found for {path} in api-version {query.get('api-version')}.", check_revisions)
        if auth != f"Bearer {TOKEN}":
            return self.error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing or invalid.", check_revisions)
        denied = self.deny or self.deny_revisions
        if denied is not None:
            scope = f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.App/containerApps/{name}"
            return self.error(
                403,
                "AuthorizationFailed",
                f"The client '{denied}' with object id '0a1b2c3d-0000-4000-8000-000000000009' does not have authorization to perform action "
                f"'Microsoft.App/containerApps/revisions/read' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                check_revisions,
            )
        if sub != SUB or group not in self.groups:
            return self.error(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.", check_revisions)
        if name not in self.apps:
            return self.error(404, "ResourceNotFound", f"The Resource 'Microsoft.App/containerApps/{name}' under resource group '{group}' was not found.", check_revisions)
        items = list(self.revisions.get(name, {}).values())
        start = 0 if self.loop else int((query.get("$skiptoken") or ["0"])[0])
        body: dict[str, Any] = {"value": copy.deepcopy(items[start : start + self.page_size])}
        if self.loop or start + self.page_size < len(items):
            body["nextLink"] = f"{self.url}{path}?api-version={API_VERSION}&$skiptoken={0 if self.loop else start + self.page_size}"
        return self.serve(200, body, check_revisions)

    def list_apps(self, raw: str, path: str, query: dict[str, list[str]], auth: str | None, sub: str, group: str) -> tuple[int, dict[str, Any]]:
        """ContainerApps_ListByResourceGroup: the group's apps, `apps_page_size` a page from `$skiptoken`,
        the next one's nextLink absolute, as ARM writes it."""
        if query.get("api-version") != [API_VERSION]:
            self.failures.append(f"not a {APPS['operationId']} request of API version {API_VERSION}: GET {raw}")
            return self.error(400, "InvalidResourceType", f"The resource type could not be found for {path} in api-version {query.get('api-version')}.", check_apps)
        if auth != f"Bearer {TOKEN}":
            return self.error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing or invalid.", check_apps)
        if self.deny is not None:
            return self.error(
                403,
                "AuthorizationFailed",
                f"The client '{self.deny}' with object id '0a1b2c3d-0000-4000-8000-000000000009' does not have authorization to perform action "
                f"'Microsoft.App/containerApps/read' over scope '/subscriptions/{sub}/resourceGroups/{group}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                check_apps,
            )
        if sub != SUB or group not in self.groups:
            return self.error(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.", check_apps)
        items = list(self.apps.values())
        start = 0 if self.apps_loop else int((query.get("$skiptoken") or ["0"])[0])
        body: dict[str, Any] = {"value": copy.deepcopy(items[start : start + self.apps_page_size])}
        if self.apps_loop or start + self.apps_page_size < len(items):
            body["nextLink"] = f"{self.url}{path}?api-version={API_VERSION}&$skiptoken={0 if self.apps_loop else start + self.apps_page_size}"
        return self.serve(200, body, check_apps)

    def delete(self, name: str) -> None:
        """A containerApps/delete: the app and its revisions are gone."""
        del self.apps[name]
        self.revisions.pop(name, None)

    def write(self, method: str, raw: str, auth: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        """A PUT or POST: none is answered here (a subclass that serves one overrides this)."""
        self.requests.append({"path": urllib.parse.urlsplit(raw).path, "method": method, "auth": auth})
        self.failures.append(f"no {method} is served by this double: {method} {raw}")
        return self.error(405, "MethodNotAllowed", f"The requested method {method} is not allowed.")

    def error(self, status: int, code: str, message: str, check: Any = None) -> tuple[int, dict[str, Any]]:
        return self.serve(status, {"error": {"code": code, "message": message}}, check)

    def serve(self, status: int, body: dict[str, Any], check: Any = None) -> tuple[int, dict[str, Any]]:
        """`body` if the API description allows it (`check`: the validator of the operation, container apps
        by default); else the failure is kept for the test and the client gets a 500."""
        try:
            (check or check_body)(status, body)
        except AssertionError as e:
            self.failures.append(str(e))
            return 500, {"error": {"code": "TestDoubleInvalid", "message": str(e)[:200]}}
        return status, body

    def edit(
        self,
        name: str,
        *,
        image: str | None = None,
        replicas: tuple[int, int] | None = None,
        status: str | None = None,
        revision: str = "0000002",
        mode: str | None = None,
        traffic: list[dict[str, Any]] | None = None,
    ) -> None:
        """A `containerApps/write` by hand: another image or scale is another revision; `mode` the
        revision mode, `traffic` the ingress's traffic rules."""
        doc = copy.deepcopy(self.apps[name])
        props = doc["properties"]
        if image is not None:
            props["template"]["containers"][0]["image"] = image
        if replicas is not None:
            props["template"]["scale"].update(minReplicas=replicas[0], maxReplicas=replicas[1])
        if status is not None:
            props["runningStatus"] = status
        if mode is not None:
            props["configuration"]["activeRevisionsMode"] = mode
        if traffic is not None:
            props["configuration"]["ingress"]["traffic"] = traffic
        if image is not None or replicas is not None:
            for key in ("latestRevisionName", "latestReadyRevisionName"):
                props[key] = f"{name}--{revision}"
        self.put(doc)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class StaticCredential:
    """An azure-core TokenCredential: the token ARM accepts, the scopes it was asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)


class NoCredential:
    """What DefaultAzureCredential does where no identity is signed in (nothing is sent to ARM)."""

    def get_token(self, *_: str, **__: Any) -> AccessToken:
        raise ClientAuthenticationError(
            message="DefaultAzureCredential failed to retrieve a token from the included credentials.\nAttempted credentials:\n\tEnvironmentCredential: EnvironmentCredential authentication unavailable."
        )


def serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path, Path, Path], Any]) -> Iterator[Any]:
    """An ARM double made by `make(ca, cert, key)`, trusted through its CA (requests' REQUESTS_CA_BUNDLE:
    TLS and the SDK's https-only bearer policy stay on), no proxy of the developer's; the target reaches
    it as ARM with StaticCredential. Afterwards: nothing it served broke the spec, and every token asked
    was for ARM. The fixture body of every Azure double's tests."""
    ca, cert, key = make_tls(tmp_path / "tls")
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    double = make(ca, cert, key)
    credential = StaticCredential()
    monkeypatch.setattr(running, "ARM", double.url)
    monkeypatch.setattr(running, "default_credential", lambda: credential)
    try:
        yield double
    finally:
        double.close()
    assert double.failures == [], double.failures
    assert all(s == ("https://management.azure.com/.default",) for s in credential.scopes), credential.scopes


@pytest.fixture
def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Arm]:
    """The double `mxinfra drift` reads (serving)."""
    yield from serving(tmp_path, monkeypatch, Arm)


def release(double: Arm, cfg: dict[str, Any]) -> None:
    """What `pulumi up` of `cfg` leaves in Azure: the leader's app and, from two instances, the workers'."""
    p = deployment(cfg, STACK).environment("production")
    instances = p.environment.instances
    double.put(app_document(LEADER, IMAGE, min(instances, 1), dict(p.release_tags), 0))
    if instances > 1:
        double.put(app_document(WORKER, IMAGE, instances - 1, dict(p.release_tags), 1))


@pytest.fixture
def released(project: Any, arm: Arm) -> Arm:
    """Production released (three instances: the leader and two workers); its deploy record in the log."""
    cfg = config("production")
    project.stack(STACK, stack_file(cfg))
    release(arm, cfg)
    record_deploy(project.path, STACK)
    return arm


RECORD = "the last record (seq 1: deploy by "
RELEASED = f"Container App {LEADER} (revision {LEADER}--0000001, 1 replica; worker app {WORKER}, revision {WORKER}--0000001, 2 replicas; resource group {GROUP})"


# --- what runs is what the log records -----------------------------------------------------------------------


def test_drift_is_clean_after_a_release(released, project, capsys):
    rc, out, err = _drift(project, capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"production: runtime configuration not compared: {CONFIG_NOTE}"
    assert f"production: {RELEASED} runs what {RECORD}" in out, out
    # one GET of each app and one page of its revisions, then one page of the group's apps, as the operations
    # are described, with the credential's token
    group_apps = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.App/containerApps"
    assert [r["path"].removeprefix(group_apps + "/") for r in released.requests] == [LEADER, f"{LEADER}/revisions", WORKER, f"{WORKER}/revisions", group_apps]
    assert all(r["query"]["api-version"] == [API_VERSION] and r["auth"] == f"Bearer {TOKEN}" for r in released.requests)


def test_an_image_set_by_hand_is_named_and_the_command_puts_it_back(released, project, capsys):
    released.edit(LEADER, image=EVIL)
    released.edit(WORKER, image=EVIL)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err
    what = f"Container App {LEADER} (revision {LEADER}--0000002, 1 replica; worker app {WORKER}, revision {WORKER}--0000002, 2 replicas; resource group {GROUP})"
    assert f"error: unrecorded changes: what runs is not what the activity log's signed records say: - production: {what} runs image {EVIL}, but {RECORD}" in err, err
    assert (
        f"names image {IMAGE}: an unrecorded change (put back what the record names ("
        f"{UPDATE} {LEADER} --container-name mendix --image {IMAGE}; {UPDATE} {WORKER} --container-name mendix --image {IMAGE}), "
        "find who made it in the API server's (or the cloud's) audit log; then change it through `pulumi up`, which records it)"
    ) in err, err
    # put back as the command says: clean again
    released.edit(LEADER, image=IMAGE, revision="0000003")
    released.edit(WORKER, image=IMAGE, revision="0000003")
    assert _drift(project, capsys)[0] == 0


def test_another_image_on_the_workers_alone_is_named(released, project, capsys):
    released.edit(WORKER, image=EVIL)
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert f"runs image {IMAGE} ({LEADER}), {EVIL} ({WORKER}), but {RECORD}" in err and f"names image {IMAGE}: an unrecorded change" in err, err


def test_a_scale_by_hand_is_named(released, project, capsys):
    # the workers may now scale out to five: the most that may run is what runs
    released.edit(WORKER, replicas=(2, 5))
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    what = f"Container App {LEADER} (revision {LEADER}--0000001, 1 replica; worker app {WORKER}, revision {WORKER}--0000002, 2-5 replicas; resource group {GROUP})"
    assert f"production: {what} runs 6 instance(s), but {RECORD}" in err, err
    assert (
        f"names 3: an unrecorded scale (put back what the record names ({UPDATE} {LEADER} --min-replicas 1 --max-replicas 1; "
        f"{UPDATE} {WORKER} --min-replicas <3 minus the leader's 1> --max-replicas <the same>), find who made it"
    ) in err, err
    # the workers put back, the leader stopped (containerApps/stop/action): two where the record names three
    released.edit(WORKER, replicas=(2, 2), revision="0000003")
    released.edit(LEADER, status="Stopped")
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"(revision {LEADER}--0000001, stopped; worker app" in err and "runs 2 instance(s), but" in err and "names 3: an unrecorded scale" in err, err


def test_a_package_tag_of_another_release_is_named(released, project, capsys):
    doc = copy.deepcopy(released.apps[LEADER])
    doc["tags"]["mxinfra:package-sha256"] = "77" * 32
    released.put(doc)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"says it runs package sha256:{'77' * 6}, but {RECORD}" in err, err
    assert "runs image" not in err  # the image is the recorded one


def test_deleted_apps_and_a_deleted_group_are_named(released, project, capsys):
    del released.apps[WORKER]
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"production: Container App {LEADER} (revision {LEADER}--0000001, 1 replica; resource group {GROUP}) runs 1 instance(s), but {RECORD}" in err, err
    del released.apps[LEADER]
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"production: nothing runs as Container App {LEADER} (resource group {GROUP}), but {RECORD}" in err, err
    assert "removed outside a release" in err
    # the resource group gone with them: ARM's ResourceGroupNotFound is nothing running too
    released.groups.clear()
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"nothing runs as Container App {LEADER} (resource group {GROUP}), but" in err, err


def test_apps_the_log_never_recorded_are_an_unrecorded_deployment(project, arm, capsys):
    cfg = config("production")
    project.stack(STACK, stack_file(cfg))
    release(arm, cfg)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"production: {RELEASED} runs, but the activity log records no deployment of it: an unrecorded deployment" in err, err


# --- which revisions serve: the revision mode and every active revision ------------------------------------------

OLDER = f"{LEADER}--0000002"  # the revision of another image the hostile writes below leave behind


def test_multiple_revision_mode_is_refused(released, project, capsys):
    """A release sets activeRevisionsMode Single (runtime.py); in Multiple mode any active revision may take
    traffic, whatever the template shows: an unrecorded change, with the recorded image everywhere."""
    released.edit(LEADER, mode="Multiple")
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err, err
    assert (
        f"production: {RELEASED} runs image {IMAGE} ({LEADER}, in activeRevisionsMode Multiple: a release sets Single), {IMAGE} ({WORKER}), "
        f"but {RECORD}"
    ) in err, err
    assert f"names image {IMAGE}: an unrecorded change (put back what the record names (az containerapp revision set-mode --subscription {SUB} --resource-group {GROUP} --name {LEADER} --mode single; {UPDATE} {LEADER} --container-name mendix --image {IMAGE};" in err, err
    # put back as the command says: clean again
    released.edit(LEADER, mode="Single")
    assert _drift(project, capsys)[0] == 0


def test_an_older_revision_of_another_image_kept_serving_is_refused_naming_it(released, project, capsys):
    """The review's bypass: the app written in Multiple mode with another image (revision 2), then written
    again with the recorded image and all the traffic pinned to revision 2. The template shows the
    recorded image; revision 2 serves under the runtime identity. The mode is an unrecorded change; the
    revision that serves is named too."""
    released.edit(LEADER, image=EVIL, mode="Multiple", revision="0000002")
    released.edit(LEADER, image=IMAGE, revision="0000003", traffic=[{"revisionName": OLDER, "weight": 100}])
    assert released.apps[LEADER]["properties"]["template"]["containers"][0]["image"] == IMAGE
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err, err
    assert f"{EVIL} (revision {OLDER} of {LEADER}: active, 100% of the traffic, 1 replica)" in err, err
    assert f"but {RECORD}" in err and f"names image {IMAGE}: an unrecorded change" in err, err
    assert f"az containerapp revision deactivate --subscription {SUB} --resource-group {GROUP} --name {LEADER} --revision {OLDER}" in err, err

    # the mode back to Single (the double, as ARM, deactivates every other revision): clean again
    released.edit(LEADER, mode="Single", traffic=[{"latestRevision": True, "weight": 100}])
    assert _drift(project, capsys)[0] == 0
    # revision 2 activated again, whatever the mode reads: it runs (a replica, no traffic of its own) and is
    # named by the core's rule (mxinfra.drift.running_beside): a warning, since the revision a release
    # replaces serves until the new one is ready
    released.activate(LEADER, OLDER)
    rc, _, err = _drift(project, capsys)
    said = " ".join(err.split())
    assert rc == 2 and f"also runs what {RECORD}" in said and f"does not name: {EVIL} (revision {OLDER} of {LEADER}: active, 0% of the traffic, 1 replica)" in said, said
    assert "an unrecorded change" not in said and f"az containerapp revision deactivate --subscription {SUB} --resource-group {GROUP} --name {LEADER} --revision {OLDER}" in said


def test_an_inactive_older_revision_of_another_image_is_fine(released, project, capsys):
    """Every release leaves its predecessor's revision behind, deactivated: no traffic, no replicas."""
    old = "acme.azurecr.io/orders@sha256:" + "55" * 32
    released.edit(LEADER, image=old, revision="0000002")
    released.edit(LEADER, image=IMAGE, revision="0000003")
    kept = released.revisions[LEADER][OLDER]["properties"]
    assert kept["template"]["containers"][0]["image"] == old and (kept["active"], kept["trafficWeight"], kept["replicas"]) == (False, 0, 0)
    rc, out, err = _drift(project, capsys)
    assert rc == 0, err
    assert f"production: Container App {LEADER} (revision {LEADER}--0000003, 1 replica; worker app {WORKER}, revision {WORKER}--0000001, 2 replicas; resource group {GROUP}) runs what {RECORD}" in out, out


def test_the_revisions_are_read_page_by_page(released, project, capsys, monkeypatch):
    """ARM pages the list (nextLink): the revision that serves may be on the last page. Pages are followed
    to the end, at most running.MAX_PAGES; past it, or on a nextLink that names a page again, what serves is
    not known: exit 2, no verdict."""
    released.edit(LEADER, image=EVIL, mode="Multiple", revision="0000002")
    released.edit(LEADER, image=IMAGE, revision="0000003", traffic=[{"revisionName": OLDER, "weight": 100}])
    released.page_size = 1
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"{EVIL} (revision {OLDER} of {LEADER}: active, 100% of the traffic, 1 replica)" in err, err
    pages = [r for r in released.requests if r["path"].endswith(f"/{LEADER}/revisions")]
    assert [r["query"].get("$skiptoken") for r in pages] == [None, ["1"], ["2"]], pages
    assert all(r["query"]["api-version"] == [API_VERSION] and r["auth"] == f"Bearer {TOKEN}" for r in pages)

    _unending_lists_are_refused(released, project, capsys, monkeypatch, "loop", f"the revisions of {LEADER}", "what serves is not known")


def _unending_lists_are_refused(released: Any, project: Any, capsys: Any, monkeypatch: Any, loop: str, listed: str, unknown: str) -> None:
    """A list past running.MAX_PAGES (here 2), or whose nextLink names a page again (the double's `loop`
    flag), leaves what runs unknown: exit 2, no verdict, the list named."""
    monkeypatch.setattr(running, "MAX_PAGES", 2)
    rc, out, err = _drift(project, capsys)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err == f"error: production: what runs could not be read from Azure (subscription {SUB}): Azure's list of {listed} went on past 2 pages: {unknown}", err

    monkeypatch.setattr(running, "MAX_PAGES", 1000)
    setattr(released, loop, True)
    rc, out, err = _drift(project, capsys)
    assert rc == 2 and out == "" and f"Azure's list of {listed} repeats a page (" in err and err.endswith(f"): {unknown}"), err


# --- every container app of the environment's resource group ------------------------------------------------------

STRAY = "orders-production-x"  # an app a production deploy holder creates beside the release's
DELETE = f"az containerapp delete --subscription {SUB} --resource-group {GROUP} --name"


def test_another_container_app_in_the_group_is_refused_naming_it(released, project, capsys):
    """The review's finding: production `deploy` holds containerApps/write, managedEnvironments/join and
    userAssignedIdentities/assign at the group, so it can create another app in the environment's managed
    environment with the runtime identity attached (the Key Vault, the data) and its own image. A release
    makes only the leader's and the workers' app: any other runs what no record names, whatever its
    image, and is named with the command that removes it."""
    released.put(app_document(STRAY, EVIL, 1, {}, 0))
    assert released.apps[STRAY]["identity"]["userAssignedIdentities"] == released.apps[LEADER]["identity"]["userAssignedIdentities"]
    rc, out, err = _drift(project, capsys)
    said = " ".join(err.split())
    assert rc == 2 and out.startswith("production: runtime configuration not compared") and "Traceback" not in err, err
    assert (
        f"production: {RELEASED} runs image {IMAGE} ({LEADER}), {IMAGE} ({WORKER}), {EVIL} ({STRAY}, 1 replica: a container app no release makes), "
        f"but {RECORD}"
    ) in said, said
    assert f"names image {IMAGE}: an unrecorded change (put back what the record names ({DELETE} {STRAY} --yes; {UPDATE} {LEADER} --container-name mendix --image {IMAGE};" in said, said
    # the recorded image does not make it a release's: still refused
    released.edit(STRAY, image=IMAGE)
    rc, _, err = _drift(project, capsys)
    said = " ".join(err.split())
    assert rc == 2 and f"{IMAGE} ({STRAY}, 1 replica: a container app no release makes), but {RECORD}" in said and f"{DELETE} {STRAY} --yes" in said, said
    # removed as the command says: clean again
    released.delete(STRAY)
    rc, out, err = _drift(project, capsys)
    assert rc == 0 and f"production: {RELEASED} runs what {RECORD}" in out, err


def test_another_app_left_where_the_release_s_apps_are_gone_is_refused(released, project, capsys):
    """The leader's and the workers' app deleted (nothing runs: a warning, `pulumi up` makes them again) do
    not hide another app in their group."""
    released.put(app_document(STRAY, EVIL, 2, {}, 0))
    released.delete(LEADER)
    released.delete(WORKER)
    rc, _, err = _drift(project, capsys)
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert f"production: Container App {LEADER} (the leader app {LEADER} does not exist; resource group {GROUP}) runs image {EVIL} ({STRAY}, 2 replicas: a container app no release makes), but {RECORD}" in said, said
    assert f"an unrecorded change (put back what the record names ({DELETE} {STRAY} --yes;" in said and "nothing runs as" not in said, said
    released.delete(STRAY)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"nothing runs as Container App {LEADER} (resource group {GROUP}), but {RECORD}" in " ".join(err.split()), err


def test_the_group_s_apps_are_read_page_by_page(released, project, capsys, monkeypatch):
    """ARM pages the group's list (nextLink): the app no release makes may be on the last page. Pages are
    followed to the end, at most running.MAX_PAGES; past it, or on a nextLink that names a page again, what
    runs is not known: exit 2, no verdict."""
    released.put(app_document(STRAY, EVIL, 1, {}, 0))
    released.apps_page_size = 1
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"{EVIL} ({STRAY}, 1 replica: a container app no release makes)" in " ".join(err.split()), err
    pages = [r for r in released.requests if APPS_RE.match(r["path"])]
    assert [r["query"].get("$skiptoken") for r in pages] == [None, ["1"], ["2"]], pages
    assert all(r["query"]["api-version"] == [API_VERSION] and r["auth"] == f"Bearer {TOKEN}" for r in pages)

    _unending_lists_are_refused(released, project, capsys, monkeypatch, "apps_loop", f"the container apps of resource group {GROUP}", "what runs is not known")


def test_a_tier_downgrade_of_production_is_refused(released, project, capsys):
    """Issue 19, F18: `role: test` on the environment whose apps run tagged mxinfra:role=production would drop
    PIM, MFA and deletion protection in one update; drift (and the guard before every up) refuses it."""
    cfg = config("production", azure={"networkTier": "non-production"})
    body = cfg["mxinfra:environments"]["production"]
    body["role"] = "test"
    body.pop("ungated", None)
    project.stack(STACK, stack_file(cfg))
    rc, _, err = _drift(project, capsys)
    assert rc == 2, err
    assert f"{RELEASED} is production's (its mxinfra:role), but the stack now declares 'production' role test" in err, err
    assert "keep role: production" in err and "Traceback" not in err


# --- what runs cannot be read: exit 2, what to fix, no traceback --------------------------------------------------


def test_access_denied_names_the_action_and_the_roles(released, project, capsys):
    released.deny = "rita@example.com"
    rc, out, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err and out == ""
    scope = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.App/containerApps/{LEADER}"
    assert err == (
        f"error: production: what runs could not be read from Azure (subscription {SUB}): Azure refused Microsoft.App/containerApps/read of "
        f"{LEADER} in resource group {GROUP} (403 AuthorizationFailed: The client 'rita@example.com' with object id '0a1b2c3d-0000-4000-8000-000000000009' "
        f"does not have authorization to perform action 'Microsoft.App/containerApps/read' over scope '{scope}' or the scope is invalid. If access was "
        "recently granted, please refresh your credentials.): the identity needs Microsoft.App/containerApps/read and Microsoft.App/containerApps/revisions/read "
        "on the environment's resource group (its deploy and monitor roles have both)"
    ), err


def test_revisions_read_denied_names_the_action(released, project, capsys):
    """An identity that may read the app but not its revisions: no verdict (a revision it cannot see may be the one that serves)."""
    released.deny_revisions = "rita@example.com"
    rc, out, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err and out == ""
    assert err.startswith(
        f"error: production: what runs could not be read from Azure (subscription {SUB}): Azure refused Microsoft.App/containerApps/revisions/read of "
        f"{LEADER} in resource group {GROUP} (403 AuthorizationFailed: The client 'rita@example.com' with object id '0a1b2c3d-0000-4000-8000-000000000009' "
        "does not have authorization to perform action 'Microsoft.App/containerApps/revisions/read' over scope"
    ), err
    assert err.endswith("the identity needs Microsoft.App/containerApps/read and Microsoft.App/containerApps/revisions/read on the environment's resource group (its deploy and monitor roles have both)"), err


def test_no_credential_is_said_plainly(released, project, capsys, monkeypatch):
    monkeypatch.setattr(running, "default_credential", NoCredential)
    rc, out, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err and out == ""
    assert err.startswith(
        f"error: production: what runs could not be read from Azure (subscription {SUB}): no Azure credential could sign in "
        "(DefaultAzureCredential failed to retrieve a token from the included credentials.): sign in (`az login`,"
    ), err
    assert released.requests == []  # nothing reached ARM without a token


def test_a_token_arm_refuses_is_said_plainly(arm):
    class Other(StaticCredential):
        def get_token(self, *scopes: str, **_: Any) -> AccessToken:
            return AccessToken("a-token-of-another-tenant", int(time.time()) + 3600)

    with pytest.raises(CannotObserve) as e:
        running.observe("production", SUB, GROUP, LEADER, WORKER, credential=Other(), endpoint=arm.url)
    assert "Azure refused the credential for Microsoft.App/containerApps/read of orders-production" in str(e.value)
    assert "(AuthenticationFailed: Authentication failed." in str(e.value) and "sign in (`az login`" in str(e.value)


def test_arm_out_of_reach_is_said_plainly():
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(CannotObserve) as e:
        running.observe("production", SUB, GROUP, LEADER, WORKER, credential=StaticCredential(), endpoint=f"https://127.0.0.1:{port}")
    said = str(e.value)
    assert said.startswith(f"production: what runs could not be read from Azure (subscription {SUB}): Azure Resource Manager cannot be reached (") and said.endswith("): check the network"), said
    assert time.monotonic() - started < 15  # a few quick retries, not minutes before `pulumi up` says so


# --- the same check stops `pulumi up` before anything is declared ---------------------------------------------------


def test_pulumi_up_refuses_an_unrecorded_change_in_the_same_words_before_declaring_anything(released, project, pulumi_run, monkeypatch):
    import importlib

    import pulumi

    from mxinfra.components import MendixApp
    from mxinfra.config import RawConfig
    from mxinfra.deployment import prepare

    monkeypatch.setattr(importlib.import_module("mxinfra.release_guard"), "under_mocks", lambda: False)  # as under a real engine
    # the VNet's tier, which a real engine also reads from ARM first: tests/targets/azure/test_azure_network_tier.py
    monkeypatch.setattr(importlib.import_module("mxinfra_azure.network"), "check_tier", lambda deployment: None)
    monkeypatch.chdir(project.path)  # the program runs in the project directory
    released.edit(LEADER, image=EVIL)
    d = prepare(RawConfig(config("production"), frozenset({"mxinfra:environments"})), project="orders", stack=STACK, base_dir=project.path)
    with pytest.raises(pulumi.RunError) as refused:
        pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=STACK, project="orders")
    said = " ".join(str(refused.value).split())
    assert "unrecorded changes: what runs is not what the activity log's signed records say" in said
    assert f"runs image {EVIL} ({LEADER}), {IMAGE} ({WORKER}), but {RECORD}" in said and f"names image {IMAGE}: an unrecorded change" in said, said
    # what runs cannot be read: the run stops too (fail closed)
    released.deny = "rita@example.com"
    with pytest.raises(pulumi.RunError) as unread:
        pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=STACK, project="orders")
    assert "what runs could not be read from Azure Resource Manager to compare it with the activity log" in str(unread.value)
    # put back and readable, the same program goes on
    released.deny = None
    released.edit(LEADER, image=IMAGE, revision="0000003")
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=STACK, project="orders")
    assert any(r.type == "azure-native:app:ContainerApp" for r in res)


# --- the double and the identity that reads ------------------------------------------------------------------------


def test_the_double_serves_only_what_the_api_description_allows():
    """The validation is what makes the double honest: a misspelt property, a wrong type or an invented
    field fails as a wrong shape from ARM would break the SDK's reading."""
    good = app_document(LEADER, IMAGE, 1, {"mxinfra:role": "production"}, 0)
    check_body(200, good)
    for broken in (
        lambda d: d["properties"]["template"]["scale"].update(replicas=1),  # no such property
        lambda d: d["properties"]["template"]["scale"].update(maxReplicas="1"),  # a string, not an int32
        lambda d: d["properties"]["template"]["containers"][0].update(image=[IMAGE]),
        lambda d: d.update(tags={"mxinfra:role": 1}),
        lambda d: d.pop("location"),  # TrackedResource requires it
        lambda d: d["properties"].update(runningStatus="Sleeping"),
    ):
        doc = copy.deepcopy(good)
        broken(doc)
        with pytest.raises(AssertionError, match="not a ContainerApps_Get 200 body"):
            check_body(200, doc)
    with pytest.raises(AssertionError):
        check_body(403, {"error": {"code": "AuthorizationFailed", "msg": "x"}})
    # and a page of revisions, against ContainerAppsRevisions_ListRevisions
    page = {"value": [revision_document(LEADER, f"{LEADER}--0000001", good["properties"]["template"], active=True, weight=100, replicas=1)], "nextLink": "https://management.azure.com/x?$skiptoken=1"}
    check_revisions(200, page)
    for broken in (
        lambda d: d["value"][0]["properties"].update(traffic=100),  # no such property (trafficWeight)
        lambda d: d["value"][0]["properties"].update(active="true"),
        lambda d: d["value"][0]["properties"].update(runningState="Sleeping"),
        lambda d: d["value"][0].update(location="West Europe"),  # a proxy resource has none
        lambda d: d.pop("value"),
    ):
        doc = copy.deepcopy(page)
        broken(doc)
        with pytest.raises(AssertionError, match="not a ContainerAppsRevisions_ListRevisions 200 body"):
            check_revisions(200, doc)
    check_revisions(403, {"error": {"code": "AuthorizationFailed", "message": "x"}})
    with pytest.raises(AssertionError):
        check_revisions(403, {"error": {"code": "AuthorizationFailed", "msg": "x"}})
    # and a page of the group's apps, against ContainerApps_ListByResourceGroup
    apps = {"value": [good], "nextLink": "https://management.azure.com/x?$skiptoken=1"}
    check_apps(200, apps)
    for broken in (
        lambda d: d.pop("value"),
        lambda d: d.update(next="x"),  # no such property (nextLink)
        lambda d: d["value"][0].pop("location"),  # each a ContainerApp
    ):
        doc = copy.deepcopy(apps)
        broken(doc)
        with pytest.raises(AssertionError, match="not a ContainerApps_ListByResourceGroup 200 body"):
            check_apps(200, doc)


def test_the_installed_sdk_speaks_the_copied_api_version():
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    client = ContainerAppsAPIClient(StaticCredential(), SUB)
    assert client._config.api_version == API_VERSION  # noqa: SLF001 (what every request carries)


def test_the_deploy_and_monitor_roles_may_read_what_runs():
    from azure_operations import operation

    # the reads drift makes, as RBAC names them: the GET, the revisions and the group's list
    assert [operation(p, "GET") for p in (GET_PATH, LIST_PATH, APPS_PATH)] == ["Microsoft.App/containerApps/read", "Microsoft.App/containerApps/revisions/read", "Microsoft.App/containerApps/read"]
    for permission in ("deploy", "monitor"):
        for action in ("Microsoft.App/containerApps/read", "Microsoft.App/containerApps/revisions/read"):
            for production in (True, False):
                assert action in roles.actions(permission, production), (permission, action)
            assert action not in roles.NOT_ACTIONS.get(permission, [])


def _drift(project: Any, capsys: Any) -> tuple[int, str, str]:
    return run_drift(project, capsys, STACK)
