"""What runs in an environment, read from Azure Resource Manager for `mxinfra drift` and the release guard
(mxinfra.drift compares it with the activity log). No Pulumi imports; the Azure SDKs are imported only
when Azure is asked.

An environment runs the leader's container app `<app>-<env>` (one replica) and, from two instances up,
the workers' `<app>-<env>-worker` (the rest: runtime.py). Each is read with one `GET` of the container app
(`Microsoft.App/containerApps/read`) and the list of its revisions (`ContainerAppsRevisions_ListRevisions`,
`Microsoft.App/containerApps/revisions/read`, every page up to MAX_PAGES); the environment's deploy and
monitor roles hold both (roles.APP_READ; the management SDK azure-mgmt-appcontainers, the credential
azure-identity's DefaultAzureCredential). Compared with the log's records: the `mendix` container's image
(the record's artifact; every app must run it), in the app's template and in every revision that is active
and has traffic or replicas (a holder of containerApps/write and revisions/activate can keep an older
revision of another image serving behind a template that shows the recorded one); the revision mode (a
release sets `Single`: an app in any other mode runs what no record names, whatever its images); the
replicas summed (the record's instances: an app's replica count is its scale bounds, min = max as a
release sets them, the maximum where they differ, none while the app is stopped), the
`mxinfra:package-sha256` tag a release writes, and the `mxinfra:role` tag (a production app the stack now
declares another tier is refused: mxinfra.drift.tier_downgrade).

Every other container app of the environment's resource group is named too, whatever its image
(`ContainerApps_ListByResourceGroup`, every page up to MAX_PAGES; `Microsoft.App/containerApps/read` at the
group covers the list): a holder of production `deploy` (containerApps/write, managedEnvironments/join and
userAssignedIdentities/assign at the group) can create one in the environment's managed environment with the
runtime identity attached, which reaches the Key Vault and the data. A release makes only the leader's and
the workers' app, so another runs what no record names: an unrecorded change, put back by deleting it.

Not compared: the rest of the runtime configuration (variables, secret references, probes, identity,
ingress other than which revisions serve, added containers). A release writes no fingerprint of it on the
app, and the records hold only a digest of the settings, which a container app cannot be turned back into:
a `containerApps/write` with the recorded image and other variables is not detected here (the Activity
Log's write events show it). `mxinfra drift` says so on every run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mxinfra.drift import CannotObserve, Observed

CONTAINER = "mendix"  # runtime.CONTAINER (runtime.py imports Pulumi; this module must not)
ARM = "https://management.azure.com"
PACKAGE_TAG = "mxinfra:package-sha256"
ROLE_TAG = "mxinfra:role"
CONFIG_NOTE = (
    "Container Apps carry no fingerprint of the runtime configuration a release applied, so variables, "
    "secret references, probes, identity, ingress and added containers changed by hand with the recorded image "
    "are not detected (the image of the template and of every revision that serves, the revision mode, package tag, "
    "replicas and tier tag are); the Activity Log's Microsoft.App/containerApps/write events show them"
)
READ_RIGHTS = (
    "Microsoft.App/containerApps/read and Microsoft.App/containerApps/revisions/read on the environment's "
    "resource group (its deploy and monitor roles have both)"
)
# How to get an Azure credential (the same ways DefaultAzureCredential tries), for every message that needs one
SIGN_IN_WAYS = "sign in (`az login`, a service principal in AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, workload identity or a managed identity)"
SIGN_IN = SIGN_IN_WAYS + " as an identity with " + READ_RIGHTS
# Gone: the app, or its resource group with it (ARM's codes of a 404 from a GET under a resource group).
_GONE = {"ResourceNotFound", "ResourceGroupNotFound"}
# The revision mode a release sets (runtime.py); ARM's default where a document leaves it out
SINGLE = "Single"
# An ARM list's pages followed at most, as backup_actions.MAX_PAGES: an app keeps at most its
# maxInactiveRevisions (100 by default) besides its active ones. Past it, or on a repeated nextLink, what
# runs is not known: CannotObserve (a revision left unread may be the one that serves).
MAX_PAGES = 1000


@dataclass(frozen=True)
class App:
    """What one container app runs."""

    name: str
    revision: str | None  # its latest revision's name
    image: str | None  # the runtime container's; None when the app has no `mendix` container
    replicas: int  # what its scale bounds let run: 0 while stopped
    bounds: str  # how messages name the bounds: "1 replica", "2-5 replicas", "stopped"
    package_sha256: str | None  # its mxinfra:package-sha256 tag, if any
    role: str | None = None  # its mxinfra:role tag, if any
    mode: str = SINGLE  # its configuration.activeRevisionsMode
    # its revisions that are active and have traffic or replicas: (name, the runtime container's image or
    # None, traffic weight, replicas)
    serving: tuple[tuple[str, str | None, int, int], ...] = ()


def _image(app: App) -> str:
    return app.image if app.image is not None else f"(no {CONTAINER} container in {app.name})"


def _others(app: App) -> list[tuple[str, str, str]]:
    """(revision, image, how) of each revision of `app` that serves (active, with traffic or replicas)
    another image than its template names."""
    out = []
    for revision, image, weight, replicas in app.serving:
        shown = image if image is not None else f"(no {CONTAINER} container in revision {revision})"
        if shown != _image(app):
            out.append((revision, shown, f"active, {weight}% of the traffic, {replicas} replica{'s' if replicas != 1 else ''}"))
    return out


def _whose(app: App) -> str:
    """How the artifact names `app`: an app not in Single mode says so (no record names that)."""
    return app.name if app.mode == SINGLE else f"{app.name}, in activeRevisionsMode {app.mode}: a release sets {SINGLE}"


def _stray(app: App) -> str:
    """How the artifact names an app of the group that is neither the leader's nor the workers'."""
    return f"{app.name}, {app.bounds}: a container app no release makes"


def _update(subscription: str, group: str, name: str) -> str:
    return f"az containerapp update --subscription {subscription} --resource-group {group} --name {name}"


def restore_commands(subscription: str, group: str, leader: str, worker: str, workers: bool) -> dict[str, str]:
    """How `mxinfra drift` says to put the image and the instance count back (`{value}`: the recorded one)."""
    apps = [leader, worker] if workers else [leader]
    artifact = "; ".join(f"{_update(subscription, group, a)} --container-name {CONTAINER} --image {{value}}" for a in apps)
    if workers:
        instances = (
            f"{_update(subscription, group, leader)} --min-replicas 1 --max-replicas 1; "
            f"{_update(subscription, group, worker)} --min-replicas <{{value}} minus the leader's 1> --max-replicas <the same>"
        )
    else:
        instances = f"{_update(subscription, group, leader)} --min-replicas {{value}} --max-replicas {{value}}"
    return {"artifact": artifact, "instances": instances}


def _mode_commands(subscription: str, group: str, found: list[App]) -> list[str]:
    """How to put an app that is not in Single mode back."""
    return [f"az containerapp revision set-mode --subscription {subscription} --resource-group {group} --name {a.name} --mode single" for a in found if a.mode != SINGLE]


def _delete_commands(subscription: str, group: str, others: Sequence[App]) -> list[str]:
    """How to remove the container apps of the group that no release makes."""
    return [f"az containerapp delete --subscription {subscription} --resource-group {group} --name {a.name} --yes" for a in others]


def _deactivate_commands(subscription: str, group: str, found: list[App]) -> list[str]:
    """How to stop the revisions that serve another image than their app's template (the template's own
    is replaced by the image update, which in Single mode deactivates the rest)."""
    return [
        f"az containerapp revision deactivate --subscription {subscription} --resource-group {group} --name {app.name} --revision {rev}"
        for app in found
        for rev, _, _ in _others(app)
        if rev != app.revision
    ]


def observed(
    environment: str,
    subscription: str,
    group: str,
    leader: str,
    worker: str,
    apps: Mapping[str, App],
    workers_declared: bool = False,
    others: Sequence[App] = (),
) -> Observed:
    """The Observed of an environment from the container apps read (name -> App; absent: not found) and
    the group's other container apps (`others`: each runs what no record names). Pure."""
    found = [apps[n] for n in (leader, worker) if n in apps]
    others = sorted(others, key=lambda a: a.name)
    workers = worker in apps or workers_declared
    restore = restore_commands(subscription, group, leader, worker, workers)
    deletes = _delete_commands(subscription, group, others)
    modes, stops = _mode_commands(subscription, group, found), _deactivate_commands(subscription, group, found)
    if deletes or modes:
        restore = {**restore, "artifact": "; ".join([*deletes, *modes, restore["artifact"]])}
    if stops:
        restore = {**restore, "beside": "; ".join(stops)}
    where = f"resource group {group}"
    strays = [f"{_image(a)} ({_stray(a)})" for a in others]
    if not found and not others:
        return Observed(environment, f"Container App {leader} ({where})", exists=False, artifact_kind="image", restore=restore)
    if not found:
        # the release's apps are gone, another runs in their group: what runs is what no record names
        return Observed(
            environment,
            f"Container App {leader} (the leader app {leader} does not exist; {where})",
            exists=True,
            artifact=", ".join(strays),
            artifact_kind="image",
            instances=0,
            config_note=CONFIG_NOTE,
            restore=restore,
        )

    def detail(app: App) -> str:
        return f"revision {app.revision or '(none)'}, {app.bounds}"

    first = found[0]
    if leader not in apps:
        text = f"{detail(first)}; the leader app {leader} does not exist"
    elif worker in apps:
        text = f"{detail(first)}; worker app {worker}, {detail(apps[worker])}"
    else:
        text = detail(first)
    images = {_image(a) for a in found}
    # One image for every app, in Single mode, and no other app in the group is what a release leaves;
    # otherwise each is named, which no record names.
    single = all(a.mode == SINGLE for a in found) and not others
    artifact = images.pop() if len(images) == 1 and single else ", ".join([*(f"{_image(a)} ({_whose(a)})" for a in found), *strays])
    # The revisions that serve another image than their template: the core says which image no record names
    # (mxinfra.drift.running_beside); in Single mode the one a release replaces serves until the new is ready.
    beside = tuple((f"revision {revision} of {a.name}: {how}", image) for a in found for revision, image, how in _others(a))
    return Observed(
        environment,
        f"Container App {first.name} ({text}; {where})",
        exists=True,
        package_sha256=first.package_sha256,
        artifact=artifact,
        artifact_kind="image",
        instances=sum(a.replicas for a in found),
        config_note=CONFIG_NOTE,
        restore=restore,
        role="production" if any(a.role == "production" for a in found) else first.role,
        beside=beside,
    )


