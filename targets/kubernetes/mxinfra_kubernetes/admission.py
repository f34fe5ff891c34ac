"""Production's release guard: a built-in ValidatingAdmissionPolicy and its binding per production
environment (admissionregistration.k8s.io/v1: no controller, no webhook), so that only the release
identities change what runs there.

RBAC only adds: the deploy group keeps what it needs on production (scale, `kubectl rollout restart`;
in operator mode the deploy Role is the release identities' alone, since writing the MendixApp reads its
admin password: access.deploy_subjects), and any other binding (a ClusterRole such as `edit`, granted for another reason) adds more. The policy
is a deny that holds whatever RBAC grants. For every identity except `mxinfra:kubernetes.releaseIdentities`
and cluster administrators (`system:masters`: they bypass authorization and can delete the policy, so
refusing them would only break the platform's own steps) it refuses, in the environment's namespace:

- a change of the runtime StatefulSet's pod template (`kubectl set image`, env, containers, volumes, its
  labels, any template annotation but `kubectl.kubernetes.io/restartedAt`), or of any field of the
  MendixApp's spec but `replicas` (`sourceURL`, runtime version, runtime settings, and every field of the
  Operator's CRD that mxinfra does not set, such as the pods' annotations);
- a change of the `mxinfra.io/*` annotations on the workload (the release's package and configuration
  fingerprint, which `mxinfra drift` compares);
- creating, changing or deleting the runtime's ConfigMaps (`<app>-<env>-config-*`) and Secrets
  (`<app>-<env>-secret-*`, `<app>-<env>-database-secret-*`): a deleted and recreated ConfigMap of the same
  name would change the configuration under an unchanged template;
- creating, changing or deleting the backup Jobs' scripts (`<app>-<env>-backup-scripts`): the nightly
  backup and every restore run them with the database's credentials, so whoever writes them runs code
  against production's data (the deploy group may write ConfigMaps: a constant change creates one).

Once one of those is being deleted (by a release identity: the deletion itself is refused to others), an
update that only removes its finalizers passes: it is the garbage collector finishing the deletion.

Replicas (`kubectl scale`, the scale subresource, or the MendixApp's `replicas`) are not refused: whoever
holds deploy may stop or scale the app in an incident; `mxinfra drift` names a count the log does not record.

Pure (no Pulumi imports): `deploy` takes the builder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .config import parse_principal

if TYPE_CHECKING:
    from .builder import Builder

API_VERSION = "admissionregistration.k8s.io/v1"
ALWAYS_EXEMPT_GROUP = "system:masters"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _cel(value: str) -> str:
    """A CEL string literal (single-quoted, escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _cel_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_cel(v) for v in values) + "]"


def release_condition(identities: Sequence[str]) -> str:
    """A CEL expression true when the request comes from a release identity or a cluster administrator."""
    groups, users = [ALWAYS_EXEMPT_GROUP], []
    for principal in identities:
        parsed = parse_principal(principal)
        if parsed is None:
            continue  # check() refused it
        kind, name, namespace = parsed
        if kind == "Group":
            groups.append(name)
        elif kind == "User":
            users.append(name)
        else:
            users.append(f"system:serviceaccount:{namespace}:{name}")
    out = f"request.userInfo.groups.exists(g, g in {_cel_list(groups)})"
    if users:
        out += f" || request.userInfo.username in {_cel_list(users)}"
    return out


def _same_map(new: str, old: str, ignore: str) -> str:
    """CEL: the string maps `new` and `old` (fields that may be absent) agree on every key `ignore` accepts."""
    return (
        f"(!has({new}) || {new}.all(k, {ignore} || (has({old}) && k in {old} && {old}[k] == {new}[k])))"
        f" && (!has({old}) || {old}.all(k, {ignore} || (has({new}) && k in {new})))"
    )


def _same(new: str, old: str) -> str:
    """CEL: the fields `new` and `old` (either may be absent) are both absent or equal."""
    return f"(has({new}) == has({old}) && (!has({new}) || {new} == {old}))"


def _none_added(new: str, old: str) -> str:
    """CEL: every element of the list `new` (which may be absent) is in the list `old` (which may be absent)."""
    return f"(!has({new}) || {new}.all(x, has({old}) && x in {old}))"


def _finalizers_released() -> str:
    """CEL: an UPDATE of an object already being deleted that only removes finalizers: the garbage
    collector's last step of a foreground deletion (`foregroundDeletion`, `orphan`), which it takes as its
    own identity (`system:serviceaccount:kube-system:generic-garbage-collector` where the controllers use
    service-account credentials, as kubeadm's do). Refusing it leaves the object, and the `pulumi up` or
    destroy that deleted it, waiting for good; only a release identity could start that deletion here."""
    kept = ("data", "metadata.labels", "metadata.annotations", "metadata.ownerReferences")
    return (
        "request.operation == 'UPDATE' && has(oldObject.metadata.deletionTimestamp)"
        f" && {_none_added('object.metadata.finalizers', 'oldObject.metadata.finalizers')}"
        f" && {' && '.join(_same(f'object.{f}', f'oldObject.{f}') for f in kept)}"
        f" && (request.resource.resource != 'configmaps' || {_same('object.binaryData', 'oldObject.binaryData')})"
        f" && (request.resource.resource != 'secrets' || {_same('object.type', 'oldObject.type')})"
    )




