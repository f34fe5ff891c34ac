"""File storage: one private, encrypted, versioned S3 bucket per environment, reachable only over TLS."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi_aws as aws

from mxinfra.target import EnvironmentContext

from . import policies
from .policies import Arns

# Days a replaced or deleted file stays recoverable, by role.
NONCURRENT_DAYS = {"test": 7, "acceptance": 30, "production": 90}


@dataclass
class Files:
    """The bucket, and its versioning (which AWS Backup needs on before it backs the bucket up)."""

    bucket: aws.s3.Bucket
    versioning: aws.s3.BucketVersioning


def create(ctx: EnvironmentContext, a: Arns) -> Files:
    """The bucket and its encryption, versioning, public-access block, ownership, lifecycle and policy.

    On production every one of them is protected and retained with the bucket: a partial destroy (or a
    refactoring that drops one) must not strip versioning, encryption, the public-access block or the
    TLS-only policy from the bucket that stays behind.
    """
    n, env = ctx.naming, ctx.environment
    keep = env.role.value != "test"
    bucket = aws.s3.Bucket(
        n.logical("files"),
        bucket=a.bucket_name,
        # Test files may go with the environment; elsewhere a non-empty bucket blocks deletion.
        force_destroy=not keep,
        tags=dict(ctx.tags),
        opts=ctx.opts(protect_data=True),
    )
    aws.s3.BucketPublicAccessBlock(
        n.logical("files-public-access"),
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=ctx.opts(protect_data=True),
    )
    aws.s3.BucketOwnershipControls(
        n.logical("files-ownership"),
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
        opts=ctx.opts(protect_data=True),
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        n.logical("files-encryption"),
        bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}, "bucket_key_enabled": True}],
        opts=ctx.opts(protect_data=True),
    )
    versioning = aws.s3.BucketVersioning(
        n.logical("files-versioning"),
        bucket=bucket.id,
        versioning_configuration={"status": "Enabled"},
        opts=ctx.opts(protect_data=True),
    )
    aws.s3.BucketLifecycleConfiguration(
        n.logical("files-lifecycle"),
        bucket=bucket.id,
        rules=[
            {
                "id": "expire-noncurrent-versions",
                "status": "Enabled",
                "filter": {},
                "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_DAYS[env.role.value]},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
            }
        ],
        # S3 rejects lifecycle rules on noncurrent versions before versioning is on.
        opts=ctx.opts(protect_data=True, depends_on=[versioning]),
    )
    aws.s3.BucketPolicy(
        n.logical("files-policy"),
        bucket=bucket.id,
        policy=json.dumps(policies.bucket_policy(a), sort_keys=True),
        opts=ctx.opts(protect_data=True),
    )
    return Files(bucket, versioning)
