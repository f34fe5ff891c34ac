"""A test double of the Cloud Controller v3 API (and of UAA's token and SCIM endpoints): a real threaded
HTTP server on loopback, modelling the state machines the target drives and the failures it must survive.

UAA's endpoints (`/oauth/token`, `/Users`, `/Groups`) are not in the CAPI description and UAA publishes
none: they are validated the same way against `spec/uaa-scim-subset.openapi.yaml`, a description written
for these tests from the UAA API reference. UAA users and groups: `add_uaa_user`, `add_uaa_group`,
`uaa_groups[id]["members"]` (edit it to change membership).

Every request it receives and every response it sends is validated against the published CAPI v3
OpenAPI description (spec/, a copy) with openapi-core; violations are collected in `violations` and
the fixture fails the test on any. Where the description and the official documentation
(v3-apidocs.cloudfoundry.org) disagree, the documentation wins and the disagreement is listed here:

- `POST /v3/service_instances` (create a service instance) is documented but missing from the
  description: such requests are recorded in `undescribed` instead of validated.
- `GET /v3/service_credential_bindings` (list service credential bindings, filtered by `names`,
  `service_instance_guids`, `type`) is documented but missing from the description: recorded in
  `undescribed` too.
- `GET /v3/organizations` answers `{pagination, resources}` per the documentation; the description says
  a bare array: its response is not validated (its request is).
- `POST /v3/roles` answering 422 (the user already has the role): the description's 422 schema lists
  other error codes; the documentation's CF-UnprocessableEntity is sent, its response not validated.
- `POST /v3/service_credential_bindings` answering 403 (an identity without a role that may create keys):
  the description lists 201 and 202 only; the documentation's common 403 CF-NotAuthorized is sent, its
  response not validated.
- Error bodies: the documentation's `{"errors": [...]}`; the description's 401/404/422 schemas are a
  single `Error` object. Bodies here carry both (the top-level `code`/`title`/`detail` of the first error
  beside `errors`), which satisfies both.

- Droplets (`GET /v3/droplets/{guid}`): the description types `error`, `image` and `checksum.value` as
  strings where the documentation shows null for a buildpack droplet (or one still staging), and gives
  `buildpacks` the items of a buildpack resource (`position`, `locked`, ... required) where the
  documentation shows what staging detected (`name`, `detect_output`, `version`, `buildpack_name`): the
  double leaves out the fields that would be null, and `buildpacks` (what the app's lifecycle names is
  what it staged with here).
- A bits package's `data.checksum` is sent once its bits are uploaded (the sha256 of the bytes received:
  the real Cloud Controller's is that of the bits it repacked), never as null.

Besides the Cloud Controller and UAA it serves buildpack zips (`serve_buildpack`), as a release host
would: that download is not a CAPI call and is not validated.

Knobs (tests set them): `fail_staging` (error text of the next builds), `staging_polls` (polls a build
stays STAGING), `job_polls` (polls a job stays PROCESSING: the slow job), `token_lifetime_requests`
(requests a token is good for: the 401 on expiry), `drop_uploads` (uploads whose connection is cut),
`crash_instances`. Service keys: `credentials[instance name]` is what the broker puts in a key of that
instance (and a user-provided instance's credentials); `refuse_keys` answers key creation with 403;
`fail_key_deletes` makes that many key deletions fail (a 502 from the broker); `fail_key_creates` that
many key creations whose job fails after the broker made the key; `fail_starts` that many app starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

SPEC = Path(__file__).parent / "spec" / "cf-capi-v3.195.0.openapi.yaml"
UAA_SPEC = Path(__file__).parent / "spec" / "uaa-scim-subset.openapi.yaml"
UAA_ENDPOINTS = {"token", "scim_groups", "scim_users"}
NOT_CAPI = {"buildpack"}  # the release host's download: neither CAPI nor UAA
UNDESCRIBED = {("POST", "/v3/service_instances"), ("GET", "/v3/service_credential_bindings")}
RESPONSE_NOT_DESCRIBED = {("GET", "/v3/organizations")}
# (method, path, status) whose response the description gets wrong: POST /v3/roles's 422 allows only
# CF-InvalidRequest-like codes, where the documentation (and the Cloud Controller) answers a role the user
# already has with CF-UnprocessableEntity, 10008. The listing of an instance's shares describes only its 200,
# where the Cloud Controller answers 404 to a reader who may not read the instance's space (a Space Supporter:
# cloud_controller_ng ServiceInstancesV3Controller#relationships_shared_spaces, resource_not_found!).
STATUS_NOT_DESCRIBED = {("POST", "/v3/roles", 422), ("POST", "/v3/service_credential_bindings", 403), ("GET", "/v3/service_instances/{guid}/relationships/shared_spaces", 404)}

_openapi = None


def openapi() -> Any:
    """The parsed description (once per process: it is 765 kB)."""
    global _openapi
    if _openapi is None:
        import yaml
        from openapi_core import Config, OpenAPI

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        # The description is taken as published (not re-checked on every request: that made each
        # validation take seconds); requests and responses are validated against it in full.
        _openapi = OpenAPI.from_dict(yaml.load(SPEC.read_text(), Loader=loader), config=Config(spec_validator_cls=None))
    return _openapi


_uaa_openapi = None


def uaa_openapi() -> Any:
    """The UAA subset's description (checked by the spec validator: it is ours)."""
    global _uaa_openapi
    if _uaa_openapi is None:
        import yaml
        from openapi_core import OpenAPI

        _uaa_openapi = OpenAPI.from_dict(yaml.safe_load(UAA_SPEC.read_text()))
    return _uaa_openapi


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _guid() -> str:
    return str(uuid.uuid4())


class CapiError(Exception):
    def __init__(self, status: int, title: str, detail: str, code: int = 10008) -> None:
        self.status, self.title, self.detail, self.code = status, title, detail, code


