"""Security groups: the load balancer from the configured CIDRs, the service only from the load balancer,
the database only from the service; the service's egress only to the database, the VPC's endpoints, S3
and the `egress:` list. And the VPC itself, checked at deploy time: its tier tag and CIDR."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from mxinfra.target import EnvironmentContext

from .config import PRODUCTION_TIER, TIER_TAG, AwsConfig

HTTP, HTTPS, RUNTIME_PORT, POSTGRES_PORT = 80, 443, 8080, 5432


@dataclass
class SecurityGroups:
    """The environment's three security groups."""

    load_balancer: aws.ec2.SecurityGroup
    service: aws.ec2.SecurityGroup
    database: aws.ec2.SecurityGroup


class VpcMismatch(Exception):
    """The VPC the stack names is not what its config declares (tier tag, CIDR): nothing is created in it."""


def vpc_problems(production: bool, cfg: AwsConfig, tags: Mapping[str, str] | None, cidr: str | None) -> list[str]:
    """What is wrong with the VPC as AWS describes it, for an environment of this tier. Pure."""
    tags = dict(tags or {})
    out = []
    tier = tags.get(TIER_TAG)
    if production and tier != PRODUCTION_TIER:
        out.append(f"VPC {cfg.vpcId} is not tagged {TIER_TAG}={PRODUCTION_TIER} (it has {TIER_TAG}={tier!r}): production runs only in a production VPC")
    if not production and tier == PRODUCTION_TIER and not cfg.allowSharedVpc:
        out.append(f"VPC {cfg.vpcId} is tagged {TIER_TAG}={PRODUCTION_TIER}: a non-production environment there could reach production (allowSharedVpc: true to accept)")
    for key, value in sorted(cfg.vpcTags.items()):
        if tags.get(key) != value:
            out.append(f"VPC {cfg.vpcId} does not carry the declared tag {key}={value}")
    if cidr is not None and cidr != cfg.vpcCidr:
        out.append(f"VPC {cfg.vpcId}'s CIDR block is {cidr}, the config declares vpcCidr {cfg.vpcCidr}")
    return out


def verified_vpc(ctx: EnvironmentContext, cfg: AwsConfig) -> pulumi.Output[str]:
    """The VPC id, once `ec2:DescribeVpcs` (at deploy time) shows the tags and CIDR the config declares.

    Under the mock runtime of `mxinfra plan` the invoke has no answer (no id): the plan relies on the
    offline check of the declared tags (`check`), and the real deployment on this one.
    """

    def verify(result: Any) -> str:
        if getattr(result, "id", None) is None:
            return cfg.vpcId  # no cloud to ask: the offline plan
        problems = vpc_problems(ctx.environment.is_production, cfg, getattr(result, "tags", None), getattr(result, "cidr_block", None))
        if problems:
            raise VpcMismatch("; ".join(problems))
        return str(result.id)

    return aws.ec2.get_vpc_output(id=cfg.vpcId, opts=pulumi.InvokeOutputOptions(parent=ctx.component)).apply(verify)


def _group(ctx: EnvironmentContext, vpc_id: Any, kind: str, description: str) -> aws.ec2.SecurityGroup:
    n = ctx.naming
    return aws.ec2.SecurityGroup(
        n.logical(f"{kind}-sg"),
        name=n.physical(f"{kind}-sg", max_len=255),
        description=description,
        vpc_id=vpc_id,
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )


