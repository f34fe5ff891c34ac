"""`mxinfra backup list|create|restore`: an environment's backups, through its target, each action
recorded in the environment's activity log (signed like every record).

The core imports no target: a target that supports the commands has `backup_actions(deployment,
environment, base_dir)`, returning an object with `refusal(action) -> str | None` (why the caller may
not: asked of the platform), `list() -> list[str]`, `create(now, keep=None) -> str` (the new backup's id; `keep`: an id its
retention must not remove) and
`restore(id, now, before)`; for `download`, `download(id, path, now) -> dict` (the archive written to `path`,
its size and sha256 as checked); for `restore --from` also `same_cluster(source) -> bool` and `restore_from(source,
id, now, before) -> dict` (copies the source's archive into this environment's backups and restores it; what
was checked of it, e.g. size and sha256). The Kubernetes target's is mxinfra_kubernetes.backup_actions.ClusterActions.

A target that cannot hand out what it keeps (Cloud Foundry keeps nothing it can list; AWS keeps recovery
points, which hold no pg_dump) takes a backup on demand instead:
`download_now(out_dir, now, via) -> dict` (a backup taken now and written as `<id>.tar.gz` into `out_dir`:
its id, size, sha256) for `download` without `--id`, and optionally `after_download(that dict)`, run once
the download is recorded (AWS removes its bucket's copy then, never before). `restore_archive(path, now, via, vouch, before) ->
dict` is `restore --archive` (a Mendix Cloud archive on this machine, from `download` on any target; the
target reads it through once, judging it, then calls `vouch(sha256, size)` with what that pass hashed,
which refuses an archive no trusted record names, then `before`, right before it changes anything: production's
backup, then the restore's intent record). Every restore is recorded before it starts (an intent record: what is
about to be restored) and after it ends (`restore`): a command that dies in between leaves the intent alone. `via` is `--database-via`, the local end of a tunnel to the database.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import UserError

backup_app = typer.Typer(
    name="backup",
    help="An environment's backups: list, create, download, restore (Kubernetes, AWS and Azure; download, restore --from and restore --archive on Kubernetes; download (taken now) and restore --archive on AWS; download and restore --archive on Cloud Foundry).",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Stack = Annotated[str, typer.Option("-s", "--stack", help="The stack of the environment")]
Env = Annotated[str, typer.Option("-e", "--environment", help="The environment")]
Directory = Annotated[Path, typer.Option("-C", "--cwd", help="The Pulumi project directory")]
Via = Annotated[
    str | None,
    typer.Option("--database-via", help="Cloud Foundry: HOST:PORT of a tunnel to the database (cf ssh -N -L), used instead of the service key's host and port"),
]


def register(app: typer.Typer) -> None:
    """Add the `backup` group to the `mxinfra` command."""
    app.add_typer(backup_app, name="backup")


class _Context:
    """The deployment, the environment and its target's backup actions, for one command."""

    def __init__(self, directory: Path, stack: str, environment: str, action: str | None) -> None:
        from .deployment import deferred_gate, prepare
        from .errors import suggest
        from .stackfile import read_project, read_stack_config

        project = read_project(directory)
        raw = read_stack_config(project, stack)
        with deferred_gate():  # backups act on what runs, not on what the stack would deploy next
            self.deployment = prepare(raw, project=project.name, stack=stack, base_dir=project.directory)
        self.base_dir = project.directory
        self.raw = raw
        names = [p.environment.name for p in self.deployment.environments]
        if environment not in names:
            hint = suggest(environment, names)
            raise UserError(f"{raw.source}: stack {stack!r} has no environment {environment!r}{' (' + hint + ')' if hint else ''}; its environments: {', '.join(names)}")
        self.stack = stack
        self.names = names
        self.prepared = self.deployment.environment(environment)
        self.environment = self.prepared.environment
        self.actions: Any = None
        if action is not None:
            self.connect(action)

    def connect(self, action: str) -> None:
        """Reach the environment through its target and ask whether the caller may run `action`."""
        environment = self.environment.name
        target = self.deployment.target
        make = getattr(target, "backup_actions", None)
        if make is None:
            raise UserError(f"the {target.name} target has no `mxinfra backup` commands: its README's Backups section says what its platform offers")
        if self.actions is None:
            self.actions = make(self.deployment, environment, self.base_dir)
        refused = self.actions.refusal(action)
        if refused is not None:
            raise UserError(refused)

    def signer(self, action: str) -> Any:
        """The key the environment's records are signed with; a UserError before anything runs if none."""
        from .governance.signing import dev_signer, open_signer, signer_reference

        d, env = self.deployment, self.environment.name
        ref = signer_reference(d.config, env)
        signer = open_signer(ref, self.base_dir) if ref else dev_signer(d.repository)
        if signer is None:
            raise UserError(f"{action} records of {env} must be signed: set mxinfra:signing.signers.{env} (the key of whoever runs backups)")
        return signer

    def record(self, action: str, changes: dict[str, Any]) -> None:
        """Append the action to the environment's log, naming what runs as its last record does."""
        from .governance.activity import ActivityLog, what_runs
        from .governance.signing import appender_trust, trust_of_refs, trusted_signer_refs
        from .governance.store import open_store

        d, env = self.deployment, self.environment.name
        signer = self.signer(action)
        store = open_store(d.repository)
        trusted = trust_of_refs(trusted_signer_refs(d.config.raw.values, env), self.base_dir)
        log = ActivityLog(store, signer=signer, trust=appender_trust(signer, trusted))
        # A backup changes no workload: the record names what the last one left running (package,
        # artifact, instances), so `mxinfra drift` reads the same state before and after it.
        last = log.last_record(env, app=d.config.app.name)
        log.append(
            env,
            actor=store.identity(),
            action=action,
            **what_runs(last),
            app=d.config.app.name,
            changes=changes,
        )


