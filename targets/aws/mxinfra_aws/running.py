"""What runs in an environment, read from ECS for `mxinfra drift` (mxinfra.drift compares it with the
activity log). No Pulumi imports; boto3 is imported only when AWS is asked.

An environment runs the leader service `<app>-<env>` and, from two instances up, the follower service
`<app>-<env>-follower`, each on a revision of its own task family (runtime.py). Read per service:
`ecs:DescribeServices` (status, task definition, desired count), then `ecs:DescribeTaskDefinition` of the
revision it runs (the `mendix` container's image, the revision's `mxinfra:package-sha256` tag). Compared
with the log's records: the image (the record's artifact; every service must run it), the desired counts
summed (the record's instances: the leader's one task plus the followers'), and the package tag where the
revision carries one (a release tags each revision it registers; one registered by hand may carry none).

The service's task definition is only what its newest (PRIMARY) deployment starts: an older deployment keeps
its tasks until the newest one is healthy, and one that never becomes healthy (security groups that block
the load balancer, no circuit breaker, minimumHealthyPercent 100) keeps them for good, while the service
names the recorded revision. So every PRIMARY or ACTIVE entry of the service's `deployments` (the same
DescribeServices answer) that runs or wants tasks of another revision is read as well (one
DescribeTaskDefinition per revision) and its image compared with the record's (mxinfra.drift.running_beside:
another image is named, with the deployment's id and revision, as a warning: right after every release the
deployment it replaces still runs until its rollout ends). Its tasks are not listed (ecs:ListTasks,
ecs:DescribeTasks): `monitor` may not read them, and the deploy role's DescribeTasks needs the environment's
tags on the task, which the tasks of a revision registered by hand without them do not carry.

Not compared: the rest of the runtime configuration (variables, secret references, roles, size, added
containers). A release writes no fingerprint of it on the revision, and the records hold only a digest of
the settings, which a task definition cannot be turned back into: a revision registered by hand with the
recorded image and other variables is not detected here (CloudTrail's RegisterTaskDefinition shows it).
`mxinfra drift` says so on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mxinfra.drift import CannotObserve, Observed

from .containers import CONTAINER

PACKAGE_TAG = "mxinfra:package-sha256"
CONFIG_NOTE = (
    "ECS task definitions carry no fingerprint of the runtime configuration a release applied, so variables, "
    "secret references, roles, size and added containers changed by hand with the recorded image are not "
    "detected (image, package tag and instance count are); CloudTrail's ecs:RegisterTaskDefinition events show them"
)
READ_RIGHTS = "ecs:DescribeServices on the environment's services and ecs:DescribeTaskDefinition (its deploy role has both)"
SIGN_IN = "sign in (`aws sso login`, AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) as an identity with " + READ_RIGHTS
_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException")
_INVALID = ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch")


@dataclass(frozen=True)
class Beside:
    """A deployment of a service (DescribeServices' `deployments`, PRIMARY or ACTIVE) that runs or wants
    tasks of another revision than the service's task definition."""

    id: str  # `ecs-svc/...`
    status: str
    revision: str  # `family:revision` of its task definition
    image: str | None  # the runtime container's; None when the revision has no `mendix` container
    running: int
    desired: int


@dataclass(frozen=True)
class Service:
    """What one ACTIVE ECS service runs."""

    name: str
    revision: str  # `family:revision` of the task definition it runs
    image: str | None  # the runtime container's; None when the revision has no `mendix` container
    desired: int
    package_sha256: str | None  # the revision's mxinfra:package-sha256 tag, if any
    role: str | None = None  # the revision's mxinfra:role tag, if any
    beside: tuple[Beside, ...] = ()  # its deployments that run another revision, newest first


def _where(cluster: str, region: str) -> str:
    return f"cluster {cluster}, {region}"


def _revision(arn: str) -> str:
    """`family:revision` of a task definition ARN (`arn:...:task-definition/family:3`)."""
    return arn.rsplit("/", 1)[-1]


def _image(service: Service | Beside) -> str:
    return service.image if service.image is not None else f"(no {CONTAINER} container in {service.revision})"


def _stop(region: str, cluster: str, service: str, deployment: Beside) -> str:
    """How `mxinfra drift` says to stop what a deployment beside the service's revision runs."""
    return (
        f"stop the tasks of deployment {deployment.id} of {service} (revision {deployment.revision}) unless ECS is still stopping them "
        f"after a release: aws ecs list-tasks --region {region} --cluster {cluster} --service-name {service}, then aws ecs stop-task "
        f"--region {region} --cluster {cluster} --task <each one `aws ecs describe-tasks` shows on {deployment.revision}>"
    )


def _update(region: str, cluster: str, name: str) -> str:
    return f"aws ecs update-service --region {region} --cluster {cluster} --service {name}"


def restore_commands(region: str, cluster: str, leader: str, follower: str, followers: bool) -> dict[str, str]:
    """How `mxinfra drift` says to put the image and the instance count back (`{value}`: the recorded one)."""
    services = [leader, follower] if followers else [leader]
    artifact = "; ".join(f"{_update(region, cluster, s)} --task-definition {s}:<a revision of {s} that runs image {{value}}>" for s in services)
    if followers:
        instances = f"{_update(region, cluster, leader)} --desired-count 1; {_update(region, cluster, follower)} --desired-count <{{value}} minus the leader's 1>"
    else:
        instances = f"{_update(region, cluster, leader)} --desired-count {{value}}"
    return {"artifact": artifact, "instances": instances}


def observed(environment: str, region: str, cluster: str, leader: str, follower: str, services: Mapping[str, Service], followers_declared: bool = False) -> Observed:
    """The Observed of an environment from the ACTIVE services read (name -> Service). Pure."""
    active = [services[n] for n in (leader, follower) if n in services]
    followers = follower in services or followers_declared
    restore = restore_commands(region, cluster, leader, follower, followers)
    if not active:
        return Observed(environment, f"ECS service {leader} ({_where(cluster, region)})", exists=False, artifact_kind="image", restore=restore)
    first = active[0]
    if leader not in services:
        detail = f"revision {first.revision}; the leader service {leader} does not run"
    elif follower in services:
        detail = f"revision {first.revision}; follower service {follower}, revision {services[follower].revision}"
    else:
        detail = f"revision {first.revision}"
    what = f"ECS service {first.name} ({detail}; {_where(cluster, region)})"
    images = {_image(s) for s in active}
    # One image for every service is what a release leaves; otherwise each is named, which no record names.
    artifact = images.pop() if len(images) == 1 else ", ".join(f"{_image(s)} ({s.name})" for s in active)
    # The deployments that still run or start tasks of another revision: the core says which image no
    # record names (mxinfra.drift.running_beside), and how to stop them is said here.
    beside = tuple((f"deployment {d.id} of {s.name}, revision {d.revision}, {d.running} task(s) running", _image(d)) for s in active for d in s.beside)
    if beside:
        restore = {**restore, "beside": "; ".join(_stop(region, cluster, s.name, d) for s in active for d in s.beside)}
    return Observed(
        environment,
        what,
        exists=True,
        package_sha256=first.package_sha256,
        artifact=artifact,
        artifact_kind="image",
        instances=sum(s.desired for s in active),
        config_note=CONFIG_NOTE,
        restore=restore,
        role="production" if any(s.role == "production" for s in active) else first.role,
        beside=beside,
    )


@contextmanager
def _aws(environment: str, region: str, doing: str) -> Iterator[None]:
    """The AWS SDK's failures as CannotObserve (exit 2), naming what to fix; never a traceback."""
    import botocore.exceptions

    head = f"{environment}: what runs could not be read from AWS ({region})"
    try:
        yield
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
        raise CannotObserve(f"{head}: no AWS credentials were found: {SIGN_IN}") from None
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        code, message = str(err.get("Code", "?")), str(err.get("Message", ""))[:300]
        if code in _DENIED or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
            fix = f"the identity needs {READ_RIGHTS}"
        elif code in _INVALID:
            fix = f"the AWS credentials are not valid (expired or revoked): {SIGN_IN}"
        else:
            fix = "see AWS's message"
        raise CannotObserve(f"{head}: AWS refused {doing} ({code}: {message}): {fix}") from None
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError) as exc:
        raise CannotObserve(f"{head}: the AWS API cannot be reached ({exc}): check the network and aws:region") from None
    except botocore.exceptions.BotoCoreError as exc:  # an expired SSO session, a missing profile, ...
        raise CannotObserve(f"{head}: the AWS SDK could not sign in ({exc}): {SIGN_IN}") from None


