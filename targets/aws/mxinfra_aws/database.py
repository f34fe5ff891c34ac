"""The database: RDS PostgreSQL whose master password RDS keeps in Secrets Manager (never in Pulumi state).

Which instance serves the app is decided here, once (`in_service`): the environment's own `<db>`, or,
with `mxinfra:aws.database.fromBackup.<env>`, a NEW instance created from that backup's (or snapshot's)
RDS snapshot, `<db>-from-<id>`, or restored from the environment's own instance's automated backups to a
point in time, `<db>-from-pit-<time>` (the same instance with only the source input differing). The decision travels in the environment's Arns (`Arns.restored`), which
the runtime's secret grant, the backup selection and the `backups` role read; the runtime takes the
endpoint and master secret of the `Database` `create` returns. The environment's instance stays declared
as it is (protected, retained, deletion protection where it had them): switching never drops its data.

Everything here is pure but `create`, which imports Pulumi and runs only while deploying.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, Any

# RESTORED_KIND (`from`), the core's: the instance a config key puts in service is `<db>-from-<label>`,
# never `mxinfra backup restore`'s copy `<db>-<id>`.
from mxinfra.backups import RESTORED_KIND

from .config import AwsConfig, SnapshotSource
from .policies import restored_identifier

if TYPE_CHECKING:
    import pulumi
    import pulumi_aws as aws

    from mxinfra.target import EnvironmentContext

    from .policies import Arns

DB_NAME = "mendix"
DB_USER = "mendix"
# Per role: (default instance class, days of automated backups).
DEFAULTS = {
    "test": ("db.t4g.micro", 1),
    "acceptance": ("db.t4g.small", 7),
    "production": ("db.m7g.large", 30),
}


# The snapshot of a backup id is looked up in the vault by `pulumi preview`/`up`; the offline plan says so.
LOOKED_UP = "(the database recovery point of backup {id} in vault {vault}: looked up by pulumi up)"
# The vault no longer holds the backup (expired) but the instance exists: the snapshot only matters on
# creation, and the state keeps the one it was created from (ignore_changes).
ALREADY_CREATED = "(created from backup {id} before: kept as in the state)"


@dataclass(frozen=True)
class Restored:
    """The restored instance that serves the app instead of the environment's own."""

    source: SnapshotSource
    identifier: str  # <db>-from-<id>, within RDS's 63 characters
    kind: str  # its logical name's kind: db-from-<id>, next to the environment's `db`


def in_service(cfg: AwsConfig, environment: str, db_identifier: str) -> Restored | None:
    """THE decision of which instance serves `environment`: None for its own `db_identifier`, else the
    instance restored from `database.fromBackup.<environment>`. Its identifier follows from the key alone:
    another backup is another instance, never the same one replaced. Within RDS's 63 characters (a
    digest where `<db>-from-<id>` would not fit; `<db>` is at most 44 with names of at most 20); a
    ValueError for a malformed key, which the config check reports before anything runs."""
    source = cfg.database.source(environment)
    if source is None:
        return None
    # A backup id or a point in time is named by the core's rule (the id; `pit-<compact time>`), a snapshot
    # (by identifier or ARN alike) by a digest of its identifier.
    label = source.point.label if source.point is not None else sha256((source.snapshot or "").encode()).hexdigest()[:12]
    identifier = restored_identifier(db_identifier, label, RESTORED_KIND)
    return Restored(source, identifier, "db-" + identifier.removeprefix(db_identifier + "-"))


@dataclass
class Database:
    """The instance the app uses and where the runtime finds its credentials; `own` is the environment's
    instance, which stays declared while a restored one serves."""

    instance: aws.rds.Instance
    endpoint: pulumi.Output[str]  # host:port
    master_secret_arn: pulumi.Output[str]
    own: aws.rds.Instance | None = None
    restored: Restored | None = None


def keeps_final_snapshot(role: str) -> bool:
    """Acceptance and production data survive deletion as a final snapshot (and deletion is blocked)."""
    return role in ("acceptance", "production")