class CapiDouble:
    """The state of one fake Cloud Foundry, served at `url` while running."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.violations: list[str] = []
        self.undescribed: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.fail_staging: str | None = None
        self.staging_polls = 1
        self.job_polls = 0
        self.token_lifetime_requests: int | None = None
        self.drop_uploads = 0
        self.crash_instances = False
        self.credentials: dict[str, dict[str, Any]] = {}
        self.refuse_keys = False
        self.refuse_share_reads = False  # listing shares is not found (404), as for a Space Supporter
        self.fail_key_deletes = 0
        self.fail_key_creates = 0
        self.fail_starts = 0
        self.stop_hangs = False  # a stop leaves the instances running (the app STOPPED, its processes not)
        self.tokens: dict[str, int] = {}  # token -> requests left (None: unlimited)
        self.grants: list[str] = []
        self.grant_clients: list[str] = []  # the client id of every token request, granted or refused
        self.clients = {"mxinfra-ci": "ci-secret"}
        self.users = {("alice", "wonderland")}
        self.uaa_users: dict[str, dict[str, Any]] = {}  # id -> {userName, origin}
        self.uaa_groups: dict[str, dict[str, Any]] = {}  # id -> {displayName, members: [(id, type, origin)]}
        self.scim_status: int | None = None  # answer every SCIM request with this error (e.g. 403)
        self.objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in ("organizations", "spaces", "domains", "service_offerings", "service_plans", "apps", "packages", "builds", "droplets", "deployments", "jobs", "roles", "service_instances", "service_credential_bindings", "routes", "processes")}
        self.env: dict[str, dict[str, Any]] = {}
        self.job_countdown: dict[str, int] = {}
        self.build_countdown: dict[str, int] = {}
        self.bits: dict[str, bytes] = {}
        self.buildpacks: dict[str, bytes] = {}  # name -> zip served at /buildpacks/<name>
        self.app_features: dict[str, dict[str, bool]] = {}  # app -> feature -> enabled
        self.space_features: dict[str, dict[str, bool]] = {}  # space -> feature -> enabled (ssh: the platform default, true)
        org = self._add("organizations", name="acme")
        self.org_guid = org["guid"]
        self.space_guid = self._add("spaces", name="orders", org=org["guid"])["guid"]
        self._add("domains", name="apps.example.com")
        offering = self._add("service_offerings", name="postgresql-db")
        self._add("service_plans", name="standard", offering=offering["guid"], offering_name="postgresql-db")
        offering = self._add("service_offerings", name="objectstore")
        self._add("service_plans", name="s3-standard", offering=offering["guid"], offering_name="objectstore")
        self._server: Any = None
        self.url = ""
        self.urls = Map(
            [
                Rule("/", endpoint="root"),
                Rule("/oauth/token", endpoint="token", methods=["POST"]),
                Rule("/Groups", endpoint="scim_groups", methods=["GET"]),
                Rule("/Users", endpoint="scim_users", methods=["GET"]),
                Rule("/buildpacks/<name>", endpoint="buildpack", methods=["GET"]),
                Rule("/v3/organizations", endpoint="list_organizations", methods=["GET"]),
                Rule("/v3/spaces", endpoint="list_spaces", methods=["GET"]),
                Rule("/v3/spaces", endpoint="create_space", methods=["POST"]),
                Rule("/v3/spaces/<guid>", endpoint="get_space", methods=["GET"]),
                Rule("/v3/spaces/<guid>", endpoint="patch_space", methods=["PATCH"]),
                Rule("/v3/spaces/<guid>", endpoint="delete_space", methods=["DELETE"]),
                Rule("/v3/spaces/<guid>/features/<fname>", endpoint="get_space_feature", methods=["GET"]),
                Rule("/v3/spaces/<guid>/features/<fname>", endpoint="patch_space_feature", methods=["PATCH"]),
                Rule("/v3/domains", endpoint="list_domains", methods=["GET"]),
                Rule("/v3/service_plans", endpoint="list_service_plans", methods=["GET"]),
                Rule("/v3/apps", endpoint="list_apps", methods=["GET"]),
                Rule("/v3/apps", endpoint="create_app", methods=["POST"]),
                Rule("/v3/apps/<guid>", endpoint="get_app", methods=["GET"]),
                Rule("/v3/apps/<guid>", endpoint="update_app", methods=["PATCH"]),
                Rule("/v3/apps/<guid>", endpoint="delete_app", methods=["DELETE"]),
                Rule("/v3/apps/<guid>/environment_variables", endpoint="get_env", methods=["GET"]),
                Rule("/v3/apps/<guid>/environment_variables", endpoint="patch_env", methods=["PATCH"]),
                Rule("/v3/apps/<guid>/actions/start", endpoint="start", methods=["POST"]),
                Rule("/v3/apps/<guid>/actions/stop", endpoint="stop", methods=["POST"]),
                Rule("/v3/apps/<guid>/processes/<ptype>", endpoint="app_process", methods=["GET"]),
                Rule("/v3/apps/<guid>/features/<fname>", endpoint="get_app_feature", methods=["GET"]),
                Rule("/v3/apps/<guid>/features/<fname>", endpoint="patch_app_feature", methods=["PATCH"]),
                Rule("/v3/apps/<guid>/relationships/current_droplet", endpoint="get_current_droplet", methods=["GET"]),
                Rule("/v3/apps/<guid>/relationships/current_droplet", endpoint="set_current_droplet", methods=["PATCH"]),
                Rule("/v3/packages", endpoint="create_package", methods=["POST"]),
                Rule("/v3/packages/<guid>", endpoint="get_package", methods=["GET"]),
                Rule("/v3/packages/<guid>/upload", endpoint="upload", methods=["POST"]),
                Rule("/v3/builds", endpoint="create_build", methods=["POST"]),
                Rule("/v3/builds/<guid>", endpoint="get_build", methods=["GET"]),
                Rule("/v3/droplets/<guid>", endpoint="get_droplet", methods=["GET"]),
                Rule("/v3/processes/<guid>", endpoint="patch_process", methods=["PATCH"]),
                Rule("/v3/processes/<guid>/actions/scale", endpoint="scale", methods=["POST"]),
                Rule("/v3/processes/<guid>/stats", endpoint="stats", methods=["GET"]),
                Rule("/v3/deployments", endpoint="create_deployment", methods=["POST"]),
                Rule("/v3/deployments/<guid>", endpoint="get_deployment", methods=["GET"]),
                Rule("/v3/jobs/<guid>", endpoint="get_job", methods=["GET"]),
                Rule("/v3/roles", endpoint="create_role", methods=["POST"]),
                Rule("/v3/roles", endpoint="list_roles", methods=["GET"]),
                Rule("/v3/roles/<guid>", endpoint="get_role", methods=["GET"]),
                Rule("/v3/roles/<guid>", endpoint="delete_role", methods=["DELETE"]),
                Rule("/v3/routes", endpoint="create_route", methods=["POST"]),
                Rule("/v3/routes/<guid>", endpoint="get_route", methods=["GET"]),
                Rule("/v3/routes/<guid>", endpoint="delete_route", methods=["DELETE"]),
                Rule("/v3/routes/<guid>/destinations", endpoint="add_destinations", methods=["POST"]),
                Rule("/v3/service_instances", endpoint="list_service_instances", methods=["GET"]),
                Rule("/v3/service_instances", endpoint="create_service_instance", methods=["POST"]),
                Rule("/v3/service_instances/<guid>", endpoint="patch_service_instance", methods=["PATCH"]),
                Rule("/v3/service_instances/<guid>", endpoint="delete_service_instance", methods=["DELETE"]),
                Rule("/v3/service_credential_bindings", endpoint="create_binding", methods=["POST"]),
                Rule("/v3/service_credential_bindings", endpoint="list_bindings", methods=["GET"]),
                Rule("/v3/service_credential_bindings/<guid>", endpoint="delete_binding", methods=["DELETE"]),
                Rule("/v3/service_credential_bindings/<guid>/details", endpoint="binding_details", methods=["GET"]),
                Rule("/v3/service_instances/<guid>/credentials", endpoint="instance_credentials", methods=["GET"]),
                Rule("/v3/service_instances/<guid>/relationships/shared_spaces", endpoint="list_shares", methods=["GET"]),
                Rule("/v3/service_instances/<guid>/relationships/shared_spaces", endpoint="share", methods=["POST"]),
                Rule("/v3/service_instances/<guid>/relationships/shared_spaces/<space>", endpoint="unshare", methods=["DELETE"]),
            ]
        )

    # --- serving ------------------------------------------------------------------------------

    def start(self) -> CapiDouble:
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self.handle(request, environ)
        return response(environ, start_response)

    def handle(self, request: Request, environ: dict[str, Any]) -> Response:
        adapter = self.urls.bind_to_environ(request.environ)
        key = None
        try:
            endpoint, args = adapter.match()
        except Exception:  # noqa: BLE001
            return self._error(CapiError(404, "CF-NotFound", f"unknown endpoint {request.method} {request.path}", 10000))
        uaa = endpoint in UAA_ENDPOINTS
        if endpoint in NOT_CAPI:
            with self.lock:
                self.requests.append((request.method, request.path))
            return self.op_buildpack(request, **args)
        described = not uaa
        template = next(r.rule for r in self.urls.iter_rules() if r.endpoint == endpoint)
        key = (request.method, template.replace("<guid>", "{guid}").replace("<ptype>", "{type}").replace("<fname>", "{name}").replace("<space>", "{space_guid}"))
        if uaa:
            self._validate_request(request, uaa_openapi())
        if described:
            if key in UNDESCRIBED:
                self.undescribed.append(f"{request.method} {request.path}")
            else:
                self._validate_request(request)
        with self.lock:
            self.requests.append((request.method, request.path))
            try:
                if endpoint not in ("root", "token"):
                    self._authorize(request)
                if endpoint == "upload" and self.drop_uploads > 0:
                    self.drop_uploads -= 1
                    request.get_data()  # read the bits, then cut the connection before any answer
                    sock = environ.get("werkzeug.socket")
                    if sock is not None:
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return Response(status=500)
                response = getattr(self, "op_" + endpoint)(request, **args)
            except CapiError as e:
                response = self._scim_error(e) if uaa else self._error(e)
        if uaa:
            self._validate_response(request, response, uaa_openapi())
        elif described and key not in UNDESCRIBED and key not in RESPONSE_NOT_DESCRIBED and (*key, response.status_code) not in STATUS_NOT_DESCRIBED:
            self._validate_response(request, response)
        return response

    def _validate_request(self, request: Request, spec: Any = None) -> None:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest

        try:
            (spec or openapi()).validate_request(WerkzeugOpenAPIRequest(request))
        except Exception as e:  # noqa: BLE001
            self.violations.append(f"request {request.method} {request.path}: {_explain(e)}")

    def _validate_response(self, request: Request, response: Response, spec: Any = None) -> None:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse

        try:
            (spec or openapi()).validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))
        except Exception as e:  # noqa: BLE001
            self.violations.append(f"response {response.status_code} to {request.method} {request.path}: {_explain(e)}")

    def _authorize(self, request: Request) -> None:
        auth = request.headers.get("Authorization", "")
        token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else ""
        if token not in self.tokens:
            raise CapiError(401, "CF-InvalidAuthToken", "Invalid Auth Token", 1000)
        left = self.tokens[token]
        if left is not None:
            if left <= 0:
                raise CapiError(401, "CF-InvalidAuthToken", "Invalid Auth Token", 1000)
            self.tokens[token] = left - 1

    def _error(self, e: CapiError) -> Response:
        err = {"code": e.code, "title": e.title, "detail": e.detail}
        return self._json({**err, "errors": [err]}, e.status)

    @staticmethod
    def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)

    def body(self, request: Request) -> dict[str, Any]:
        try:
            return json.loads(request.get_data() or b"{}")
        except ValueError:
            raise CapiError(400, "CF-MessageParseError", "Request invalid due to parse error", 1001) from None

    # --- representations ----------------------------------------------------------------------

    def _add(self, kind: str, **fields: Any) -> dict[str, Any]:
        obj = {"guid": _guid(), "created_at": _now(), "updated_at": _now(), "metadata": {"labels": {}, "annotations": {}}, **fields}
        self.objects[kind][obj["guid"]] = obj
        return obj

    def _get(self, kind: str, guid: str) -> dict[str, Any]:
        obj = self.objects[kind].get(guid)
        if obj is None:
            raise CapiError(404, "CF-ResourceNotFound", f"{kind[:-1].replace('_', ' ').title()} not found", 10010)
        return obj

    def link(self, path: str) -> dict[str, str]:
        return {"href": f"{self.url}{path}"}

    def _base(self, o: dict[str, Any], kind: str) -> dict[str, Any]:
        return {"guid": o["guid"], "created_at": o["created_at"], "updated_at": o["updated_at"], "metadata": o["metadata"], "links": {"self": self.link(f"/v3/{kind}/{o['guid']}")}}

    def _page(self, path: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
        return {"pagination": {"total_results": len(resources), "total_pages": 1, "first": self.link(f"{path}?page=1"), "last": self.link(f"{path}?page=1")}, "resources": resources}

    def r_app(self, o: dict[str, Any]) -> dict[str, Any]:
        d = self._base(o, "apps")
        d.update(name=o["name"], state=o["state"], lifecycle={"type": "buildpack", "data": {"buildpacks": o["buildpacks"], "stack": o["stack"]}}, relationships={"space": {"data": {"guid": o["space"]}}})
        return d

    def r_process(self, o: dict[str, Any]) -> dict[str, Any]:
        d = self._base(o, "processes")
        d.update(
            type="web",
            command=None,
            instances=o["instances"],
            memory_in_mb=o["memory_in_mb"],
            disk_in_mb=o["disk_in_mb"],
            log_rate_limit_in_bytes_per_second=-1,
            health_check=o["health_check"],
            readiness_health_check={"type": "process", "data": {}},
            relationships={"app": {"data": {"guid": o["app"]}}, "revision": {"data": None}},
        )
        return d

    def r_package(self, o: dict[str, Any]) -> dict[str, Any]:
        d = self._base(o, "packages")
        data: dict[str, Any] = {"error": o.get("error")}
        if o["guid"] in self.bits:
            import hashlib

            data["checksum"] = {"type": "sha256", "value": hashlib.sha256(self.bits[o["guid"]]).hexdigest()}
        d.update(type="bits", state=o["state"], data=data, relationships={"app": {"data": {"guid": o["app"]}}})
        return d

    def r_droplet(self, o: dict[str, Any]) -> dict[str, Any]:
        """A buildpack droplet (the fields the description types non-null left out while they are null)."""
        d = self._base(o, "droplets")
        d["links"].update(app=self.link(f"/v3/apps/{o['app']}"), package=self.link(f"/v3/packages/{o['package']}"))
        d.update(state=o["state"], lifecycle={"type": "buildpack", "data": {}}, relationships={"app": {"data": {"guid": o["app"]}}})
        if o["state"] == "STAGED":
            d.update(execution_metadata="", process_types={"web": "./start"}, stack="cflinuxfs4")
        return d

    def r_build(self, o: dict[str, Any]) -> dict[str, Any]:
        d = self._base(o, "builds")
        d.update(
            state=o["state"],
            error=o.get("error"),
            package={"guid": o["package"]},
            droplet={"guid": o["droplet"]},
            created_by={"guid": _guid(), "name": "mxinfra-ci", "email": ""},
            lifecycle={"type": "buildpack", "data": {}},
            staging_memory_in_mb=1024,
            staging_disk_in_mb=4096,
            staging_log_rate_limit_bytes_per_second=-1,
        )
        return d

    def r_deployment(self, o: dict[str, Any]) -> dict[str, Any]:
        d = self._base(o, "deployments")
        d.update(
            state=o["state"],
            status={"value": o["value"], "reason": o["reason"], "details": {}},
            strategy=o["strategy"],
            droplet={"guid": o["droplet"]},
            previous_droplet={"guid": o["previous_droplet"]},
            new_processes=[],
            revision={"guid": _guid(), "version": 1},
            relationships={"app": {"data": {"guid": o["app"]}}},
        )
        return d

    def r_job(self, o: dict[str, Any]) -> dict[str, Any]:
        d = self._base(o, "jobs")
        d.update(operation=o["operation"], state=o["state"], errors=o.get("errors", []), warnings=[])
        return d

    def r_role(self, o: dict[str, Any]) -> dict[str, Any]:
        d = self._base(o, "roles")
        d["links"]["user"] = self.link(f"/v3/users/{o['user']}")
        d.update(type=o["type"], relationships={"user": {"data": {"guid": o["user"]}}, "space": {"data": {"guid": o["space"]}}, "organization": {"data": None}})
        return d

    def r_route(self, o: dict[str, Any]) -> dict[str, Any]:
        d = self._base(o, "routes")
        dom = self.objects["domains"][o["domain"]]
        d.update(host=o["host"], path="", port=None, protocol="http", url=f"{o['host']}.{dom['name']}", destinations=o["destinations"], relationships={"domain": {"data": {"guid": o["domain"]}}, "space": {"data": {"guid": o["space"]}}})
        return d

    def r_si(self, o: dict[str, Any]) -> dict[str, Any]:
        d = self._base(o, "service_instances")
        d.update(name=o["name"], type=o["type"], tags=[], last_operation={"type": "create", "state": o["state"], "description": "", "created_at": o["created_at"], "updated_at": o["updated_at"]}, relationships={"space": {"data": {"guid": o["space"]}}, **({"service_plan": {"data": {"guid": o["plan"]}}} if o.get("plan") else {})})
        return d

    def _job(self, operation: str, on_complete: Any = None, fail: str | None = None, with_body: bool = False) -> Response:
        job = self._add("jobs", operation=operation, state="PROCESSING")
        job["on_complete"] = on_complete
        job["fail"] = fail
        self.job_countdown[job["guid"]] = self.job_polls
        if self.job_polls == 0:
            self._finish_job(job)
        headers = {"Location": f"{self.url}/v3/jobs/{job['guid']}"}
        if with_body:  # the description gives DELETE /v3/roles/{guid} a body naming the job
            return self._json({"guid": job["guid"], "links": {"self": self.link(f"/v3/jobs/{job['guid']}")}}, 202, headers)
        return Response(status=202, headers=headers)

    def _finish_job(self, job: dict[str, Any]) -> None:
        if job.get("fail"):
            job["state"] = "FAILED"
            job["errors"] = [{"code": 10008, "title": "CF-UnprocessableEntity", "detail": job["fail"]}]
            return
        if job.get("on_complete"):
            job.pop("on_complete")()
        job["state"] = "COMPLETE"

    # --- UAA ----------------------------------------------------------------------------------

    def op_root(self, request: Request) -> Response:
        return self._json({"links": {"self": self.link("/"), "cloud_controller_v3": self.link("/v3"), "uaa": self.link(""), "login": self.link("")}})

    def op_token(self, request: Request) -> Response:
        form = request.form
        auth = request.authorization
        client = (auth.username, auth.password) if auth else (None, None)
        grant = form.get("grant_type")
        self.grant_clients.append(client[0] or "")
        ok = False
        if grant == "client_credentials":
            ok = self.clients.get(client[0] or "") == client[1]
        elif grant == "password":
            ok = client[0] == "cf" and (form.get("username"), form.get("password")) in self.users
        elif grant == "refresh_token":
            ok = form.get("refresh_token", "").startswith("refresh-")
        if not ok:
            return self._json({"error": "unauthorized", "error_description": "Bad credentials"}, 401)
        token = "token-" + _guid()
        self.tokens[token] = self.token_lifetime_requests
        self.grants.append(grant or "")
        return self._json({"access_token": token, "token_type": "bearer", "expires_in": 3600, "refresh_token": "refresh-" + _guid() if grant == "password" else None})

    # --- UAA SCIM -----------------------------------------------------------------------------

    def add_uaa_user(self, user_name: str, origin: str) -> str:
        """A UAA user (shadow of an identity provider's user); its id."""
        uid = _guid()
        self.uaa_users[uid] = {"userName": user_name, "origin": origin}
        return uid

    def add_uaa_group(self, name: str, members: list[str] | None = None, groups: list[str] | None = None) -> str:
        """A UAA group with user members (ids) and nested groups (ids); its id."""
        gid = _guid()
        self.uaa_groups[gid] = {"displayName": name, "members": [(m, "USER", self.uaa_users[m]["origin"]) for m in members or []] + [(g, "GROUP", "uaa") for g in groups or []]}
        return gid

    def _scim_error(self, e: CapiError) -> Response:
        error = {401: "invalid_token", 403: "insufficient_scope", 400: "scim_resource_error"}.get(e.status, "scim_error")
        return self._json({"error": error, "error_description": e.detail}, e.status)

    def _scim_filter(self, request: Request) -> list[tuple[str, str]]:
        text = request.args.get("filter", "")
        clauses = re.split(r"\s+and\s+", text.strip())
        out = []
        for c in clauses:
            m = re.fullmatch(r'(\w+)\s+eq\s+"((?:[^"\\]|\\.)*)"', c, flags=re.IGNORECASE)
            if m is None:
                raise CapiError(400, "", f"Invalid filter expression: [{text}]")
            out.append((m[1], re.sub(r"\\(.)", r"\1", m[2])))
        return out

    def _scim_page(self, resources: list[dict[str, Any]], request: Request) -> Response:
        start = int(request.args.get("startIndex", 1))
        count = int(request.args.get("count", 100))
        page = resources[start - 1 : start - 1 + count]
        return self._json({"resources": page, "startIndex": start, "itemsPerPage": len(page), "totalResults": len(resources), "schemas": ["urn:scim:schemas:core:1.0"]})

    def op_scim_groups(self, request: Request) -> Response:
        if self.scim_status:
            raise CapiError(self.scim_status, "", "Access is denied")
        conditions = self._scim_filter(request)
        out = []
        for gid, g in self.uaa_groups.items():
            fields = {"id": gid, "displayname": g["displayName"]}
            if all(fields.get(k.lower()) == v for k, v in conditions):
                out.append({"id": gid, "displayName": g["displayName"], "zoneId": "uaa", "members": [{"value": m, "type": t, "origin": o} for m, t, o in g["members"]], "meta": {"version": 1}, "schemas": ["urn:scim:schemas:core:1.0"]})
        return self._scim_page(out, request)

    def op_scim_users(self, request: Request) -> Response:
        if self.scim_status:
            raise CapiError(self.scim_status, "", "Access is denied")
        conditions = self._scim_filter(request)
        out = []
        for uid, u in self.uaa_users.items():
            fields = {"id": uid, "username": u["userName"], "origin": u["origin"]}
            if all(fields.get(k.lower()) == v for k, v in conditions):
                out.append({"id": uid, "userName": u["userName"], "origin": u["origin"], "active": True, "zoneId": "uaa", "schemas": ["urn:scim:schemas:core:1.0"]})
        return self._scim_page(out, request)

    # --- lookups ------------------------------------------------------------------------------

    def _filter(self, kind: str, request: Request, **fields: str) -> list[dict[str, Any]]:
        out = []
        for o in self.objects[kind].values():
            if all(not request.args.get(param) or str(o.get(field)) in request.args[param].split(",") for param, field in fields.items()):
                out.append(o)
        return out

    def op_list_organizations(self, request: Request) -> Response:
        items = self._filter("organizations", request, names="name")
        return self._json(self._page("/v3/organizations", [{**self._base(o, "organizations"), "name": o["name"], "suspended": False, "relationships": {"quota": {"data": {"guid": _guid()}}}} for o in items]))

    def op_list_spaces(self, request: Request) -> Response:
        items = self._filter("spaces", request, names="name", organization_guids="org")
        return self._json(self._page("/v3/spaces", [{**self._base(o, "spaces"), "name": o["name"], "relationships": {"organization": {"data": {"guid": o["org"]}}, "quota": {"data": None}}} for o in items]))

    def op_list_domains(self, request: Request) -> Response:
        items = self._filter("domains", request, names="name")
        return self._json(self._page("/v3/domains", [{**self._base(o, "domains"), "name": o["name"], "internal": False, "supported_protocols": ["http"], "relationships": {"organization": {"data": {"guid": self.org_guid}}, "shared_organizations": {"data": []}}} for o in items]))

    def op_list_service_plans(self, request: Request) -> Response:
        items = self._filter("service_plans", request, names="name", service_offering_names="offering_name")
        return self._json(self._page("/v3/service_plans", [{**self._base(o, "service_plans"), "name": o["name"], "visibility_type": "public", "available": True, "free": False, "description": "", "broker_catalog": {"id": o["guid"], "metadata": {}, "maximum_polling_duration": None, "features": {"plan_updateable": True, "bindable": True}}, "schemas": {}, "relationships": {"service_offering": {"data": {"guid": o["offering"]}}}} for o in items]))

    # --- apps ---------------------------------------------------------------------------------

    def op_list_apps(self, request: Request) -> Response:
        items = self._filter("apps", request, names="name", space_guids="space")
        return self._json(self._page("/v3/apps", [self.r_app(o) for o in items]))

    def op_create_app(self, request: Request) -> Response:
        b = self.body(request)
        space = b["relationships"]["space"]["data"]["guid"]
        if space not in self.objects["spaces"]:
            raise CapiError(422, "CF-UnprocessableEntity", "Invalid space. Ensure that the space exists and you have access to it.")
        if any(a["name"] == b["name"] and a["space"] == space for a in self.objects["apps"].values()):
            raise CapiError(422, "CF-UnprocessableEntity", f"App with the name '{b['name']}' already exists.")
        lc = b.get("lifecycle", {}).get("data", {})
        app = self._add("apps", name=b["name"], space=space, state=b.get("state", "STOPPED"), buildpacks=lc.get("buildpacks", []), stack=lc.get("stack", "cflinuxfs4"), droplet=None)
        app["metadata"] = _meta(b)
        self.env[app["guid"]] = dict(b.get("environment_variables") or {})
        self._add("processes", app=app["guid"], instances=1, memory_in_mb=1024, disk_in_mb=1024, health_check={"type": "port", "data": {}}, running=[], droplet=None)
        return self._json(self.r_app(app), 201)

    def app(self, guid: str) -> dict[str, Any]:
        return self._get("apps", guid)

    def process_of(self, app: str) -> dict[str, Any]:
        return next(p for p in self.objects["processes"].values() if p["app"] == app)

    def op_get_app(self, request: Request, guid: str) -> Response:
        return self._json(self.r_app(self.app(guid)))

    def op_update_app(self, request: Request, guid: str) -> Response:
        app, b = self.app(guid), self.body(request)
        lc = (b.get("lifecycle") or {}).get("data") or {}
        app.update(buildpacks=lc.get("buildpacks", app["buildpacks"]), stack=lc.get("stack", app["stack"]), updated_at=_now())
        if "metadata" in b:
            app["metadata"] = _meta(b)
        return self._json(self.r_app(app))

    def op_delete_app(self, request: Request, guid: str) -> Response:
        self.app(guid)

        def gone() -> None:
            self.objects["apps"].pop(guid, None)
            for kind in ("processes", "packages", "service_credential_bindings"):
                for k, o in list(self.objects[kind].items()):
                    if o.get("app") == guid:
                        del self.objects[kind][k]
            for r in self.objects["routes"].values():
                r["destinations"] = [d for d in r["destinations"] if d["app"]["guid"] != guid]

        return self._job("app.delete", gone)

    def op_get_env(self, request: Request, guid: str) -> Response:
        self.app(guid)
        return self._json({"var": self.env[guid], "links": {"self": self.link(f"/v3/apps/{guid}/environment_variables"), "app": self.link(f"/v3/apps/{guid}")}})

    def op_patch_env(self, request: Request, guid: str) -> Response:
        self.app(guid)
        for k, v in (self.body(request).get("var") or {}).items():
            if v is None:
                self.env[guid].pop(k, None)
            else:
                self.env[guid][k] = v
        return self._json({"var": self.env[guid], "links": {"self": self.link(f"/v3/apps/{guid}/environment_variables"), "app": self.link(f"/v3/apps/{guid}")}})

    def _run(self, app: dict[str, Any]) -> None:
        """Instances of the process run the app's current droplet with the app's current variables."""
        p = self.process_of(app["guid"])
        p["running"] = [{"droplet": app["droplet"], "env": dict(self.env[app["guid"]]), "memory": p["memory_in_mb"]} for _ in range(p["instances"])]

    def op_start(self, request: Request, guid: str) -> Response:
        app = self.app(guid)
        if self.fail_starts > 0:
            self.fail_starts -= 1
            raise CapiError(422, "CF-UnprocessableEntity", "Unable to start the app: the runtime is not available right now")
        if app["droplet"] is None:
            raise CapiError(422, "CF-UnprocessableEntity", "Assign a droplet before starting this app.")
        app["state"] = "STARTED"
        self._run(app)
        return self._json(self.r_app(app))

    def op_stop(self, request: Request, guid: str) -> Response:
        app = self.app(guid)
        app["state"] = "STOPPED"
        if not self.stop_hangs:
            self.process_of(guid)["running"] = []
        return self._json(self.r_app(app))

    def op_app_process(self, request: Request, guid: str, ptype: str) -> Response:
        self.app(guid)
        return self._json(self.r_process(self.process_of(guid)))

    def op_get_current_droplet(self, request: Request, guid: str) -> Response:
        app = self.app(guid)
        if app["droplet"] is None:
            raise CapiError(404, "CF-ResourceNotFound", "Droplet not found", 10010)
        return self._json({"data": {"guid": app["droplet"]}, "links": {"self": self.link(f"/v3/apps/{guid}/relationships/current_droplet"), "related": self.link(f"/v3/apps/{guid}/droplets/current")}})

    def op_set_current_droplet(self, request: Request, guid: str) -> Response:
        app = self.app(guid)
        droplet = self.body(request)["data"]["guid"]
        d = self._get("droplets", droplet)
        if d["app"] != guid or d["state"] != "STAGED":
            raise CapiError(422, "CF-UnprocessableEntity", "Unable to assign current droplet. Ensure the droplet exists and belongs to this app.")
        app["droplet"] = droplet
        return self._json({"data": {"guid": droplet}, "links": {"self": self.link(f"/v3/apps/{guid}/relationships/current_droplet"), "related": self.link(f"/v3/apps/{guid}/droplets/current")}})

    # --- packages and builds ------------------------------------------------------------------

    def op_create_package(self, request: Request) -> Response:
        b = self.body(request)
        app = b["relationships"]["app"]["data"]["guid"]
        self.app(app)
        pkg = self._add("packages", app=app, state="AWAITING_UPLOAD")
        pkg["metadata"] = _meta(b)
        return self._json(self.r_package(pkg), 201)

    def op_get_package(self, request: Request, guid: str) -> Response:
        return self._json(self.r_package(self._get("packages", guid)))

    def op_upload(self, request: Request, guid: str) -> Response:
        pkg = self._get("packages", guid)
        f = request.files.get("bits")
        if f is None:
            raise CapiError(422, "CF-UnprocessableEntity", "Upload must include bits")
        self.bits[guid] = f.read()
        pkg["state"] = "READY"
        return self._json(self.r_package(pkg))

    def op_create_build(self, request: Request) -> Response:
        b = self.body(request)
        pkg = self._get("packages", b["package"]["guid"])
        if pkg["state"] != "READY":
            raise CapiError(422, "CF-UnprocessableEntity", "package must be in READY state")
        droplet = self._add("droplets", app=pkg["app"], state="STAGING", package=pkg["guid"])
        build = self._add("builds", package=pkg["guid"], app=pkg["app"], state="STAGING", droplet=droplet["guid"], error=None, fail=self.fail_staging)
        self.build_countdown[build["guid"]] = self.staging_polls
        return self._json(self.r_build(build), 201)

    def op_get_build(self, request: Request, guid: str) -> Response:
        build = self._get("builds", guid)
        if build["state"] == "STAGING":
            if self.build_countdown[guid] <= 0:
                if build["fail"]:
                    build.update(state="FAILED", error=build["fail"])
                    self.objects["droplets"][build["droplet"]]["state"] = "FAILED"
                else:
                    build["state"] = "STAGED"
                    self.objects["droplets"][build["droplet"]]["state"] = "STAGED"
            self.build_countdown[guid] -= 1
        return self._json(self.r_build(build))

    def op_get_droplet(self, request: Request, guid: str) -> Response:
        return self._json(self.r_droplet(self._get("droplets", guid)))

    # --- processes and deployments ------------------------------------------------------------

    def op_patch_process(self, request: Request, guid: str) -> Response:
        p = self._get("processes", guid)
        b = self.body(request)
        if "health_check" in b:
            hc = b["health_check"]
            if hc["data"].get("timeout", 0) > 1800:
                raise CapiError(422, "CF-UnprocessableEntity", "Health check timeout Maximum exceeded: max 1800s")
            p["health_check"] = {"type": hc["type"], "data": {k: v for k, v in hc["data"].items() if k in ("endpoint", "timeout", "invocation_timeout") and v is not None}}
        return self._json(self.r_process(p))

    def op_scale(self, request: Request, guid: str) -> Response:
        p = self._get("processes", guid)
        b = self.body(request)
        if b.get("memory_in_mb", 1) < 1:
            raise CapiError(422, "CF-UnprocessableEntity", "Memory in mb must be greater than 0")
        restart = ("memory_in_mb" in b and b["memory_in_mb"] != p["memory_in_mb"]) or ("disk_in_mb" in b and b["disk_in_mb"] != p["disk_in_mb"])
        p.update({k: b[k] for k in ("instances", "memory_in_mb", "disk_in_mb") if k in b})
        app = self.app(p["app"])
        if app["state"] == "STARTED":
            if restart:
                self._run(app)
            else:  # the count changes; running instances keep what they run
                current = p["running"][:1] or [{"droplet": app["droplet"], "env": dict(self.env[app["guid"]]), "memory": p["memory_in_mb"]}]
                p["running"] = (p["running"] + current * p["instances"])[: p["instances"]]
        return self._json(self.r_process(p), 202)

    def op_stats(self, request: Request, guid: str) -> Response:
        p = self._get("processes", guid)
        state = "CRASHED" if self.crash_instances else "RUNNING"
        stats = [
            {"type": "web", "index": i, "state": state, "details": "APP/PROC/WEB: Exited with status 1" if self.crash_instances else None, "host": "10.0.0.1", "instance_ports": [], "isolation_segment": None, "uptime": 1, "mem_quota": p["memory_in_mb"] * 1048576, "disk_quota": p["disk_in_mb"] * 1048576, "fds_quota": 16384, "usage": {}}
            for i in range(len(p["running"]))
        ]
        return self._json({"resources": stats})

    def op_create_deployment(self, request: Request) -> Response:
        b = self.body(request)
        app = self.app(b["relationships"]["app"]["data"]["guid"])
        droplet = (b.get("droplet") or {}).get("guid") or app["droplet"]
        self._get("droplets", droplet)
        previous = app["droplet"]
        app["droplet"] = droplet
        d = self._add("deployments", app=app["guid"], droplet=droplet, previous_droplet=previous, strategy=b.get("strategy", "rolling"), state="DEPLOYING", value="ACTIVE", reason="DEPLOYING")
        self.job_countdown[d["guid"]] = self.job_polls
        app["state"] = "STARTED"
        return self._json(self.r_deployment(d), 201)

    def op_get_deployment(self, request: Request, guid: str) -> Response:
        d = self._get("deployments", guid)
        if d["value"] == "ACTIVE":
            if self.job_countdown[guid] <= 0:
                d.update(state="DEPLOYED", value="FINALIZED", reason="DEPLOYED")
                self._run(self.app(d["app"]))  # every instance replaced, one at a time
            self.job_countdown[guid] -= 1
        return self._json(self.r_deployment(d))

    def op_get_job(self, request: Request, guid: str) -> Response:
        job = self._get("jobs", guid)
        if job["state"] == "PROCESSING":
            if self.job_countdown[guid] <= 0:
                self._finish_job(job)
            self.job_countdown[guid] -= 1
        return self._json(self.r_job(job))

    # --- roles --------------------------------------------------------------------------------

    def op_create_role(self, request: Request) -> Response:
        b = self.body(request)
        user = b["relationships"]["user"]["data"]
        space = b["relationships"]["space"]["data"]["guid"]
        if "guid" in user:  # UAA's user id: the Cloud Controller's user guid
            known = self.uaa_users.get(user["guid"])
            user_guid = user["guid"]
            name = f"{known['origin']}/{known['userName']}" if known else f"uaa/{user['guid']}"
        else:
            name = f"{user.get('origin', 'uaa')}/{user['username']}"
            user_guid = next((uid for uid, u in self.uaa_users.items() if f"{u['origin']}/{u['userName']}" == name), str(uuid.uuid5(uuid.NAMESPACE_URL, name)))
        if any(r["user"] == user_guid and r["space"] == space and r["type"] == b["type"] for r in self.objects["roles"].values()):
            raise CapiError(422, "CF-UnprocessableEntity", f"User '{name}' already has '{b['type']}' role in space.")
        role = self._add("roles", type=b["type"], space=space, user=user_guid, user_name=name)
        return self._json(self.r_role(role), 201)

    def op_list_roles(self, request: Request) -> Response:
        items = self._filter("roles", request, space_guids="space", types="type", user_guids="user")
        page = self._page("/v3/roles", [self.r_role(o) for o in items])
        if "user" in request.args.get("include", "").split(","):
            page["included"] = {"users": [self.r_user(o) for o in {o["user"]: o for o in items}.values()]}
        return self._json(page)

    def r_user(self, role: dict[str, Any]) -> dict[str, Any]:
        """The user of a role, as `include=user` shows it (a UAA client has no origin nor username)."""
        origin, _, username = role["user_name"].partition("/")
        client = origin == "client"
        return {
            "guid": role["user"],
            "created_at": role["created_at"],
            "updated_at": role["updated_at"],
            "username": None if client else username,
            "presentation_name": username,
            "origin": None if client else origin,
            "metadata": {"labels": {}, "annotations": {}},
            "links": {"self": self.link(f"/v3/users/{role['user']}")},
        }

    def add_client_role(self, client_id: str, role_type: str, space: str | None = None) -> dict[str, Any]:
        """A role of a UAA client (a technical identity) in the space, as the platform sets one up."""
        # Cloud Foundry's user guid of a client is its id; the description wants a uuid: one derived from it
        return self._add("roles", type=role_type, space=space or self.space_guid, user=str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)), user_name=f"client/{client_id}")

    def op_get_role(self, request: Request, guid: str) -> Response:
        return self._json(self.r_role(self._get("roles", guid)))

    def op_delete_role(self, request: Request, guid: str) -> Response:
        self._get("roles", guid)
        return self._job("role.delete", lambda: self.objects["roles"].pop(guid, None), with_body=True)

    # --- features, spaces and the buildpack host -----------------------------------------------

    FEATURES = {"ssh": "Enable SSH for the app", "revisions": "Enable versioning for application deployments"}

    def op_get_app_feature(self, request: Request, guid: str, fname: str) -> Response:
        self.app(guid)
        enabled = self.app_features.get(guid, {}).get(fname, True)
        return self._json({"name": fname, "description": self.FEATURES[fname], "enabled": enabled})

    def op_patch_app_feature(self, request: Request, guid: str, fname: str) -> Response:
        self.app(guid)
        enabled = bool(self.body(request)["enabled"])
        self.app_features.setdefault(guid, {})[fname] = enabled
        return self._json({"name": fname, "description": self.FEATURES[fname], "enabled": enabled})

    def r_space(self, o: dict[str, Any]) -> dict[str, Any]:
        return {**self._base(o, "spaces"), "name": o["name"], "relationships": {"organization": {"data": {"guid": o["org"]}}, "quota": {"data": None}}}

    def op_create_space(self, request: Request) -> Response:
        b = self.body(request)
        org = b["relationships"]["organization"]["data"]["guid"]
        self._get("organizations", org)
        if any(x["name"].lower() == b["name"].lower() and x["org"] == org for x in self.objects["spaces"].values()):
            raise CapiError(422, "CF-UnprocessableEntity", f"Organization '{org}' already contains a space with name '{b['name']}'.")
        space = self._add("spaces", name=b["name"], org=org)
        space["metadata"] = _meta(b)
        return self._json(self.r_space(space), 201)

    def op_get_space(self, request: Request, guid: str) -> Response:
        return self._json(self.r_space(self._get("spaces", guid)))

    def op_patch_space(self, request: Request, guid: str) -> Response:
        space = self._get("spaces", guid)
        b = self.body(request)
        if "metadata" in b:
            space["metadata"] = _meta(b)
        return self._json(self.r_space(space))

    def op_delete_space(self, request: Request, guid: str) -> Response:
        self._get("spaces", guid)
        return self._job("space.delete", lambda: self.objects["spaces"].pop(guid, None))

    def op_get_space_feature(self, request: Request, guid: str, fname: str) -> Response:
        self._get("spaces", guid)
        return self._json({"name": fname, "description": "Enable SSH for the space", "enabled": self.space_features.get(guid, {}).get(fname, True)})

    def op_patch_space_feature(self, request: Request, guid: str, fname: str) -> Response:
        self._get("spaces", guid)
        enabled = bool(self.body(request)["enabled"])
        self.space_features.setdefault(guid, {})[fname] = enabled
        return self._json({"name": fname, "description": "Enable SSH for the space", "enabled": enabled})

    def serve_buildpack(self, bits: bytes, name: str = "cf-mendix-buildpack.zip") -> str:
        """Serve a buildpack zip; its URL pinned by digest (`...#sha256=<hex>`)."""
        import hashlib

        self.buildpacks[name] = bits
        return f"{self.url}/buildpacks/{name}#sha256={hashlib.sha256(bits).hexdigest()}"

    def op_buildpack(self, request: Request, name: str) -> Response:
        if name not in self.buildpacks:
            return Response("not found", status=404)
        return Response(self.buildpacks[name], mimetype="application/zip")

    # --- routes and services ------------------------------------------------------------------

    def op_create_route(self, request: Request) -> Response:
        b = self.body(request)
        domain = b["relationships"]["domain"]["data"]["guid"]
        self._get("domains", domain)
        if any(r["host"] == b.get("host") and r["domain"] == domain for r in self.objects["routes"].values()):
            raise CapiError(422, "CF-UnprocessableEntity", f"Route already exists with host '{b.get('host')}' for domain '{self.objects['domains'][domain]['name']}'.")
        r = self._add("routes", host=b.get("host", ""), domain=domain, space=b["relationships"]["space"]["data"]["guid"], destinations=[])
        return self._json(self.r_route(r), 201)

    def op_get_route(self, request: Request, guid: str) -> Response:
        return self._json(self.r_route(self._get("routes", guid)))

    def op_delete_route(self, request: Request, guid: str) -> Response:
        self._get("routes", guid)
        return self._job("route.delete", lambda: self.objects["routes"].pop(guid, None))

    def op_add_destinations(self, request: Request, guid: str) -> Response:
        r = self._get("routes", guid)
        for d in self.body(request)["destinations"]:
            self.app(d["app"]["guid"])
            r["destinations"].append({"guid": _guid(), "app": {"guid": d["app"]["guid"], "process": {"type": "web"}}, "weight": None, "port": 8080, "protocol": "http1"})
        return self._json({"destinations": r["destinations"], "links": {"self": self.link(f"/v3/routes/{guid}/destinations"), "route": self.link(f"/v3/routes/{guid}")}})

    def op_list_service_instances(self, request: Request) -> Response:
        items = [o for o in self._filter("service_instances", request, names="name", space_guids="space", guids="guid") if o["state"] != "deleted"]
        return self._json(self._page("/v3/service_instances", [self.r_si(o) for o in items]))

    def add_user_provided(self, name: str) -> dict[str, Any]:
        """An existing (user-provided) service instance, as `cf cups` would leave it."""
        return self._add("service_instances", name=name, type="user-provided", space=self.space_guid, state="succeeded")

    def op_create_service_instance(self, request: Request) -> Response:
        b = self.body(request)
        plan = b["relationships"]["service_plan"]["data"]["guid"]
        self._get("service_plans", plan)
        if any(s["name"] == b["name"] for s in self.objects["service_instances"].values()):
            raise CapiError(422, "CF-UnprocessableEntity", f"The service instance name is taken: {b['name']}.")
        si = self._add("service_instances", name=b["name"], type="managed", space=b["relationships"]["space"]["data"]["guid"], plan=plan, state="in progress", parameters=b.get("parameters", {}))

        def provisioned() -> None:
            si["state"] = "succeeded"

        return self._job("service_instance.create", provisioned)

    def op_patch_service_instance(self, request: Request, guid: str) -> Response:
        si = self._get("service_instances", guid)
        b = self.body(request)
        plan = ((b.get("relationships") or {}).get("service_plan") or {}).get("data", {}).get("guid")

        def updated() -> None:
            if plan:
                si["plan"] = plan
            si["parameters"] = b.get("parameters", si.get("parameters"))

        return self._job("service_instance.update", updated)

    def op_delete_service_instance(self, request: Request, guid: str) -> Response:
        self._get("service_instances", guid)
        return self._job("service_instance.delete", lambda: self.objects["service_instances"].pop(guid, None))

    def op_create_binding(self, request: Request) -> Response:
        b = self.body(request)
        if b.get("type") == "key":
            return self._create_key(b)
        app = b["relationships"]["app"]["data"]["guid"]
        si = self._get("service_instances", b["relationships"]["service_instance"]["data"]["guid"])
        self.app(app)
        if any(x["app"] == app and x["service_instance"] == si["guid"] for x in self.objects["service_credential_bindings"].values()):
            raise CapiError(422, "CF-UnprocessableEntity", "The app is already bound to the service instance.")
        binding = {"type": "app", "app": app, "service_instance": si["guid"]}
        if si["type"] == "user-provided":
            o = self._add("service_credential_bindings", **binding)
            return self._json({**self._base(o, "service_credential_bindings"), "type": "app", "last_operation": {"type": "create", "state": "succeeded", "description": "", "created_at": o["created_at"], "updated_at": o["updated_at"]}}, 201)
        return self._job("service_bindings.create", lambda: self._add("service_credential_bindings", **binding))

    def _create_key(self, b: dict[str, Any]) -> Response:
        if self.refuse_keys:
            raise CapiError(403, "CF-NotAuthorized", "You are not authorized to perform the requested action", 10003)
        si = self._get("service_instances", b["relationships"]["service_instance"]["data"]["guid"])
        if si["type"] == "user-provided":
            raise CapiError(422, "CF-UnprocessableEntity", "Service credential bindings of type key are not supported for user-provided service instances.")
        if any(x.get("name") == b.get("name") and x["service_instance"] == si["guid"] for x in self.objects["service_credential_bindings"].values()):
            raise CapiError(422, "CF-UnprocessableEntity", f"The binding name is invalid. Key binding names must be unique. The service instance already has a key binding with name '{b.get('name')}'.")
        key = {"type": "key", "name": b.get("name"), "app": None, "service_instance": si["guid"], "credentials": dict(self.credentials.get(si["name"], {}))}
        if self.fail_key_creates > 0:
            self.fail_key_creates -= 1
            self._add("service_credential_bindings", **key, metadata=_meta(b))  # made, then the job fails
            return self._job("service_keys.create", fail="Service broker error: timed out after creating the key")
        return self._job("service_keys.create", lambda: self._add("service_credential_bindings", **key, metadata=_meta(b)))

    def r_binding(self, o: dict[str, Any]) -> dict[str, Any]:
        d = self._base(o, "service_credential_bindings")
        d.update(
            type=o.get("type", "app"),
            name=o.get("name"),
            last_operation={"type": "create", "state": "succeeded", "description": "", "created_at": o["created_at"], "updated_at": o["updated_at"]},
            relationships={"service_instance": {"data": {"guid": o["service_instance"]}}, **({"app": {"data": {"guid": o["app"]}}} if o.get("app") else {})},
        )
        d["links"]["details"] = self.link(f"/v3/service_credential_bindings/{o['guid']}/details")
        return d

    def op_list_bindings(self, request: Request) -> Response:
        items = self._filter("service_credential_bindings", request, names="name", service_instance_guids="service_instance", type="type", app_guids="app")
        return self._json(self._page("/v3/service_credential_bindings", [self.r_binding(o) for o in items]))

    def op_binding_details(self, request: Request, guid: str) -> Response:
        o = self._get("service_credential_bindings", guid)
        return self._json({"credentials": o.get("credentials") or {}})

    def op_delete_binding(self, request: Request, guid: str) -> Response:
        self._get("service_credential_bindings", guid)
        if self.fail_key_deletes > 0:
            self.fail_key_deletes -= 1
            return self._job("service_keys.delete", fail="Service broker error: the broker could not unbind")
        return self._job("service_keys.delete", lambda: self.objects["service_credential_bindings"].pop(guid, None))

    def op_instance_credentials(self, request: Request, guid: str) -> Response:
        si = self._get("service_instances", guid)
        if si["type"] != "user-provided":
            raise CapiError(404, "CF-ResourceNotFound", "Service instance not found", 10010)
        return self._json(dict(self.credentials.get(si["name"], {})))

    def _shares(self, guid: str) -> Response:
        si = self._get("service_instances", guid)
        path = f"/v3/service_instances/{guid}/relationships/shared_spaces"
        return self._json({"data": [{"guid": g} for g in si.get("shared", [])], "links": {"self": self.link(path)}})

    def op_list_shares(self, request: Request, guid: str) -> Response:
        """Only the spaces' guids, as the documentation's example answers (without `fields`)."""
        if self.refuse_share_reads:
            raise CapiError(404, "CF-ResourceNotFound", "Service instance not found", 10010)
        return self._shares(guid)

    def op_share(self, request: Request, guid: str) -> Response:
        si = self._get("service_instances", guid)
        for d in self.body(request)["data"]:
            self._get("spaces", d["guid"])
            if d["guid"] == si["space"]:
                raise CapiError(422, "CF-UnprocessableEntity", f"Unable to share service instance {si['name']} with space {d['guid']}. Service instances cannot be shared into the space where they were created.")
            si.setdefault("shared", [])
            if d["guid"] not in si["shared"]:
                si["shared"].append(d["guid"])
        return self._shares(guid)

    def op_unshare(self, request: Request, guid: str, space: str) -> Response:
        si = self._get("service_instances", guid)
        if space not in si.get("shared", []):
            raise CapiError(422, "CF-UnprocessableEntity", f"Unable to unshare service instance from space {space}. Ensure the space exists and the service instance has been shared to this space.")
        si["shared"].remove(space)
        return Response(status=204)

    def keys(self) -> list[dict[str, Any]]:
        """The service keys that exist now."""
        return [o for o in self.objects["service_credential_bindings"].values() if o.get("type") == "key"]


