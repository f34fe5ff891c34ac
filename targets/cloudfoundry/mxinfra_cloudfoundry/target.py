"""The Cloud Foundry target: one app per environment on the cf-mendix-buildpack, its services, route and
space roles, all as Pulumi dynamic resources over the Cloud Controller v3 API (no Pulumi Cloud Foundry
provider can be installed from a package registry)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mxinfra.checks import plain_text
from mxinfra.errors import ConfigIssue
from mxinfra.target import AppContext, EnvironmentContext, Target

from .capabilities import CAPABILITIES
from .config import MIN_MEMORY_MB, SECRET_VARIABLE, CloudFoundryConfig

if TYPE_CHECKING:
    from mxinfra.access import EnvironmentAccess
    from mxinfra.config import StackConfig
    from mxinfra.drift import Observed
    from mxinfra.environments import Environment
    from mxinfra.target import Deployment

BLOCK = "mxinfra:cloudfoundry"


class CloudFoundryTarget(Target):
    """Mendix on Cloud Foundry (SAP BTP, Tanzu, IBM Cloud): buildpack app, marketplace services, space roles."""

    name = "cloudfoundry"
    config_model = CloudFoundryConfig
    # A release updates the app (package, build, droplet, variables, processes, metadata).
    release_types = ("pulumi-python:dynamic/cloudfoundry:App",)
    capabilities = CAPABILITIES

    def check(self, stack: StackConfig, block: CloudFoundryConfig, file: str = "") -> list[ConfigIssue]:
        """Principals and permissions, production's MFA origins, the buildpack's memory floor, names."""
        from . import access, spaces

        issues = []
        production = [e.name for e in stack.environments if e.is_production]
        issues += access.check_entries(stack.access, production, block.mfaOrigins, file)
        for env in stack.environments:
            if env.memory_mb < MIN_MEMORY_MB:
                issues.append(
                    ConfigIssue(
                        f"{env.config_path}.memory",
                        f"{env.memory_mb} MB is too little for the cf-mendix-buildpack (it runs a Mendix runtime in {MIN_MEMORY_MB} MB or more)",
                        f"use {MIN_MEMORY_MB} or more",
                        file,
                    )
                )
            if block.storage is None and env.instances > 1:
                issues.append(
                    ConfigIssue(
                        f"{BLOCK}.storage",
                        f"environment {env.name!r} runs {env.instances} instances, which cannot share files on local disk",
                        "bind an object store: storage: {offering: objectstore, plan: s3-standard} (or existing: NAME)",
                        file,
                    )
                )
        issues += _credential_issues(stack, block.credentials, "credentials", file)
        issues += stack.environment_key_issues(block.hostnames, f"{BLOCK}.hostnames", file)
        issues += _buildpack_issues(stack, block, file)
        issues += spaces.check(stack, block, file)
        issues += _grant_expiry_issues(stack, block, file)
        for i, env_name in enumerate(block.releaseData):
            if env_name not in production:
                issues.append(
                    ConfigIssue(f"{BLOCK}.releaseData[{i}]", f"{env_name!r} is not a production environment of this stack", "only production data is protected; list production environments to release", file)
                )
        return issues

    def warnings(self, env: Environment, access: EnvironmentAccess, block: CloudFoundryConfig | None) -> list[str]:
        """What the plan should say about this environment on Cloud Foundry."""
        out = []
        if block is not None and env.is_production and env.name in block.releaseData:
            out.append("production service instances are released: a destroy deletes the database and the files")
        if block is not None and block.storage is None:
            out.append("no object store: uploaded files live on the instance's disk and are lost on every restart")
        if block is not None and env.is_production and not block.createSpaces:
            space, guid, _ = block.space_of(env.name, env.role.value)
            out.append(
                f"SSH is disabled on the app, but space {space or guid} is not created by mxinfra, so whether SSH is allowed in it is the "
                f"platform's setting: disallow it (cf disallow-space-ssh {space or guid}), or let mxinfra create the space (createSpaces: true)"
            )
        if block is not None and env.is_production and block.grantExpiry is None and access.grants:
            out.append(
                "no grantExpiry: production grants are removed only when someone runs `mxinfra access expire` (a file:// repository "
                "is on this machine, out of the expiry app's reach; use an s3:// or azblob:// repository and configure grantExpiry)"
            )
        return out

    def artifact(self, env: Environment, block: CloudFoundryConfig | None) -> str | None:
        """The buildpack release the package is staged with: swapping it is a deployment."""
        return block.buildpack if block is not None else None

    def artifact_key(self, env: Environment, block: CloudFoundryConfig | None) -> str | None:
        """Where the buildpack is configured."""
        return f"{BLOCK}.buildpack"

    def running(self, deployment: Deployment, environment: str, base_dir: Path) -> Observed:
        """The environment's app as it runs, read from the Cloud Controller with the stack block's credentials
        (under `pulumi up`) or the CF_* variables (running.py says what is read and compared). Unreadable:
        mxinfra.drift.CannotObserve (exit 2), naming the API, the app and what to fix."""
        from .running import observe, service_names

        prepared = deployment.environment(environment)
        role = prepared.environment.role.value
        instances = [name for name in service_names(deployment.target_config, prepared.naming) if name is not None]
        return observe(deployment.target_config, environment, role, prepared.naming.physical(max_len=63), instances=instances)

    def backup_actions(self, deployment: Deployment, environment: str, base_dir: Path) -> Any:
        """`mxinfra backup download|restore` through service keys (backup_actions.KeyActions), signed in
        with the stack block's credentials or the CF_* variables, as `running` is."""
        from .backup_actions import connect

        return connect(deployment, environment)

    def deploy_app(self, ctx: AppContext) -> None:
        """Before anything is declared, under a real engine (preview or update), the release guard: what
        runs must be what the activity log's last signed records say (mxinfra.drift), or the run stops
        naming every unrecorded change (and a production environment now declared another tier)."""
        from mxinfra.release_guard import guard, under_mocks

        if not under_mocks():
            guard(ctx.deployment, lambda env: self.running(ctx.deployment, env, Path.cwd()), ctx.component, Path.cwd(), source="the Cloud Controller")
        return None

    def deploy_environment(self, ctx: EnvironmentContext) -> Mapping[str, Any]:
        """The space (with createSpaces), services, route, app (package, build, droplet, processes) and space
        roles of one environment; on production the grants' report and the expiry app."""
        from . import access as _access  # noqa: F401 (the mapping the roles use)
        from . import database, runtime, space_roles, spaces, storage

        cfg: CloudFoundryConfig = ctx.config
        space = spaces.create(ctx, cfg)
        after = [space] if space is not None else []
        db = database.create(ctx, cfg, after)
        files = storage.create(ctx, cfg, after)
        app = runtime.create(ctx, cfg, [s for s in (db, files) if s is not None], after)
        roles = space_roles.standing_roles(ctx, cfg, after)
        expiry_app = space_roles.create_expiry_app(ctx, cfg) if ctx.environment.is_production and cfg.grantExpiry is not None else None
        report = space_roles.grant_expiry(ctx, cfg, after) if ctx.environment.is_production else None
        ctx.runtime_resource(app.app)
        outputs: dict[str, Any] = {
            "url": app.url,
            "app": app.name,
            "appGuid": app.app.guid,
            "roles": {k: v.members if hasattr(v, "members") else v.guid for k, v in roles.items()},  # a group's: user id -> role
        }
        if report is not None:
            outputs["grantExpiry"] = report.urn
        if expiry_app is not None:
            outputs["grantExpiryApp"] = expiry_app.guid
        return outputs

    def render(self, env: str, resources: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
        """`cloudfoundry/<env>/manifest.yml`: what a user would `cf push`, secrets as ((placeholders))."""
        from . import render

        return render.write_manifest(env, resources, out_dir)

    def plan_notes(self, env: str, resources: Sequence[Mapping[str, Any]]) -> list[str]:
        """The next deploy's strategy, processes, services, protections and roles."""
        from . import render

        return render.notes(resources)


def _credential_issues(stack: StackConfig, credentials: Any, key: str, file: str) -> list[ConfigIssue]:
    """Secret parts of a credentials block stored in plain text."""
    if credentials is None:
        return []
    secrets = [(f"{key}.clientSecret", credentials.clientSecret)]
    if credentials.passwordGrant is not None:
        secrets.append((f"{key}.passwordGrant.password", credentials.passwordGrant.password))
    return [issue for k, value in secrets if (issue := plain_text(stack.raw, f"{BLOCK}.{k}", value, file)) is not None]


def _buildpack_issues(stack: StackConfig, block: CloudFoundryConfig, file: str) -> list[ConfigIssue]:
    """Production and promotion-gated environments stage only a buildpack pinned by digest, by the core's
    artifact rule (as the other targets' images and Operator sources): a release URL can be replaced, and
    Cloud Foundry verifies nothing it downloads."""
    from mxinfra.artifacts import check_artifact, requires_digest

    gated = [e for e in stack.environments if requires_digest(e)]
    return check_artifact(gated[0], block.buildpack, f"{BLOCK}.buildpack", file, kind="url", platform="Cloud Foundry") if gated else []


def _grant_expiry_issues(stack: StackConfig, block: CloudFoundryConfig, file: str) -> list[ConfigIssue]:
    """The expiry app: required where grants are possible on a shared repository; reachable, out of the
    deployers' spaces, signing with a trusted key, secrets encrypted."""
    from mxinfra.access import grants_for
    from mxinfra.governance.signing import is_cloud, signing_config

    from .grants import trust_refs

    key = f"{BLOCK}.grantExpiry"
    issues: list[ConfigIssue] = []
    production = [e for e in stack.environments if e.is_production]
    eligible = [e for e in production if grants_for(e, stack.access).grants]
    ge = block.grantExpiry
    if ge is None:
        if eligible and is_cloud(stack.repository):
            issues.append(
                ConfigIssue(
                    key,
                    f"required: {eligible[0].name!r} has eligible principals, and Cloud Foundry roles never expire by themselves; without the expiry app a grant lasts until someone runs `mxinfra access expire`",
                    "grantExpiry: {space: <a space of its own>, credentials: {clientId: ..., clientSecret: {secure: ...}}} (a UAA client that is Space Manager of the production space)",
                    file,
                )
            )
        return issues
    if not production:
        issues.append(ConfigIssue(key, "the stack has no production environment: only production grants are time-boxed", "remove grantExpiry from this stack", file))
        return issues
    if not is_cloud(stack.repository):
        issues.append(
            ConfigIssue(
                key,
                f"the expiry app reads and appends to the activity log from Cloud Foundry, and {stack.repository or 'file://.mxinfra'} is on this machine",
                "use an s3:// or azblob:// repository (mxinfra:repository), or remove grantExpiry and run `mxinfra access expire` on a schedule of your own",
                file,
            )
        )
    for env in stack.environments:
        space, guid, path = block.space_of(env.name, env.role.value)
        same_org = ge.org is None or ge.org == block.org
        if same_org and space is not None and space.lower() == ge.space.lower():
            issues.append(
                ConfigIssue(
                    f"{key}.space",
                    f"{ge.space!r} is the space of environment {env.name!r} ({BLOCK}.{path}): its developers could read the expiry app's Space Manager credentials",
                    "give the expiry app a space of its own, where only the platform identity holds a role",
                    file,
                )
            )
            break
    issues += _credential_issues(stack, ge.credentials, "grantExpiry.credentials", file)
    for name, value in ge.environment.items():
        if SECRET_VARIABLE.search(name) and (issue := plain_text(stack.raw, f"{key}.environment.{name}", value, file)) is not None:
            issues.append(issue)
    signers = signing_config(stack.raw.values).signers
    for env in production:
        ref = ge.signer or signers.get(env.name)
        trusted = trust_refs(stack.raw.values, env.name)
        if not trusted and is_cloud(stack.repository):
            issues.append(
                ConfigIssue(
                    f"mxinfra:signing.signers.{env.name}",
                    f"the expiry app believes only grant records signed by a key trusted for {env.name!r}, and none is named",
                    "name the key whoever grants signs with (mxinfra:signing.signers), or the trusted ones (mxinfra:signing.trustedSigners)",
                    file,
                )
            )
        elif ge.signer is not None and trusted and ge.signer not in trusted and not any(r.startswith("sha256:") for r in trusted):
            issues.append(
                ConfigIssue(
                    f"{key}.signer",
                    f"its revocations would not verify: `mxinfra activity verify -s` trusts only {', '.join(trusted)} for {env.name!r}",
                    f"add {ge.signer} to mxinfra:signing.trustedSigners.{env.name} (with the granters' key), or leave signer out to use mxinfra:signing.signers.{env.name}",
                    file,
                )
            )
        if ref is None:
            issues.append(
                ConfigIssue(
                    f"{key}.signer",
                    f"the expiry app signs the revocations it records on {env.name!r}, and no key is named",
                    f"name a kms: or azurekv: key here or in mxinfra:signing.signers.{env.name} (the key must be trusted for {env.name}'s records)",
                    file,
                )
            )
        elif ref.startswith("file:"):
            issues.append(ConfigIssue(f"{key}.signer", f"{ref!r} is a file on this machine, out of the expiry app's reach", "name a kms: or azurekv: key (the app gets its credentials through grantExpiry.environment)", file))
    # several production environments of one stack would repeat the same problem of the shared block
    unique: dict[tuple[str, str], ConfigIssue] = {}
    for issue in issues:
        unique.setdefault((issue.path, issue.message), issue)
    return list(unique.values())