def create(ctx: EnvironmentContext, cfg: AwsConfig) -> SecurityGroups:
    """The security groups and their rules (one rule resource each, so changes never replace a group)."""
    n, tags = ctx.naming, dict(ctx.tags)
    vpc_id = verified_vpc(ctx, cfg)
    lb = _group(ctx, vpc_id, "alb", "Load balancer: HTTPS (and HTTP redirecting to it) from the allowed networks")
    svc = _group(ctx, vpc_id, "service", "Mendix runtime: only from its load balancer")
    db = _group(ctx, vpc_id, "db", "Database: only from the Mendix runtime")

    for i, cidr in enumerate(cfg.ingressCidrs):
        v6 = ipaddress.ip_network(cidr).version == 6
        for port in (HTTPS, HTTP):
            aws.vpc.SecurityGroupIngressRule(
                n.logical(f"alb-in-{port}-{i}"),
                security_group_id=lb.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv6=cidr if v6 else None,
                cidr_ipv4=None if v6 else cidr,
                description=f"{'HTTPS' if port == HTTPS else 'HTTP (redirected to HTTPS)'} from {cidr}",
                tags=tags,
                opts=ctx.opts(),
            )
    aws.vpc.SecurityGroupEgressRule(
        n.logical("alb-out-runtime"),
        security_group_id=lb.id,
        ip_protocol="tcp",
        from_port=RUNTIME_PORT,
        to_port=RUNTIME_PORT,
        referenced_security_group_id=svc.id,
        description="To the Mendix runtime",
        tags=tags,
        opts=ctx.opts(),
    )
    aws.vpc.SecurityGroupIngressRule(
        n.logical("service-in-alb"),
        security_group_id=svc.id,
        ip_protocol="tcp",
        from_port=RUNTIME_PORT,
        to_port=RUNTIME_PORT,
        referenced_security_group_id=lb.id,
        description="From the load balancer",
        tags=tags,
        opts=ctx.opts(),
    )
    # Egress: the VPC's interface endpoints (ECR, Secrets Manager, CloudWatch Logs, S3: what a Fargate
    # task needs to start and run), S3's prefix list when configured, and the `egress:` list. DNS goes to
    # the VPC's resolver, which security groups do not filter. Nothing else leaves the runtime.
    aws.vpc.SecurityGroupEgressRule(
        n.logical("service-out-endpoints"),
        security_group_id=svc.id,
        ip_protocol="tcp",
        from_port=HTTPS,
        to_port=HTTPS,
        cidr_ipv4=cfg.vpcCidr,
        description="HTTPS to the VPC's interface endpoints (ECR, Secrets Manager, CloudWatch Logs, S3)",
        tags=tags,
        opts=ctx.opts(),
    )
    if cfg.s3PrefixListId:
        aws.vpc.SecurityGroupEgressRule(
            n.logical("service-out-s3"),
            security_group_id=svc.id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            prefix_list_id=cfg.s3PrefixListId,
            description="HTTPS to S3 (gateway endpoint): files and image layers",
            tags=tags,
            opts=ctx.opts(),
        )
    for i, rule in enumerate(cfg.egress):
        for port in rule.ports:
            aws.vpc.SecurityGroupEgressRule(
                n.logical(f"service-out-{i}-{port}"),
                security_group_id=svc.id,
                ip_protocol=rule.protocol,
                from_port=port,
                to_port=port,
                cidr_ipv6=rule.cidr if rule.is_ipv6 else None,
                cidr_ipv4=None if rule.is_ipv6 else rule.cidr,
                description=rule.description,
                tags=tags,
                opts=ctx.opts(),
            )
    aws.vpc.SecurityGroupEgressRule(
        n.logical("service-out-db"),
        security_group_id=svc.id,
        ip_protocol="tcp",
        from_port=POSTGRES_PORT,
        to_port=POSTGRES_PORT,
        referenced_security_group_id=db.id,
        description="To the database",
        tags=tags,
        opts=ctx.opts(),
    )
    aws.vpc.SecurityGroupIngressRule(
        n.logical("db-in-service"),
        security_group_id=db.id,
        ip_protocol="tcp",
        from_port=POSTGRES_PORT,
        to_port=POSTGRES_PORT,
        referenced_security_group_id=svc.id,
        description="From the Mendix runtime",
        tags=tags,
        opts=ctx.opts(),
    )
    return SecurityGroups(lb, svc, db)


def export_group(ctx: EnvironmentContext, cfg: AwsConfig, db: aws.ec2.SecurityGroup) -> aws.ec2.SecurityGroup:
    """The export task's group (export.py): nothing in; out only to the database and, over HTTPS, to the
    VPC's endpoints and S3's prefix list. Not the service's group: the export holds the database's password
    and a copy of every row, and must not reach what the app's `egress:` list opens."""
    n, tags = ctx.naming, dict(ctx.tags)
    group = _group(ctx, verified_vpc(ctx, cfg), "export", "mxinfra export task: out to the database and S3 only")
    rules: list[tuple[str, dict[str, Any], str]] = [
        ("endpoints", {"from_port": HTTPS, "to_port": HTTPS, "cidr_ipv4": cfg.vpcCidr}, "HTTPS to the VPC's interface endpoints (ECR, Secrets Manager, CloudWatch Logs, S3)"),
        ("db", {"from_port": POSTGRES_PORT, "to_port": POSTGRES_PORT, "referenced_security_group_id": db.id}, "To the database"),
    ]
    if cfg.s3PrefixListId:
        rules.append(("s3", {"from_port": HTTPS, "to_port": HTTPS, "prefix_list_id": cfg.s3PrefixListId}, "HTTPS to S3 (gateway endpoint): files, archives and image layers"))
    for name, where, description in rules:
        aws.vpc.SecurityGroupEgressRule(n.logical(f"export-out-{name}"), security_group_id=group.id, ip_protocol="tcp", description=description, tags=tags, opts=ctx.opts(), **where)
    aws.vpc.SecurityGroupIngressRule(
        n.logical("db-in-export"),
        security_group_id=db.id,
        ip_protocol="tcp",
        from_port=POSTGRES_PORT,
        to_port=POSTGRES_PORT,
        referenced_security_group_id=group.id,
        description="From the export task (mxinfra backup download)",
        tags=tags,
        opts=ctx.opts(),
    )
    return group