def create(
    ctx: EnvironmentContext,
    cfg: AwsConfig,
    a: Arns,
    security_group: aws.ec2.SecurityGroup,
    look_up: Callable[[Restored], str | None] | None = None,
    exists: Callable[[Restored], bool] | None = None,
) -> Database:
    """The subnet group, the environment's instance and, when `a.restored` says so, the restored instance
    that serves the app. `look_up`: the snapshot of an AWS Backup recovery point in the environment's
    vault (backup_actions.restore_source, which target.py passes: this module does not import the SDK's
    side), None when the instance was created from it before. `exists`: whether the restored instance
    exists already (backup_actions.restored_exists), asked only for a point in time beyond the automated
    backups' retention."""
    import pulumi
    import pulumi_aws as aws

    n, env = ctx.naming, ctx.environment
    role = env.role.value
    default_class, backup_days = DEFAULTS[role]
    guarded = keeps_final_snapshot(role)
    subnets = aws.rds.SubnetGroup(
        n.logical("db-subnets"),
        name=a.db_identifier,
        description=f"{n.prefix}: the database's subnets",
        subnet_ids=list(cfg.subnetIds),
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )

    def instance(kind: str, identifier: str, *, snapshot: Any = None, point_in_time: dict[str, str] | None = None, after: Any = None) -> tuple[aws.rds.Instance, pulumi.Output[str]]:
        """One instance with every guarantee, and its managed master secret's rotation."""
        final_snapshot = None
        if guarded:
            # Created once with the instance: a destroyed and recreated environment gets a new suffix, so its
            # final snapshot does not collide with the one the first destroy left behind.
            suffix = _random_id(n.logical(f"{kind}-final-suffix"), ctx)
            final_snapshot = pulumi.Output.concat(a.final_snapshot_prefix, "-", suffix.hex)
        restored = snapshot is not None or point_in_time is not None
        # A restored instance takes its database and master user from the snapshot or the source instance;
        # only where it comes from differs, and that input matters only on creation (ignore_changes).
        source, ignored = ({"restore_to_point_in_time": point_in_time}, "restoreToPointInTime") if point_in_time is not None else ({"snapshot_identifier": snapshot}, "snapshotIdentifier")
        db = aws.rds.Instance(
            n.logical(kind),
            identifier=identifier,
            engine="postgres",
            engine_version=cfg.database.engineVersion,
            instance_class=cfg.database.instanceClass or default_class,
            allocated_storage=cfg.database.allocatedStorageGb,
            max_allocated_storage=max(cfg.database.maxAllocatedStorageGb, cfg.database.allocatedStorageGb),
            storage_type="gp3",
            storage_encrypted=True,
            **(source if restored else {"db_name": DB_NAME, "username": DB_USER}),
            # RDS generates and rotates the password in Secrets Manager: Pulumi never sees it.
            manage_master_user_password=True,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[security_group.id],
            publicly_accessible=False,
            multi_az=env.is_production,
            backup_retention_period=backup_days,
            copy_tags_to_snapshot=True,
            deletion_protection=guarded,
            skip_final_snapshot=not guarded,
            final_snapshot_identifier=final_snapshot,
            delete_automated_backups=not guarded,
            auto_minor_version_upgrade=True,
            # Changes wait for the maintenance window instead of restarting a running database.
            apply_immediately=not guarded,
            tags=dict(ctx.tags),
            # A restored instance also holds data written while it served: whatever the tier, removing or
            # changing the key forgets it (retain_on_delete) and never deletes it; retiring it is a
            # separate step (README). Its source matters only on creation (an expired backup is fine then). A
            # point in time is restored from the environment's instance: created after it.
            opts=ctx.opts(protect_data=True, **({"retain_on_delete": True, "ignore_changes": [ignored]} if restored else {}), **({"depends_on": [after]} if after is not None else {})),
        )
        secret_arn = db.master_user_secrets.apply(lambda s: s[0].secret_arn if s else None)
        # RDS rotates the managed password every 7 days by default; ECS reads it only when a task starts, so
        # every rotation redeploys the services (rotation.py). The schedule is configurable; the rotation
        # waits for it rather than rotating on creation.
        aws.secretsmanager.SecretRotation(
            n.logical(f"{kind}-password-rotation"),
            secret_id=secret_arn,
            rotation_rules={"automatically_after_days": cfg.database.passwordRotationDays},
            rotate_immediately=False,
            # A restored instance outlives the key (retained): its password keeps rotating when it is forgotten.
            opts=ctx.opts(**({"retain_on_delete": True} if restored else {})),
        )
        return db, secret_arn

    own, own_secret = instance("db", a.db_identifier)
    if a.restored is None:
        return Database(own, own.endpoint, own_secret, own)
    r = a.restored
    point = r.source.point_in_time
    if point is not None:
        _check_point_in_time(ctx, a, r, role, backup_days, exists)
        restore = {"source_db_instance_identifier": a.db_identifier, "restore_time": point.iso}
        served, secret = instance(r.kind, r.identifier, point_in_time=restore, after=own)
    else:
        served, secret = instance(r.kind, r.identifier, snapshot=_snapshot_of(a, r, look_up))
    return Database(served, served.endpoint, secret, own, r)


