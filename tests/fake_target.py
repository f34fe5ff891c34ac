"""A test-only target: declares generic resources from the core's contract, so the core is tested
without any cloud SDK. Registered per test with `mxinfra.testing.registered_target`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pulumi
from pydantic import BaseModel, ConfigDict

from mxinfra.settings import Bindings, DatabaseUrl, S3Storage, buildpack_env
from mxinfra.target import AppContext, EnvironmentContext, Target


class FakeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = "mendix/runtime:latest"
    databaseUrl: str | None = None
    mfaWarning: bool = True


class Thing(pulumi.CustomResource):
    """A resource of any type token: the mock runtime accepts every type."""

    def __init__(self, type_: str, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions) -> None:
        super().__init__(type_, name, dict(props), opts)


class FakeTarget(Target):
    name = "fake"
    config_model = FakeConfig

    def warnings(self, env, access, block):
        if env.is_production and block is not None and block.mfaWarning and access.grants:
            return ["this platform cannot enforce MFA"]
        return []

    def deploy_app(self, ctx: AppContext) -> Any:
        return Thing("mxtest:index:Cluster", f"{ctx.naming.app}-cluster", {"tags": dict(ctx.tags)}, ctx.opts())

    def deploy_environment(self, ctx: EnvironmentContext) -> Mapping[str, Any]:
        n = ctx.naming
        db = Thing("mxtest:index:Database", n.logical("db"), {"tags": dict(ctx.tags)}, ctx.opts(protect_data=True))
        url = pulumi.Output.secret(ctx.config.databaseUrl) if ctx.config.databaseUrl else pulumi.Output.secret("postgres://u:p@db:5432/app")
        env = buildpack_env(ctx.settings, Bindings(ctx.admin_password, DatabaseUrl(url), S3Storage(bucket=n.physical("files"))))
        secret = Thing("mxtest:index:Secret", n.logical("secret"), {"data": pulumi.Output.secret(env.secret)}, ctx.opts())
        runtime = Thing(
            "mxtest:index:Runtime",
            n.logical("runtime"),
            {"image": ctx.config.image, "env": env.plain, "secretRef": secret.id, "cluster": ctx.shared.id, "instances": ctx.settings.instances, "tags": dict(ctx.release_tags)},
            ctx.opts(depends_on=[db]),
        )
        for role in ctx.access.roles():
            Thing(
                "mxtest:index:Role",
                n.logical(f"role-{role.permission.value}"),
                {"principals": list(role.principals), "mfa": role.mfa_required, "maxSession": role.max_session_seconds},
                ctx.opts(),
            )
        ctx.runtime_resource(runtime)
        return {"url": f"https://{n.physical()}.example.test", "runtime": runtime.id}

    def render(self, env: str, resources: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
        path = out_dir / "fake" / f"{env}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([r["inputs"] for r in resources], sort_keys=True, indent=1))
        return [path]

    def plan_notes(self, env: str, resources: Sequence[Mapping[str, Any]]) -> list[str]:
        return [f"{len(resources)} resources"]


target = FakeTarget()