def _restore_intent(ctx: _Context, restore: dict[str, Any]) -> None:
    """Record, before the target changes anything, the restore about to run (an intent record, as `pulumi
    up` writes one before it applies): a restore whose command then dies (Ctrl-C, an expired session, a
    lost machine) cannot sign its outcome, and the log must not stay silent about data it may have replaced."""
    from .governance.activity import INTENT

    ctx.record(INTENT, {"intends": "restore", "restore": restore})


NOTHING_RECORDED = "; nothing was recorded"


@contextlib.contextmanager
def _unrecorded() -> Iterator[None]:
    """A target's action that failed before its record was written: the message says the log holds nothing of it.

    The targets say what their failure left behind (a job still running, where to follow it); whether the
    activity log holds anything is the CLI's to say, since only the CLI writes it."""
    try:
        yield
    except UserError as e:
        raise _nothing_recorded(e) from None


def _nothing_recorded(e: UserError) -> UserError:
    """The failure, saying once that the log holds nothing of it."""
    return UserError(str(e) if str(e).endswith(NOTHING_RECORDED) else f"{e}{NOTHING_RECORDED}")


def _production_backup(ctx: _Context, keep: str | None = None) -> str | None:
    """On production, the backup a restore takes first (so that it can be undone), recorded; its id. `keep`:
    an archive its retention must not remove (the one about to be restored)."""
    if not ctx.environment.is_production:
        return None
    with _unrecorded():
        backup_id: str = ctx.actions.create(_now(), keep=keep)
    ctx.record("backup", _backup_record(ctx, backup_id, "before restore"))
    return backup_id


def _backup_record(ctx: _Context, backup_id: str, trigger: str) -> dict[str, Any]:
    """A `backup` record's changes: the id and why, and what else the target says the backup holds (Azure:
    the files' recovery point in the vault, `backup_details`); the CLI's own keys win."""
    details = getattr(ctx.actions, "backup_details", None)
    extra = details(backup_id) if callable(details) else {}
    return {"backup": {**(extra or {}), "id": backup_id, "trigger": trigger}}


def _recorder_of_backup_first(ctx: _Context, taken: dict[str, Any]) -> Callable[[str], None]:
    """What a target that takes production's backup itself (server-side: no caller skips it) calls with its
    id once the restore ended: recorded then, before the restore's outcome, and kept in `taken`."""

    def backed_up(backup_id: str) -> None:
        ctx.record("backup", _backup_record(ctx, backup_id, "before restore"))
        taken["id"] = backup_id
        sys.stdout.write(f"{ctx.environment.name}: backup {backup_id} taken first\n")

    return backed_up


