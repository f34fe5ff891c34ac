"""Space roles: standing ones outside production, time-boxed grants on production.

Cloud Foundry roles do not expire, so production operating roles are never standing: `mxinfra:access`
only makes a principal *eligible*. `mxinfra access grant -s STACK --principal P --permission deploy --for 8h`
creates the space role and records it in the environment's activity log with its expiry, signed like every
record. The expiry app (`expiry.py`, `mxinfra:cloudfoundry.grantExpiry`) removes expired ones on its own
schedule and identity, and records that too; `mxinfra access expire -s STACK` does the same by hand. A
`pulumi up` never removes a role: a release runs as `deploy` (space_developer), which may not.

What the expiry believes: only grant records that verify (their hash, a signature by a key trusted for the
environment, this app). A revoke record closes nothing by itself: a grant whose role is still in the space
once it expired is removed, whatever revoke the log holds, so a forged revoke cannot keep a role. A grant
removes only the role it names, of the user and type it names, in the environment's space, so a forged or
wrong grant cannot remove anyone else's role. No production grant lasts longer than 8 hours (or the
entry's `maxSessionSeconds`, when shorter).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxinfra.access import PRODUCTION_SESSION_SECONDS, Permission
from mxinfra.errors import UserError

GRANT, REVOKE = "grant", "revoke"
# A role of a grantable person that no verified grant backs is left alone this long: `mxinfra access grant`
# creates the role a moment before it records the grant.
GRACE_SECONDS = 600
DURATION = re.compile(r"(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?")


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


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _expiry(grant: Mapping[str, Any], role: Mapping[str, Any] | None) -> dt.datetime:
    """When a grant ends: its recorded expiry, and never later than 8 hours after the platform created
    its role (the record is whatever its signer wrote; the role's creation time is the Cloud Controller's)."""
    expires = _when(str(grant["expires"]))
    if role is not None and role.get("created_at"):
        expires = min(expires, _when(str(role["created_at"])) + dt.timedelta(seconds=PRODUCTION_SESSION_SECONDS))
    return expires


# --- whose records count ------------------------------------------------------------------------------


def trust_refs(raw_values: Mapping[str, Any], environment: str) -> list[str]:
    """The key references whose grant records count for `environment`: the ones `mxinfra activity verify
    -s` trusts for it (`mxinfra:signing.trustedSigners.<env>`, else its signer); [] means the file://
    repository's development key."""
    from mxinfra.governance.signing import signing_config

    cfg = signing_config(raw_values)
    if environment in cfg.trustedSigners:
        return list(cfg.trustedSigners[environment])
    if environment in cfg.signers:
        return [cfg.signers[environment]]
    return []


def resolve_trust(refs: Sequence[str], repository: str, base_dir: Path) -> Any:
    """The `Trust` of `refs` (fingerprints looked up once), else the development key of a file://
    repository; None when nothing is trusted (then no grant counts)."""
    from mxinfra.governance.promotion import repository_url
    from mxinfra.governance.signing import Trust, trust_for, trusted_fingerprint

    if refs:
        return Trust(frozenset(trusted_fingerprint(r, base_dir) for r in refs), tuple(refs))
    trust = trust_for({}, "", repository_url(repository, base_dir), base_dir)
    return trust if trust.fingerprints else None


def record_problem(record: Any, environment: str, *, trust: Any, app: str | None) -> str | None:
    """Why a grant or revoke record must not be acted on (None when it counts): edited, of another
    environment or app, unsigned, badly signed, or signed by a key not trusted for the environment."""
    from mxinfra.governance.signing import check_signature

    if record.environment != environment:
        return f"belongs to environment {record.environment!r}"
    if record.computed_hash() != record.hash:
        return "was edited (its hash does not match its content)"
    if app is not None and record.app != app:
        return f"belongs to app {record.app!r}, not {app!r}"
    if trust is None:
        return "cannot be trusted: no key is trusted for this environment (mxinfra:signing)"
    found, why = check_signature(record.to_json(), record.hash)
    if why is not None:
        return why
    if found not in trust.fingerprints:
        return f"is signed by {found}, which is not trusted for {environment} (trusted: {trust.describe()})"
    return None


