"""Backups in the core: the config schema and its report, retention (`keep`), restore sources."""

from __future__ import annotations

import itertools
import re
import random
from datetime import date, datetime, timedelta, timezone

import pytest

from mxinfra.backups import Backups, backup_id, check_cron, keep, of_environment, opt_out_warning, parse_id, restore_refusal
from mxinfra.config import RawConfig, load_stack_config
from mxinfra.environments import Environment, EnvironmentName, Role
from mxinfra.errors import ConfigError

APP = {"name": "orders", "package": "orders.mda", "target": "fake"}
UTC = timezone.utc


def load(envs, stack="production"):
    # production must name where its packages come from (another rule of the same report)
    envs = {name: ({"requirePromotionFrom": "acceptance", **body} if name == "production" else body) for name, body in envs.items()}
    return load_stack_config(RawConfig({"mxinfra:app": APP, "mxinfra:environments": envs}, frozenset(), "Pulumi.x.yaml"), project="orders", stack=stack)


def issues(envs):
    with pytest.raises(ConfigError) as exc:
        load(envs)
    return {i.path: i for i in exc.value.issues}


# --- config ---------------------------------------------------------------------------------------


def test_defaults_are_mendix_clouds_nightly_two_weeks_three_months_a_year():
    env = load({"production": {}}).environment("production")
    b = of_environment(env)
    assert (b.enabled, b.schedule, b.daily_days, b.weekly_weeks, b.monthly_months) == (True, "0 2 * * *", 14, 13, 12)


def test_settings_are_read():
    env = load({"test": {"backups": {"schedule": "30 1 * * 1-5", "retention": {"daily": 7, "weekly": 0, "monthly": 3}, "restoreFrom": ["acceptance"]}}}).environment("test")
    b = of_environment(env)
    assert (b.schedule, b.daily_days, b.weekly_weeks, b.monthly_months, b.restore_from) == ("30 1 * * 1-5", 7, 0, 3, ("acceptance",))


def test_production_may_opt_out_only_with_a_reason_and_is_warned():
    found = issues({"production": {"backups": {"enabled": False}}})
    assert set(found) == {"mxinfra:environments.production.backups.reason"}
    assert "requires backups" in found["mxinfra:environments.production.backups.reason"].message
    env = load({"production": {"backups": {"enabled": False, "reason": "the database is the ERP's replica"}}}).environment("production")
    warning = opt_out_warning(env, of_environment(env))
    assert warning is not None and "ERP's replica" in warning
    test_env = load({"test": {"backups": {"enabled": False}}}).environment("test")
    assert opt_out_warning(test_env, of_environment(test_env)) is None


def test_every_problem_in_one_report_with_its_key_and_what_is_expected():
    found = issues(
        {
            "production": {"backups": {"schedule": "nightly", "retention": {"daily": -1, "weekyl": 3}, "restoreFrom": ["test", "production"]}},
            "acceptance": {"backups": {"schedule": "0 25 * * *", "enabled": "sometimes"}},
            "test": {},
        }
    )
    prefix = "mxinfra:environments."
    assert {
        prefix + "production.backups.schedule",
        prefix + "production.backups.retention.daily",
        prefix + "production.backups.retention.weekyl",
        prefix + "acceptance.backups.schedule",
        prefix + "acceptance.backups.enabled",
    } <= set(found)
    assert "5 fields" in found[prefix + "production.backups.schedule"].message
    assert "hour" in found[prefix + "acceptance.backups.schedule"].message
    assert "at least 0" in found[prefix + "production.backups.retention.daily"].message
    assert "weekly" in found[prefix + "production.backups.retention.weekyl"].fix