def first_line(exc: BaseException) -> str:
    """The first line of an SDK error (they run to pages), at most 300 characters, for a one-line message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def credential_problem(exc: Any, doing: str, sign_in: str) -> str:
    """What an azure-identity ClientAuthenticationError means for `doing`, and how to sign in (`sign_in`)."""
    if exc.status_code is None:  # no credential produced a token (nothing was sent to ARM)
        return f"no Azure credential could sign in ({first_line(exc)}): {sign_in}"
    return f"Azure refused the credential for {doing} ({error_code(exc)}): the token is not valid for this tenant or has expired: {sign_in}"


@contextmanager
def _azure(environment: str, subscription: str, doing: str) -> Iterator[None]:
    """The Azure SDK's failures as CannotObserve (exit 2), naming what to fix; never a traceback."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError, ServiceResponseError

    head = f"{environment}: what runs could not be read from Azure (subscription {subscription})"
    try:
        yield
    except ClientAuthenticationError as exc:
        raise CannotObserve(f"{head}: {credential_problem(exc, doing, SIGN_IN)}") from None
    except HttpResponseError as exc:
        if exc.status_code == 403:
            fix = f"the identity needs {READ_RIGHTS}"
        elif exc.status_code == 404:
            fix = f"is {subscription} the subscription the stack deploys to (mxinfra:azure.subscriptionId)?"
        else:
            fix = "see Azure's message"
        raise CannotObserve(f"{head}: Azure refused {doing} ({exc.status_code} {error_code(exc)}): {fix}") from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise CannotObserve(f"{head}: Azure Resource Manager cannot be reached ({first_line(exc)}): check the network") from None