@dataclass
class Ledger:
    """The environment's grants as the verified records tell them."""

    grants: dict[str, tuple[Any, dict[str, Any]]] = field(default_factory=dict)  # role guid -> (record, grant)
    revoked: set[str] = field(default_factory=set)  # role guids with a verified revoke
    ignored: list[str] = field(default_factory=list)  # records not believed, and why

    def open(self) -> list[tuple[Any, dict[str, Any]]]:
        """(record, grant) of every grant without a verified revoke, oldest first."""
        return [v for k, v in self.grants.items() if k not in self.revoked]


def ledger(log: Any, environment: str, *, trust: Any, app: str | None) -> Ledger:
    """Read the environment's grant and revoke records, believing only those that verify."""
    out = Ledger()
    for record in log.records(environment):
        change = record.changes or {}
        kind = GRANT if GRANT in change else REVOKE if REVOKE in change else None
        if kind is None:
            continue
        problem = record_problem(record, environment, trust=trust, app=app)
        body = change[kind] if isinstance(change[kind], Mapping) else {}
        if problem is not None:
            out.ignored.append(f"{kind} record seq {record.seq} (role {body.get('id')}) {problem}: ignored")
            continue
        if kind == GRANT:
            out.grants[str(body["id"])] = (record, dict(body))
        else:
            out.revoked.add(str(body["id"]))
    return out


def open_grants(log: Any, environment: str, *, trust: Any, app: str | None) -> list[tuple[Any, dict[str, Any]]]:
    """(record, grant) of every verified grant without a verified revoke, oldest first."""
    return ledger(log, environment, trust=trust, app=app).open()


def due_grants(repository: str, environment: str, *, trust: Any, app: str | None, now: dt.datetime | None = None, base_dir: Path | None = None) -> list[dict[str, Any]]:
    """The verified grants past their expiry that no verified revoke closes (read from the log only)."""
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.promotion import repository_url
    from mxinfra.governance.store import open_store

    now = now or _now()
    log = ActivityLog(open_store(repository_url(repository, base_dir or Path.cwd())))
    return [g for _, g in open_grants(log, environment, trust=trust, app=app) if _when(g["expires"]) <= now]


# --- expiring -----------------------------------------------------------------------------------------


