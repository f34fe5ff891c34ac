"""`mxinfra backup list|create|restore` on the kubernetes target, end to end: the CronJobs `mxinfra plan`
renders, served by a loopback API server whose "kubelet" runs each Job the CLI creates for real (the
ConfigMap's script, the Job's env, its volumes as directories) against a real PostgreSQL; every row
compared after the restore; the signed activity records checked. `restore --from` too: two stacks'
objects on one such cluster, the restore Job listening on loopback while the export Job sends to it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from object_store import alpine_path  # noqa: F401  (a fixture; s3_server: tests/conftest.py)
from postgres import PostgresServer, require_bin_dir

from mxinfra.cli import main

from k8s_stacks import K8S_VERSION, config, restricted_violations, with_

TOKEN = "backup-cli-test-token"


def ungated(cfg: dict) -> dict:
    """Production as these tests plan it: without staged promotion (no acceptance deploy recorded here),
    said explicitly, with a reason (issue 19, F6)."""
    from scaffold import UNGATED

    env = (cfg.get("mxinfra:environments") or {}).get("production")
    if env is None or "requirePromotionFrom" in env or "ungated" in env:
        return cfg
    return with_(cfg, "mxinfra:environments/production.ungated", dict(UNGATED))


class Cluster:
    """The part of a Kubernetes API server the backup commands use, with a kubelet that runs Jobs."""

    def __init__(self, objects: list[dict], pg_url: str, root: Path) -> None:
        self.cronjobs = {d["metadata"]["name"]: d for d in objects if d["kind"] == "CronJob"}
        self.configmaps = {d["metadata"]["name"]: d for d in objects if d["kind"] == "ConfigMap"}
        self.pg_url, self.root = pg_url, root
        self.urls: dict[str, str] = {}  # a namespace's own database (default: pg_url)
        self.denied: set[tuple[str, ...]] = set()  # (namespace, verb) or (namespace, verb, resource/subresource) the access review refuses
        self.reviews: list[dict[str, str]] = []  # every access review's attributes, as asked
        self.hold: bool | str = False  # Jobs created are not run: they stay running (no condition); "pending": never scheduled
        self.threads: dict[str, threading.Thread] = {}
        self.proxied = 0
        self.corrupt = False  # flip one bit of the next proxied answer
        self.allowed = True
        self.jobs: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.logs: dict[str, str] = {}
        self.step_logs: dict[tuple[str, str], str] = {}  # (pod, container): every container's output, init containers' too
        self.requests: list[tuple[str, str]] = []
        self.created: list[dict] = []
        self.put_paths: list[str] = []  # what the pod proxy passed on to a pod, past /proxy/, per PUT
        self.get_paths: list[str] = []  # the same per GET
        self.store: dict[str, Any] = {}  # with archives in S3: the emulator's endpoint, the Secret's values, busybox's PATH
        self.path_first: dict[str, Path] = {}  # container name -> a directory of commands found before the image's (a fault)
        # the app's StatefulSet (the controller: its pods follow spec.replicas at once, unless stop_hangs)
        self.statefulsets = {(d["metadata"]["namespace"], d["metadata"]["name"]): json.loads(json.dumps(d)) for d in objects if d["kind"] == "StatefulSet"}
        for sts in self.statefulsets.values():
            sts["status"] = {"replicas": sts["spec"].get("replicas", 1)}
        self.stop_hangs = False
        self.linger = 0  # how many more pod lists a deleted Job's pod is still in (its shell ignores SIGTERM)
        self.lingering: dict[str, int] = {}
        self.pods_at_scale: list[list[str]] = []  # the restore Jobs' pods present at each scale of the app
        self.scaled: list[tuple[str, int]] = []  # (StatefulSet, replicas) as patched
        self.pods_at_job: dict[str, dict[str, int]] = {}  # Job -> each StatefulSet's pods when it ran

    def run_job(self, job: dict) -> None:
        """What the kubelet would do: the init containers one by one, then the container, each command with
        its env; a claim a directory of the node, an emptyDir a fresh directory of the pod; the pod's log
        is the container's (not its init containers')."""
        pod = job["spec"]["template"]["spec"]
        name = job["metadata"]["name"]
        self.pods_at_job[name] = {n: sts["status"]["replicas"] for (ns, n), sts in self.statefulsets.items() if ns == job["metadata"]["namespace"]}
        (c,) = pod["containers"]
        dirs = {}
        for v in pod["volumes"]:
            if "configMap" in v:
                d = self.root / "cm" / v["configMap"]["name"]
                d.mkdir(parents=True, exist_ok=True)
                for file, text in self.configmaps[v["configMap"]["name"]]["data"].items():
                    (d / file).write_text(text)
            elif "emptyDir" in v:
                d = self.root / "pods" / name / v["name"]
                d.mkdir(parents=True)
            else:
                d = self.root / "pvc" / v["persistentVolumeClaim"]["claimName"]
                d.mkdir(parents=True, exist_ok=True)
            dirs[v["name"]] = d

        def command(container: dict) -> tuple[list[str], dict[str, str]]:
            mounts = {m["mountPath"]: dirs[m["name"]] for m in container["volumeMounts"]}

            def local(value: str) -> str:
                for path, d in mounts.items():
                    if value == path or value.startswith(path + "/"):
                        return str(d) + value[len(path) :]
                return value

            # the rclone image: busybox and rclone only; the postgres image: its client tools
            rclone = container["command"][-1] in ("upload", "fetch", "pull-files", "push-files")
            env = {"PATH": self.store["path"] if rclone else f"{require_bin_dir()}:{os.environ['PATH']}"}
            if container["name"] in self.path_first:
                env["PATH"] = f"{self.path_first[container['name']]}:{env['PATH']}"
            for e in container["env"]:
                if "valueFrom" in e:
                    key = e["valueFrom"]["secretKeyRef"]["key"]
                    env[e["name"]] = self.urls.get(job["metadata"]["namespace"], self.pg_url) if key == "DATABASE_URL" else self.store["secrets"][key]
                else:
                    env[e["name"]] = local(e["value"])
            if rclone:
                # the one change: the emulator speaks plain HTTP on loopback where the plan names an https endpoint
                for remote in ("STORE", "FILES"):
                    if f"RCLONE_CONFIG_{remote}_ENDPOINT" in env:
                        env[f"RCLONE_CONFIG_{remote}_ENDPOINT"] = self.store["endpoint"]
                env["HOME"] = str(self.root)
            return [local(a) for a in container["command"]], env

        labels = {**job["spec"]["template"]["metadata"]["labels"], "job-name": name}
        self.pods[name] = {"metadata": {"name": name, "namespace": job["metadata"]["namespace"], "labels": labels, "creationTimestamp": f"{len(self.pods):06d}"}, "status": {"phase": "Running", "podIP": "127.0.0.1"}}

        def run() -> None:
            done = None
            statuses: dict[str, list[dict]] = {"initContainerStatuses": [], "containerStatuses": []}
            for container in [*pod.get("initContainers", []), c]:
                args, env = command(container)
                # the pod is Pending while an init container runs, Running with its container
                running = {"name": container["name"], "state": {"running": {}}}
                if container is c:
                    self.pods[name]["status"] = {"phase": "Running", "podIP": "127.0.0.1", **{k: v for k, v in statuses.items() if v}, "containerStatuses": [running]}
                else:
                    self.pods[name]["status"] = {"phase": "Pending", "podIP": "127.0.0.1", "initContainerStatuses": [*statuses["initContainerStatuses"], running]}
                # as a kubelet serves it: the log grows while the container runs (stdout and stderr as written)
                proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                timer = threading.Timer(120, proc.kill)
                timer.start()
                said = ""
                assert proc.stdout is not None
                for line in proc.stdout:
                    said += line
                    self.step_logs[(name, container["name"])] = said
                    if container is c:
                        self.logs[name] = said
                done = subprocess.CompletedProcess(args, proc.wait(), said, "")
                timer.cancel()
                self.step_logs[(name, container["name"])] = said
                kind = "containerStatuses" if container is c else "initContainerStatuses"
                statuses[kind].append({"name": container["name"], "state": {"terminated": {"exitCode": done.returncode}}})
                if done.returncode != 0:
                    break
            assert done is not None
            self.logs[name] = done.stdout
            ok = done.returncode == 0
            job["status"] = {"conditions": [{"type": "Complete" if ok else "Failed", "status": "True", "message": f"exit {done.returncode}"}]}
            self.pods[name]["status"] = {"phase": "Succeeded" if ok else "Failed", **{k: v for k, v in statuses.items() if v}}

        if any(e["name"] in ("BACKUP_SOURCE", "BACKUP_SERVE_PORT") for e in c["env"]):
            # a receiving restore Job runs while the export Job (created next) sends to it; a serving
            # export Job while the CLI downloads from it
            self.threads[name] = threading.Thread(target=run, daemon=True)
            self.threads[name].start()
        else:
            run()

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        self.requests.append((method, path))
        url = urllib.parse.urlparse(path)
        if method == "POST" and url.path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
            attrs = body["spec"]["resourceAttributes"]
            self.reviews.append(dict(attrs))
            what = attrs["resource"] + ("/" + attrs["subresource"] if attrs.get("subresource") else "")
            refused = (attrs["namespace"], attrs["verb"]) in self.denied or (attrs["namespace"], attrs["verb"], what) in self.denied
            return 201, {**body, "status": {"allowed": self.allowed and not refused}}
        if m := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/cronjobs/([^/]+)", url.path):
            found = self.cronjobs.get(m.group(2))
            return (200, json.loads(json.dumps(found))) if found and found["metadata"]["namespace"] == m.group(1) else (404, {"kind": "Status", "code": 404})
        if method == "POST" and (m := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs", url.path)):
            kubernetes_validate.validate(body, K8S_VERSION, strict=True)
            assert restricted_violations(body["spec"]["template"]["spec"]) == []
            self.created.append(json.loads(json.dumps(body)))
            self.jobs[body["metadata"]["name"]] = body
            if not self.hold:
                self.run_job(body)
            else:  # its pod runs and goes on running (hold == "pending": it is never scheduled)
                name = body["metadata"]["name"]
                labels = {**body["spec"]["template"]["metadata"]["labels"], "job-name": name}
                phase = {"phase": "Pending"} if self.hold == "pending" else {"phase": "Running", "podIP": "127.0.0.1"}
                self.pods[name] = {"metadata": {"name": name, "namespace": m.group(1), "labels": labels, "creationTimestamp": f"{len(self.pods):06d}"}, "status": phase}
            return 201, body
        if m := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)", url.path):
            if method == "DELETE":
                self.jobs.pop(m.group(2), None)
                if self.linger and m.group(2) in self.pods:  # its pod goes after its grace period: seen `linger` more times
                    self.lingering[m.group(2)] = self.linger
                else:
                    self.pods.pop(m.group(2), None)  # its pod goes too
                return 200, {"kind": "Status", "status": "Success"}
            if m.group(2) in self.threads:
                self.threads[m.group(2)].join(timeout=30)  # answers when the Job is done, as a poll would
            if m.group(2) not in self.jobs:
                return 404, {"kind": "Status", "code": 404}
            return 200, self.jobs[m.group(2)]
        if m := re.fullmatch(r"/apis/apps/v1/namespaces/([^/]+)/statefulsets/([^/]+)(/scale)?", url.path):
            sts = self.statefulsets.get((m.group(1), m.group(2)))
            if sts is None:
                return 404, {"kind": "Status", "code": 404}
            if method == "PATCH" and m.group(3):
                sts["spec"]["replicas"] = body["spec"]["replicas"]
                self.scaled.append((m.group(2), body["spec"]["replicas"]))
                self.pods_at_scale.append(sorted(n for n in self.pods if "-restore-" in n))
                if not (self.stop_hangs and body["spec"]["replicas"] == 0):
                    sts["status"]["replicas"] = body["spec"]["replicas"]
                return 200, {"kind": "Scale", "spec": {"replicas": sts["spec"]["replicas"]}, "status": {"replicas": sts["status"]["replicas"]}}
            if method == "GET" and not m.group(3):
                return 200, json.loads(json.dumps(sts))
        if url.path.endswith("/pods"):
            for gone in [n for n, left in self.lingering.items() if left <= 0]:
                self.pods.pop(gone, None)
                del self.lingering[gone]
            self.lingering = {n: left - 1 for n, left in self.lingering.items()}
            wanted = dict(kv.split("=") for kv in urllib.parse.parse_qs(url.query)["labelSelector"][0].split(","))
            ns = url.path.split("/")[4]
            items = [p for p in self.pods.values() if wanted.items() <= p["metadata"]["labels"].items() and p["metadata"]["namespace"] == ns]
            return 200, {"kind": "PodList", "items": items}
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", url.path):
            # the pod's one container, or the one named (an init container's too); nothing yet: empty
            container = urllib.parse.parse_qs(url.query).get("container", [None])[0]
            return 200, self.logs.get(m.group(2), "") if container is None else self.step_logs.get((m.group(2), container), "")
        return 404, {"kind": "Status", "code": 404}




def _serve(cluster: Cluster) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            assert self.headers.get("Authorization") == f"Bearer {TOKEN}"
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, answer = cluster.handle(method, self.path, body)
            data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/:]+):(\d+)/proxy/(.*)", self.path):
                self._proxy(m.group(2), int(m.group(3)), m.group(4))
                return
            self._answer("GET")

        def _proxy(self, pod: str, port: int, rest: str) -> None:
            """The API server's pod proxy: the pod's answer passed on a chunk at a time."""
            assert self.headers.get("Authorization") == f"Bearer {TOKEN}"
            cluster.requests.append(("GET", f"proxy {pod}:{port}"))
            cluster.get_paths.append(rest)
            cluster.proxied += 1
            try:
                upstream = urllib.request.urlopen(f"http://{cluster.pods[pod]['status']['podIP']}:{port}/{rest}", timeout=30)
            except urllib.error.HTTPError as e:
                upstream = e
            except OSError:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with upstream:
                self.send_response(upstream.status if hasattr(upstream, "status") else upstream.code)
                self.send_header("Content-Length", upstream.headers.get("Content-Length", "0"))
                self.end_headers()
                while chunk := upstream.read(1 << 16):
                    if cluster.corrupt:
                        chunk, cluster.corrupt = bytes([chunk[0] ^ 1]) + chunk[1:], False
                    self.wfile.write(chunk)

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def do_PUT(self) -> None:  # noqa: N802
            """The pod proxy for a PUT: the body passed to the pod a chunk at a time, its answer back."""
            m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/:]+):(\d+)/proxy/(.*)", self.path)
            assert m and self.headers.get("Authorization") == f"Bearer {TOKEN}"
            cluster.requests.append(("PUT", f"proxy {m.group(2)}:{m.group(3)}"))
            cluster.put_paths.append(m.group(4))
            length = int(self.headers["Content-Length"])
            try:
                upstream = socket.create_connection((cluster.pods[m.group(2)]["status"]["podIP"], int(m.group(3))), timeout=30)
            except OSError:
                self.rfile.read(length)
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with upstream:
                upstream.sendall(f"PUT /{m.group(4)} HTTP/1.1\r\nHost: pod\r\nContent-Length: {length}\r\n\r\n".encode())
                left = length
                while left:
                    chunk = self.rfile.read(min(left, 1 << 16))
                    if cluster.corrupt:
                        chunk, cluster.corrupt = bytes([chunk[0] ^ 1]) + chunk[1:], False
                    upstream.sendall(chunk)
                    left -= len(chunk)
                answer = b""
                while data := upstream.recv(1 << 16):
                    answer += data
            head, _, body = answer.partition(b"\r\n\r\n")
            self.send_response(int(head.split()[1]))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_DELETE(self) -> None:  # noqa: N802
            self._answer("DELETE")

        def do_PATCH(self) -> None:  # noqa: N802
            assert self.headers.get("Content-Type") == "application/merge-patch+json"
            self._answer("PATCH")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


_buckets = iter(range(10**6))


def _s3_bucket(request: pytest.FixtureRequest, env: str) -> dict[str, Any]:
    """A new bucket of moto's S3 server, as an environment's `backups` block (archives in S3)."""
    import boto3

    endpoint = request.getfixturevalue("s3_server")
    bucket = f"backups-{env}-{next(_buckets)}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    # keys of its own per bucket (production's archive keys must be no other store's)
    return {"s3": {"bucket": bucket, "endpoint": "https://backups.example.com", "accessKeyId": f"testing-{bucket}", "secretAccessKey": "testing-secret"}}


def _s3_node(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What the node's rclone steps get: the emulator's endpoint, the backup-store Secret's values, busybox's PATH."""
    secrets = {f"RCLONE_CONFIG_{remote}_{key}": value for remote in ("STORE", "FILES") for key, value in (("ACCESS_KEY_ID", "testing"), ("SECRET_ACCESS_KEY", "testing-secret"))}
    return {"endpoint": request.getfixturevalue("s3_server"), "secrets": secrets, "path": request.getfixturevalue("alpine_path")}


