"""Loopback doubles for the AWS export path of `mxinfra backup download` (and `restore --archive`'s): Step
Functions running the export state machine, Fargate running its task, and a gate in front of moto's S3 server that authorises every S3
request by the identity that makes it. moto has Step Functions without the ECS integration and ECS
without running anything; so these run exactly what the plan renders, as the cloud would:

- `StatesDouble` serves StartExecution, DescribeExecution and StopExecution (JSON 1.0), each request and
  answer validated against botocore's own model of the service (violations recorded: the test fails),
  signed for `states` in the double's region, and authorised against the caller's identity policy (the
  rendered `backups` role's) with the repo's IAM evaluator. An execution interprets the rendered
  definition: its one `ecs:runTask.sync` Task state's Parameters, with `.$` paths resolved against the
  context object (only `$$.Execution.Name` is modelled), authorised against the runner role's policy
  (ecs:RunTask of the task definition in the cluster, iam:PassRole of the task's two roles).
- The task's containers run as local processes, in `dependsOn` order: each container definition's
  command, environment, overrides and secrets (read from Secrets Manager after the execution role's
  policy allows it; ECR pulls and log streams authorised against it too), with the image given by the
  test as a PATH (the postgres image: Debian's PostgreSQL and tools; the rclone image: busybox and
  rclone, as Alpine has them) and the image's ENTRYPOINT, which a definition's `entryPoint` replaces and
  its `command` follows, as Docker runs them. The shared volume is a directory; `/work` in the definitions is mapped
  to it (the one substitution in the container definitions besides the S3 endpoint below).
  A container whose `SUCCESS` dependency failed never starts; the task stops when the essential
  container exits (or cannot start): the execution SUCCEEDS with the task as output when it exited 0,
  else FAILS with States.TaskFailed and the task as cause (what the CLI reads either way).
- `S3Gate` forwards S3 requests to moto's server, after authorising each one against the policy of the
  identity whose access key signed it (the task role's for rclone in the task, the backups role's for the
  CLI) with S3's action for the request; refused: 403 AccessDenied, recorded in `denied`.

The restore machine behind `restore --archive` runs here too: its Pass, Wait, Choice and Catch states and
its `aws-sdk:ecs` calls (DescribeServices, UpdateService) against `services`, a service's tasks stopping
(or starting) one DescribeServices after its desired count changed; each task on an empty volume of its own.

Not modelled: Fargate's timing, image pulls themselves, networking (security groups), how ECS really
reports a dependency that cannot be met, CloudWatch Logs contents; Retry and TimeoutSeconds (no call here
fails for a while and then succeeds) and a non-zero PendingCount.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import threading
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import botocore.session

from backup_double import check_shape
from iam_eval import allows, denies

WORK = "/work"


def _serve(handler_of: Any, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_of)
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- S3, by identity ----------------------------------------------------------------------------------


def s3_action(method: str, path: str, query: Mapping[str, list[str]]) -> tuple[str, str]:
    """S3's IAM action and resource ARN for a path-style request."""
    bucket, _, key = path.lstrip("/").partition("/")
    key = urllib.parse.unquote(key)
    for sub in ("policy", "versioning", "lifecycle", "replication", "publicAccessBlock", "ownershipControls", "encryption", "acl"):
        if sub in query:
            verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method)
            noun = {"policy": "BucketPolicy", "versioning": "BucketVersioning", "lifecycle": "LifecycleConfiguration", "replication": "ReplicationConfiguration",
                    "publicAccessBlock": "BucketPublicAccessBlock", "ownershipControls": "BucketOwnershipControls", "encryption": "EncryptionConfiguration", "acl": "BucketAcl" if not key else "ObjectAcl"}[sub]
            return f"s3:{verb}{noun}", f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else "")
    if not key:
        if method in ("GET", "HEAD") and "location" in query:
            return "s3:GetBucketLocation", f"arn:aws:s3:::{bucket}"
        if method in ("GET", "HEAD"):
            return "s3:ListBucket", f"arn:aws:s3:::{bucket}"
        return f"s3:{method}Bucket?", f"arn:aws:s3:::{bucket}"
    obj = f"arn:aws:s3:::{bucket}/{key}"
    if method in ("GET", "HEAD"):
        if "uploadId" in query:
            return "s3:ListMultipartUploadParts", obj
        return ("s3:GetObjectVersion" if "versionId" in query else "s3:GetObject"), obj
    if method == "DELETE":
        return ("s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject"), obj
    # PUT object, PUT part, POST ?uploads (create), POST ?uploadId (complete): all s3:PutObject
    return "s3:PutObject", obj


