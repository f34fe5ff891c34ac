"""Space roles: standing ones outside production, time-boxed grants on production.

Cloud Foundry roles do not expire, so production operating roles are never standing: `mxinfra:access`
only makes a principal *eligible*. `mxinfra access grant -s STACK --principal P --permission deploy --for 8h`
creates the space role and records it in the environment's activity log with its expiry;
`mxinfra access expire -s STACK` (and every `pulumi up`, through the GrantExpiry resource) removes the
expired ones and records that too. No production grant lasts longer than 8 hours (or the entry's
`maxSessionSeconds`, when shorter).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

from mxinfra.access import PRODUCTION_SESSION_SECONDS, Permission
from mxinfra.errors import UserError

GRANT, REVOKE = "grant", "revoke"
DURATION = re.compile(r"(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?")


def standing_roles(ctx: Any, cfg: Any) -> dict[str, Any]:
    """One SpaceRole per (permission, user) and one GroupSpaceRole per (permission, group) of a
    non-production environment; none on production."""
    from .access import parse_principal, space_role
    from .database import where
    from .provider import CfGroupSpaceRole, CfSpaceRole

    if ctx.environment.is_production:
        return {}
    out = {}
    for role in ctx.access.roles():
        if role.permission not in (Permission.DEPLOY, Permission.MONITOR, Permission.MANAGE):
            continue  # refused by check(); never reaches here from a valid config
        for text in role.principals:
            p = parse_principal(text)
            assert p is not None  # check() validated every principal
            key = f"role-{role.permission.value}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
            common = {**where(cfg), "type": space_role(role.permission, cfg.deployRole), "origin": p.origin, "principal": text, "permission": role.permission.value, "timeouts": cfg.timeouts.model_dump()}
            if p.kind == "group":  # expanded through UAA when pulumi up runs, kept in sync with membership
                out[key] = CfGroupSpaceRole(ctx.naming.logical(key), {**common, "group": p.name}, ctx.opts())
            else:
                out[key] = CfSpaceRole(ctx.naming.logical(key), {**common, "username": p.name}, ctx.opts())
    return out


def expiry(ctx: Any, cfg: Any) -> Any:
    """The resource that removes expired grants of a production environment on every up."""
    from .database import where
    from .provider import CfGrantExpiry

    return CfGrantExpiry(ctx.naming.logical("grants"), {**where(cfg), "environment": ctx.environment.name, "repository": ctx.deployment.repository, "timeouts": cfg.timeouts.model_dump()}, ctx.opts())


def parse_duration(text: str) -> int:
    """Seconds of `8h`, `90m`, `1h30m`, `3600s`; UserError otherwise."""
    m = DURATION.fullmatch(text.strip())
    if not text.strip() or m is None or not any(m.groupdict().values()):
        raise UserError(f"--for {text!r}: expected a duration like 8h, 90m or 1h30m")
    return int(m["h"] or 0) * 3600 + int(m["m"] or 0) * 60 + int(m["s"] or 0)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def open_grants(log: Any, environment: str) -> list[tuple[Any, dict[str, Any]]]:
    """(record, grant) of every grant without a later revoke, oldest first."""
    grants: dict[str, tuple[Any, dict[str, Any]]] = {}
    for record in log.records(environment):
        change = record.changes or {}
        if GRANT in change:
            grants[change[GRANT]["id"]] = (record, change[GRANT])
        elif REVOKE in change:
            grants.pop(change[REVOKE]["id"], None)
    return list(grants.values())


def expire_due(repository: str, environment: str, client: Any, *, now: dt.datetime | None = None, all_open: bool = False, job_timeout: float = 600) -> list[dict[str, Any]]:
    """Remove every expired (or, with all_open, every open) grant's role and record its revocation."""
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.store import open_store

    store = open_store(repository)
    log = ActivityLog(store)
    now = now or _now()
    removed = []
    for record, grant in open_grants(log, environment):
        expires = dt.datetime.fromisoformat(grant["expires"].replace("Z", "+00:00"))
        if not all_open and expires > now:
            continue
        client.delete_role(grant["id"], job_timeout)  # a role someone already removed counts as removed
        reason = "expired" if expires <= now else "environment destroyed"
        log.append(
            environment,
            actor=store.identity(),
            action="permissions",
            package_sha256=record.package_sha256,
            package_version=record.package_version,
            artifact=record.artifact,
            changes={REVOKE: {"id": grant["id"], "principal": grant["principal"], "permission": grant["permission"], "reason": reason, "at": _iso(now)}},
        )
        removed.append(grant)
    return removed


def _deployment(directory: Path, stack: str) -> Any:
    from mxinfra.deployment import prepare
    from mxinfra.stackfile import read_project, read_stack_config

    project = read_project(directory)
    d = prepare(read_stack_config(project, stack), project=project.name, stack=stack, base_dir=project.directory)
    if d.target.name != "cloudfoundry":
        raise UserError(f"stack {stack!r} deploys to {d.target.name!r}: time-boxed grants are a Cloud Foundry feature (other targets enforce sessions in their IAM)")
    return d


def _production_env(d: Any, environment: str | None) -> Any:
    prod = [p for p in d.environments if p.environment.is_production]
    if environment is not None:
        p = next((p for p in d.environments if p.environment.name == environment), None)
        if p is None:
            raise UserError(f"environment {environment!r} is not in the stack (it has {', '.join(x.environment.name for x in d.environments)})")
        if not p.environment.is_production:
            raise UserError(f"{environment!r} is not a production environment: its roles are standing, declared in mxinfra:access and applied by pulumi up")
        return p
    if len(prod) != 1:
        raise UserError("name the production environment with -e" if prod else "the stack has no production environment: only production grants are time-boxed")
    return prod[0]


