"""`mxinfra backup list|create|restore`: an environment's backups, through its target, each action
recorded in the environment's activity log (signed like every record).

The core imports no target: a target that supports the commands has `backup_actions(deployment,
environment, base_dir)`, returning an object with `refusal(action) -> str | None` (why the caller may
not: asked of the platform), `list() -> list[str]`, `create(now, keep=None) -> str` (the new backup's id; `keep`: an id its
retention must not remove) and
`restore(id, now)`. The Kubernetes target's is mxinfra_kubernetes.backups.ClusterActions.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import UserError

backup_app = typer.Typer(
    name="backup",
    help="An environment's backups: list, create, restore (Kubernetes target, plain mode).",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Stack = Annotated[str, typer.Option("-s", "--stack", help="The stack of the environment")]
Env = Annotated[str, typer.Option("-e", "--environment", help="The environment")]
Directory = Annotated[Path, typer.Option("-C", "--cwd", help="The Pulumi project directory")]


def register(app: typer.Typer) -> None:
    """Add the `backup` group to the `mxinfra` command."""
    app.add_typer(backup_app, name="backup")


class _Context:
    """The deployment, the environment and its target's backup actions, for one command."""

    def __init__(self, directory: Path, stack: str, environment: str, action: str) -> None:
        from .deployment import deferred_gate, prepare
        from .errors import suggest
        from .stackfile import read_project, read_stack_config

        project = read_project(directory)
        raw = read_stack_config(project, stack)
        with deferred_gate():  # backups act on what runs, not on what the stack would deploy next
            self.deployment = prepare(raw, project=project.name, stack=stack, base_dir=project.directory)
        self.base_dir = project.directory
        names = [p.environment.name for p in self.deployment.environments]
        if environment not in names:
            hint = suggest(environment, names)
            raise UserError(f"{raw.source}: stack {stack!r} has no environment {environment!r}{' (' + hint + ')' if hint else ''}; its environments: {', '.join(names)}")
        self.prepared = self.deployment.environment(environment)
        self.environment = self.prepared.environment
        target = self.deployment.target
        make = getattr(target, "backup_actions", None)
        if make is None:
            raise UserError(f"the {target.name} target has no `mxinfra backup` commands yet (issue 21: Kubernetes first)")
        self.actions = make(self.deployment, environment, self.base_dir)
        refused = self.actions.refusal(action)
        if refused is not None:
            raise UserError(refused)

    def record(self, action: str, changes: dict[str, Any]) -> None:
        """Append the action to the environment's log, naming what runs as its last record does."""
        from .governance.activity import ActivityLog
        from .governance.signing import dev_signer, open_signer, signer_reference
        from .governance.store import open_store

        d, env = self.deployment, self.environment.name
        ref = signer_reference(d.config, env)
        signer = open_signer(ref, self.base_dir) if ref else dev_signer(d.repository)
        if signer is None:
            raise UserError(f"{action} records of {env} must be signed: set mxinfra:signing.signers.{env} (the key of whoever runs backups)")
        store = open_store(d.repository)
        log = ActivityLog(store, signer=signer)
        # A backup changes no workload: the record names what the last one left running (package,
        # artifact, instances), so `mxinfra drift` reads the same state before and after it.
        last = log.last_record(env, app=d.config.app.name)
        log.append(
            env,
            actor=store.identity(),
            action=action,
            package_sha256=last.package_sha256 if last is not None else "0" * 64,
            package_version=last.package_version if last is not None else None,
            artifact=last.artifact if last is not None else None,
            instances=last.instances if last is not None else None,
            app=d.config.app.name,
            changes=changes,
        )


def _now() -> datetime:
    return datetime.now(timezone.utc)


@backup_app.command("list")
def list_backups(stack: Stack, environment: Env, directory: Directory = Path("."), as_json: Annotated[bool, typer.Option("--json", help="A JSON list")] = False) -> None:
    """The environment's backups, newest first, as its last backup run left them."""
    ctx = _Context(directory, stack, environment, "list")
    ids = ctx.actions.list()
    if as_json:
        sys.stdout.write(json.dumps(ids) + "\n")
        return
    for backup_id in ids:
        sys.stdout.write(backup_id + "\n")


@backup_app.command("create")
def create(stack: Stack, environment: Env, directory: Directory = Path(".")) -> None:
    """Take a backup now (the scheduled backup's Job, run on demand), wait for it, record it."""
    ctx = _Context(directory, stack, environment, "create")
    backup_id = ctx.actions.create(_now())
    ctx.record("backup", {"backup": {"id": backup_id, "trigger": "on-demand"}})
    sys.stdout.write(f"{environment}: backup {backup_id} taken and recorded\n")


@backup_app.command("restore")
def restore(
    stack: Stack,
    environment: Env,
    backup_id: Annotated[str, typer.Option("--id", help="The backup to restore (from `mxinfra backup list`)")],
    directory: Directory = Path("."),
) -> None:
    """Restore one of the environment's own backups over its database and files, recorded; on production
    an on-demand backup is taken (and recorded) first, so the restore can be undone."""
    from .backups import parse_id

    if parse_id(backup_id + ".tar.gz") is None:
        raise UserError(f"--id {backup_id!r}: a backup id is its UTC start time, YYYYmmddTHHMMSSZ (see `mxinfra backup list`)")
    ctx = _Context(directory, stack, environment, "restore")
    known = ctx.actions.list()
    if backup_id not in known:
        raise UserError(f"{environment} has no backup {backup_id}: it has {', '.join(known[:5]) or 'none'}{' ...' if len(known) > 5 else ''}")
    before = None
    if ctx.environment.is_production:
        before = ctx.actions.create(_now(), keep=backup_id)
        ctx.record("backup", {"backup": {"id": before, "trigger": "before restore"}})
    ctx.actions.restore(backup_id, _now())
    ctx.record("restore", {"restore": {"id": backup_id, "from": environment, **({"backupBefore": before} if before else {})}})
    sys.stdout.write(f"{environment}: restored backup {backup_id}" + (f" (backup {before} taken first)" if before else "") + "\n")
