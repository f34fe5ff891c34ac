"""The `mxinfra:aws` block: what an organisation brings (network, certificate, image) and a few choices."""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

ACCOUNT_ID = re.compile(r"^\d{12}$")
PUBLIC_CIDRS = ("0.0.0.0/0", "::/0")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class DatabaseConfig(_Strict):
    """RDS PostgreSQL sizing; defaults are per role (see README)."""

    instanceClass: str | None = Field(None, description="e.g. db.t4g.small; default by role")
    allocatedStorageGb: int = Field(20, ge=20, le=65536)
    maxAllocatedStorageGb: int = Field(100, ge=20, le=65536, description="storage autoscaling ceiling")
    engineVersion: str = Field("16", pattern=r"^1[4-9](\.\d+)?$", description="PostgreSQL major (or major.minor) version")


class AwsConfig(_Strict):
    """`mxinfra:aws`: the target's settings, shared by the stack's environments."""

    accountId: str = Field(description="The 12-digit AWS account the stack deploys into (ARNs are built from it)")
    vpcId: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$", description="The existing VPC (vpc-...)")
    subnetIds: list[str] = Field(min_length=2, description="Private subnets in at least two availability zones, for the service and the database")
    loadBalancerSubnetIds: list[str] | None = Field(None, min_length=2, description="Subnets of the load balancer (public ones for an internet-facing ALB); default: subnetIds")
    certificateArn: str = Field(pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$", description="ACM certificate of the HTTPS listener")
    image: str = Field(min_length=1, description="The Docker-buildpack image of the app (ECR URI or registry reference)")
    ingressCidrs: list[str] = Field(min_length=1, description="Who may reach the load balancer (443, and 80 redirecting to 443)")
    allowPublicIngress: bool = Field(False, description="Explicit opt-in to 0.0.0.0/0 or ::/0 on production")
    internal: bool = Field(False, description="An internal (VPC-only) load balancer")
    assignPublicIp: bool = Field(False, description="Give tasks a public IP (only for subnets without a NAT gateway)")
    cluster: str | None = Field(None, description="An existing ECS cluster (name or ARN); default: one is created per app")
    cpuArchitecture: str = Field("X86_64", pattern=r"^(X86_64|ARM64)$")
    hostnames: dict[str, str] = Field(default_factory=dict, description="Environment name -> hostname the certificate covers (the URL output)")
    permissionsBoundaryArn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:policy/.+$")
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)

    @field_validator("accountId")
    @classmethod
    def _account(cls, v: str) -> str:
        if not ACCOUNT_ID.match(v):
            raise ValueError("must be a 12-digit AWS account id")
        return v

    @field_validator("subnetIds", "loadBalancerSubnetIds")
    @classmethod
    def _subnets(cls, v: list[str] | None) -> list[str] | None:
        for s in v or []:
            if not re.match(r"^subnet-[0-9a-f]{8,17}$", s):
                raise ValueError(f"{s!r} is not a subnet id (subnet-...)")
        return v

    @field_validator("ingressCidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for c in v:
            try:
                ipaddress.ip_network(c, strict=True)
            except ValueError as e:
                raise ValueError(f"{c!r} is not a CIDR block: {e}") from None
        return v

    @property
    def cluster_name(self) -> str | None:
        """The existing cluster's name (the part after `cluster/` of an ARN)."""
        if self.cluster is None:
            return None
        return self.cluster.split("cluster/", 1)[1] if self.cluster.startswith("arn:") else self.cluster


def is_public(cidr: str) -> bool:
    """True for a CIDR that admits the whole internet."""
    return ipaddress.ip_network(cidr).prefixlen == 0