def test_restore_sources_are_checked_against_tiers():
    found = issues({"production": {"backups": {"restoreFrom": ["test", "production"]}}, "test": {}})
    assert "test environment" in found["mxinfra:environments.production.backups.restoreFrom[0]"].message
    assert "allowLowerTiers" in found["mxinfra:environments.production.backups.restoreFrom[0]"].fix
    assert "own backups" in found["mxinfra:environments.production.backups.restoreFrom[1]"].message
    # production into acceptance, when listed, is fine; so is test into production with the flag
    load({"acceptance": {"backups": {"restoreFrom": ["production"]}}, "production": {}})
    load({"production": {"backups": {"restoreFrom": ["test"], "allowLowerTiers": True}}, "test": {}})


def test_restore_from_a_bad_name_is_refused():
    found = issues({"production": {"backups": {"restoreFrom": ["Prod-EU"]}}})
    assert "environment name" in found["mxinfra:environments.production.backups.restoreFrom"].message


@pytest.mark.parametrize("expr", ["0 2 * * *", "*/15 * * * *", "0 0 1 * *", "5 4 * * 0,6", "0 22 * * 1-5", "@daily", "@weekly", "0 0 * 12 7"])
def test_cron_accepts(expr):
    check_cron(expr)


@pytest.mark.parametrize("expr", ["", "0 2 * *", "60 2 * * *", "0 24 * * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 8", "*/0 * * * *", "0 2 * * mon", "@nightly", "0 2 * * * *"])
def test_cron_refuses(expr):
    with pytest.raises(ValueError):
        check_cron(expr)


# --- restore sources ------------------------------------------------------------------------------


def _env(name, role, **backups):
    return Environment(EnvironmentName(name), role, backups=Backups(**backups))


def test_restore_rules():
    prod = _env("production", Role.PRODUCTION, restore_from=("test",), allow_lower_tiers=True)
    acc = _env("acceptance", Role.ACCEPTANCE, restore_from=("production",))
    assert restore_refusal("acceptance", Role.ACCEPTANCE, acc, of_environment(acc)) is None  # its own
    assert restore_refusal("production", Role.PRODUCTION, acc, of_environment(acc)) is None  # listed
    assert "restoreFrom" in restore_refusal("test", Role.TEST, acc, of_environment(acc))  # not listed
    # test into production: the config's allowLowerTiers AND the command's flag
    assert "--allow-lower-tier" in restore_refusal("test", Role.TEST, prod, of_environment(prod))
    assert restore_refusal("test", Role.TEST, prod, of_environment(prod), allow_lower_tier=True) is None
    # a namesake in another stack is not the environment itself: never allowed, whatever the flags
    said = restore_refusal("production", Role.TEST, prod, of_environment(prod), allow_lower_tier=True, source_stack="sandbox")
    assert said is not None and "--from-stack 'sandbox'" in said and "is not production" in said
    assert restore_refusal("production", Role.PRODUCTION, prod, of_environment(prod)) is None  # itself
    # a listed source's tier from another stack's file is not trusted: production takes it for a lower one
    listed = _env("production", Role.PRODUCTION, restore_from=("acceptance",))
    said = restore_refusal("acceptance", Role.PRODUCTION, listed, of_environment(listed), source_stack="evil")
    assert said is not None and "(production as stack 'evil' declares it, which production does not take on that stack's word)" in said and "--allow-lower-tier" in said
    assert restore_refusal("acceptance", Role.PRODUCTION, listed, of_environment(listed)) is None  # the same stack's word
    open_ = _env("production", Role.PRODUCTION, restore_from=("acceptance",), allow_lower_tiers=True)
    assert restore_refusal("acceptance", Role.PRODUCTION, open_, of_environment(open_), allow_lower_tier=True, source_stack="evil") is None  # config and flag
    strict = _env("production", Role.PRODUCTION, restore_from=("test",))
    assert restore_refusal("test", Role.TEST, strict, of_environment(strict), allow_lower_tier=True) is not None
    # an unknown tier counts as lower
    assert restore_refusal("test", None, strict, of_environment(strict)) is not None


