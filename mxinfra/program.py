"""The Pulumi program: read the stack's config, validate it against the MDA and declare the app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from .config import RawConfig
from .errors import UserError


def _decode(value: Any) -> Any:
    # The engine hands objects over as JSON strings; plain strings stay as they are.
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:  # not JSON, or numbers past the interpreter's digit limit: the schema says which key
            return value
    return value


def raw_config_from_pulumi(base_dir: Path | None = None) -> RawConfig:
    """Every config key the engine gave this program, with secret values marked as the stack file marks
    them (see `engine_secret_paths`)."""
    from .stackfile import engine_secret_paths

    keys = dict(runtime_config.get_config_env())
    keys.update(runtime_config.CONFIG.get())
    values = {k: _decode(v) for k, v in keys.items()}
    secret = {k for k in values if runtime_config.is_config_secret(k)}
    secret.update(runtime_config.get_config_secret_keys_env())
    paths = engine_secret_paths(frozenset(secret), base_dir or Path.cwd(), pulumi.get_project(), pulumi.get_stack())
    return RawConfig(values, paths, f"Pulumi.{pulumi.get_stack()}.yaml")


def run(base_dir: Path | None = None, opts: pulumi.ResourceOptions | None = None) -> Any:
    """Declare this stack's Mendix app; config and package errors stop the program with their message.

    `opts` reach the MendixApp component, e.g. `ResourceOptions(providers=[...])` for your own providers.
    """
    from .components import MendixApp
    from .deployment import prepare
    from .imagebinding import program_check

    try:
        deployment = prepare(
            raw_config_from_pulumi(base_dir),
            project=pulumi.get_project(),
            stack=pulumi.get_stack(),
            base_dir=base_dir or Path.cwd(),
            # `pulumi up` verifies every app image against the package before any resource is declared
            images=program_check(pulumi.runtime.is_dry_run()),
        )
    except UserError as e:
        # RunError prints the message without a Python traceback.
        raise pulumi.RunError(str(e)) from None
    app = MendixApp(deployment.config.app.name, {"deployment": deployment}, opts)
    pulumi.export("packageSha256", app.package_sha256)
    pulumi.export("modelVersion", app.model_version)
    pulumi.export("environments", app.environments)
    return app

