"""Governance commands: `package push|list`, `activity [verify]`, `promote`, `trace`."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .display import clean
from .errors import UserError

RepositoryOpt = Annotated[Optional[str], typer.Option("--repository", help="Repository URL: file://PATH, s3://bucket/prefix or azblob://account/container/prefix")]
DirOpt = Annotated[Optional[Path], typer.Option("-C", "--cwd", help="The Pulumi project directory [default: .]")]
StackOpt = Annotated[Optional[str], typer.Option("-s", "--stack", help="Take the repository from this stack's config")]
EnvOpt = Annotated[Optional[str], typer.Option("-e", "--environment", help="One environment (default: all)")]

package_app = typer.Typer(help="The package repository: upload once, deploy anywhere.", no_args_is_help=True, rich_markup_mode=None)
activity_app = typer.Typer(help="The activity log of each environment.", invoke_without_command=True, rich_markup_mode=None)


def _console(stderr: bool = False) -> Any:
    from .display import console

    # Repository and log contents are untrusted text: never interpreted as markup.
    return console(stderr=stderr)


def _row(*cells: object) -> list[Any]:
    from .display import text

    return [text(c) for c in cells]


def _group_options(ctx: typer.Context, **given: Any) -> dict[str, Any]:
    """The options of a group and its subcommand merged: a user may write them after either."""
    merged = dict(ctx.parent.obj or {}) if ctx.parent is not None and isinstance(ctx.parent.obj, dict) else {}
    merged.update({k: v for k, v in given.items() if v is not None})
    return merged


def _remember(ctx: typer.Context, **given: Any) -> None:
    """Keep a group's options for its subcommand (see `_group_options`)."""
    ctx.obj = {k: v for k, v in given.items() if v is not None}


def resolve_repository(repository: str | None = None, directory: Path | None = None, stack: str | None = None) -> str:
    """--repository, else the stack's `mxinfra:repository`, else file://.mxinfra in the project."""
    from .governance.promotion import repository_url

    directory = directory or Path(".")
    if repository:
        return repository_url(repository, Path.cwd())
    if not (directory / "Pulumi.yaml").is_file():
        # The default repository lives in the project: outside one there is nothing to read or write.
        raise UserError(
            f"{directory.resolve()}: found no Pulumi project here (no Pulumi.yaml): run the command in your project, "
            "pass -C DIR, or name the repository with --repository URL"
        )
    configured = None
    if stack:
        from .stackfile import read_project, read_stack_config

        project = read_project(directory)
        configured = read_stack_config(project, stack).values.get("mxinfra:repository")
    return repository_url(configured, directory.resolve())


def _environments(log: Any, environment: str | None, url: str) -> list[str]:
    """The environments to show: all of the log's, or the one asked for, which must have a log."""
    known = log.environments()
    if environment is None:
        return known
    if environment not in known:
        from .errors import suggest

        hint = suggest(environment, known)
        raise UserError(
            f"{url}: environment {environment!r} has no activity log"
            + (f" ({hint})" if hint else "")
            + f"; environments with a log: {', '.join(known) or 'none yet'}"
        )
    return [environment]


def _store(url: str) -> Any:
    from .governance.store import open_store

    return open_store(url)


def _stack_signing(where: dict[str, Any], url: str) -> Any:
    """The validated `mxinfra:signing` of the stack given with -s (ConfigError if invalid), else None."""
    if not where.get("stack"):
        return None
    from .stackfile import read_project, read_stack_config
    from .governance.signing import load_signing

    return load_signing(read_stack_config(read_project(where.get("directory") or Path(".")), where["stack"]), url)


def _repository(where: dict[str, Any], url: str) -> Any:
    """The repository at `url`, knowing its publishers when the stack given with -s names them."""
    from .governance.repository import Repository

    cfg = _stack_signing(where, url)
    return Repository(_store(url), cfg.publishers if cfg is not None else None)


@package_app.callback()
def package(
    ctx: typer.Context,
    repository: RepositoryOpt = None,
    directory: DirOpt = None,
    stack: StackOpt = None,
) -> None:
    """The package repository: upload once, deploy anywhere."""
    _remember(ctx, repository=repository, directory=directory, stack=stack)