class S3Gate:
    """moto's S3 server behind IAM and TLS (as S3 is reached: the SDKs sign payloads differently over plain
    HTTP): `identities` maps an access key id to its principal and identity policy, `bucket_policies` a
    bucket to its policy's Denies; `tls` is the certificate and key. As S3 does, a missing object is 403
    to a caller without s3:ListBucket on its bucket."""

    def authorized(self, key_id: str, action: str, resource: str) -> bool:
        """Whether the identity of `key_id` may: its policy allows it and no bucket policy denies it."""
        principal, policy = self.identities.get(key_id, ("", None))
        if policy is None:
            return False
        context = {"aws:SecureTransport": "true", "s3:ResourceAccount": self.account, "aws:PrincipalArn": principal}
        bucket = resource.split(":::", 1)[1].split("/", 1)[0]
        denied = bucket in self.bucket_policies and denies(self.bucket_policies[bucket], action, resource, context)
        return allows(policy, action, resource, context) and not denied

    def __init__(self, upstream: str, account: str, identities: Mapping[str, tuple[str, Mapping[str, Any]]], tls: tuple[Path, Path], bucket_policies: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.account = account
        self.identities = dict(identities)  # access key id -> (principal ARN, identity policy)
        self.bucket_policies = dict(bucket_policies or {})
        self.tls = tls
        self.identities = dict(identities)
        self.calls: list[tuple[str, str, str]] = []  # key id, action, resource
        self.denied: list[tuple[str, str, str]] = []

    @contextmanager
    def serve(self) -> Iterator[str]:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                """The request's body: by its Content-Length, or HTTP/1.1 chunks (an SDK's upload of a stream)."""
                if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                    length = int(self.headers.get("Content-Length") or 0)
                    return self.rfile.read(length) if length else b""
                chunks = []
                while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline().strip():  # trailer fields, then the blank line
                    pass
                return b"".join(chunks)

            def _any(self) -> None:
                body = self._body()
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
                auth = self.headers.get("Authorization") or ""
                key_id = auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else "(unsigned)"
                action, resource = s3_action(self.command, url.path, query)
                if not gate.authorized(key_id, action, resource):
                    gate.denied.append((key_id, action, resource))
                    self._refuse(f"{key_id} may not {action} on {resource}")
                    return
                gate.calls.append((key_id, action, resource))
                conn = http.client.HTTPConnection(gate.upstream.hostname, gate.upstream.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length")}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                bucket_arn = resource.split("/", 1)[0]
                if answer.status == 404 and action == "s3:GetObject" and not gate.authorized(key_id, "s3:ListBucket", bucket_arn):
                    self._refuse(f"{key_id} may not s3:ListBucket on {bucket_arn}, so a missing key is denied")
                    conn.close()
                    return
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else answer.getheader("Content-Length") or 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _refuse(self, message: str) -> None:
                data = f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>".encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        yield from _serve(Handler, self.tls)


# --- Step Functions and Fargate -----------------------------------------------------------------------


def _epochs(value: Any) -> Any:
    """An answer with its timestamps as epoch seconds, as the JSON protocols (and the SDK integrations) give them."""
    if isinstance(value, dict):
        return {k: _epochs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_epochs(v) for v in value]
    return value.timestamp() if isinstance(value, datetime) else value


def _camel(value: Any) -> Any:
    """Step Functions' PascalCase parameters as the service API's camelCase members (keys only)."""
    if isinstance(value, list):
        return [_camel(v) for v in value]
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in value.items()}
    return value


def _steps(path: str) -> list[Any]:
    """`$.a.b[0].c` as its steps."""
    import re

    if not path.startswith("$"):
        raise ApiError("States.Runtime", f"{path!r}: not a path")
    return [int(i) if i else key for key, i in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path[1:])]


def _get(data: Any, path: str) -> Any:
    for step in _steps(path):
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            raise ApiError("States.Runtime", f"{path}: not in the state's data {data!r}") from None
    return data


