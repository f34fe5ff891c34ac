"""Unrecorded changes: what runs on the platform compared with what the activity log's signed records say.

The activity log and the promotion gate are client-side: whoever may change the workload directly (the
deploy group with `kubectl set image`, a leaked pipeline credential, a cluster administrator) skips both,
and no record is written. This module names every such difference.

The comparison is pure: `recorded_state` (records in, oldest first) and `differences` (recorded and
observed in, differences out). `check` reads the log through the governance API (as `mxinfra activity
verify` and the promotion gate do) and asks the target what runs (`Target.running`). `mxinfra drift` and
a target's `pulumi up` (the Kubernetes target calls `check` before it declares anything) go through the
same `check` and `DriftError`, so both refuse in the same words.

No Pulumi import, here or at import time of anything this module imports.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .errors import UserError

if TYPE_CHECKING:
    from .target import Deployment

HEADER = "unrecorded changes: what runs is not what the activity log's signed records say"
AUDIT = "find who made it in the API server's (or the cloud's) audit log"


class CannotObserve(UserError):
    """The target cannot read what runs (not implemented, or the platform could not be asked): exit 2."""


class DriftError(UserError):
    """What runs differs from the activity log; the message names every difference (exit 2)."""

    def __init__(self, found: Sequence[Difference]) -> None:
        self.differences = list(found)
        super().__init__(report(found))


@dataclass(frozen=True)
class Recorded:
    """What an environment's activity log says runs there, after its last record."""

    environment: str
    present: bool  # False: nothing recorded yet, or the last record is a destroy
    seq: int = 0
    action: str = ""
    time: str = ""
    actor: str = ""
    package_sha256: str | None = None
    package_version: str | None = None
    artifact: str | None = None
    instances: int | None = None
    # what the newest intent record says a `pulumi up` was about to apply, when no outcome followed it
    intent: Optional[Recorded] = None
    role: str | None = None  # the tier the newest record names (records written before they carried it: None)

    def describe(self) -> str:
        """How a message names the record: `the last record (seq 7: scale by rita at 2025-...)`."""
        if not self.seq:
            return "the activity log (no record yet)"
        return f"the last record (seq {self.seq}: {self.action} by {self.actor} at {self.time})"


@dataclass(frozen=True)
class Observed:
    """What runs in an environment, as its target read it from the platform."""

    environment: str
    workload: str  # how messages name what was read, e.g. "StatefulSet shop-production/shop-production"
    exists: bool
    package_sha256: str | None = None  # the package the workload says it runs (its release annotation), if any
    artifact: str | None = None  # the image, the Operator's sourceURL: what the log records as `artifact`
    artifact_kind: str = "artifact"  # "image", "sourceURL": how messages name `artifact`
    instances: int | None = None
    # The runtime configuration's fingerprint as the last release wrote it on the workload, and as computed
    # from what runs now. The record holds only a digest of the settings, which the platform's objects cannot
    # be turned back into, so this half is compared with what the release wrote, not with the record.
    released_config: str | None = None
    running_config: str | None = None
    config_note: str | None = None  # why the configuration was not compared, when it was not
    role: str | None = None  # the tier the workload is labelled or tagged with (mxinfra:role), if it says
    # How to put a field back, per field ("artifact", "instances", "config"): `{value}` is the recorded value.
    restore: Mapping[str, str] = field(default_factory=dict)
    # Standing credentials to the environment's data that a role holder minted outside any release (Cloud
    # Foundry's service keys, other apps' bindings, shares into other spaces), each named with how to remove
    # it: they outlive the grant of whoever made them.
    credentials: tuple[str, ...] = ()
    credentials_note: str | None = None  # what of them could not be read, and why (a warning on production)
    # (what, image) of each other deployment or revision of the workload that still runs or serves: an older
    # one a rollout is replacing, or one kept beside the recorded one (a rollout that never ends). How to
    # stop them: restore["beside"].
    beside: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Difference:
    """One way what runs differs from the log. `blocking`: an unrecorded change (pulumi up refuses);
    otherwise something is missing that `pulumi up` must be able to put back (it warns)."""

    environment: str
    field: str  # "workload", "artifact", "package", "instances", "config", "log", "role"
    recorded: str | None
    running: str | None
    message: str
    fix: str
    blocking: bool = True

    def __str__(self) -> str:
        return f"{self.environment}: {self.message} ({self.fix})"


# --- pure: records in, state out; recorded and observed in, differences out ------------------------------


def _count(value: Any) -> int | None:
    # Counts reach the log as JSON numbers (an old provider wrote 1.0 for 1).
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if float(value).is_integer() else None


