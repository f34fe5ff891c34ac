"""Backups of an environment: the `mxinfra:environments.<env>.backups` schema, which backups retention
keeps, and from which environments a restore may come. Pure (no Pulumi, no I/O).

A backup is one archive named by its UTC start time (`20261204T020000Z.tar.gz`) in the layout of a
Mendix Cloud full snapshot: `db/db.backup` (pg_dump custom format) and `tree/` (the file store), so a
download is the archive as it is. Targets schedule the backups and apply `keep()`; the Kubernetes
target's container script applies the same rule in shell, and the tests hold the two to each other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from .environments import Environment, Role, check_environment_name
from .errors import ConfigIssue, UserError
from .schema import StrictModel

# Mendix Cloud's: nightly, dailies for two weeks, weeklies for three months, monthlies for a year.
DEFAULT_SCHEDULE = "0 2 * * *"
DEFAULT_DAILY_DAYS, DEFAULT_WEEKLY_WEEKS, DEFAULT_MONTHLY_MONTHS = 14, 13, 12

_CRON_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
# (lowest, highest) of each of the five fields: minute, hour, day of month, month, day of week
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_CRON_ITEM = re.compile(r"^(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$")
BACKUP_ID = re.compile(r"^(\d{8}T\d{6}Z)\.tar\.gz$")
ID_FORMAT = "%Y%m%dT%H%M%SZ"


def check_cron(expr: str) -> None:
    """Refuse a schedule a Kubernetes CronJob (or any cron) would not run, saying which field is wrong."""
    if expr in _CRON_MACROS:
        return
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected a cron schedule of 5 fields (minute hour day-of-month month day-of-week), e.g. {DEFAULT_SCHEDULE!r}, or one of {', '.join(sorted(_CRON_MACROS))}")
    for field_, (low, high), name in zip(fields, _CRON_RANGES, _CRON_NAMES):
        for item in field_.split(","):
            m = _CRON_ITEM.fullmatch(item)
            numbers = [int(g) for g in (m.group(2), m.group(3)) if g is not None] if m else []
            if m is None or any(not low <= n <= high for n in numbers) or (m.group(4) is not None and int(m.group(4)) == 0):
                raise ValueError(f"the {name} field {field_!r} is not valid: expected *, a number {low}-{high}, a range a-b, a list a,b or a step */n")


class RetentionConfig(StrictModel):
    """How long each tier of backups is kept; 0 turns a tier off."""

    daily: int = Field(DEFAULT_DAILY_DAYS, ge=0, le=3660, description="days: the newest backup of each day")
    weekly: int = Field(DEFAULT_WEEKLY_WEEKS, ge=0, le=520, description="weeks: the newest backup of each ISO week")
    monthly: int = Field(DEFAULT_MONTHLY_MONTHS, ge=0, le=120, description="months: the newest backup of each month")


class BackupsConfig(StrictModel):
    """`mxinfra:environments.<env>.backups`."""

    enabled: bool = True
    reason: str | None = Field(None, description="why a production environment has no backups")
    schedule: str = Field(DEFAULT_SCHEDULE, description="a cron schedule in UTC")
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    restoreFrom: list[str] = Field(default_factory=list, description="environments whose backups may be restored here")
    allowLowerTiers: bool = Field(False, description="let restoreFrom name an environment of a lower tier (e.g. test into production)")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        check_cron(v)
        return v

    @field_validator("restoreFrom")
    @classmethod
    def _sources(cls, v: list[str]) -> list[str]:
        for name in v:
            check_environment_name(name)
        return v

    @model_validator(mode="after")
    def _reason(self) -> BackupsConfig:
        if self.reason is not None and not self.reason.strip():
            raise ValueError("reason is empty: say why the environment has no backups")
        return self


_TIER = {Role.TEST: 0, Role.ACCEPTANCE: 1, Role.PRODUCTION: 2}


@dataclass(frozen=True)
class Backups:
    """An environment's validated backup settings."""

    enabled: bool = True
    schedule: str = DEFAULT_SCHEDULE
    daily_days: int = DEFAULT_DAILY_DAYS
    weekly_weeks: int = DEFAULT_WEEKLY_WEEKS
    monthly_months: int = DEFAULT_MONTHLY_MONTHS
    restore_from: tuple[str, ...] = ()
    allow_lower_tiers: bool = False
    reason: str | None = None

    @classmethod
    def of(cls, parsed: BackupsConfig | None) -> Backups:
        """The settings of a parsed block (None: the defaults)."""
        if parsed is None:
            return cls()
        r = parsed.retention
        return cls(parsed.enabled, parsed.schedule, r.daily, r.weekly, r.monthly, tuple(parsed.restoreFrom), parsed.allowLowerTiers, parsed.reason)