@package_app.command("push")
def package_push(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(metavar="MDA", help="The .mda to upload")],
    version: Annotated[Optional[str], typer.Option("--version", help="A version label (default: the model version)")] = None,
    story: Annotated[Optional[list[str]], typer.Option("--story", help="A story id this package delivers (repeatable)")] = None,
    commit: Annotated[Optional[str], typer.Option("--commit", help="The source commit (default: git HEAD)")] = None,
    story_pattern: Annotated[Optional[str], typer.Option("--story-pattern", help="Regex for story ids in commit messages")] = None,
    repository: RepositoryOpt = None,
    directory: DirOpt = None,
    stack: StackOpt = None,
) -> None:
    """Validate an MDA and upload it once to the repository (the same bytes again are a no-op); only a
    publisher (`mxinfra:signing.publishers` of the -s stack) gives it a version label."""
    from .mda import open_mda
    from .governance.gitinfo import DEFAULT_STORY_PATTERN, head_commit, stories_since

    where = _group_options(ctx, repository=repository, directory=directory, stack=stack)
    url = resolve_repository(**where)
    repo = _repository(where, url)
    unlabelled_note = ""
    if version is None:
        version = open_mda(path).metadata.model_version
        if version == "unversioned":
            version = None
        elif not repo.may_label():
            # The label was not asked for: a non-publisher's push stores the bytes and leaves the label free.
            unlabelled_note = f"note: not labelled {version!r}: only publishers give packages version labels, and {repo.identity()} is not one"
            version = None
    here = path.resolve().parent
    commit = commit or head_commit(here)
    stories = list(story or [])
    if not stories and commit:
        previous = next((e.commit for e in repo.list() if e.commit), None)
        stories = stories_since(here, previous, story_pattern or DEFAULT_STORY_PATTERN)
    entry, uploaded = _push_with_progress(repo, path, version, commit, stories)
    console = _console()
    if unlabelled_note:
        _console(stderr=True).print(clean(unlabelled_note))
    if uploaded:
        console.print(clean(f"pushed {path.name} as sha256:{entry.sha256} ({entry.size_bytes:,} bytes) to {url}"))
    else:
        console.print(clean(f"already in {url}: sha256:{entry.sha256} (version {entry.version or '-'}); nothing uploaded"))
        if version and version != entry.version:
            # Entries never change once pushed: the same bytes keep their first label.
            console.print(clean(f"note: the label {version!r} was not added; these bytes are version {entry.version or '(none)'}"))
    if entry.stories:
        console.print(clean("stories: " + ", ".join(entry.stories)))


def _push_with_progress(repo: Any, path: Path, version: str | None, commit: str | None, stories: list[str]) -> Any:
    console = _console(stderr=True)
    size = path.stat().st_size
    if not console.is_terminal or size < 32 * 1024 * 1024:
        return repo.push(path, version=version, commit=commit, stories=stories)
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress("uploading", BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("push", total=size)
        return repo.push(path, version=version, commit=commit, stories=stories, progress=lambda n: bar.advance(task, n))


@package_app.command("list")
def package_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array instead of a table")] = False,
    repository: RepositoryOpt = None,
    directory: DirOpt = None,
    stack: StackOpt = None,
) -> None:
    """The packages in the repository, newest first; with -s, labels claimed by non-publishers are named."""
    where = _group_options(ctx, repository=repository, directory=directory, stack=stack)
    url = resolve_repository(**where)
    repo = _repository(where, url)
    entries = repo.list()
    problems = repo.label_problems(entries)
    if as_json:
        sys.stdout.write(json.dumps([e.to_json() for e in entries], indent=2, sort_keys=True) + "\n")
    else:
        from rich.table import Table

        table = Table("version", "sha256", "runtime", "size", "uploaded", "by", "stories")
        for e in entries:
            table.add_row(*_row(e.version or "-", e.sha256[:12], e.runtime_version, f"{e.size_bytes:,}", e.uploaded_at, e.uploaded_by, ", ".join(e.stories)))
        _console().print(table)
    if problems:
        raise UserError("the repository's version labels cannot be trusted:\n" + "\n".join(f"  - {p}" for p in problems))


