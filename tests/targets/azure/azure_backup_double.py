"""ARM for `mxinfra backup` on the azure target: the drift tests' loopback HTTPS double (test_azure_drift.Arm:
its TLS, credential check and serve/error machinery) answering the Flexible Server and storage account
operations the commands call, each request and answer held to Microsoft's published description of the
API version the commands speak (spec/, see its README; object definitions closed as the drift test
closes them).

What it keeps: the environment's server and the servers restored from it (`servers`, ARM documents),
the server's backups (`backups`, automatic and on-demand), the files container as a history of
writes (`blobs`: (time, name, content or None for a delete)), which a blob point-in-time restore really
winds back to its instant, and the Backup vault's instances with their recovery points (`vaults`; what
each files point holds: `vault_files`), which an on-demand backup (BackupInstances_AdhocBackup) adds. Long-running work (an on-demand backup, a restored server, a blob restore)
completes after `steps` reads of the resource, or never while `stall` is set.

When `role` is set (a rendered custom role definition, as `mxinfra plan --out` writes it), every call
is authorised against its actions the way Azure RBAC reads them (azhelpers.rbac_allows), at the resource
group it is assigned at, and refused as ARM refuses, 403 AuthorizationFailed; `grants` holds the caller's
other rendered roles, each with the scope its assignment or eligibility is at (a role counts for a
resource at that scope or below it). A request that names another resource is checked as ARM's linked
access check does (LINKED: a server PUT's delegated subnet and private DNS zone need their join actions
on those resources), refused 403 LinkedAuthorizationFailed. `calls` keeps (action, scope) of every call
and linked action let through, for a replay against other roles.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import re
import urllib.parse
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from azhelpers import rbac_allows
from test_azure_drift import REGISTRY as DRIFT_REGISTRY
from test_azure_drift import SPEC, TOKEN, Arm

PG_SPEC = SPEC / "postgresql/resource-manager/Microsoft.DBforPostgreSQL/PostgreSQL/stable/2025-08-01/openapi.json"
# The published 2025-08-01 file sits under PostgreSQL/stable/ while its $refs still climb four levels, as
# from the layout before (Microsoft.DBforPostgreSQL/stable/): they name
# specification/postgresql/resource-manager/common-types/, where the repository has no file. The copy
# keeps both verbatim; the registry serves common-types v6 at the address the $refs name as well.
V6 = SPEC / "common-types/resource-management/v6/types.json"
_V6_AS_REFERENCED = (PG_SPEC.parent / "../../../../common-types/resource-management/v6/types.json").resolve()
REGISTRY = DRIFT_REGISTRY.with_resource(_V6_AS_REFERENCED.as_uri(), DRIFT_REGISTRY[V6.resolve().as_uri()])
STORAGE_SPEC = SPEC / "storage/resource-manager/Microsoft.Storage/stable/2024-01-01/storage.json"
# Storage's GetProperties and RestoreBlobRanges declare no error response: ARM's common ErrorResponse
# (the one the file's other operations name) holds their errors.
ARM_ERROR = SPEC / "common-types/resource-management/v5/types.json"
DP_SPEC = SPEC / "dataprotection/resource-manager/Microsoft.DataProtection/DataProtection/stable/2025-01-01/dataprotection.json"
PG_DOC = REGISTRY.contents(PG_SPEC.resolve().as_uri())
STORAGE_DOC = REGISTRY.contents(STORAGE_SPEC.resolve().as_uri())
DP_DOC = REGISTRY.contents(DP_SPEC.resolve().as_uri())
AUTH_SPEC = SPEC / "authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01/authorization-RoleDefinitionsCalls.json"
PG_VERSION, STORAGE_VERSION, DP_VERSION = PG_DOC["info"]["version"], STORAGE_DOC["info"]["version"], DP_DOC["info"]["version"]
PAGE = 2  # backups per page of ListByServer: a few backups already take the SDK through nextLink

_SERVERS = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{serverName}"
_ACCOUNT = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}"
_VAULT = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/backupVaults/{vaultName}"
_INSTANCE = _VAULT + "/backupInstances/{backupInstanceName}"
# (method, path template) -> (the spec file, the ARM action Azure RBAC checks)
OPERATIONS: dict[tuple[str, str], tuple[Path, str]] = {
    ("GET", _SERVERS): (PG_SPEC, "Microsoft.DBforPostgreSQL/flexibleServers/read"),
    ("PUT", _SERVERS): (PG_SPEC, "Microsoft.DBforPostgreSQL/flexibleServers/write"),
    ("GET", _SERVERS + "/backups"): (PG_SPEC, "Microsoft.DBforPostgreSQL/flexibleServers/backups/read"),
    ("GET", _SERVERS + "/backups/{backupName}"): (PG_SPEC, "Microsoft.DBforPostgreSQL/flexibleServers/backups/read"),
    ("PUT", _SERVERS + "/backups/{backupName}"): (PG_SPEC, "Microsoft.DBforPostgreSQL/flexibleServers/backups/write"),
    ("GET", _ACCOUNT): (STORAGE_SPEC, "Microsoft.Storage/storageAccounts/read"),
    ("POST", _ACCOUNT + "/restoreBlobRanges"): (STORAGE_SPEC, "Microsoft.Storage/storageAccounts/restoreBlobRanges/action"),
    ("POST", _INSTANCE + "/backup"): (DP_SPEC, "Microsoft.DataProtection/backupVaults/backupInstances/backup/action"),
    ("GET", _INSTANCE + "/recoveryPoints"): (DP_SPEC, "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints/read"),
    ("GET", _VAULT + "/operationStatus/{operationId}"): (DP_SPEC, "Microsoft.DataProtection/backupVaults/operationStatus/read"),
    ("GET", _VAULT + "/backupJobs/{jobId}"): (DP_SPEC, "Microsoft.DataProtection/backupVaults/backupJobs/read"),
    # (the description spells the segment `resourcegroups`; ARM paths are case-insensitive)
    ("GET", "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}/providers/Microsoft.Authorization/permissions"): (
        AUTH_SPEC,
        "Microsoft.Authorization/permissions/read",
    ),
}

# ARM's linked access checks of a request (method, path template): (property path in the body, the action
# on the resource it names). A Flexible Server PUT names its delegated subnet and private DNS zone; the
# caller needs their joins there ("Joins a virtual network", "Joins a Private DNS Zone":
# learn.microsoft.com/azure/role-based-access-control/permissions/networking).
LINKED: dict[tuple[str, str], list[tuple[tuple[str, ...], str]]] = {
    ("PUT", _SERVERS): [
        (("properties", "network", "delegatedSubnetResourceId"), "Microsoft.Network/virtualNetworks/subnets/join/action"),
        (("properties", "network", "privateDnsZoneArmResourceId"), "Microsoft.Network/privateDnsZones/join/action"),
    ],
}


def linked(method: str, template: str, body: Any) -> list[tuple[str, str]]:
    """(action, linked resource id) of every linked check ARM makes of this request."""
    out = []
    for path, action in LINKED.get((method, template), []):
        value: Any = body
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value:
            out.append((action, str(value)))
    return out


# The aliases of Microsoft.DBforPostgreSQL/flexibleServers a rendered rule may name: Azure's published alias
# list (`az provider show -n Microsoft.DBforPostgreSQL --expand resourceTypes/aliases`), as mirrored in
# github.com/maciejporebski/azure-policy-aliases, aliases/Microsoft.DBforPostgreSQL/flexibleServers.md
# (commit 01f3cb52bf99fff96e506fb1fbcf2cb76be0d457): the ones the rules use, each with its default path in the
# request. A rule naming another fails here.
ALIASES = {
    "microsoft.dbforpostgresql/flexibleservers/createmode": "properties.createMode",
    "microsoft.dbforpostgresql/flexibleservers/sourceserverresourceid": "properties.sourceServerResourceId",
    "microsoft.dbforpostgresql/flexibleservers/administratorloginpassword": "properties.administratorLoginPassword",
    "microsoft.dbforpostgresql/flexibleservers/network.publicnetworkaccess": "properties.network.publicNetworkAccess",
    "microsoft.dbforpostgresql/flexibleservers/network.delegatedsubnetresourceid": "properties.network.delegatedSubnetResourceId",
    "microsoft.dbforpostgresql/flexibleservers/sku.name": "sku.name",
    "microsoft.dbforpostgresql/flexibleservers/storage.storagesizegb": "properties.storage.storageSizeGB",
    "microsoft.dbforpostgresql/flexibleservers/highavailability.mode": "properties.highAvailability.mode",
    "microsoft.dbforpostgresql/flexibleservers/backup.georedundantbackup": "properties.backup.geoRedundantBackup",
}


def policy_denies(rule: dict[str, Any], resource_type: str, resource_id: str, body: Any) -> bool:
    """Azure Policy's reading of a deny rule for a request (a PUT's body) of `resource_type` at `resource_id`:
    `field` is `type`, `id` or a known alias (its value at the alias's default path); `equals`, `notEquals`,
    `in`, `like` (one `*`) compare case-insensitively, `greater` compares numbers (a value that is not one fails
    the test: Azure raises an error there), `exists` tests presence; `allOf`, `anyOf`, `not`. Anything else in
    the rule fails the test (this reading does not cover it)."""
    prefix = resource_type.lower() + "/"

    def value(field: str) -> Any:
        if field.lower() == "type":
            return resource_type
        if field.lower() == "id":
            return resource_id
        if field.lower() not in ALIASES or not field.lower().startswith(prefix):
            raise AssertionError(f"no alias {field!r} of {resource_type} known here")
        v: Any = body or {}
        for key in ALIASES[field.lower()].split("."):
            v = next((x for k, x in v.items() if k.lower() == key.lower()), None) if isinstance(v, dict) else None
        return v

    def like(got: str | None, pattern: str) -> bool:
        assert pattern.count("*") <= 1 and "?" not in pattern and "[" not in pattern, f"Azure's like takes one * and nothing else: {pattern}"
        return got is not None and fnmatch.fnmatchcase(got, pattern)

    def holds(c: dict[str, Any]) -> bool:
        if "allOf" in c:
            return all(holds(x) for x in c["allOf"])
        if "anyOf" in c:
            return any(holds(x) for x in c["anyOf"])
        if "not" in c:
            return not holds(c["not"])
        v = value(c["field"])
        got = None if v is None else str(v).lower()
        (op,) = [k for k in c if k != "field"]
        if op == "exists":
            return (v is not None) == (str(c[op]).lower() == "true")
        if op == "in":
            return got is not None and got in {str(x).lower() for x in c[op]}
        if op == "greater":
            assert isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(c[op], int), f"greater compares numbers: {c} against {v!r}"
            return v > c[op]
        ops = {
            "equals": lambda x: got == x,
            "notEquals": lambda x: got != x,
            "like": lambda x: like(got, x),
            "notLike": lambda x: not like(got, x),
        }
        if op not in ops:
            raise AssertionError(f"condition not read here: {c}")
        return ops[op](str(c[op]).lower())

    assert rule["then"]["effect"].lower() == "deny", rule["then"]
    return holds(rule["if"])


def within(resource: str, scope: str) -> bool:
    """Whether a role at `scope` reaches `resource` (the scope itself or below it; ARM ids are case-insensitive)."""
    r, at = resource.lower().rstrip("/"), scope.lower().rstrip("/")
    return r == at or r.startswith(at + "/")


def _regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[A-Za-z]+\\\}", "([^/]+)", re.escape(template)) + "$", re.IGNORECASE)


ROUTES = [(method, template, _regex(template)) for method, template in OPERATIONS]


def operation(method: str, template: str) -> dict[str, Any]:
    """The described operation `method template`."""
    spec, _ = OPERATIONS[(method, template)]
    return REGISTRY.contents(spec.resolve().as_uri())["paths"][template][method.lower()]


def _validator(spec: Path, schema: dict[str, Any]) -> Draft202012Validator:
    return _validator_of(urllib.parse.urljoin(spec.resolve().as_uri(), schema["$ref"]))


@functools.lru_cache(maxsize=None)
def _validator_of(ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": ref}, registry=REGISTRY)


def problems(validator: Draft202012Validator, body: Any) -> list[str]:
    """What is wrong with `body` against `validator`'s schema (empty: nothing)."""
    return [f"{list(e.absolute_path)}: {e.message}" for e in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))[:5]]


