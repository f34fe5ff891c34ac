"""Pulumi dynamic resources over the Cloud Controller v3 API: space, app, service instance, route, space
role, the production grants' report (GrantExpiry) and the app that expires them (GrantExpiryApp).

Inputs are stored in the Pulumi state, so none carries a credential: every operation builds its client
when it runs, from the stack config the engine hands the provider in `configure` (kept in process memory
by `uaa.configure_from_stack`, never an input nor an attribute of the pickled provider) or else from the
process environment (`uaa`). The app's secret variables arrive as a Pulumi secret input and
are declared an additional secret output, so the state holds them encrypted only.

The app's lifecycle (`AppProvider`):
- create: the buildpack's digest checked -> app (STOPPED, buildpack lifecycle) -> variables -> health
  check and scale -> SSH feature -> package upload (the bytes hashed as they are read, refused unless
  they are the recorded package) -> READY -> build (STAGED) -> current droplet -> service bindings ->
  routes -> start -> instances RUNNING. A failure after the app exists deletes it again, so a retry
  starts clean.
- update: a new package or buildpack is staged first; a failed staging raises before anything else
  changed (the running droplet and variables stay). Then `strategy()` decides: `stop-first` (a new model
  version, or memory/disk: the old instances stop before new ones start), `rolling` (the same model
  version with a new package, variables, services or health check: a CAPI rolling deployment),
  `scale` (only the instance count), `none`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pulumi.dynamic import ConfigureRequest, CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

WHERE = ("api", "org", "orgGuid", "space", "spaceGuid")
UNVERSIONED = "unversioned"


def package_bits(package: Mapping[str, Any]) -> tuple[Path | bytes, str]:
    """Where the bytes of a package input are, as the operation runs: the expiry app's bundle (built here),
    a project-relative path (resolved against the program's directory, as the engine runs providers in
    it), or a repository package fetched (and hash-checked) into the local cache."""
    if package.get("bundle"):
        from .expiry import bundle

        data, _ = bundle(package.get("extras") or ())
        return data, f"{package['bundle']}.zip"
    if package.get("path"):
        path = Path(str(package["path"]))
        return (path if path.is_absolute() else Path.cwd() / path), Path(str(package["path"])).name
    from mxinfra.governance.promotion import fetch_package, repository_url

    path, _ = fetch_package(f"sha256:{package['sha256']}", repository_url(str(package["repository"]), Path.cwd()))
    return path, path.name


def check_buildpack(reference: str, timeout: float) -> None:
    """A buildpack pinned by `#sha256=` must serve those bytes now: Cloud Foundry downloads it again when it
    stages and verifies nothing, so this check right before staging is the one a swapped release asset meets."""
    from .capi import DigestMismatch, download_sha256
    from .config import buildpack_digest, buildpack_url

    want = buildpack_digest(reference)
    if want is None:
        return
    got = download_sha256(buildpack_url(reference), timeout)
    if got != want:
        raise DigestMismatch(f"the buildpack {buildpack_url(reference)} now serves sha256:{got}, not the pinned sha256:{want}: refusing to stage with it (the release asset was replaced?)")


def _lifecycle(reference: str) -> str:
    """The buildpack as Cloud Foundry gets it: the URL without the digest, or a system buildpack's name."""
    from .config import buildpack_url

    return buildpack_url(reference)


def _health(c: Any, process: str, hc: Mapping[str, Any]) -> None:
    if hc.get("type", "http") == "http":
        c.configure_process(process, hc["endpoint"], int(hc["timeout"]), int(hc["invocationTimeout"]))
    else:
        c.configure_process(process, None, int(hc["timeout"]), None, check=str(hc["type"]))


def client_for(props: Mapping[str, Any]) -> Any:
    """A CAPI client for the resource's API, with the operation's credentials (stack config, else environment)."""
    from .capi import Client

    return Client.connect(str(props["api"]))


class CfProvider(ResourceProvider):
    """The providers' common base: the stack config's credentials, taken when the engine configures it."""

    def configure(self, req: ConfigureRequest) -> None:
        """Keep `mxinfra:cloudfoundry.credentials` of the stack config in this process (not in self: the
        provider object is pickled into every resource's inputs)."""
        from .uaa import configure_from_stack

        configure_from_stack(req.config)


def _timeouts(props: Mapping[str, Any]) -> dict[str, float]:
    t = dict(props.get("timeouts") or {})
    return {k: float(t.get(k, d)) for k, d in (("upload", 600), ("staging", 1200), ("start", 1200), ("job", 600))}


