"""The task's container definition, built by a pure function so tests can check it with known values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mxinfra.exposure import leader_follower_counts

CONTAINER = "mendix"
RUNTIME_PORT = 8080

# CloudWatch Logs retention in days, by role.
LOG_RETENTION_DAYS = {"test": 14, "acceptance": 30, "production": 365}

# The two services of an environment, also their log stream prefixes (`leader/mendix/<task id>`).
LEADER = "leader"
FOLLOWER = "follower"


def task_counts(instances: int) -> tuple[int, int]:
    """Desired tasks of the leader service and of the follower service: the core's leader rule."""
    return leader_follower_counts(instances)


@dataclass(frozen=True)
class ValueFrom:
    """A secret the container reads at start: a Secrets Manager ARN and the JSON key inside it."""

    arn: Any  # str or pulumi.Output[str]
    key: str
    # A version id pins the value (a new value is a new task definition); None follows AWSCURRENT.
    version_id: Any = None  # str or pulumi.Output[str]


def value_from(arn: str, key: str, version_id: str | None = None) -> str:
    """ECS's `valueFrom` for one JSON key of a secret: `<arn>:<key>::<version-id>`, or `<arn>:<key>::` (AWSCURRENT)."""
    return f"{arn}:{key}::{version_id or ''}"


def container_definitions(
    *,
    image: str,
    environment: Mapping[str, Any],
    secrets: Mapping[str, str],
    log_group: str,
    region: str,
    memory_mb: int,
    stream_prefix: str = CONTAINER,
) -> list[dict[str, Any]]:
    """The one Mendix container: plain env vars as `environment`, secret ones only as `secrets` references."""
    return [
        {
            "name": CONTAINER,
            "image": image,
            "essential": True,
            "memory": memory_mb,
            "portMappings": [{"containerPort": RUNTIME_PORT, "protocol": "tcp", "name": "http"}],
            "environment": [{"name": k, "value": str(v)} for k, v in sorted(environment.items())],
            "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(secrets.items())],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {"awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": stream_prefix},
            },
            # The runtime needs time to stop cleanly (finish requests, release the cluster lock).
            "stopTimeout": 120,
        }
    ]