def response_check(method: str, template: str) -> Callable[[int, Any], None]:
    """The check of an answer of `method template`: the declared response's schema, or ARM's ErrorResponse;
    a response declared without a schema has no body."""
    spec, _ = OPERATIONS[(method, template)]
    op = operation(method, template)

    def check(status: int, body: Any) -> None:
        declared = op["responses"].get(str(status))
        if declared is None and status >= 400:
            declared = op["responses"].get("default") or {"schema": {"$ref": "../../../../../common-types/resource-management/v5/types.json#/definitions/ErrorResponse"}}
            if "default" not in op["responses"]:
                found = problems(_validator_of(ARM_ERROR.resolve().as_uri() + "#/definitions/ErrorResponse"), body)
                if found:
                    raise AssertionError(f"not an ARM error body: {found}")
                return
        if declared is None:
            raise AssertionError(f"{op['operationId']} declares no {status} response")
        if "schema" not in declared:
            if body is not None:
                raise AssertionError(f"{op['operationId']}'s {status} response has no body, not {body!r}")
            return
        found = problems(_validator(spec, declared["schema"]), body)
        if found:
            raise AssertionError(f"not a {op['operationId']} {status} body of API version {REGISTRY.contents(spec.resolve().as_uri())['info']['version']}: " + "; ".join(found))

    return check