@package_app.command("policy")
def package_policy(
    ctx: typer.Context,
    reader: Annotated[Optional[list[str]], typer.Option("--reader", help="A principal that plans and verifies (repeatable)")] = None,
    publisher: Annotated[Optional[list[str]], typer.Option("--publisher", help="A principal that pushes packages and labels them (repeatable; adds to the stack's mxinfra:signing.publishers)")] = None,
    deployer: Annotated[Optional[list[str]], typer.Option("--deployer", metavar="ENV=PRINCIPAL", help="A principal that deploys ENV and appends to its log (repeatable)")] = None,
    repository: RepositoryOpt = None,
    directory: DirOpt = None,
    stack: StackOpt = None,
) -> None:
    """Render the repository's least-privilege policy (S3: bucket and identity policies; Azure Blob: custom
    roles and conditional assignments): create-only writes, one log per deployer, labels by publishers
    only, nobody deletes."""
    from .governance.policy import azure_policies, s3_policies
    from .governance.signing_block import SigningConfig
    from .governance.store import _parse

    where = _group_options(ctx, repository=repository, directory=directory, stack=stack)
    url = resolve_repository(**where)
    deployers: dict[str, list[str]] = {}
    for item in deployer or []:
        env, sep, principal = item.partition("=")
        if not sep or not env or not principal:
            raise UserError(f"--deployer {item!r}: expected ENV=PRINCIPAL (an environment name, then the principal that deploys it)")
        deployers.setdefault(env, []).append(principal)
    # The stack's keys and publishers are checked like a plan checks them: a mutable key or a
    # malformed principal never reaches a policy document.
    cfg = _stack_signing(where, url) or SigningConfig()
    publishers = list(dict.fromkeys([*(cfg.publishers or []), *(publisher or [])]))
    kind, *place = _parse(url, None)
    if kind == "s3":
        doc = s3_policies(place[0], place[1], readers=reader or [], publishers=publishers, deployers=deployers,
                          signers=cfg.signers, trusted=[r for refs in cfg.trustedSigners.values() for r in refs])
    elif kind == "azblob":
        doc = azure_policies(place[0], place[1], place[2], readers=reader or [], publishers=publishers, deployers=deployers)
    else:
        raise UserError(f"{url}: a policy is rendered for s3:// and azblob:// repositories (a file:// one is as safe as its directory)")
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _changed(record: Any) -> str:
    """What a record changed, in a few words."""
    changes = record.changes
    if "intends" in changes:  # an intent record: what was about to run (its outcome, if recorded, follows it)
        intends = str(changes["intends"])
        rest = [k for k in changes if k not in ("intends", intends)]
        return f"intends {intends}" + (f": {', '.join(rest)}" if rest else "")
    restore = changes.get("restore")
    if isinstance(restore, dict):  # a restore's outcome: what it did not put back is the news (mxinfra.backups.RestoreFailed)
        missed = [k for k in ("database", "files") if restore.get(k) == "not restored"]
        return "restore" + (": nothing restored" if len(missed) == 2 else f": {missed[0]} not restored" if missed else "")
    # `constants` and `secrets` are sections (name -> from/to, changed/added/removed), not one tracked input
    tracked = [c for k, c in changes.items() if k not in ("constants", "secrets")]
    if tracked and all(isinstance(c, dict) and c.get("from") is None for c in tracked):
        return "first deployment"
    return ", ".join(changes) or "-"


ACTIVITY_FIELDS = ["time", "environment", "action", "actor", "package_version", "package_sha256", "artifact", "image", "instances", "changes", "seq", "hash"]


