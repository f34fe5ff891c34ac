"""What runs in an environment, read from the Cloud Controller for `mxinfra drift` and the release guard at
the start of every `pulumi up` (mxinfra.drift compares it with the activity log). No Pulumi imports.

An environment runs one app, `<app>-<env>`, in its space (runtime.py). What the log records maps onto it so:

- the package (`package_sha256`): the MDA the app's *current droplet* was staged from;
- the artifact: the buildpack reference that droplet was staged with (the block's `buildpack`, with its
  `#sha256=` pin: the provider checks the download against it right before staging);
- the instances: the web process's instance count (0 when the app is stopped).

Cloud Foundry cannot tell which MDA a droplet was staged from: the Cloud Controller repacks the uploaded
bits, so a package's checksum is not the MDA's sha256. So a release writes it down. The app provider
annotates every package it uploads (`mxinfra.io/package-sha256`) and, once a droplet runs, the app with
that droplet and what it was staged from (`DROPLET_GUID`, `DROPLET_PACKAGE`, `DROPLET_BUILDPACK`). Read
here: the app (labels, annotations, state) -> its current droplet -> the web process. The current
droplet is the one the last release made current: the package and buildpack are those it noted. Any
other droplet (`cf push`, `cf restage`, `cf rollback`, `cf set-droplet`) was staged or chosen outside a
release: the package is what its package says (a release's annotation, else the checksum the Cloud
Controller computed), the buildpack what the app's lifecycle names (a plain URL: no release pinned it).

Also read, on production: every binding of the environment's service instances (the ones its app is bound
to, whatever they are called now, and the ones the stack names) but the app's own: service keys and other
apps' bindings; and each instance's shares into other spaces, where every space developer may bind or key
it. Each is a standing credential of the data that outlives the grant of whoever made it; the core refuses
any (mxinfra.drift.standing_credentials). Every space role lists bindings, never their credentials; a Space
Supporter may not list shares (the core warns). Not seen: credentials copied out of a key that was then
deleted, and a route service bound to the app's route (it sees the traffic, not the data's credentials).

Not compared (said on every run): variables, memory, disk, health check, routes and bindings. The record
holds only a digest of the settings, which the app's objects cannot be turned back into, and a space
auditor (monitor) may not read the variables at all. Nor is a forged annotation detected (a space
developer may rewrite the app's metadata): the Cloud Controller's audit events (`cf events APP`) show both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from mxinfra.drift import CannotObserve, Observed

ROLE_LABEL = "mxinfra.io/role"  # the tier the release labelled the app with (runtime.py: the release labels)
PACKAGE_ANNOTATION = "mxinfra.io/package-sha256"  # on the app (release annotations) and on each package a release uploads
# Written by the app provider on the app once the droplet it staged is the current one: which droplet, and
# what it was staged from. Always the three together.
DROPLET_GUID = "mxinfra.io/droplet-guid"
DROPLET_PACKAGE = "mxinfra.io/droplet-package-sha256"
DROPLET_BUILDPACK = "mxinfra.io/droplet-buildpack"
TIMEOUT_SECONDS = 30.0
READ_RIGHTS = "a space role in the environment's space that reads apps, droplets, packages and processes: space_auditor (monitor) or space_developer (deploy)"
SIGN_IN = (
    "give the CF_CLIENT_ID/CF_CLIENT_SECRET (a UAA client) or CF_USERNAME/CF_PASSWORD (with CF_ORIGIN) of an identity with "
    + READ_RIGHTS
)
CONFIG_NOTE = (
    "Cloud Foundry keeps no fingerprint of the configuration a release applied, so variables (cf set-env), memory, disk, "
    "health check, routes and service bindings changed by hand are not detected (the droplet, its package and buildpack "
    "and the instance count are); the app's audit events show them (cf events APP)"
)
LEGACY_NOTE = (
    "{app} carries no {key} annotation (it was released by an mxinfra before drift detection on Cloud Foundry): its current "
    "droplet {droplet} is taken to be the last release's, so a droplet pushed by hand is not detected until the next "
    "release of the app writes the annotation"
)


def droplet_annotations(droplet: str, package_sha256: str, buildpack: str) -> dict[str, str]:
    """What the app provider writes on the app once `droplet` runs (staged from that package and buildpack)."""
    return {DROPLET_GUID: droplet, DROPLET_PACKAGE: package_sha256, DROPLET_BUILDPACK: buildpack}


def package_metadata(package_sha256: str) -> dict[str, Any]:
    """The metadata of a package a release uploads: the MDA it holds."""
    return {"annotations": {PACKAGE_ANNOTATION: package_sha256}}


@dataclass(frozen=True)
class Place:
    """Where the environment's app is, as messages name it."""

    api: str
    org: str
    space: str
    app: str

    def describe(self) -> str:
        """Where the app is, for messages."""
        return f"space {self.space}, org {self.org}, {self.api}"


