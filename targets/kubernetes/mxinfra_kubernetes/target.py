"""The Kubernetes target's `Target`: config checks, warnings, the provider and each environment's resources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mxinfra.access import EnvironmentAccess, Permission
from mxinfra.config import StackConfig
from mxinfra.environments import Environment
from mxinfra.errors import ConfigIssue
from mxinfra.target import AppContext, Deployment, EnvironmentContext, Target

from .capabilities import CAPABILITIES
from .config import BLOCK, PLACEHOLDER, KubernetesConfig, artifact_key_of, artifact_of, check_block, claims_of, for_environment

if TYPE_CHECKING:
    from mxinfra.drift import Observed

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
OPERATOR_DEPLOY_WARNING = (
    "deploy of {principals} binds nothing on production in operator mode: the MendixApp holds the admin password "
    "and licence, and whoever may write it reads them (a patch's answer is the whole object); only the release "
    "identities ({key}) hold deploy there, so a scale or restart is a `pulumi up` of the pipeline"
)
NO_RELEASE_IDENTITY_WARNING = (
    "{key} is empty: production's admission policy lets only cluster administrators (system:masters) change "
    "what runs, so `pulumi up` of a release as the deploy group is refused there; set it to the group your "
    "release pipeline runs as (and grant that group deploy)"
)
UNCOMPARED_WARNING = "what runs was not compared with the activity log ({reason}): an unrecorded change (e.g. `kubectl set image`) goes unnoticed by this run"
MFA_WARNING = (
    "Kubernetes RBAC cannot require MFA or limit session length: the cluster's identity provider must "
    "enforce MFA and sessions of at most 8 hours for the groups {groups}"
)


class KubernetesTarget(Target):
    """Deploys each environment into its own namespace of a Kubernetes cluster."""

    name = "kubernetes"
    config_model = KubernetesConfig
    sdk_modules = tuple(f"pulumi_kubernetes.{m}" for m in ("core.v1", "meta.v1", "apps.v1", "batch.v1", "networking.v1", "policy.v1", "rbac.v1", "admissionregistration.v1", "apiextensions"))
    # A release changes the StatefulSet (plain) or the MendixApp (Operator) and the runtime's content-named
    # ConfigMap; proven under the real engine as the deploy group, and on production as the release identity
    # its admission policy admits (tests/engine/test_release_path.py).
    release_types = ("kubernetes:apps/v1:StatefulSet", "kubernetes:core/v1:ConfigMap", "kubernetes:privatecloud.mendix.com/v1alpha1:MendixApp")
    capabilities = CAPABILITIES

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
        if env.is_production and not block.releaseIdentities:
            out.append(NO_RELEASE_IDENTITY_WARNING.format(key=f"{BLOCK}.releaseIdentities"))
        from mxinfra.access import Permission

        from .access import deploy_subjects

        for role in access.roles():
            if role.permission is Permission.DEPLOY:
                _, left_out = deploy_subjects(list(role.principals), settings.mode, env.is_production, list(block.releaseIdentities))
                if left_out:
                    out.append(OPERATOR_DEPLOY_WARNING.format(principals=", ".join(left_out), key=f"{BLOCK}.releaseIdentities"))
        from mxinfra.backups import of_environment, opt_out_warning

        from .backups import job_image, unrestricting

        if (no_backups := opt_out_warning(env, of_environment(env))) is not None:
            out.append(no_backups)
        elif settings.mode == "plain" and unrestricting(image := job_image(settings)):
            from mxinfra.backup_archive import RESTRICTING_VERSIONS

            where = f"{settings.paths['database']}.inCluster.image" if settings.database is not None and settings.database.inCluster is not None else f"{settings.paths['backups']}.image"
            out.append(
                f"the restore Job's pg_restore ({image}) does not write \\restrict, so `mxinfra backup restore` refuses to run a dump "
                f"through psql with it (a crafted dump could run psql's meta-commands): use {RESTRICTING_VERSIONS} ({where})"
            )
        if no_backups is None and env.is_production and settings.mode == "plain":
            from .backups import EXTERNAL_IMAGE, TRANSFER_IMAGE, transfer_image, uses_rclone

            if settings.database is not None and settings.database.url is not None and job_image(settings) == EXTERNAL_IMAGE:
                out.append(f"the backup Job runs {EXTERNAL_IMAGE} by tag, with the database's credentials: pin it by digest with {settings.paths['backups']}.image")
            if uses_rclone(settings) and transfer_image(settings) == TRANSFER_IMAGE:
                out.append(f"the backup Jobs' object-storage steps run {TRANSFER_IMAGE} by tag, with the stores' credentials: pin it by digest with {settings.paths['backups']}.transferImage")
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

    def app_image(self, env: Environment, block: Any) -> str | None:
        """The image `pulumi up` verifies holds the package: plain mode's `image`, or the one an operator
        `oci-image://` sourceURL names (the Operator runs it); None for an MDA URL."""
        from mxinfra.artifacts import OCI_SCHEME

        if not isinstance(block, KubernetesConfig):
            return None
        artifact = artifact_of(block, env.name)
        if for_environment(block, env.name).mode != "operator":
            return artifact
        return artifact[len(OCI_SCHEME) :] if artifact is not None and artifact.startswith(OCI_SCHEME) else None

    def running(self, deployment: Deployment, environment: str, base_dir: Path) -> Observed:
        """The environment's StatefulSet (plain) or MendixApp (operator), read from the cluster the stack
        deploys to, as `mxinfra drift` runs: the block's kubeconfig/context, else the stack's
        `kubernetes:kubeconfig`/`kubernetes:context`, else KUBECONFIG or ~/.kube/config."""
        from mxinfra.drift import CannotObserve

        from .cluster import ClusterUnreadable, access_for

        try:
            kubeconfig, context = _cli_cluster(deployment, base_dir)
            return observe(access_for(kubeconfig, context, cwd=base_dir), deployment, environment)
        except ClusterUnreadable as e:
            raise CannotObserve(f"{environment}: what runs could not be read from the cluster: {e}") from None

    def backup_actions(self, deployment: Deployment, environment: str, base_dir: Path) -> Any:
        """`mxinfra backup` on a plain environment (backup_actions.ClusterActions), reaching the cluster as
        `mxinfra drift` does; a UserError where the environment has no backups to act on."""
        from mxinfra.backups import of_environment
        from mxinfra.errors import UserError

        from .backup_actions import ClusterActions
        from .cluster import ClusterUnreadable, access_for
        from .layout import Layout

        prepared = deployment.environment(environment)
        settings = for_environment(deployment.target_config, environment)
        if settings.mode != "plain":
            raise UserError(f"{environment} runs in operator mode: its backups are the Operator's database plan's, not mxinfra's")
        if not of_environment(prepared.environment).enabled:
            raise UserError(f"{environment} has no backups ({prepared.environment.config_path}.backups.enabled is false)")
        try:
            kubeconfig, context = _cli_cluster(deployment, base_dir)
            access = access_for(kubeconfig, context, cwd=base_dir)
        except ClusterUnreadable as e:
            raise UserError(f"{environment}: the cluster cannot be reached: {e}") from None
        return ClusterActions(access, Layout.of(prepared.naming, settings, prepared.labels), prepared.environment)

    def deploy_app(self, ctx: AppContext) -> Any:
        """A Kubernetes provider for the configured context/kubeconfig, else None (the ambient or inherited one)."""
        block: KubernetesConfig = ctx.deployment.target_config
        _check_storage_classes(ctx, block)
        _check_cluster(ctx, block)
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
        from . import access, operator, runtime
        from .builder import Builder
        from .layout import Layout

        block: KubernetesConfig = ctx.config
        settings = for_environment(block, ctx.environment.name)
        b = Builder(ctx, settings, Layout.of(ctx.naming, settings, ctx.labels, ctx.release_labels), provider=ctx.shared)
        outputs = operator.deploy(b) if settings.mode == "operator" else runtime.deploy(b)
        access.deploy(b)
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



_CALLER_PROVIDER = "the Kubernetes provider is the one passed to MendixApp"
_RENDERING = "the default provider renders files (kubernetes:renderYamlToDirectory)"


def _program_cluster(ctx: AppContext, block: KubernetesConfig) -> tuple[str | None, str | None] | str:
    """(kubeconfig, context) of the cluster this program's provider deploys to, or why it cannot be known."""
    from pulumi.runtime.config import get_config

    kubeconfig, context = block.kubeconfig, block.context
    if kubeconfig is None and context is None:
        if ctx.component.get_provider("kubernetes::Provider") is not None:
            return _CALLER_PROVIDER  # its settings are outputs this program cannot read
        if get_config("kubernetes:renderYamlToDirectory"):
            return _RENDERING
        if get_config("kubernetes:cluster"):
            return "the default provider overrides the context's cluster (kubernetes:cluster)"
        # The default provider's own config (read raw: Config.get would warn about a secret kubeconfig).
        kubeconfig, context = get_config("kubernetes:kubeconfig"), get_config("kubernetes:context")
    return kubeconfig, context