def error_code(exc: Any) -> str:
    """ARM's error code and message, briefly (a linked-authorization refusal names two full resource ids
    before the action it lacks: about 700 characters)."""
    err = getattr(exc, "error", None)
    code, message = getattr(err, "code", None), getattr(err, "message", None)
    if code or message:
        return f"{code or '?'}: {str(message or '')[:800]}".rstrip(": ")
    return getattr(exc, "reason", None) or first_line(exc)


def _runtime_image(template: Any) -> str | None:
    """The `mendix` container's image in a template (an app's or a revision's), None without one."""
    containers = list(getattr(template, "containers", None) or [])
    runtime = [c for c in containers if getattr(c, "name", None) == CONTAINER]
    return getattr(runtime[0], "image", None) if runtime else None


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def _serving(revisions: list[Any]) -> tuple[tuple[str, str | None, int, int], ...]:
    """(name, image) of the revisions that are active (or do not say) and have traffic or replicas: what
    may serve or run under the app's identity. An inactive one, or one without either, runs nothing."""
    out = []
    for revision in revisions:
        props = getattr(revision, "properties", None)
        if getattr(props, "active", None) is False:
            continue
        weight, replicas = _count(getattr(props, "traffic_weight", None)), _count(getattr(props, "replicas", None))
        if weight <= 0 and replicas <= 0:
            continue
        out.append((str(getattr(revision, "name", None) or "(unnamed)"), _runtime_image(getattr(props, "template", None)), weight, replicas))
    return tuple(out)


