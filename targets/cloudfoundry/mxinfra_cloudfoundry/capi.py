"""A thin client of the Cloud Controller v3 API (CAPI), only the calls this target makes.

Why its own: the PyPI `cloudfoundry-client` speaks mostly v2 and lacks v3 builds, deployments, package
upload and roles, which are exactly the steps of a Mendix deploy. This module is `requests` plus the
v3 conventions: bearer tokens from `uaa.TokenSource` (a 401 invalidates the token and the request is
sent once more), `{"errors": [...]}` bodies turned into `CapiError` with the API's own detail,
pagination followed, asynchronous jobs (`202` + `Location: /v3/jobs/<guid>`) polled to `COMPLETE`,
and every wait bounded by a timeout that says what it waited for.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

from .uaa import TokenSource

DEFAULT_POLL_SECONDS = 2.0
UPLOAD_ATTEMPTS = 3


class CapiError(Exception):
    """The Cloud Controller refused a request, or an asynchronous step failed or timed out."""

    def __init__(self, message: str, status: int | None = None, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []


class StagingFailed(CapiError):
    """A build ended FAILED: the app keeps its current droplet."""


class CapiTimeout(CapiError):
    """An asynchronous step did not finish in time."""


class DigestMismatch(CapiError):
    """The bytes about to be used are not the ones that were checked (a package or a buildpack changed)."""


def read_hashed(path: Path) -> tuple[bytes, str]:
    """The file's bytes and the sha256 of exactly those bytes (read once: what is uploaded is what was hashed)."""
    digest = hashlib.sha256()
    data = bytearray()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            data += chunk
    return bytes(data), digest.hexdigest()


def download_sha256(url: str, timeout: float) -> str:
    """The sha256 of what `url` serves now (streamed; no Cloud Foundry token is sent to it)."""
    digest = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            for chunk in r.iter_content(1 << 20):
                digest.update(chunk)
    except requests.RequestException as e:
        raise CapiError(f"downloading {url} to check its digest failed: {e}") from None
    return digest.hexdigest()


def _poll_seconds() -> float:
    try:
        return float(os.environ.get("MXINFRA_CF_POLL_SECONDS", DEFAULT_POLL_SECONDS))
    except ValueError:
        return DEFAULT_POLL_SECONDS