def of_environment(env: Environment) -> Backups:
    """The environment's backup settings (the defaults when it was built without any)."""
    return env.backups if isinstance(env.backups, Backups) else Backups()


def check_backups(envs: Sequence[Environment], configs: Mapping[str, Backups], file: str = "") -> list[ConfigIssue]:
    """The rules across fields and environments: production opts out only with a reason; a restore
    source of a lower tier than production needs `allowLowerTiers`; no environment restores from itself."""
    issues = []
    roles = {e.name: e.role for e in envs}
    for env in envs:
        b = configs.get(env.name) or Backups()
        path = f"{env.config_path or 'mxinfra:environments.' + env.name}.backups"
        if env.is_production and not b.enabled and not b.reason:
            issues.append(ConfigIssue(f"{path}.reason", "production requires backups: turning them off needs the reason", "set backups.reason to why, or remove enabled: false", file))
        for i, src in enumerate(b.restore_from):
            if src == env.name:
                issues.append(ConfigIssue(f"{path}.restoreFrom[{i}]", "an environment always restores its own backups: do not list it", "remove the entry", file))
            elif src in roles and _TIER[roles[src]] < _TIER[env.role] and env.is_production and not b.allow_lower_tiers:
                issues.append(
                    ConfigIssue(
                        f"{path}.restoreFrom[{i}]",
                        f"{src!r} is a {roles[src].value} environment: its data never goes into production by default",
                        "remove it, or set backups.allowLowerTiers: true if you really mean to overwrite production with it",
                        file,
                    )
                )
    return issues


def opt_out_warning(env: Environment, b: Backups) -> str | None:
    """The plan warning of a production environment whose backups are turned off."""
    if env.is_production and not b.enabled:
        return f"production has no backups ({b.reason}): nothing can be restored after a bad release or a lost database"
    return None


def restore_refusal(source: str, source_role: Role | None, target: Environment, b: Backups, *, allow_lower_tier: bool = False, source_stack: str | None = None) -> str | None:
    """Why a backup of `source` may not be restored into `target` (None: it may). `allow_lower_tier`
    is the command's explicit flag, needed on top of the config for a lower tier into production;
    `source_stack` names the stack that deploys `source` when it is not the destination's."""
    if source == target.name:
        if source_stack is None:
            return None
        # another stack's environment of the same name is not this one (any stack file can declare an
        # environment `production` with role test): restoreFrom never lists a namesake, so never allowed
        return (
            f"--from-stack {source_stack!r}: its environment {source!r} has {target.name}'s name but is not {target.name}: "
            f"{target.name} restores its own backups (leave --from-stack out) or those of another environment in backups.restoreFrom"
        )
    if source not in b.restore_from:
        listed = ", ".join(b.restore_from) or "none"
        return f"{target.name} restores only its own backups and those of backups.restoreFrom ({listed}): add {source!r} there to allow it"
    # the tier of a source in another stack is that stack file's word (any file can declare `role:
    # production`): production takes it for a lower tier (found by a hostile review, 2026-12-05)
    declared_lower = source_role is None or _TIER[source_role] < _TIER[target.role]
    lower = declared_lower or source_stack is not None
    if target.is_production and lower and not (b.allow_lower_tiers and allow_lower_tier):
        tier = source_role.value if source_role else "unknown tier"
        if not declared_lower:
            tier += f" as stack {source_stack!r} declares it, which production does not take on that stack's word"
        return f"{source!r} ({tier}) into production needs backups.allowLowerTiers in the config and the command's --allow-lower-tier"
    return None


def backup_id(when: datetime) -> str:
    """The archive name of a backup started at `when`."""
    return when.astimezone(timezone.utc).strftime(ID_FORMAT) + ".tar.gz"