def _app(model: Any, name: str, revisions: list[Any] | None = None) -> App:
    props = model.properties
    template = getattr(props, "template", None) if props is not None else None
    scale = getattr(template, "scale", None)
    low = getattr(scale, "min_replicas", None)
    high = getattr(scale, "max_replicas", None)
    high = 10 if high is None else int(high)  # ARM's default (the API description's)
    low = 0 if low is None else int(low)
    status = getattr(props, "running_status", None)
    mode = getattr(getattr(props, "configuration", None), "active_revisions_mode", None)
    tags = dict(model.tags or {})
    if str(getattr(status, "value", status)) == "Stopped":
        replicas, bounds = 0, "stopped"
    else:
        replicas = high  # min = max as a release sets them; where they differ, the most that may run
        bounds = f"{high} replica{'s' if high != 1 else ''}" if low == high else f"{low}-{high} replicas"
    return App(
        name=name,
        revision=getattr(props, "latest_revision_name", None),
        image=_runtime_image(template),
        replicas=replicas,
        bounds=bounds,
        package_sha256=tags.get(PACKAGE_TAG) or None,
        role=tags.get(ROLE_TAG) or None,
        mode=SINGLE if mode is None else str(getattr(mode, "value", mode)),  # left out: ARM's default
        serving=_serving(revisions or []),
    )


def _every_page(pages: Any, head: str, what: str, unknown: str) -> list[Any]:
    """Every item of an ARM list (`pages`: an ItemPaged's by_page()), each page followed: at most
    MAX_PAGES, a repeated nextLink refused (CannotObserve: `head`, the list of `what`, `unknown`)."""
    found: list[Any] = []
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        try:
            page = next(pages)
        except StopIteration:
            return found
        found += list(page)
        link = pages.continuation_token
        if not link:
            return found
        if link in seen:
            raise CannotObserve(f"{head}: Azure's list of {what} repeats a page ({str(link)[:300]}): {unknown}")
        seen.add(link)
    raise CannotObserve(f"{head}: Azure's list of {what} went on past {MAX_PAGES} pages: {unknown}")