def _tag(tags: Sequence[Mapping[str, Any]] | None, key: str) -> str | None:
    for tag in tags or []:
        if tag.get("key") == key and tag.get("value"):
            return str(tag["value"])
    return None



def read_services(ecs: Any, environment: str, region: str, cluster: str, names: Sequence[str]) -> dict[str, Service]:
    """The ACTIVE ones of `names` in `cluster` and what each runs. A missing cluster runs nothing; a
    service being deleted (DRAINING) or deleted (INACTIVE) or never created (a failure MISSING) is left out."""
    with _aws(environment, region, f"ecs:DescribeServices of {', '.join(names)} in cluster {cluster}"):
        try:
            described = ecs.describe_services(cluster=cluster, services=list(names))
        except ecs.exceptions.ClusterNotFoundException:
            return {}
    read: dict[str, Mapping[str, Any]] = {}  # revision -> DescribeTaskDefinition's answer: one call each

    def definition(arn: str, of: str = "") -> tuple[Mapping[str, Any], str | None]:
        """The revision's answer and its runtime container's image."""
        if _revision(arn) not in read:
            with _aws(environment, region, f"ecs:DescribeTaskDefinition of {_revision(arn)}{of}"):
                read[_revision(arn)] = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
        td = read[_revision(arn)]
        runtime = [c for c in td["taskDefinition"].get("containerDefinitions") or [] if c.get("name") == CONTAINER]
        return td, runtime[0].get("image") if runtime else None

    found = {}
    for svc in described.get("services") or []:
        if svc.get("status") != "ACTIVE" or svc.get("serviceName") not in names:
            continue
        name, arn = svc["serviceName"], svc["taskDefinition"]
        td, image = definition(arn)
        found[name] = Service(
            name=name,
            revision=_revision(arn),
            image=image,
            desired=int(svc.get("desiredCount") or 0),
            package_sha256=_tag(td.get("tags"), PACKAGE_TAG),
            role=_tag(td.get("tags"), "mxinfra:role"),
            beside=tuple(_beside(svc, environment, region, cluster, definition)),
        )
    return found