def _s3_keys(c: Cluster, bucket: str) -> list[str]:
    return [o["Key"] for o in _s3(c).list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture
def cluster(project, capsys, tmp_path, pg, request, monkeypatch, engine_secrets) -> Iterator[tuple[Cluster, str]]:
    """The stack `request.param` planned, its objects served; KUBECONFIG names the server."""
    from mxinfra import plan

    # the stack's secrets read as the engine marks them, by `mxinfra backup` as by `mxinfra plan`
    monkeypatch.setattr("mxinfra.stackfile.read_stack_config", plan.read_stack_config)
    # "STACK", or "STACK+s3": its archives in a bucket of moto's S3 server
    # "STACK", "STACK+s3" (its archives in a bucket of moto's S3 server), "STACK+s3+files" (its file store too)
    stack, *extras = request.param.split("+")
    store = bool(extras)
    cfg = config(stack, instances=1)
    cfg = with_(cfg, "mxinfra:kubernetes/storage", {"local": {"size": "1Gi"}})
    if "s3" in extras:
        cfg = with_(cfg, "mxinfra:kubernetes/backups", _s3_bucket(request, stack))
    if "files" in extras:
        # "+suffix": the runtime names its objects with a key suffix (S3_KEY_SUFFIX)
        suffix = {"keySuffix": f".orders-{stack}"} if "suffix" in extras else {}
        cfg = with_(cfg, "mxinfra:kubernetes/storage", {"s3": {**_s3_bucket(request, f"{stack}-files")["s3"], "endpoint": "https://files.example.com", **suffix}})
    # the loopback PostgreSQL has no TLS (the CronJob's PGSSLMODE=require is tested in test_k8s_backups.py)
    cfg = with_(cfg, "mxinfra:kubernetes/database.requireTls", False)
    project.stack(stack, ungated(cfg))
    assert main(["plan", "-s", stack, "-C", str(project.path), "--out", str(tmp_path / "plan")]) == 0, capsys.readouterr().err
    capsys.readouterr()
    objects = [d for d in yaml.safe_load_all((tmp_path / "plan" / "kubernetes" / f"{stack}.yaml").read_text()) if d]
    c = Cluster(objects, pg.url, tmp_path / "node")
    if store:
        c.store = _s3_node(request)
    server, url = _serve(c)
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "k", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}],
        "current-context": "k",
    }
    (tmp_path / "ambient-kubeconfig").write_text(yaml.safe_dump(kubeconfig))  # conftest's KUBECONFIG
    try:
        yield c, stack
    finally:
        server.shutdown()


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _records(project, stack: str, env: str) -> list[Any]:
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.store import open_store

    return ActivityLog(open_store(f"file://{project.path / '.mxinfra'}")).records(env)


def _rows(pg: PostgresServer) -> str:
    return pg.psql('COPY (SELECT * FROM "orders$order" ORDER BY id) TO STDOUT')


SEED = """DROP SCHEMA public CASCADE; CREATE SCHEMA public;
CREATE TABLE "orders$order" (id bigint PRIMARY KEY, number varchar(20), total numeric(28,8), placed timestamp, doc bytea);
INSERT INTO "orders$order" SELECT g, 'ORD-' || g, g * 1.12345678, timestamp '2020-01-01' + g * interval '1 hour', decode(md5(g::text), 'hex') FROM generate_series(1, 2000) g;"""