def recorded_state(environment: str, records: Iterable[Any]) -> Recorded:
    """What runs after `records` (an environment's activity records, oldest first: ActivityRecord or alike).

    Every record names the package and the artifact it left running, and the instance count (older
    records: only the `changes` of the records that changed it say it; the first deploy lists every
    tracked input)."""
    from dataclasses import replace

    from .governance.activity import BACKUP_ACTIONS, INTENT

    state = Recorded(environment, present=False)
    instances: int | None = None
    intent: Recorded | None = None
    for r in records:
        where = {"seq": r.seq, "action": r.action, "time": r.time, "actor": r.actor}
        if r.action == INTENT and (r.changes or {}).get("intends") == "restore":
            continue  # a restore changes no workload: a `pulumi up` intent before it stays the pending one
        if r.action == INTENT:
            # about to be applied: what runs is the state before it until its outcome is recorded
            count = getattr(r, "instances", None)
            intent = Recorded(environment, present=True, **where, package_sha256=r.package_sha256, package_version=r.package_version,
                              artifact=r.artifact, instances=_count(count) if count is not None else instances)
            continue
        if r.action not in BACKUP_ACTIONS:  # they name what the last record left running, and settle no intent
            intent = None
        if r.action == "destroy":
            state, instances = Recorded(environment, present=False, **where), None
            continue
        change = (r.changes or {}).get("instances")
        if getattr(r, "instances", None) is not None:
            instances = _count(r.instances)
        elif isinstance(change, Mapping) and "to" in change:
            instances = _count(change["to"])
        state = Recorded(
            environment,
            present=True,
            **where,
            package_sha256=r.package_sha256,
            package_version=r.package_version,
            artifact=r.artifact,
            instances=instances,
            role=getattr(r, "role", None),
        )
    return replace(state, intent=intent) if intent is not None else state


def _restore(observed: Observed, key: str, value: object, what: str = "what the record names") -> str:
    how = observed.restore.get(key)
    command = f" ({how.format(value=value)})" if how else ""
    return f"put back {what}{command}, {AUDIT}; then change it through `pulumi up`, which records it"


def differences(recorded: Recorded, observed: Observed) -> list[Difference]:
    """Every way `observed` differs from `recorded`; [] when what runs is what the log says. What runs as
    an unconfirmed intent says (a `pulumi up` applied it and did not record its outcome) is one warning."""
    found = _differences(recorded, observed)
    intent = recorded.intent
    if found and intent is not None and not _differences(intent, observed):
        return [
            Difference(
                recorded.environment,
                "outcome",
                recorded.package_version or recorded.package_sha256,
                intent.package_version or intent.package_sha256,
                f"{observed.workload} runs what the intent record (seq {intent.seq}, by {intent.actor} at {intent.time}) "
                f"says a `pulumi up` was about to apply, but no record of its outcome follows it: that run applied it "
                "and stopped before it recorded it",
                "run `pulumi up` again: it records the outcome",
                blocking=False,
            )
        ]
    return found


def _differences(recorded: Recorded, observed: Observed) -> list[Difference]:
    env, what, desc = recorded.environment, observed.workload, recorded.describe()
    if not observed.exists:
        if not recorded.present:
            return []
        return [
            Difference(
                env,
                "workload",
                recorded.package_version or recorded.package_sha256,
                None,
                f"nothing runs as {what}, but {desc} says {recorded.package_version or recorded.package_sha256} runs there: removed outside a release",
                f"{AUDIT}; `pulumi refresh` and then `pulumi up` create it again as the stack declares it",
                blocking=False,
            )
        ]
    if not recorded.present:
        why = f"{desc} destroyed it" if recorded.seq else "the activity log records no deployment of it"
        return [
            Difference(
                env,
                "workload",
                None,
                what,
                f"{what} runs, but {why}: an unrecorded deployment",
                f"{AUDIT} and remove it, or point mxinfra:repository at the log that recorded it",
            )
        ]
    out = []
    kind = observed.artifact_kind
    if recorded.artifact is not None and observed.artifact != recorded.artifact:
        out.append(
            Difference(
                env,
                "artifact",
                recorded.artifact,
                observed.artifact,
                f"{what} runs {kind} {observed.artifact}, but {desc} names {kind} {recorded.artifact}: an unrecorded change",
                _restore(observed, "artifact", recorded.artifact),
            )
        )
    if observed.package_sha256 is not None and observed.package_sha256 != recorded.package_sha256:
        out.append(
            Difference(
                env,
                "package",
                recorded.package_sha256,
                observed.package_sha256,
                f"{what} says it runs package sha256:{observed.package_sha256[:12]}, but {desc} names "
                f"sha256:{(recorded.package_sha256 or '')[:12]} ({recorded.package_version or 'no version'}): an unrecorded change",
                f"{AUDIT}; then release through `pulumi up`, which records what it deploys",
            )
        )
    if recorded.instances is not None and observed.instances != recorded.instances:
        out.append(
            Difference(
                env,
                "instances",
                str(recorded.instances),
                None if observed.instances is None else str(observed.instances),
                f"{what} runs {observed.instances} instance(s), but {desc} names {recorded.instances}: an unrecorded scale",
                _restore(observed, "instances", recorded.instances),
            )
        )
    if observed.released_config is not None and observed.running_config != observed.released_config:
        out.append(
            Difference(
                env,
                "config",
                observed.released_config,
                observed.running_config,
                f"{what}'s runtime configuration (containers, env, ConfigMaps) hashes to {str(observed.running_config)[:12]}, "
                f"not the {observed.released_config[:12]} its last release wrote on it: changed after the release",
                _restore(observed, "config", observed.released_config, "what the last release applied"),
            )
        )
    return out