def _supports(ctx: _Context, command: str, *methods: str) -> None:
    """Refuse a command the environment's target does not offer (yet), before it acts."""
    if not all(callable(getattr(ctx.actions, m, None)) for m in methods):
        raise UserError(f"the {ctx.deployment.target.name} target has no `mxinfra backup {command}` yet (issue 21)")


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
    with _unrecorded():
        backup_id = ctx.actions.create(_now())
    ctx.record("backup", _backup_record(ctx, backup_id, "on-demand"))
    sys.stdout.write(f"{environment}: backup {backup_id} taken and recorded\n")


@backup_app.command("download")
def download(
    stack: Stack,
    environment: Env,
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="The directory to write <id>.tar.gz into (made if missing)")],
    backup_id: Annotated[str | None, typer.Option("--id", help="The backup to download (from `mxinfra backup list`); Cloud Foundry and AWS: none, a backup is taken now")] = None,
    directory: Directory = Path("."),
    via: Via = None,
) -> None:
    """Download a backup as Mendix Cloud gives one (db/db.backup and tree/ in a .tar.gz), checked, recorded."""
    from .backups import parse_id

    if backup_id is not None and parse_id(backup_id + ".tar.gz") is None:
        raise UserError(f"--id {backup_id!r}: a backup id is its UTC start time, YYYYmmddTHHMMSSZ (see `mxinfra backup list`)")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {str(out_dir)!r}: expected a directory to write the backup into, but it is a file")
    via = _via(via)
    if backup_id is not None and (out_dir / f"{backup_id}.tar.gz").exists():
        raise UserError(f"-o {str(out_dir)!r}: {backup_id}.tar.gz is there already: not overwritten (remove it or choose another directory)")
    ctx = _Context(directory, stack, environment, "download")
    now_only = not callable(getattr(ctx.actions, "download", None)) and callable(getattr(ctx.actions, "download_now", None))
    if now_only:
        if backup_id is not None:
            raise UserError(f"--id {backup_id}: the {ctx.deployment.target.name} target downloads only a backup it takes now (what it keeps is not an archive it can hand out): leave --id out to take one now and download it")
        ctx.signer("backup-download")
        _make_dir(out_dir)
        with _unrecorded():
            got = ctx.actions.download_now(out_dir, _now(), via)
        backup_id, target = got["id"], Path(got["path"])
        ctx.record("backup-download", {"backup": {"id": backup_id, "trigger": "on-demand", **_checked(got)}})
        sys.stdout.write(f"{environment}: downloaded backup {backup_id} to {target} ({got['size']} bytes, sha256 {got['sha256']}), recorded\n")
        # what the target keeps until the download is recorded (AWS: the exports bucket's copy); the
        # download stands whatever becomes of it
        if callable(after := getattr(ctx.actions, "after_download", None)):
            try:
                after(got)
            except KeyboardInterrupt:
                sys.stderr.write(f"warning: interrupted while cleaning up after the download; {backup_id} is downloaded and recorded\n")
        return
    else:
        _supports(ctx, "download", "download")
        if backup_id is None:
            raise UserError(f"--id: name the backup to download (`mxinfra backup list -s {stack} -e {environment}`)")
        if via is not None:
            raise UserError(f"--database-via: the {ctx.deployment.target.name} target reaches the database itself: leave it out")
        ctx.signer("backup-download")
        ctx.connect("list")
        known = ctx.actions.list()
        if backup_id not in known:
            raise UserError(f"{environment} has no backup {backup_id}: it has {', '.join(known[:5]) or 'none'}{' ...' if len(known) > 5 else ''}")
        _make_dir(out_dir)
        target = out_dir / f"{backup_id}.tar.gz"
        with _unrecorded():
            got = ctx.actions.download(backup_id, target, _now())
        ctx.record("backup-download", {"backup": {"id": backup_id, "size": got["size"], "sha256": got["sha256"]}})
    sys.stdout.write(f"{environment}: downloaded backup {backup_id} to {target} ({got['size']} bytes, sha256 {got['sha256']}), recorded\n")


def _make_dir(out_dir: Path) -> None:
    """The directory a backup is written into; a new one only its owner reads (it will hold every row and file)."""
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"-o {str(out_dir)!r}: cannot make the directory: {e.strerror}") from None


def _checked(got: dict[str, Any]) -> dict[str, Any]:
    """What a record keeps of a backup taken and written here (never where: a path on someone's machine)."""
    return {k: got[k] for k in ("size", "sha256", "files", "warnings") if k in got}


