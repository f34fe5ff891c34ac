"""The Cloud Foundry target: one app per environment on the cf-mendix-buildpack, its services, route and
space roles, all as Pulumi dynamic resources over the Cloud Controller v3 API (no Pulumi Cloud Foundry
provider can be installed from a package registry)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mxinfra.errors import ConfigIssue
from mxinfra.target import EnvironmentContext, Target

from .config import MIN_MEMORY_MB, CloudFoundryConfig

if TYPE_CHECKING:
    from mxinfra.access import EnvironmentAccess
    from mxinfra.config import StackConfig
    from mxinfra.environments import Environment

BLOCK = "mxinfra:cloudfoundry"


class CloudFoundryTarget(Target):
    """Mendix on Cloud Foundry (SAP BTP, Tanzu, IBM Cloud): buildpack app, marketplace services, space roles."""

    name = "cloudfoundry"
    config_model = CloudFoundryConfig
    # A release updates the app (package, build, droplet, variables, processes, metadata).
    release_types = ("pulumi-python:dynamic/cloudfoundry:App",)

    def check(self, stack: StackConfig, block: CloudFoundryConfig, file: str = "") -> list[ConfigIssue]:
        """Principals and permissions, production's MFA origins, the buildpack's memory floor, names."""
        from . import access

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
        if block.credentials is not None:
            secrets = [("credentials.clientSecret", block.credentials.clientSecret)]
            if block.credentials.passwordGrant is not None:
                secrets.append(("credentials.passwordGrant.password", block.credentials.passwordGrant.password))
            for key, value in secrets:
                if value is not None and not stack.raw.is_secret(f"{BLOCK}.{key}"):
                    issues.append(ConfigIssue(f"{BLOCK}.{key}", "is stored in plain text", f"store it encrypted: pulumi config set --secret --path '{BLOCK}.{key}' VALUE", file))
        issues += stack.environment_key_issues(block.hostnames, f"{BLOCK}.hostnames", file)
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
        return out

    def artifact(self, env: Environment, block: CloudFoundryConfig | None) -> str | None:
        """The buildpack release the package is staged with: swapping it is a deployment."""
        return block.buildpack if block is not None else None

    def artifact_key(self, env: Environment, block: CloudFoundryConfig | None) -> str | None:
        """Where the buildpack is configured."""
        return f"{BLOCK}.buildpack"

    def deploy_environment(self, ctx: EnvironmentContext) -> Mapping[str, Any]:
        """Services, route, app (package, build, droplet, processes) and space roles of one environment."""
        from . import access as _access  # noqa: F401 (the mapping the roles use)
        from . import database, grants, runtime, storage

        cfg: CloudFoundryConfig = ctx.config
        db = database.create(ctx, cfg)
        files = storage.create(ctx, cfg)
        app = runtime.create(ctx, cfg, [s for s in (db, files) if s is not None])
        roles = grants.standing_roles(ctx, cfg)
        expiry = grants.expiry(ctx, cfg) if ctx.environment.is_production else None
        ctx.runtime_resource(app.app)
        outputs: dict[str, Any] = {
            "url": app.url,
            "app": app.name,
            "appGuid": app.app.guid,
            "roles": {k: v.members if hasattr(v, "members") else v.guid for k, v in roles.items()},  # a group's: user id -> role
        }
        if expiry is not None:
            outputs["grantExpiry"] = expiry.urn
        return outputs

    def render(self, env: str, resources: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
        """`cloudfoundry/<env>/manifest.yml`: what a user would `cf push`, secrets as ((placeholders))."""
        from . import render

        return render.write_manifest(env, resources, out_dir)

    def plan_notes(self, env: str, resources: Sequence[Mapping[str, Any]]) -> list[str]:
        """The next deploy's strategy, processes, services, protections and roles."""
        from . import render

        return render.notes(resources)