def grant(directory: Path, stack: str, principal: str, permission: str, duration: str, *, environment: str | None = None, client: Any = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Create a production space role for an eligible principal, recorded with its expiry."""
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.store import open_store

    from .access import NO_ROLE, parse_principal, space_role
    from .capi import Client
    from .database import where

    d = _deployment(directory, stack)
    p = _production_env(d, environment)
    try:
        perm = Permission(permission)
    except ValueError:
        raise UserError(f"--permission {permission!r}: one of deploy, monitor, manage") from None
    if perm in NO_ROLE:
        raise UserError(f"--permission {permission}: {NO_ROLE[perm]}")
    who = parse_principal(principal)
    if who is None or who.kind != "user":
        raise UserError(f"--principal {principal!r}: a grant is for one person, user:ORIGIN/USERNAME (a member of an eligible group:ORIGIN/GROUP is eligible through it)")
    seconds = parse_duration(duration)
    cfg = d.target_config
    direct = [g for g in p.access.grants if g.principal == principal and g.permission is perm]
    groups = [g for g in p.access.grants if g.permission is perm and (gp := parse_principal(g.principal)) is not None and gp.kind == "group" and gp.origin == who.origin]
    if not direct and not groups:
        raise UserError(f"{principal} is not eligible for {permission} on {p.environment.name}: add it (or a group of its origin it belongs to) to mxinfra:access for this environment first (reviewed like any config change)")
    client = client or Client.from_environment(cfg.api)
    eligible = list(direct)
    if groups:  # membership is UAA's, asked now: someone removed from the group is no longer eligible
        uid = client.scim().user_id(who.name, who.origin)
        if uid is not None:
            eligible += [g for g in groups if uid in client.scim().members(parse_principal(g.principal).name, who.origin)]  # type: ignore[union-attr]
    if not eligible:
        names = ", ".join(g.principal for g in groups)
        raise UserError(f"{principal} is not eligible for {permission} on {p.environment.name}: it is not listed, and UAA does not have it as a member of {names}")
    limit = min(PRODUCTION_SESSION_SECONDS, *(g.max_session_seconds or PRODUCTION_SESSION_SECONDS for g in eligible))
    if seconds <= 0 or seconds > limit:
        raise UserError(f"--for {duration}: a production grant lasts at most {limit // 3600}h{(limit % 3600) // 60:02d}m ({limit} seconds)")
    space = client.space_guid(where(cfg))
    role = client.create_role(space, space_role(perm, cfg.deployRole), who.name, who.origin)
    now = now or _now()
    record = {
        "id": role["guid"],
        "principal": principal,
        "permission": permission,
        "role": role["type"],
        "space": space,
        "through": sorted({g.principal for g in eligible}),
        "granted": _iso(now),
        "expires": _iso(now + dt.timedelta(seconds=seconds)),
    }
    store = open_store(d.repository)
    ActivityLog(store).append(
        p.environment.name,
        actor=store.identity(),
        action="permissions",
        package_sha256=d.package.sha256,
        package_version=d.package.version or d.package.model_version,
        artifact=p.artifact,
        changes={GRANT: record},
    )
    return record


def expire(directory: Path, stack: str, *, environment: str | None = None, client: Any = None, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Remove the production environment's expired grants now."""
    from .capi import Client

    d = _deployment(directory, stack)
    p = _production_env(d, environment)
    client = client or Client.from_environment(d.target_config.api)
    return expire_due(d.repository, p.environment.name, client, now=now, job_timeout=d.target_config.timeouts.job)


# --- the CLI: `mxinfra access grant|expire` ----------------------------------------------------------


def register(app: Any) -> None:
    """Add the `access` command group to the mxinfra CLI (a typer app)."""
    import typer

    access = typer.Typer(help="Time-boxed production grants (Cloud Foundry space roles).", no_args_is_help=True, rich_markup_mode=None)

    @access.command("grant")
    def _grant(
        stack: str = typer.Option(..., "-s", "--stack", help="The stack (its Pulumi.<stack>.yaml)"),
        principal: str = typer.Option(..., "--principal", help="user:ORIGIN/USERNAME, eligible in mxinfra:access (itself, or as a member of a group:ORIGIN/GROUP entry)"),
        permission: str = typer.Option(..., "--permission", help="deploy, monitor or manage"),
        duration: str = typer.Option("8h", "--for", help="How long (at most 8h), e.g. 2h or 90m"),
        environment: str = typer.Option(None, "-e", "--environment", help="The production environment (default: the stack's only one)"),
        directory: Path = typer.Option(Path("."), "-C", "--cwd", help="The Pulumi project directory"),
    ) -> None:
        """Give an eligible principal a production space role until it expires."""
        r = grant(directory, stack, principal, permission, duration, environment=environment)
        typer.echo(f"granted {r['role']} to {r['principal']} until {r['expires']} (role {r['id']})")

    @access.command("expire")
    def _expire(
        stack: str = typer.Option(..., "-s", "--stack", help="The stack (its Pulumi.<stack>.yaml)"),
        environment: str = typer.Option(None, "-e", "--environment", help="The production environment (default: the stack's only one)"),
        directory: Path = typer.Option(Path("."), "-C", "--cwd", help="The Pulumi project directory"),
    ) -> None:
        """Remove expired production grants now (every pulumi up does it too)."""
        removed = expire(directory, stack, environment=environment)
        for r in removed:
            typer.echo(f"removed {r['role']} of {r['principal']} (expired {r['expires']})")
        typer.echo(f"{len(removed)} expired grant(s) removed")

    app.add_typer(access, name="access")
