"""Access: one namespaced Role per permission set, bound to the principals of `mxinfra:access`.

`rules()` is pure; `deploy()` imports pulumi_kubernetes and runs only while deploying.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mxinfra.access import Permission
from mxinfra.capabilities import NotGranted, TargetContractError

from .capabilities import CAPABILITIES
from .config import parse_principal
from .layout import Layout

if TYPE_CHECKING:
    from .builder import Builder

RBAC_GROUP = "rbac.authorization.k8s.io"
MENDIX_GROUP = "privatecloud.mendix.com"
READ = ["get", "list", "watch"]
# Permissions Kubernetes RBAC has no object for: alerts are routed by the monitoring stack, and every
# Kubernetes permission is API access already (the plan warns about both).
UNMAPPED = (Permission.ALERTS, Permission.API)


def rules(permission: Permission, layout: Layout, mode: str, secrets: Mapping[str, Any] | None = None, production: bool = False) -> list[dict[str, Any]]:
    """The RBAC rules of `permission` in the environment's namespace (empty: nothing to grant).

    `secrets`: the provider-assigned names of the environment's Secrets by kind (`secret`,
    `database-secret`: builder.Builder.secret); without it, `<app>-<env>-<kind>-*` stands for them
    (a rule naming a Secret the environment does not have is left out)."""
    names = {kind: f"{layout.naming.logical(kind)}-*" if secrets is None else secrets.get(kind) for kind in ("secret", "database-secret")}
    return [r for r in _rules(permission, layout, mode, names, production) if None not in r.get("resourceNames", ())]


def _rules(permission: Permission, layout: Layout, mode: str, names: Mapping[str, Any], production: bool = False) -> list[dict[str, Any]]:
    workload = layout.workload
    if permission is Permission.MONITOR:
        return [
            {"apiGroups": [""], "resources": ["pods", "pods/log", "events"], "verbs": READ},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": READ},
            {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]},
        ]
    if permission is Permission.DEPLOY:
        if mode == "operator":
            # Only its own MendixApp: another environment's CR in a shared Operator namespace carries that
            # environment's admin password and licence. `list` cannot be limited to names, so it is not granted.
            # Its own CR carries them too, and a patch's answer is the whole object: whoever may write it reads
            # them, so on production the Role is bound to the release identities alone (`deploy_subjects`).
            return [
                {"apiGroups": [MENDIX_GROUP], "resources": ["mendixapps"], "resourceNames": [workload], "verbs": ["get", "watch", "update", "patch"]},
                # Writing the secret constants needs no read of them.
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [names["secret"]], "verbs": ["update", "patch"]},
            ]
        return [
            {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": READ},
            # replicas 0 stops the app; restarts are a template annotation patch (kubectl rollout restart)
            {"apiGroups": ["apps"], "resources": ["statefulsets", "statefulsets/scale"], "resourceNames": [workload], "verbs": ["update", "patch"]},
            # A constant change is a release step the deploy group performs (`pulumi up`): the runtime's
            # ConfigMap is immutable and named by its content (runtime.py), so the change creates the new
            # one and deletes the old (the provider reads and watches them to await both). Nothing in it
            # is secret, and creating ConfigMaps grants nothing new: the holder already sets the pod
            # template's env.
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": [*READ, "create", "patch", "delete"]},
            # The runtime Secret holds the admin password and the storage keys: deploying writes it, never reads it.
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [names["secret"]], "verbs": ["update", "patch"]},
        ]
    if permission is Permission.BACKUPS and production:
        # A pod the holder creates may mount any Secret of the namespace and run any command
        # (capabilities.py): on production the holder follows the platform's backup jobs, starts none.
        return [
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": READ},
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": READ},
        ]
    if permission is Permission.BACKUPS:
        out: list[dict[str, Any]] = [
            # a backup is a Job (pg_dump to the file store) whose pod and log the holder follows
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": [*READ, "create", "delete"]},
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": READ},
        ]
        if mode == "plain":
            crons = [layout.naming.physical(action, max_len=52) for action in ("backup", "restore")]
            out += [
                # `mxinfra backup` makes its Jobs (and a restore's export Job) from the environment's two
                # CronJobs' templates, as `kubectl create job --from=cronjob/...` does: it reads them, no other.
                {"apiGroups": ["batch"], "resources": ["cronjobs"], "resourceNames": crons, "verbs": ["get"]},
                # `mxinfra backup download` reads the archive from the export Job's pod through the API
                # server's proxy. A pod name is not known ahead, so this is every pod of the namespace,
                # GET only: no more than the Jobs above can reach already (README, "Backups").
                {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [names["database-secret"]], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "resourceNames": [layout.name("postgres-data"), layout.name("files")], "verbs": ["get"]},
                # a restore reads whether the app runs (it stops it first, which takes the deploy permission's
                # scale right, or a recorded `instances: 0`): read only, the app's StatefulSet by name
                {"apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": [workload], "verbs": ["get"]},
            ]
        return out
    if permission is Permission.MANAGE:
        # Membership changes only through reviewed config and `pulumi up` (or the identity provider's
        # groups): a manager sees who holds what, and can neither write a RoleBinding nor `bind` a Role,
        # which would let one session bind production deploy to anyone.
        return [{"apiGroups": [RBAC_GROUP], "resources": ["roles", "rolebindings"], "verbs": READ}]
    return []


def deploy_subjects(principals: list[str], mode: str, production: bool, release_identities: list[str]) -> tuple[list[str], list[str]]:
    """(bound, left out) of `deploy`'s principals: in operator mode on production only the release
    identities are bound, since writing the MendixApp reads its admin password and licence (`_rules`)."""
    if mode != "operator" or not production:
        return list(principals), []
    return [p for p in principals if p in release_identities], [p for p in principals if p not in release_identities]


def subject(principal: str) -> dict[str, str]:
    """The RoleBinding subject of a principal (check() has refused unknown forms)."""
    parsed = parse_principal(principal)
    assert parsed is not None
    kind, name, namespace = parsed
    if kind == "ServiceAccount":
        return {"kind": kind, "name": name, "namespace": namespace or ""}
    return {"kind": kind, "name": name, "apiGroup": RBAC_GROUP}


def deploy(b: Builder) -> list[str]:
    """A Role and RoleBinding per granted permission; returns the permissions the target declares not
    granted (capabilities.py); a declared one that renders no rule is a TargetContractError."""
    import pulumi_kubernetes as k8s

    lay = b.layout
    secrets = {kind: b.secret_name(kind) for kind in ("secret", "database-secret") if kind in b.created}
    unmapped = []
    for role in b.ctx.access.roles():
        rs = rules(role.permission, lay, b.settings.mode, secrets, production=b.ctx.environment.is_production)
        if not rs:
            if not isinstance(CAPABILITIES.entries.get(role.permission), NotGranted):
                # declared as granting something, rendered as nothing: the holder would silently get nothing
                raise TargetContractError(
                    f"kubernetes: capabilities.py declares {role.permission.value!r} granted, but access._rules renders no rule for it"
                )
            unmapped.append(role.permission.value)
            continue
        principals = list(role.principals)
        if role.permission is Permission.DEPLOY:
            principals, _ = deploy_subjects(principals, b.settings.mode, b.ctx.environment.is_production, list(b.ctx.config.releaseIdentities))
            if not principals:
                continue  # target.warnings says who holds nothing
        name = lay.name(role.permission.value)
        meta = lay.metadata(name, per_release=False, annotations={"mxinfra.io/permission": role.permission.value})
        r = k8s.rbac.v1.Role(b.logical(f"role-{role.permission.value}"), metadata=meta, rules=rs, opts=b.opts())
        k8s.rbac.v1.RoleBinding(
            b.logical(f"rolebinding-{role.permission.value}"),
            metadata=meta,
            role_ref={"apiGroup": RBAC_GROUP, "kind": "Role", "name": name},
            subjects=[subject(p) for p in principals],
            opts=b.opts(depends_on=[r]),
        )
    return unmapped