def _via(via: str | None) -> str | None:
    """`--database-via HOST:PORT`, checked."""
    if via is None:
        return None
    host, sep, port = via.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise UserError(f"--database-via {via!r}: expected HOST:PORT, the local end of a tunnel to the database (e.g. 127.0.0.1:63432 of `cf ssh -N -L 63432:<db host>:<db port> <app>`)")
    return via


@backup_app.command("restore")
def restore(
    stack: Stack,
    environment: Env,
    backup_id: Annotated[str | None, typer.Option("--id", help="The backup to restore (from `mxinfra backup list`)")] = None,
    directory: Directory = Path("."),
    source: Annotated[str | None, typer.Option("--from", help="Another environment of the app whose backup to restore here (listed in backups.restoreFrom); with --archive, the environment the archive was taken from")] = None,
    source_stack: Annotated[str | None, typer.Option("--from-stack", help="The stack that deploys --from's environment (default: --stack)")] = None,
    allow_lower_tier: Annotated[bool, typer.Option("--allow-lower-tier", help="Restore a lower tier's backup into production (also needs backups.allowLowerTiers)")] = False,
    archive: Annotated[Path | None, typer.Option("--archive", help="Kubernetes, AWS and Cloud Foundry: a backup archive on this machine (from `mxinfra backup download` on any target) to restore, instead of --id")] = None,
    unrecorded: Annotated[bool, typer.Option("--unrecorded", help="With --archive, below production: restore an archive no download record of --from names (e.g. from Mendix Cloud)")] = False,
    via: Via = None,
) -> None:
    """Restore a backup of the environment (or --from another's) over its database and files, recorded; on
    production an on-demand backup is taken (and recorded) first, so the restore can be undone."""
    from .backups import parse_id

    if (backup_id is None) == (archive is None):
        raise UserError("name the backup to restore: --id ID (from `mxinfra backup list`) or --archive FILE (from `mxinfra backup download`)")
    if backup_id is not None and parse_id(backup_id + ".tar.gz") is None:
        raise UserError(f"--id {backup_id!r}: a backup id is its UTC start time, YYYYmmddTHHMMSSZ (see `mxinfra backup list`)")
    if source_stack is not None and source is None:
        raise UserError("--from-stack names the stack of the --from environment: give --from ENV too")
    via = _via(via)
    if archive is not None:
        _restore_archive(directory, stack, environment, archive, source, source_stack or stack, allow_lower_tier, via, unrecorded)
        return
    if unrecorded:
        raise UserError("--unrecorded is for --archive: a backup restored by --id is the platform's own")
    assert backup_id is not None
    if via is not None:
        raise UserError("--database-via: only a restore of an --archive (Cloud Foundry) reaches the database from this machine: leave it out")
    if source is not None and (source != environment or (source_stack or stack) != stack):
        _restore_from(directory, stack, environment, backup_id, source, source_stack or stack, allow_lower_tier)
        return
    ctx = _Context(directory, stack, environment, "restore")
    if not callable(getattr(ctx.actions, "list", None)) and callable(getattr(ctx.actions, "restore_archive", None)):
        raise UserError(f"--id {backup_id}: the {ctx.deployment.target.name} target keeps no backups to restore by id: restore a downloaded one with --archive FILE --from ENV")
    _supports(ctx, "restore", "list", "restore")
    known = ctx.actions.list()
    if backup_id not in known:
        raise UserError(f"{environment} has no backup {backup_id}: it has {', '.join(known[:5]) or 'none'}{' ...' if len(known) > 5 else ''}")
    # a target whose restore takes production's backup itself (server-side: no caller skips it, AWS) says
    # which one once it ended; recorded then, before the restore's outcome
    backs_up = getattr(ctx.actions, "restore_backs_up_first", None)
    with _unrecorded():
        inside = ctx.environment.is_production and callable(backs_up) and bool(backs_up(backup_id))
    taken: dict[str, Any] = {"by": "the restore"} if inside else {}
    if not inside and (first := _production_backup(ctx, keep=backup_id)):
        taken["id"] = first

    more = {"backed_up": _recorder_of_backup_first(ctx, taken)} if inside else {}
    done = {"id": backup_id, "from": environment}
    # what the target says the restore did (the new instance or server it made, what became of the app)
    outcome = _recorded_restore(ctx, done, lambda before: ctx.actions.restore(backup_id, _now(), before, **more), taken=taken)
    before = taken.get("id")
    done.update({"backupBefore": before} if before else {})
    ctx.record("restore", {"restore": {**(outcome if isinstance(outcome, dict) else {}), **done}})  # what the CLI knows wins
    # in place unless the target restored into a new database it names (AWS, Azure: put in service later)
    if not (isinstance(outcome, dict) and "database" in outcome):
        _app_rule(ctx, "restore", outcome)
    sys.stdout.write(f"{environment}: restored backup {backup_id}" + (f" (backup {before} taken first)" if before else "") + "\n")