@dataclass
class Expiry:
    """What one expiry run did: the grants whose role it removed (or found gone) and recorded, and the
    records and roles it refused to act on."""

    removed: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def expire_due(
    repository: str,
    environment: str,
    client: Any,
    *,
    space: str,
    trust: Any,
    app: str | None,
    signer: Any,
    now: dt.datetime | None = None,
    all_open: bool = False,
    job_timeout: float = 600,
    base_dir: Path | None = None,
    sweep_origins: Sequence[str] = (),
    grace_seconds: int = GRACE_SECONDS,
) -> Expiry:
    """Remove the role of every expired (with all_open, every) verified grant that is still in `space`,
    and record each revocation signed by `signer`.

    The space's roles are listed once (with their users): a grant removes only the role it names, and
    only when that role is of the user and type it names; a revoke record never stops the removal of a
    role that is still there. With `sweep_origins` (production's MFA origins: the people mxinfra grants
    to), a role of such a user that no verified, unexpired grant backs is removed too, once it is older
    than `grace_seconds` (a grant being recorded right now): a role a granted Space Manager created by
    hand, or one whose grant record was deleted, does not outlive the round."""
    from mxinfra.governance.activity import ActivityLog, what_runs
    from mxinfra.governance.promotion import repository_url
    from mxinfra.governance.signing import appender_trust
    from mxinfra.governance.store import open_store

    from .access import parse_principal

    store = open_store(repository_url(repository, base_dir or Path.cwd()))
    log = ActivityLog(store, signer=signer, trust=appender_trust(signer, trust))
    now = now or _now()
    book = ledger(log, environment, trust=trust, app=app)
    # what runs, as the newest record of the chain this appender trusts says it (a record of another key the
    # head hint names is among the ledger's, judged and ignored, but must never be repeated)
    last = log.last_record(environment, app=app)
    out = Expiry(ignored=list(book.ignored))
    roles = {r["guid"]: r for r in client.space_roles(space)} if book.grants or sweep_origins else {}
    for gid, (record, g) in book.grants.items():
        expires = _expiry(g, roles.get(gid))
        if not all_open and expires > now:
            continue
        if g.get("space") != space:
            out.ignored.append(f"grant of role {gid} names space {g.get('space')}, not the environment's {space}: not acted on")
            continue
        role = roles.get(gid)
        who = parse_principal(str(g.get("principal")))
        if role is not None:
            # UAA matches user names without case (e-mail addresses): so does this
            if who is None or role["type"] != g.get("role") or role["origin"] != who.origin or (role["username"] or "").casefold() != who.name.casefold():
                holder = f"{role['origin']}/{role['username']}" if role["username"] else f"client {role['user']}"
                out.ignored.append(f"grant of role {gid} names {g.get('principal')} as {g.get('role')}, but that role is {role['type']} of {holder}: not removed")
                continue
            client.delete_role(gid, job_timeout)  # a role someone removed meanwhile counts as removed
        elif gid in book.revoked:
            continue  # gone, and recorded
        reason = "expired" if expires <= now else "environment destroyed"
        if role is None:
            reason += " (the role was already gone)"
        elif gid in book.revoked:
            reason += " (a revoke was recorded, but the role was still there)"
        log.append(
            environment,
            actor=store.identity(),
            action="permissions",
            # a grant changes no workload: the record names what runs, as the newest record says it
            **what_runs(last, package_sha256=record.package_sha256, package_version=record.package_version, artifact=record.artifact),
            app=app,
            changes={REVOKE: {"id": gid, "principal": g["principal"], "permission": g["permission"], "reason": reason, "at": _iso(now)}},
        )
        out.removed.append(g)
    backed = {gid for gid, (_, g) in book.grants.items() if gid not in book.revoked and _expiry(g, roles.get(gid)) > now}
    handled = {str(g["id"]) for g in out.removed}
    for gid, role in sorted(roles.items()):
        if all_open or role["origin"] not in sweep_origins or gid in backed or gid in handled:
            continue
        created = _when(str(role.get("created_at") or _iso(now)))
        if (now - created).total_seconds() < grace_seconds:
            continue
        client.delete_role(gid, job_timeout)
        principal = f"user:{role['origin']}/{role['username']}"
        log.append(
            environment,
            actor=store.identity(),
            action="permissions",
            **what_runs(last),
            app=app,
            changes={REVOKE: {"id": gid, "principal": principal, "permission": None, "role": role["type"], "reason": "no verified grant (a role made outside mxinfra access grant)", "at": _iso(now)}},
        )
        out.removed.append({"id": gid, "principal": principal, "role": role["type"], "expires": None})
    return out


# --- the stack's view: `mxinfra access grant|expire` -------------------------------------------------


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


def _signer(d: Any, environment: str, base_dir: Path) -> Any:
    """The environment's signer (mxinfra:signing.signers), else the file:// repository's development key."""
    from mxinfra.governance.signing import dev_signer, open_signer, signer_reference

    ref = signer_reference(d.config, environment)
    signer = open_signer(ref, base_dir) if ref else dev_signer(d.repository)
    if signer is None:
        raise UserError(f"grant and revoke records of {environment} must be signed: set mxinfra:signing.signers.{environment} (the key whoever grants holds)")
    return signer


def _trust(d: Any, environment: str, base_dir: Path) -> Any:
    trust = resolve_trust(trust_refs(d.config.raw.values, environment), d.repository, base_dir)
    if trust is None:
        raise UserError(f"no key is trusted for {environment}'s records, so no grant would ever be believed (or expire): set mxinfra:signing.signers.{environment} or mxinfra:signing.trustedSigners.{environment}")
    return trust


