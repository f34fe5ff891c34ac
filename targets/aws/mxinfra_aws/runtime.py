"""The runtime: log group, secrets, task and execution roles, load balancer, and the leader's and followers' services.

The Docker buildpack picks the cluster leader (scheduled events, database sync) by CF_INSTANCE_INDEX, which
Fargate tasks do not have: every task would lead. So an environment runs two ECS services behind one target
group: the leader service (one task, index 0) and, with two or more instances, the follower service (the
rest, index 1; only 0 versus not 0 matters to the buildpack).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from mxinfra.environments import Secret
from mxinfra.settings import Bindings, DatabaseParts, S3Storage, buildpack_env, instance_env
from mxinfra.target import EnvironmentContext

from . import fargate, policies
from .config import AwsConfig
from .containers import CONTAINER, FOLLOWER, LEADER, LOG_RETENTION_DAYS, RUNTIME_PORT, ValueFrom, container_definitions, task_counts, value_from
from .database import DB_NAME, Database
from .network import SecurityGroups
from .policies import Arns

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# The runtime answers `/` once the app has started; an app with SSO may redirect it, so 3xx is healthy too.
HEALTH_CHECK = {
    "path": "/",
    "matcher": "200-399",
    "port": "traffic-port",
    "protocol": "HTTP",
    "interval": 15,
    "timeout": 5,
    "healthy_threshold": 2,
    "unhealthy_threshold": 4,
}
# Starting a Mendix runtime (database sync included) takes minutes; ECS must not kill it meanwhile.
HEALTH_CHECK_GRACE_SECONDS = 600


@dataclass
class Runtime:
    """What the environment exports from its runtime."""

    service: aws.ecs.Service  # the leader's
    follower: aws.ecs.Service | None  # the followers', with two or more instances
    load_balancer: aws.lb.LoadBalancer
    task_role: aws.iam.Role
    execution_role: aws.iam.Role
    size: fargate.FargateSize


def service_role(ctx: EnvironmentContext, cfg: AwsConfig, a: Arns, kind: str, trust: dict, policy: dict, description: str) -> aws.iam.Role:
    """A role an AWS service assumes for this environment, with one inline policy."""
    n = ctx.naming
    role = aws.iam.Role(
        n.logical(f"{kind}-role"),
        name=a.role_name(kind),
        path=policies.ROLE_PATH,
        description=description,
        assume_role_policy=json.dumps(trust, sort_keys=True),
        permissions_boundary=cfg.permissionsBoundaryArn,
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )
    aws.iam.RolePolicy(
        n.logical(f"{kind}-role-policy"),
        name=kind,
        role=role.name,
        policy=json.dumps(policy, sort_keys=True),
        opts=ctx.opts(),
    )
    return role


def _secret_value(value: Any) -> Any:
    return pulumi.Output.secret(value.reveal()) if isinstance(value, Secret) else value


def create(ctx: EnvironmentContext, cfg: AwsConfig, a: Arns, sgs: SecurityGroups, db: Database, cluster_arn: Any) -> Runtime:
    """Every runtime resource of the environment."""
    n, env, tags = ctx.naming, ctx.environment, dict(ctx.tags)
    # What runs the package carries its hash and model version (traceability); nothing else changes per release.
    release_tags = dict(ctx.release_tags)
    size = fargate.pick(env.memory_mb)

    logs = aws.cloudwatch.LogGroup(
        n.logical("logs"),
        name=a.log_group_name,
        retention_in_days=LOG_RETENTION_DAYS[env.role.value],
        tags=tags,
        opts=ctx.opts(),
    )

    # The core decides every variable; this target only decides how each secret one reaches the container.
    bindings = Bindings(
        admin_password=ctx.admin_password,
        database=DatabaseParts(
            type="PostgreSQL",
            host=db.endpoint,
            name=DB_NAME,
            user=ValueFrom(db.master_secret_arn, "username"),
            password=ValueFrom(db.master_secret_arn, "password"),
            require_tls=True,
        ),
        storage=S3Storage(bucket=a.bucket_name, endpoint=f"https://s3.{a.region}.amazonaws.com"),
    )
    variables = buildpack_env(ctx.settings, bindings)
    stored = {k: _secret_value(v) for k, v in variables.secret.items() if not isinstance(v, ValueFrom)}
    secret = aws.secretsmanager.Secret(
        n.logical("runtime-secret"),
        name=a.secret_name,
        description=f"{n.prefix}: secret values of the Mendix runtime (admin password, licence key, secret constants)",
        # Acceptance and production secrets stay recoverable for a month after deletion; a test secret is
        # deleted at once, so destroying and recreating a test environment does not collide with its name.
        recovery_window_in_days=0 if env.role.value == "test" else 30,
        tags=tags,
        opts=ctx.opts(),
    )
    version = aws.secretsmanager.SecretVersion(
        n.logical("runtime-secret-value"),
        secret_id=secret.id,
        secret_string=pulumi.Output.secret(pulumi.Output.json_dumps(stored)),
        opts=ctx.opts(),
    )
    references: dict[str, Any] = {}
    for key, v in variables.secret.items():
        # The runtime secret's values are pinned to the version Pulumi wrote: a changed value is a new
        # task definition revision, so every task (leader and followers) is replaced and none keeps the
        # old value. The RDS secret (a ValueFrom from the core) stays on AWSCURRENT: RDS rotates it, and
        # a rotation redeploys the services (see rotation.py).
        ref = v if isinstance(v, ValueFrom) else ValueFrom(secret.arn, key, version.version_id)
        references[key] = pulumi.Output.all(ref.arn, ref.version_id).apply(lambda av, k=ref.key: value_from(av[0], k, av[1]))

    execution_role = service_role(ctx, cfg, a, "execution", policies.ecs_tasks_trust(a), policies.execution_policy(a, cfg.image), "ECS: pull the image, write logs, read this environment's secrets")
    task_role = service_role(ctx, cfg, a, "task", policies.ecs_tasks_trust(a), policies.task_policy(a), "The Mendix runtime: this environment's file bucket only")

    alb = aws.lb.LoadBalancer(
        n.logical("alb"),
        name=n.physical("alb", max_len=32),
        load_balancer_type="application",
        internal=cfg.internal,
        security_groups=[sgs.load_balancer.id],
        subnets=list(cfg.loadBalancerSubnetIds or cfg.subnetIds),
        drop_invalid_header_fields=True,
        enable_deletion_protection=env.is_production,
        tags=tags,
        opts=ctx.opts(),
    )
    target_group = aws.lb.TargetGroup(
        n.logical("web"),
        name=n.physical("web", max_len=32),
        port=RUNTIME_PORT,
        protocol="HTTP",
        target_type="ip",
        vpc_id=cfg.vpcId,
        # Sessions live in the database: a short drain is enough.
        deregistration_delay=60,
        health_check=HEALTH_CHECK,
        tags=tags,
        opts=ctx.opts(),
    )
    https = aws.lb.Listener(
        n.logical("https"),
        load_balancer_arn=alb.arn,
        port=443,
        protocol="HTTPS",
        ssl_policy=TLS_POLICY,
        certificate_arn=cfg.certificateArn,
        default_actions=[{"type": "forward", "target_group_arn": target_group.arn}],
        tags=tags,
        opts=ctx.opts(),
    )
    aws.lb.Listener(
        n.logical("http"),
        load_balancer_arn=alb.arn,
        port=80,
        protocol="HTTP",
        default_actions=[{"type": "redirect", "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}],
        tags=tags,
        opts=ctx.opts(),
    )

    leaders, followers = task_counts(env.instances)
    service_args = dict(
        cluster=cluster_arn,
        launch_type="FARGATE",
        platform_version="LATEST",
        network_configuration={
            "subnets": list(cfg.subnetIds),
            "security_groups": [sgs.service.id],
            "assign_public_ip": cfg.assignPublicIp,
        },
        load_balancers=[{"target_group_arn": target_group.arn, "container_name": CONTAINER, "container_port": RUNTIME_PORT}],
        health_check_grace_period_seconds=HEALTH_CHECK_GRACE_SECONDS,
        # Two model versions must never run against one database: both services stop their old tasks
        # before starting new ones (a short outage on every deployment, as on Mendix Cloud).
        deployment_minimum_healthy_percent=0,
        deployment_maximum_percent=100,
        enable_ecs_managed_tags=True,
        # Tasks take the tags of the revision they run, the package's included; the service itself carries
        # the stable ones, so a release changes it only by its task definition (ecs:UpdateService).
        propagate_tags="TASK_DEFINITION",
        tags=tags,
    )

    def task_definition(kind: str, logical: str, family: str, index: int) -> aws.ecs.TaskDefinition:
        # The core decides every variable, the instance index included; only the index differs between services.
        environment = pulumi.Output.from_input(variables.plain).apply(lambda plain: {**plain, **instance_env(index)})
        containers = pulumi.Output.all(environment=environment, secrets=references).apply(
            lambda v: json.dumps(
                container_definitions(
                    image=cfg.image,
                    environment=v["environment"],
                    secrets=v["secrets"],
                    log_group=a.log_group_name,
                    region=a.region,
                    memory_mb=env.memory_mb,
                    stream_prefix=kind,
                ),
                sort_keys=True,
            )
        )
        return aws.ecs.TaskDefinition(
            n.logical(logical),
            family=family,
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(size.cpu),
            memory=str(size.memory_mb),
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": cfg.cpuArchitecture},
            execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            container_definitions=containers,
            tags=release_tags,
            # A new revision never deregisters the old one: `pulumi up` under the deploy role needs no
            # ecs:DeregisterTaskDefinition (which IAM cannot limit to a family), and rollbacks keep working.
            skip_destroy=True,
            # A new package with the same image changes only the revision's tags: registering a new
            # revision (tag-on-create) is what the deploy role may do, tagging an existing one is not.
            opts=ctx.opts(depends_on=[version, logs], replace_on_changes=["tags"]),
        )

    follower = None
    if followers:
        follower_task = task_definition(FOLLOWER, "follower-task", a.follower_service_name, 1)
        follower = aws.ecs.Service(
            n.logical("follower-service"),
            name=a.follower_service_name,
            task_definition=follower_task.arn,
            desired_count=followers,
            # Never roll followers back on their own: the old model would run against the schema the new
            # leader has already synchronised. A failed follower deployment stops and the alarm fires.
            deployment_circuit_breaker={"enable": True, "rollback": False},
            opts=ctx.opts(depends_on=[https]),
            **service_args,
        )
    # Logical names as before the split: a single-instance stack keeps its service and task family.
    leader_task = task_definition(LEADER, "task", a.service_name, 0)
    service = aws.ecs.Service(
        n.logical("service"),
        name=a.service_name,
        task_definition=leader_task.arn,
        desired_count=leaders,
        deployment_circuit_breaker={"enable": True, "rollback": True},
        # The followers' deployment is requested first, so their old tasks are already stopping when the
        # new leader starts and synchronises the database.
        opts=ctx.opts(depends_on=[https] if follower is None else [https, follower]),
        **service_args,
    )
    ctx.runtime_resource(service)
    if follower is not None:
        ctx.runtime_resource(follower)
    return Runtime(service, follower, alb, task_role, execution_role, size)


def alerts(ctx: EnvironmentContext, a: Arns) -> aws.sns.Topic:
    """The alerts topic and, per service, an alarm on fewer running tasks than desired that publishes to it."""
    n, tags = ctx.naming, dict(ctx.tags)
    # CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed SNS key; alerts carry
    # no secrets, so the topic is left unencrypted rather than adding a customer key.
    topic = aws.sns.Topic(n.logical("alerts"), name=a.topic_name, tags=tags, opts=ctx.opts())
    leaders, followers = task_counts(ctx.environment.instances)
    alarms = [("", "leader", a.service_name, leaders)]
    if followers:
        alarms.append(("follower-", "follower", a.follower_service_name, followers))
    for kind, label, service_name, desired in alarms:
        aws.cloudwatch.MetricAlarm(
            n.logical(f"alarm-{kind}running-tasks"),
            name=f"{n.prefix}-{kind}running-tasks",
            alarm_description=f"{n.prefix}: fewer {label} runtime tasks running than desired ({service_name})",
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions={"ClusterName": a.cluster, "ServiceName": service_name},
            statistic="Minimum",
            period=60,
            evaluation_periods=5,
            threshold=desired,
            comparison_operator="LessThanThreshold",
            treat_missing_data="breaching" if desired else "notBreaching",
            alarm_actions=[topic.arn],
            ok_actions=[topic.arn],
            tags=tags,
            opts=ctx.opts(),
        )
    return topic