@activity_app.callback()
def activity(
    ctx: typer.Context,
    environment: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array instead of a table")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV, for export")] = False,
    repository: RepositoryOpt = None,
    directory: DirOpt = None,
    stack: StackOpt = None,
) -> None:
    """An environment's activity log, newest first (like the platform's, with CSV export)."""
    if ctx.invoked_subcommand is not None:
        if as_json or as_csv:
            raise UserError(f"--json and --csv belong to `mxinfra activity` itself, not to `activity {ctx.invoked_subcommand}`")
        _remember(ctx, repository=repository, directory=directory, stack=stack, environment=environment)
        return
    url = resolve_repository(repository, directory, stack)
    if as_json and as_csv:
        raise UserError("choose one of --json and --csv")
    from .governance.activity import ActivityLog

    log = ActivityLog(_store(url))
    envs = _environments(log, environment, url)
    records = sorted((r for env in envs for r in log.records(env)), key=lambda r: (r.time, r.environment, r.seq), reverse=True)
    rows = [{f: getattr(r, f) for f in ACTIVITY_FIELDS} for r in records]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=ACTIVITY_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "changes": json.dumps(row["changes"], sort_keys=True), "image": json.dumps(row["image"], sort_keys=True) if row["image"] else ""})
    else:
        from rich.table import Table

        table = Table("time", "environment", "action", "by", "package", "changed")
        for r in records:
            table.add_row(*_row(r.time, r.environment, r.action, r.actor, f"{r.package_version or '-'} ({r.package_sha256[:12]})", _changed(r)))
        _console().print(table if records else f"no activity recorded in {url}")


@activity_app.command("verify")
def activity_verify(
    ctx: typer.Context,
    environment: EnvOpt = None,
    state: Annotated[Optional[Path], typer.Option("--state", help="A `pulumi stack export` file: check the log still holds each environment's last record")] = None,
    repository: RepositoryOpt = None,
    directory: DirOpt = None,
    stack: StackOpt = None,
    repair: Annotated[bool, typer.Option("--repair", help="First write the locators, checkpoints and head hints killed writers left missing, and remove their temporary files")] = False,
) -> None:
    """Check every record: the hash chain, the signatures (and with -s, the keys the stack trusts and its app),
    and with -s or --state that the log still holds the Pulumi state's last record (truncation). With --repair,
    first heal what killed writers left behind (checkpoints are signed with the environment's key)."""
    from .governance.activity import ActivityLog
    from .governance.signing import appender_trust, own_trust

    where = _group_options(ctx, repository=repository, directory=directory, stack=stack, environment=environment)
    environment = where.pop("environment", None)
    url = resolve_repository(**where)
    store = _store(url)
    log = ActivityLog(store)
    envs = _environments(log, environment, url)
    stack, base = where.get("stack"), (where.get("directory") or Path(".")).resolve()
    raw, app = _stack_values(base, stack)
    if repair:
        for env in envs:
            signer = _repair_signer(raw, env, url, base)
            done = ActivityLog(store, signer=signer, trust=appender_trust(signer, own_trust(raw, env, url, base))).repair(env)
            _console().print(clean(f"{env}: repaired {done.describe()}" if done else f"{env}: nothing to repair"))
            if done.unsigned_checkpoints:
                _console(stderr=True).print(
                    clean(
                        f"note: {env}: {done.unsigned_checkpoints} checkpoint(s) missing and not written: signing one needs "
                        f"the environment's key (pass -s STACK naming its signer); the gate verifies from an older one meanwhile"
                    )
                )
    problems = []
    for env in envs:
        trust = own_trust(raw, env, url, base)
        problems += [f"{env}: {p}" for p in log.verify(env, signed=True, trust=trust, app=app)]
    console = _console()
    checked_heads = 0
    if state is not None or stack:
        heads, unavailable = _state_heads(state, stack, base)
        if unavailable:
            _console(stderr=True).print(clean(f"note: the Pulumi state's last records were not checked: {unavailable}"))
        for env, seq, digest in heads:
            if environment and env != environment:
                continue
            problem = log.verify_head(env, seq, digest)
            checked_heads += 1
            if problem:
                problems.append(f"{env}: {problem}")
    if problems:
        raise UserError("the activity log was tampered with:\n" + "\n".join(f"  - {p}" for p in problems))
    total = sum(len(log.records(env)) for env in envs)
    heads_note = f"; the Pulumi state's last record found in {checked_heads} environment(s)" if checked_heads else ""
    console.print(f"activity log intact: {total} signed record(s) in {len(envs)} environment(s){heads_note}")