def read_revisions(client: Any, environment: str, subscription: str, group: str, name: str) -> list[Any]:
    """Every revision of the app `name` (ContainerAppsRevisions_ListRevisions, each page: at most
    MAX_PAGES, a repeated nextLink refused; either way the revision that serves may be the one unread)."""
    head = f"{environment}: what runs could not be read from Azure (subscription {subscription})"
    doing = f"Microsoft.App/containerApps/revisions/read of {name} in resource group {group}"
    with _azure(environment, subscription, doing):
        pages = client.container_apps_revisions.list_revisions(group, name).by_page()
        return _every_page(pages, head, f"the revisions of {name}", "what serves is not known")


def read_others(client: Any, environment: str, subscription: str, group: str, names: list[str]) -> list[App]:
    """Every container app of `group` that is not one of `names` (ContainerApps_ListByResourceGroup, each
    page: at most MAX_PAGES, a repeated nextLink refused; either way the app unread may be one no release
    made). The group gone: none."""
    from azure.core.exceptions import ResourceNotFoundError

    head = f"{environment}: what runs could not be read from Azure (subscription {subscription})"
    doing = f"Microsoft.App/containerApps/read of the container apps in resource group {group}"
    with _azure(environment, subscription, doing):
        try:
            pages = client.container_apps.list_by_resource_group(group).by_page()
            models = _every_page(pages, head, f"the container apps of resource group {group}", "what runs is not known")
        except ResourceNotFoundError as exc:
            code = getattr(getattr(exc, "error", None), "code", None)
            if code in _GONE or code is None:
                return []
            raise
    known = {n.lower() for n in names}  # ARM's names are case-insensitive
    out = []
    for model in models:
        name = str(getattr(model, "name", None) or str(getattr(model, "id", None) or "(unnamed)").rsplit("/", 1)[-1])
        if name.lower() not in known:
            out.append(_app(model, name))
    return out


def read_apps(client: Any, environment: str, subscription: str, group: str, names: list[str]) -> dict[str, App]:
    """The ones of `names` that exist in `group` and what each runs; one gone (or its group) is left out."""
    from azure.core.exceptions import ResourceNotFoundError

    found = {}
    for name in names:
        with _azure(environment, subscription, f"Microsoft.App/containerApps/read of {name} in resource group {group}"):
            try:
                model = client.container_apps.get(group, name)
            except ResourceNotFoundError as exc:
                code = getattr(getattr(exc, "error", None), "code", None)
                if code in _GONE or code is None:
                    continue
                raise
        found[name] = _app(model, name, read_revisions(client, environment, subscription, group, name))
    return found


def default_credential() -> Any:
    """azure-identity's DefaultAzureCredential (environment, workload or managed identity, Azure CLI, ...)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def observe(
    environment: str,
    subscription: str,
    group: str,
    leader: str,
    worker: str,
    *,
    workers_declared: bool = False,
    credential: Any = None,
    endpoint: str | None = None,
) -> Observed:
    """What the environment's container apps run, read from ARM (`endpoint`, default the public cloud's)
    with `credential` (default DefaultAzureCredential)."""
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    with _azure(environment, subscription, "signing in"):
        client = ContainerAppsAPIClient(
            credential if credential is not None else default_credential(),
            subscription,
            base_url=endpoint or ARM,
            # a few quick retries: the release guard waits on this before `pulumi up` declares anything
            retry_total=2,
            retry_backoff_factor=0.2,
            connection_timeout=10,
            read_timeout=30,
        )
    with client:
        apps = read_apps(client, environment, subscription, group, [leader, worker])
        others = read_others(client, environment, subscription, group, [leader, worker])
    return observed(environment, subscription, group, leader, worker, apps, workers_declared, others)