def _beside(
    svc: Mapping[str, Any], environment: str, region: str, cluster: str, definition: Callable[[str, str], tuple[Mapping[str, Any], str | None]]
) -> Iterator[Beside]:
    """The service's PRIMARY or ACTIVE deployments that run or want tasks of another revision than its task
    definition (an older one still running beside a newer one that is not healthy yet, or never will be)."""
    name, own = svc["serviceName"], _revision(svc["taskDefinition"])
    for d in svc.get("deployments") or []:
        running, desired = int(d.get("runningCount") or 0), int(d.get("desiredCount") or 0)
        if d.get("status") not in ("PRIMARY", "ACTIVE") or not (running > 0 or desired > 0):
            continue
        arn = d.get("taskDefinition")
        if not arn:  # what its tasks run cannot be told: nothing to compare, so nothing is said to match
            raise CannotObserve(
                f"{environment}: what runs could not be read from AWS ({region}): ECS names no task definition for deployment "
                f"{d.get('id')} of service {name} ({_where(cluster, region)}), which runs {running} task(s)"
            )
        if _revision(arn) == own:
            continue
        _, image = definition(arn, f" (deployment {d.get('id')} of service {name})")
        yield Beside(id=str(d.get("id")), status=str(d.get("status")), revision=_revision(arn), image=image, running=running, desired=desired)


def observe(environment: str, region: Any, account: str, cluster: str, leader: str, follower: str, *, followers_declared: bool = False, session: Any = None) -> Observed:
    """What the environment's services run, read with the AWS SDK's usual credentials (environment,
    profile, SSO, instance or task role) in the stack's region and account."""
    if not isinstance(region, str) or not region:
        raise CannotObserve(f"{environment}: what runs could not be read from AWS: the stack sets no aws:region (pulumi config set aws:region eu-west-1)")
    import boto3
    import botocore.config

    config = botocore.config.Config(connect_timeout=10, read_timeout=30)
    with _aws(environment, region, "sts:GetCallerIdentity"):
        aws = session or boto3.session.Session()
        caller = aws.client("sts", region_name=region, config=config).get_caller_identity()
        ecs = aws.client("ecs", region_name=region, config=config)
    if caller.get("Account") != account:
        raise CannotObserve(
            f"{environment}: what runs could not be read from AWS ({region}): the AWS credentials are account "
            f"{caller.get('Account')}'s ({caller.get('Arn')}), the stack deploys to account {account} (mxinfra:aws.accountId): "
            f"sign in to account {account} as an identity with {READ_RIGHTS}"
        )
    services = read_services(ecs, environment, region, cluster, [leader, follower])
    return observed(environment, region, cluster, leader, follower, services, followers_declared)