@dataclass(frozen=True)
class App:
    """What was read of the environment's app."""

    guid: str
    state: str  # STARTED | STOPPED
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    lifecycle_buildpacks: tuple[str, ...] = ()
    droplet: str | None = None  # the current droplet's guid
    droplet_buildpacks: tuple[str, ...] = ()  # what the current droplet says it was staged with (names/URLs)
    package: str | None = None  # the current droplet's package's guid
    package_annotation: str | None = None  # its mxinfra.io/package-sha256
    package_checksum: str | None = None  # the Cloud Controller's checksum of its bits
    instances: int = 0  # the web process's


def _url(reference: str) -> str:
    return reference.split("#", 1)[0]


def restore_commands(place: Place, stopped: bool) -> dict[str, str]:
    """How `mxinfra drift` says to put the buildpack (with the droplet) and the instance count back."""
    target = f"cf target -o {place.org} -s {place.space}"
    start = f" && cf start {place.app}" if stopped else ""
    return {
        "artifact": f"{target} && cf droplets {place.app}, then cf set-droplet {place.app} <the droplet the last release staged with buildpack {{value}}> && cf restart {place.app}",
        "instances": f"{target} && cf scale {place.app} -i {{value}}{start}",
    }


def observed(environment: str, place: Place, app: App | None, declared_buildpack: str | None = None) -> Observed:
    """The Observed of an environment from what was read of its app (None: no such app). Pure.
    `declared_buildpack`: the stack's buildpack reference, used only for an app released before the
    droplet annotations existed (its lifecycle URL is taken as that reference when the URLs are the same)."""
    name = f"Cloud Foundry app {place.app}"
    if app is None:
        return Observed(environment, f"{name} ({place.describe()})", exists=False, artifact_kind="buildpack", restore=restore_commands(place, False))
    note = CONFIG_NOTE
    staged_with = app.droplet_buildpacks or app.lifecycle_buildpacks
    lifecycle = ", ".join(staged_with) if staged_with else "(no buildpack)"
    released = app.annotations.get(DROPLET_GUID)
    if app.droplet is None:
        detail, package, artifact = "no current droplet: never staged", None, "(none: the app has no droplet)"
    elif released == app.droplet:
        detail = f"droplet {app.droplet}"
        package, artifact = app.annotations.get(DROPLET_PACKAGE), app.annotations.get(DROPLET_BUILDPACK)
    elif released is None:
        detail = f"droplet {app.droplet}"
        package = app.annotations.get(PACKAGE_ANNOTATION)
        artifact = declared_buildpack if declared_buildpack is not None and [_url(declared_buildpack)] == list(staged_with) else lifecycle
        note = f"{CONFIG_NOTE}; {LEGACY_NOTE.format(app=place.app, key=DROPLET_GUID, droplet=app.droplet)}"
    else:
        detail = f"droplet {app.droplet}, not the droplet {released} the last release made current"
        # What this droplet's package holds: a release's package names its MDA; other bits only have the
        # Cloud Controller's checksum, which is never an MDA's sha256 (the bits are repacked): a difference.
        package = app.package_annotation or app.package_checksum or "unknown"
        artifact = lifecycle
    return Observed(
        environment,
        f"{name} ({detail}; {place.describe()})",
        exists=True,
        package_sha256=package,
        artifact=artifact,
        artifact_kind="buildpack",
        instances=app.instances if app.state == "STARTED" else 0,
        config_note=note,
        role=app.labels.get(ROLE_LABEL),
        restore=restore_commands(place, app.state != "STARTED"),
    )