def grant(directory: Path, stack: str, principal: str, permission: str, duration: str, *, environment: str | None = None, client: Any = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Create a production space role for an eligible principal, recorded (signed) with its expiry."""
    from mxinfra.governance.activity import ActivityLog, what_runs
    from mxinfra.governance.signing import appender_trust, fingerprint
    from mxinfra.governance.store import open_store

    from .access import NO_ROLE, parse_principal, space_role
    from .capi import Client
    from .config import where

    d = _deployment(directory, stack)
    base_dir = Path(directory).resolve()
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
    env = p.environment.name
    # Sign and trust first: a grant whose record the expiry would not believe would never expire.
    signer = _signer(d, env, base_dir)
    trust = _trust(d, env, base_dir)
    if fingerprint(signer.public_key_der()) not in trust.fingerprints:
        raise UserError(f"the grant would be signed by {signer.ref}, which is not trusted for {env} ({trust.describe()}): the expiry would ignore it and the role would never expire")
    client = client or Client.from_environment(cfg.api)
    eligible = list(direct)
    if groups:  # membership is UAA's, asked now: someone removed from the group is no longer eligible
        uid = client.scim().user_id(who.name, who.origin)
        if uid is not None:
            eligible += [g for g in groups if uid in client.scim().members(parse_principal(g.principal).name, who.origin)]  # type: ignore[union-attr]
    if not eligible:
        names = ", ".join(g.principal for g in groups)
        raise UserError(f"{principal} is not eligible for {permission} on {env}: it is not listed, and UAA does not have it as a member of {names}")
    limit = min(PRODUCTION_SESSION_SECONDS, *(g.max_session_seconds or PRODUCTION_SESSION_SECONDS for g in eligible))
    if seconds <= 0 or seconds > limit:
        raise UserError(f"--for {duration}: a production grant lasts at most {limit // 3600}h{(limit % 3600) // 60:02d}m ({limit} seconds)")
    space = client.space_guid(where(cfg, p.environment))
    role = client.create_role(space, space_role(perm, cfg.deployRole, production=True), who.name, who.origin)
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
    try:
        log = ActivityLog(store, signer=signer, trust=appender_trust(signer, trust))
        # A grant changes no workload: the record names what runs (the newest record's package, artifact
        # and count), not the stack's package, which may not be deployed yet (`mxinfra drift` compares them).
        last = log.last_record(env, app=d.config.app.name)
        log.append(
            env,
            actor=store.identity(),
            action="permissions",
            **what_runs(last, package_sha256=d.package.sha256, package_version=d.package.version or d.package.model_version, artifact=p.artifact),
            app=d.config.app.name,
            changes={GRANT: record},
        )
    except BaseException:
        # An unrecorded role would never expire: take it back.
        client.delete_role(role["guid"], cfg.timeouts.job)
        raise
    return record


def expire(directory: Path, stack: str, *, environment: str | None = None, client: Any = None, now: dt.datetime | None = None) -> Expiry:
    """Remove the production environment's expired grants now (what the expiry app does on its schedule)."""
    from .capi import Client
    from .config import where

    d = _deployment(directory, stack)
    base_dir = Path(directory).resolve()
    p = _production_env(d, environment)
    env = p.environment.name
    client = client or Client.from_environment(d.target_config.api)
    return expire_due(
        d.repository,
        env,
        client,
        space=client.space_guid(where(d.target_config, p.environment)),
        trust=_trust(d, env, base_dir),
        app=d.config.app.name,
        signer=_signer(d, env, base_dir),
        now=now,
        job_timeout=d.target_config.timeouts.job,
        base_dir=base_dir,
        sweep_origins=d.target_config.mfaOrigins,
    )


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
        """Remove expired production grants now (the expiry app does it on its schedule)."""
        done = expire(directory, stack, environment=environment)
        for line in done.ignored:
            typer.echo(f"not acted on: {line}", err=True)
        for r in done.removed:
            typer.echo(f"removed {r['role']} of {r['principal']} (expired {r['expires']})")
        typer.echo(f"{len(done.removed)} expired grant(s) removed")

    app.add_typer(access, name="access")
