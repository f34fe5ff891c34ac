"""What `mxinfra plan` shows for a Cloud Foundry environment: the manifest a user would `cf push`, and
notes on the choices made (the next deploy's strategy among them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

APP = "pulumi-python:dynamic/cloudfoundry:App"
ROUTE = "pulumi-python:dynamic/cloudfoundry:Route"
SERVICE = "pulumi-python:dynamic/cloudfoundry:ServiceInstance"
ROLE = "pulumi-python:dynamic/cloudfoundry:SpaceRole"
GROUP_ROLE = "pulumi-python:dynamic/cloudfoundry:GroupSpaceRole"
GRANTS = "pulumi-python:dynamic/cloudfoundry:GrantExpiry"
EXPIRY_APP = "pulumi-python:dynamic/cloudfoundry:GrantExpiryApp"
SPACE = "pulumi-python:dynamic/cloudfoundry:Space"
ACTIVITY = "pulumi-python:dynamic:Resource"
SECRET = "[secret]"


def _of(resources: Sequence[Mapping[str, Any]], type_: str) -> list[Mapping[str, Any]]:
    return [r for r in resources if r["type"] == type_]


def manifest(resources: Sequence[Mapping[str, Any]], secret_names: Sequence[str] = ()) -> dict[str, Any]:
    """The app manifest equivalent to the environment's resources; secret variables as ((NAME))."""
    app = _of(resources, APP)[0]["inputs"]
    routes = [f"{r['inputs']['host']}.{r['inputs']['domain']}" for r in _of(resources, ROUTE)]
    services = [r["inputs"]["name"] for r in _of(resources, SERVICE)]
    env: dict[str, Any] = dict(app["environment"])
    secret = app.get("secretEnvironment")
    names = sorted(secret) if isinstance(secret, Mapping) else sorted(secret_names)
    for name in names:
        env[name] = f"(({name}))"  # a cf push variable: supply it with --var or --vars-file
    hc = app["healthCheck"]
    from .config import buildpack_url

    package = app["package"]
    entry = {
        "name": app["name"],
        # relative to the project directory; a repository package is a cf push variable
        "path": package.get("path") or "((PACKAGE_PATH))",
        "buildpacks": [buildpack_url(app["buildpack"])],
        "stack": app["stack"],
        "instances": app["instances"],
        "memory": f"{app['memoryMb']}M",
        "disk_quota": f"{app['diskMb']}M",
        "health-check-type": hc["type"],
        "health-check-http-endpoint": hc["endpoint"],
        "timeout": hc["timeout"],
        "health-check-invocation-timeout": hc["invocationTimeout"],
        "routes": [{"route": r} for r in routes],
        "services": services,
        "env": dict(sorted(env.items())),
        "metadata": app["metadata"],
    }
    return {"applications": [entry]}


def secret_variable_names(env_secret: Any) -> list[str]:
    """The names of the secret variables (the plan masks the whole map)."""
    return sorted(env_secret) if isinstance(env_secret, Mapping) else []


def write_manifest(env: str, resources: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """Write `out_dir/cloudfoundry/<env>/manifest.yml`."""
    if not _of(resources, APP):
        return []
    target = out_dir / "cloudfoundry" / env
    target.mkdir(parents=True, exist_ok=True)
    app = _of(resources, APP)[0]["inputs"]
    names = app.get("secretEnvironmentNames") or []
    doc = manifest(resources, names)
    path = target / "manifest.yml"
    head = (
        "# What the environment's resources declare, as a cf push manifest. Secret variables are ((placeholders)):\n"
        "# cf push -f manifest.yml -p <project>/<path> --vars-file secrets.yml (path is relative to the project; never commit the vars file).\n"
    )
    path.write_text(head + yaml.safe_dump(doc, sort_keys=False, width=1000))
    return [path]


def next_strategy(resources: Sequence[Mapping[str, Any]]) -> str:
    """How the next `pulumi up` deploys, from the activity log's last deploy of this environment."""
    app = _of(resources, APP)
    activity = [r for r in resources if r["type"] == ACTIVITY and r["name"].endswith("-activity")]
    if not app or not activity:
        return ""
    inputs = activity[0]["inputs"]
    try:
        from mxinfra.governance.activity import ActivityLog
        from mxinfra.governance.store import open_store

        last = ActivityLog(open_store(inputs["repository"])).last_deploy(inputs["environment"])
    except Exception as e:  # noqa: BLE001 (a note, not a decision: the provider decides at deploy time)
        return f"next deploy: unknown (the activity log cannot be read: {e})"
    pkg = app[0]["inputs"]["package"]
    if last is None:
        return "next deploy: first deployment (create the app, stage the package, start)"
    if last.package_sha256 == pkg["sha256"]:
        return "next deploy: the same package as deployed: settings changes roll (a CAPI rolling deployment), memory or disk changes restart all instances"
    if last.package_version == pkg["modelVersion"] and pkg["modelVersion"] != "unversioned":
        return f"next deploy: rolling (a new package of the same model version {pkg['modelVersion']})"
    return f"next deploy: stop-first (model version {last.package_version} -> {pkg['modelVersion']}: the old instances stop before the new model starts, a short outage)"


def notes(resources: Sequence[Mapping[str, Any]]) -> list[str]:
    """Plain statements of the choices the target made for one environment."""
    out = []
    strategy = next_strategy(resources)
    if strategy:
        out.append(strategy)
    for r in _of(resources, APP):
        i = r["inputs"]
        hc = i["healthCheck"]
        out.append(f"app {i['name']}: {i['instances']} x {i['memoryMb']} MB, disk {i['diskMb']} MB, stack {i['stack']}, buildpack {i['buildpack']}")
        out.append(f"health check http {hc['endpoint']}, start-up timeout {hc['timeout']} s (database sync included)")
    for r in _of(resources, SERVICE):
        i = r["inputs"]
        what = f"existing {i['existing']}" if i.get("existing") else f"{i['offering']}/{i['plan']}"
        guard = ", protected (retained on destroy)" if r.get("options", {}).get("protect") else ""
        out.append(f"service {i['name']}: {what}{guard}")
    for r in _of(resources, ROLE):
        i = r["inputs"]
        out.append(f"space role {i['type']} for {i['principal']} ({i['permission']})")
    for r in _of(resources, GROUP_ROLE):
        i = r["inputs"]
        out.append(f"space role {i['type']} for each member of UAA group {i['group']} of origin {i['origin']} ({i['permission']}; expanded through UAA on every up)")
    for r in _of(resources, SPACE):
        i = r["inputs"]
        out.append(f"space {i['name']} created by mxinfra, SSH {'allowed' if i['allowSsh'] else 'disallowed'}{', protected (retained on destroy)' if r.get('options', {}).get('protect') else ''}")
    for r in _of(resources, APP):
        if r["inputs"].get("ssh") is False:
            out.append(f"app {r['inputs']['name']}: SSH disabled (the app feature)")
    if _of(resources, GRANTS):
        out.append("production roles are time-boxed: mxinfra access grant -s STACK --principal P --permission deploy --for 8h")
        apps = _of(resources, EXPIRY_APP)
        if apps:
            i = apps[0]["inputs"]
            out.append(f"expiry app {i['name']} in space {i['space']}: removes expired grants every few minutes, as its own Space Manager identity (a pulumi up never does)")
        else:
            out.append("no expiry app (grantExpiry): expired grants are removed only by mxinfra access expire")
    return out
