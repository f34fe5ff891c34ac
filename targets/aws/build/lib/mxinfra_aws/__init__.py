"""mxinfra's AWS target: Mendix apps on ECS Fargate with RDS PostgreSQL, S3 file storage and IAM roles
per environment permission. Importing this package does not import pulumi_aws."""

from __future__ import annotations

from .target import AwsTarget

target = AwsTarget()

__all__ = ["AwsTarget", "target"]