def _meta(b: dict[str, Any]) -> dict[str, Any]:
    m = b.get("metadata") or {}
    return {"labels": dict(m.get("labels") or {}), "annotations": dict(m.get("annotations") or {})}


def _explain(e: Exception) -> str:
    parts = [f"{type(e).__name__}: {e}"]
    for inner in getattr(e, "schema_errors", None) or []:
        parts.append(f"  {list(inner.absolute_path)}: {inner.message}")
    cause = e.__cause__
    while cause is not None:
        parts.append(f"  caused by {type(cause).__name__}: {cause}")
        for inner in getattr(cause, "schema_errors", None) or []:
            parts.append(f"    {list(inner.absolute_path)}: {inner.message}")
        cause = cause.__cause__
    return "\n".join(parts)


@contextlib.contextmanager
def serving(mp: Any) -> Iterator[CapiDouble]:
    """A running double with client credentials set in the environment through `mp` (a pytest
    MonkeyPatch); afterwards, every request and response must have matched the OpenAPI description."""
    double = CapiDouble().start()
    for var in ("CF_USERNAME", "CF_PASSWORD", "CF_ORIGIN"):
        mp.delenv(var, raising=False)
    mp.setenv("CF_CLIENT_ID", "mxinfra-ci")
    mp.setenv("CF_CLIENT_SECRET", "ci-secret")
    mp.setenv("CF_UAA_URL", double.url)
    mp.setenv("MXINFRA_CF_POLL_SECONDS", "0")
    try:
        yield double
    finally:
        double.stop()
    assert double.violations == [], "\n".join(double.violations)