def report(found: Sequence[Difference]) -> str:
    """The message of `mxinfra drift` and of a refused `pulumi up`: every difference on its own line."""
    return HEADER + ":\n" + "\n".join(f"  - {d}" for d in found)


# --- reading the log, asking the target ---------------------------------------------------------------


def recorded(deployment: Deployment, environment: str, base_dir: Path) -> tuple[Recorded, list[Difference]]:
    """What the log says runs in `environment`, and the log's own problems (a log that does not verify
    proves nothing about what ran: each problem is a blocking difference)."""
    from .governance.activity import INTENT, ActivityLog
    from .governance.signing import own_trust
    from .governance.store import open_store

    url, app = deployment.repository, deployment.config.app.name
    log = ActivityLog(open_store(url))
    trust = own_trust(deployment.config.raw.values, environment, url, base_dir)
    if trust is None:
        # no key to trust a checkpoint by (an unsigned cloud log): the whole chain, as verify reads it
        problems = log.verify(environment, signed=True, trust=None, app=app)
        records = [] if problems else log.records(environment)
    else:
        # every `pulumi up` runs this: read from the newest trusted checkpoint, whatever the history
        records, problems = log.recent(environment, trust=trust, app=app)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        return Recorded(environment, present=False), [
            Difference(
                environment,
                "log",
                None,
                None,
                f"the activity log of {environment!r} ({url}) does not verify, so what runs cannot be compared with it: {shown}",
                "run `mxinfra activity verify` and restore the log",
            )
        ]
    state = recorded_state(environment, records)
    if state.present and state.instances is None and records:
        # records older than the `instances` field say the count only where it changed: read back to that
        older: list[Any] = []
        record: Any = records[0]
        while (record := log.earlier(environment, record)) is not None:
            older.append(record)
            if record.action != INTENT and (record.action == "destroy" or record.instances is not None or "instances" in (record.changes or {})):
                break
        state = recorded_state(environment, [*reversed(older), *records])
    return state, []


def standing_credentials(observed: Observed, declared_role: str) -> Difference | None:
    """Production's data reached by a credential nobody holds through a grant (a service key a time-boxed
    deploy grant minted outlives it): refused, as an unrecorded change is, until it is removed. What of them
    the reader could not read is a warning (`pulumi up` goes on, `mxinfra drift` does not say clean). Below
    production they are the team's (and `mxinfra backup` mints its own for a command's length). None when
    there are none and all were read."""
    if "production" not in (declared_role, observed.role):
        return None
    unread = f" (and not all were read: {observed.credentials_note})" if observed.credentials_note else ""
    if observed.credentials:
        return Difference(
            observed.environment,
            "credentials",
            None,
            ", ".join(observed.credentials),
            f"{len(observed.credentials)} standing credential(s) to production's data, made outside any release: "
            + "; ".join(observed.credentials)
            + f": each outlives the grant of whoever made it{unread}",
            f"{AUDIT}; remove them as named (a `mxinfra backup` command removes its own key when it ends: look at when each was made)",
        )
    if observed.credentials_note:
        return Difference(
            observed.environment,
            "credentials",
            None,
            None,
            f"standing credentials to production's data not all read: {observed.credentials_note}",
            "run `mxinfra drift` as `monitor`, which reads them all",
            blocking=False,
        )
    return None