# --- reading ---------------------------------------------------------------------------------------


@contextmanager
def _capi(environment: str, place: Place, doing: str) -> Iterator[None]:
    """The client's failures as CannotObserve (exit 2), naming the API, the app and what to fix; never a traceback."""
    import requests

    from .capi import CapiError
    from .uaa import CredentialsError

    head = f"{environment}: what runs could not be read from the Cloud Controller {place.api} (app {place.app}, space {place.space})"
    try:
        yield
    except CredentialsError as e:
        raise CannotObserve(f"{head}: {e}; {SIGN_IN}") from None
    except CapiError as e:
        if e.status == 401:
            fix = f"the Cloud Controller does not accept the identity's token (expired, revoked, or another foundation's UAA): {SIGN_IN}"
        elif e.status == 403:
            fix = f"the identity may not read it: it needs {READ_RIGHTS}"
        else:
            fix = "see the Cloud Controller's message"
        raise CannotObserve(f"{head}: the Cloud Controller refused {doing} ({e}): {fix}") from None
    except requests.RequestException as e:
        raise CannotObserve(f"{head}: the API cannot be reached ({type(e).__name__}: {str(e)[:200]}): check the network and mxinfra:cloudfoundry.api") from None


def _get(client: Any, path: str, **params: Any) -> dict[str, Any]:
    return client.request("GET", path, params={k: v for k, v in params.items() if v is not None} or None, timeout=TIMEOUT_SECONDS).json()


def _first(client: Any, path: str, **params: Any) -> dict[str, Any] | None:
    resources = _get(client, path, **params).get("resources") or []
    return resources[0] if resources else None


def _missing(client: Any, path: str) -> dict[str, Any] | None:
    """GET `path`, None when the Cloud Controller says it does not exist (404)."""
    from .capi import CapiError

    try:
        return _get(client, path)
    except CapiError as e:
        if e.status == 404:
            return None
        raise


def _guid_of(href: str | None) -> str | None:
    return href.rstrip("/").rsplit("/", 1)[-1] if href else None


def _space(client: Any, environment: str, place: Place, where: Mapping[str, Any]) -> str | None:
    """The space's guid; None when the organization or the space is not there (or not visible to the identity)."""
    if where.get("spaceGuid"):
        return str(where["spaceGuid"])
    with _capi(environment, place, f"GET /v3/organizations?names={where.get('org')}"):
        org = where.get("orgGuid") or (_first(client, "/v3/organizations", names=where.get("org")) or {}).get("guid")
    if not org:
        return None
    with _capi(environment, place, f"GET /v3/spaces?names={where.get('space')}"):
        space = _first(client, "/v3/spaces", names=where.get("space"), organization_guids=org)
    return space["guid"] if space else None


def read_app(client: Any, environment: str, place: Place, space: str | None) -> App | None:
    """The environment's app as it runs in `space` (its guid, `_space`'s; None when the space or the app is
    not there)."""
    if space is None:
        return None
    with _capi(environment, place, f"GET /v3/apps?names={place.app}"):
        app = _first(client, "/v3/apps", names=place.app, space_guids=space)
    if app is None:
        return None
    guid = app["guid"]
    meta = app.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    lifecycle = tuple(str(b) for b in ((app.get("lifecycle") or {}).get("data") or {}).get("buildpacks") or [])
    with _capi(environment, place, f"GET /v3/apps/{guid}/relationships/current_droplet"):
        droplet = ((_missing(client, f"/v3/apps/{guid}/relationships/current_droplet") or {}).get("data") or {}).get("guid")
    with _capi(environment, place, f"GET /v3/apps/{guid}/processes/web"):
        web = _missing(client, f"/v3/apps/{guid}/processes/web") or {}
    found = App(
        guid=guid,
        state=str(app.get("state") or "STOPPED"),
        labels=dict(meta.get("labels") or {}),
        annotations=annotations,
        lifecycle_buildpacks=lifecycle,
        droplet=droplet,
        instances=int(web.get("instances") or 0),
    )
    if droplet is None or annotations.get(DROPLET_GUID) in (droplet, None):
        return found  # the last release's droplet (or an app released before the annotations): nothing more to read
    # A droplet the last release did not make current: what was it staged from?
    with _capi(environment, place, f"GET /v3/droplets/{droplet}"):
        d = _missing(client, f"/v3/droplets/{droplet}") or {}
    staged = tuple(str(b.get("name")) for b in d.get("buildpacks") or [] if isinstance(b, Mapping) and b.get("name"))
    package = _guid_of(((d.get("links") or {}).get("package") or {}).get("href"))
    pkg: dict[str, Any] = {}
    if package:
        with _capi(environment, place, f"GET /v3/packages/{package}"):
            pkg = _missing(client, f"/v3/packages/{package}") or {}
    checksum = ((pkg.get("data") or {}).get("checksum") or {}).get("value")
    return replace(
        found,
        droplet_buildpacks=staged,
        package=package,
        package_annotation=((pkg.get("metadata") or {}).get("annotations") or {}).get(PACKAGE_ANNOTATION),
        package_checksum=str(checksum) if checksum else None,
    )


