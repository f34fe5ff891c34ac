"""A loopback double of the AWS Backup REST-JSON API, for exactly the operations `mxinfra backup` calls on
the aws target (moto has AWS Backup's vaults and plans, not its jobs or recovery points).

Held honest by botocore's own service model of `backup`: each request is routed by the operation's
`requestUri` and method, its URI labels, query string and JSON body read into the operation's input
shape and validated (required members, types, lengths and ranges by botocore's ParamValidator, enums and
unknown members here), and each answer validated against the output shape the same way before it is
serialised as rest-json does (timestamps as epoch seconds); error codes must be the operation's own
(or AWS's common AccessDeniedException). A request or answer that breaks the model is recorded in
`violations` (the fixture fails the test) and answered 400. The request must be SigV4-signed for
`backup` in the double's region.

The jobs act on moto's RDS and S3 (in the same process, under `mock_aws`): a database backup is a real
moto snapshot of the instance (moto refuses AWS Backup's `awsbackup:job-<id>` name, so it is stored as
`awsbackup-job-<id>`; the recovery point ARN is AWS's `...:snapshot:awsbackup:job-<id>`), a bucket
backup the list of its current object versions, a database restore moto's
RestoreDBInstanceFromDBSnapshot, a bucket restore a copy of each listed version over the current one.
Recovery points carry the backed-up resource's tags, as AWS Backup copies them. A job is RUNNING on its
first DescribeBackupJob/DescribeRestoreJob and COMPLETED on the next (`fail`/`stall` change that).

Optionally `policy` is an identity policy (the rendered `backups` role's): every call is authorised
against it with the IAM evaluator (iam_eval.allows) as AWS would authorise it (the action, the resource
ARN AWS Backup's service authorization reference names, the recovery point's tags; `iam:PassRole` of the
role a job is given), and answered AccessDeniedException when refused. Every authorised call is in
`calls` as (action, resource, context).

Not modelled: the restore metadata keys AWS really returns (an approximation: the RDS instance's
settings, S3's destination bucket), how long jobs take, vault lock enforcement beyond the retention
bounds, and KMS.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.session
from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator

from iam_eval import allows

OPERATIONS = (
    "DescribeBackupVault",
    "ListRecoveryPointsByBackupVault",
    "StartBackupJob",
    "DescribeBackupJob",
    "DescribeRecoveryPoint",
    "GetRecoveryPointRestoreMetadata",
    "StartRestoreJob",
    "DescribeRestoreJob",
)
COMMON_ERRORS = ("AccessDeniedException",)
PAGE = 2  # recovery points per page unless MaxResults says fewer: the client must follow NextToken


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- the model --------------------------------------------------------------------------------------------


def _enum_and_unknown(value: Any, shape: Shape, path: str, out: list[str]) -> None:
    """What ParamValidator does not check: enum values, and (in maps' and lists' members) nested structures."""
    if shape.type_name == "structure":
        if not isinstance(value, dict):
            return
        for k, v in value.items():
            if k not in shape.members:
                out.append(f"{path}.{k}: not a member of {shape.name}")
            else:
                _enum_and_unknown(v, shape.members[k], f"{path}.{k}", out)
    elif shape.type_name == "list" and isinstance(value, list):
        for i, v in enumerate(value):
            _enum_and_unknown(v, shape.member, f"{path}[{i}]", out)
    elif shape.type_name == "map" and isinstance(value, dict):
        for k, v in value.items():
            _enum_and_unknown(k, shape.key, f"{path} key", out)
            _enum_and_unknown(v, shape.value, f"{path}.{k}", out)
    elif shape.type_name == "string" and shape.enum and value not in shape.enum:
        out.append(f"{path}: {value!r} is not one of {shape.name}'s {shape.enum}")


def check_shape(value: Mapping[str, Any], shape: Shape | None, what: str) -> list[str]:
    """Every way `value` breaks `shape` (empty: it conforms)."""
    if shape is None:
        return [] if not value else [f"{what}: the operation has no such shape, got {sorted(value)}"]
    report = ParamValidator().validate(dict(value), shape)
    problems = [f"{what}: {line}" for line in report.generate_report().splitlines() if line.strip() and not line.startswith("Parameter validation failed")] if report.has_errors() else []
    _enum_and_unknown(dict(value), shape, what, problems)
    return problems


def _read(value: str, shape: Shape) -> Any:
    """A URI label or query string value as the member's type."""
    if shape.type_name in ("integer", "long"):
        return int(value)
    if shape.type_name == "boolean":
        return value == "true"
    if shape.type_name == "timestamp":
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _from_json(value: Any, shape: Shape) -> Any:
    """A JSON body value as the Python value botocore's validator expects."""
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _from_json(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_from_json(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _from_json(v, shape.value) for k, v in value.items()}
    if shape.type_name == "timestamp" and isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    return value


def _to_json(value: Any, shape: Shape) -> Any:
    """An answer's value as rest-json writes it."""
    if shape.type_name == "structure":
        return {k: _to_json(v, shape.members[k]) for k, v in value.items()}
    if shape.type_name == "list":
        return [_to_json(v, shape.member) for v in value]
    if shape.type_name == "map":
        return {k: _to_json(v, shape.value) for k, v in value.items()}
    if shape.type_name == "timestamp":
        return value.timestamp()
    return value


def _route(op: OperationModel) -> re.Pattern[str]:
    uri = op.http["requestUri"].split("?")[0]
    pattern = re.sub(r"\\\{([A-Za-z0-9_]+)(\\\+)?\\\}", lambda m: f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})", re.escape(uri))
    return re.compile(pattern)


