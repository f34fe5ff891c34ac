"""The app: buildpack lifecycle, the core's buildpack variables, package, processes and route."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from mxinfra.environments import Secret
from mxinfra.settings import Bindings, buildpack_env
from mxinfra.target import EnvironmentContext

from .config import STACK, CloudFoundryConfig, where
from .database import metadata
from .provider import CfApp, CfRoute, CfServiceInstance

INVOCATION_TIMEOUT_SECONDS = 10


@dataclass
class AppResources:
    """The app and its route."""

    app: CfApp
    route: CfRoute
    name: str
    url: pulumi.Output[str]


def variables(ctx: EnvironmentContext) -> tuple[dict[str, Any], pulumi.Output[dict[str, str]]]:
    """(plain, secret) variables: the core's buildpack contract. Database and files come from the
    bound services' VCAP_SERVICES, so the bindings carry only the admin password."""
    env = buildpack_env(ctx.settings, Bindings(admin_password=ctx.admin_password))
    secret = {k: (v.reveal() if isinstance(v, Secret) else v) for k, v in env.secret.items()}
    return dict(env.plain), pulumi.Output.secret(pulumi.Output.all(**secret) if secret else {})


def package_input(ctx: EnvironmentContext) -> dict[str, Any]:
    """The package as a resource input: its project-relative path (the same on every checkout, resolved by
    the provider in the program's directory) or, for a repository package, the repository it is fetched
    from; never a machine path."""
    pkg = ctx.package
    where: dict[str, Any] = {"path": pkg.portable_path} if pkg.portable_path is not None else {"repository": ctx.deployment.repository_input}
    return {**where, "sha256": pkg.sha256, "modelVersion": pkg.model_version}


def host(ctx: EnvironmentContext, cfg: CloudFoundryConfig) -> str:
    """The route's host: from config, else <app>-<environment>."""
    return cfg.hostnames.get(ctx.environment.name) or ctx.naming.physical(max_len=63)


def create(ctx: EnvironmentContext, cfg: CloudFoundryConfig, services: list[CfServiceInstance], after: Sequence[Any] = ()) -> AppResources:
    """The route and the app bound to `services` (created after `after`: the space, when the target creates it)."""
    n = ctx.naming
    meta = metadata(ctx)
    space = list(after)
    route = CfRoute(n.logical("route"), {**where(cfg, ctx.environment), "host": host(ctx, cfg), "domain": cfg.domain, "metadata": meta, "timeouts": cfg.timeouts.model_dump()}, ctx.opts(depends_on=space))
    plain, secret = variables(ctx)
    name = n.physical(max_len=63)
    s = ctx.settings
    props: dict[str, Any] = {
        **where(cfg, ctx.environment),
        "name": name,
        "buildpack": cfg.buildpack,
        "stack": STACK,
        "environment": plain,
        "secretEnvironment": secret,
        "secretEnvironmentNames": sorted(buildpack_env(ctx.settings, Bindings(admin_password=None)).secret),
        "package": package_input(ctx),
        "instances": s.instances,
        "memoryMb": s.memory_limit_mb,
        "diskMb": cfg.diskMb,
        "healthCheck": {"type": "http", "endpoint": cfg.healthCheckEndpoint, "timeout": cfg.startupTimeoutSeconds, "invocationTimeout": INVOCATION_TIMEOUT_SECONDS},
        "routes": [route.guid],
        "services": [si.guid for si in services],
        # Production: no SSH into the runtime (it holds the admin password and the bound credentials).
        "ssh": False if ctx.environment.is_production else None,
        "metadata": metadata(ctx, release=True),
        "timeouts": cfg.timeouts.model_dump(),
    }
    app = CfApp(n.logical("app"), props, ctx.opts(additional_secret_outputs=["secretEnvironment"], depends_on=[route, *services, *space]))
    return AppResources(app, route, name, pulumi.Output.from_input(f"https://{host(ctx, cfg)}.{cfg.domain}"))