def credentials_of(block: Any) -> Any:
    """The credentials to read with: the stack block's (under `pulumi up`, where its secrets are decrypted),
    else the process's (`uaa.resolve_credentials`: the providers' stack config, then CF_* variables). A
    block read offline (`mxinfra drift` cannot decrypt secrets) gives none."""
    from mxinfra.environments import OFFLINE_SECRET

    from .uaa import credentials_from_block, resolve_credentials

    from .uaa import CredentialsError

    creds = getattr(block, "credentials", None)
    offline = False
    if creds is not None:
        dumped = creds.model_dump()
        secrets = [dumped.get("clientSecret"), (dumped.get("passwordGrant") or {}).get("password")]
        offline = OFFLINE_SECRET in secrets
        if not offline:
            found = credentials_from_block({"credentials": dumped})
            if found is not None:
                return found
    try:
        return resolve_credentials()
    except CredentialsError as e:
        if offline:
            raise CredentialsError(
                "the stack's mxinfra:cloudfoundry.credentials are encrypted in the stack file, which is read here without "
                "Pulumi (it cannot decrypt them), and no CF_* variables are set"
            ) from None
        raise e from None


def connect(api: str, block: Any) -> Any:
    """A CAPI client of `api` with the reading credentials."""
    import requests

    from .capi import Client
    from .uaa import TokenSource

    session = requests.Session()
    return Client(api, TokenSource.from_credentials(api, credentials_of(block), session), session)


def service_names(block: Any, naming: Any) -> tuple[str, str | None]:
    """The environment's database and file store service instances (the file store None without one)."""
    files = (block.storage.existing or naming.physical("files")) if block.storage is not None else None
    return block.database.existing or naming.physical("database"), files


def standing_bindings(client: Any, environment: str, place: Place, space: str | None, app: str | None, instances: Sequence[str]) -> tuple[tuple[str, ...], str | None]:
    """Every standing way to the environment's data but its app's own bindings, each named with how to remove
    it: the service keys of its service instances, other apps' bindings to them and their shares into other
    spaces; and why some were not read (None: all were). The instances are the ones the app is bound to,
    whatever they are called now, and those the stack names. Every space role lists bindings (never their
    credentials)."""
    if space is None:
        return (), None
    guids: set[str] = set()
    if app is not None:
        with _capi(environment, place, f"GET /v3/service_credential_bindings?app_guids={app}"):
            guids |= {_related(b, "service_instance") for b in client.list("/v3/service_credential_bindings", app_guids=app, type="app")}
    if instances:
        with _capi(environment, place, f"GET /v3/service_instances?names={','.join(instances)}"):
            guids |= {str(i["guid"]) for i in client.list("/v3/service_instances", names=",".join(instances), space_guids=space)}
    guids.discard("")
    if not guids:
        return (), None
    with _capi(environment, place, "GET /v3/service_instances?guids=..."):
        name = {str(i["guid"]): str(i.get("name")) for i in client.list("/v3/service_instances", guids=",".join(sorted(guids)))}
    with _capi(environment, place, "GET /v3/service_credential_bindings?service_instance_guids=..."):
        bindings = list(client.list("/v3/service_credential_bindings", service_instance_guids=",".join(sorted(guids))))
    found = []
    for b in bindings:
        instance, other, made = name.get(_related(b, "service_instance"), "?"), _related(b, "app"), b.get("created_at")
        if b.get("type") == "key":
            found.append(f"service key {b.get('name')} of {instance}, made {made} (cf delete-service-key {instance} {b.get('name')} -f)")
        elif other != app:
            found.append(f"a binding of app {other} to {instance}, made {made} (cf curl -X DELETE /v3/service_credential_bindings/{b.get('guid')})")
    shared, unread = _shares(client, environment, place, name)
    return tuple(sorted(found + shared)), unread