def policy_spec(namespace: str, workload: str, mode: str, names: dict[str, str], identities: Sequence[str], environment: str, scripts: str | None = None) -> dict[str, Any]:
    """The ValidatingAdmissionPolicy spec guarding one production environment. `names`: the name prefixes
    of the runtime's ConfigMaps and Secrets (`config`, `secret`, `database-secret`); `scripts`: the name of
    the backup Jobs' scripts ConfigMap."""
    who = ", ".join(identities) or "none configured in mxinfra:kubernetes.releaseIdentities"
    refused = f"production environment {environment} ({namespace}): only its release identities ({who}) and cluster administrators may"
    fix = "release through `pulumi up` as the release identity"
    prefixes = sorted(f"{p}-" for p in names.values())
    if mode == "operator":
        workload_rule = {"apiGroups": ["privatecloud.mendix.com"], "apiVersions": ["*"], "resources": ["mendixapps"], "operations": ["UPDATE"]}
        resource = "mendixapps"
        # The whole spec but replicas, not the fields a release sets: the Operator's CRD has more (pod
        # annotations and labels, leader selection, metrics, service annotations), each changing what runs.
        runs = _same_map("object.spec", "oldObject.spec", "k == 'replicas'")
        what = f"change MendixApp {workload}'s spec (source, runtime, settings, pod annotations; its replicas excepted)"
    else:
        workload_rule = {"apiGroups": ["apps"], "apiVersions": ["*"], "resources": ["statefulsets"], "operations": ["UPDATE"]}
        resource = "statefulsets"
        tpl, old_tpl = "object.spec.template.metadata", "oldObject.spec.template.metadata"
        runs = (
            "object.spec.template.spec == oldObject.spec.template.spec"
            f" && {_same(f'{tpl}.labels', f'{old_tpl}.labels')}"
            f" && {_same_map(f'{tpl}.annotations', f'{old_tpl}.annotations', f'k == {_cel(RESTARTED_AT)}')}"
        )
        what = f"change StatefulSet {workload}'s pod template (image, env, containers, volumes; `kubectl rollout restart` excepted)"
    is_workload = f"request.resource.resource == {_cel(resource)} && request.name == {_cel(workload)}"
    annotations = _same_map("object.metadata.annotations", "oldObject.metadata.annotations", "!k.startsWith('mxinfra.io/')")
    runtime_objects = f"request.resource.resource in ['configmaps', 'secrets'] && ({' || '.join(f'request.name.startsWith({_cel(p)})' for p in prefixes)})"
    scripts_object = f"request.resource.resource == 'configmaps' && request.name == {_cel(scripts)}" if scripts else "false"
    released = _finalizers_released()
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "resourceRules": [
                workload_rule,
                {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps", "secrets"], "operations": ["CREATE", "UPDATE", "DELETE"]},
            ],
        },
        "matchConditions": [{"name": "not-a-release-identity", "expression": f"!({release_condition(identities)})"}],
        "validations": [
            {"expression": f"!({is_workload}) || ({runs})", "reason": "Forbidden", "message": f"{refused} {what}: {fix}"},
            {
                "expression": f"!({is_workload}) || ({annotations})",
                "reason": "Forbidden",
                "message": f"{refused} change the mxinfra.io/* annotations of {workload} (the release's package and configuration): {fix}",
            },
            # An owner that does not exist has the garbage collector delete the workload (RBAC gives deploy no
            # delete, and a DELETE is not matched here); a finalizer holds a deletion up. Only additions are
            # refused: the garbage collector itself removes finalizers (foregroundDeletion, orphan) of a
            # workload the platform deletes, as an identity this policy does not exempt.
            {
                "expression": f"!({is_workload}) || ({_none_added('object.metadata.ownerReferences', 'oldObject.metadata.ownerReferences')}"
                f" && {_none_added('object.metadata.finalizers', 'oldObject.metadata.finalizers')})",
                "reason": "Forbidden",
                "message": f"{refused} add owner references or finalizers to {workload} (an owner that does not exist has the garbage collector delete it): {fix}",
            },
            {
                "expression": f"!({runtime_objects}) || ({released})",
                "reason": "Forbidden",
                "message": f"{refused} create, change or delete the runtime's ConfigMaps and Secrets ({', '.join(p + '*' for p in prefixes)}): {fix}",
            },
            *(
                [{"expression": f"!({scripts_object}) || ({released})", "reason": "Forbidden", "message": f"{refused} create, change or delete the backup Jobs' scripts ({scripts}): they run with the database's credentials: {fix}"}]
                if scripts
                else []
            ),
        ],
    }


def policy_name(namespace: str, workload: str) -> str:
    """The cluster-wide name of an environment's policy and binding."""
    return f"mxinfra-{workload}-release-only" if namespace == workload else f"mxinfra-{namespace}-{workload}-release-only"


def deploy(b: Builder) -> None:
    """The policy and its binding, for a production environment (cluster-scoped: the platform identity
    creates them with the environment; a release never changes them)."""
    import pulumi_kubernetes as k8s

    from .backups import scripts_name

    lay, env = b.layout, b.ctx.environment
    names = {kind: b.logical(kind) for kind in ("secret", "database-secret")}
    names["config"] = lay.name("config")
    identities = list(b.ctx.config.releaseIdentities)
    name = policy_name(lay.namespace, lay.workload)
    meta = lay.metadata(name, per_release=False, namespaced=False)
    policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
        b.logical("release-policy"),
        metadata=meta,
        spec=policy_spec(lay.namespace, lay.workload, b.settings.mode, names, identities, env.name, scripts_name(lay) if b.settings.mode == "plain" else None),
        opts=b.opts(),
    )
    k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
        b.logical("release-policy-binding"),
        metadata=meta,
        spec={"policyName": name, "validationActions": ["Deny"]},
        opts=b.opts(depends_on=[policy]),
    )