def _random_id(name: str, ctx: EnvironmentContext) -> Any:
    import pulumi_random

    return pulumi_random.RandomId(name, byte_length=4, opts=ctx.opts())


def retention_days(role: str) -> int:
    """How many days of automated backups RDS keeps on an instance of `role`: how far back a point in
    time can be restored."""
    return DEFAULTS[role][1]


def aged_point_in_time(cfg: AwsConfig, environment: str, role: str) -> str | None:
    """The plan's warning for a `database.fromBackup` point in time beyond the automated backups' retention:
    only `pulumi preview`/`up` can ask whether the restored instance was created from it while it could be
    (then it is kept; else they stop, `_check_point_in_time`), so the offline plan warns instead."""
    from datetime import datetime, timezone

    from mxinfra.backups import beyond_retention

    try:
        source = cfg.database.source(environment)
    except ValueError:
        return None  # the config check reports it
    point = source.point_in_time if source is not None else None
    why = beyond_retention(point, datetime.now(timezone.utc), retention_days(role)) if point is not None else None
    if why is None:
        return None
    return f"database.fromBackup: {why}: pulumi up keeps the restored instance if it was created from it before, else stops (name a later time, a backup id or a snapshot)"


def _deploying() -> bool:
    """Under a real engine (`pulumi preview`/`up`), which can ask AWS; not the offline plan or tests."""
    from mxinfra.release_guard import under_mocks

    return not under_mocks()


def _check_point_in_time(ctx: EnvironmentContext, a: Arns, r: Restored, role: str, days: int, exists: Callable[[Restored], bool] | None) -> None:
    """A point in time beyond the automated backups' retention cannot be restored: `pulumi preview`/`up`
    stop before declaring anything unless the instance was created from it while it could (it exists,
    tagged the environment's; its source matters only on creation). The offline plan cannot ask AWS: it
    warns (AwsTarget.warnings) and declares the instance."""
    from datetime import datetime, timezone

    from mxinfra.backups import beyond_retention
    from mxinfra.errors import UserError

    point = r.source.point_in_time
    why = beyond_retention(point, datetime.now(timezone.utc), days) if point is not None else None
    if why is None or not _deploying() or exists is None or exists(r):
        return
    raise UserError(
        f"{ctx.environment.name}: mxinfra:aws.database.fromBackup.{ctx.environment.name}: {why} on {role}, and "
        f"{r.identifier} does not exist: name a later point in time, a backup id (`mxinfra backup list`) or an RDS snapshot of {a.db_identifier}"
    )


def _snapshot_of(a: Arns, r: Restored, look_up: Callable[[Restored], str | None] | None) -> str:
    """The RDS snapshot the restored instance is created from. A manual or automated snapshot is named
    as configured; an AWS Backup recovery point is looked up in the environment's vault (a backup id's
    snapshot, or the check that an `awsbackup:job-<id>` is the environment's) by `pulumi preview`/`up`,
    never by the offline plan."""
    from mxinfra.release_guard import under_mocks

    if not r.source.aws_backup:
        return r.source.snapshot or ""
    if under_mocks() or look_up is None:
        return r.source.snapshot or LOOKED_UP.format(id=r.source.backup_id, vault=a.backup_vault_name)
    found = look_up(r)
    return found if found is not None else ALREADY_CREATED.format(id=r.source.value)