def _repair_signer(raw: dict[str, Any], env: str, url: str, base: Path) -> Any:
    """The key `activity verify --repair` signs missing checkpoints with: the stack's signer of the environment,
    else an existing development key of a file:// repository; None (checkpoints left missing) otherwise."""
    from .governance.signing import dev_key_path, dev_signer, open_signer, signing_config

    cfg = signing_config(raw) if raw else None
    if cfg is not None and env in cfg.signers:
        return open_signer(cfg.signers[env], base)
    path = dev_key_path(url)
    return dev_signer(url) if path is not None and path.exists() else None


def _state_heads(state: Path | None, stack: str | None, base: Path) -> tuple[list[tuple[str, int, str]], str]:
    """(environment, lastRecordSeq, lastRecordHash) of each activity resource in the stack's Pulumi state, and
    why the state could not be read (for a missing `pulumi` without --state)."""
    import subprocess

    if state is not None:
        try:
            text = state.read_text()
        except OSError as exc:
            raise UserError(f"{state}: cannot read the state file: {exc.strerror or exc}") from None
        origin = str(state)
    else:
        try:
            done = subprocess.run(
                ["pulumi", "stack", "export", "--stack", str(stack)], cwd=base, capture_output=True, text=True, timeout=120, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return [], f"cannot run `pulumi stack export --stack {stack}` ({exc}); give the export with --state FILE"
        if done.returncode != 0:
            return [], f"`pulumi stack export --stack {stack}` failed: {done.stderr.strip()[:300]}; give the export with --state FILE"
        text, origin = done.stdout, f"pulumi stack export --stack {stack}"
    try:
        doc = json.loads(text)
        resources = (doc.get("deployment") or doc.get("checkpoint", {}).get("latest") or doc).get("resources") or []
        if not isinstance(resources, list):
            raise ValueError("resources is not a list")
    except (ValueError, AttributeError) as exc:
        raise UserError(f"{origin}: not a Pulumi state export ({exc})") from None
    heads = []
    for res in resources:
        outputs = res.get("outputs") if isinstance(res, dict) else None
        if not isinstance(outputs, dict) or "lastRecordSeq" not in outputs or "environment" not in outputs:
            continue
        seq, digest, env = outputs.get("lastRecordSeq"), outputs.get("lastRecordHash"), outputs.get("environment")
        if not isinstance(seq, int) or not isinstance(digest, str) or not isinstance(env, str):
            raise UserError(f"{origin}: resource {res.get('urn')}: lastRecordSeq/lastRecordHash/environment are not readable")
        heads.append((env, seq, digest))
    if not heads:
        return [], f"{origin} holds no activity resource (nothing deployed yet?)"
    return heads, ""


def _environments_of(project: Any, stack: str) -> list[str]:
    from .stackfile import read_stack_config

    declared = read_stack_config(project, stack).values.get("mxinfra:environments")
    return [str(n) for n in declared] if isinstance(declared, dict) else [stack]


def promote(
    source: Annotated[str, typer.Option("--from", help="The environment whose package is promoted")],
    destination: Annotated[str, typer.Option("--to", help="The environment that receives it")],
    package: Annotated[Optional[str], typer.Option("--package", help="Another recorded package (sha256:... or version)")] = None,
    stack: Annotated[Optional[str], typer.Option("-s", "--stack", help="The destination stack, when several declare --to")] = None,
    repository: RepositoryOpt = None,
    directory: DirOpt = None,
) -> None:
    """Write what --from last deployed (the package and what runs beside it) into the stack file of --to."""
    from .config import collect_stack_config
    from .errors import ConfigError
    from .stackfile import read_project, read_stack_config
    from .target import load_target
    from .governance.activity import ActivityLog
    from .governance.promotion import promotion_issues, trusted_deploys
    from .governance.repository import Repository
    from .governance.signing import trust_for

    directory = directory or Path(".")
    project = read_project(directory)
    holders = [s for s in ([stack] if stack else project.stacks()) if destination in _environments_of(project, s)]
    if len(holders) != 1:
        found = ", ".join(holders) or "none"
        hint = "; pick one with -s STACK" if len(holders) > 1 else ""
        raise UserError(f"{project.stack_config_dir}: environment {destination!r} must be declared by exactly one stack file (found: {found}){hint}")
    stack = holders[0]
    stack_file = project.stack_file(stack)
    raw = read_stack_config(project, stack)
    cfg, issues = collect_stack_config(raw, project=project.name, stack=stack)
    if cfg is None:
        raise ConfigError(issues, raw.source)
    env = next(e for e in cfg.environments if e.name == destination)
    if env.require_promotion_from is not None and env.require_promotion_from != source:
        # The gate would refuse it at `pulumi up`; refuse it here, before the stack file changes.
        raise UserError(
            f"{stack_file}: {env.config_path}.requirePromotionFrom is {env.require_promotion_from!r}: "
            f"{destination} receives only what passed {env.require_promotion_from}, not {source!r} "
            f"(mxinfra promote --from {env.require_promotion_from} --to {destination})"
        )
    target = load_target(cfg.app.target, file=raw.source)
    block, found = target.parse_block(raw, raw.source)
    if found:
        raise ConfigError(found, raw.source)

    url = resolve_repository(repository, directory, stack)
    store = _store(url)
    repo, log = Repository(store), ActivityLog(store)
    trust = trust_for(dict(raw.values), source, url, directory.resolve())
    deployed = trusted_deploys(log, source, trust, cfg.app.name)
    if package:
        entry = repo.find(package)
        deployed = [r for r in deployed if r.package_sha256 == entry.sha256]
        if not deployed:
            raise UserError(f"{url}: package sha256:{entry.sha256[:12]} was never deployed to {source!r}; only what passed {source} can be promoted")
    elif not deployed:
        raise UserError(f"{url}: no deploy recorded in environment {source!r}; nothing to promote")
    chosen = deployed[-1]
    entry = repo.find("sha256:" + chosen.package_sha256)

    # Everything the gate compares, written together: the package and, where the target runs one, the
    # artifact the source ran (its image digest, the Operator's sourceURL).
    writes: dict[str, Any] = {"mxinfra:app.package": "sha256:" + entry.sha256}
    artifact_key = target.artifact_key(env, block)
    if chosen.artifact is not None and artifact_key is not None and chosen.artifact != target.artifact(env, block):
        sharing = [e.name for e in cfg.environments if e.name != destination and target.artifact_key(e, block) == artifact_key]
        if sharing:
            raise UserError(
                f"{stack_file}: {artifact_key} is also what {', '.join(sharing)} run(s); give {destination} its own "
                f"(the target's per-environment setting) before promoting a different one to it"
            )
        writes[artifact_key] = chosen.artifact
    # The same rule the gate applies at `pulumi up`, asked before anything is written.
    refused = promotion_issues([env], entry.sha256, {destination: chosen.artifact if artifact_key else None}, url, raw.source, config=cfg, base_dir=project.directory)
    if refused:
        raise ConfigError(refused, raw.source)
    old = _write_values(stack_file, writes)
    console = _console()
    for key, value in writes.items():
        console.print(clean(f"{stack_file}: {key} {old[key]!r} -> {value!r}"))
    console.print(clean(f"promoted {entry.version or '-'} from {source} to {destination}; now run: pulumi up -s {stack}"))


def _sequence_offset(text: str) -> int:
    """How far this file indents a list's dash under its key (ruamel cannot detect it itself)."""
    lines = text.splitlines()
    for prev, line in zip(lines, lines[1:]):
        body = line.lstrip(" ")
        if body.startswith("- ") and prev.rstrip().endswith(":"):
            return (len(line) - len(body)) - (len(prev) - len(prev.lstrip(" ")))
    return 2


def _write_values(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Set config keys (`ns:block.a.b`) in a stack file in one atomic write, keeping its comments, key
    order and indentation; returns the old values."""
    from ruamel.yaml import YAML

    text = path.read_text()
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long values
    offset = _sequence_offset(text)
    yaml.indent(mapping=2, sequence=offset + 2, offset=offset)
    doc = yaml.load(text)
    config = (doc or {}).get("config")
    old: dict[str, Any] = {}
    for dotted, value in values.items():
        block_key, *parts = dotted.split(".")
        node = config.get(block_key) if config is not None else None
        if node is None:
            raise UserError(f"{path}: no {block_key} block to update")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        old[dotted] = node.get(parts[-1])
        node[parts[-1]] = value
    tmp = path.with_suffix(".yaml.tmp")
    with tmp.open("w") as fh:
        yaml.dump(doc, fh)
    tmp.replace(path)  # atomic: the stack file is never half-written
    return old


def trace(
    story: Annotated[str, typer.Argument(metavar="STORY", help="A story id, e.g. ORD-42")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text")] = False,
    repository: RepositoryOpt = None,
    directory: DirOpt = None,
    stack: StackOpt = None,
) -> None:
    """The packages that deliver a story, and where, when and by whom each was deployed."""
    from .governance.activity import ActivityLog
    from .governance.promotion import judge_deploy
    from .governance.repository import Repository

    url = resolve_repository(repository, directory, stack)
    store = _store(url)
    packages = [e for e in Repository(store).list() if story in e.stories]

    log = ActivityLog(store)
    records = [r for env in log.environments() for r in log.records(env) if r.action == "deploy"]
    trusts, app_name = _trace_trust(url, directory, stack, [r.environment for r in records])

    def signed_by(r: Any) -> str:
        # what a reader may believe about a record: the gate's own verdict (promotion.judge_deploy)
        return judge_deploy(r, trusts.get(r.environment) if trusts is not None else None, app_name)[1]

    result = [
        {
            "version": e.version,
            "sha256": e.sha256,
            "commit": e.commit,
            "deployments": [
                {"environment": r.environment, "time": r.time, "actor": r.actor, "seq": r.seq, "signed_by": signed_by(r)}
                for r in sorted(records, key=lambda r: r.time)
                if r.package_sha256 == e.sha256
            ],
        }
        for e in packages
    ]
    if as_json:
        sys.stdout.write(json.dumps({"story": story, "packages": result}, indent=2, sort_keys=True) + "\n")
        return
    console = _console()
    if not result:
        console.print(clean(f"no package references {story}"))
        return
    for p in result:
        console.print(clean(f"{p['version'] or '-'} sha256:{p['sha256'][:12]} commit {p['commit'] or '-'}"))
        for d in p["deployments"] or [{"environment": "(not deployed)", "time": "", "actor": "", "signed_by": ""}]:
            console.print(clean(f"  {d['environment']:<14} {d['time']}  {d['actor']}  {d['signed_by']}".rstrip()))


def _trace_trust(url: str, directory: Path | None, stack: str | None, environments: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    """The keys each environment's deploys must be signed with and the app, from the stack when one is given
    (the keys `activity verify` expects); None without a stack: trace then says who signed, not whether trusted."""
    from .governance.signing import Trust, own_trust

    if stack is None:
        return None, None
    base = (directory or Path(".")).resolve()
    raw, app_name = _stack_values(base, stack)
    # a stack that trusts no key for an environment (a log someone made up, say) trusts none of its records
    return {env: own_trust(raw, env, url, base) or Trust(frozenset(), ()) for env in sorted(set(environments))}, app_name


def _stack_values(base: Path, stack: str | None) -> tuple[dict[str, Any], str | None]:
    """The stack's raw config values and its app's name ({} and None without a stack): what `activity
    verify` and `trace` judge signatures and apps against."""
    if not stack:
        return {}, None
    from .stackfile import read_project, read_stack_config

    raw = dict(read_stack_config(read_project(base), stack).values)
    app_block = raw.get("mxinfra:app")
    return raw, str(app_block.get("name")) if isinstance(app_block, dict) and app_block.get("name") else None


def register(app: typer.Typer) -> None:
    """Add the governance commands to the main CLI."""
    app.add_typer(package_app, name="package")
    app.add_typer(activity_app, name="activity")
    app.command("promote")(promote)
    app.command("trace")(trace)