def running_beside(observed: Observed, recorded: Recorded) -> Difference | None:
    """Other deployments or revisions of the workload that run or serve another image than the record's: a
    warning, not a refusal. Right after every release the one it replaces still runs until its rollout ends,
    and a rollout that never ends keeps it for good: refusing would stop the next release, the fix among
    them; `mxinfra drift` names them (exit 2) and `pulumi up` warns. None when there are none."""
    if not (observed.exists and recorded.present and recorded.artifact):
        return None
    others = [f"{image} ({what})" for what, image in observed.beside if image != recorded.artifact]
    if not others:
        return None
    return Difference(
        observed.environment,
        "beside",
        recorded.artifact,
        ", ".join(others),
        f"{observed.workload} also runs what {recorded.describe()} does not name: {', '.join(others)}: the deployment a release replaces, "
        "until its rollout ends, or one kept running beside the recorded one by a rollout that never ends",
        f"if it outlasts a release's rollout, {AUDIT}; {observed.restore.get('beside') or 'stop it'}",
        blocking=False,
    )


def tier_downgrade(observed: Observed, declared_role: str, recorded: Recorded | None = None) -> Difference | None:
    """A production environment that the stack now declares another tier (issue 19, F18): one update would
    drop its protection, deletion protection and MFA rules. Production's by what runs (its mxinfra:role) or
    by the log (the newest record names the tier; a workload deleted by hand still leaves its database).
    Refused; None when it is not one."""
    if declared_role == "production":
        return None
    by_workload = observed.exists and observed.role == "production"
    by_log = recorded is not None and recorded.present and recorded.role == "production"
    if not (by_workload or by_log):
        return None
    whose = f"{observed.workload} is production's (its mxinfra:role)" if by_workload else f"{recorded.describe()} says {observed.environment!r} is production"  # type: ignore[union-attr]
    return Difference(
        observed.environment,
        "role",
        "production",
        declared_role,
        f"{whose}, but the stack now declares {observed.environment!r} "
        f"role {declared_role}: that would drop production's protection, deletion protection and MFA rules in one update",
        f"keep role: production; to retire it, destroy the environment as the target's README says (protection lifted "
        f"on purpose), then declare it anew",
    )


def check(deployment: Deployment, environments: Sequence[str], observe: Callable[[str], Observed], base_dir: Path) -> tuple[list[Difference], list[str]]:
    """(differences, notes) of each environment: `observe(env)` is what runs, the log is read from the
    deployment's repository. Notes say what was compared where nothing differs, or what was not compared."""
    found: list[Difference] = []
    notes: list[str] = []
    for env in environments:
        state, problems = recorded(deployment, env, base_dir)
        if problems:
            found += problems
            continue
        observed = observe(env)
        diffs = differences(state, observed)
        declared = deployment.environment(env).environment.role.value
        downgrade = tier_downgrade(observed, declared, state)
        if downgrade is not None:
            diffs.append(downgrade)
        minted = standing_credentials(observed, declared)
        if minted is not None:
            diffs.append(minted)
        beside = running_beside(observed, state)
        if beside is not None:
            diffs.append(beside)
        found += diffs
        if observed.config_note:
            notes.append(f"{env}: runtime configuration not compared: {observed.config_note}")
        if not diffs:
            if observed.exists:
                notes.append(f"{env}: {observed.workload} runs what {state.describe()} names")
            else:
                notes.append(f"{env}: nothing runs as {observed.workload}, and nothing is recorded as running")
    return found, notes


# --- the command ---------------------------------------------------------------------------------------


def drift(
    stack: Annotated[str, typer.Option("-s", "--stack", help="The stack whose environments to compare")],
    environment: Annotated[Optional[str], typer.Option("-e", "--environment", help="One environment (default: every one of the stack)")] = None,
    directory: Annotated[Path, typer.Option("-C", "--cwd", help="The Pulumi project directory")] = Path("."),
) -> None:
    """Compare what runs on the platform with the activity log's signed records: exit 2 naming every
    unrecorded change (an image, package source, instance count or configuration changed outside a release)."""
    from .deployment import deferred_gate, prepare
    from .display import clean
    from .stackfile import read_project, read_stack_config

    project = read_project(directory)
    raw = read_stack_config(project, stack)
    # The promotion gate is about what the stack would deploy next, not about what runs: not asked here.
    with deferred_gate():
        deployment = prepare(raw, project=project.name, stack=stack, base_dir=project.directory)
    names = [p.environment.name for p in deployment.environments]
    if environment is not None and environment not in names:
        from .errors import suggest

        hint = suggest(environment, names)
        raise UserError(f"{raw.source}: stack {stack!r} has no environment {environment!r}{' (' + hint + ')' if hint else ''}; its environments: {', '.join(names)}")
    chosen = [environment] if environment is not None else names
    target = deployment.target
    found, notes = check(deployment, chosen, lambda env: target.running(deployment, env, project.directory), project.directory)
    for note in notes:
        sys.stdout.write(clean(note) + "\n")
    if found:
        raise DriftError(found)