def parse_id(name: str) -> datetime | None:
    """The start time an archive name carries (None: not a backup archive)."""
    m = BACKUP_ID.fullmatch(name)
    if not m:
        return None
    try:
        return datetime.strptime(m.group(1), ID_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


# A restore source (`<target>.database.fromBackup.<env>`): a backup id, or a point in time in UTC.
POINT_IN_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
RESTORE_FORMS = (
    "a backup id YYYYmmddTHHMMSSZ as `mxinfra backup list` prints it (e.g. 20261204T020000Z) "
    "or a point in time in UTC YYYY-mm-ddTHH:MM:SSZ (e.g. 2026-12-04T10:15:00Z)"
)
_COMPACT = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_POINT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
# ISO 8601 date-times that are not the form above: named precisely rather than "not a backup id"
_ISO_LIKE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(?P<zone>[zZ]|[+-][0-9]{2}(:?[0-9]{2})?)?")
# A point in time restores a new instance (server) apart from the one a backup id restores: `pit-<compact>`.
POINT_LABEL = "pit-"
# The word between the environment's database and the label in the name of the new instance (server) a
# `fromBackup` key puts in service, `<db>-from-<label>`: apart from `mxinfra backup restore`'s `<db>-<id>`.
RESTORED_KIND = "from"


class NotARestorePoint(ValueError):
    """The value has neither form (a target may accept forms of its own, e.g. an RDS snapshot name)."""


@dataclass(frozen=True)
class RestorePoint:
    """What a restore source names: a backup (by id) or a point in time, both as a UTC time."""

    value: str  # as configured
    time: datetime  # UTC
    is_backup: bool  # True: a backup id (the time `mxinfra backup list` names it by); False: a point in time

    @property
    def compact(self) -> str:
        """The time as a backup id writes it: YYYYmmddTHHMMSSZ."""
        return self.time.strftime(ID_FORMAT)

    @property
    def iso(self) -> str:
        """The time as the clouds' APIs take it: YYYY-mm-ddTHH:MM:SSZ."""
        return self.time.strftime(POINT_IN_TIME_FORMAT)

    @property
    def label(self) -> str:
        """How the new instance the restore creates is named after it (`<db>-from-<label>`): the backup id,
        or `pit-<compact time>` for a point in time, so the two kinds never name the same instance."""
        return self.compact if self.is_backup else POINT_LABEL + self.compact


def parse_restore_point(value: str, now: datetime | None = None) -> RestorePoint:
    """The backup id or point in time `value` names. A ValueError naming the expected forms for anything
    else: NotARestorePoint when it has neither form; a plain ValueError for a date that does not exist, a
    time without a zone or not in UTC, and (given `now`) a time after `now`."""
    if _COMPACT.fullmatch(value) or _POINT.fullmatch(value):
        backup = _COMPACT.fullmatch(value) is not None
        try:
            when = datetime.strptime(value, ID_FORMAT if backup else POINT_IN_TIME_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            raise ValueError(f"{value!r} is not a time: expected {RESTORE_FORMS}") from None
        if now is not None and when > now:
            raise ValueError(f"{value!r} is in the future (now: {now.astimezone(timezone.utc).strftime(POINT_IN_TIME_FORMAT)}): expected a time that has passed, {RESTORE_FORMS}")
        return RestorePoint(value, when, backup)
    iso = _ISO_LIKE.fullmatch(value)
    if iso is not None:
        zone = iso["zone"]
        if zone is None:
            raise ValueError(f"{value!r} has no time zone: expected {RESTORE_FORMS}; write the time in UTC with Z")
        raise ValueError(f"{value!r} is not a time in UTC with Z to the second: expected {RESTORE_FORMS}")
    raise NotARestorePoint(f"{value!r} is neither a backup id nor a point in time: expected {RESTORE_FORMS}")


def beyond_retention(point: RestorePoint, now: datetime, days: int) -> str | None:
    """Why a point in time cannot be restored at `now` from automated backups kept `days` days (None: it
    can): the clouds restore a point in time only within that retention."""
    if point.is_backup:
        return None
    earliest = now - timedelta(days=days)
    if point.time < earliest:
        return (
            f"{point.value} is older than the {days} day(s) the environment's automated backups are kept "
            f"(the earliest restorable time is about {earliest.astimezone(timezone.utc).strftime(POINT_IN_TIME_FORMAT)})"
        )
    return None


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def keep(times: Iterable[datetime], now: datetime, b: Backups = Backups(), pinned: Iterable[datetime] = ()) -> set[datetime]:
    """Which backups retention keeps at `now`: every one of the last 24 hours (an on-demand backup is
    not pruned by the next one of the same day), the newest of each day within `daily_days` days (today
    counts as one), of each ISO week within `weekly_weeks` weeks (this week counts), of each month within
    `monthly_months` months (this month counts); always the newest backup of all, any dated after `now`
    (a clock ahead is no reason to delete), and the `pinned` ones (a restore's source while the backup
    taken before the restore runs)."""
    ordered = sorted(set(times), reverse=True)
    pins = set(pinned)
    today = now.astimezone(timezone.utc).date()
    first_day = today - timedelta(days=b.daily_days - 1)
    first_monday = _monday(today) - timedelta(weeks=b.weekly_weeks - 1)
    month_now = today.year * 12 + today.month - 1
    kept: set[datetime] = set(ordered[:1])
    days: set[date] = set()
    weeks: set[date] = set()
    months: set[int] = set()
    for t in ordered:
        if t > now - timedelta(hours=24) or t in pins:
            kept.add(t)
        if t > now:
            continue
        d = t.astimezone(timezone.utc).date()
        week, month = _monday(d), d.year * 12 + d.month - 1
        if b.daily_days > 0 and d >= first_day and d not in days:
            days.add(d)
            kept.add(t)
        if b.weekly_weeks > 0 and week >= first_monday and week not in weeks:
            weeks.add(week)
            kept.add(t)
        if b.monthly_months > 0 and month > month_now - b.monthly_months and month not in months:
            months.add(month)
            kept.add(t)
    return kept


def retention_env(b: Backups) -> dict[str, str]:
    """The container script's retention variables (the same rule as `keep`)."""
    return {"KEEP_DAILY_DAYS": str(b.daily_days), "KEEP_WEEKLY_WEEKS": str(b.weekly_weeks), "KEEP_MONTHLY_MONTHS": str(b.monthly_months)}


# What became of the app around a restore that writes over the database it uses (Mendix Cloud restores only
# a stopped environment, and so does every target): the outcome's `app`, one of these, checked by the CLI.
APP_OUTCOMES = ("stopped, then started", "stopped, not started again", "not running")


def app_outcome_problem(target: str, how: str, outcome: Any) -> str | None:
    """Why a restore's outcome breaks the core's rule for one that replaced the database in place (None: it
    keeps it): the target must say what became of the app, in the core's words."""
    said = outcome.get("app") if isinstance(outcome, Mapping) else None
    if said in APP_OUTCOMES:
        return None
    return (
        f"the {target} target's {how} replaced the database in place but its outcome says {'nothing' if said is None else repr(said)} of the app: "
        f"a restore stops the app first and says what became of it ({', '.join(APP_OUTCOMES)})"
    )


class RestoreFailed(UserError):
    """A restore that failed in a way its target is certain of: after its intent the outcome is recorded all
    the same, exit 2. `outcome`: what else the target says happened (e.g. `app: stopped, then started`),
    kept by reference, so that a target may still fill it in while the exception leaves (the app started again)."""

    def __init__(self, message: str, outcome: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.outcome: dict[str, Any] = outcome if outcome is not None else {}

    #: what the record says of the database and the files, written over what the target said of them
    restored: ClassVar[Mapping[str, str]] = MappingProxyType({})


class FilesNotRestored(RestoreFailed):
    """A restore that replaced the database but could not put the files back: a change to record (the
    database is the backup's now) and to report, exit 2, with how to finish it."""

    restored: ClassVar[Mapping[str, str]] = MappingProxyType({"files": "not restored"})


class DatabaseNotRestored(RestoreFailed):
    """A restore that put the files back but not the database (AWS production: the files go back through a
    machine that backs up first, the database after, into a new instance that could not be made): recorded, exit 2."""

    restored: ClassVar[Mapping[str, str]] = MappingProxyType({"database": "not restored"})


class NothingRestored(RestoreFailed):
    """A restore that certainly changed neither the database nor the files (refused before it began, its
    Job never ran, the dump refused in one transaction): recorded so that its intent does not stand alone."""

    restored: ClassVar[Mapping[str, str]] = MappingProxyType({"database": "not restored", "files": "not restored"})