def request_problems(method: str, template: str, body: Any) -> list[str]:
    """What is wrong with a request body of `method template` against its `in: body` parameter."""
    spec, _ = OPERATIONS[(method, template)]
    params = [p for p in operation(method, template)["parameters"] if p.get("in") == "body"]
    if not params:
        return [] if body is None else [f"{operation(method, template)['operationId']} takes no body, got {body!r}"]
    if body is None:
        return [f"{operation(method, template)['operationId']} needs a body"] if params[0].get("required") else []
    return problems(_validator(spec, params[0]["schema"]), body)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def now() -> datetime:
    return datetime.now(timezone.utc)


class BackupArm(Arm):
    """The drift tests' ARM double with the backup commands' operations (module docstring)."""

    def __init__(self, ca: Path, cert: Path, key: Path, *, subscription: str, group: str, location: str = "westeurope") -> None:
        super().__init__(ca, cert, key)
        self.subscription, self.group, self.location = subscription, group, location
        self.groups = {group}
        self.request_group = group
        self.servers: dict[str, dict[str, Any]] = {}
        self.backups: dict[str, dict[str, Any]] = {}  # the source server's, by name
        self.accounts: dict[str, dict[str, Any]] = {}
        self.blobs: list[tuple[datetime, str, bytes | None]] = []
        self.restores: list[dict[str, Any]] = []  # what each restored server was made from
        self.blob_restores: list[dict[str, Any]] = []  # each restoreBlobRanges request, with its instant
        # the Backup vault's instances (by vault, then instance; lower-case) and their recovery points; what
        # each files point holds (the container's files when its backup ran)
        self.vaults: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.vault_files: dict[str, dict[str, bytes]] = {}
        self.point_started: dict[str, datetime] = {}
        self.point_skew = timedelta(0)  # how far behind ARM's clock the backup service stamps a point
        self.pending: dict[str, int] = {}  # "backup:<name>" / "server:<name>" / "blobs:<id>" -> reads left
        self.steps = 2
        self.vault_steps: int | None = None  # reads of the recovery points before a vault backup's point is there (None: steps)
        self.stall = False
        # "server" or "blobs": the next restore of that kind fails; "vault": the next vault backup is refused;
        # "partial": its points are Partial; "job": the next vault backup's job fails (no point)
        self.fail: str | None = None
        self.operations: dict[str, str] = {}  # a vault operation's id -> the job it started
        self.jobs: dict[str, dict[str, Any]] = {}  # a vault job's id -> what it backs up, its point (None: it fails)
        self.job_unknown = False  # the operation names a job Jobs_Get answers 404 for
        self.job_missing = 0  # Jobs_Get answers 404 for the next reads of a job it knows (one not visible yet)
        self.operation_script: list[str] = []  # the next operation status reads: "missing" (404) or "InProgress"
        self.role: dict[str, Any] | None = None  # the caller's role at the environment's resource group
        self.grants: list[tuple[dict[str, Any], str]] = []  # the caller's other roles, with the scope each is held at
        self.linked_denied = False  # the restore's linked check of the subnet join fails, whatever the roles
        # the restore's PUT is accepted, but the caller sees a 409 (what the SDK's retry of a PUT whose first
        # answer was lost gets while the server it created is provisioning)
        self.accepted_then_conflict = False
        self.calls: list[tuple[str, str]] = []
        self.denied: list[tuple[str, str]] = []
        # Azure Policy assignments ARM evaluates after RBAC: {"inputs": the rendered assignment, "rule": its
        # definition's policyRule}; a PUT or PATCH one denies, 403 RequestDisallowedByPolicy, is kept here
        self.policies: list[dict[str, Any]] = []
        self.disallowed: list[tuple[str, str]] = []
        self.writes: list[tuple[str, str, Any]] = []

    # --- what `pulumi up` left, and what happened since ---------------------------------------------------

    def server_id(self, name: str, group: str | None = None) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{group or self.group}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{name}"

    def put_server(self, name: str, *, subnet: str, zone: str, tags: dict[str, str], retention: int, group: str | None = None) -> dict[str, Any]:
        """The environment's server as `pulumi up` leaves it (database.py: VNet-integrated, private DNS zone)."""
        doc = {
            "id": self.server_id(name, group),
            "name": name,
            "type": "Microsoft.DBforPostgreSQL/flexibleServers",
            "location": self.location,
            "tags": dict(tags),
            "sku": {"name": "Standard_B1ms", "tier": "Burstable"},
            "systemData": {"createdBy": "pulumi-deployer@example.com", "createdByType": "Application", "createdAt": "2026-11-30T09:12:44.0000000Z"},
            "properties": {
                "administratorLogin": "mendix",
                "version": "16",
                "minorVersion": "4",
                "state": "Ready",
                "fullyQualifiedDomainName": f"{name}.{zone.rsplit('/', 1)[-1]}",
                "storage": {"storageSizeGB": 32, "autoGrow": "Enabled", "type": "Premium_LRS"},
                "backup": {"backupRetentionDays": retention, "geoRedundantBackup": "Disabled", "earliestRestoreDate": "2026-11-30T09:20:00Z"},
                "network": {"publicNetworkAccess": "Disabled", "delegatedSubnetResourceId": subnet, "privateDnsZoneArmResourceId": zone},
                "availabilityZone": "1",
                "replicaCapacity": 5,
            },
        }
        response_check("GET", _SERVERS)(200, doc)
        self.servers[name.lower()] = doc
        return doc

    def put_account(self, name: str, tags: dict[str, str]) -> None:
        """The files' storage account as `pulumi up` leaves it (storage.py)."""
        doc = {
            "id": f"/subscriptions/{self.subscription}/resourceGroups/{self.group}/providers/Microsoft.Storage/storageAccounts/{name}",
            "name": name,
            "type": "Microsoft.Storage/storageAccounts",
            "location": self.location,
            "tags": dict(tags),
            "kind": "StorageV2",
            "properties": {
                "provisioningState": "Succeeded",
                "primaryLocation": self.location,
                "statusOfPrimary": "available",
                "creationTime": "2026-11-30T09:12:50.0000000Z",
                "supportsHttpsTrafficOnly": True,
                "allowBlobPublicAccess": False,
                "minimumTlsVersion": "TLS1_2",
                "allowSharedKeyAccess": False,
                "isHnsEnabled": False,
            },
        }
        response_check("GET", _ACCOUNT)(200, doc)
        self.accounts[name.lower()] = doc

    def put_vault(self, vault: str, instances: list[str]) -> None:
        """The environment's Backup vault and its backup instances as `pulumi up` leaves them (backups.py)."""
        self.vaults[vault.lower()] = {i.lower(): [] for i in instances}

    def scheduled_point(self, vault: str, instance: str, began: datetime, reads: int = 1) -> str:
        """A backup the vault's schedule began at `began` (before any command's), whose point appears after
        `reads` reads of the instance's recovery points; its name."""
        points = self.vaults[vault.lower()][instance.lower()]
        name = f"{len(self.point_started) + 1:08x}-0000-4000-8000-00000005c4ed"
        self.pending[f"point:{vault.lower()}/{instance.lower()}/{name}"] = reads
        self.point_started[name], self.vault_files[name] = began, self.files(began)
        return name

    def instance_id(self, vault: str, instance: str) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.group}/providers/Microsoft.DataProtection/backupVaults/{vault}/backupInstances/{instance}"

    def automatic_backup(self, server: str, at: datetime) -> str:
        """A backup the server took by itself (Full) at `at`; its name."""
        name = f"backup_{int(at.timestamp())}"
        self.backups[name] = self._backup_doc(server, name, "Full", at)
        return name

    def write_file(self, name: str, content: bytes | None, at: datetime | None = None) -> None:
        """The app writes (or, with None, deletes) a file of the container."""
        self.blobs.append((at or now(), name, content))
        self.blobs.sort(key=lambda e: e[0])

    def files(self, at: datetime | None = None) -> dict[str, bytes]:
        """The container's files as they are (or were at `at`)."""
        out: dict[str, bytes] = {}
        for t, name, content in self.blobs:
            if at is not None and t > at:
                break
            if content is None:
                out.pop(name, None)
            else:
                out[name] = content
        return out

    def _backup_doc(self, server: str, name: str, kind: str, at: datetime | None) -> dict[str, Any]:
        props: dict[str, Any] = {"backupType": kind, "source": "Automatic" if kind == "Full" else "Customer"}
        if at is not None:
            props["completedTime"] = _iso(at)
        return {"id": f"{self.server_id(server)}/backups/{name}", "name": name, "type": "Microsoft.DBforPostgreSQL/flexibleServers/backups", "properties": props}

    # --- ARM ----------------------------------------------------------------------------------------------

    def answer(self, raw: str, auth: str | None) -> tuple[Any, ...]:
        return self._route("GET", raw, auth, b"")

    def write(self, method: str, raw: str, auth: str | None, body: bytes) -> tuple[Any, ...]:
        return self._route(method, raw, auth, body)

    def _route(self, method: str, raw: str, auth: str | None, data: bytes) -> tuple[Any, ...]:
        url = urllib.parse.urlsplit(raw)
        query = urllib.parse.parse_qs(url.query)
        for m, template, regex in ROUTES:
            match = regex.match(url.path)
            if m == method and match is not None:
                break
        else:
            self.requests.append({"path": url.path, "method": method, "query": query, "auth": auth})
            self.failures.append(f"no operation of the copied descriptions is {method} {raw}")
            return self.error(400, "InvalidResourceType", f"The resource type could not be found for {url.path}.")
        spec, action = OPERATIONS[(method, template)]
        check = response_check(method, template)
        body = json.loads(data) if data else None
        self.requests.append({"path": url.path, "method": method, "query": query, "auth": auth, "body": body, "operation": operation(method, template)["operationId"]})
        version = REGISTRY.contents(spec.resolve().as_uri())["info"]["version"]
        if query.get("api-version") != [version]:
            self.failures.append(f"not a {operation(method, template)['operationId']} request of API version {version}: {method} {raw}")
            return self.error(400, "InvalidApiVersionParameter", f"The api-version '{query.get('api-version')}' is invalid.", check)
        wrong = request_problems(method, template, body)
        if wrong:
            self.failures.append(f"{operation(method, template)['operationId']} request body off its description: {wrong}")
            return self.error(400, "InvalidRequestContent", "; ".join(wrong)[:300], check)
        if auth != f"Bearer {TOKEN}":
            return self.error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing or invalid.", check)
        parts = [urllib.parse.unquote(x) for x in match.groups()]
        sub, group = parts[0], parts[1]
        if not self.allows(action, url.path):
            self.denied.append((action, url.path))
            return self.error(
                403,
                "AuthorizationFailed",
                f"The client 'rita@example.com' with object id '0a1b2c3d-0000-4000-8000-000000000009' does not have authorization to perform action "
                f"'{action}' over scope '{url.path}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                check,
            )
        links = linked(method, template, body)
        refused = [(a, at) for a, at in links if (self.linked_denied and a.endswith("/subnets/join/action")) or not self.allows(a, at)]
        if refused:
            self.denied += refused
            return self.error(
                403,
                "LinkedAuthorizationFailed",
                f"The client 'rita@example.com' with object id '0a1b2c3d-0000-4000-8000-000000000009' has permission to perform action '{action}' on scope "
                f"'{url.path}'; however, it does not have permission to perform action(s) '{','.join(a for a, _ in refused)}' on the linked scope(s) "
                f"'{','.join(at for _, at in refused)}' (respectively) or the linked scope(s) are invalid.",
                check,
            )
        # the request's resource type: the namespace, then every other segment (flexibleServers/{name}/backups/{name})
        segments = url.path.split("/providers/", 1)[1].split("/") if "/providers/" in url.path else []
        rtype = "/".join([*segments[:1], *segments[1::2]])
        refusing = [a for a in self.policies if method in ("PUT", "PATCH") and within(url.path, a["inputs"]["scope"]) and policy_denies(a["rule"], rtype, url.path, body)]
        if refusing:
            self.disallowed.append((method, url.path))
            name = refusing[0]["inputs"]["displayName"]
            return self.error(403, "RequestDisallowedByPolicy", f"Resource '{url.path.rsplit('/', 1)[1]}' was disallowed by policy. Policy identifiers: '{name}'.", check)
        self.calls.append((action, url.path))
        self.calls += links
        if sub != self.subscription or group.lower() not in {g.lower() for g in self.groups}:
            return self.error(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.", check)
        self.request_group = group  # (a server is found, and made, in the group its request names)
        self.writes += [(method, url.path, body)] if method != "GET" else []
        status, answer, *headers = getattr(self, "_" + operation(method, template)["operationId"].lower())(parts[2:], body, query, url)
        return (*self.serve(status, answer, check), *headers)

    def allows(self, action: str, resource: str) -> bool:
        """Azure RBAC of the caller (no `role`: no RBAC): a role it holds at `resource` or above allows `action`."""
        if self.role is None:
            return True
        return any(within(resource, at) and rbac_allows(definition, action) for definition, at in self._held())

    def _held(self) -> list[tuple[dict[str, Any], str]]:
        """The caller's roles, each with the scope it is held at."""
        return [(self.role, f"/subscriptions/{self.subscription}/resourceGroups/{self.group}"), *self.grants] if self.role is not None else []

    def _missing(self, kind: str, name: str) -> tuple[int, dict[str, Any]]:
        return 404, {"error": {"code": "ResourceNotFound", "message": f"The Resource '{kind}/{name}' under resource group '{self.group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"}}

    def _accepted(self, kind: str) -> dict[str, str]:
        """The 202's headers: the operation's status URLs, at the subscription (the commands never read them)."""
        op = f"https://management.azure.com/subscriptions/{self.subscription}/providers/Microsoft.DBforPostgreSQL/locations/{self.location}/{kind}/3f1c2b7e-0000-4000-8000-0000000000aa"
        return {"Azure-AsyncOperation": op + f"?api-version={PG_VERSION}", "Location": op.replace(kind, "operationResults") + f"?api-version={PG_VERSION}", "Retry-After": "0"}

    def _progress(self, key: str) -> bool:
        """One read of a running operation: True once it is done."""
        if key not in self.pending:
            return True
        if self.stall:
            return False
        self.pending[key] -= 1
        if self.pending[key] <= 0:
            del self.pending[key]
            return True
        return False

    # Flexible Server -----------------------------------------------------------------------------------------

    def _servers_get(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        doc = self.servers.get(parts[0].lower())
        if doc is None or doc["id"].lower() != self.server_id(parts[0], self.request_group).lower():
            return self._missing("Microsoft.DBforPostgreSQL/flexibleServers", parts[0])
        key = f"server:{parts[0].lower()}"
        if key in self.pending and self._progress(key):
            failed = self.fail == "server"
            doc["properties"]["state"] = "Disabled" if failed else "Ready"
            self.fail = None if failed else self.fail
        return 200, copy.deepcopy(doc)

    def _servers_createorupdate(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        name = parts[0]
        props = body.get("properties") or {}
        if name.lower() in self.servers:
            # a PUT over an existing server updates it: the commands must never send one
            self.failures.append(f"a PUT over the existing server {name}")
            return 409, {"error": {"code": "ServerAlreadyExists", "message": f"Server {name} already exists."}}
        source_id = props.get("sourceServerResourceId", "")
        source = next((s for s in self.servers.values() if s["id"].lower() == source_id.lower()), None)
        if props.get("createMode") != "PointInTimeRestore" or source is None:
            return 400, {"error": {"code": "InvalidParameterValue", "message": f"createMode PointInTimeRestore needs an existing sourceServerResourceId, got {props.get('createMode')!r} {source_id!r}"}}
        at = _parse(props["pointInTimeUTC"])
        earliest = _parse(source["properties"]["backup"]["earliestRestoreDate"])
        if not earliest <= at <= now():
            return 400, {"error": {"code": "PointInTimeRestoreTimeInvalid", "message": f"The point in time {props['pointInTimeUTC']} is outside {_iso(earliest)} to now."}}
        if body.get("location") != source["location"]:
            return 400, {"error": {"code": "InvalidLocation", "message": f"A restore is in the source server's location {source['location']}."}}
        doc = copy.deepcopy(source)
        doc.update(id=self.server_id(name, self.request_group), name=name, tags=dict(body.get("tags") or {}))
        doc["properties"].update(state="Provisioning", fullyQualifiedDomainName=f"{name}.{source['properties']['network']['privateDnsZoneArmResourceId'].rsplit('/', 1)[-1]}")
        if props.get("network"):
            doc["properties"]["network"] = {"publicNetworkAccess": "Disabled", **props["network"]}
        self.servers[name.lower()] = doc
        self.pending[f"server:{name.lower()}"] = self.steps
        self.restores.append({"server": name, "source": source["name"], "pointInTime": at, "network": props.get("network"), "tags": dict(body.get("tags") or {})})
        if self.accepted_then_conflict:
            return 409, {"error": {"code": "ServerIsBusy", "message": f"Server {name} is busy with another operation (provisioning)."}}
        return 202, None, self._accepted("azureAsyncOperation")

    def _backupsautomaticandondemand_listbyserver(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        if parts[0].lower() not in self.servers:
            return self._missing("Microsoft.DBforPostgreSQL/flexibleServers", parts[0])
        for key in [k for k in self.pending if k.startswith("backup:")]:
            if self._progress(key):
                self._complete(key.split(":", 1)[1])
        done = sorted(self.backups.values(), key=lambda b: b["name"])
        start = int((query.get("$skipToken") or ["0"])[0])
        page: dict[str, Any] = {"value": [copy.deepcopy(b) for b in done[start : start + PAGE]]}
        if start + PAGE < len(done):
            page["nextLink"] = f"{self.url}{url.path}?api-version={PG_VERSION}&$skipToken={start + PAGE}"
        return 200, page

    def _backupsautomaticandondemand_get(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        server, name = parts
        key = f"backup:{name}"
        if key in self.pending and self._progress(key):
            self._complete(name)
        if name not in self.backups:
            return self._missing("Microsoft.DBforPostgreSQL/flexibleServers/backups", f"{server}/{name}")
        return 200, copy.deepcopy(self.backups[name])

    def _complete(self, name: str) -> None:
        self.backups[name]["properties"]["completedTime"] = _iso(now())

    def _backupsautomaticandondemand_create(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        server, name = parts
        if server.lower() not in self.servers:
            return self._missing("Microsoft.DBforPostgreSQL/flexibleServers", server)
        if name in self.backups:
            return 409, {"error": {"code": "BackupAlreadyExists", "message": f"A backup named {name} exists already."}}
        # running: listed and readable without a completion time until it is done
        self.backups[name] = self._backup_doc(server, name, "Customer On-Demand", None)
        self.pending[f"backup:{name}"] = self.steps
        return 202, None, self._accepted("azureAsyncOperation")

    # Storage -------------------------------------------------------------------------------------------------

    def _storageaccounts_getproperties(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        doc = self.accounts.get(parts[0].lower())
        if doc is None:
            return self._missing("Microsoft.Storage/storageAccounts", parts[0])
        out = copy.deepcopy(doc)
        if self.blob_restores and query.get("$expand") == ["blobRestoreStatus"]:
            last = self.blob_restores[-1]
            if last["status"] == "InProgress" and self._progress(f"blobs:{last['restoreId']}"):
                self._restore_blobs(last)
            out["properties"]["blobRestoreStatus"] = {k: v for k, v in last.items() if k in ("status", "failureReason", "restoreId", "parameters")}
        return 200, out

    def _storageaccounts_restoreblobranges(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        if parts[0].lower() not in self.accounts:
            return self._missing("Microsoft.Storage/storageAccounts", parts[0])
        at = _parse(body["timeToRestore"])
        if at > now():
            return 400, {"error": {"code": "InvalidRestoreTime", "message": "timeToRestore must be in the past."}}
        restore = {"status": "InProgress", "restoreId": f"7c1e0b2a-0000-4000-8000-{len(self.blob_restores):012d}", "parameters": copy.deepcopy(body), "_at": at}
        self.blob_restores.append(restore)
        self.pending[f"blobs:{restore['restoreId']}"] = self.steps
        return 202, {k: v for k, v in restore.items() if not k.startswith("_")}, {"Location": f"https://management.azure.com/subscriptions/{self.subscription}/providers/Microsoft.Storage/locations/{self.location}/asyncoperations/{restore['restoreId']}?monitor=true&api-version={STORAGE_VERSION}"}

    # Backup vault ----------------------------------------------------------------------------------------

    def _instance(self, parts: list[str]) -> list[dict[str, Any]] | None:
        return self.vaults.get(parts[0].lower(), {}).get(parts[1].lower())

    def _backupinstances_adhocbackup(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        points = self._instance(parts)
        if points is None:
            return self._missing("Microsoft.DataProtection/backupVaults/backupInstances", f"{parts[0]}/{parts[1]}")
        rule = body["backupRuleOptions"]["ruleName"]
        if rule != "BackupWeekly":  # the policy's one backup rule (backups.py)
            return 400, {"error": {"code": "UserErrorInvalidRuleName", "message": f"The rule {rule} is not a backup rule of the instance's policy."}}
        if self.fail == "vault":
            self.fail = None
            return 400, {"error": {"code": "UserErrorBackupOperationInProgress", "message": "Another backup of the instance is in progress (the double's `fail`)."}}
        name = f"{len(self.point_started) + 1:08x}-0000-4000-8000-00000000b4c7"
        failing = self.fail == "job"
        if failing:
            self.fail = None
        else:
            self.pending[f"point:{parts[0].lower()}/{parts[1].lower()}/{name}"] = self.steps if self.vault_steps is None else self.vault_steps
        self.point_started[name] = now() - self.point_skew  # a point's time is its snapshot's, when the job began
        self.vault_files[name] = self.files()
        job = f"7a0b{len(self.jobs):04x}-0000-4000-8000-00000000a0b0"
        operation = f"5d1e0b2a-0000-4000-8000-{len(self.operations):012d}"
        self.jobs[job] = {"vault": parts[0], "instance": parts[1], "point": None if failing else name, "started": now()}
        self.operations[operation] = job
        op = f"https://management.azure.com{self.instance_id(parts[0], parts[1]).rsplit('/backupInstances/', 1)[0]}/operationStatus/{operation}?api-version={DP_VERSION}"
        return 202, None, {"Azure-AsyncOperation": op, "Location": op.replace("operationStatus", "operationResults"), "Retry-After": "0"}

    def _operationstatusbackupvaultcontext_get(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        """The adhoc backup's operation: done once its job is started (the job runs on)."""
        job = self.operations.get(parts[1])
        if job is None:
            return 404, {"error": {"code": "OperationNotFound", "message": f"The operation {parts[1]} was not found."}}
        started = self.jobs[job]["started"]
        if self.operation_script:
            step = self.operation_script.pop(0)
            if step == "missing":
                return 404, {"error": {"code": "OperationNotFound", "message": f"The operation {parts[1]} was not found."}}
            return 200, {"id": url.path, "name": parts[1], "status": step, "startTime": _iso(started)}
        named = "00000000-0000-4000-8000-0000000000ff" if self.job_unknown else job  # a job id Jobs_Get does not know
        return 200, {"id": url.path, "name": parts[1], "status": "Succeeded", "startTime": _iso(started), "endTime": _iso(started),
                     "properties": {"objectType": "OperationJobExtendedInfo", "jobId": named}}

    def _jobs_get(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        """A vault job: InProgress until its point is listed (Completed), or Failed when `fail` said so."""
        job = self.jobs.get(parts[1])
        if job is None or job["vault"].lower() != parts[0].lower() or self.job_missing > 0:
            self.job_missing = max(0, self.job_missing - 1)
            return self._missing("Microsoft.DataProtection/backupVaults/backupJobs", f"{parts[0]}/{parts[1]}")
        key = f"point:{job['vault'].lower()}/{job['instance'].lower()}/{job['point']}"
        status = "Failed" if job["point"] is None else "InProgress" if key in self.pending else "Completed"
        instance = self.instance_id(job["vault"], job["instance"])
        props: dict[str, Any] = {
            "activityID": "3f1c2b7e-0000-4000-8000-000000000002",
            "backupInstanceFriendlyName": job["instance"],
            "backupInstanceId": instance,
            "dataSourceId": instance,
            "dataSourceLocation": self.location,
            "dataSourceName": job["instance"],
            "dataSourceType": "Microsoft.Storage/storageAccounts/blobServices",
            "isUserTriggered": True,
            "operation": "OnDemandBackup",
            "operationCategory": "Backup",
            "progressEnabled": False,
            "sourceResourceGroup": self.group,
            "sourceSubscriptionID": self.subscription,
            "startTime": _iso(job["started"]),
            "status": status,
            "subscriptionId": self.subscription,
            "supportedActions": [""],
            "vaultName": job["vault"],
        }
        if status == "Failed":
            props["errorDetails"] = [{"code": "UserErrorBlobBackupFailed", "message": "The backup of the blobs failed (the double's `fail`)."}]
        return 200, {"id": url.path, "name": parts[1], "type": "Microsoft.DataProtection/backupVaults/backupJobs", "properties": props}

    def _recoverypoints_list(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        points = self._instance(parts)
        if points is None:
            return self._missing("Microsoft.DataProtection/backupVaults/backupInstances", f"{parts[0]}/{parts[1]}")
        prefix = f"point:{parts[0].lower()}/{parts[1].lower()}/"
        for key in [k for k in self.pending if k.startswith(prefix)]:
            if self._progress(key):  # the job ended: its point, of the files as they were when it began
                name = key[len(prefix) :]
                points.append(
                    {
                        "id": f"{self.instance_id(parts[0], parts[1])}/recoveryPoints/{name}",
                        "name": name,
                        "type": "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints",
                        "properties": {
                            "objectType": "AzureBackupDiscreteRecoveryPoint",
                            "recoveryPointTime": _iso(self.point_started[name]),
                            "recoveryPointType": "Full",
                            "retentionTagName": "Default",
                            "recoveryPointState": "Partial" if self.fail == "partial" else "Completed",
                            "recoveryPointDataStoresDetails": [{"type": "VaultStore", "state": "COMMITTED"}],
                        },
                    }
                )
        start = int((query.get("$skipToken") or ["0"])[0])
        page: dict[str, Any] = {"value": copy.deepcopy(points[start : start + PAGE])}
        if start + PAGE < len(points):
            page["nextLink"] = f"{self.url}{url.path}?api-version={DP_VERSION}&$skipToken={start + PAGE}"
        return 200, page

    # Authorization ------------------------------------------------------------------------------------------

    def _permissions_listforresourcegroup(self, parts: list[str], body: Any, query: Any, url: Any) -> tuple[Any, ...]:
        """The caller's permissions at the group: each role held at it or above, as its definition has them
        (no `role`: the platform identity, an Owner: everything)."""
        if self.role is None:
            return 200, {"value": [{"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}]}
        group = f"/subscriptions/{self.subscription}/resourceGroups/{self.request_group}"
        keys = ("actions", "notActions", "dataActions", "notDataActions")
        held = [{k: list(p.get(k) or []) for k in keys} for definition, at in self._held() if within(group, at) for p in definition["permissions"]]
        return 200, {"value": held}

    def _restore_blobs(self, restore: dict[str, Any]) -> None:
        """The range back at the restore's instant: files written since are deleted, changed ones are
        their earlier versions again (as blob point-in-time restore does)."""
        if self.fail == "blobs":
            self.fail = None
            restore.update(status="Failed", failureReason="The restore failed because the change feed is not enabled for the entire range (the double's `fail`)")
            return
        ranges = [(r["startRange"], r["endRange"]) for r in restore["parameters"]["blobRanges"]]

        def inside(name: str) -> bool:
            return any(lo <= name < hi for lo, hi in ranges)

        then, current = self.files(restore["_at"]), self.files()
        t = now()
        for name in sorted(set(then) | set(current)):
            if inside(name) and then.get(name) != current.get(name):
                self.blobs.append((t, name, then.get(name)))
        restore["status"] = "Complete"