def _restore_archive(directory: Path, stack: str, environment: str, archive: Path, source: str | None, source_stack: str, allow_lower_tier: bool, via: str | None, unrecorded: bool) -> None:
    """`restore --archive`: where the archive comes from, by the config's rule and (once the target read it)
    its sha256; on production a backup taken (and recorded) first; the restore through the target; a record
    of the archive's hash."""
    from .environments import check_environment_name

    if source is None:
        raise UserError(f"--archive: say which environment the archive was taken from with --from ENV (the rules of {environment}'s backups.restoreFrom apply to it)")
    try:
        check_environment_name(source)
    except ValueError as e:
        raise UserError(f"--from {source!r}: {e}") from None
    if not archive.is_file():
        raise UserError(f"--archive {str(archive)!r}: no such file (expected a <id>.tar.gz from `mxinfra backup download`)")
    ctx = _Context(directory, stack, environment, None)
    src = _source(ctx, directory, source, source_stack, allow_lower_tier) if source != environment or source_stack != stack else ctx
    ctx.signer("restore")
    ctx.connect("restore")
    _supports(ctx, "restore --archive", "restore_archive")
    where = {"fromStack": source_stack} if source_stack != stack else {}
    done: dict[str, Any] = {}

    def vouch(sha: str, size: int) -> None:
        # called by the target once it read the archive through (its one judging pass: what it judged is
        # what was hashed), before anything changes: where the archive comes from, by its sha256
        downloaded, refused, trusted = _download_record(ctx, src, source, sha)
        if downloaded is None and (ctx.environment.is_production or not unrecorded):
            why = f" (records found but not counted: {'; '.join(refused)})" if refused else ""
            if not trusted:
                why += f"; no key is trusted for {source}'s records: name it in mxinfra:signing.trustedSigners.{source} of stack {ctx.stack!r}"
            raise UserError(
                f"--archive {archive.name}: its sha256 {sha} is in no signed backup-download record of {source}'s log{why}, so nothing "
                f"says it came from {source}: download it with `mxinfra backup download -s {source_stack} -e {source}` (a download "
                f"recorded before archives were indexed is found once `mxinfra activity verify -s {source_stack} -e {source} --repair` ran)"
                + (" (production is restored only from an archive mxinfra downloaded and recorded)" if ctx.environment.is_production
                   else ", or give --unrecorded to restore it all the same (recorded as unrecorded)")
            )
        if downloaded is None:
            sys.stderr.write(f"warning: {archive.name} (sha256 {sha}) is in no signed backup-download record of {source}'s log: restored as an unrecorded archive\n")
        provenance = {"downloadRecord": downloaded} if downloaded is not None else {"unrecorded": True}
        done.update({"archive": {"size": size, "sha256": sha, **provenance}, "from": source, **where})

    taken: dict[str, Any] = {}
    # a target whose restore takes production's backup itself (server-side: no caller skips it) says which
    # one once it ended; recorded then, before the restore's outcome
    backs_up = getattr(ctx.actions, "archive_restore_backs_up_first", None)
    inside = ctx.environment.is_production and callable(backs_up) and bool(backs_up())

    def backup_first() -> None:
        # on production, once the archive is checked: what the restore replaces, kept where the target keeps
        # backups, or (a target that keeps none: Cloud Foundry) written beside the archive
        if not ctx.environment.is_production:
            return
        if inside:
            taken["by"] = "the restore"  # (the intent says so: its id is known once the restore ended)
            return
        # `taken` is filled once the backup is recorded: what a failure after it says depends on that
        if callable(getattr(ctx.actions, "create", None)):
            taken["id"] = _production_backup(ctx)
            sys.stdout.write(f"{environment}: backup {taken['id']} taken first\n")
            return
        with _unrecorded():
            got = ctx.actions.download_now(archive.resolve().parent, _now(), via)
        ctx.record("backup-download", {"backup": {"id": got["id"], "trigger": "before restore", **_checked(got)}})
        taken.update(got)
        sys.stdout.write(f"{environment}: backup {got['id']} taken first, written to {got['path']}\n")

    more = {"backed_up": _recorder_of_backup_first(ctx, taken)} if inside else {}
    checked = _recorded_restore(ctx, done, lambda before: ctx.actions.restore_archive(archive, _now(), via, vouch, before, **more), backup_first, taken)
    before = taken.get("id")
    if not done:  # a target that restored without asking: never recorded as if its provenance were known
        raise RuntimeError(f"the {ctx.deployment.target.name} target restored {archive.name} without vouching for it first")
    ctx.record("restore", {"restore": {**done, **({"backupBefore": before} if before else {}), **checked}})
    _app_rule(ctx, "restore --archive", checked)
    sys.stdout.write(f"{environment}: restored {archive.name} of {source} (sha256 {done['archive']['sha256']})" + (f" (backup {before} taken first)" if before else "") + "\n")


