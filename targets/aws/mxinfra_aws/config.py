"""The `mxinfra:aws` block: what an organisation brings (network, certificate, image) and a few choices."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pydantic import Field, field_validator

from mxinfra.artifacts import parse_image
from mxinfra.backups import RESTORE_FORMS, NotARestorePoint, RestorePoint, parse_restore_point
from mxinfra.egress import EgressRule
from mxinfra.exposure import parse_cidr
from mxinfra.schema import StrictModel

# `[0-9]`, not `\d` (which accepts other scripts' digits), and fullmatch, not `$` (which accepts a trailing newline).
ACCOUNT_ID = re.compile(r"[0-9]{12}")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]")
CLUSTER_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
CLUSTER_ARN = re.compile(r"arn:aws[a-z-]*:ecs:(?P<region>[a-z]{2}(-[a-z]+)+-[0-9]):(?P<account>[0-9]{12}):cluster/(?P<name>[A-Za-z0-9_-]{1,255})")
PUBLIC_CIDRS = ("0.0.0.0/0", "::/0")
# The VPC tag that marks a production network: production requires it, other tiers refuse it.
TIER_TAG = "mxinfra:tier"
PRODUCTION_TIER = "production"

# `database.fromBackup.<env>`: a backup id as `mxinfra backup list` prints it (the UTC time its jobs were
# initiated) or a point in time in UTC (both read by the core's parse_restore_point), or an RDS snapshot of
# the environment's own instance: AWS Backup's `awsbackup:job-<id>`, an automated `rds:<name>`, a manual
# `<name>` (RDS: a letter, then letters, digits and single hyphens), or the snapshot's ARN. Identifiers are
# matched in RDS's lowercase.
AWS_BACKUP_SNAPSHOT = re.compile(r"awsbackup:job-[0-9a-f]+(-[0-9a-f]+)*")
SNAPSHOT_NAME = re.compile(r"(rds:)?[a-z][a-z0-9]*(-[a-z0-9]+)*")
SNAPSHOT_ARN = re.compile(r"arn:aws[a-z-]*:rds:(?P<region>[a-z]{2}(-[a-z]+)+-[0-9]):(?P<account>[0-9]{12}):snapshot:(?P<id>.+)")
SNAPSHOT_MAX = 255
FROM_BACKUP_FORMAT = (
    f"{RESTORE_FORMS}, or an RDS snapshot of the "
    "environment's instance: awsbackup:job-<id>, rds:<name>, <name>, or arn:aws:rds:<region>:<account>:snapshot:<identifier>"
)


@dataclass(frozen=True)
class SnapshotSource:
    """What `mxinfra:aws.database.fromBackup.<env>` names: a backup of the environment's vault (looked up
    at deploy time), one RDS snapshot, or a point in time of the environment's instance's automated backups."""

    value: str  # as configured
    backup_id: str | None = None  # YYYYmmddTHHMMSSZ
    snapshot: str | None = None  # the RDS snapshot identifier, lowercase (no ARN)
    region: str | None = None  # of an ARN
    account: str | None = None  # of an ARN
    point: RestorePoint | None = None  # the core's reading of a backup id or a point in time

    @property
    def aws_backup(self) -> bool:
        """A recovery point of AWS Backup (a backup id, or an `awsbackup:job-<id>` snapshot): the vault says whose it is."""
        return self.backup_id is not None or (self.snapshot or "").startswith("awsbackup:")

    @property
    def point_in_time(self) -> RestorePoint | None:
        """A point in time (not a backup id): restored from the environment's instance's automated backups."""
        return self.point if self.point is not None and not self.point.is_backup else None


def parse_snapshot_source(value: str, now: datetime | None = None) -> SnapshotSource:
    """The backup, point in time or snapshot `value` names; a ValueError saying the expected format (given
    `now`, a time after it is refused too)."""
    try:
        point = parse_restore_point(value, now)
    except NotARestorePoint:
        pass
    else:
        return SnapshotSource(value, backup_id=value if point.is_backup else None, point=point)
    region = account = None
    identifier = value
    m = SNAPSHOT_ARN.fullmatch(value)
    if m is not None:
        region, account, identifier = m["region"], m["account"], m["id"]
    snapshot = identifier.lower()
    if len(snapshot) > SNAPSHOT_MAX or not (AWS_BACKUP_SNAPSHOT.fullmatch(snapshot) or SNAPSHOT_NAME.fullmatch(snapshot)):
        raise ValueError(f"{value!r} is neither a backup id, a point in time nor an RDS snapshot: expected {FROM_BACKUP_FORMAT}")
    return SnapshotSource(value, snapshot=snapshot, region=region, account=account)


class DatabaseConfig(StrictModel):
    """RDS PostgreSQL sizing; defaults are per role (see README)."""

    instanceClass: str | None = Field(None, description="e.g. db.t4g.small; default by role")
    allocatedStorageGb: int = Field(20, ge=20, le=65536)
    maxAllocatedStorageGb: int = Field(100, ge=20, le=65536, description="storage autoscaling ceiling")
    engineVersion: str = Field("16", pattern=r"^1[4-9](\.[0-9]+)?$", description="PostgreSQL major (or major.minor) version")
    passwordRotationDays: int = Field(30, ge=1, le=365, description="days between rotations of the RDS-managed master password (each one redeploys the services)")
    # Each value's format is checked with the stack (target.check), so that every problem of the key is in
    # one report with the rest of the block's.
    fromBackup: dict[str, str] = Field(
        default_factory=dict,
        description="environment -> the backup id, point in time (UTC) or RDS snapshot of its instance whose restored instance the app uses instead of <app>-<env>-db",
    )

    def source(self, environment: str) -> SnapshotSource | None:
        """The backup or snapshot `environment`'s app runs on (None: its own instance); a ValueError for a
        malformed value (the config check reports it first)."""
        value = self.fromBackup.get(environment)
        return parse_snapshot_source(value) if value is not None else None


def _image_ref(v: str) -> str:
    """An image reference as the core reads one (ECR's registry and repository grammar where it is ECR)."""
    from .policies import ECR_REGISTRY, ECR_REPOSITORY

    ref = parse_image(v)
    if ref is None:
        raise ValueError(f"{v!r} is not an image reference: registry/repository[:tag][@sha256:<digest>], lowercase repository components, no wildcards")
    if ref.registry is not None and ".dkr.ecr." in ref.registry:
        if not ECR_REGISTRY.fullmatch(ref.registry):
            raise ValueError(f"{ref.registry!r} is not an ECR registry (<account>.dkr.ecr.<region>.amazonaws.com)")
        if not ECR_REPOSITORY.fullmatch(ref.repository) or len(ref.repository) > 256:
            raise ValueError(f"{ref.repository!r} is not an ECR repository name")
    return v


# How long an export may run: the state machine stops its task after it, and `download` waits as long
# (then stops the execution itself). A production session lasts at most 4 hours.
EXPORT_TIMEOUT_SECONDS = 3 * 3600


class BackupExportConfig(StrictModel):
    """`mxinfra:aws.backupExport`: the images of the export task behind `mxinfra backup download`.

    The tasks reach no registry outside the VPC's endpoints (egress is limited), so both images are the
    organisation's own copies in ECR (or any registry its network reaches), pinned by digest on production.
    """

    postgresImage: str = Field(description="A PostgreSQL image (the official `postgres`, same major as the database or newer): pg_dump and sh")
    rcloneImage: str = Field(description="An rclone image (the official `rclone/rclone`): copies the files and uploads the archive")
    storageGb: int = Field(50, ge=21, le=200, description="The export task's ephemeral storage (Fargate: 21 to 200 GiB): about three times the file store plus the database's dump")

    @field_validator("postgresImage", "rcloneImage")
    @classmethod
    def _images(cls, v: str) -> str:
        return _image_ref(v)


class AwsConfig(StrictModel):
    """`mxinfra:aws`: the target's settings, shared by the stack's environments."""

    accountId: str = Field(description="The 12-digit AWS account the stack deploys into (ARNs are built from it)")
    vpcId: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$", description="The existing VPC (vpc-...)")
    vpcCidr: str = Field(description="The VPC's (primary) CIDR block: the runtime's HTTPS egress to the VPC's interface endpoints; checked against the VPC at deploy time")
    vpcTags: dict[str, str] = Field(default_factory=dict, description="Tags the VPC carries (checked at deploy time): production needs mxinfra:tier=production")
    allowSharedVpc: bool = Field(False, description="Explicit opt-in: environments of different tiers in one VPC (warned)")
    s3PrefixListId: str | None = Field(None, pattern=r"^pl-[0-9a-f]{8,17}$", description="The region's S3 prefix list (gateway endpoint): HTTPS egress to S3 outside the VPC CIDR")
    egress: list[EgressRule] = Field(default_factory=list, max_length=50, description="What the app calls out to, besides the database, the VPC's endpoints and S3")
    allowWideEgress: bool = Field(False, description="Explicit opt-in to /8 (IPv6: /32) or wider egress rules on a stack with production")
    subnetIds: list[str] = Field(min_length=2, description="Private subnets in at least two availability zones, for the service and the database")
    loadBalancerSubnetIds: list[str] | None = Field(None, min_length=2, description="Subnets of the load balancer (public ones for an internet-facing ALB); default: subnetIds")
    certificateArn: str = Field(pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", description="ACM certificate of the HTTPS listener")
    image: str = Field(min_length=1, description="The Docker-buildpack image of the app (ECR URI or registry reference)")
    ingressCidrs: list[str] = Field(min_length=1, description="Who may reach the load balancer (443, and 80 redirecting to 443)")
    allowPublicIngress: bool = Field(False, description="Explicit opt-in to 0.0.0.0/0 or ::/0 on production")
    internal: bool = Field(False, description="An internal (VPC-only) load balancer")
    assignPublicIp: bool = Field(False, description="Give tasks a public IP (only for subnets without a NAT gateway)")
    cluster: str | None = Field(None, description="An existing ECS cluster (name or ARN); default: one is created per app")
    cpuArchitecture: str = Field("X86_64", pattern=r"^(X86_64|ARM64)$")
    hostnames: dict[str, str] = Field(default_factory=dict, description="Environment name -> hostname the certificate covers (the URL output)")
    permissionsBoundaryArn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:policy/.+$")
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    backupExport: BackupExportConfig | None = Field(None, description="The export task `mxinfra backup download` runs (absent: no download on this stack)")

    @field_validator("accountId")
    @classmethod
    def _account(cls, v: str) -> str:
        if not ACCOUNT_ID.fullmatch(v):
            raise ValueError("must be a 12-digit AWS account id")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        return _image_ref(v)

    @field_validator("vpcCidr")
    @classmethod
    def _vpc_cidr(cls, v: str) -> str:
        if parse_cidr(v).version != 4:
            raise ValueError("the VPC's primary CIDR block is IPv4")
        return v

    @property
    def production_vpc(self) -> bool:
        """True when the stack declares its VPC a production network."""
        return self.vpcTags.get(TIER_TAG) == PRODUCTION_TIER

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, v: str | None) -> str | None:
        if v is not None and not (CLUSTER_NAME.fullmatch(v) or CLUSTER_ARN.fullmatch(v)):
            raise ValueError(f"{v!r} is neither a cluster name ([A-Za-z0-9_-], at most 255) nor arn:aws:ecs:<region>:<account>:cluster/<name>")
        return v

    @field_validator("subnetIds", "loadBalancerSubnetIds")
    @classmethod
    def _subnets(cls, v: list[str] | None) -> list[str] | None:
        for s in v or []:
            if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", s):
                raise ValueError(f"{s!r} is not a subnet id (subnet-...)")
        return v

    @field_validator("ingressCidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for c in v:
            parse_cidr(c)
        return v

    @property
    def cluster_name(self) -> str | None:
        """The existing cluster's name (the part after `cluster/` of an ARN)."""
        if self.cluster is None:
            return None
        m = CLUSTER_ARN.fullmatch(self.cluster)
        return m["name"] if m else self.cluster

    @property
    def cluster_arn_parts(self) -> tuple[str, str] | None:
        """(region, account) of an existing cluster given as an ARN; None for a name or no cluster."""
        m = CLUSTER_ARN.fullmatch(self.cluster or "")
        return (m["region"], m["account"]) if m else None


