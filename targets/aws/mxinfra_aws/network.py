"""Security groups: the load balancer from the configured CIDRs, the service only from the load balancer,
the database only from the service."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi_aws as aws

from mxinfra.target import EnvironmentContext

from .config import AwsConfig

HTTP, HTTPS, RUNTIME_PORT, POSTGRES_PORT = 80, 443, 8080, 5432


@dataclass
class SecurityGroups:
    """The environment's three security groups."""

    load_balancer: aws.ec2.SecurityGroup
    service: aws.ec2.SecurityGroup
    database: aws.ec2.SecurityGroup


def _group(ctx: EnvironmentContext, cfg: AwsConfig, kind: str, description: str) -> aws.ec2.SecurityGroup:
    n = ctx.naming
    return aws.ec2.SecurityGroup(
        n.logical(f"{kind}-sg"),
        name=n.physical(f"{kind}-sg", max_len=255),
        description=description,
        vpc_id=cfg.vpcId,
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )


def create(ctx: EnvironmentContext, cfg: AwsConfig) -> SecurityGroups:
    """The security groups and their rules (one rule resource each, so changes never replace a group)."""
    n, tags = ctx.naming, dict(ctx.tags)
    lb = _group(ctx, cfg, "alb", "Load balancer: HTTPS (and HTTP redirecting to it) from the allowed networks")
    svc = _group(ctx, cfg, "service", "Mendix runtime: only from its load balancer")
    db = _group(ctx, cfg, "db", "Database: only from the Mendix runtime")

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
    # The runtime reaches AWS APIs (ECR, Secrets Manager, S3, CloudWatch) and the app's own HTTPS
    # integrations; any other port stays closed.
    aws.vpc.SecurityGroupEgressRule(
        n.logical("service-out-https"),
        security_group_id=svc.id,
        ip_protocol="tcp",
        from_port=HTTPS,
        to_port=HTTPS,
        cidr_ipv4="0.0.0.0/0",
        description="HTTPS to AWS APIs and the app's integrations",
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
