"""Which space each environment runs in, the rule that production has one of its own, and the spaces the
target creates.

A space is Cloud Foundry's permission boundary: every role (the standing roles of test and acceptance,
the time-boxed ones of production) is a role in a space, over everything in it. So a production
environment never shares its space with a non-production one, in the same stack or in another stack of
the same app (one stack per environment is the usual layout): acceptance's standing developers would
otherwise be developers of production. `check` reads the project's other stack files to see that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mxinfra.errors import ConfigIssue

from .config import TIERS, CloudFoundryConfig

BLOCK = "mxinfra:cloudfoundry"


def identity(block: CloudFoundryConfig, space: str | None, guid: str | None) -> tuple[str, str, str]:
    """What makes two places the same space: the API, the organization and the space (a name compares
    without case, as Cloud Foundry's names are unique per organization)."""
    org = f"guid:{block.orgGuid}" if block.orgGuid else f"name:{(block.org or '').lower()}"
    where = f"guid:{guid}" if guid else f"name:{(space or '').lower()}"
    return block.api.rstrip("/").lower(), org, where


def _placed(stack: Any, block: CloudFoundryConfig) -> list[tuple[Any, tuple[str, str, str] | None, str, str]]:
    """(environment, space identity or None, config key, shown name) of each environment of a stack."""
    out = []
    for env in stack.environments:
        space, guid, key = block.space_of(env.name, env.role.value)
        found = identity(block, space, guid) if (space or guid) else None
        out.append((env, found, f"{BLOCK}.{key}", space or guid or ""))
    return out


def check(stack: Any, block: CloudFoundryConfig, file: str = "") -> list[ConfigIssue]:
    """`spaces` keys, an environment without a space, and production sharing a space with a non-production
    environment of this stack or of another stack of the app."""
    issues: list[ConfigIssue] = []
    names = {e.name for e in stack.environments} | {e.name for e in stack.misnamed}
    for key in block.spaces:
        if key not in names and key not in TIERS:
            issues.append(ConfigIssue(f"{BLOCK}.spaces.{key}", f"{key!r} is neither an environment of this stack nor a tier", f"environments: {', '.join(sorted(names)) or 'none'}; tiers: {', '.join(TIERS)}", file))
    placed = _placed(stack, block)
    for env, found, key, _ in placed:
        if found is None:
            issues.append(ConfigIssue(f"{BLOCK}.spaces", f"no space for environment {env.name!r}", f"add {env.name}: SPACE (or its tier, {env.role.value}: SPACE)", file))
    for env, found, key, shown in placed:
        if found is None or not env.is_production:  # said once, at the key that places production
            continue
        for other, theirs, _, _ in placed:
            if theirs == found and not other.is_production:
                prod, non = env, other
                issues.append(
                    ConfigIssue(
                        key,
                        f"production environment {prod.name!r} and {non.role.value} environment {non.name!r} share space {shown!r}: every role in a space is over all of it, so {non.name}'s standing roles would reach production",
                        f"give production a space of its own: {BLOCK}.spaces: {{{prod.name}: {shown}-{prod.name}, {non.name}: {shown}}} (or one stack per environment, each with its own space)",
                        file,
                    )
                )
                break
    issues += shared_created_spaces(stack, block, file)
    others = _other_stacks(stack) if any(found is not None for _, found, _, _ in placed) else []
    for env, found, key, shown in placed:
        if found is None:
            continue
        for stack_name, source, other_name, other_is_prod, other_role in others:
            if other_is_prod == env.is_production or source != found:
                continue
            what = "production environment" if other_is_prod else f"{other_role} environment"
            issues.append(
                ConfigIssue(
                    key,
                    f"space {shown!r} of {'production ' if env.is_production else ''}environment {env.name!r} is also the space of {what} {other_name!r} of stack {stack_name} (Pulumi.{stack_name}.yaml): "
                    "every role in a space is over all of it, so non-production roles would reach production",
                    "give each production environment a space no non-production environment uses, in every stack of the app",
                    file,
                )
            )
            break
    return issues


def _stack_files(stack: Any) -> list[Path]:
    """The project's other stack files: beside this stack's file, else in the project of the working
    directory (under `pulumi up` the engine names the file without its directory)."""
    source = Path(stack.raw.source) if stack.raw.source else None
    if source is None:
        return []
    directory: Path | None = source.parent if source.is_absolute() and source.is_file() else None
    if directory is None:
        from mxinfra.errors import UserError
        from mxinfra.stackfile import read_project

        try:
            directory = read_project(Path.cwd()).stack_config_dir
        except UserError:
            return []
    own = f"Pulumi.{stack.stack}.yaml"
    return sorted(p for p in directory.glob("Pulumi.*.yaml") if p.name != own)


def _other_stacks(stack: Any) -> list[tuple[str, tuple[str, str, str], str, bool, str]]:
    """(stack, space identity, environment, is production, tier) of every environment of the app's other
    Cloud Foundry stacks; a stack file that does not parse is skipped (its own plan reports it)."""
    from mxinfra.config import collect_stack_config
    from mxinfra.errors import UserError
    from mxinfra.stackfile import read_stack_config

    out = []
    for path in _stack_files(stack):
        name = path.name[len("Pulumi.") : -len(".yaml")]
        project = _project_of(path.parent)
        if project is None:
            return []
        try:
            raw = read_stack_config(project, name)
        except UserError:
            continue
        app = raw.values.get("mxinfra:app")
        if not isinstance(app, dict) or app.get("target") != "cloudfoundry" or app.get("name") != stack.app.name:
            continue
        other, _ = collect_stack_config(raw, project=project.name, stack=name)
        try:
            block = CloudFoundryConfig.model_validate(raw.values.get(BLOCK) or {})
        except ValueError:
            continue
        if other is None:
            continue
        for env, found, _, _ in _placed(other, block):
            if found is not None:
                out.append((name, found, env.name, env.is_production, env.role.value))
    return out


def _project_of(directory: Path) -> Any:
    """The Pulumi project whose stack files are in `directory` (its Pulumi.yaml is there or above), or None."""
    from mxinfra.errors import UserError
    from mxinfra.stackfile import read_project

    for d in [directory, *directory.parents][:4]:
        if (d / "Pulumi.yaml").is_file():
            try:
                project = read_project(d)
            except UserError:
                return None
            return project if project.stack_config_dir.resolve() == directory.resolve() else None
    return None


# --- the spaces the target creates --------------------------------------------------------------------


def create(ctx: Any, cfg: CloudFoundryConfig) -> Any:
    """With `createSpaces`, the environment's space (a Space resource), SSH disallowed on production's and
    production's protected and retained; None when the space exists already."""
    from .provider import CfSpace

    if not cfg.createSpaces:
        return None
    env = ctx.environment
    space, _, _ = cfg.space_of(env.name, env.role.value)
    props = {"api": cfg.api, "org": cfg.org, "name": space, "allowSsh": not env.is_production, "metadata": {"labels": dict(ctx.prepared.labels), "annotations": {}}, "timeouts": cfg.timeouts.model_dump()}
    # Deleting a space deletes everything in it: production's stays when the stack goes.
    return CfSpace(ctx.naming.logical("space"), props, ctx.opts(protect_data=True))


def shared_created_spaces(stack: Any, block: CloudFoundryConfig, file: str = "") -> list[ConfigIssue]:
    """With createSpaces every environment owns its space: two of a stack in one space cannot both own it."""
    if not block.createSpaces:
        return []
    issues = []
    seen: dict[tuple[str, str, str], str] = {}
    for env, found, key, shown in _placed(stack, block):
        if found is None:
            continue
        if found in seen:
            issues.append(ConfigIssue(key, f"environments {seen[found]!r} and {env.name!r} share space {shown!r}, and with createSpaces each environment owns (creates and deletes) its space", "give each environment its own space, or create the shared one outside mxinfra (createSpaces: false)", file))
        seen.setdefault(found, env.name)
    return issues