class Client:
    """One Cloud Controller, authenticated by `tokens`."""

    def __init__(self, api: str, tokens: TokenSource, session: requests.Session | None = None, poll_seconds: float | None = None, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api.rstrip("/")
        self.tokens = tokens
        self.session = session or requests.Session()
        self.poll_seconds = _poll_seconds() if poll_seconds is None else poll_seconds
        self._clock = clock
        self._sleep = sleep

    @classmethod
    def from_environment(cls, api: str) -> Client:
        """A client with the credentials of the process environment (see `uaa`)."""
        session = requests.Session()
        return cls(api, TokenSource.from_environment(api, session=session), session)

    @classmethod
    def connect(cls, api: str) -> Client:
        """A client with the operation's credentials: the stack config's (`uaa.configure_from_stack`), else the environment's."""
        from .uaa import resolve_credentials

        session = requests.Session()
        return cls(api, TokenSource.from_credentials(api, resolve_credentials(), session), session)

    # --- transport ----------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None, files: Any = None, timeout: float = 120) -> requests.Response:
        """Send one request (again once after a 401 with a fresh token); CapiError unless 2xx."""
        url = path if path.startswith("http") else f"{self.api}{path}"
        for attempt in (1, 2):
            headers = {"Authorization": f"bearer {self.tokens.token()}", "Accept": "application/json"}
            r = self.session.request(method, url, json=json, params=params, files=files, headers=headers, timeout=timeout)
            if r.status_code == 401 and attempt == 1:
                self.tokens.invalidate()
                if files is not None:
                    for f in _file_objects(files):
                        f.seek(0)
                continue
            break
        if r.status_code >= 400:
            raise _error(method, path, r)
        return r

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """GET a resource as JSON."""
        return self.request("GET", path, params=params or None).json()

    def post(self, path: str, body: Any = None) -> requests.Response:
        """POST a JSON body."""
        return self.request("POST", path, json=body if body is not None else {})

    def patch(self, path: str, body: Any) -> dict[str, Any]:
        """PATCH a JSON body; the updated resource."""
        return self.request("PATCH", path, json=body).json()

    def delete(self, path: str, job_timeout: float) -> None:
        """DELETE, waiting for the deletion job; a resource already gone counts as deleted."""
        try:
            r = self.request("DELETE", path)
        except CapiError as e:
            if e.status == 404:
                return
            raise
        self.wait_job_of(r, job_timeout, f"deleting {path}")

    def list(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every resource of a paginated list."""
        params = {k: v for k, v in params.items() if v is not None}
        page: dict[str, Any] | None = self.request("GET", path, params=params).json()
        while page is not None:
            yield from page.get("resources", [])
            nxt = ((page.get("pagination") or {}).get("next") or {}).get("href")
            page = self.request("GET", nxt).json() if nxt else None

    def first(self, path: str, what: str, **params: Any) -> dict[str, Any]:
        """The first resource of a filtered list; CapiError naming `what` when there is none."""
        for item in self.list(path, **params):
            return item
        raise CapiError(f"{what} not found", 404)

    # --- waiting ------------------------------------------------------------------------------

    def wait(self, what: str, fetch: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], failed: Callable[[dict[str, Any]], str | None], timeout: float) -> dict[str, Any]:
        """Poll `fetch` until `done`; CapiError with `failed`'s message, CapiTimeout after `timeout` seconds."""
        deadline = self._clock() + timeout
        while True:
            state = fetch()
            problem = failed(state)
            if problem:
                raise CapiError(f"{what} failed: {problem}")
            if done(state):
                return state
            if self._clock() >= deadline:
                raise CapiTimeout(f"{what} did not finish within {timeout:g} seconds (last state: {_state_of(state)})")
            self._sleep(self.poll_seconds)

    def wait_job_of(self, response: requests.Response, timeout: float, what: str) -> None:
        """Wait for the job a 202 names (Location header, else the body's job link); nothing for other codes."""
        if response.status_code != 202:
            return
        location = response.headers.get("Location")
        if not location:
            try:
                location = response.json()["links"]["self"]["href"] if response.content else None
            except (ValueError, KeyError, TypeError):
                location = None
        if not location or "/v3/jobs/" not in location:
            return
        self.wait_job(location, timeout, what)

    def wait_job(self, location: str, timeout: float, what: str) -> dict[str, Any]:
        """Poll a job to COMPLETE; its errors become a CapiError."""
        return self.wait(
            what,
            lambda: self.request("GET", location).json(),
            lambda j: j["state"] == "COMPLETE",
            lambda j: "; ".join(e.get("detail", "") for e in j.get("errors") or []) or "the job failed" if j["state"] == "FAILED" else None,
            timeout,
        )

    # --- where --------------------------------------------------------------------------------

    def space_guid(self, where: Mapping[str, Any]) -> str:
        """The space named by org/orgGuid and space/spaceGuid."""
        if where.get("spaceGuid"):
            return str(where["spaceGuid"])
        org = where.get("orgGuid") or self.first("/v3/organizations", f"organization {where.get('org')!r}", names=where.get("org"))["guid"]
        return self.first("/v3/spaces", f"space {where.get('space')!r} in organization {where.get('org') or org}", names=where.get("space"), organization_guids=org)["guid"]

    def org_guid(self, where: Mapping[str, Any]) -> str:
        """The organization named by org/orgGuid."""
        return str(where.get("orgGuid") or self.first("/v3/organizations", f"organization {where.get('org')!r}", names=where.get("org"))["guid"])

    def find_space(self, org: str, name: str) -> dict[str, Any] | None:
        """The space called `name` in the organization, or None."""
        return next(self.list("/v3/spaces", names=name, organization_guids=org), None)

    def create_space(self, org: str, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """A new space in the organization."""
        return self.post("/v3/spaces", {"name": name, "relationships": {"organization": {"data": {"guid": org}}}, "metadata": dict(metadata)}).json()

    def set_space_feature(self, space: str, feature: str, enabled: bool) -> None:
        """Enable or disable a space feature (`ssh`: whether anyone may SSH into the space's apps)."""
        self.patch(f"/v3/spaces/{space}/features/{feature}", {"enabled": enabled})

    def space_feature(self, space: str, feature: str) -> bool:
        """Whether a space feature is enabled."""
        return bool(self.get(f"/v3/spaces/{space}/features/{feature}")["enabled"])

    # --- apps ---------------------------------------------------------------------------------

    def find_app(self, space: str, name: str) -> dict[str, Any] | None:
        """The app called `name` in the space, or None."""
        return next(self.list("/v3/apps", names=name, space_guids=space), None)

    def create_app(self, space: str, name: str, buildpack: str, stack: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """A stopped app with the buildpack lifecycle."""
        body = {
            "name": name,
            "relationships": {"space": {"data": {"guid": space}}},
            "lifecycle": {"type": "buildpack", "data": {"buildpacks": [buildpack], "stack": stack}},
            "state": "STOPPED",
            "metadata": dict(metadata),
        }
        return self.post("/v3/apps", body).json()

    def update_app(self, guid: str, buildpack: str, stack: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The app's lifecycle (buildpack, stack) and metadata."""
        return self.patch(f"/v3/apps/{guid}", {"lifecycle": {"type": "buildpack", "data": {"buildpacks": [buildpack], "stack": stack}}, "metadata": dict(metadata)})

    def set_environment(self, guid: str, variables: Mapping[str, str], remove: list[str]) -> None:
        """Set the app's user-provided variables; `remove` are set to null (deleted)."""
        var: dict[str, Any] = {k: None for k in remove}
        var.update(variables)
        self.patch(f"/v3/apps/{guid}/environment_variables", {"var": var})

    def start(self, guid: str) -> None:
        """Start the app (its current droplet)."""
        self.post(f"/v3/apps/{guid}/actions/start")

    def stop(self, guid: str) -> None:
        """Stop every instance of the app."""
        self.post(f"/v3/apps/{guid}/actions/stop")

    def upload_package(self, app: str, bits: Path | bytes, timeout: float, *, sha256: str | None = None, name: str | None = None, metadata: Mapping[str, Any] | None = None) -> str:
        """A bits package of the file (or bytes) `bits`, uploaded (retried when the connection drops) and READY.

        The bytes are read and hashed once, and exactly those bytes are sent: with `sha256` (the digest the
        plan and the promotion gate checked) other bytes are refused before anything is uploaded, so a
        package replaced on disk after the gate hashed it never reaches the platform. `metadata`: the
        package's labels and annotations (a release names the package it uploads, running.py)."""
        if isinstance(bits, Path):
            name = name or bits.name
            data, digest = read_hashed(bits)
        else:
            data, digest = bytes(bits), hashlib.sha256(bits).hexdigest()
        name = name or "package.zip"
        if sha256 is not None and digest != sha256:
            raise DigestMismatch(f"{name} is not the package that was checked: its bytes hash to sha256:{digest}, the deployment recorded sha256:{sha256} (was the file replaced after the plan?); nothing was uploaded")
        body: dict[str, Any] = {"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}
        if metadata:
            body["metadata"] = dict(metadata)
        pkg = self.post("/v3/packages", body).json()
        guid = pkg["guid"]
        last: Exception | None = None
        for _attempt in range(UPLOAD_ATTEMPTS):
            try:
                self.request("POST", f"/v3/packages/{guid}/upload", files={"bits": (name, data, "application/zip")}, timeout=timeout)
                last = None
                break
            except requests.ConnectionError as e:  # a dropped upload: the same package takes the same bits again
                last = e
        if last is not None:
            raise CapiError(f"uploading {name} to package {guid} failed {UPLOAD_ATTEMPTS} times: {last}")
        self.wait(
            f"package {guid}",
            lambda: self.get(f"/v3/packages/{guid}"),
            lambda p: p["state"] == "READY",
            lambda p: (p.get("data") or {}).get("error") or p["state"] if p["state"] in ("FAILED", "EXPIRED") else None,
            timeout,
        )
        return guid

    def stage(self, package: str, timeout: float, memory_mb: int | None = None, disk_mb: int | None = None) -> str:
        """Build the package; the droplet's guid when STAGED, StagingFailed with the build's error otherwise."""
        body: dict[str, Any] = {"package": {"guid": package}}
        if memory_mb:
            body["staging_memory_in_mb"] = memory_mb
        if disk_mb:
            body["staging_disk_in_mb"] = disk_mb
        build = self.post("/v3/builds", body).json()
        try:
            build = self.wait(
                f"staging build {build['guid']}",
                lambda: self.get(f"/v3/builds/{build['guid']}"),
                lambda b: b["state"] == "STAGED",
                lambda b: (b.get("error") or "no error given") if b["state"] == "FAILED" else None,
                timeout,
            )
        except CapiTimeout:
            raise
        except CapiError as e:
            raise StagingFailed(f"{e} (the app keeps running its current droplet)") from None
        return build["droplet"]["guid"]

    def set_droplet(self, app: str, droplet: str) -> None:
        """Make `droplet` the app's current droplet (takes effect at the next start)."""
        self.patch(f"/v3/apps/{app}/relationships/current_droplet", {"data": {"guid": droplet}})

    def current_droplet(self, app: str) -> str | None:
        """The app's current droplet guid, or None."""
        try:
            return self.get(f"/v3/apps/{app}/relationships/current_droplet").get("data", {}).get("guid")
        except CapiError as e:
            if e.status == 404:
                return None
            raise

    def set_app_metadata(self, guid: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The app's labels and annotations (PATCH /v3/apps/:guid with metadata only)."""
        return self.patch(f"/v3/apps/{guid}", {"metadata": dict(metadata)})

    def web_process(self, app: str) -> dict[str, Any]:
        """The app's web process."""
        return self.get(f"/v3/apps/{app}/processes/web")

    def configure_process(self, process: str, endpoint: str | None, timeout: int, invocation_timeout: int | None = None, check: str = "http") -> None:
        """A health check: HTTP on `endpoint` (the runtime), or `process` (a worker without a route), with a start-up `timeout`."""
        data: dict[str, Any] = {"timeout": timeout}
        if check == "http":
            data.update(endpoint=endpoint, invocation_timeout=invocation_timeout)
        self.patch(f"/v3/processes/{process}", {"health_check": {"type": check, "data": data}})

    def set_app_feature(self, app: str, feature: str, enabled: bool) -> None:
        """Enable or disable an app feature (`ssh`, `revisions`)."""
        self.patch(f"/v3/apps/{app}/features/{feature}", {"enabled": enabled})

    def app_feature(self, app: str, feature: str) -> bool:
        """Whether an app feature is enabled."""
        return bool(self.get(f"/v3/apps/{app}/features/{feature}")["enabled"])

    def scale(self, process: str, instances: int | None = None, memory_mb: int | None = None, disk_mb: int | None = None) -> None:
        """Scale the process (memory and disk restart its instances; the instance count does not)."""
        body = {k: v for k, v in (("instances", instances), ("memory_in_mb", memory_mb), ("disk_in_mb", disk_mb)) if v is not None}
        self.post(f"/v3/processes/{process}/actions/scale", body)

    def wait_running(self, process: str, instances: int, timeout: float) -> None:
        """Until `instances` instances run; a crash is an error."""
        if instances == 0:
            return
        self.wait(
            f"starting process {process}",
            lambda: self.get(f"/v3/processes/{process}/stats"),
            lambda s: sum(1 for i in s["resources"] if i["state"] == "RUNNING") >= instances,
            lambda s: next((f"instance {i['index']} crashed: {i.get('details') or 'no details'}" for i in s["resources"] if i["state"] == "CRASHED"), None),
            timeout,
        )

    def wait_stopped(self, process: str, timeout: float) -> None:
        """Until no instance of the process runs or starts (a stop is asynchronous)."""
        self.wait(
            f"stopping process {process}",
            lambda: self.get(f"/v3/processes/{process}/stats"),
            lambda s: not any(i.get("state") in ("RUNNING", "STARTING") for i in s.get("resources") or []),
            lambda s: None,
            timeout,
        )

    def deploy(self, app: str, droplet: str, timeout: float, max_in_flight: int = 1) -> dict[str, Any]:
        """A rolling deployment of `droplet`, waited for until FINALIZED with reason DEPLOYED."""
        d = self.post("/v3/deployments", {"droplet": {"guid": droplet}, "strategy": "rolling", "options": {"max_in_flight": max_in_flight}, "relationships": {"app": {"data": {"guid": app}}}}).json()
        return self.wait(
            f"deployment {d['guid']}",
            lambda: self.get(f"/v3/deployments/{d['guid']}"),
            lambda x: x["status"]["value"] == "FINALIZED",
            lambda x: f"ended {x['status'].get('reason')}" if x["status"]["value"] == "FINALIZED" and x["status"].get("reason") != "DEPLOYED" else None,
            timeout,
        )

    def delete_app(self, guid: str, job_timeout: float) -> None:
        """Delete the app (its processes, packages, droplets and bindings go with it)."""
        self.delete(f"/v3/apps/{guid}", job_timeout)

    # --- routes and services ------------------------------------------------------------------

    def create_route(self, space: str, domain: str, host: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The route host.domain in the space."""
        dom = self.first("/v3/domains", f"domain {domain!r}", names=domain)
        return self.post("/v3/routes", {"host": host, "relationships": {"domain": {"data": {"guid": dom["guid"]}}, "space": {"data": {"guid": space}}}, "metadata": dict(metadata)}).json()

    def map_route(self, route: str, app: str) -> None:
        """Send the route's traffic to the app's web process."""
        self.post(f"/v3/routes/{route}/destinations", {"destinations": [{"app": {"guid": app, "process": {"type": "web"}}}]})

    def create_service_instance(self, space: str, name: str, offering: str, plan: str, parameters: Mapping[str, Any], metadata: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """A managed service instance of offering/plan, provisioned (its job COMPLETE)."""
        p = self.first("/v3/service_plans", f"plan {plan!r} of offering {offering!r} (is it in the marketplace of this space?)", names=plan, service_offering_names=offering, space_guids=space)
        body = {
            "type": "managed",
            "name": name,
            "parameters": dict(parameters),
            "relationships": {"space": {"data": {"guid": space}}, "service_plan": {"data": {"guid": p["guid"]}}},
            "metadata": dict(metadata),
        }
        r = self.post("/v3/service_instances", body)
        self.wait_job_of(r, timeout, f"provisioning service instance {name}")
        return self.find_service_instance(space, name) or {}

    def find_service_instance(self, space: str, name: str) -> dict[str, Any] | None:
        """The service instance called `name` in the space, or None."""
        return next(self.list("/v3/service_instances", names=name, space_guids=space), None)

    def bind(self, app: str, instance: str, timeout: float) -> None:
        """An app binding of the service instance (for an existing one, a 422 'already bound' is kept)."""
        try:
            r = self.post("/v3/service_credential_bindings", {"type": "app", "relationships": {"app": {"data": {"guid": app}}, "service_instance": {"data": {"guid": instance}}}})
        except CapiError as e:
            if e.status == 422 and "already bound" in str(e):
                return
            raise
        self.wait_job_of(r, timeout, f"binding service instance {instance}")

    def create_key(self, instance: str, name: str, timeout: float, metadata: Mapping[str, Any] | None = None) -> str:
        """A service key of the (managed) service instance, created by its broker; the key's guid."""
        body = {"type": "key", "name": name, "relationships": {"service_instance": {"data": {"guid": instance}}}, "metadata": dict(metadata or {})}
        r = self.post("/v3/service_credential_bindings", body)
        self.wait_job_of(r, timeout, f"creating service key {name}")
        return str(self.first("/v3/service_credential_bindings", f"service key {name!r}", names=name, service_instance_guids=instance, type="key")["guid"])

    def binding_credentials(self, guid: str) -> dict[str, Any]:
        """The credentials a service key (or app binding) holds."""
        return dict(self.get(f"/v3/service_credential_bindings/{guid}/details").get("credentials") or {})

    def instance_credentials(self, guid: str) -> dict[str, Any]:
        """The credentials of a user-provided service instance (a managed one has keys instead)."""
        return dict(self.get(f"/v3/service_instances/{guid}/credentials"))

    def delete_binding(self, guid: str, timeout: float) -> None:
        """Delete a service key or binding, waiting for the broker; one already gone counts as deleted."""
        self.delete(f"/v3/service_credential_bindings/{guid}", timeout)

    # --- roles --------------------------------------------------------------------------------

    def create_role(self, space: str, role_type: str, username: str, origin: str) -> dict[str, Any]:
        """A space role for the user `username` of identity provider `origin`."""
        body = {"type": role_type, "relationships": {"space": {"data": {"guid": space}}, "user": {"data": {"username": username, "origin": origin}}}}
        return self.post("/v3/roles", body).json()

    def create_role_for_guid(self, space: str, role_type: str, user_guid: str) -> tuple[dict[str, Any], bool]:
        """A space role for the user with `user_guid` (UAA's user id); (role, created). A role the user
        already has (a 422) is returned with created False: someone else owns it."""
        body = {"type": role_type, "relationships": {"space": {"data": {"guid": space}}, "user": {"data": {"guid": user_guid}}}}
        try:
            return self.post("/v3/roles", body).json(), True
        except CapiError as e:
            if e.status != 422:
                raise
            existing = next(self.list("/v3/roles", space_guids=space, types=role_type, user_guids=user_guid), None)
            if existing is None:
                raise
            return existing, False

    def scim(self) -> Any:
        """UAA's SCIM endpoints with this client's tokens."""
        from .uaa import Scim

        return Scim(self.tokens)

    def get_role(self, guid: str) -> dict[str, Any] | None:
        """The role, or None when it is gone."""
        try:
            return self.get(f"/v3/roles/{guid}")
        except CapiError as e:
            if e.status == 404:
                return None
            raise

    def delete_role(self, guid: str, timeout: float) -> None:
        """Remove the role (a job)."""
        self.delete(f"/v3/roles/{guid}", timeout)

    def space_roles(self, space: str) -> list[dict[str, Any]]:
        """Every role in the space with its user: `{guid, type, created_at, user, username, origin}`
        (username and origin None for a UAA client)."""
        params: dict[str, Any] | None = {"space_guids": space, "include": "user"}
        path = "/v3/roles"
        out = []
        while path:
            page = self.request("GET", path, params=params).json()
            users = {u["guid"]: u for u in (page.get("included") or {}).get("users") or []}
            for r in page.get("resources", []):
                uid = r["relationships"]["user"]["data"]["guid"]
                u = users.get(uid) or {}
                out.append({"guid": r["guid"], "type": r["type"], "created_at": r.get("created_at"), "user": uid, "username": u.get("username"), "origin": u.get("origin")})
            path = ((page.get("pagination") or {}).get("next") or {}).get("href")
            params = None  # the next link carries the query
        return out


def _file_objects(files: Any) -> list[Any]:
    out = []
    for v in (files.values() if isinstance(files, dict) else []):
        if isinstance(v, tuple) and len(v) > 1 and hasattr(v[1], "seek"):
            out.append(v[1])
    return out


def _state_of(state: Mapping[str, Any]) -> str:
    if "state" in state:
        return str(state["state"])
    if "status" in state:
        return str(state["status"])
    return "unknown"


def _error(method: str, path: str, r: requests.Response) -> CapiError:
    try:
        body = r.json()
    except ValueError:
        body = {}
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors and isinstance(body, dict) and "detail" in body:
        errors = [body]
    detail = "; ".join(f"{e.get('title', '')}: {e.get('detail', '')}".strip(": ") for e in errors or []) or (r.text[:200] or r.reason)
    return CapiError(f"{method} {path} -> {r.status_code}: {detail}", r.status_code, errors or [])
