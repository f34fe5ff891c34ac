"""The `aws` target: ECS Fargate, RDS PostgreSQL, S3 and IAM. Cloud SDK imports happen only when deploying."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mxinfra.artifacts import check_artifact
from mxinfra.backups import of_environment, opt_out_warning
from mxinfra.checks import wide_ingress
from mxinfra.exposure import WIDE, is_wide, leader_follower_counts
from mxinfra.egress import check_egress, egress_warnings
from mxinfra.errors import ConfigIssue
from mxinfra.naming import Naming
from mxinfra.target import AppContext, EnvironmentContext, Target

from .capabilities import CAPABILITIES
from . import backups, database, fargate, render
from .config import PRODUCTION_TIER, REGION, TIER_TAG, AwsConfig, parse_snapshot_source
from .policies import PRINCIPAL, Arns, partition_of

if TYPE_CHECKING:
    from mxinfra.access import EnvironmentAccess
    from mxinfra.config import StackConfig
    from mxinfra.environments import Environment

REGION_KEY = "aws:region"
# IAM's MaxSessionDuration range (the core allows 900 for other platforms).
IAM_SESSION_SECONDS = (3600, 43200)
# Suffixes the target appends to `<app>-<env>` for the names of an environment's resources. Task families,
# roles, alarms and security groups are account-wide: an environment whose name ends in one of them
# (`production-follower`) would own the names of another environment's resources (production's follower
# family, and with it RegisterTaskDefinition on it).
RESERVED_SUFFIXES = (
    "follower", "follower-running-tasks", "running-tasks", "alb", "alb-sg", "service-sg", "db-sg", "web", "db", "db-final",
    "db-rotated", "redeploy", "alerts", "events", "task", "execution", "files", "cluster",
    "deploy", "monitor", "backups", "backup", "api", "manage", "export", "exports", "export-sg", "restore", "imports",
)
SHARED_VPC_WARNING = (
    "allowSharedVpc: true: environments of different tiers share VPC {vpc}; security groups are VPC-scoped, so "
    "a non-production deploy role can move its tasks into production's security group and target group "
    "(ecs:UpdateService cannot be conditioned on them) and reach production's database"
)


@dataclass(frozen=True)
class SharedCluster:
    """The ECS cluster the app's environments run in."""

    name: str
    arn: Any  # str for an existing cluster, Output for one created here


def with_database(a: Arns, cfg: AwsConfig) -> Arns:
    """`a` with the instance that serves the environment's app, as database.in_service decides it."""
    return replace(a, restored=database.in_service(cfg, a.naming.environment, a.db_identifier))


def exports(cfg: AwsConfig, env: Environment) -> bool:
    """Whether the environment has the export task behind `mxinfra backup download` (export.py): the
    stack declares its images and the environment's backups are on."""
    return cfg.backupExport is not None and of_environment(env).enabled


def cluster_name(stack: str, app: str) -> str:
    """The name of the cluster a stack creates (one per stack, so stacks can share an account)."""
    return Naming(app, stack).physical("cluster", max_len=255)