def _moved(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """The place keys that changed. The outputs carry the resolved `spaceGuid` even when the inputs name
    the space: then only the names count (else every up would replace what a space name placed)."""
    keys = [k for k in WHERE if k != "spaceGuid" or news.get("spaceGuid") is not None]
    return [k for k in keys if olds.get(k) != news.get(k)]


# --- the app --------------------------------------------------------------------------------------


def app_metadata(props: Mapping[str, Any], droplet: str | None = None, staged_from: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The app's metadata: the declared labels and annotations, and, once `droplet` is its current droplet,
    which droplet that is and the package and buildpack it was staged from (`staged_from`'s, default
    `props`'): what `mxinfra drift` and the release guard compare with the activity log (running.py)."""
    from .running import droplet_annotations

    m = props.get("metadata") or {}
    annotations = dict(m.get("annotations") or {})
    if droplet:
        src = staged_from if staged_from is not None else props
        annotations.update(droplet_annotations(droplet, str((src.get("package") or {}).get("sha256") or ""), str(src.get("buildpack") or "")))
    return {"labels": dict(m.get("labels") or {}), "annotations": annotations}


def _package_metadata(props: Mapping[str, Any]) -> dict[str, Any]:
    from .running import package_metadata

    return package_metadata(str(props["package"]["sha256"]))


APP_TRACKED = ("buildpack", "stack", "environment", "secretEnvironment", "package", "instances", "memoryMb", "diskMb", "healthCheck", "routes", "services", "ssh", "metadata", "timeouts")


def strategy(olds: Mapping[str, Any], news: Mapping[str, Any]) -> str:
    """How a change from `olds` to `news` goes out: stop-first, rolling, scale or none.

    Two model versions must never run at once (the new runtime migrates the schema): a new model version
    (or an `unversioned` one, which cannot be compared) stops the old instances first. Memory and disk
    changes restart every instance in place (CAPI scales them so), which is a stop-first too. Anything
    else the instances must restart for rolls, one instance at a time, as Mendix Cloud rolls
    configuration changes.
    """
    old_pkg, new_pkg = olds.get("package") or {}, news.get("package") or {}
    if old_pkg.get("sha256") != new_pkg.get("sha256"):
        old_mv, new_mv = old_pkg.get("modelVersion"), new_pkg.get("modelVersion")
        if old_mv != new_mv or new_mv == UNVERSIONED:
            return "stop-first"
        return "rolling"
    if olds.get("memoryMb") != news.get("memoryMb") or olds.get("diskMb") != news.get("diskMb"):
        return "stop-first"
    # The buildpack as staged: a digest added to the same URL restages nothing.
    if _lifecycle(str(olds.get("buildpack") or "")) != _lifecycle(str(news.get("buildpack") or "")):
        return "rolling"
    if any(olds.get(k) != news.get(k) for k in ("stack", "environment", "secretEnvironment", "healthCheck", "services")):
        return "rolling"
    if olds.get("instances") != news.get("instances"):
        return "scale"
    return "none"


class AppProvider(CfProvider):
    """A Mendix app on the cf-mendix-buildpack: package, build, droplet, processes, bindings, routes."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Create, stage and start the app (see the module docstring)."""
        c = client_for(props)
        t = _timeouts(props)
        space = c.space_guid(props)
        if c.find_app(space, props["name"]) is not None:
            from .capi import CapiError

            raise CapiError(f"an app called {props['name']!r} already exists in the space: delete or rename it, or import it (pulumi import)")
        check_buildpack(props["buildpack"], t["upload"])
        bits, bits_name = package_bits(props["package"])
        app = c.create_app(space, props["name"], _lifecycle(props["buildpack"]), props["stack"], props.get("metadata") or {})
        guid = app["guid"]
        try:
            c.set_environment(guid, {**props["environment"], **(props.get("secretEnvironment") or {})}, [])
            web = c.web_process(guid)
            _health(c, web["guid"], props["healthCheck"])
            c.scale(web["guid"], int(props["instances"]), int(props["memoryMb"]), int(props["diskMb"]))
            if props.get("ssh") is not None:
                c.set_app_feature(guid, "ssh", bool(props["ssh"]))
            package = c.upload_package(guid, bits, t["upload"], sha256=props["package"]["sha256"], name=bits_name, metadata=_package_metadata(props))
            droplet = c.stage(package, t["staging"])
            c.set_droplet(guid, droplet)
            for si in props.get("services") or []:
                c.bind(guid, si, t["job"])
            for route in props.get("routes") or []:
                c.map_route(route, guid)
            if int(props["instances"]) > 0:
                c.start(guid)
                c.wait_running(web["guid"], int(props["instances"]), t["start"])
            c.set_app_metadata(guid, app_metadata(props, droplet))  # the droplet runs: noted for drift
        except BaseException:
            try:
                c.delete_app(guid, t["job"])
            finally:
                raise
        return CreateResult(id_=guid, outs={**props, "guid": guid, "spaceGuid": space, "packageGuid": package, "dropletGuid": droplet, "strategy": "create"})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Changes of tracked inputs; another name, API or space replaces the app."""
        replaces = [k for k in ("name",) if olds.get(k) != news.get(k)] + _moved(olds, news)
        changed = replaces + [k for k in APP_TRACKED if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=replaces, stables=["guid", "spaceGuid"], delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Stage what is new first, then roll, stop-first or scale (see `strategy`)."""
        c = client_for(news)
        t = _timeouts(news)
        guid = olds["guid"]
        how = strategy(olds, news)
        package, droplet = olds.get("packageGuid"), olds.get("dropletGuid")
        new_buildpack = _lifecycle(str(olds.get("buildpack") or "")) != _lifecycle(news["buildpack"])
        restage = (olds.get("package") or {}).get("sha256") != (news.get("package") or {}).get("sha256") or new_buildpack or olds.get("stack") != news.get("stack")
        if not restage and olds.get("buildpack") != news.get("buildpack"):
            check_buildpack(news["buildpack"], t["upload"])  # a new pin of the same URL: it must hold now
        if restage:
            check_buildpack(news["buildpack"], t["upload"])
            new_package = (olds.get("package") or {}).get("sha256") != (news.get("package") or {}).get("sha256")
            bits, bits_name = package_bits(news["package"]) if new_package else (b"", "")
            # The old droplet still runs until the new one is deployed: its annotations stay the old release's.
            c.update_app(guid, _lifecycle(news["buildpack"]), news["stack"], app_metadata(news, olds.get("dropletGuid"), olds))
            if new_package:
                package = c.upload_package(guid, bits, t["upload"], sha256=news["package"]["sha256"], name=bits_name, metadata=_package_metadata(news))
            # Staging fails here, before any variable, binding or process changed: nothing half-deployed.
            droplet = c.stage(package, t["staging"])
        elif olds.get("metadata") != news.get("metadata") or olds.get("buildpack") != news.get("buildpack"):
            # the same droplet; a new pin of the same buildpack URL (checked above) is what it runs now
            c.update_app(guid, _lifecycle(news["buildpack"]), news["stack"], app_metadata(news, droplet))
        if news.get("ssh") is not None and olds.get("ssh") != news.get("ssh"):
            c.set_app_feature(guid, "ssh", bool(news["ssh"]))
        new_env = {**news["environment"], **(news.get("secretEnvironment") or {})}
        old_env = {**(olds.get("environment") or {}), **(olds.get("secretEnvironment") or {})}
        if new_env != old_env:
            c.set_environment(guid, new_env, sorted(set(old_env) - set(new_env)))
        for si in news.get("services") or []:
            if si not in (olds.get("services") or []):
                c.bind(guid, si, t["job"])
        for route in news.get("routes") or []:
            if route not in (olds.get("routes") or []):
                c.map_route(route, guid)
        web = c.web_process(guid)
        if olds.get("healthCheck") != news.get("healthCheck"):
            _health(c, web["guid"], news["healthCheck"])
        instances = int(news["instances"])
        if how == "stop-first":
            c.stop(guid)
            c.scale(web["guid"], instances, int(news["memoryMb"]), int(news["diskMb"]))
            c.set_droplet(guid, droplet)
            if instances > 0:
                c.start(guid)
                c.wait_running(web["guid"], instances, t["start"])
        elif how == "rolling":
            if instances != int(olds["instances"]):
                c.scale(web["guid"], instances)
            if instances > 0:
                c.deploy(guid, droplet, t["start"])
            else:
                c.set_droplet(guid, droplet)
        elif how == "scale":
            c.scale(web["guid"], instances)
            if int(olds["instances"]) == 0 and instances > 0:
                c.start(guid)
                c.wait_running(web["guid"], instances, t["start"])
        if restage:  # the new droplet runs: noted for drift (not before: a failed deployment leaves the old note)
            c.set_app_metadata(guid, app_metadata(news, droplet))
        return UpdateResult(outs={**news, "guid": guid, "spaceGuid": olds.get("spaceGuid"), "packageGuid": package, "dropletGuid": droplet, "strategy": how})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The app as it is (drift): variables, instances, memory, disk; gone -> empty id."""
        from .capi import CapiError

        c = client_for(props)
        try:
            c.get(f"/v3/apps/{id_}")
        except CapiError as e:
            if e.status == 404:
                return ReadResult(id_="", outs={})
            raise
        var = c.get(f"/v3/apps/{id_}/environment_variables").get("var") or {}
        secret_keys = set(props.get("secretEnvironment") or {})
        web = c.web_process(id_)
        outs = {
            **props,
            "environment": {k: v for k, v in var.items() if k not in secret_keys},
            "secretEnvironment": {k: v for k, v in var.items() if k in secret_keys},
            "instances": web["instances"],
            "memoryMb": web["memory_in_mb"],
            "diskMb": web["disk_in_mb"],
            "dropletGuid": c.current_droplet(id_),
        }
        if props.get("ssh") is not None:  # someone re-enabled SSH (a space developer may): drift
            outs["ssh"] = c.app_feature(id_, "ssh")
        return ReadResult(id_=id_, outs=outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Delete the app (not its service instances: they are resources of their own)."""
        client_for(props).delete_app(id_, _timeouts(props)["job"])


class CfApp(Resource, module="cloudfoundry", name="App"):
    """The app of one environment (type pulumi-python:dynamic/cloudfoundry:App)."""

    guid: Any
    name_out: Any
    space_guid: Any
    droplet_guid: Any
    strategy: Any

    def __init__(self, name: str, props: dict[str, Any], opts: Any = None) -> None:
        super().__init__(AppProvider(), name, {**props, "guid": None, "spaceGuid": None, "packageGuid": None, "dropletGuid": None, "strategy": None}, opts)


# --- service instances ------------------------------------------------------------------------------


class ServiceInstanceProvider(CfProvider):
    """A managed service instance of a marketplace plan, or an existing instance looked up by name."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Provision (waiting for the broker's job), or find the existing instance."""
        from .capi import CapiError

        c = client_for(props)
        space = c.space_guid(props)
        if props.get("existing"):
            si = c.find_service_instance(space, props["existing"])
            if si is None:
                raise CapiError(f"service instance {props['existing']!r} does not exist in the space (create it with cf create-user-provided-service or cf create-service)")
        else:
            si = c.create_service_instance(space, props["name"], props["offering"], props["plan"], props.get("parameters") or {}, props.get("metadata") or {}, _timeouts(props)["job"])
        return CreateResult(id_=si["guid"], outs={**props, "guid": si["guid"], "spaceGuid": space})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """A new name, offering, existing instance or place replaces; plan and parameters update in place."""
        replaces = [k for k in ("name", "offering", "existing") if olds.get(k) != news.get(k)] + _moved(olds, news)
        changed = replaces + [k for k in ("plan", "parameters", "metadata") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=replaces, stables=["guid", "spaceGuid"], delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Another plan or parameters: a PATCH, waited for."""
        c = client_for(news)
        body: dict[str, Any] = {"parameters": dict(news.get("parameters") or {}), "metadata": dict(news.get("metadata") or {})}
        if olds.get("plan") != news.get("plan"):
            p = c.first("/v3/service_plans", f"plan {news['plan']!r}", names=news["plan"], service_offering_names=news["offering"], space_guids=olds["spaceGuid"])
            body["relationships"] = {"service_plan": {"data": {"guid": p["guid"]}}}
        r = c.request("PATCH", f"/v3/service_instances/{olds['guid']}", json=body)
        c.wait_job_of(r, _timeouts(news)["job"], f"updating service instance {news['name']}")
        return UpdateResult(outs={**news, "guid": olds["guid"], "spaceGuid": olds["spaceGuid"]})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The instance, or an empty id when it is gone."""
        c = client_for(props)
        found = next(c.list("/v3/service_instances", guids=id_), None)
        return ReadResult(id_=id_ if found else "", outs={**props, "name": found["name"]} if found and not props.get("existing") else (props if found else {}))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Deprovision a managed instance; an existing one is left alone (it was never ours)."""
        if props.get("existing"):
            return
        client_for(props).delete(f"/v3/service_instances/{id_}", _timeouts(props)["job"])


class CfServiceInstance(Resource, module="cloudfoundry", name="ServiceInstance"):
    """A service instance the app binds (type pulumi-python:dynamic/cloudfoundry:ServiceInstance)."""

    guid: Any

    def __init__(self, name: str, props: dict[str, Any], opts: Any = None) -> None:
        super().__init__(ServiceInstanceProvider(), name, {**props, "guid": None, "spaceGuid": None}, opts)


# --- routes -----------------------------------------------------------------------------------------


class RouteProvider(CfProvider):
    """An HTTP route host.domain in the space."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Create the route (a taken host is the API's 422, shown as is)."""
        c = client_for(props)
        space = c.space_guid(props)
        r = c.create_route(space, props["domain"], props["host"], props.get("metadata") or {})
        return CreateResult(id_=r["guid"], outs={**props, "guid": r["guid"], "url": f"https://{r['url']}"})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Any change replaces the route."""
        replaces = [k for k in ("host", "domain") if olds.get(k) != news.get(k)] + _moved(olds, news)
        return DiffResult(changes=bool(replaces), replaces=replaces, stables=["guid", "url"], delete_before_replace=True)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The route, or an empty id when it is gone."""
        from .capi import CapiError

        try:
            client_for(props).get(f"/v3/routes/{id_}")
        except CapiError as e:
            if e.status == 404:
                return ReadResult(id_="", outs={})
            raise
        return ReadResult(id_=id_, outs=props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Delete the route."""
        client_for(props).delete(f"/v3/routes/{id_}", _timeouts(props)["job"])


class CfRoute(Resource, module="cloudfoundry", name="Route"):
    """The environment's route (type pulumi-python:dynamic/cloudfoundry:Route)."""

    guid: Any
    url: Any

    def __init__(self, name: str, props: dict[str, Any], opts: Any = None) -> None:
        super().__init__(RouteProvider(), name, {**props, "guid": None, "url": None}, opts)


# --- space roles ------------------------------------------------------------------------------------


class SpaceRoleProvider(CfProvider):
    """One user's space role."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Create the role."""
        c = client_for(props)
        space = c.space_guid(props)
        r = c.create_role(space, props["type"], props["username"], props["origin"])
        return CreateResult(id_=r["guid"], outs={**props, "guid": r["guid"], "spaceGuid": space})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Roles are immutable: any change replaces."""
        replaces = [k for k in ("type", "username", "origin") if olds.get(k) != news.get(k)] + _moved(olds, news)
        return DiffResult(changes=bool(replaces), replaces=replaces, stables=["guid", "spaceGuid"], delete_before_replace=True)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The role, or an empty id when someone removed it (the next up recreates it)."""
        role = client_for(props).get_role(id_)
        if role is None:
            return ReadResult(id_="", outs={})
        return ReadResult(id_=id_, outs={**props, "type": role["type"]})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Remove the role."""
        client_for(props).delete_role(id_, _timeouts(props)["job"])


class CfSpaceRole(Resource, module="cloudfoundry", name="SpaceRole"):
    """A standing space role (type pulumi-python:dynamic/cloudfoundry:SpaceRole); never on production."""

    guid: Any

    def __init__(self, name: str, props: dict[str, Any], opts: Any = None) -> None:
        super().__init__(SpaceRoleProvider(), name, {**props, "guid": None, "spaceGuid": None}, opts)


class GroupSpaceRoleProvider(CfProvider):
    """A space role for every member of a UAA group (of the group principal's origin), kept in sync.

    CAPI roles are per user, so the group is expanded through UAA's SCIM `/Groups` when an operation
    runs: `members` (output) maps each member's user id to its role. `diff` compares the group's members
    now with the state, so a member added or removed in the identity provider shows as a change in the
    preview and `update` creates or deletes exactly those roles; `read` (refresh) drops roles someone
    removed by hand, which the next up recreates. A role a member already had (e.g. from a user entry) is
    recorded as not owned and never deleted by this resource.
    """

    @staticmethod
    def _desired(c: Any, props: Mapping[str, Any]) -> dict[str, str]:
        return c.scim().members(str(props["group"]), str(props["origin"]))

    @staticmethod
    def _sync(c: Any, space: str, props: Mapping[str, Any], current: Mapping[str, Any], desired: Mapping[str, str]) -> dict[str, Any]:
        t = _timeouts(props)
        out: dict[str, Any] = {}
        for uid, m in current.items():
            if uid in desired:
                out[uid] = dict(m)
            elif m.get("owned"):
                c.delete_role(m["role"], t["job"])
        for uid, origin in desired.items():
            if uid not in out:
                role, created = c.create_role_for_guid(space, str(props["type"]), uid)
                out[uid] = {"origin": origin, "role": role["guid"], "owned": created}
        return dict(sorted(out.items()))

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Expand the group and create a role per member."""
        c = client_for(props)
        space = c.space_guid(props)
        members = self._sync(c, space, props, {}, self._desired(c, props))
        return CreateResult(id_=f"{space}/{props['type']}/{props['origin']}/{props['group']}", outs={**props, "spaceGuid": space, "members": members})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Another role type, group, origin or place replaces; a membership change (asked of UAA now) updates."""
        replaces = [k for k in ("type", "group", "origin") if olds.get(k) != news.get(k)] + _moved(olds, news)
        if replaces:
            return DiffResult(changes=True, replaces=replaces, stables=[], delete_before_replace=True)
        changed = [k for k in ("principal", "permission", "timeouts") if olds.get(k) != news.get(k)]
        if sorted(self._desired(client_for(news), news)) != sorted(olds.get("members") or {}):
            changed.append("members")
        return DiffResult(changes=bool(changed), replaces=[], stables=["spaceGuid"], delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Roles for new members, none for removed ones; roles removed by hand are recreated."""
        c = client_for(news)
        current = {uid: m for uid, m in (olds.get("members") or {}).items() if c.get_role(m["role"]) is not None}
        members = self._sync(c, olds["spaceGuid"], news, current, self._desired(c, news))
        return UpdateResult(outs={**news, "spaceGuid": olds["spaceGuid"], "members": members})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The roles as they are: one removed by hand is no longer a member's (drift)."""
        c = client_for(props)
        members = {uid: m for uid, m in (props.get("members") or {}).items() if c.get_role(m["role"]) is not None}
        return ReadResult(id_=id_, outs={**props, "members": members})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Remove the roles this resource created."""
        c = client_for(props)
        for m in (props.get("members") or {}).values():
            if m.get("owned"):
                c.delete_role(m["role"], _timeouts(props)["job"])


class CfGroupSpaceRole(Resource, module="cloudfoundry", name="GroupSpaceRole"):
    """A space role for a UAA group's members (type pulumi-python:dynamic/cloudfoundry:GroupSpaceRole); never on production."""

    members: Any

    def __init__(self, name: str, props: dict[str, Any], opts: Any = None) -> None:
        super().__init__(GroupSpaceRoleProvider(), name, {**props, "spaceGuid": None, "members": None}, opts)


# --- spaces -------------------------------------------------------------------------------------------


class SpaceProvider(CfProvider):
    """A space the target owns (`createSpaces`): created in the org, SSH disallowed where `allowSsh` is false."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Create the space (one that exists is refused: it is not ours to own) and set its SSH feature."""
        from .capi import CapiError

        c = client_for(props)
        org = c.org_guid(props)
        if c.find_space(org, props["name"]) is not None:
            raise CapiError(f"a space called {props['name']!r} already exists in the organization: import it (pulumi import) or name it in spaces without createSpaces")
        space = c.create_space(org, props["name"], props.get("metadata") or {})
        c.set_space_feature(space["guid"], "ssh", bool(props["allowSsh"]))
        return CreateResult(id_=space["guid"], outs={**props, "guid": space["guid"], "orgGuid": org})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """A new name or organization replaces; SSH and metadata update in place."""
        replaces = [k for k in ("name", "api", "org") if olds.get(k) != news.get(k)]
        if news.get("orgGuid") is not None and olds.get("orgGuid") != news.get("orgGuid"):
            replaces.append("orgGuid")
        changed = replaces + [k for k in ("allowSsh", "metadata") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=replaces, stables=["guid"], delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Set SSH and metadata."""
        c = client_for(news)
        if olds.get("allowSsh") != news.get("allowSsh"):
            c.set_space_feature(olds["guid"], "ssh", bool(news["allowSsh"]))
        if olds.get("metadata") != news.get("metadata"):
            c.patch(f"/v3/spaces/{olds['guid']}", {"metadata": news.get("metadata") or {}})
        return UpdateResult(outs={**news, "guid": olds["guid"], "orgGuid": olds.get("orgGuid")})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The space and its SSH feature (someone allowing SSH again is drift); gone -> empty id."""
        from .capi import CapiError

        c = client_for(props)
        try:
            c.get(f"/v3/spaces/{id_}")
        except CapiError as e:
            if e.status == 404:
                return ReadResult(id_="", outs={})
            raise
        return ReadResult(id_=id_, outs={**props, "allowSsh": c.space_feature(id_, "ssh")})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Delete the space (production's is retained: its resource option keeps it)."""
        client_for(props).delete(f"/v3/spaces/{id_}", _timeouts(props)["job"])


class CfSpace(Resource, module="cloudfoundry", name="Space"):
    """A space the target creates (type pulumi-python:dynamic/cloudfoundry:Space)."""

    guid: Any

    def __init__(self, name: str, props: dict[str, Any], opts: Any = None) -> None:
        super().__init__(SpaceProvider(), name, {**props, "guid": None, "orgGuid": props.get("orgGuid")}, opts)


# --- production grants ------------------------------------------------------------------------------

GRANT_EXPIRY_INPUTS = ("api", "org", "orgGuid", "space", "spaceGuid", "environment", "app", "repository", "trust", "signer", "timeouts")


def _grants_trust(props: Mapping[str, Any]) -> Any:
    from . import grants

    return grants.resolve_trust(list(props.get("trust") or ()), str(props["repository"]), Path.cwd())


class GrantExpiryProvider(CfProvider):
    """Reports the environment's due grants; removes every open one when the environment is destroyed.

    Expiring is the expiry app's job (`expiry.py`), on its own schedule and identity. A `pulumi up`
    changes this resource only when its inputs do, and then reads the activity log without a single CAPI
    call: a release, run by `deploy` (space_developer, which may not remove roles), never sends
    DELETE /v3/roles.
    """

    def _report(self, props: Mapping[str, Any]) -> dict[str, Any]:
        from . import grants

        due = grants.due_grants(str(props["repository"]), str(props["environment"]), trust=_grants_trust(props), app=props.get("app"))
        return {"dueGrants": sorted(str(g["id"]) for g in due)}

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Report what is due (nothing is removed here)."""
        return CreateResult(id_=f"grants-{props['environment']}", outs={**props, **self._report(props)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Changed only when an input changes: time passing is the expiry app's business, not an up's."""
        changed = [k for k in GRANT_EXPIRY_INPUTS if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], stables=["environment"], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Report what is due (nothing is removed here)."""
        return UpdateResult(outs={**news, **self._report(news)})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """The environment goes: every grant still open goes with it (a platform step: needs Space Manager)."""
        from mxinfra.governance.promotion import repository_url
        from mxinfra.governance.signing import dev_signer, open_signer

        from . import grants

        c = client_for(props)
        url = repository_url(str(props["repository"]), Path.cwd())
        trust = _grants_trust(props)
        signer = open_signer(str(props["signer"]), Path.cwd()) if props.get("signer") else dev_signer(url)
        grants.expire_due(url, props["environment"], c, space=c.space_guid(props), trust=trust, app=props.get("app"), signer=signer, all_open=True, job_timeout=_timeouts(props)["job"])


class CfGrantExpiry(Resource, module="cloudfoundry", name="GrantExpiry"):
    """The report of production grants (type pulumi-python:dynamic/cloudfoundry:GrantExpiry)."""

    due_grants: Any

    def __init__(self, name: str, props: dict[str, Any], opts: Any = None) -> None:
        super().__init__(GrantExpiryProvider(), name, {**props, "dueGrants": None}, opts)


class GrantExpiryAppProvider(AppProvider):
    """The expiry app (`expiry.py`): an app like the environment's, staged from the bundle the provider builds."""


class CfGrantExpiryApp(Resource, module="cloudfoundry", name="GrantExpiryApp"):
    """The app that expires a production environment's grants (type pulumi-python:dynamic/cloudfoundry:GrantExpiryApp)."""

    guid: Any

    def __init__(self, name: str, props: dict[str, Any], opts: Any = None) -> None:
        super().__init__(GrantExpiryAppProvider(), name, {**props, "guid": None, "spaceGuid": None, "packageGuid": None, "dropletGuid": None, "strategy": None}, opts)