def _cli_cluster(deployment: Deployment, base_dir: Path) -> tuple[str | None, str | None]:
    """(kubeconfig, context) as `pulumi up` would find them, read outside the engine: a secret kubeconfig
    is asked of `pulumi config get` (the stack's secrets provider decrypts it, as for `pulumi up`)."""
    from .cluster import ClusterUnreadable

    block: KubernetesConfig = deployment.target_config
    raw, stack = deployment.config.raw.values, deployment.config.stack
    if block.kubeconfig is not None or block.context is not None:
        key, by_path, kubeconfig, context = f"{BLOCK}.kubeconfig", True, block.kubeconfig, block.context
    else:
        key, by_path, kubeconfig, context = "kubernetes:kubeconfig", False, raw.get("kubernetes:kubeconfig"), raw.get("kubernetes:context")
    if kubeconfig == PLACEHOLDER:
        import subprocess

        argv = ["pulumi", "config", "get", *(["--path"] if by_path else []), key, "--stack", stack]
        try:
            done = subprocess.run(argv, cwd=base_dir, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            raise ClusterUnreadable(f"{key} is a secret, and `{' '.join(argv)}` did not run ({e.__class__.__name__})") from None
        if done.returncode != 0:
            raise ClusterUnreadable(f"{key} is a secret, and `{' '.join(argv)}` could not decrypt it: {done.stderr.strip()[:200]}") from None
        kubeconfig = done.stdout.rstrip("\n")
    return (None if kubeconfig is None else str(kubeconfig)), (None if context is None else str(context))


def observe(access: Any, deployment: Deployment, environment: str) -> Observed:
    """What runs in `environment`, read through `access` (a cluster.ClusterAccess)."""
    from .layout import Layout
    from .running import SECRET_KINDS, observe_operator, observe_plain

    prepared = deployment.environment(environment)
    settings = for_environment(deployment.target_config, environment)
    lay = Layout.of(prepared.naming, settings, prepared.labels)
    prefixes = [prepared.naming.logical(kind) for kind in SECRET_KINDS]
    if settings.mode == "operator":
        return observe_operator(access, environment, lay.namespace, lay.workload, prefixes)
    return observe_plain(access, environment, lay.namespace, lay.workload, prefixes)


def _check_cluster(ctx: AppContext, block: KubernetesConfig) -> None:
    """Before any object is declared, under a real engine (preview or update): each environment's existing
    namespace must not be labelled as another app's, tier's or environment's; and what runs must be what
    the activity log's last records say (mxinfra.drift), or the run stops naming every unrecorded change."""
    from mxinfra.release_guard import guard, under_mocks

    if under_mocks():
        return
    import pulumi

    from .cluster import ClusterUnreadable, Unsupported, access_for

    found = _program_cluster(ctx, block)
    if isinstance(found, str):
        if found != _RENDERING:  # rendering files: nothing runs that this program could compare
            pulumi.log.warn(UNCOMPARED_WARNING.format(reason=found), resource=ctx.component)
        return
    kubeconfig, context = found
    d = ctx.deployment
    try:
        access = access_for(kubeconfig, context)
        _check_namespace_labels(ctx, block, access)
        guard(d, lambda env: observe(access, d, env), ctx.component, Path.cwd(), unreadable=(ClusterUnreadable,), source="the cluster")
    except Unsupported as e:
        pulumi.log.warn(UNCOMPARED_WARNING.format(reason=e), resource=ctx.component)
    except ClusterUnreadable as e:
        # Fail closed: the identity that deploys can read its own workload and namespaces' labels.
        raise pulumi.RunError(f"what runs could not be read from the cluster to compare it with the activity log: {e}") from None


def _check_namespace_labels(ctx: AppContext, block: KubernetesConfig, access: Any) -> None:
    """An existing namespace labelled as another app's, tier's or environment's stops the run (config error)."""
    import pulumi

    from mxinfra.errors import ConfigError

    from .cluster import Forbidden, get_object
    from .config import default_namespace, namespace_label_issues

    d = ctx.deployment
    app, file = d.config.app.name, d.config.raw.source
    issues = []
    for p in d.environments:
        env = p.environment
        s = for_environment(block, env.name)
        ns = s.namespace or default_namespace(app, env.name)
        try:
            found = get_object(access, f"/api/v1/namespaces/{ns}", f"namespace {ns}")
        except Forbidden as e:
            # Namespaces are cluster-scoped: a deploy group cannot read them. The platform identity, which
            # creates environments (and their Roles), can.
            pulumi.log.info(f"{env.name}: the labels of namespace {ns} were not checked ({e})", resource=ctx.component)
            continue
        if found is None:
            continue
        labels = (found.get("metadata") or {}).get("labels") or {}
        key = s.paths["namespace"] if s.namespace is not None else f"{BLOCK}.environments.{env.name}.namespace"
        issues += namespace_label_issues(ns, labels, app, env, key, file)
    if issues:
        raise pulumi.RunError(str(ConfigError(issues, file)))


def _check_storage_classes(ctx: AppContext, block: KubernetesConfig) -> None:
    """Before any object is declared, under a real engine (preview or update): stop with a config error
    when a volume claim could never bind; warn when the cluster cannot be asked."""
    from mxinfra.release_guard import under_mocks

    from .backups import claim as backups_claim

    claims = [c for p in ctx.deployment.environments for c in claims_of(for_environment(block, p.environment.name), p.environment.name)]
    claims += [c for p in ctx.deployment.environments if (c := backups_claim(for_environment(block, p.environment.name), p.environment)) is not None]
    if not claims or under_mocks():
        return
    import os

    import pulumi

    from mxinfra.errors import ConfigError

    from .cluster import ClusterUnreadable, preflight_issues

    found = _program_cluster(ctx, block)
    if isinstance(found, str):
        if found == _CALLER_PROVIDER:
            pulumi.log.info(f"StorageClasses not checked: {found}", resource=ctx.component)
        return  # rendering files, or the context's cluster overridden: no cluster as read here
    kubeconfig, context = found
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