def _test_backed_up(c: Cluster, stack: str, pg: PostgresServer, project: Any, capsys: Any, doc: bytes) -> tuple[Any, Path, str]:
    """The `test` environment seeded (rows, and `doc1` in its local file store), then backed up by the
    command: (the rows, the file store's directory, the backup's id)."""
    pg.psql(SEED)
    before = _rows(pg)
    files = c.root / "pvc" / "orders-test-files"
    files.mkdir(parents=True)
    (files / "doc1").write_bytes(doc)
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    return before, files, backup_id


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_create_list_restore_on_test(cluster, pg, project, capsys):
    c, stack = cluster
    before, files, backup_id = _test_backed_up(c, stack, pg, project, capsys, b"\x00\x01 file one")
    (job,) = c.created
    assert job["metadata"]["name"].startswith("orders-test-backup-")
    assert {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}["BACKUP_NOW"] == backup_id
    rc, out, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path), "--json")
    assert rc == 0 and json.loads(out) == [backup_id], err

    pg.psql('UPDATE "orders$order" SET total = 0, doc = NULL WHERE id % 2 = 0; DELETE FROM "orders$order" WHERE id > 1500;')
    (files / "doc1").write_bytes(b"changed")
    (files / "doc2").write_bytes(b"new")
    assert _rows(pg) != before
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    assert rc == 0, err
    assert _rows(pg) == before
    assert {p.name: p.read_bytes() for p in files.iterdir()} == {"doc1": b"\x00\x01 file one"}
    assert [j["metadata"]["name"].split("-")[2] for j in c.created] == ["backup", "restore"]  # no backup first below production
    # the app stopped for the restore (Mendix restores only a stopped environment), then started with its count
    (app,) = [n for (_, n), sts in c.statefulsets.items() if sts["metadata"]["labels"].get("app.kubernetes.io/component") == "runtime"]
    assert c.scaled == [(app, 0), (app, 1)] and c.pods_at_job[c.created[1]["metadata"]["name"]][app] == 0
    assert {e["name"]: e.get("value") for e in c.created[1]["spec"]["template"]["spec"]["containers"][0]["env"]}["RESTORE_ALONE_WAIT"] == "60"

    recs = _records(project, stack, "test")
    assert [(r.action, r.changes) for r in recs] == [
        ("backup", {"backup": {"id": backup_id, "trigger": "on-demand"}}),
        # written just before the app was stopped
        ("intent", {"intends": "restore", "restore": {"id": backup_id, "from": "test"}}),
        ("restore", {"restore": {"id": backup_id, "from": "test", "app": "stopped, then started"}}),
    ]
    assert all(r.signature for r in recs)
    rc, out, err = _cli(capsys, "activity", "verify", "-e", "test", "-C", str(project.path))
    assert rc == 0, out + err


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_restore_interrupted_while_it_runs_leaves_its_intent_in_the_log(cluster, pg, project, capsys, monkeypatch):
    """Ctrl-C while the command follows the restore Job: the Job replaced the database all the same, the
    command cannot record an outcome, and the log is not silent about it: its intent names the backup."""
    from mxinfra_kubernetes.backup_actions import ClusterActions

    c, stack = cluster
    before, _, backup_id = _test_backed_up(c, stack, pg, project, capsys, b"file one")
    pg.psql('DELETE FROM "orders$order" WHERE id > 10;')

    def interrupted(self: Any, job: str, backup: str) -> None:
        raise KeyboardInterrupt  # what Python raises in the main thread on SIGINT, here while the Job is followed

    monkeypatch.setattr(ClusterActions, "_wait_restore", interrupted)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    assert rc == 130 and "interrupted" in err, err
    assert _rows(pg) == before  # the Job ran to its end: the data is the backup's
    (app,) = {n for n, _ in c.scaled}
    assert c.scaled == [(app, 0), (app, 1)]  # started again on the way out, the Ctrl-C notwithstanding
    recs = _records(project, stack, "test")
    assert [(r.action, r.changes) for r in recs] == [
        ("backup", {"backup": {"id": backup_id, "trigger": "on-demand"}}),
        ("intent", {"intends": "restore", "restore": {"id": backup_id, "from": "test"}}),
    ]
    # what the log says runs is unchanged by it (a restore changes no workload)
    assert (recs[1].package_sha256, recs[1].instances) == (recs[0].package_sha256, recs[0].instances)
    rc, out, err = _cli(capsys, "activity", "-e", "test", "-C", str(project.path))
    assert rc == 0 and "intends restore" in out, out + err
    assert _cli(capsys, "activity", "verify", "-e", "test", "-C", str(project.path))[0] == 0


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_an_app_is_not_started_beside_a_restore_job_that_may_still_run(cluster, pg, project, capsys, monkeypatch):
    """Ctrl-C while the restore Job still runs: restore.sh looked for other sessions only before it began, so
    the app stays stopped, and the command says how to start it once the Job ended."""
    from mxinfra_kubernetes.backup_actions import ClusterActions

    c, stack = cluster
    _, _, backup_id = _test_backed_up(c, stack, pg, project, capsys, b"file one")
    ns, app = _app(c)
    c.hold = True  # the restore Job is made and stays running

    def interrupted(self: Any, job: str, backup: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ClusterActions, "_wait_restore", interrupted)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    (job,) = [j["metadata"]["name"] for j in c.created if "-restore-" in j["metadata"]["name"]]
    assert rc == 130 and c.scaled == [(app, 0)], err
    assert f"the restore Job {job} may still run, so the app stays stopped" in said and f"kubectl -n {ns} scale statefulset/{app} --replicas=1" in said, said
    assert [r.action for r in _records(project, stack, "test")] == ["backup", "intent"]


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_session_of_another_user_does_not_hold_a_restore_back(cluster, pg, project, capsys):
    """restore.sh waits (RESTORE_ALONE_WAIT) for the other sessions of the app's user only: a monitoring
    agent signed in as a user of its own stays connected and the restore goes on."""
    from postgres import require_bin_dir

    c, stack = cluster
    before, _, backup_id = _test_backed_up(c, stack, pg, project, capsys, b"file one")
    pg.psql("CREATE ROLE monitor LOGIN PASSWORD 'monitor-password'; GRANT pg_monitor TO monitor;")
    pg.psql('DELETE FROM "orders$order" WHERE id > 10;')
    url = pg.url.replace(pg.url.split("@")[0].split("//")[1], "monitor:monitor-password")
    holder = subprocess.Popen([str(require_bin_dir() / "psql"), url, "-c", "SELECT pg_sleep(60)"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):  # connected before the restore looks
            if "monitor" in pg.psql("SELECT usename FROM pg_stat_activity WHERE usename = 'monitor'"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(holder.stderr.read() if holder.poll() is not None else "the monitor session did not connect")
        rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    finally:
        holder.kill()
        holder.wait()
    assert rc == 0, (err, c.logs)
    assert _rows(pg) == before


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_restore_job_whose_pod_never_starts_is_deleted_and_the_app_started_again(cluster, pg, project, capsys, monkeypatch):
    """A full quota or an image that cannot be pulled: the Job would keep the app stopped for its whole
    timeout; it is deleted once its pod stayed Pending past the limit, and the app started again."""
    from mxinfra_kubernetes import backup_actions

    c, stack = cluster
    _, _, backup_id = _test_backed_up(c, stack, pg, project, capsys, b"file one")
    _, app = _app(c)
    c.hold = "pending"
    c.linger = 2  # the deleted Job's pod goes only after its grace period
    monkeypatch.setattr(backup_actions, "_pending_limit", lambda status, timeout: 0.0)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err and "did not start" in said and "stays stopped" not in said, said
    assert c.scaled == [(app, 0), (app, 1)] and not [j for j in c.jobs if "-restore-" in j]  # deleted
    assert c.pods_at_scale[-1] == []  # started again only once the Job's pod was gone, not beside it
    # its pod may have started between the last look and the delete: no outcome claimed, the intent alone
    assert said.endswith("the restore's intent is recorded and no outcome follows it (`mxinfra activity -s test -e test`)"), said
    assert [r.action for r in _records(project, stack, "test")] == ["backup", "intent"]


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_target_that_says_nothing_of_the_app_fails_loudly_once_the_restore_is_recorded(cluster, pg, project, capsys, monkeypatch):
    """The core's rule (mxinfra.backups.APP_OUTCOMES): a restore in place says what became of the app. A
    target that forgets is a bug: exit 1 naming it, after the restore's outcome is recorded (the data was replaced)."""
    from mxinfra_kubernetes.backup_actions import ClusterActions

    c, stack = cluster
    _, _, backup_id = _test_backed_up(c, stack, pg, project, capsys, b"file one")
    restore = ClusterActions.restore
    monkeypatch.setattr(ClusterActions, "restore", lambda self, *a, **kw: {k: v for k, v in restore(self, *a, **kw).items() if k != "app"})
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 1 and "the kubernetes target's restore replaced the database in place but its outcome says nothing of the app" in said, said
    assert "(the restore is recorded)" in said
    assert [r.action for r in _records(project, stack, "test")] == ["backup", "intent", "restore"]


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_second_ctrl_c_while_the_app_is_started_again_says_how_to_start_it(cluster, pg, project, capsys, monkeypatch):
    from mxinfra_kubernetes.backup_actions import ClusterActions

    c, stack = cluster
    _, _, backup_id = _test_backed_up(c, stack, pg, project, capsys, b"file one")
    ns, app = _app(c)
    scale = ClusterActions._scale

    def interrupted_on_the_way_up(self: Any, replicas: int) -> None:
        if replicas:
            raise KeyboardInterrupt
        scale(self, replicas)

    monkeypatch.setattr(ClusterActions, "_scale", interrupted_on_the_way_up)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 130 and c.scaled == [(app, 0)], err
    assert f"interrupted while the app was started again: kubectl -n {ns} scale statefulset/{app} --replicas=1" in said, said


def _app(c: Cluster) -> tuple[str, str]:
    """The namespace and name of the app's StatefulSet (not the in-cluster database's)."""
    (key,) = [k for k, sts in c.statefulsets.items() if sts["metadata"]["labels"].get("app.kubernetes.io/component") == "runtime"]
    return key


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_running_app_is_not_restored_by_an_identity_that_cannot_stop_it(cluster, pg, project, capsys):
    """The backups permission may not scale the app (that is deploy's): with it alone, a restore of a running
    app is refused before anything changes, saying how to stop the app through a recorded change."""
    c, stack = cluster
    _, _, backup_id = _test_backed_up(c, stack, pg, project, capsys, b"file one")
    ns, app = _app(c)
    c.denied.add((ns, "patch", "statefulsets/scale"))
    pg.psql('DELETE FROM "orders$order" WHERE id > 10;')
    changed = _rows(pg)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert f"test runs 1 instance(s) of {app}" in said and "may not scale it (patch statefulsets/scale" in said, said
    assert "mxinfra:environments.test.instances: 0" in said and "nothing was changed" in said, said
    # what was asked: patch of that StatefulSet's scale subresource, in the apps group
    assert {"namespace": ns, "verb": "patch", "group": "apps", "resource": "statefulsets", "subresource": "scale", "name": app} in c.reviews
    assert _rows(pg) == changed and c.scaled == [] and [j["metadata"]["name"].split("-")[2] for j in c.created] == ["backup"]
    assert [r.action for r in _records(project, stack, "test")] == ["backup"]
    # stopped through the stack (instances: 0, what `pulumi up` would leave), the same identity restores
    c.statefulsets[(ns, app)]["spec"]["replicas"] = c.statefulsets[(ns, app)]["status"]["replicas"] = 0
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    assert rc == 0, err
    assert _rows(pg) != changed and c.scaled == []
    assert _records(project, stack, "test")[-1].changes["restore"] == {"id": backup_id, "from": "test", "app": "not running"}


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_an_app_that_does_not_stop_is_started_again_and_nothing_restored(cluster, pg, project, capsys, monkeypatch):
    from mxinfra_kubernetes import backup_actions

    c, stack = cluster
    _, _, backup_id = _test_backed_up(c, stack, pg, project, capsys, b"file one")
    ns, app = _app(c)
    c.stop_hangs = True  # its pod never goes (a finalizer, a node gone)
    monkeypatch.setattr(backup_actions, "STOP_TIMEOUT", 0.0)
    c.statefulsets[(ns, app)]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 0
    pg.psql('DELETE FROM "orders$order" WHERE id > 10;')
    changed = _rows(pg)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err and f"the app {app} in namespace {ns}" in said and "still had pods 0s after it was scaled to 0: nothing was restored" in said, said
    assert _rows(pg) == changed and c.scaled == [(app, 0), (app, 1)] and len(c.created) == 1  # no restore Job
    assert said.endswith("nothing was restored (recorded)"), said
    recs = _records(project, stack, "test")
    assert [r.action for r in recs] == ["backup", "intent", "restore"]
    assert recs[-1].changes["restore"] == {"id": backup_id, "from": "test", "app": "stopped, then started", "database": "not restored", "files": "not restored"}
    rc, out, _ = _cli(capsys, "activity", "-e", "test", "-C", str(project.path))
    assert rc == 0 and "restore: nothing restored" in out and "intends restore" in out, out
    assert _cli(capsys, "activity", "verify", "-e", "test", "-C", str(project.path))[0] == 0


@pytest.mark.parametrize("cluster", ["production+s3"], indirect=True)
def test_archives_in_s3_create_list_restore_download(cluster, pg, project, capsys):
    c, stack = cluster
    bucket = next(e["value"] for e in _env_of(c, "orders-production-backup", "upload") if e["name"] == "BACKUP_REMOTE").split(":")[1].split("/")[0]
    pg.psql(SEED)
    before = _rows(pg)
    files = c.root / "pvc" / "orders-production-files"
    files.mkdir(parents=True)
    (files / "doc1").write_bytes(b"file one")
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    assert _s3_keys(c, bucket) == [f"orders/production/{backup_id}.tar.gz"]
    (job,) = c.created
    pod = job["spec"]["template"]["spec"]
    # the id reaches both steps: postgres names the archive with it, rclone uploads that name
    for container in (*pod["initContainers"], *pod["containers"]):
        assert {e["name"]: e.get("value") for e in container["env"]}["BACKUP_NOW"] == backup_id
    assert not (c.root / "pvc" / "orders-production-backups").exists()  # no claim: the archive is in the bucket
    rc, out, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path), "--json")
    assert rc == 0 and json.loads(out) == [backup_id], err

    pg.psql('DELETE FROM "orders$order" WHERE id % 3 = 0')
    (files / "doc1").write_bytes(b"changed")
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    assert _rows(pg) == before and (files / "doc1").read_bytes() == b"file one"
    assert [j["metadata"]["name"].split("-")[2] for j in c.created] == ["backup", "backup", "restore"]
    assert len(_s3_keys(c, bucket)) == 2  # production's backup before the restore is there too

    # download: the export Job fetches the archive from the bucket, then serves it once through the pod proxy
    rc, out, err = _cli(capsys, "backup", "download", "-s", stack, "-e", "production", "--id", backup_id, "-o", str(c.root / "dl"), "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    stored = _s3(c).get_object(Bucket=bucket, Key=f"orders/production/{backup_id}.tar.gz")["Body"].read()
    assert (c.root / "dl" / f"{backup_id}.tar.gz").read_bytes() == stored
    export = c.created[-1]["spec"]["template"]["spec"]
    (fetch,), (serve,) = export["initContainers"], export["containers"]
    # the store's keys in the fetch step only; no database anywhere in the pod
    assert "secretKeyRef" in json.dumps(fetch) and "secretKeyRef" not in json.dumps(serve) and "DATABASE_URL" not in json.dumps(export)
    recs = _records(project, stack, "production")
    assert [r.action for r in recs] == ["backup", "backup", "intent", "restore", "backup-download"]
    assert recs[-1].changes == {"backup": {"id": backup_id, "size": len(stored), "sha256": hashlib.sha256(stored).hexdigest()}}


@pytest.mark.parametrize("cluster", ["production+s3+files"], indirect=True)
def test_a_file_store_in_s3_is_in_every_backup_and_restored_from_it(cluster, pg, project, capsys):
    c, stack = cluster
    bucket = next(b for b in (e.get("value", "") for e in _env_of(c, "orders-production-backup", "pull-files")) if b.startswith("files:")).split(":")[1]
    put = lambda key, data: _s3(c).put_object(Bucket=bucket, Key=key, Body=data)  # noqa: E731
    get = lambda key: _s3(c).get_object(Bucket=bucket, Key=key)["Body"].read()  # noqa: E731
    put("a1b2c3", b"a document")
    put("d4e5f6", b"another")
    pg.psql(SEED)
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    put("a1b2c3", b"overwritten")
    _s3(c).delete_object(Bucket=bucket, Key="d4e5f6")
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    assert (get("a1b2c3"), get("d4e5f6")) == (b"a document", b"another")
    restore_job = c.created[-1]["metadata"]["name"]
    assert c.step_logs[(restore_job, "push-files")] == f"restore: copied 2 files back to files:{bucket}\n"
    # the download holds them too: db/ and tree/, laid out as Mendix Cloud's (tree/xx/yy/<name>)
    rc, out, err = _cli(capsys, "backup", "download", "-s", stack, "-e", "production", "--id", backup_id, "-o", str(c.root / "dl"), "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    listed = subprocess.run(["tar", "-tzf", str(c.root / "dl" / f"{backup_id}.tar.gz")], capture_output=True, text=True, check=True).stdout.split()
    assert {"db/db.backup", "tree/a1/b2/a1b2c3", "tree/d4/e5/d4e5f6"} <= set(listed)


@pytest.mark.parametrize("cluster", ["acceptance+s3+files"], indirect=True)
def test_a_restore_whose_files_cannot_go_back_says_so_and_is_recorded(cluster, pg, project, capsys):
    c, stack = cluster
    bucket = next(b for b in (e.get("value", "") for e in _env_of(c, "orders-acceptance-backup", "pull-files")) if b.startswith("files:")).split(":")[1]
    _s3(c).put_object(Bucket=bucket, Key="a1b2c3", Body=b"a document")
    pg.psql(SEED)
    before = _rows(pg)
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "acceptance", "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    pg.psql('DELETE FROM "orders$order"')
    # the file store goes away (or refuses the key) between the backup and the restore (on production the
    # restore would stop at the backup it takes first, which reads the files too)
    _s3(c).delete_object(Bucket=bucket, Key="a1b2c3")
    _s3(c).delete_bucket(Bucket=bucket)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "acceptance", "--id", backup_id, "-C", str(project.path))
    err = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert f"acceptance: the database was restored from {backup_id}, but its files were not copied back to the file store" in err and "(recorded)" in err, err
    assert _rows(pg) == before  # the database is the backup's: the log must say so
    recs = _records(project, stack, "acceptance")
    assert [r.action for r in recs] == ["backup", "intent", "restore"]
    assert recs[-1].changes["restore"]["files"] == "not restored" and recs[-1].changes["restore"]["id"] == backup_id
    assert "database" not in recs[-1].changes["restore"]  # it was restored: only the files' failure is recorded
    rc, out, _ = _cli(capsys, "activity", "-e", "acceptance", "-C", str(project.path))
    assert rc == 0 and "restore: files not restored" in out, out


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_restore_whose_own_move_of_the_files_fails_is_recorded_as_files_not_restored(cluster, pg, project, capsys, tmp_path):
    # restore.sh exits 3 when the database was restored and only moving the files into the local store
    # failed: the command says so, names the step, and records the restore with its files not restored
    c, stack = cluster
    before, _, backup_id = _test_backed_up(c, stack, pg, project, capsys, b"file one")
    pg.psql('DELETE FROM "orders$order" WHERE id > 1500;')
    # the move into the store fails (a full or read-only volume): an `mv` that refuses, found first
    fault = tmp_path / "fault"
    fault.mkdir()
    (fault / "mv").write_text("#!/bin/sh\necho 'mv: cannot move: No space left on device' >&2\nexit 1\n")
    (fault / "mv").chmod(0o755)
    c.path_first["restore"] = fault
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    err = " ".join(err.split())
    (job,) = [j["metadata"]["name"] for j in c.created if "-restore-" in j["metadata"]["name"]]
    assert rc == 2 and "Traceback" not in err, err
    assert f"test: the database was restored from {backup_id}, but its files were not copied back to the file store" in err, err
    assert f"logs job/{job} -c restore" in err and "the store may hold part of them" in err and "(recorded)" in err, err
    assert [(x["name"], x["state"]["terminated"]["exitCode"]) for x in c.pods[job]["status"]["containerStatuses"]] == [("restore", 3)]
    assert _rows(pg) == before
    recs = _records(project, stack, "test")
    assert [r.action for r in recs] == ["backup", "intent", "restore"]
    assert recs[-1].changes["restore"]["files"] == "not restored" and recs[-1].changes["restore"]["id"] == backup_id


# A psql whose connection is lost once it sent its input (libpq's words and status): after the COMMIT
# went through, or with the COMMIT cut off on the way to it.
_LOST = 'echo "psql: error: server closed the connection unexpectedly" >&2; exit 2'
_PSQL_LOST = {
    "after its commit": f'"$REAL" "$@"; {_LOST}',
    "before its commit": f"sed '/^COMMIT;$/,$d' | \"$REAL\" \"$@\"; {_LOST}",
}


@pytest.mark.parametrize("lost", list(_PSQL_LOST))
@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_psql_that_loses_its_connection_is_recorded_as_what_the_server_says(cluster, pg, project, capsys, tmp_path, lost):
    # restore.sh asks the server what became of its transaction when psql failed: committed, the restore
    # is recorded as done; aborted, restore.sh says nothing was restored (exit 1), recorded as such. Before,
    # both were a failure whose intent stood alone, the first one a restored database said to be as it was.
    c, stack = cluster
    before, _, backup_id = _test_backed_up(c, stack, pg, project, capsys, b"file one")
    pg.psql('DELETE FROM "orders$order" WHERE id > 1500;')
    changed = _rows(pg)
    fault = tmp_path / "fault"
    fault.mkdir()
    (fault / "psql").write_text(f'#!/bin/sh\nREAL={require_bin_dir()}/psql\ncase "$*" in\n  *--output=*) {_PSQL_LOST[lost]} ;;\n  *) exec "$REAL" "$@" ;;\nesac\n')
    (fault / "psql").chmod(0o755)
    c.path_first["restore"] = fault
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    err = " ".join(err.split())
    (job,) = [j["metadata"]["name"] for j in c.created if "-restore-" in j["metadata"]["name"]]
    recs = _records(project, stack, "test")
    assert [r.action for r in recs] == ["backup", "intent", "restore"], err
    if lost == "after its commit":
        assert rc == 0 and _rows(pg) == before, err
        assert "database" not in recs[-1].changes["restore"] and recs[-1].changes["restore"]["id"] == backup_id
        assert re.search(r"the server says transaction \d+ committed: the database was restored", c.step_logs[(job, "restore")])
    else:
        assert rc == 2 and _rows(pg) == changed, err
        assert err.endswith(f"kubectl -n orders-test logs job/{job} -c restore: nothing was restored (recorded)"), err
        assert recs[-1].changes["restore"]["database"] == "not restored" and recs[-1].changes["restore"]["files"] == "not restored"
    assert recs[-1].changes["restore"]["app"] in ("stopped, then started", "not running")


def _s3(c: Cluster) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=c.store["endpoint"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")


def _job_env(job: dict) -> dict[str, str | None]:
    """The env of a Job's one container, by name."""
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def _env_of(c: Cluster, cron: str, step: str) -> list[dict]:
    pod = c.cronjobs[cron]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (found,) = [x for x in (*pod.get("initContainers", []), *pod["containers"]) if x["name"] == step]
    return found["env"]


@pytest.mark.parametrize("cluster", ["production"], indirect=True)
def test_production_restore_takes_a_backup_first(cluster, pg, project, capsys):
    c, stack = cluster
    pg.psql(SEED)
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    (first,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    before = _rows(pg)
    pg.psql('DELETE FROM "orders$order" WHERE id % 3 = 0')
    after_change = _rows(pg)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", first, "-C", str(project.path))
    assert rc == 0, err
    assert _rows(pg) == before
    kinds = [j["metadata"]["name"].split("-")[2] for j in c.created]
    assert kinds == ["backup", "backup", "restore"]
    recs = _records(project, stack, "production")
    assert [r.action for r in recs] == ["backup", "backup", "intent", "restore"]
    safety = recs[1].changes["backup"]
    assert safety["trigger"] == "before restore" and recs[3].changes["restore"]["backupBefore"] == safety["id"]
    assert recs[2].changes == {"intends": "restore", "restore": {k: v for k, v in recs[3].changes["restore"].items() if k != "app"}}
    assert recs[3].changes["restore"]["app"] == "stopped, then started"
    # the backup taken first holds the changed rows: the restore can be undone
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", safety["id"], "-C", str(project.path))
    assert rc == 0, err
    assert _rows(pg) == after_change


@pytest.mark.parametrize("cluster", ["production"], indirect=True)
def test_refused_without_the_rights(cluster, project, capsys):
    c, stack = cluster
    c.allowed = False
    for args in (["create"], ["restore", "--id", "20261204T020000Z"], ["list"]):
        rc, out, err = _cli(capsys, "backup", *args, "-s", stack, "-e", "production", "-C", str(project.path))
        assert rc == 2 and "Traceback" not in err, args
        assert "may not" in err
    assert c.created == []
    assert "platform or release identity" in _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))[2]
    assert _records(project, stack, "production") == []


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_restore_of_an_unknown_or_malformed_id_is_refused(cluster, pg, project, capsys):
    c, stack = cluster
    pg.psql(SEED)
    assert _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))[0] == 0
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", "20001231T000000Z", "-C", str(project.path))
    assert rc == 2 and "has no backup 20001231T000000Z" in err
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", "latest", "-C", str(project.path))
    assert rc == 2 and "YYYYmmddTHHMMSSZ" in err
    assert len(c.created) == 1


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_failed_job_is_exit_2_and_recorded_nowhere(cluster, project, capsys):
    c, stack = cluster
    c.pg_url = "postgres://nobody:x@127.0.0.1:1/none"  # the database does not answer
    rc, _, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    assert rc == 2 and "failed" in err and "kubectl -n orders-test logs job/orders-test-backup-" in err
    assert err.rstrip().endswith("; nothing was recorded"), err  # said by the CLI, which alone writes the log
    assert _records(project, stack, "test") == []