def _app_rule(ctx: _Context, how: str, outcome: Any) -> None:
    """The core's rule for a restore that replaced the database in place (mxinfra.backups.APP_OUTCOMES),
    checked once its outcome is recorded (the data is replaced either way): a target that breaks it is a bug."""
    from .backups import app_outcome_problem

    if (problem := app_outcome_problem(ctx.deployment.target.name, how, outcome)) is not None:
        raise RuntimeError(f"{problem} (the restore is recorded)")


def _source(ctx: _Context, directory: Path, source: str, source_stack: str, allow_lower_tier: bool) -> _Context:
    """The --from environment (in --from-stack), once it is known to be another environment of the same app
    that the destination's backups.restoreFrom rules let its backups come from."""
    from .backups import of_environment, restore_refusal

    if source_stack == ctx.stack and source not in ctx.names:
        raise UserError(f"--from {source!r}: stack {ctx.stack!r} has no environment {source!r} (its environments: {', '.join(ctx.names)}): name the stack that deploys it with --from-stack")
    src = _Context(directory, source_stack, source, None)
    if src.deployment.config.app.name != ctx.deployment.config.app.name:
        raise UserError(f"--from-stack {source_stack!r} deploys the app {src.deployment.config.app.name!r}, not {ctx.deployment.config.app.name!r}: a restore comes from another environment of the same app")
    refused = restore_refusal(
        source, src.environment.role, ctx.environment, of_environment(ctx.environment), allow_lower_tier=allow_lower_tier, source_stack=source_stack if source_stack != ctx.stack else None
    )
    if refused is not None:
        raise UserError(refused)
    return src


def _download_record(ctx: _Context, src: _Context, source: str, sha: str) -> tuple[int | None, list[str], bool]:
    """(the seq of the signed backup-download record of `source` that wrote an archive with this sha256, or
    None; why other candidates did not count; whether any key is trusted for `source`'s records): the keys
    the destination's stack trusts for `source`."""
    from .governance.activity import ActivityLog
    from .governance.signing import trust_for
    from .governance.store import open_store

    d = src.deployment
    # A source on another repository (another stack's mxinfra:repository) is trusted only through keys the
    # destination's config names: that repository's development key is whoever made it's, e.g. a stack
    # written to vouch for a hand-made archive (found by a hostile review, 2026-12-05)
    fallback = d.repository if d.repository == ctx.deployment.repository else ""
    trust = trust_for(dict(ctx.raw.values), source, fallback, src.base_dir)
    found, refused = ActivityLog(open_store(d.repository)).archive_evidence(source, sha, trust=trust, app=d.config.app.name)
    return (found.seq if found is not None else None), refused, bool(trust.fingerprints)