# --- retention ------------------------------------------------------------------------------------


def test_ids_round_trip():
    t = datetime(2026, 12, 4, 2, 0, 5, tzinfo=UTC)
    assert backup_id(t) == "20261204T020005Z.tar.gz"
    assert parse_id(backup_id(t)) == t
    assert parse_id("20261304T020005Z.tar.gz") is None
    assert parse_id(".incomplete-20261204T020005Z.tar.gz") is None


NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)  # a Friday


def test_a_year_of_nightlies_keeps_14_dailies_the_weeklies_and_the_monthlies():
    nightly = [NOW - timedelta(days=i) for i in range(800)]
    kept = keep(nightly, NOW)
    days = {t.date() for t in kept}
    assert {NOW.date() - timedelta(days=i) for i in range(14)} <= days
    # dailies: the last 14 days only (the 15th is a Friday: neither a week's nor a month's newest)
    assert NOW.date() - timedelta(days=14) not in days
    # weeklies: one per ISO week for 13 weeks (this one counts): the newest, a Sunday for past weeks
    monday = NOW.date() - timedelta(days=NOW.weekday())
    for w in range(1, 13):
        assert monday - timedelta(weeks=w) + timedelta(days=6) in days
    assert monday - timedelta(weeks=13) + timedelta(days=6) not in days  # Sunday 6 September: no month's last day
    # monthlies: the last day of each of the 11 previous months
    for m in range(1, 12):
        first = date(NOW.year + (NOW.month - 1 - m) // 12, (NOW.month - 1 - m) % 12 + 1, 1)
        last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        assert last in days
    assert min(days) > date(2025, 12, 31)  # nothing older than a year (December 2025 ended outside)
    assert len(kept) == len(days) == 14 + 10 + 10  # dailies, then 10 more Sundays, then 10 more month ends


def test_newest_of_a_day_wins_and_the_newest_of_all_survives():
    day = NOW - timedelta(days=3)
    t = [day.replace(hour=h) for h in (0, 1)] + [NOW - timedelta(days=3000)]
    assert keep(t, NOW) == {day.replace(hour=1)}
    only_old = [NOW - timedelta(days=3000), NOW - timedelta(days=3001)]
    assert keep(only_old, NOW) == {NOW - timedelta(days=3000)}
    assert keep([], NOW) == set()


def test_every_backup_of_the_last_24_hours_is_kept():
    # an on-demand backup before a risky change survives the next one the same day
    recent = [NOW - timedelta(hours=h) for h in (0.5, 3, 23.9)]
    # past 24 hours, and its day's newest (23.9 hours ago) is another: pruned
    older_same_day_as_last = NOW - timedelta(hours=24, minutes=30)
    assert keep([*recent, older_same_day_as_last], NOW) == set(recent)
    assert keep([*recent, NOW - timedelta(hours=24)], NOW) == set(recent)  # exactly 24 hours: past, and not its day's newest
    two = [NOW - timedelta(hours=25), NOW - timedelta(hours=24, minutes=10)]  # both yesterday, past 24 hours
    assert keep(two, NOW) == {two[1]}


def test_a_pinned_backup_is_kept():
    day = NOW - timedelta(days=400)
    t = [day, day + timedelta(hours=1), NOW]
    assert keep(t, NOW) == {NOW}
    assert keep(t, NOW, pinned=[day]) == {NOW, day}


def test_backups_after_now_are_kept():
    ahead = [NOW + timedelta(hours=h) for h in (1, 2, 30)]
    assert keep(ahead + [NOW - timedelta(minutes=5)], NOW) == set(ahead) | {NOW - timedelta(minutes=5)}


def test_tiers_turned_off_keep_only_the_newest():
    off = Backups(daily_days=0, weekly_weeks=0, monthly_months=0)
    t = [NOW - timedelta(days=i) for i in range(40)]
    assert keep(t, NOW, off) == {NOW}


def _reference(times, now, b, pinned=()):
    """The rule restated bucket by bucket (not by walking the list as `keep` does)."""
    past = [t for t in times if t <= now]
    kept = {t for t in times if t > now - timedelta(hours=24) or t in pinned} | ({max(times)} if times else set())
    today = now.date()
    for i in range(b.daily_days):
        day = today - timedelta(days=i)
        in_day = [t for t in past if t.date() == day]
        kept |= {max(in_day)} if in_day else set()
    monday = today - timedelta(days=today.weekday())
    for i in range(b.weekly_weeks):
        start = monday - timedelta(weeks=i)
        in_week = [t for t in past if start <= t.date() < start + timedelta(days=7)]
        kept |= {max(in_week)} if in_week else set()
    for i in range(b.monthly_months):
        idx = today.year * 12 + today.month - 1 - i
        in_month = [t for t in past if (t.year, t.month) == (idx // 12, idx % 12 + 1)]
        kept |= {max(in_month)} if in_month else set()
    return kept


@pytest.mark.parametrize("seed", range(300))
def test_keep_matches_the_rule_bucket_by_bucket(seed):
    rng = random.Random(seed)
    now = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(10 * 365 * 86400))
    span = rng.choice([3, 20, 120, 500, 1500])
    times = [now - timedelta(seconds=rng.randrange(-86400 * 2, span * 86400)) for _ in range(rng.randrange(0, 80))]
    b = Backups(daily_days=rng.choice([0, 1, 7, 14]), weekly_weeks=rng.choice([0, 1, 4, 13]), monthly_months=rng.choice([0, 1, 3, 12]))
    pinned = rng.sample(times, min(len(times), rng.choice([0, 0, 1, 2])))
    assert keep(times, now, b, pinned) == _reference(times, now, b, pinned)


def test_keep_at_every_boundary_of_a_leap_year_end():
    # every hour-spaced now around year end (leap day, ISO week 53 of 2020) against two years of nightlies
    nightly = [datetime(2019, 6, 1, 2, tzinfo=UTC) + timedelta(days=i) for i in range(900)]
    b = Backups()
    for now in itertools.islice((datetime(2020, 12, 25, tzinfo=UTC) + timedelta(hours=7 * i) for i in range(200)), 200):
        assert keep(nightly, now, b) == _reference(nightly, now, b)


# --- restore sources (`<target>.database.fromBackup.<env>`, issue 21) ---------------------------------


def test_restore_point_reads_a_backup_id_or_a_point_in_time():
    from mxinfra.backups import RestorePoint, parse_restore_point

    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    backup = parse_restore_point("20261204T020000Z", now)
    assert backup == RestorePoint("20261204T020000Z", datetime(2026, 12, 4, 2, 0, tzinfo=UTC), True)
    assert (backup.compact, backup.iso, backup.label) == ("20261204T020000Z", "2026-12-04T02:00:00Z", "20261204T020000Z")
    point = parse_restore_point("2026-12-04T10:15:00Z", now)
    assert point == RestorePoint("2026-12-04T10:15:00Z", datetime(2026, 12, 4, 10, 15, tzinfo=UTC), False)
    # a point in time is named apart from the backup id of the same instant
    assert (point.compact, point.iso, point.label) == ("20261204T101500Z", "2026-12-04T10:15:00Z", "pit-20261204T101500Z")
    assert parse_restore_point("20261204T101500Z").label != point.label
    # now itself has passed; without `now` nothing is refused for being late
    assert parse_restore_point("2026-12-05T12:00:00Z", now).time == now
    assert parse_restore_point("2099-01-01T00:00:00Z").time.year == 2099


FORMS = "a backup id YYYYmmddTHHMMSSZ as `mxinfra backup list` prints it (e.g. 20261204T020000Z) or a point in time in UTC YYYY-mm-ddTHH:MM:SSZ (e.g. 2026-12-04T10:15:00Z)"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-12-05T12:00:01Z", "'2026-12-05T12:00:01Z' is in the future (now: 2026-12-05T12:00:00Z): expected a time that has passed, " + FORMS),
        ("20261205T120001Z", "'20261205T120001Z' is in the future (now: 2026-12-05T12:00:00Z): expected a time that has passed, " + FORMS),
        ("2026-12-04T10:15:00", f"'2026-12-04T10:15:00' has no time zone: expected {FORMS}; write the time in UTC with Z"),
        ("2026-12-04 10:15", f"'2026-12-04 10:15' has no time zone: expected {FORMS}; write the time in UTC with Z"),
        ("2026-12-04T10:15:00+00:00", f"'2026-12-04T10:15:00+00:00' is not a time in UTC with Z to the second: expected {FORMS}"),
        ("2026-12-04T10:15Z", f"'2026-12-04T10:15Z' is not a time in UTC with Z to the second: expected {FORMS}"),
        ("2026-12-04T10:15:00.5Z", f"'2026-12-04T10:15:00.5Z' is not a time in UTC with Z to the second: expected {FORMS}"),
        ("2026-02-30T10:15:00Z", f"'2026-02-30T10:15:00Z' is not a time: expected {FORMS}"),
        ("20261304T020000Z", f"'20261304T020000Z' is not a time: expected {FORMS}"),
    ],
)
def test_restore_point_refusals_name_the_expected_forms(value, message):
    from mxinfra.backups import NotARestorePoint, parse_restore_point

    with pytest.raises(ValueError) as exc:
        parse_restore_point(value, datetime(2026, 12, 5, 12, 0, tzinfo=UTC))
    assert str(exc.value) == message and not isinstance(exc.value, NotARestorePoint)