# --- restore --from: another environment's backup, pod to pod -----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _local(env: str, **backups: Any) -> dict:
    cfg = config(env, instances=1)
    cfg = with_(cfg, "mxinfra:kubernetes/storage", {"local": {"size": "1Gi"}})
    cfg = with_(cfg, "mxinfra:kubernetes/database.requireTls", False)
    if backups:
        cfg = with_(cfg, f"mxinfra:environments/{env}.backups", backups)
    return ungated(cfg)


@pytest.fixture
def two(project, capsys, tmp_path, pg, request, monkeypatch, engine_secrets) -> Iterator[Cluster]:
    """Two stacks on one cluster, each its own database on the loopback PostgreSQL: `request.param` is
    (source env, its backups, destination env, its backups)."""
    from mxinfra import plan

    monkeypatch.setattr("mxinfra.stackfile.read_stack_config", plan.read_stack_config)
    monkeypatch.setattr("mxinfra_kubernetes.backup_actions.TRANSFER_PORT", _free_port())
    src, src_backups, dst, dst_backups = request.param
    objects = []
    stored = False
    for env, backups in ((src, src_backups), (dst, dst_backups)):
        backups = dict(backups)
        cfg = _local(env, **{k: v for k, v in backups.items() if k not in ("store", "image", "files", "repository")})
        if "repository" in backups:  # its records in a repository of its own (tmp_path / name)
            cfg["mxinfra:repository"] = (tmp_path / backups["repository"]).as_uri()
        if backups.get("files") == "s3":  # its file store in a bucket
            cfg, stored = with_(cfg, "mxinfra:kubernetes/storage", {"s3": {**_s3_bucket(request, f"{env}-files")["s3"], "endpoint": "https://files.example.com"}}), True
        if backups.get("store") == "s3":  # its archives in a bucket
            cfg, stored = with_(cfg, "mxinfra:kubernetes/backups", _s3_bucket(request, env)), True
        if "image" in backups:  # the image of its backup and restore Jobs
            cfg = with_(cfg, "mxinfra:kubernetes/backups", {"image": backups["image"]})
        project.stack(env, cfg)
        assert main(["plan", "-s", env, "-C", str(project.path), "--out", str(tmp_path / "plan")]) == 0, capsys.readouterr().err
        objects += [d for d in yaml.safe_load_all((tmp_path / "plan" / "kubernetes" / f"{env}.yaml").read_text()) if d]
    capsys.readouterr()
    c = Cluster(objects, pg.url, tmp_path / "node")
    if stored:
        c.store = _s3_node(request)
    for env in (src, dst):
        pg.psql(f"DROP DATABASE IF EXISTS {env}")  # the server is the module's: one statement each (no transaction)
        pg.psql(f"CREATE DATABASE {env}")
        c.urls[f"orders-{env}"] = pg.url.rsplit("/", 1)[0] + f"/{env}"
    server, url = _serve(c)
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "k", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}],
        "current-context": "k",
    }
    (tmp_path / "ambient-kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    try:
        yield c
    finally:
        server.shutdown()


def _seeded(pg: PostgresServer, db: str, rows: int) -> str:
    pg.psql(SEED.replace("generate_series(1, 2000)", f"generate_series(1, {rows})"), database=db)
    return pg.psql('COPY (SELECT * FROM "orders$order" ORDER BY id) TO STDOUT', database=db)


def _production_taken_then_restored_into_acceptance(c: Cluster, project: Any, capsys: Any) -> str:
    """A backup of production taken now, then restored into acceptance (`--from`): its id."""
    rc, out, err = _cli(capsys, "backup", "create", "-s", "production", "-e", "production", "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", "acceptance", "-e", "acceptance", "--from", "production", "--from-stack", "production", "--id", backup_id, "-C", str(project.path))
    assert rc == 0, (err, c.step_logs)
    return backup_id


@pytest.mark.parametrize("two", [("production", {"files": "s3"}, "acceptance", {"restoreFrom": ["production"], "files": "s3"})], indirect=True)
def test_production_restored_into_acceptance_with_both_file_stores_in_s3(two, pg, project, capsys):
    """With the files in object storage the receiving restore step is an init container (push-files runs
    after it): its pod is Pending while it listens, and the export still finds it."""
    c = two
    prod_rows = _seeded(pg, "production", 100)
    _seeded(pg, "acceptance", 10)
    (prod_bucket,) = {e["value"].split(":")[1].split("/")[0] for e in _env_of(c, "orders-production-backup", "pull-files") if e.get("value", "").startswith("files:")}
    (acc_bucket,) = {e["value"].split(":")[1].split("/")[0] for e in _env_of(c, "orders-acceptance-restore", "push-files") if e.get("value", "").startswith("files:")}
    _s3(c).put_object(Bucket=prod_bucket, Key="doc1", Body=b"production file")
    _production_taken_then_restored_into_acceptance(c, project, capsys)
    assert pg.psql('COPY (SELECT * FROM "orders$order" ORDER BY id) TO STDOUT', database="acceptance") == prod_rows
    assert _s3(c).get_object(Bucket=acc_bucket, Key="doc1")["Body"].read() == b"production file"
    restore_job = next(j["metadata"]["name"] for j in c.created if j["metadata"]["name"].startswith("orders-acceptance-restore-"))
    assert [s["name"] for s in c.pods[restore_job]["status"]["initContainerStatuses"]] == ["restore"]  # then push-files
    assert [r.action for r in _records(project, "acceptance", "acceptance")] == ["intent", "restore"]


@pytest.mark.parametrize("two", [("production", {"store": "s3"}, "acceptance", {"restoreFrom": ["production"], "store": "s3"})], indirect=True)
def test_production_restored_into_acceptance_with_both_archives_in_s3(two, pg, project, capsys):
    c = two
    prod_rows = _seeded(pg, "production", 300)
    _seeded(pg, "acceptance", 10)
    (c.root / "pvc" / "orders-production-files").mkdir(parents=True)
    (c.root / "pvc" / "orders-production-files" / "doc1").write_bytes(b"production file")
    acc_files = c.root / "pvc" / "orders-acceptance-files"
    acc_files.mkdir(parents=True)
    (acc_files / "stale").write_bytes(b"acceptance only")
    backup_id = _production_taken_then_restored_into_acceptance(c, project, capsys)
    assert pg.psql('COPY (SELECT * FROM "orders$order" ORDER BY id) TO STDOUT', database="acceptance") == prod_rows
    assert {p.name: p.read_bytes() for p in acc_files.iterdir()} == {"doc1": b"production file"}
    # the source's export fetched from its bucket; the destination's fetch step stood aside for the transfer
    restore_job, export_job = (j["metadata"]["name"] for j in c.created[-2:])
    assert c.step_logs[(restore_job, "fetch")] == f"restore: {backup_id} comes from production's export Job: nothing to fetch here\n"
    assert c.step_logs[(export_job, "fetch")].startswith(f"restore: fetched {backup_id} from store:backups-production-")
    assert [r.action for r in _records(project, "production", "production")] == ["backup", "backup-export"]
    assert [r.action for r in _records(project, "acceptance", "acceptance")] == ["intent", "restore"]


@pytest.mark.parametrize("two", [("production", {}, "acceptance", {"restoreFrom": ["production"]})], indirect=True)
def test_a_receiver_whose_ok_was_lost_is_followed_not_deleted(two, pg, project, capsys, tmp_path):
    """The export Job fails after the receiver checked the archive and answered "ok" (the answer lost on its
    way back): the receiver restores it all the same, so it is followed to its end (as after any failure of
    the export) and the restore recorded with what the receiver checked, never deleted half-way with the
    app started beside it."""
    c = two
    prod_rows = _seeded(pg, "production", 200)
    _seeded(pg, "acceptance", 10)
    rc, out, err = _cli(capsys, "backup", "create", "-s", "production", "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    # export.sh's perl sends the archive and reads the "ok"; here it then reports the ok as never read
    fault = tmp_path / "fault"
    fault.mkdir()
    (fault / "perl").write_text(f"#!/bin/sh\n{shutil.which('perl')} \"$@\" || exit $?\necho 'export: the receiver did not confirm the archive' >&2\nexit 1\n")
    (fault / "perl").chmod(0o755)
    c.path_first["export"] = fault
    rc, out, err = _cli(capsys, "backup", "restore", "-s", "acceptance", "-e", "acceptance", "--from", "production", "--from-stack", "production", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 0, (err, c.logs)
    restore_job, export_job = (j["metadata"]["name"] for j in c.created[-2:])
    assert c.jobs[export_job]["status"]["conditions"][0]["type"] == "Failed" and "did not confirm the archive" in c.logs[export_job]
    assert f"warning: the export Job {export_job} in namespace orders-production" in said and f"following the restore Job {restore_job}" in said and restore_job in c.jobs  # followed, not deleted
    assert pg.psql('COPY (SELECT * FROM "orders$order" ORDER BY id) TO STDOUT', database="acceptance") == prod_rows
    archive = c.root / "pvc" / "orders-production-backups" / f"{backup_id}.tar.gz"
    (intent, restored) = _records(project, "acceptance", "acceptance")
    assert restored.changes["restore"]["size"] == archive.stat().st_size and restored.changes["restore"]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert restored.changes["restore"]["app"] == "stopped, then started"


@pytest.mark.parametrize("two", [("production", {}, "acceptance", {"restoreFrom": ["production"]})], indirect=True)
def test_an_export_that_sent_nothing_leaves_the_receiver_to_say_it_restored_nothing(two, pg, project, capsys, tmp_path):
    """The export fails before it sends a byte: the receiver is followed (never deleted: the command cannot
    tell from here whether it got the archive) until it stops waiting, and its own words make the outcome."""
    c = two
    _seeded(pg, "production", 20)
    acc_rows = _seeded(pg, "acceptance", 10)
    rc, out, err = _cli(capsys, "backup", "create", "-s", "production", "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    restore = next(x for x in c.cronjobs["orders-acceptance-restore"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] if x["name"] == "restore")
    restore["env"] = [*restore["env"], {"name": "BACKUP_WAIT", "value": "3"}]  # the receiver stops waiting after 3 s
    fault = tmp_path / "fault"
    fault.mkdir()
    (fault / "perl").write_text("#!/bin/sh\necho 'export: cannot connect to the receiver' >&2\nexit 1\n")
    (fault / "perl").chmod(0o755)
    c.path_first["export"] = fault
    rc, out, err = _cli(capsys, "backup", "restore", "-s", "acceptance", "-e", "acceptance", "--from", "production", "--from-stack", "production", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and said.endswith("it received no whole archive: nothing was restored (recorded)"), said
    assert pg.psql('COPY (SELECT * FROM "orders$order" ORDER BY id) TO STDOUT', database="acceptance") == acc_rows
    (intent, restored) = _records(project, "acceptance", "acceptance")
    assert restored.changes["restore"] == {"id": backup_id, "from": "production", "to": "acceptance", "fromStack": "production", "app": "stopped, then started", "database": "not restored", "files": "not restored"}


@pytest.mark.parametrize("two", [("production", {}, "acceptance", {"restoreFrom": ["production"]})], indirect=True)
def test_production_restored_into_acceptance(two, pg, project, capsys):
    c = two
    prod_rows = _seeded(pg, "production", 2000)
    _seeded(pg, "acceptance", 10)
    prod_files = c.root / "pvc" / "orders-production-files"
    acc_files = c.root / "pvc" / "orders-acceptance-files"
    prod_files.mkdir(parents=True)
    acc_files.mkdir(parents=True)
    (prod_files / "doc1").write_bytes(b"\x00production file")
    (acc_files / "stale").write_bytes(b"acceptance only")
    rc, out, err = _cli(capsys, "backup", "create", "-s", "production", "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    pg.psql('DELETE FROM "orders$order" WHERE id > 100', database="production")  # production moves on; the backup does not

    rc, out, err = _cli(capsys, "backup", "restore", "-s", "acceptance", "-e", "acceptance", "--from", "production", "--from-stack", "production", "--id", backup_id, "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    assert f"acceptance: restored backup {backup_id} of production" in out
    assert pg.psql('COPY (SELECT * FROM "orders$order" ORDER BY id) TO STDOUT', database="acceptance") == prod_rows
    assert {p.name: p.read_bytes() for p in acc_files.iterdir()} == {"doc1": b"\x00production file"}
    # the copy is in acceptance's backups, apart from its own (retention and list see none of it)
    archive = c.root / "pvc" / "orders-production-backups" / f"{backup_id}.tar.gz"
    copy = c.root / "pvc" / "orders-acceptance-backups" / "from-production" / f"{backup_id}.tar.gz"
    assert copy.read_bytes() == archive.read_bytes()

    export = c.created[-1]
    assert [j["metadata"]["namespace"] for j in c.created] == ["orders-production", "orders-acceptance", "orders-production"]
    pod = export["spec"]["template"]["spec"]
    # the export pod holds the archive only: no Secret, no database, no file store, the claim read-only
    assert "secretKeyRef" not in json.dumps(export) and [v["name"] for v in pod["volumes"]] == ["scripts", "backups"]
    assert all(m["readOnly"] for m in pod["containers"][0]["volumeMounts"])
    assert "app.kubernetes.io/instance" not in export["spec"]["template"]["metadata"]["labels"]
    # the receiver's spec (acceptance's monitor reads it) holds the sha256 of the token the sender presents
    (receiver,) = [j for j in c.created if j["metadata"]["namespace"] == "orders-acceptance"]
    token = _job_env(export)["BACKUP_TOKEN"]
    assert _job_env(receiver)["BACKUP_TOKEN_SHA256"] == hashlib.sha256(token.encode()).hexdigest() and token not in json.dumps(receiver)

    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    (intent, restored) = _records(project, "acceptance", "acceptance")
    assert restored.action == "restore"
    assert restored.changes == {"restore": {"id": backup_id, "from": "production", "to": "acceptance", "fromStack": "production", "size": archive.stat().st_size, "sha256": sha, "app": "stopped, then started"}}
    # before the restore Job: which backup of which stack's environment (what the receiver then checked follows in the outcome)
    assert intent.action == "intent" and intent.changes == {"intends": "restore", "restore": {"id": backup_id, "from": "production", "to": "acceptance", "fromStack": "production"}}
    prod = _records(project, "production", "production")
    assert [r.action for r in prod] == ["backup", "backup-export"]
    assert prod[1].changes == {"backup": {"id": backup_id, "to": "acceptance", "toStack": "acceptance", "size": archive.stat().st_size, "sha256": sha}}
    for env in ("acceptance", "production"):
        rc, out, err = _cli(capsys, "activity", "verify", "-e", env, "-C", str(project.path))
        assert rc == 0, out + err


@pytest.mark.parametrize("two", [("production", {}, "acceptance", {})], indirect=True)
def test_restore_from_an_environment_not_in_restore_from_is_refused(two, pg, project, capsys):
    c = two
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "acceptance", "-e", "acceptance", "--from", "production", "--from-stack", "production", "--id", "20261204T020000Z", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err and "backups.restoreFrom" in err and "'production'" in err
    assert c.created == [] and _records(project, "acceptance", "acceptance") == []
    # the stack that deploys --from must be named when it is not this one
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "acceptance", "-e", "acceptance", "--from", "production", "--id", "20261204T020000Z", "-C", str(project.path))
    assert rc == 2 and "--from-stack" in err
    for bad, expect in ((["--from", "Prod-1"], "--from 'Prod-1'"), (["--from-stack", "production"], "give --from ENV too")):
        rc, _, err = _cli(capsys, "backup", "restore", "-s", "acceptance", "-e", "acceptance", *bad, "--id", "20261204T020000Z", "-C", str(project.path))
        assert rc == 2 and expect in err and "Traceback" not in err, err


@pytest.mark.parametrize("two", [("acceptance", {}, "production", {"restoreFrom": ["acceptance"], "allowLowerTiers": True})], indirect=True)
def test_a_lower_tier_into_production_needs_the_flag_and_takes_a_backup_first(two, pg, project, capsys):
    c = two
    acc_rows = _seeded(pg, "acceptance", 300)
    _seeded(pg, "production", 2000)
    prod_before = pg.psql('COPY (SELECT * FROM "orders$order" ORDER BY id) TO STDOUT', database="production")
    rc, out, err = _cli(capsys, "backup", "create", "-s", "acceptance", "-e", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    args = ["backup", "restore", "-s", "production", "-e", "production", "--from", "acceptance", "--from-stack", "acceptance", "--id", backup_id, "-C", str(project.path)]
    rc, _, err = _cli(capsys, *args)
    assert rc == 2 and "--allow-lower-tier" in err and len(c.created) == 1
    rc, out, err = _cli(capsys, *args, "--allow-lower-tier")
    assert rc == 0, (err, c.logs)
    assert pg.psql('COPY (SELECT * FROM "orders$order" ORDER BY id) TO STDOUT', database="production") == acc_rows
    recs = _records(project, "production", "production")
    assert [r.action for r in recs] == ["backup", "intent", "restore"]
    before = recs[0].changes["backup"]
    assert before["trigger"] == "before restore" and recs[2].changes["restore"]["backupBefore"] == before["id"]
    # production's backup taken first holds production's rows: the restore can be undone
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "production", "-e", "production", "--id", before["id"], "-C", str(project.path))
    assert rc == 0, err
    assert pg.psql('COPY (SELECT * FROM "orders$order" ORDER BY id) TO STDOUT', database="production") == prod_before


@pytest.mark.parametrize("cluster", ["production"], indirect=True)
def test_a_namesake_in_another_stack_is_not_the_environment(cluster, pg, project, capsys):
    # Any stack file may declare an environment named `production` (here with role test): it is not
    # production, so neither restoreFrom (which cannot list it) nor the tier rule lets its backups in.
    c, stack = cluster
    sandbox = with_(config("production", role="test", instances=1), "mxinfra:kubernetes/storage", {"local": {"size": "1Gi"}})
    project.stack("sandbox", with_(sandbox, "mxinfra:kubernetes/environments", {"production": {"namespace": "orders-sandbox"}}))
    for extra in ([], ["--allow-lower-tier"]):
        rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--from", "production", "--from-stack", "sandbox", "--id", "20261204T020000Z", *extra, "-C", str(project.path))
        err = " ".join(err.split())
        assert rc == 2 and "--from-stack 'sandbox': its environment 'production' has production's name but is not production" in err, err
    assert c.created == [] and _records(project, stack, "production") == []


@pytest.mark.parametrize("two", [("acceptance", {"repository": "acceptance-repo"}, "production", {"restoreFrom": ["acceptance"], "allowLowerTiers": True})], indirect=True)
def test_an_archive_vouched_for_by_another_repositorys_own_key_is_not_trusted(two, pg, project, capsys, tmp_path, monkeypatch):
    # The source stack keeps its records in a repository of its own: its development key is whoever made
    # that repository's, so its records count for production only through keys production's config names.
    c = two
    monkeypatch.setattr("mxinfra_kubernetes.backup_actions.TRANSFER_PORT", _free_port())
    _seeded(pg, "acceptance", 50)
    rc, out, err = _cli(capsys, "backup", "create", "-s", "acceptance", "-e", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    rc, _, err = _cli(capsys, "backup", "download", "-s", "acceptance", "-e", "acceptance", "--id", backup_id, "-o", str(tmp_path / "d"), "-C", str(project.path))
    assert rc == 0, err
    archive = tmp_path / "d" / f"{backup_id}.tar.gz"
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.store import open_store

    # signed with that repository's own development key, in that repository
    downloads = [r for r in ActivityLog(open_store((tmp_path / "acceptance-repo").as_uri())).records("acceptance") if r.action == "backup-download"]
    assert len(downloads) == 1 and downloads[0].signature, downloads
    jobs = len(c.created)
    args = ["backup", "restore", "-s", "production", "-e", "production", "--archive", str(archive), "--from", "acceptance", "--from-stack", "acceptance", "--allow-lower-tier", "-C", str(project.path)]
    rc, _, err = _cli(capsys, *args)
    err = " ".join(err.split())
    assert rc == 2 and "is in no signed backup-download record of acceptance's log" in err and "mxinfra:signing.trustedSigners.acceptance" in err, err
    assert len(c.created) == jobs and _records(project, "production", "production") == []


@pytest.mark.parametrize("two", [("production", {}, "acceptance", {"restoreFrom": ["production"]})], indirect=True)
def test_restore_from_needs_jobs_in_the_source_namespace(two, pg, project, capsys):
    c = two
    c.denied.add(("orders-production", "create"))
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "acceptance", "-e", "acceptance", "--from", "production", "--from-stack", "production", "--id", "20261204T020000Z", "-C", str(project.path))
    assert rc == 2 and "may not create jobs in namespace orders-production" in err and "platform or release identity" in err
    assert c.created == []


# --- download: the archive out of the cluster through the pod proxy -----------------------------------


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_download_gives_the_mendix_cloud_archive_checked_and_recorded(cluster, pg, project, capsys, tmp_path, monkeypatch):
    import tarfile
    import tracemalloc

    c, stack = cluster
    monkeypatch.setattr("mxinfra_kubernetes.backup_actions.TRANSFER_PORT", _free_port())
    pg.psql(SEED)
    files = c.root / "pvc" / "orders-test-files"
    files.mkdir(parents=True)
    (files / "big").write_bytes(os.urandom(24 << 20))  # incompressible: the archive is > 24 MiB
    (files / "doc1").write_bytes(b"one")
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    assert rc == 0, err
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    archive = c.root / "pvc" / "orders-test-backups" / f"{backup_id}.tar.gz"
    dest = tmp_path / "downloads" / "new"
    tracemalloc.start()
    try:
        rc, out, err = _cli(capsys, "backup", "download", "-s", stack, "-e", "test", "--id", backup_id, "-o", str(dest), "-C", str(project.path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 0, (err, c.logs)
    got = dest / f"{backup_id}.tar.gz"
    assert got.read_bytes() == archive.read_bytes() and [p.name for p in dest.iterdir()] == [got.name]
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert f"({archive.stat().st_size} bytes, sha256 {sha})" in out
    assert peak < 8 << 20, f"peak {peak} bytes for a {archive.stat().st_size}-byte archive: not streamed"
    # the Mendix Cloud layout: a pg_dump custom-format db/db.backup and the files under tree/
    with tarfile.open(got) as t:
        assert {"db/db.backup", "tree/doc1", "tree/big"} <= set(t.getnames())
        t.extract("db/db.backup", tmp_path / "x", filter="data")
    listed = subprocess.run([str(require_bin_dir() / "pg_restore"), "--list", str(tmp_path / "x" / "db" / "db.backup")], capture_output=True, text=True)
    assert listed.returncode == 0 and 'orders$order' in listed.stdout
    export = c.created[-1]
    assert export["metadata"]["name"].startswith("orders-test-export-") and "secretKeyRef" not in json.dumps(export)
    # the serving pod's spec (the environment's monitor reads it) holds the token's sha256, not the token
    token = c.get_paths[-1].split("/")[0]
    assert _job_env(export)["BACKUP_TOKEN_SHA256"] == hashlib.sha256(token.encode()).hexdigest() and token not in json.dumps(export)
    recs = _records(project, stack, "test")
    assert [r.action for r in recs] == ["backup", "backup-download"]
    assert recs[1].changes == {"backup": {"id": backup_id, "size": archive.stat().st_size, "sha256": sha}}
    rc, out, err = _cli(capsys, "activity", "verify", "-e", "test", "-C", str(project.path))
    assert rc == 0, out + err
    # never over a file that is there
    rc, _, err = _cli(capsys, "backup", "download", "-s", stack, "-e", "test", "--id", backup_id, "-o", str(dest), "-C", str(project.path))
    assert rc == 2 and "not overwritten" in err


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_download_that_arrives_changed_is_not_kept_nor_recorded(cluster, pg, project, capsys, tmp_path, monkeypatch):
    c, stack = cluster
    monkeypatch.setattr("mxinfra_kubernetes.backup_actions.TRANSFER_PORT", _free_port())
    pg.psql(SEED)
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    c.corrupt = True
    rc, _, err = _cli(capsys, "backup", "download", "-s", stack, "-e", "test", "--id", backup_id, "-o", str(tmp_path / "d"), "-C", str(project.path))
    assert rc == 2 and "not kept" in err and "Traceback" not in err
    assert list((tmp_path / "d").iterdir()) == []
    assert [r.action for r in _records(project, stack, "test")] == ["backup"]


# --- restore --archive: an archive from this machine into the cluster through the pod proxy ---------------


def _taken_and_downloaded(capsys: pytest.CaptureFixture[str], project: Any, pg: Any, stack: str, env: str, out: Path) -> tuple[str, str, Path]:
    """The seeded rows, a backup of `env` taken (`backup create`) and downloaded into `out`: the rows as
    they were, the backup's id and the downloaded archive."""
    pg.psql(SEED)
    seeded = _rows(pg)
    rc, said, err = _cli(capsys, "backup", "create", "-s", stack, "-e", env, "-C", str(project.path))
    assert rc == 0, err
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", said)
    rc, _, err = _cli(capsys, "backup", "download", "-s", stack, "-e", env, "--id", backup_id, "-o", str(out), "-C", str(project.path))
    assert rc == 0, err
    return seeded, backup_id, out / f"{backup_id}.tar.gz"


@pytest.mark.parametrize("cluster", ["test", "test+s3"], indirect=True)
def test_a_downloaded_archive_restores_through_the_pod_proxy(cluster, pg, project, capsys, tmp_path, monkeypatch):
    c, stack = cluster
    monkeypatch.setattr("mxinfra_kubernetes.backup_actions.TRANSFER_PORT", _free_port())
    seeded, backup_id, archive = _taken_and_downloaded(capsys, project, pg, stack, "test", tmp_path / "d")
    pg.psql('DELETE FROM "orders$order" WHERE id > 10')
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--archive", str(archive), "--from", "test", "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    assert _rows(pg) == seeded
    job = c.created[-1]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BACKUP_RECEIVE"] == "http" and env["BACKUP_SOURCE"] == "upload" and env["BACKUP_ID"] == backup_id
    assert ("PUT", f"proxy {job['metadata']['name']}:{env['BACKUP_PORT']}") in c.requests
    # the token the PUT presented is not in any Job's spec (the environment's monitor reads them), its sha256 is
    (put,) = c.put_paths
    token = put.split("/")[0]
    assert env["BACKUP_TOKEN_SHA256"] == hashlib.sha256(token.encode()).hexdigest()
    assert not [j["metadata"]["name"] for j in c.created if token in json.dumps(j)]
    assert f"restore: received {backup_id} from this machine ({archive.stat().st_size} bytes, sha256 {hashlib.sha256(archive.read_bytes()).hexdigest()})" in c.logs[job["metadata"]["name"]]
    recs = _records(project, stack, "test")
    assert [r.action for r in recs] == ["backup", "backup-download", "intent", "restore"]
    assert recs[-1].changes["restore"]["archive"]["downloadRecord"] == recs[1].seq


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_an_archive_of_another_target_restores_and_one_changed_on_the_way_does_not(cluster, pg, project, capsys, tmp_path, monkeypatch):
    """A Mendix Cloud archive written elsewhere (here by the core's pack, as Cloud Foundry's download writes
    it), restored below production with --unrecorded; one whose bytes change on the way is refused by the Job."""
    from mxinfra.backup_archive import pack

    c, stack = cluster
    monkeypatch.setattr("mxinfra_kubernetes.backup_actions.TRANSFER_PORT", _free_port())
    pg.psql(SEED)
    seeded = _rows(pg)
    work = tmp_path / "w"
    (work / "tree" / "a1").mkdir(parents=True)
    (work / "tree" / "a1" / "doc").write_bytes(b"a file of the other target")
    subprocess.run([str(require_bin_dir() / "pg_dump"), "--format=custom", f"--file={work / 'dump'}", f"--dbname={pg.url}"], check=True)
    archive = tmp_path / "cf" / "20261201T020000Z.tar.gz"
    archive.parent.mkdir()
    pack(work / "dump", work / "tree", archive)
    pg.psql('DELETE FROM "orders$order"')
    base = ["backup", "restore", "-s", stack, "-e", "test", "--archive", str(archive), "--from", "test", "-C", str(project.path)]
    rc, _, err = _cli(capsys, *base)
    assert rc == 2 and "so nothing says it came from test" in err and c.created == []
    c.corrupt = True
    rc, _, err = _cli(capsys, *base, "--unrecorded")
    assert rc == 2 and "Traceback" not in err and "PUT /api/v1/namespaces/orders-test/pods/" in err and "answered HTTP 400" in err
    # the archive was on its way when the Job refused it: the Job deleted, so the app started again, and
    # the restore's intent followed by its outcome, nothing restored
    recs = _records(project, stack, "test")
    assert _rows(pg) == "" and [r.action for r in recs] == ["intent", "restore"] and err.rstrip().endswith("nothing was restored (recorded)")
    assert {k: v for k, v in recs[-1].changes["restore"].items() if k != "archive"} == {"from": "test", "app": "stopped, then started", "database": "not restored", "files": "not restored"}
    (app,) = {n for n, _ in c.scaled}
    assert c.scaled == [(app, 0), (app, 1)] and "stays stopped" not in err
    rc, _, err = _cli(capsys, *base, "--unrecorded")
    assert rc == 0, (err, c.logs)
    assert _rows(pg) == seeded and (c.root / "pvc" / "orders-test-files" / "a1" / "doc").read_bytes() == b"a file of the other target"
    assert _records(project, stack, "test")[-1].changes["restore"]["archive"]["unrecorded"] is True


@pytest.mark.parametrize("cluster", ["acceptance+s3+files+suffix"], indirect=True)
def test_a_mendix_cloud_archive_restores_each_file_under_the_key_the_runtime_looks_for(cluster, pg, project, capsys, tmp_path, monkeypatch):
    """Laid out as docs.mendix.com's "Format of a Backup File" says: .metadata first, db/db.backup made by
    `pg_dump -O -x -Fc`, each file at tree/xx/yy/<uuid> (no directory entries); the runtime asks its bucket
    for <uuid><keySuffix>."""
    import io
    import tarfile

    c, stack = cluster
    monkeypatch.setattr("mxinfra_kubernetes.backup_actions.TRANSFER_PORT", _free_port())
    bucket = next(b for b in (e.get("value", "") for e in _env_of(c, "orders-acceptance-backup", "pull-files")) if b.startswith("files:")).split(":")[1]
    pg.psql(SEED)
    seeded = _rows(pg)
    dump = tmp_path / "db.backup"
    subprocess.run([str(require_bin_dir() / "pg_dump"), "-O", "-x", "-Fc", f"--file={dump}", pg.url], check=True)
    uuid = "0d3e301f-5551-46f8-ad44-8de2be084c95"
    archive = tmp_path / "files_and_database-fc9e126f-201811210121.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        metadata = b'{"duration":"0","dumpSize":"1","modelVersion":"1.0.0.40","databaseSize":"9730584","filesSize":"3"}'
        for name, body in ((".metadata", metadata), ("db/db.backup", dump.read_bytes()), (f"tree/0d/3e/{uuid}", b"abc")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    pg.psql('DELETE FROM "orders$order"')
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "acceptance", "--archive", str(archive), "--from", "acceptance", "--unrecorded", "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    assert _rows(pg) == seeded
    keys = [o["Key"] for o in _s3(c).list_objects_v2(Bucket=bucket).get("Contents") or []]
    assert keys == [f"{uuid}.orders-acceptance"] and _s3(c).get_object(Bucket=bucket, Key=keys[0])["Body"].read() == b"abc"


def _hostile_archive(directory: Path) -> Path:
    """A hand-made archive with a name GNU tar keeps absolute after --strip-components (tree//backups/...)."""
    import io
    import tarfile

    directory.mkdir(parents=True, exist_ok=True)
    hostile = directory / "20261201T020000Z.tar.gz"
    with tarfile.open(hostile, "w:gz") as t:
        for name in ("db/db.backup", "tree//backups/20261101T000000Z.tar.gz"):
            info = tarfile.TarInfo(name)
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
    return hostile


@pytest.mark.parametrize("cluster", ["production"], indirect=True)
def test_production_restores_a_recorded_archive_after_a_backup_and_refuses_a_hostile_one_before(cluster, pg, project, capsys, tmp_path, monkeypatch):
    c, stack = cluster
    monkeypatch.setattr("mxinfra_kubernetes.backup_actions.TRANSFER_PORT", _free_port())
    seeded, _, archive = _taken_and_downloaded(capsys, project, pg, stack, "production", tmp_path / "d")
    # a hand-made archive whose name GNU tar would keep absolute: refused here, before any Job or backup
    hostile = _hostile_archive(tmp_path / "h")
    jobs = len(c.created)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--archive", str(hostile), "--from", "production", "--unrecorded", "-C", str(project.path))
    assert rc == 2 and "entry 'tree//backups/20261101T000000Z.tar.gz' is not a plain relative name" in err and len(c.created) == jobs
    assert " ".join(err.split()).endswith("; nothing was recorded")
    # a well-made archive that no signed download record names: refused on production, --unrecorded or not
    from mxinfra.backup_archive import pack

    (tmp_path / "u" / "tree").mkdir(parents=True)
    (tmp_path / "u" / "dump").write_bytes(b"PGDMP")
    unrecorded = pack(tmp_path / "u" / "dump", tmp_path / "u" / "tree", tmp_path / "u" / "20261201T020000Z.tar.gz")
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--archive", str(unrecorded.path), "--from", "production", "--unrecorded", "-C", str(project.path))
    err = " ".join(err.split())
    assert rc == 2 and f"its sha256 {unrecorded.sha256} is in no signed backup-download record" in err and "(production is restored only from an archive mxinfra downloaded and recorded)" in err, err
    assert err.endswith("; nothing was recorded")
    assert len(c.created) == jobs and [r.action for r in _records(project, stack, "production")] == ["backup", "backup-download"]
    import time as _time

    # the backup first is taken and recorded, then the intent's write fails: the message says which is in the log
    from mxinfra import backup_cli
    from mxinfra.errors import UserError

    def refused(ctx, restore):
        raise UserError("the activity log refused the write")

    _time.sleep(1.1)  # the backup taken first gets a second of its own
    with monkeypatch.context() as m:
        m.setattr(backup_cli, "_restore_intent", refused)
        rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--archive", str(archive), "--from", "production", "-C", str(project.path))
    (first,) = set(re.findall(r"backup (\d{8}T\d{6}Z) taken first", out))
    assert rc == 2 and err.rstrip().endswith(f"the activity log refused the write; the backup {first} taken first is recorded, the restore is not"), err
    assert [r.action for r in _records(project, stack, "production")] == ["backup", "backup-download", "backup"]
    _time.sleep(1.1)
    pg.psql('DELETE FROM "orders$order"')
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--archive", str(archive), "--from", "production", "-C", str(project.path))
    assert rc == 0, (err, c.logs)
    assert _rows(pg) == seeded
    (before,) = set(re.findall(r"backup (\d{8}T\d{6}Z) taken first", out))
    recs = _records(project, stack, "production")
    assert [r.action for r in recs] == ["backup", "backup-download", "backup", "backup", "intent", "restore"]
    assert recs[3].changes == {"backup": {"id": before, "trigger": "before restore"}} and recs[5].changes["restore"]["backupBefore"] == before


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_a_hand_made_archive_with_a_name_tar_reads_otherwise_never_reaches_a_job(cluster, pg, project, capsys, tmp_path):
    c, stack = cluster
    hostile = _hostile_archive(tmp_path)
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--archive", str(hostile), "--from", "test", "--unrecorded", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err and "entry 'tree//backups/20261101T000000Z.tar.gz' is not a plain relative name" in err
    assert c.created == []


@pytest.mark.parametrize("cluster", ["test"], indirect=True)
def test_an_archive_from_this_machine_needs_put_through_the_proxy(cluster, pg, project, capsys, tmp_path):
    from mxinfra.backup_archive import pack

    c, stack = cluster
    work = tmp_path / "w"
    (work / "tree").mkdir(parents=True)
    (work / "dump").write_bytes(b"PGDMP")
    archive = tmp_path / "20261201T020000Z.tar.gz"
    pack(work / "dump", work / "tree", archive)
    c.denied.add(("orders-test", "update"))
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--archive", str(archive), "--from", "test", "--unrecorded", "-C", str(project.path))
    assert rc == 2 and "your identity may not update pods/proxy in namespace orders-test" in err and "run this as the platform or release identity" in err
    assert c.created == []


@pytest.mark.parametrize("cluster", ["production"], indirect=True)
def test_download_bad_input_and_missing_rights_are_exit_2(cluster, project, capsys, tmp_path):
    c, stack = cluster
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for args, expect in (
        (["--id", "latest", "-o", str(tmp_path)], "--id 'latest'"),
        (["--id", "20261204T020000Z", "-o", str(a_file)], "is a file"),
    ):
        rc, _, err = _cli(capsys, "backup", "download", "-s", stack, "-e", "production", *args, "-C", str(project.path))
        assert rc == 2 and expect in err and "Traceback" not in err, err
    rc, _, err = _cli(capsys, "backup", "download", "-s", stack, "-e", "production", "--id", "20261204T020000Z", "-C", str(project.path))
    assert rc == 2 and "-o" in err  # typer: the missing option named
    c.allowed = False
    rc, _, err = _cli(capsys, "backup", "download", "-s", stack, "-e", "production", "--id", "20261204T020000Z", "-o", str(tmp_path / "d"), "-C", str(project.path))
    assert rc == 2 and "may not create jobs" in err and "platform or release identity" in err
    assert c.created == [] and not (tmp_path / "d").exists()


@pytest.mark.parametrize("two", [("production", {}, "acceptance", {"restoreFrom": ["production"], "image": "postgres:16.11"})], indirect=True)
def test_restore_from_a_newer_postgresql_than_the_destination_restores_is_refused_before_anything_runs(two, project, capsys):
    c = two
    rc, out, err = _cli(capsys, "backup", "restore", "-s", "acceptance", "-e", "acceptance", "--from", "production", "--from-stack", "production", "--id", "20261204T020000Z", "-C", str(project.path))
    err = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert "production's backups are made by pg_dump 17 (postgres:17.7), which acceptance's restore, pg_restore 16 (postgres:16.11), cannot read" in err, err
    assert c.created == [] and _records(project, "acceptance", "acceptance") == [] and _records(project, "production", "production") == []


@pytest.mark.parametrize("two", [("production", {}, "acceptance", {"restoreFrom": ["production"]})], indirect=True)
def test_restore_from_an_environment_with_files_into_a_template_that_keeps_none_is_refused_before_anything_runs(two, pg, project, capsys):
    # Every plain environment keeps files (storage is required), but the restore reads its template as the
    # cluster has it: one edited by hand, or left by another tool, may put no files back.
    c = two
    (restore,) = [name for name in c.cronjobs if name.startswith("orders-acceptance") and "restore" in name]
    env = _env_of(c, restore, "restore")
    assert any(e["name"] == "FILES_DIR" for e in env) and "push-files" not in str(c.cronjobs[restore])
    env[:] = [e for e in env if e["name"] != "FILES_DIR"]
    rc, _, err = _cli(capsys, "backup", "restore", "-s", "acceptance", "-e", "acceptance", "--from", "production", "--from-stack", "production", "--id", "20261204T020000Z", "-C", str(project.path))
    err = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert "production keeps its files on a claim and acceptance keeps none: the archive's files would have nowhere to go" in err, err
    assert c.created == [] and _records(project, "acceptance", "acceptance") == [] and _records(project, "production", "production") == []


@pytest.mark.parametrize(
    "image, major",
    [
        ("postgres:17.2", 17),
        ("registry.example.com/team/postgres:16-bookworm@sha256:" + "ab" * 32, 16),
        ("postgres:9.6", 9),
        ("postgres@sha256:" + "ab" * 32, None),  # a digest alone says nothing
        ("postgres:latest", None),
        ("bitnami/postgresql:17.2.0", 17),
        ("mysql:8.0", None),
        ("prometheuscommunity/postgres-exporter:0.15", None),  # not PostgreSQL, though named after it
    ],
)
def test_the_postgresql_major_version_is_read_from_the_tag_only(image, major):
    from mxinfra_kubernetes.backup_actions import postgres_major

    assert postgres_major(image) == major


@pytest.mark.parametrize(
    "image, refused",
    [
        # the first releases whose pg_restore writes \restrict: 17.6, 16.10, 15.14, 14.19, 13.22; 18 on
        ("postgres:17.5", True), ("postgres:17.6", False), ("postgres:17.7", False),
        ("postgres:16.9-bookworm", True), ("postgres:16.10", False), ("postgres:16.11", False),
        ("postgres:15.13", True), ("postgres:15.14", False), ("postgres:14.18", True), ("postgres:13.22", False),
        ("postgres:12.22", True), ("postgres:18.0", False),
        # a tag that names no minor, or no version at all, says nothing
        ("postgres:16", False), ("postgres:16-bookworm", False), ("postgres@sha256:" + "ab" * 32, False), ("postgres:latest", False),
    ],
)
def test_an_image_whose_pg_restore_does_not_restrict_psql_is_known_by_its_tag(image, refused):
    from mxinfra_kubernetes.backups import unrestricting

    assert unrestricting(image) is refused


def test_an_archive_that_shrinks_after_its_check_stops_the_upload_at_once(tmp_path):
    # The PUT declares the checked size; a file that ends sooner would leave the receiver waiting for the
    # rest until the timeout (found by review: 600 s). It is an error the moment the file ends.
    import types

    from mxinfra.errors import UserError
    from mxinfra_kubernetes.backup_actions import _upload

    class Receiver(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # noqa: N802 (the http.server name)
            try:
                self.rfile.read(int(self.headers["Content-Length"]))
            except OSError:
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    archive = tmp_path / "20261201T020000Z.tar.gz"
    archive.write_bytes(b"x" * 300_000)
    access = types.SimpleNamespace(server=f"http://127.0.0.1:{server.server_address[1]}", headers={}, tls=None, where="the test's receiver")
    started = time.monotonic()
    try:
        with pytest.raises(UserError, match=r"ended 700000 bytes short of the size it had when checked: it changed meanwhile, nothing was restored"):
            _upload(access, "/proxy/t", archive, 1_000_000)
    finally:
        server.shutdown()
    assert time.monotonic() - started < 10
