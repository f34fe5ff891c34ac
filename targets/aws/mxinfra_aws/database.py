"""The database: RDS PostgreSQL whose master password RDS keeps in Secrets Manager (never in Pulumi state)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

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
        final_snapshot_identifier=f"{a.db_identifier}-final" if guarded else None,
        delete_automated_backups=not guarded,
        auto_minor_version_upgrade=True,
        # Changes wait for the maintenance window instead of restarting a running database.
        apply_immediately=not guarded,
        tags=dict(ctx.tags),
        opts=ctx.opts(protect_data=True),
    )
    secret_arn = db.master_user_secrets.apply(lambda s: s[0].secret_arn if s else None)
    return Database(db, db.endpoint, secret_arn)