# --- the double -------------------------------------------------------------------------------------------


class BackupDouble:
    """AWS Backup for one account and region, its jobs run against moto's RDS and S3."""

    def __init__(self, region: str, account: str) -> None:
        self.region, self.account = region, account
        self.model = botocore.session.get_session().get_service_model("backup")
        self.ops = {name: self.model.operation_model(name) for name in OPERATIONS}
        self.routes = [(op, _route(op)) for op in self.ops.values()]
        self.vaults: dict[str, dict[str, Any]] = {}
        self.points: dict[str, dict[str, Any]] = {}  # arn -> recovery point (the list's member, plus private keys)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.restores: dict[str, dict[str, Any]] = {}
        self.policy: dict[str, Any] | None = None
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.denied: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []  # operation, input
        self.called: list[str] = []  # the operations of `requests` that came through `call` (a state machine's)
        self.fail: str | None = None  # "backup" or "restore": the next job of that kind fails
        self.stall = False  # jobs never complete
        self.lock = threading.Lock()
        self.rds = boto3.client("rds", region_name=region)
        self.s3 = boto3.client("s3", region_name=region)
        self.url = ""

    # --- set-up, as `pulumi up` leaves it ---------------------------------------------------------------

    def add_vault(self, name: str, *, min_days: int | None = None, max_days: int | None = None) -> None:
        lock = {"Locked": True, "MinRetentionDays": min_days, "MaxRetentionDays": max_days, "LockDate": _now()} if min_days is not None else {"Locked": False}
        self.vaults[name] = {"BackupVaultName": name, "BackupVaultArn": self._vault_arn(name), "CreationDate": _now(), "NumberOfRecoveryPoints": 0, **lock}

    def scheduled_run(self, vault: str, at: datetime, resources: Mapping[str, str], role: str, spread_seconds: int = 95) -> list[str]:
        """What the plan's rule firing at `at` leaves: a completed recovery point per resource, jobs
        initiated a little apart within the start window."""
        arns = []
        for i, resource in enumerate(resources.values()):
            job = self._start_job(vault, resource, role, {"DeleteAfterDays": 14}, at.replace(microsecond=0).timestamp() + i * spread_seconds, plan=True)
            job["State"] = "COMPLETED"
            self._complete(job)
            arns.append(job["RecoveryPointArn"])
        return arns

    # --- the server -------------------------------------------------------------------------------------

    @contextmanager
    def serve(self) -> Iterator[str]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body, headers = double.handle(self.command, self.path, dict(self.headers), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _any  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self.url
        finally:
            server.shutdown()
            server.server_close()

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        url = urllib.parse.urlsplit(path)
        for op, route in self.routes:
            m = route.fullmatch(url.path)
            if m and op.http["method"] == method:
                break
        else:
            self.violations.append(f"{method} {path}: no operation of the model this double serves")
            return 404, {"__type": "UnknownOperationException", "message": path}, {}
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if f"/{self.region}/backup/aws4_request" not in auth:
            self.violations.append(f"{op.name}: not signed for backup in {self.region}: {auth[:120]!r}")
        params: dict[str, Any] = {}
        shape = op.input_shape
        members = shape.members if shape is not None else {}
        query = urllib.parse.parse_qs(url.query)
        for name, member in members.items():
            loc, wire = member.serialization.get("location"), member.serialization.get("name", name)
            if loc == "uri":
                params[name] = _read(urllib.parse.unquote(m.group(wire)), member)
            elif loc == "querystring" and wire in query:
                params[name] = _read(query[wire][0], member)
        known_query = {mem.serialization.get("name") for mem in members.values() if mem.serialization.get("location") == "querystring"}
        for key in query:
            if key not in known_query:
                self.violations.append(f"{op.name}: query parameter {key!r} is not in the model")
        if raw:
            body = json.loads(raw)
            for k, v in body.items():
                if k not in members or members[k].serialization.get("location"):
                    self.violations.append(f"{op.name}: body member {k!r} is not in the model's body")
                else:
                    params[k] = _from_json(v, members[k])
        problems = check_shape(params, shape, f"{op.name} request")
        if problems:
            self.violations += problems
            return 400, {"__type": "ValidationException", "message": "; ".join(problems)}, {"x-amzn-ErrorType": "ValidationException"}
        with self.lock:
            self.requests.append((op.name, params))
            try:
                answer = getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", op.name).lower())(params)
            except ApiError as e:
                if e.code not in [s.name for s in op.error_shapes] + list(COMMON_ERRORS):
                    self.violations.append(f"{op.name}: error {e.code} is not one the operation has")
                return e.status, {"__type": e.code, "Message": e.message}, {"x-amzn-ErrorType": e.code}
        problems = check_shape(answer, op.output_shape, f"{op.name} answer")
        if problems:
            self.violations += problems
            return 500, {"__type": "ServiceUnavailableException", "Message": "; ".join(problems)}, {}
        return 200, _to_json(answer, op.output_shape) if op.output_shape is not None else {}, {}

    def call(self, operation: str, params: dict[str, Any], policy: Mapping[str, Any]) -> dict[str, Any]:
        """One operation as another identity calls it (a state machine's role, through Step Functions' AWS
        SDK integration): the request and answer validated against the model as over HTTP, authorised
        against `policy`; an ApiError as AWS Backup would answer it."""
        op = self.ops[operation]
        problems = check_shape(params, op.input_shape, f"{operation} request")
        if problems:
            self.violations += problems
            raise ApiError(400, "ValidationException", "; ".join(problems))
        with self.lock:
            self.requests.append((operation, params))
            self.called.append(operation)
            mine, self.policy = self.policy, dict(policy)
            try:
                answer = getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())(params)
            except ApiError as e:
                if e.code not in [s.name for s in op.error_shapes] + list(COMMON_ERRORS):
                    self.violations.append(f"{operation}: error {e.code} is not one the operation has")
                raise
            finally:
                self.policy = mine
        problems = check_shape(answer, op.output_shape, f"{operation} answer")
        if problems:
            self.violations += problems
            raise ApiError(500, "ServiceUnavailableException", "; ".join(problems))
        return answer

    # --- IAM ----------------------------------------------------------------------------------------------

    def _authorize(self, action: str, resource: str, context: Mapping[str, str] | None = None) -> None:
        context = dict(context or {})
        if self.policy is not None and not allows(self.policy, action, resource, context):
            self.denied.append((action, resource))
            raise ApiError(403, "AccessDeniedException", f"User: arn:aws:sts::{self.account}:assumed-role/caller/session is not authorized to perform: {action} on resource: {resource}")
        self.calls.append((action, resource, context))

    def _pass_role(self, role: str) -> None:
        self._authorize("iam:PassRole", role, {"iam:PassedToService": "backup.amazonaws.com"})

    def _point_context(self, point: Mapping[str, Any]) -> dict[str, str]:
        return {f"aws:ResourceTag/{k}": v for k, v in point["_tags"].items()}

    # --- operations -----------------------------------------------------------------------------------------

    def _vault_arn(self, name: str) -> str:
        return f"arn:aws:backup:{self.region}:{self.account}:backup-vault:{name}"

    def _vault(self, name: str) -> dict[str, Any]:
        if name not in self.vaults:
            raise ApiError(404, "ResourceNotFoundException", f"Backup vault {name} does not exist")
        return self.vaults[name]

    def _describe_backup_vault(self, p: dict[str, Any]) -> dict[str, Any]:
        self._authorize("backup:DescribeBackupVault", self._vault_arn(p["BackupVaultName"]))
        v = self._vault(p["BackupVaultName"])
        count = sum(1 for rp in self.points.values() if rp["BackupVaultName"] == v["BackupVaultName"])
        return {k: val for k, val in {**v, "NumberOfRecoveryPoints": count}.items() if val is not None}

    def _list_recovery_points_by_backup_vault(self, p: dict[str, Any]) -> dict[str, Any]:
        self._authorize("backup:ListRecoveryPointsByBackupVault", self._vault_arn(p["BackupVaultName"]))
        self._vault(p["BackupVaultName"])
        found = sorted((rp for rp in self.points.values() if rp["BackupVaultName"] == p["BackupVaultName"]), key=lambda rp: rp["RecoveryPointArn"])
        start = int(p.get("NextToken") or 0)
        size = min(p.get("MaxResults") or PAGE, PAGE)
        page = found[start : start + size]
        out: dict[str, Any] = {"RecoveryPoints": [{k: v for k, v in rp.items() if not k.startswith("_")} for rp in page]}
        if start + size < len(found):
            out["NextToken"] = str(start + size)
        return out

    def _start_backup_job(self, p: dict[str, Any]) -> dict[str, Any]:
        self._authorize("backup:StartBackupJob", self._vault_arn(p["BackupVaultName"]))
        self._pass_role(p["IamRoleArn"])
        vault = self._vault(p["BackupVaultName"])
        days = (p.get("Lifecycle") or {}).get("DeleteAfterDays")
        if vault["Locked"] and (days is None or not vault["MinRetentionDays"] <= days <= vault["MaxRetentionDays"]):
            raise ApiError(400, "InvalidParameterValueException", f"Lifecycle {days} days is outside the vault lock's {vault['MinRetentionDays']}-{vault['MaxRetentionDays']} days")
        if p.get("StartWindowMinutes") is not None and p["StartWindowMinutes"] < 60:
            raise ApiError(400, "InvalidParameterValueException", "StartWindowMinutes must be at least 60")
        for job in self.jobs.values():  # the same token within a day is the same job
            if p.get("IdempotencyToken") and job["_token"] == p["IdempotencyToken"]:
                return {"BackupJobId": job["BackupJobId"], "CreationDate": job["CreationDate"]}
        job = self._start_job(p["BackupVaultName"], p["ResourceArn"], p["IamRoleArn"], p.get("Lifecycle"), _now().timestamp(), token=p.get("IdempotencyToken"))
        # (its recovery point is "only returned for Amazon EFS and Advanced DynamoDB resources", AWS says)
        return {"BackupJobId": job["BackupJobId"], "CreationDate": job["CreationDate"]}

    def _start_job(self, vault: str, resource: str, role: str, lifecycle: Any, at: float, *, plan: bool = False, token: str | None = None) -> dict[str, Any]:
        job_id = str(uuid.uuid4()).upper()
        created = datetime.fromtimestamp(at, timezone.utc)
        if ":rds:" in resource and ":db:" in resource:
            db = resource.rsplit(":", 1)[-1]
            try:
                instance = self.rds.describe_db_instances(DBInstanceIdentifier=db)["DBInstances"][0]
            except self.rds.exceptions.DBInstanceNotFoundFault:
                raise ApiError(400, "InvalidParameterValueException", f"Resource {resource} not found") from None
            self.rds.create_db_snapshot(DBInstanceIdentifier=db, DBSnapshotIdentifier=f"awsbackup-job-{job_id.lower()}")
            arn = f"arn:aws:rds:{self.region}:{self.account}:snapshot:awsbackup:job-{job_id.lower()}"
            tags = {t["Key"]: t["Value"] for t in self.rds.list_tags_for_resource(ResourceName=resource)["TagList"]}
            kind = "RDS"
            private = {
                "_snapshot": f"awsbackup-job-{job_id.lower()}",
                "_metadata": {
                    "DBInstanceIdentifier": db,
                    "DBInstanceClass": instance["DBInstanceClass"],
                    "Engine": instance["Engine"],
                    "MultiAZ": str(instance.get("MultiAZ", False)).lower(),
                    "Port": str((instance.get("Endpoint") or {}).get("Port", 5432)),
                    "PubliclyAccessible": "false",
                    "StorageType": instance.get("StorageType", "gp3"),
                    "VpcSecurityGroupIds": json.dumps([g["VpcSecurityGroupId"] for g in instance.get("VpcSecurityGroups") or []]),
                    **({"DBSubnetGroupName": instance["DBSubnetGroup"]["DBSubnetGroupName"]} if instance.get("DBSubnetGroup") else {}),
                },
            }
        elif resource.startswith("arn:aws:s3:::"):
            bucket = resource.split(":::", 1)[1]
            try:
                versions = self.s3.list_object_versions(Bucket=bucket).get("Versions") or []
                tags = {t["Key"]: t["Value"] for t in self.s3.get_bucket_tagging(Bucket=bucket).get("TagSet") or []}
            except self.s3.exceptions.NoSuchBucket:
                raise ApiError(400, "InvalidParameterValueException", f"Resource {resource} not found") from None
            arn = f"arn:aws:backup:{self.region}:{self.account}:recovery-point:{uuid.uuid4()}"
            kind = "S3"
            private = {
                "_bucket": bucket,
                "_versions": [(v["Key"], v["VersionId"]) for v in versions if v["IsLatest"]],
                "_metadata": {"DestinationBucketName": bucket, "NewBucket": "false", "EncryptionType": "SSE_S3"},
            }
        else:
            raise ApiError(400, "InvalidParameterValueException", f"Resource {resource} is not of a type this double backs up")
        creator = {"BackupPlanId": "plan-" + vault, "BackupPlanArn": f"arn:aws:backup:{self.region}:{self.account}:backup-plan:plan-{vault}", "BackupPlanVersion": "v1", "BackupRuleId": "daily"} if plan else None
        job = {
            "AccountId": self.account,
            "BackupJobId": job_id,
            "BackupVaultName": vault,
            "BackupVaultArn": self._vault_arn(vault),
            "RecoveryPointArn": arn,
            "ResourceArn": resource,
            "ResourceType": kind,
            "CreationDate": created,
            "State": "CREATED",
            "IamRoleArn": role,
            "_token": token,
            "_lifecycle": lifecycle,
            "_creator": creator,
            "_tags": tags,
            "_fail": self.fail == "backup",
            **private,
        }
        if self.fail == "backup":
            self.fail = None
        self.jobs[job_id] = job
        self.points[arn] = {
            "RecoveryPointArn": arn,
            "BackupVaultName": vault,
            "BackupVaultArn": self._vault_arn(vault),
            "ResourceArn": resource,
            "ResourceType": kind,
            "IamRoleArn": role,
            "Status": "CREATING",
            "CreationDate": created,
            "InitiationDate": created,
            **({"CreatedBy": creator} if creator else {}),
            **({"Lifecycle": lifecycle} if lifecycle else {}),
            "_tags": tags,
            **private,
        }
        return job

    def _complete(self, job: dict[str, Any]) -> None:
        rp = self.points[job["RecoveryPointArn"]]
        rp.update(Status="COMPLETED", CompletionDate=_now(), BackupSizeInBytes=1024)
        job.update(CompletionDate=_now(), PercentDone="100.0", BackupSizeInBytes=1024)

    def _describe_backup_job(self, p: dict[str, Any]) -> dict[str, Any]:
        self._authorize("backup:DescribeBackupJob", "*")
        job = self.jobs.get(p["BackupJobId"])
        if job is None:
            raise ApiError(404, "ResourceNotFoundException", f"Backup job {p['BackupJobId']} not found")
        if not self.stall:
            if job["State"] == "CREATED":
                job["State"] = "RUNNING"
            elif job["State"] == "RUNNING":
                if job["_fail"]:
                    job.update(State="FAILED", StatusMessage="An internal error occurred (the double's `fail`)")
                    self.points.pop(job["RecoveryPointArn"], None)
                else:
                    job["State"] = "COMPLETED"
                    self._complete(job)
        out = {k: v for k, v in job.items() if not k.startswith("_")}
        if job["State"] != "COMPLETED":
            out.pop("RecoveryPointArn")  # (an optional member: named here only once the job made it)
        if job["_creator"]:
            out["CreatedBy"] = job["_creator"]
        return out

    def _point(self, arn: str) -> dict[str, Any]:
        rp = self.points.get(arn)
        if rp is None:
            raise ApiError(404, "ResourceNotFoundException", f"Recovery point {arn} not found")
        return rp

    def _describe_recovery_point(self, p: dict[str, Any]) -> dict[str, Any]:
        rp = self.points.get(p["RecoveryPointArn"])
        self._authorize("backup:DescribeRecoveryPoint", p["RecoveryPointArn"], self._point_context(rp) if rp else {})
        rp = self._point(p["RecoveryPointArn"])
        if rp["BackupVaultName"] != p["BackupVaultName"]:
            raise ApiError(404, "ResourceNotFoundException", f"Recovery point {p['RecoveryPointArn']} is not in vault {p['BackupVaultName']}")
        return {k: v for k, v in rp.items() if not k.startswith("_")}

    def _get_recovery_point_restore_metadata(self, p: dict[str, Any]) -> dict[str, Any]:
        rp = self.points.get(p["RecoveryPointArn"])
        self._authorize("backup:GetRecoveryPointRestoreMetadata", p["RecoveryPointArn"], self._point_context(rp) if rp else {})
        rp = self._point(p["RecoveryPointArn"])
        if rp["BackupVaultName"] != p["BackupVaultName"]:
            raise ApiError(404, "ResourceNotFoundException", f"Recovery point {p['RecoveryPointArn']} is not in vault {p['BackupVaultName']}")
        return {"BackupVaultArn": rp["BackupVaultArn"], "RecoveryPointArn": rp["RecoveryPointArn"], "RestoreMetadata": dict(rp["_metadata"]), "ResourceType": rp["ResourceType"]}

    def _start_restore_job(self, p: dict[str, Any]) -> dict[str, Any]:
        rp = self.points.get(p["RecoveryPointArn"])
        self._authorize("backup:StartRestoreJob", p["RecoveryPointArn"], self._point_context(rp) if rp else {})
        if p.get("IamRoleArn"):
            self._pass_role(p["IamRoleArn"])
        rp = self._point(p["RecoveryPointArn"])
        if rp["Status"] not in ("COMPLETED", "AVAILABLE"):
            raise ApiError(400, "InvalidRequestException", f"Recovery point {rp['RecoveryPointArn']} is {rp['Status']}")
        if p.get("ResourceType") and p["ResourceType"] != rp["ResourceType"]:
            raise ApiError(400, "InvalidParameterValueException", f"ResourceType {p['ResourceType']} is not the recovery point's {rp['ResourceType']}")
        md = p["Metadata"]
        job_id = str(uuid.uuid4()).upper()
        job: dict[str, Any] = {
            "AccountId": self.account,
            "RestoreJobId": job_id,
            "RecoveryPointArn": rp["RecoveryPointArn"],
            "SourceResourceArn": rp["ResourceArn"],
            "BackupVaultArn": rp["BackupVaultArn"],
            "CreationDate": _now(),
            "Status": "PENDING",
            "IamRoleArn": p.get("IamRoleArn", ""),
            "ResourceType": rp["ResourceType"],
            "RecoveryPointCreationDate": rp["CreationDate"],
            "_metadata": dict(md),
            "_fail": self.fail == "restore",
        }
        if self.fail == "restore":
            self.fail = None
        if rp["ResourceType"] == "RDS":
            new = md.get("DBInstanceIdentifier")
            if not new:
                raise ApiError(400, "MissingParameterValueException", "Metadata DBInstanceIdentifier is required")
            try:
                self.rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=new, DBSnapshotIdentifier=rp["_snapshot"], DBInstanceClass=md.get("DBInstanceClass", "db.t4g.micro"))
                if p.get("CopySourceTagsToRestoredResource"):
                    arn = f"arn:aws:rds:{self.region}:{self.account}:db:{new}"
                    self.rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": k, "Value": v} for k, v in rp["_tags"].items()])
                job["CreatedResourceArn"] = f"arn:aws:rds:{self.region}:{self.account}:db:{new}"
            except self.rds.exceptions.DBInstanceAlreadyExistsFault:
                job.update(_fail=True, _message=f"DB instance {new} already exists")
        else:
            dest = md.get("DestinationBucketName")
            if not dest:
                raise ApiError(400, "MissingParameterValueException", "Metadata DestinationBucketName is required")
            if md.get("NewBucket") == "true":
                self.s3.create_bucket(Bucket=dest, CreateBucketConfiguration={"LocationConstraint": self.region})
            for key, version in rp["_versions"]:
                self.s3.copy_object(Bucket=dest, Key=key, CopySource={"Bucket": rp["_bucket"], "Key": key, "VersionId": version})
            job["CreatedResourceArn"] = f"arn:aws:s3:::{dest}"
        rp["LastRestoreTime"] = _now()
        self.restores[job_id] = job
        return {"RestoreJobId": job_id}

    def _describe_restore_job(self, p: dict[str, Any]) -> dict[str, Any]:
        self._authorize("backup:DescribeRestoreJob", "*")
        job = self.restores.get(p["RestoreJobId"])
        if job is None:
            raise ApiError(404, "ResourceNotFoundException", f"Restore job {p['RestoreJobId']} not found")
        if not self.stall:
            if job["Status"] == "PENDING":
                job["Status"] = "RUNNING"
            elif job["Status"] == "RUNNING":
                if job["_fail"]:
                    job.update(Status="FAILED", StatusMessage=job.get("_message") or "An internal error occurred (the double's `fail`)")
                else:
                    job.update(Status="COMPLETED", CompletionDate=_now(), PercentDone="100.0")
        return {k: v for k, v in job.items() if not k.startswith("_")}