def _recorded_restore(
    ctx: _Context, done: dict[str, Any], run: Callable[[Callable[[], None]], Any], first: Callable[[], None] | None = None, taken: dict[str, Any] | None = None
) -> Any:
    """`run(before)` a restore through the target, which calls `before` once its checks passed, right before
    it changes anything: `first` runs (an archive restore's backup of production), then the restore's intent
    record is written (`done`, and the backup `taken` first if one was). When the target is certain how the
    restore failed (mxinfra.backups.RestoreFailed: the database replaced but not the files, or nothing
    restored at all), its outcome is recorded all the same (`files: not restored`; `database` and `files:
    not restored`) and the command exits 2; any other failure leaves the intent alone. A target that restored without calling `before` is a bug: its
    outcome is not recorded as if the log had said it was coming."""
    from .backups import RestoreFailed

    intended: list[bool] = []

    def taken_first() -> dict[str, Any]:  # read when needed: `first` fills `taken` during the run
        if taken and "id" in taken:
            return {"backupBefore": taken["id"]}
        return {"backupFirstBy": taken["by"]} if taken and "by" in taken else {}

    def before() -> None:
        if first is not None:
            first()
        _restore_intent(ctx, {**done, **taken_first()})
        intended.append(True)

    def unrecorded(e: UserError) -> UserError:  # failed before its intent: what the log holds of it
        if taken and "id" in taken:
            return UserError(f"{e}; the backup {taken['id']} taken first is recorded, the restore is not")
        return _nothing_recorded(e)

    intent_alone = f"the restore's intent is recorded and no outcome follows it (`mxinfra activity -s {ctx.stack} -e {ctx.environment.name}`)"

    try:
        result = run(before)
    except RestoreFailed as e:
        if not intended:  # before the intent: the log gets no outcome of this restore
            raise unrecorded(e) from None
        # what else the target says happened (e.g. the app started again), what was restored last
        outcome = {k: v for k, v in e.outcome.items() if k not in e.restored}
        try:
            ctx.record("restore", {"restore": {**outcome, **done, **taken_first(), **e.restored}})  # what the CLI knows wins
        except Exception as lost:  # noqa: BLE001 (the restore's failure is the news; the record's is said with it)
            raise UserError(f"{e}; its outcome could not be recorded ({lost}): {intent_alone}") from None
        raise UserError(f"{e} (recorded)") from None
    except UserError as e:
        # what the target's failure left is its message's to say; what the log holds, the CLI's
        if intended:
            raise UserError(f"{e}; {intent_alone}") from None
        raise unrecorded(e) from None
    if not intended:
        raise RuntimeError(f"the {ctx.deployment.target.name} target restored without recording the restore's intent first (it never called `before`)")
    return result


def _restore_from(directory: Path, stack: str, environment: str, backup_id: str, source: str, source_stack: str, allow_lower_tier: bool) -> None:
    """`restore --from`: the config's rule first, then both environments' rights, the source's list, on
    production a backup first; the copy and restore through the target; a record in both logs."""
    from .environments import check_environment_name

    try:
        check_environment_name(source)
    except ValueError as e:
        raise UserError(f"--from {source!r}: {e}") from None
    ctx = _Context(directory, stack, environment, None)
    src = _source(ctx, directory, source, source_stack, allow_lower_tier)
    # Both logs get a record: refuse now, not after the restore, if either cannot be signed.
    ctx.signer("restore")
    src.signer("backup-export")
    ctx.connect("restore")
    _supports(ctx, "restore --from", "restore_from", "same_cluster")
    src.connect("export")
    src.connect("list")
    if not ctx.actions.same_cluster(src.actions):
        raise UserError(f"{source} ({src.actions.where}) and {environment} ({ctx.actions.where}) are on different clusters: the archive moves pod to pod inside one cluster")
    # before anything runs (on production a backup is taken first): a restore the destination cannot read
    incompatible = getattr(ctx.actions, "incompatible", None)
    if callable(incompatible) and (why := incompatible(src.actions)) is not None:
        raise UserError(why)
    known = src.actions.list()
    if backup_id not in known:
        raise UserError(f"{source} has no backup {backup_id}: it has {', '.join(known[:5]) or 'none'}{' ...' if len(known) > 5 else ''}")
    before = _production_backup(ctx)
    where = {"fromStack": source_stack} if source_stack != stack else {}
    done = {"id": backup_id, "from": source, "to": environment, **where, **({"backupBefore": before} if before else {})}
    checked = _recorded_restore(ctx, done, lambda before: ctx.actions.restore_from(src.actions, backup_id, _now(), before), taken={"id": before} if before else None)
    ctx.record("restore", {"restore": {**done, **checked}})
    _app_rule(ctx, "restore --from", checked)
    sent = {k: v for k, v in checked.items() if k in ("size", "sha256")}  # what left the source (not what became of the destination's app)
    src.record("backup-export", {"backup": {"id": backup_id, "to": environment, **({"toStack": stack} if source_stack != stack else {}), **sent}})
    sys.stdout.write(f"{environment}: restored backup {backup_id} of {source}" + (f" (backup {before} taken first)" if before else "") + "\n")
