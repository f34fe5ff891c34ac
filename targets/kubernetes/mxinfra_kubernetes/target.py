"""The Kubernetes target's `Target`: config checks, warnings, the provider and each environment's resources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mxinfra.access import EnvironmentAccess, Permission
from mxinfra.config import StackConfig
from mxinfra.environments import Environment
from mxinfra.errors import ConfigIssue
from mxinfra.target import AppContext, EnvironmentContext, Target

from .config import BLOCK, KubernetesConfig, artifact_key_of, artifact_of, check_block, claims_of, for_environment

EXISTING_NAMESPACE_WARNING = (
    "namespace {namespace} is not created by mxinfra: it must enforce the restricted Pod Security level "
    "(label pod-security.kubernetes.io/enforce=restricted), or holders of deploy (may patch the workload) or "
    "backups (may create Jobs) can run privileged or hostPath pods there; they can also mount any Secret and "
    "use any ServiceAccount of the namespace in those pods, so keep other apps' Secrets and privileged "
    "ServiceAccounts out of it"
)
SHARED_OPERATOR_NAMESPACE_WARNING = (
    "production runs in the Operator namespace {namespace}: any other stack's environment there (and its "
    "deploy or Operator access) shares the namespace's Secrets, ServiceAccounts and network; give production "
    "an Operator namespace of its own"
)
OPEN_EGRESS_WARNING = "egress to {what} admits any address on that port: list the networks to limit it to the destination"
STORAGE_UNCHECKED_WARNING = (
    "the cluster's StorageClasses were not checked ({reason}): if {key} names no class of the cluster, or the "
    "cluster has no default class, the volume claims never bind and `pulumi up` fails only when the provider times out"
)
MFA_WARNING = (
    "Kubernetes RBAC cannot require MFA or limit session length: the cluster's identity provider must "
    "enforce MFA and sessions of at most 8 hours for the groups {groups}"
)


class KubernetesTarget(Target):
    """Deploys each environment into its own namespace of a Kubernetes cluster."""

    name = "kubernetes"
    config_model = KubernetesConfig
    # A release changes the StatefulSet (plain) or the MendixApp (Operator) and the runtime's content-named
    # ConfigMap; proven under the real engine as the deploy group (tests/engine/test_release_path.py).
    release_types = ("kubernetes:apps/v1:StatefulSet", "kubernetes:core/v1:ConfigMap", "kubernetes:privatecloud.mendix.com/v1alpha1:MendixApp")

    def check(self, stack: StackConfig, block: Any, file: str = "") -> list[ConfigIssue]:
        """The block's rules that involve environments and access (in-cluster DB, local files, principals)."""
        from .cluster import kubeconfig_issues

        issues = check_block(stack, block, file)
        issues += kubeconfig_issues(block, stack.raw.is_secret(f"{BLOCK}.kubeconfig"), file)
        if block.mode == "operator" and (stack.app.name + "-").startswith("mendix-"):
            issues.append(ConfigIssue("mxinfra:app.name", "MendixApp names starting with 'mendix-' are reserved by the Operator", "rename the app", file))
        return issues

    def warnings(self, env: Environment, access: EnvironmentAccess, block: Any) -> list[str]:
        """An existing namespace must enforce Pod Security; MFA on production is the identity provider's
        job; alerts and api have no RBAC object."""
        out = []
        settings = for_environment(block, env.name)
        if settings.namespace is not None:
            out.append(EXISTING_NAMESPACE_WARNING.format(namespace=settings.namespace))
            if settings.mode == "operator" and env.is_production:
                out.append(SHARED_OPERATOR_NAMESPACE_WARNING.format(namespace=settings.namespace))
        from mxinfra.egress import egress_warnings

        from .network import open_destinations

        for what in open_destinations(settings):
            out.append(OPEN_EGRESS_WARNING.format(what=what))
        out += egress_warnings(list(settings.egress), env.name)
        roles = access.roles()
        if env.is_production and access.grants:
            groups = ", ".join(sorted({p.split(":", 1)[1] for r in roles for p in r.principals}))
            out.append(MFA_WARNING.format(groups=groups))
        for r in roles:
            if r.permission is Permission.ALERTS:
                out.append(f"alerts for {', '.join(r.principals)}: Kubernetes has no alert object; route the cluster's alerts (e.g. Alertmanager) to them")
            elif r.permission is Permission.API:
                out.append(f"api for {', '.join(r.principals)}: every Kubernetes permission is API access already; no extra Role is created")
        return out

    def artifact(self, env: Environment, block: Any) -> str | None:
        """The image (plain mode) or the Operator's sourceURL (operator mode) in effect for `env`
        (None while the block itself is invalid: its errors are reported instead)."""
        return artifact_of(block, env.name) if isinstance(block, KubernetesConfig) else None

    def artifact_key(self, env: Environment, block: Any) -> str | None:
        """The image's or the Operator sourceURL's key in effect for `env`."""
        return artifact_key_of(block, env.name) if isinstance(block, KubernetesConfig) else None

    def deploy_app(self, ctx: AppContext) -> Any:
        """A Kubernetes provider for the configured context/kubeconfig, else None (the ambient or inherited one)."""
        block: KubernetesConfig = ctx.deployment.target_config
        _check_storage_classes(ctx, block)
        if block.context is None and block.kubeconfig is None:
            return None
        import pulumi_kubernetes as k8s

        args: dict[str, Any] = {}
        if block.context:
            args["context"] = block.context
        if block.kubeconfig:
            import pulumi

            # Content carries the cluster's credentials (check() requires it to be a config secret); a
            # path is harmless but kept secret too, so neither form reaches a plan or the state in clear.
            args["kubeconfig"] = pulumi.Output.secret(block.kubeconfig)
        return k8s.Provider(ctx.naming.logical("kubernetes"), opts=ctx.opts(), **args)

    def deploy_environment(self, ctx: EnvironmentContext) -> Mapping[str, Any]:
        """The environment's namespace, workload (StatefulSet or MendixApp), data and RBAC."""
        from . import operator, plain, rbac
        from .builder import Builder
        from .layout import Layout

        block: KubernetesConfig = ctx.config
        settings = for_environment(block, ctx.environment.name)
        b = Builder(ctx, settings, Layout.of(ctx.naming, settings, ctx.labels, ctx.release_labels), provider=ctx.shared)
        outputs = operator.deploy(b) if settings.mode == "operator" else plain.deploy(b)
        rbac.deploy(b)
        return outputs

    def render(self, env: str, resources: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
        """`out_dir/kubernetes/<env>.yaml`: every object of the environment, secrets masked."""
        from .render import write

        return write(env, resources, out_dir)

    def plan_notes(self, env: str, resources: Sequence[Mapping[str, Any]]) -> list[str]:
        """The namespace, and the quota sized from the environment."""
        notes = []
        for r in resources:
            inputs = r["inputs"]
            kind = inputs.get("kind") if isinstance(inputs, dict) else None
            if kind == "ResourceQuota":
                hard = inputs.get("spec", {}).get("hard", {})
                notes.append("quota " + ", ".join(f"{k}={v}" for k, v in sorted(hard.items())))
            elif kind == "StatefulSet" and inputs.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component") == "runtime":
                notes.append(f"namespace {inputs['metadata'].get('namespace')}: pod {inputs['metadata'].get('name')}-0 is the cluster leader")
            elif kind == "MendixApp":
                notes.append(f"namespace {inputs['metadata'].get('namespace')}: the Mendix Operator runs MendixApp {inputs['metadata'].get('name')}")
        return sorted(notes)



def _under_mocks() -> bool:
    """True under the SDK's mock runtime (`mxinfra plan`, tests): no engine, and no cluster to ask."""
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.settings import get_monitor

    return isinstance(get_monitor(), MockMonitor)


def _check_storage_classes(ctx: AppContext, block: KubernetesConfig) -> None:
    """Before any object is declared, under a real engine (preview or update): stop with a config error
    when a volume claim could never bind; warn when the cluster cannot be asked."""
    claims = [c for p in ctx.deployment.environments for c in claims_of(for_environment(block, p.environment.name), p.environment.name)]
    if not claims or _under_mocks():
        return
    import os

    import pulumi
    from pulumi.runtime.config import get_config

    from mxinfra.errors import ConfigError

    from .cluster import ClusterUnreadable, preflight_issues

    kubeconfig, context = block.kubeconfig, block.context
    if kubeconfig is None and context is None:
        if ctx.component.get_provider("kubernetes::Provider") is not None:
            # The caller's own provider: its settings are outputs this program cannot read.
            pulumi.log.info("StorageClasses not checked: the Kubernetes provider is the one passed to MendixApp", resource=ctx.component)
            return
        if get_config("kubernetes:renderYamlToDirectory") or get_config("kubernetes:cluster"):
            return  # the default provider renders files, or overrides the context's cluster: no cluster as read here
        # The default provider's own config (read raw: Config.get would warn about a secret kubeconfig).
        kubeconfig, context = get_config("kubernetes:kubeconfig"), get_config("kubernetes:context")
    file = ctx.deployment.config.raw.source
    try:
        issues = preflight_issues(claims, kubeconfig, context, file, os.environ)
    except ClusterUnreadable as e:
        key = claims[0].key if len({c.key for c in claims}) == 1 else f"{BLOCK}.storageClass"
        pulumi.log.warn(STORAGE_UNCHECKED_WARNING.format(reason=e, key=key), resource=ctx.component)
        return
    if issues:
        # RunError: the engine prints the message alone, as it does the program's other config errors.
        raise pulumi.RunError(str(ConfigError(issues, file)))