class AwsTarget(Target):
    """Mendix on AWS: Fargate leader and follower services, a database, bucket and set of IAM roles per environment."""

    name = "aws"
    config_model = AwsConfig
    sdk_modules = tuple(f"pulumi_aws.{m}" for m in ("backup", "cloudwatch", "ec2", "ecs", "iam", "lb", "rds", "s3", "secretsmanager", "sfn", "sns", "vpc"))
    # A release registers task definitions and updates the services (image, variables, count, the
    # per-release tags); the running-tasks alarms' thresholds follow the instance count.
    release_types = ("aws:ecs/taskDefinition:TaskDefinition", "aws:ecs/service:Service", "aws:cloudwatch/metricAlarm:MetricAlarm")
    capabilities = CAPABILITIES

    def check(self, stack: StackConfig, block: AwsConfig, file: str = "") -> list[ConfigIssue]:
        """Region, principals, public ingress on production and Fargate sizes."""
        issues = []
        region = stack.block(REGION_KEY)
        if not isinstance(region, str) or not region:
            issues.append(ConfigIssue(REGION_KEY, "required key is missing", "the region to deploy to, e.g. pulumi config set aws:region eu-west-1", file))
        elif not REGION.fullmatch(region):
            issues.append(ConfigIssue(REGION_KEY, f"{region!r} is not an AWS region", "e.g. eu-west-1 or us-gov-west-1", file))
        parts = block.cluster_arn_parts
        if parts is not None:
            cluster_region, cluster_account = parts
            if cluster_account != block.accountId or (isinstance(region, str) and cluster_region != region):
                issues.append(
                    ConfigIssue(
                        "mxinfra:aws.cluster",
                        f"the cluster's ARN is in {cluster_account}/{cluster_region}, the stack deploys to {block.accountId}/{region}",
                        "use a cluster in the stack's account and region (accountId, aws:region)",
                        file,
                    )
                )
        if block.database.maxAllocatedStorageGb < block.database.allocatedStorageGb:
            issues.append(
                ConfigIssue(
                    "mxinfra:aws.database.maxAllocatedStorageGb",
                    f"{block.database.maxAllocatedStorageGb} GB is below allocatedStorageGb ({block.database.allocatedStorageGb} GB)",
                    "the autoscaling ceiling must be at least the allocated storage",
                    file,
                )
            )
        low, high = IAM_SESSION_SECONDS
        for i, entry in enumerate(stack.access):
            seconds = entry.maxSessionSeconds
            if seconds is not None and not low <= seconds <= high:
                issues.append(ConfigIssue(f"mxinfra:access[{i}].maxSessionSeconds", f"{seconds} seconds: AWS roles allow {low} to {high} seconds", f"use {low} to {high}", file))
            if not PRINCIPAL.fullmatch(entry.principal):
                issues.append(
                    ConfigIssue(
                        f"mxinfra:access[{i}].principal",
                        f"{entry.principal!r} is not an AWS principal",
                        "use a role or user ARN (arn:aws:iam::123456789012:role/Name) or a 12-digit account id; IAM groups cannot assume roles",
                        file,
                    )
                )
        production = [e.name for e in stack.environments if e.is_production]
        if production and not block.allowPublicIngress:
            issues += wide_ingress(block.ingressCidrs, "mxinfra:aws.ingressCidrs", production[0], file)
        for env in stack.environments:
            if env.memory_mb > fargate.MAX_MEMORY_MB:
                issues.append(
                    ConfigIssue(
                        f"{env.config_path}.memory",
                        f"{env.memory_mb} MB does not fit a Fargate task (at most {fargate.MAX_MEMORY_MB} MiB)",
                        f"use {fargate.MAX_MEMORY_MB} or less",
                        file,
                    )
                )
        issues += self._check_vpc(stack, block, file)
        issues += check_egress(list(block.egress), "mxinfra:aws.egress", bool(production), block.allowWideEgress, file)
        for env in stack.environments:
            issues += check_artifact(env, block.image, "mxinfra:aws.image", file)
            for suffix in RESERVED_SUFFIXES:
                if env.name == suffix or env.name.endswith("-" + suffix):
                    issues.append(
                        ConfigIssue(
                            env.config_path or f"mxinfra:environments.{env.name}",
                            f"environment name {env.name!r} ends in {suffix!r}, a suffix this target gives other environments' resources (task families, roles, alarms)",
                            "rename the environment, e.g. without the suffix or with it first",
                            file,
                        )
                    )
                    break
        issues += stack.environment_key_issues(block.hostnames, "mxinfra:aws.hostnames", file)
        for env in stack.environments:
            issues += backups.check(env, of_environment(env), file)
        issues += self._check_export(stack, block, file)
        issues += self._check_from_backup(stack, block, region if isinstance(region, str) else None, file)
        return issues

    @staticmethod
    def _check_export(stack: StackConfig, block: AwsConfig, file: str) -> list[ConfigIssue]:
        """The export task's images: a pg_dump no older than the server, and pinned by digest where a
        production environment's data passes through them."""
        from mxinfra.artifacts import parse_image, postgres_major

        x = block.backupExport
        if x is None:
            return []
        issues = []
        server = int(block.database.engineVersion.split(".")[0])
        client = postgres_major(x.postgresImage)
        if client is not None and client < server:
            issues.append(
                ConfigIssue(
                    "mxinfra:aws.backupExport.postgresImage",
                    f"{x.postgresImage!r} is PostgreSQL {client}, whose pg_dump refuses the database's PostgreSQL {server} (database.engineVersion)",
                    f"a postgres image of version {server} or newer",
                    file,
                )
            )
        pinned = [e.name for e in stack.environments if e.is_production and exports(block, e)]
        for key, image in (("postgresImage", x.postgresImage), ("rcloneImage", x.rcloneImage)):
            ref = parse_image(image)
            if pinned and ref is not None and ref.digest is None:
                issues.append(
                    ConfigIssue(
                        f"mxinfra:aws.backupExport.{key}",
                        f"{image!r} is not pinned by digest, and production {pinned[0]!r}'s data passes through it",
                        f"{image.split('@')[0]}@sha256:<digest>",
                        file,
                    )
                )
        return issues

    @staticmethod
    def _check_from_backup(stack: StackConfig, block: AwsConfig, region: str | None, file: str) -> list[ConfigIssue]:
        """`database.fromBackup`: environments of the stack, with backups on, naming a backup, a past point in
        time in UTC (the core's parse_restore_point; its retention is checked by pulumi up, which can see
        whether the instance exists: database._check_point_in_time) or a snapshot of their own instance, in
        the stack's account and region. The restored instance's name always fits:
        `<app>-<env>-db` is at most 44 characters (names of at most 20), `-from-<id>` is shortened to a digest
        within RDS's 63 (backup_actions.restored_identifier)."""
        key = "mxinfra:aws.database.fromBackup"
        issues = stack.environment_key_issues(block.database.fromBackup, key, file)
        envs = {e.name: e for e in stack.environments}
        for name, value in block.database.fromBackup.items():
            env = envs.get(name)
            if env is None:
                continue
            path = f"{key}.{name}"
            if not of_environment(env).enabled:
                issues.append(
                    ConfigIssue(
                        path,
                        f"{name} has no backups ({env.config_path or 'mxinfra:environments.' + name}.backups.enabled is false): there is no vault to restore from, and the restored instance would not be backed up",
                        "turn the environment's backups on, or remove the key",
                        file,
                    )
                )
                continue
            try:
                source = parse_snapshot_source(value, datetime.now(timezone.utc))
            except ValueError as e:
                issues.append(ConfigIssue(path, str(e), "copy the id from `mxinfra backup list`, write a past time in UTC (e.g. 2026-12-04T10:15:00Z), or remove the key to use the environment's own instance", file))
                continue
            a = Arns(region or "", block.accountId, "", Naming(stack.app.name, name))
            if source.account is not None and (source.account != block.accountId or (region is not None and source.region != region)):
                issues.append(ConfigIssue(path, f"the snapshot's ARN is in {source.account}/{source.region}, the stack deploys to {block.accountId}/{region}", "name a snapshot of the environment's own instance, in the stack's account and region", file))
                continue
            own = (f"{a.db_identifier}-", f"rds:{a.db_identifier}-")
            if source.snapshot is not None and not source.aws_backup and not source.snapshot.startswith(own):
                issues.append(
                    ConfigIssue(
                        path,
                        f"{value!r} is not a snapshot of {name}'s instance {a.db_identifier}",
                        f"name a backup id (`mxinfra backup list`), an awsbackup:job-<id> of its vault, or a snapshot {a.db_identifier}-<name> (rds:{a.db_identifier}-<date> automated)",
                        file,
                    )
                )
                continue
        return issues

    @staticmethod
    def _check_vpc(stack: StackConfig, block: AwsConfig, file: str) -> list[ConfigIssue]:
        """Production needs a VPC declared (and, at deploy time, tagged) mxinfra:tier=production; other
        tiers refuse one; tiers never share a VPC without the explicit opt-in."""
        issues = []
        tiers = {e.is_production for e in stack.environments}
        production = [e.name for e in stack.environments if e.is_production]
        others = [e.name for e in stack.environments if not e.is_production]
        tag = f"{TIER_TAG}={PRODUCTION_TIER}"
        if len(tiers) > 1 and not block.allowSharedVpc:
            issues.append(
                ConfigIssue(
                    "mxinfra:aws.vpcId",
                    f"production ({', '.join(production)}) and other environments ({', '.join(others)}) would share VPC {block.vpcId}: their deployers could reach production",
                    "one stack per tier with its own VPC (or account); or opt in with allowSharedVpc: true",
                    file,
                )
            )
            return issues
        if production and not block.production_vpc:
            issues.append(ConfigIssue("mxinfra:aws.vpcTags", f"production environment {production[0]!r} needs a VPC tagged {tag}", f"tag the VPC and declare it: vpcTags: {{{TIER_TAG}: {PRODUCTION_TIER}}}", file))
        if others and block.production_vpc and not block.allowSharedVpc:
            issues.append(ConfigIssue("mxinfra:aws.vpcTags", f"environment {others[0]!r} is not production, but VPC {block.vpcId} is declared {tag}", "use a non-production VPC; production's is for production only", file))
        return issues

    def warnings(self, env: Environment, access: EnvironmentAccess, block: AwsConfig | None) -> list[str]:
        """What the plan should say about this environment on AWS."""
        out = []
        if block is not None and env.is_production and block.allowPublicIngress and any(is_wide(c) for c in block.ingressCidrs):
            out.append(f"the production load balancer is open to the whole internet, or a wide part of it ({WIDE}; allowPublicIngress: true)")
        if block is not None and block.allowSharedVpc:
            out.append(SHARED_VPC_WARNING.format(vpc=block.vpcId))
        if block is not None:
            out += egress_warnings(list(block.egress), env.name)
        if (no_backups := opt_out_warning(env, of_environment(env))) is not None:
            out.append(no_backups)
        if block is not None and (aged := database.aged_point_in_time(block, env.name, env.role.value)) is not None:
            out.append(aged)
        if block is not None and block.backupExport is not None and exports(block, env):
            from mxinfra.artifacts import postgres_major

            if postgres_major(block.backupExport.postgresImage) is None:
                out.append(
                    f"mxinfra:aws.backupExport.postgresImage {block.backupExport.postgresImage!r} names no PostgreSQL version in its tag: "
                    f"its pg_dump must be PostgreSQL {block.database.engineVersion.split('.')[0]} or newer (database.engineVersion), which the plan cannot check"
                )
        return out

    def artifact(self, env: Environment, block: AwsConfig | None) -> str | None:
        """The container image the environment runs: swapping it is a deployment."""
        return block.image if block is not None else None

    def app_image(self, env: Environment, block: AwsConfig | None) -> str | None:
        """The container image that runs the package: `pulumi up` verifies that it holds it."""
        return block.image if block is not None else None

    def artifact_key(self, env: Environment, block: AwsConfig | None) -> str | None:
        """Where the image is configured."""
        return "mxinfra:aws.image"

    def running(self, deployment: Any, environment: str, base_dir: Path) -> Any:
        """The environment's ECS services (leader and followers) and the task definitions they run, read
        with boto3 in the stack's `aws:region` and `accountId` with the user's usual AWS credentials
        (running.py says what is compared). Unreadable: mxinfra.drift.CannotObserve (exit 2)."""
        from .running import observe

        cfg: AwsConfig = deployment.target_config
        prepared = deployment.environment(environment)
        region = deployment.config.block(REGION_KEY)
        cluster = cfg.cluster_name or cluster_name(deployment.config.stack, prepared.naming.app)
        a = Arns(region or "", cfg.accountId, cluster, prepared.naming, followers=True)
        leader, follower = a.service_name, a.follower_service_name
        followers = leader_follower_counts(prepared.environment.instances)[1] > 0
        return observe(environment, region, cfg.accountId, cluster, leader, follower, followers_declared=followers)

    def backup_actions(self, deployment: Any, environment: str, base_dir: Path) -> Any:
        """`mxinfra backup` on the environment's AWS Backup vault (backup_actions.VaultActions), with
        boto3 in the stack's `aws:region` and `accountId` and the user's usual AWS credentials; a
        UserError where the environment has no backups to act on."""
        from mxinfra.errors import UserError

        from .backup_actions import connect

        cfg: AwsConfig = deployment.target_config
        prepared = deployment.environment(environment)
        b = of_environment(prepared.environment)
        if not b.enabled:
            raise UserError(f"{environment} has no backups ({prepared.environment.config_path}.backups.enabled is false): it has no AWS Backup vault")
        region = deployment.config.block(REGION_KEY)
        cluster = cfg.cluster_name or cluster_name(deployment.config.stack, prepared.naming.app)
        a = Arns(
            region if isinstance(region, str) else "", cfg.accountId, cluster, prepared.naming, cfg.database.engineVersion.split(".")[0],
            export=exports(cfg, prepared.environment), followers=leader_follower_counts(prepared.environment.instances)[1] > 0,
            production=prepared.environment.is_production,
        )
        return connect(prepared.environment, with_database(a, cfg), b)

    def deploy_app(self, ctx: AppContext) -> SharedCluster:
        """The ECS cluster (Container Insights on), or the configured existing one; first, under a real
        engine, the release guard: what runs must be what the activity log records (mxinfra.drift)."""
        from mxinfra.release_guard import guard, under_mocks

        if not under_mocks():
            guard(ctx.deployment, lambda env: self.running(ctx.deployment, env, Path.cwd()), ctx.component, Path.cwd())
        cfg: AwsConfig = ctx.deployment.target_config
        region = ctx.deployment.config.block(REGION_KEY)
        if cfg.cluster_name is not None:
            arn = cfg.cluster if cfg.cluster_arn_parts is not None else f"arn:{partition_of(region)}:ecs:{region}:{cfg.accountId}:cluster/{cfg.cluster_name}"
            return SharedCluster(cfg.cluster_name, arn)
        import pulumi_aws as aws

        name = cluster_name(ctx.deployment.config.stack, ctx.naming.app)
        cluster = aws.ecs.Cluster(
            ctx.naming.logical("cluster"),
            name=name,
            settings=[{"name": "containerInsights", "value": "enabled"}],
            tags=dict(ctx.tags),
            opts=ctx.opts(),
        )
        return SharedCluster(name, cluster.arn)

    def deploy_environment(self, ctx: EnvironmentContext) -> Mapping[str, Any]:
        """Network, storage, database, runtime, alerts and access roles of one environment."""
        import pulumi

        from . import access, export, files_restore, network, rotation, runtime, storage
        from .backup_actions import restore_source, restored_exists

        cfg: AwsConfig = ctx.config
        shared: SharedCluster = ctx.shared
        region = ctx.deployment.config.block(REGION_KEY)
        a = Arns(
            region,
            cfg.accountId,
            shared.name,
            ctx.naming,
            cfg.database.engineVersion.split(".")[0],
            followers=leader_follower_counts(ctx.environment.instances)[1] > 0,
            subnets=tuple(cfg.subnetIds),
            assign_public_ip=cfg.assignPublicIp,
            aws_backup=of_environment(ctx.environment).enabled,
            export=exports(cfg, ctx.environment),
            production=ctx.environment.is_production,
        )
        # Which instance serves the app (database.fromBackup), decided once: everything below reads it from `a`.
        a = with_database(a, cfg)
        sgs = network.create(ctx, cfg)
        files = storage.create(ctx, a)
        db = database.create(
            ctx,
            cfg,
            a,
            sgs.database,
            look_up=lambda r: restore_source(ctx.environment, a, of_environment(ctx.environment), r.source, r.identifier),
            exists=lambda r: restored_exists(ctx.environment, a, r.identifier),
        )
        # No customer-managed KMS key in this target yet: the vault uses AWS Backup's own key.
        backup = backups.create(ctx, cfg, a, db, [files.versioning])
        files_restorer = files_restore.create(ctx, cfg, a)
        rt = runtime.create(ctx, cfg, a, sgs, db, shared.arn)
        rotation.create(ctx, cfg, a, db, [s for s in (rt.follower, rt.service) if s is not None])
        exported = export.create(ctx, cfg, a, sgs, db) if a.export else None
        topic = runtime.alerts(ctx, a)
        role_arns = access.create(ctx, cfg, a)
        host = cfg.hostnames.get(ctx.environment.name)
        url = f"https://{host}" if host else pulumi.Output.concat("https://", rt.load_balancer.dns_name)
        outputs = {
            "url": url,
            "roleArns": role_arns,
            "loadBalancerDns": rt.load_balancer.dns_name,
            "cluster": shared.name,
            "service": a.service_arn,
            "bucket": files.bucket.bucket,
            # the instance the app uses
            "database": a.serving_db_identifier,
            "logGroup": a.log_group_name,
            "alertsTopic": topic.arn,
            "fargate": {"cpu": rt.size.cpu, "memory": rt.size.memory_mb},
        }
        if a.followers:
            outputs["followerService"] = a.follower_service_arn
        if backup is not None:
            outputs["backupVault"] = a.backup_vault_name
        if files_restorer is not None:
            outputs["filesRestoreMachine"] = files_restorer.arn
        if exported is not None:
            outputs["exportMachine"] = exported.machine.arn
            outputs["restoreMachine"] = exported.restore_machine.arn
        return outputs

    def render(self, env: str, resources: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
        """Every IAM policy document of the environment as JSON under `out_dir/aws/<env>/`."""
        return render.write_policies(env, resources, out_dir)

    def plan_outputs(self, deployment: Any, type_: str, name: str, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """ARNs, endpoints and version ids AWS assigns, as marked placeholders (see mxinfra.target)."""
        region = deployment.config.block(REGION_KEY)
        block = deployment.target_config
        if not isinstance(region, str) or block is None:
            return {}
        return render.plan_outputs(region, block.accountId, type_, inputs)

    def plan_notes(self, env: str, resources: Sequence[Mapping[str, Any]]) -> list[str]:
        """The Fargate size picked, leader and followers, database protections, log retention and access roles."""
        return render.notes(resources)