@pytest.mark.parametrize("value", ["", "2026-12-04", "20261204T020000", "20261204t020000z", "2026-12-04t10:15:00z", "yesterday", "rds:orders-db-x", "２０２６1204T020000Z", "20261204T020000Z\n"])
def test_neither_form_is_not_a_restore_point(value):
    from mxinfra.backups import NotARestorePoint, parse_restore_point

    with pytest.raises(NotARestorePoint, match=f"is neither a backup id nor a point in time: expected {re.escape(FORMS)}"):
        parse_restore_point(value)


def test_beyond_retention_names_it():
    from mxinfra.backups import beyond_retention, parse_restore_point

    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert beyond_retention(parse_restore_point("2026-12-04T12:00:00Z"), now, 1) is None  # exactly the retention
    why = beyond_retention(parse_restore_point("2026-12-04T11:59:59Z"), now, 1)
    assert why == "2026-12-04T11:59:59Z is older than the 1 day(s) the environment's automated backups are kept (the earliest restorable time is about 2026-12-04T12:00:00Z)"
    assert beyond_retention(parse_restore_point("2026-11-06T00:00:00Z"), now, 30) is None
    # a backup id is restored from its backup, not the automated backups' window
    assert beyond_retention(parse_restore_point("20200101T000000Z"), now, 1) is None


def test_a_restore_in_place_says_what_became_of_the_app_in_the_cores_words() -> None:
    from mxinfra.backups import APP_OUTCOMES, app_outcome_problem

    assert [app_outcome_problem("kubernetes", "restore", {"app": a}) for a in APP_OUTCOMES] == [None, None, None]
    assert app_outcome_problem("cloudfoundry", "restore --archive", {"files": 2}) == (
        "the cloudfoundry target's restore --archive replaced the database in place but its outcome says nothing of the app: "
        "a restore stops the app first and says what became of it (stopped, then started, stopped, not started again, not running)"
    )
    assert "says 'restarted' of the app" in str(app_outcome_problem("aws", "restore --archive", {"app": "restarted"}))
    assert app_outcome_problem("aws", "restore", None) is not None
