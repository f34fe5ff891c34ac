"""The database: RDS PostgreSQL whose master password RDS keeps in Secrets Manager (never in Pulumi state)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random

from mxinfra.target import EnvironmentContext

from .config import AwsConfig
from .policies import Arns

DB_NAME = "mendix"
DB_USER = "mendix"
# Per role: (default instance class, days of automated backups).
DEFAULTS = {
    "test": ("db.t4g.micro", 1),
    "acceptance": ("db.t4g.small", 7),
    "production": ("db.m7g.large", 30),
}


@dataclass
class Database:
    """The instance and where the runtime finds its credentials."""

    instance: aws.rds.Instance
    endpoint: pulumi.Output[str]  # host:port
    master_secret_arn: pulumi.Output[str]


def keeps_final_snapshot(role: str) -> bool:
    """Acceptance and production data survive deletion as a final snapshot (and deletion is blocked)."""
    return role in ("acceptance", "production")


def create(ctx: EnvironmentContext, cfg: AwsConfig, a: Arns, security_group: aws.ec2.SecurityGroup) -> Database:
    """The subnet group and the instance."""
    n, env = ctx.naming, ctx.environment
    role = env.role.value
    default_class, backup_days = DEFAULTS[role]
    guarded = keeps_final_snapshot(role)
    final_snapshot = None
    if guarded:
        # Created once with the instance: a destroyed and recreated environment gets a new suffix, so its
        # final snapshot does not collide with the one the first destroy left behind.
        suffix = pulumi_random.RandomId(n.logical("db-final-suffix"), byte_length=4, opts=ctx.opts())
        final_snapshot = pulumi.Output.concat(a.final_snapshot_prefix, "-", suffix.hex)
    subnets = aws.rds.SubnetGroup(
        n.logical("db-subnets"),
        name=a.db_identifier,
        description=f"{n.prefix}: the database's subnets",
        subnet_ids=list(cfg.subnetIds),
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )
    db = aws.rds.Instance(
        n.logical("db"),
        identifier=a.db_identifier,
        engine="postgres",
        engine_version=cfg.database.engineVersion,
        instance_class=cfg.database.instanceClass or default_class,
        allocated_storage=cfg.database.allocatedStorageGb,
        max_allocated_storage=max(cfg.database.maxAllocatedStorageGb, cfg.database.allocatedStorageGb),
        storage_type="gp3",
        storage_encrypted=True,
        db_name=DB_NAME,
        username=DB_USER,
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
        opts=ctx.opts(protect_data=True),
    )
    secret_arn = db.master_user_secrets.apply(lambda s: s[0].secret_arn if s else None)
    # RDS rotates the managed password every 7 days by default; ECS reads it only when a task starts, so
    # every rotation redeploys the services (rotation.py). The schedule is configurable; the rotation
    # waits for it rather than rotating on creation.
    aws.secretsmanager.SecretRotation(
        n.logical("db-password-rotation"),
        secret_id=secret_arn,
        rotation_rules={"automatically_after_days": cfg.database.passwordRotationDays},
        rotate_immediately=False,
        opts=ctx.opts(),
    )
    return Database(db, db.endpoint, secret_arn)