def _put(data: Any, path: str | None, value: Any) -> Any:
    """ResultPath: null keeps the input, `$` replaces it, `$.a.b` sets (making `a` if missing)."""
    if path is None:
        return data
    steps = _steps(path)
    if not steps:
        return value
    data = json.loads(json.dumps(data))
    node = data
    for step in steps[:-1]:
        node = node.setdefault(step, {})
    node[steps[-1]] = value
    return data


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class StatesDouble:
    """Step Functions for one account and region, whose executions run an ECS task locally."""

    OPERATIONS = ("StartExecution", "DescribeExecution", "StopExecution", "GetExecutionHistory", "DescribeStateMachine")

    def __init__(self, region: str, account: str, *, work: Path, images: Mapping[str, tuple[str, list[str]]], s3_endpoint: str, task_key_id: str, ca: Path) -> None:
        self.region, self.account = region, account
        self.model = botocore.session.get_session().get_service_model("stepfunctions")
        self.ecs_model = botocore.session.get_session().get_service_model("ecs")
        self.ecs_run_task = self.ecs_model.operation_model("RunTask").input_shape
        self.services: dict[str, dict[str, int]] = {}  # the environment's ECS services: name -> desired, running (stuck: its tasks never stop)
        self.service_log: list[tuple[str, int]] = []  # each UpdateService: service, desired count
        self.tag_log: list[tuple[str, str, dict[str, str]]] = []  # each TagResource/UntagResource of a service: service, call, its tags after
        self.visited: list[str] = []  # the states executions entered, in order
        self.waited = 0  # seconds Wait states asked for (not slept)
        self.volumes: list[Path] = []  # each task's scratch volume, in the order they ran
        self.machines: dict[str, dict[str, Any]] = {}  # arn -> {definition, role policy}
        self.task_definitions: dict[str, dict[str, Any]] = {}  # arn (with revision) -> the rendered task definition
        self.role_policies: dict[str, Mapping[str, Any]] = {}  # role arn -> its identity policy
        self.caller_policy: Mapping[str, Any] | None = None
        self.executions: dict[str, dict[str, Any]] = {}
        self.images = dict(images)  # image reference -> (PATH of its tools, its ENTRYPOINT)
        self.after_task: Any = None  # called once the task stopped, before the execution ends (a test's hook)
        self.before_task: Any = None  # called as the task starts, before its first container (a test's hook)
        self.task_keys: dict[str, str] = {}  # task role ARN -> the access key its containers sign with (else task_key_id)
        self.throttle = 0  # the next this many DescribeExecution calls are answered ThrottlingException
        self.throttle_describe_machine = 0  # and as many DescribeStateMachine calls
        self.lost_answers = 0  # the next this many StartExecution calls start it, then answer 500
        self.hold: threading.Event | None = None  # executions wait for it before their first state (a test's hook)
        self.starts = 0  # StartExecution calls served
        self.killed: set[str] = set()  # containers that run, then are stopped before their exit code is known (a test's hook)
        self.kill_code: int | None = None  # the exit code ECS reports for a killed container (137: OOM, SIGKILL), or none
        self.path_first: dict[str, Path] = {}  # container -> a directory of commands its script finds first (a fault; a test's hook)
        self.work, self.s3_endpoint, self.task_key_id, self.ca = work, s3_endpoint, task_key_id, ca
        self.calls: list[tuple[str, str, str]] = []  # who (caller, runner, execution), action, resource
        self.denied: list[tuple[str, str, str]] = []
        self.violations: list[str] = []
        self.logs: dict[str, str] = {}  # container -> what it wrote
        self.ran: list[dict[str, Any]] = []  # the tasks, as RunTask's parameters
        self.backup: Any = None  # AWS Backup (backup_double.BackupDouble) for the aws-sdk:backup calls, or none
        self.lock = threading.Lock()

    # --- set-up: what `pulumi up` leaves ---------------------------------------------------------------

    def add_machine(self, arn: str, definition: Mapping[str, Any], role_arn: str, role_policy: Mapping[str, Any]) -> None:
        self.machines[arn] = {"definition": dict(definition), "role": role_arn}
        self.role_policies[role_arn] = role_policy

    def add_task_definition(self, arn: str, definition: Mapping[str, Any], roles: Mapping[str, Mapping[str, Any]]) -> None:
        self.task_definitions[arn] = dict(definition)
        self.role_policies.update(roles)

    # --- the server -------------------------------------------------------------------------------------

    @contextmanager
    def serve(self) -> Iterator[str]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body = double.handle(dict(self.headers), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        yield from _serve(Handler)

    def handle(self, headers: Mapping[str, str], raw: bytes) -> tuple[int, Any]:
        h = {k.lower(): v for k, v in headers.items()}
        target = h.get("x-amz-target", "")
        name = target.split(".", 1)[1] if target.startswith("AWSStepFunctions.") else ""
        if name not in self.OPERATIONS:
            self.violations.append(f"{target!r}: not an operation this double serves")
            return 400, {"__type": "UnknownOperationException", "message": target}
        if f"/{self.region}/states/aws4_request" not in h.get("authorization", ""):
            self.violations.append(f"{name}: not signed for states in {self.region}")
        op = self.model.operation_model(name)
        params = json.loads(raw or b"{}")
        problems = check_shape(params, op.input_shape, f"{name} request")
        if problems:
            self.violations += problems
            return 400, {"__type": "ValidationException", "message": "; ".join(problems)}
        try:
            with self.lock:
                answer = getattr(self, "_" + name)(params)
        except ApiError as e:
            if e.code not in [s.name for s in op.error_shapes] + ["AccessDeniedException", "ThrottlingException", "InternalFailure"]:
                self.violations.append(f"{name}: error {e.code} is not one the operation has")
            return e.status, {"__type": e.code, "message": e.message}
        problems = check_shape(answer, op.output_shape, f"{name} answer")
        if problems:
            self.violations += problems
            return 500, {"__type": "InternalError", "message": "; ".join(problems)}
        return 200, _epochs(answer)

    def _DescribeStateMachine(self, p: Mapping[str, Any]) -> dict[str, Any]:
        arn = p["stateMachineArn"]
        if self.throttle_describe_machine > 0:
            self.throttle_describe_machine -= 1
            raise ApiError("ThrottlingException", "Rate exceeded")
        self._caller("states:DescribeStateMachine", arn)
        m = self.machines.get(arn)
        if m is None:
            raise ApiError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        return {"stateMachineArn": arn, "name": arn.rsplit(":", 1)[1], "status": "ACTIVE", "definition": json.dumps(m["definition"]), "roleArn": m["role"], "type": "STANDARD", "creationDate": datetime.now(timezone.utc)}

    def _GetExecutionHistory(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """The execution's state-exited events, in order (the only kind recorded), each with its state's
        output as Step Functions gives it with includeExecutionData (its default); one page."""
        arn = p["executionArn"]
        self._caller("states:GetExecutionHistory", arn)
        if arn not in self.executions:
            raise ApiError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        events = list(self.executions[arn].get("_events") or [])
        return {"events": events[::-1] if p.get("reverseOrder") else events}

    def _caller(self, action: str, resource: str) -> None:
        """The caller's request authorised against its policy, or AccessDeniedException."""
        if not self._authorize("caller", self.caller_policy, action, resource):
            raise ApiError("AccessDeniedException", f"not authorized to perform: {action} on resource: {resource}")

    def _authorize(self, who: str, policy: Mapping[str, Any] | None, action: str, resource: str, context: Mapping[str, str] | None = None) -> bool:
        if policy is None or not allows(policy, action, resource, dict(context or {})):
            self.denied.append((who, action, resource))
            return False
        self.calls.append((who, action, resource))
        return True

    def _StartExecution(self, p: Mapping[str, Any]) -> dict[str, Any]:
        self.starts += 1
        machine = p["stateMachineArn"]
        self._caller("states:StartExecution", machine)
        if machine not in self.machines:
            raise ApiError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{machine}'")
        name = p.get("name") or str(uuid.uuid4())
        arn = machine.replace(":stateMachine:", ":execution:") + f":{name}"
        e = self.executions.get(arn)
        if e is None:
            e = {"executionArn": arn, "stateMachineArn": machine, "name": name, "status": "RUNNING", "startDate": datetime.now(timezone.utc), "input": p.get("input", "{}")}
            self.executions[arn] = e
            threading.Thread(target=self._run, args=(arn,), daemon=True).start()
        elif e["status"] != "RUNNING" or e["input"] != p.get("input", "{}"):
            raise ApiError("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'")
        # (else, as Step Functions: the same name and input while it runs is the same execution, a retry)
        if self.lost_answers > 0:
            # it started (or runs), its answer lost on the way back (a test's hook)
            self.lost_answers -= 1
            raise ApiError("InternalFailure", "the answer was lost", 500)
        return {"executionArn": arn, "startDate": e["startDate"]}

    def _DescribeExecution(self, p: Mapping[str, Any]) -> dict[str, Any]:
        arn = p["executionArn"]
        if self.throttle > 0:
            self.throttle -= 1
            raise ApiError("ThrottlingException", "Rate exceeded")
        self._caller("states:DescribeExecution", arn)
        if arn not in self.executions:
            raise ApiError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return {k: v for k, v in self.executions[arn].items() if not k.startswith("_")}

    def _StopExecution(self, p: Mapping[str, Any]) -> dict[str, Any]:
        arn = p["executionArn"]
        self._caller("states:StopExecution", arn)
        e = self.executions.get(arn)
        if e is None:
            raise ApiError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        stopped = datetime.now(timezone.utc)
        if e["status"] == "RUNNING":
            e.update(status="ABORTED", stopDate=stopped, error=p.get("error", ""), cause=p.get("cause", ""))
        return {"stopDate": stopped}

    # --- an execution ----------------------------------------------------------------------------------

    def _run(self, arn: str) -> None:
        """Interpret the definition as Step Functions does (the subset the rendered machines use): Task states
        (ecs:runTask.sync; aws-sdk:sfn:listExecutions, ecs:describeServices and ecs:updateService, each
        authorised against the runner's policy) with ResultSelector, ResultPath and Catch; Pass (Result,
        Parameters), Wait (its Seconds counted, not slept), Choice (NumericGreaterThan, Or), Succeed, and
        Fail (Error/Cause, ErrorPath/CausePath). Paths: `$.a.b[0].c` into the state's data, `$$.` into the
        context object; intrinsics States.ArrayLength, States.MathAdd, States.Format, States.JsonMerge (shallow) and States.JsonToString. Anything else is a definition this
        double cannot run, recorded as a violation."""
        if self.hold is not None:
            self.hold.wait(120)
        e = self.executions[arn]
        machine = self.machines[e["stateMachineArn"]]
        definition = machine["definition"]
        data: Any = json.loads(e.get("input") or "{}")
        context = {"Execution": {"Name": e["name"], "Id": arn}}
        name = definition["StartAt"]
        outcome, result = "ok", {}
        try:
            while True:
                self.visited.append(name)
                state = definition["States"][name]
                kind = state.get("Type")
                if kind == "Task":
                    try:
                        answer = self._task(machine["role"], state, self._resolve(state.get("Parameters") or {}, data, context))
                    except ApiError as err:
                        if err.code == "States.Runtime":
                            raise
                        catch = next((c for c in state.get("Catch") or [] if "States.ALL" in c["ErrorEquals"] or err.code in c["ErrorEquals"]), None)
                        if catch is None:
                            raise
                        cause = err.message if isinstance(err.message, str) else json.dumps(err.message)
                        data = _put(data, catch.get("ResultPath", "$"), {"Error": err.code, "Cause": cause})
                        name = catch["Next"]
                        continue
                    if "ResultSelector" in state:
                        answer = self._resolve(state["ResultSelector"], answer, context)
                    data = _put(data, state.get("ResultPath", "$"), answer)
                elif kind == "Pass":
                    value = self._resolve(state["Parameters"], data, context) if "Parameters" in state else state.get("Result", data)
                    data = _put(data, state.get("ResultPath", "$"), value)
                elif kind == "Wait":
                    self.waited += int(state["Seconds"])
                elif kind == "Choice":
                    name = next((c["Next"] for c in state["Choices"] if self._holds(c, data)), state.get("Default"))
                    if name is None:
                        raise ApiError("States.NoChoiceMatched", "no choice matched")
                    continue
                elif kind == "Succeed":
                    outcome, result = "ok", data
                    break
                elif kind == "Fail":
                    error = _get(data, state["ErrorPath"]) if "ErrorPath" in state else state.get("Error", "")
                    cause = _get(data, state["CausePath"]) if "CausePath" in state else state.get("Cause", "")
                    outcome, result = error, cause
                    break
                else:
                    raise ApiError("States.Runtime", f"{name}: a {kind} state is not modelled")
                with self.lock:
                    events = e.setdefault("_events", [])
                    events.append({"timestamp": datetime.now(timezone.utc), "type": f"{kind}StateExited", "id": len(events) + 1, "stateExitedEventDetails": {"name": name, "output": json.dumps(data)}})
                if state.get("End"):
                    outcome, result = "ok", data
                    break
                name = state["Next"]
        except ApiError as err:
            if err.code == "States.Runtime":
                self.violations.append(err.message)
            outcome, result = err.code, (err.message if isinstance(err.message, str) else json.dumps(err.message))
        with self.lock:
            if e["status"] != "RUNNING":
                return
            done = datetime.now(timezone.utc)
            if outcome == "ok":
                e.update(status="SUCCEEDED", stopDate=done, output=json.dumps(result))
            else:
                e.update(status="FAILED", stopDate=done, error=outcome, cause=result if isinstance(result, str) else json.dumps(result))

    def _holds(self, rule: Mapping[str, Any], data: Any) -> bool:
        keys = set(rule) - {"Next"}
        if keys == {"Or"}:
            return any(self._holds(r, data) for r in rule["Or"])
        if keys == {"And"}:
            return all(self._holds(r, data) for r in rule["And"])
        if keys == {"Variable", "IsPresent"}:
            try:
                _get(data, rule["Variable"])
            except ApiError:
                return not rule["IsPresent"]
            return bool(rule["IsPresent"])
        if keys == {"Variable", "IsString"}:
            return isinstance(_get(data, rule["Variable"]), str) == rule["IsString"]
        if keys == {"Not"}:
            return not self._holds(rule["Not"], data)
        if keys == {"Variable", "IsNull"}:
            return (_get(data, rule["Variable"]) is None) == rule["IsNull"]
        if keys == {"Variable", "StringEquals"}:
            value = _get(data, rule["Variable"])
            return isinstance(value, str) and value == rule["StringEquals"]
        if keys == {"Variable", "NumericGreaterThan"}:
            # as Step Functions: a path that names nothing is a States.Runtime error, never caught
            value = _get(data, rule["Variable"])
            return isinstance(value, (int, float)) and not isinstance(value, bool) and value > rule["NumericGreaterThan"]
        raise ApiError("States.Runtime", f"choice {rule}: only NumericGreaterThan, StringEquals, IsPresent, IsNull, IsString, And, Or and Not are modelled")

    def _task(self, runner: str, state: Mapping[str, Any], p: Mapping[str, Any]) -> Any:
        """One Task state's call, as the runner role; its answer (a failure: ApiError with the task as cause)."""
        resource = state.get("Resource")
        policy = self.role_policies.get(runner)
        if resource == "arn:aws:states:::ecs:runTask.sync":
            outcome, task = self._run_task(runner, p)
            if outcome != "ok":
                raise ApiError(outcome, json.dumps(task))
            return task
        if resource == "arn:aws:states:::aws-sdk:sfn:listExecutions":
            if not self._authorize("runner", policy, "states:ListExecutions", p["StateMachineArn"]):
                raise ApiError("Sfn.AccessDeniedException", f"{runner} may not states:ListExecutions")
            if p["StateMachineArn"] not in self.machines:  # as Step Functions answers: a machine never deployed is an error
                raise ApiError("Sfn.StateMachineDoesNotExistException", f"State Machine Does Not Exist: '{p['StateMachineArn']}'")
            with self.lock:
                running = [{"ExecutionArn": x["executionArn"]} for x in self.executions.values() if x["stateMachineArn"] == p["StateMachineArn"] and x["status"] == p.get("StatusFilter", x["status"])]
            return {"Executions": running[: p.get("MaxResults", 100)]}
        if resource in ("arn:aws:states:::aws-sdk:ecs:tagResource", "arn:aws:states:::aws-sdk:ecs:untagResource"):
            op = self._ecs_call(resource, p)
            arn = p["ResourceArn"]
            service = arn.rsplit("/", 1)[1]
            keys = [t["Key"] for t in p["Tags"]] if op == "tagResource" else list(p["TagKeys"])
            context = {"aws:TagKeys": keys, **({f"aws:RequestTag/{t['Key']}": t["Value"] for t in p["Tags"]} if op == "tagResource" else {})}
            action = "ecs:TagResource" if op == "tagResource" else "ecs:UntagResource"
            if not self._authorize("runner", policy, action, arn, context):
                raise ApiError("Ecs.AccessDeniedException", f"{runner} may not {action} on {arn}")
            with self.lock:
                svc = self.services.get(service)
                if svc is None:
                    raise ApiError("Ecs.ServiceNotFoundException", f"service {service} not found")
                tags = svc.setdefault("tags", {})
                if op == "tagResource":
                    tags.update({t["Key"]: t["Value"] for t in p["Tags"]})
                else:
                    for k in keys:
                        tags.pop(k, None)
                self.tag_log.append((service, op, dict(tags)))
            return {}
        if resource in ("arn:aws:states:::aws-sdk:ecs:describeServices", "arn:aws:states:::aws-sdk:ecs:updateService"):
            op = self._ecs_call(resource, p)
            cluster = p["Cluster"].rsplit("/", 1)[1]
            names = p["Services"] if op == "describeServices" else [p["Service"]]
            out, failures = [], []
            for service in names:
                service_arn = f"arn:aws:ecs:{self.region}:{self.account}:service/{cluster}/{service}"
                action = "ecs:DescribeServices" if op == "describeServices" else "ecs:UpdateService"
                if not self._authorize("runner", policy, action, service_arn, {"ecs:cluster": p["Cluster"]}):
                    raise ApiError("Ecs.AccessDeniedException", f"{runner} may not {action} on {service_arn}")
                with self.lock:
                    svc = self.services.get(service)
                    if svc is None and op == "describeServices":
                        # as ECS answers for a service that does not exist: not an error, a failure in the answer
                        failures.append({"Arn": service_arn, "Reason": "MISSING"})
                        continue
                    if svc is None:
                        raise ApiError("Ecs.ServiceNotFoundException", f"service {service} not found")
                    if op == "updateService" and p["DesiredCount"] > 0 and svc.get("unstartable"):
                        raise ApiError("Ecs.AccessDeniedException", f"{service} may not be started (a test's hook)")
                    if op == "updateService":
                        svc["desired"] = p["DesiredCount"]
                        self.service_log.append((service, p["DesiredCount"]))
                        if p["DesiredCount"] == 0 and svc.get("vanish"):
                            del self.services[service]  # deleted meanwhile (a test's hook)
                    else:
                        # tasks stop (or start) one poll after the desired count changed
                        svc["running"], shown = (svc["running"] if svc.get("stuck") else svc["desired"]), svc["running"]
                out.append({"ServiceName": service, "ServiceArn": service_arn, "DesiredCount": svc["desired"], "RunningCount": shown if op == "describeServices" else svc["running"], "PendingCount": 0})
            return {"Services": out, "Failures": failures} if op == "describeServices" else {"Service": out[0]}
        if resource in {f"arn:aws:states:::aws-sdk:backup:{op}" for op in ("startBackupJob", "describeBackupJob", "describeRecoveryPoint", "getRecoveryPointRestoreMetadata", "startRestoreJob", "describeRestoreJob")}:
            if self.backup is None:
                raise ApiError("States.Runtime", f"Task resource {resource}: no AWS Backup double was given")
            from backup_double import ApiError as BackupError

            op = resource.rsplit(":", 1)[1]
            try:
                # (the integration's errors are named Backup.<code>, as Step Functions names them)
                return _epochs(self.backup.call(op[0].upper() + op[1:], dict(p), policy or {}))
            except BackupError as err:
                raise ApiError(f"Backup.{err.code}", err.message) from None
        raise ApiError("States.Runtime", f"Task resource {resource}: not modelled")

    def _ecs_call(self, resource: str, p: Mapping[str, Any]) -> str:
        """The `aws-sdk:ecs` operation a Task state calls (its name as the integration spells it), once its
        parameters hold to ECS's model (a States.Runtime error otherwise)."""
        op = resource.rsplit(":", 1)[1]
        problems = check_shape(_camel(p), self.ecs_model.operation_model(op[0].upper() + op[1:]).input_shape, f"{op} parameters")
        if problems:
            self.violations += problems
            raise ApiError("States.Runtime", "; ".join(problems))
        return op

    def _resolve(self, value: Any, data: Any, context: Mapping[str, Any]) -> Any:
        """Parameters (or a ResultSelector) with `Key.$` values resolved: a path into `data` (`$.`), into the
        context object (`$$.`), or an intrinsic function."""
        if isinstance(value, list):
            return [self._resolve(v, data, context) for v in value]
        if not isinstance(value, dict):
            return value
        out = {}
        for k, v in value.items():
            if k.endswith(".$"):
                out[k[:-2]] = self._value(v, data, context)
            else:
                out[k] = self._resolve(v, data, context)
        return out

    def _value(self, v: str, data: Any, context: Mapping[str, Any]) -> Any:
        import re

        if v.startswith("$$."):
            return _get(context, "$" + v[2:])
        if v == "States.UUID()":
            return str(uuid.uuid4())
        if m := re.fullmatch(r"States\.ArrayLength\((\$[^,)]*)\)", v):
            return len(_get(data, m.group(1)))
        if m := re.fullmatch(r"States\.JsonToString\((\$[^,)]*)\)", v):
            return json.dumps(_get(data, m.group(1)), separators=(",", ":"))
        if m := re.fullmatch(r"States\.JsonMerge\((\$[^,)]*), *(\$[^,)]*), *false\)", v):
            # a shallow merge of two objects, the second's keys winning
            left, right = _get(data, m.group(1)), _get(data, m.group(2))
            if not isinstance(left, dict) or not isinstance(right, dict):
                raise ApiError("States.Runtime", f"{v!r}: both arguments must be JSON objects")
            return {**left, **right}
        if m := re.fullmatch(r"States\.MathAdd\((\$[^,)]*), *(-?\d+)\)", v):
            return int(_get(data, m.group(1))) + int(m.group(2))
        if m := re.fullmatch(r"States\.Format\('((?:[^'\\]|\\.)*)'((?:, *\$[^,)]*)*)\)", v):
            # (an argument may be a path into the context object, as in Parameters)
            args = [_get(context, "$" + x.strip()[2:]) if x.strip().startswith("$$.") else _get(data, x.strip()) for x in m.group(2).split(",")[1:]]
            parts = m.group(1).split("{}")
            if len(parts) != len(args) + 1:
                raise ApiError("States.Runtime", f"{v!r}: {len(parts) - 1} placeholders, {len(args)} arguments")
            return "".join(p + (str(a) if i < len(args) else "") for i, (p, a) in enumerate(zip(parts, [*args, ""])))
        if v.startswith("$"):
            return _get(data, v)
        raise ApiError("States.Runtime", f"{v!r}: not a path or intrinsic this double models")

    def _run_task(self, runner: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        # the optimized integration's Parameters are RunTask's input in PascalCase: held to ECS's model
        problems = check_shape(_camel(params), self.ecs_run_task, "RunTask parameters")
        if problems:
            self.violations += problems
            raise ApiError("States.Runtime", "; ".join(problems))
        policy = self.role_policies.get(runner)
        td_arn, cluster = params["TaskDefinition"], params["Cluster"]
        if not self._authorize("runner", policy, "ecs:RunTask", td_arn, {"ecs:cluster": cluster}):
            raise ApiError("States.TaskFailed", f"{runner} is not authorized to perform: ecs:RunTask on {td_arn}")
        td = self.task_definitions.get(td_arn)
        if td is None:
            raise ApiError("States.TaskFailed", f"no task definition {td_arn}")
        for role in (td["taskRoleArn"], td["executionRoleArn"]):
            if not self._authorize("runner", policy, "iam:PassRole", role, {"iam:PassedToService": "ecs-tasks.amazonaws.com"}):
                raise ApiError("States.TaskFailed", f"{runner} may not pass {role}")
        task_id = uuid.uuid4().hex
        # each task its own scratch volume, empty, as Fargate's ephemeral storage is
        volume = self.work / task_id
        volume.mkdir()
        self.volumes.append(volume)
        task_arn = f"arn:aws:ecs:{self.region}:{self.account}:task/{cluster.rsplit('/', 1)[1]}/{task_id}"
        # the request's Tags (a PropagateTags source is not modelled): ECS authorises them as TagResource
        # with ecs:CreateAction RunTask and each as aws:RequestTag
        assert "PropagateTags" not in params, "propagated tags: how ECS authorises them is not modelled"
        tags = {t["Key"]: t["Value"] for t in params.get("Tags") or []}
        if tags:
            context = {"ecs:CreateAction": "RunTask", **{f"aws:RequestTag/{k}": v for k, v in tags.items()}}
            if not self._authorize("runner", policy, "ecs:TagResource", task_arn, context):
                raise ApiError("States.TaskFailed", f"{runner} may not tag the task it starts (ecs:TagResource on RunTask)")
        self.ran.append(dict(params))
        if self.before_task is not None:
            self.before_task()
        overrides = {o["Name"]: o for o in (params.get("Overrides") or {}).get("ContainerOverrides") or []}
        containers = json.loads(td["containerDefinitions"]) if isinstance(td["containerDefinitions"], str) else td["containerDefinitions"]
        execution = self.role_policies.get(td["executionRoleArn"])
        exits: dict[str, int | None] = {}
        reasons: dict[str, str] = {}
        pending = list(containers)
        while pending:
            ready = [c for c in pending if all(d["containerName"] in exits for d in c.get("dependsOn") or [])]
            if not ready:
                raise ApiError("States.Runtime", f"containers that can never start: {[c['name'] for c in pending]}")
            c = ready[0]
            pending.remove(c)
            unmet = [d for d in c.get("dependsOn") or [] if d["condition"] == "SUCCESS" and exits.get(d["containerName"]) != 0]
            if unmet:
                exits[c["name"]], reasons[c["name"]] = None, f"dependency {unmet[0]['containerName']} did not succeed"
                continue
            exits[c["name"]] = self._container(c, overrides.get(c["name"]) or {}, execution, td, task_id, reasons, volume)
            if c["name"] in self.killed:
                # stopped at the end of its work, before it exited: ECS reports no exit code; the task stops
                exits[c["name"]], reasons[c["name"]] = self.kill_code, "Task stopped (a test's hook)"
                for rest in pending:
                    exits[rest["name"]] = None
                pending.clear()
        # the .sync integration follows the task with DescribeTasks, on the tags it carries
        if not self._authorize("runner", policy, "ecs:DescribeTasks", task_arn, {f"aws:ResourceTag/{k}": v for k, v in tags.items()}):
            raise ApiError("States.TaskFailed", f"{runner} may not follow the task it started (ecs:DescribeTasks)")
        if self.after_task is not None:
            self.after_task()
        essential = [c["name"] for c in containers if c.get("essential", True)]
        task = {
            "TaskArn": task_arn,
            "ClusterArn": cluster,
            "TaskDefinitionArn": td_arn,
            "LastStatus": "STOPPED",
            "StopCode": "EssentialContainerExited",
            "Containers": [{"Name": n, **({"ExitCode": x} if x is not None else {}), **({"Reason": reasons[n]} if n in reasons else {})} for n, x in exits.items()],
        }
        return ("ok" if all(exits.get(n) == 0 for n in essential) else "States.TaskFailed"), task

    def _container(self, c: Mapping[str, Any], override: Mapping[str, Any], execution: Mapping[str, Any] | None, td: Mapping[str, Any], task_id: str, reasons: dict[str, str], volume: Path) -> int | None:
        from mxinfra_aws.policies import ecr_repository_arn

        name = c["name"]
        repo = ecr_repository_arn(c["image"])
        if repo is not None and not self._authorize("execution", execution, "ecr:BatchGetImage", repo):
            reasons[name] = f"CannotPullContainerError: the execution role may not pull {c['image']}"
            return None
        group = c["logConfiguration"]["options"]["awslogs-group"]
        stream = f"{c['logConfiguration']['options']['awslogs-stream-prefix']}/{name}/{task_id}"  # awslogs: prefix/container/task
        if not self._authorize("execution", execution, "logs:CreateLogStream", f"arn:aws:logs:{self.region}:{self.account}:log-group:{group}:log-stream:{stream}"):
            reasons[name] = "the execution role may not write the container's log stream"
            return None
        env = {e["name"]: e["value"] for e in c.get("environment") or []}
        env.update({e["Name"]: e["Value"] for e in override.get("Environment") or []})
        for s in c.get("secrets") or []:
            value = self._secret(s["valueFrom"], execution)
            if value is None:
                reasons[name] = f"ResourceInitializationError: the execution role may not read {s['valueFrom']}"
                return None
            env[s["name"]] = value
        # the volume, and the task role's credentials against the S3 gate (Fargate: the SDK's own endpoint)
        env = {k: v.replace(WORK, str(volume)) if isinstance(v, str) and (v == WORK or v.startswith(WORK + "/")) else v for k, v in env.items()}
        for k in list(env):
            if k.startswith("RCLONE_CONFIG_") and k.endswith("_TYPE") and env[k] == "s3":
                env[k[: -len("TYPE")] + "ENDPOINT"] = self.s3_endpoint
        # (and the gate's certificate trusted, as the image trusts S3's public one)
        path, image_entrypoint = self.images[c["image"]]
        env.update({"AWS_ACCESS_KEY_ID": self.task_keys.get(td["taskRoleArn"], self.task_key_id), "AWS_SECRET_ACCESS_KEY": "testing", "PATH": path, "SSL_CERT_FILE": str(self.ca)})
        if name in self.path_first:
            env["PATH"] = f"{self.path_first[name]}:{path}"
        if not td.get("taskRoleArn"):
            raise AssertionError("the export task has no task role")
        # as Docker runs it: the definition's entryPoint (else the image's ENTRYPOINT), then the command
        argv = list(c.get("entryPoint") or image_entrypoint) + list(override.get("Command") or c.get("command") or [])
        program = shutil.which(Path(argv[0]).name, path=path)
        if program is None:
            reasons[name] = f"CannotStartContainerError: {argv[0]} not found in the image"
            return None
        done = subprocess.run([program, *argv[1:]], env=env, capture_output=True, text=True, timeout=600, cwd=volume)
        self.logs[name] = done.stdout + done.stderr
        return done.returncode

    def _secret(self, value_from: str, execution: Mapping[str, Any] | None) -> str | None:
        arn, key = value_from.split("::", 1)[0].rsplit(":", 1) if value_from.count(":") >= 8 else (value_from, "")
        sm = boto3.client("secretsmanager", region_name=self.region)
        tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=arn).get("Tags") or []}
        context = {f"secretsmanager:ResourceTag/{k}": v for k, v in tags.items()}
        if not self._authorize("execution", execution, "secretsmanager:GetSecretValue", sm.describe_secret(SecretId=arn)["ARN"], context):
            return None
        text = sm.get_secret_value(SecretId=arn)["SecretString"]
        return str(json.loads(text)[key]) if key else text