def _shares(client: Any, environment: str, place: Place, name: Mapping[str, str]) -> tuple[list[str], str | None]:
    """Each instance's shares into other spaces, and why some could not be read (None: all were). A share is a
    standing way to the data: every space developer of the other space may bind it or key it, and those
    bindings are listed only to roles in that space, so this space's list above never shows them."""
    from .capi import CapiError

    shared, refused = [], []
    for guid in sorted(name):
        path = f"/v3/service_instances/{guid}/relationships/shared_spaces"
        with _capi(environment, place, f"GET {path}"):
            try:
                spaces = _get(client, path).get("data") or []
            except CapiError as e:
                # The Cloud Controller answers 404 to a reader who may not read the instance's space (a Space
                # Supporter: not among the permitted roles), and for an instance shared in from another
                # space or deleted since it was listed
                if e.status not in (403, 404):
                    raise
                refused.append(name[guid])
                spaces = []
        for space in spaces:
            other = str((space or {}).get("guid") or "?")
            shared.append(f"{name[guid]} shared into space {other} (cf curl -X DELETE {path}/{other})")
    note = None
    if refused:
        note = (
            f"whether {', '.join(refused)} {'is' if len(refused) == 1 else 'are'} shared into other spaces was not read: the Cloud Controller "
            "did not find the instance for this identity (a Space Supporter may not list shares; or the instance is another space's, or was "
            "deleted meanwhile); `monitor` (Space Auditor) and a Space Developer read them"
        )
    return shared, note


def _related(resource: Mapping[str, Any], kind: str) -> str:
    """The guid a resource's relationship `kind` names ("" when none)."""
    return str((((resource.get("relationships") or {}).get(kind) or {}).get("data") or {}).get("guid") or "")


def observe(block: Any, environment: str, role: str, app_name: str, *, client: Any = None, instances: Sequence[str] = ()) -> Observed:
    """What runs as `app_name` in the environment's space (`block`: the stack's CloudFoundryConfig), and on
    production the standing ways to its `instances`' data (standing_bindings)."""
    from .config import where as where_of

    env = _Env(environment, role)
    where = where_of(block, env)  # type: ignore[arg-type]
    place = Place(block.api, str(where.get("org") or where.get("orgGuid")), str(where.get("space") or where.get("spaceGuid")), app_name)
    if client is None:
        with _capi(environment, place, "signing in"):
            client = connect(block.api, block)
    space = _space(client, environment, place, where)
    app = read_app(client, environment, place, space)
    if app is None and role != "production":
        # F18: the stack may now declare a production environment another tier, and its spaces by tier
        # would look for it in that tier's space: what runs is still in production's.
        prod = where_of(block, _Env(environment, "production"))  # type: ignore[arg-type]
        if prod != where:
            prod_place = Place(block.api, str(prod.get("org") or prod.get("orgGuid")), str(prod.get("space") or prod.get("spaceGuid")), app_name)
            prod_space = _space(client, environment, prod_place, prod)
            prod_app = read_app(client, environment, prod_place, prod_space)
            if prod_app is not None and prod_app.labels.get(ROLE_LABEL) == "production":
                app, place, space = prod_app, prod_place, prod_space
    seen = observed(environment, place, app, block.buildpack)
    if "production" not in (role, seen.role):
        return seen  # standing credentials are production's concern alone (mxinfra.drift.standing_credentials)
    credentials, note = standing_bindings(client, environment, place, space, app.guid if app else None, instances)
    return replace(seen, credentials=credentials, credentials_note=note)


@dataclass(frozen=True)
class _Role:
    value: str


class _Env:
    """The two attributes `config.where` reads of an environment."""

    def __init__(self, name: str, role: str) -> None:
        self.name = name
        self.role = _Role(role)
